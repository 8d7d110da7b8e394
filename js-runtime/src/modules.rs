//! Where `require()` finds modules: Node's resolution rules, confined to the files the master
//! shipped and the dependency bundle.
//!
//! Tasks see virtual paths — `/task/...` for the task's own files and `/deps/node_modules/...`
//! for the bundle — so no path of the worker's machine reaches task code or the master's error
//! messages, and a path that normalizes outside those two trees simply does not exist.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// The virtual directory of the files the master shipped.
pub(crate) const TASK_ROOT: &str = "/task";
/// The virtual directory of the dependency bundle's `node_modules`.
pub(crate) const DEPS_ROOT: &str = "/deps/node_modules";
const DEPS_PARENT: &str = "/deps";

/// Conditions this runtime matches in `exports` / `imports` maps, as Node does for `require`.
const CONDITIONS: [&str; 3] = ["require", "node", "default"];

/// Largest module file `require()` reads.
const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// The outcome of resolving one `require()` call, as the JS loader receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Resolution {
    /// The virtual path of the module file.
    Found(String),
    /// Why there is no such module, naming it and the file that asked.
    Missing(String),
}

/// The two trees a task may load code from, and a cache of parsed `package.json` files.
#[derive(Debug)]
pub(crate) struct ModuleFiles {
    task_root: PathBuf,
    node_modules: Option<PathBuf>,
    packages: RefCell<HashMap<String, Option<Value>>>,
}

impl ModuleFiles {
    /// Files of `task_root` and, when given, the bundle's `node_modules`. Both must exist.
    pub(crate) fn new(task_root: &Path, node_modules: Option<&Path>) -> std::io::Result<Self> {
        Ok(ModuleFiles {
            task_root: std::fs::canonicalize(task_root)?,
            node_modules: node_modules.map(std::fs::canonicalize).transpose()?,
            packages: RefCell::new(HashMap::new()),
        })
    }

    /// The virtual path of a real file inside the task root, if it is one.
    pub(crate) fn virtual_path_of(&self, real: &Path) -> Option<String> {
        let real = std::fs::canonicalize(real).ok()?;
        let rel = real.strip_prefix(&self.task_root).ok()?;
        let mut out = String::from(TASK_ROOT);
        for c in rel.components() {
            out.push('/');
            out.push_str(c.as_os_str().to_str()?);
        }
        Some(out)
    }

    /// Reads a module file the resolver returned.
    pub(crate) fn read(&self, virtual_path: &str) -> Result<String, String> {
        let real = self
            .real_file(virtual_path)
            .ok_or_else(|| format!("cannot read module {virtual_path}: it does not exist"))?;
        let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
        if size > MAX_MODULE_BYTES {
            return Err(format!(
                "cannot read module {virtual_path}: it is {size} bytes, more than the {MAX_MODULE_BYTES} bytes a module may have"
            ));
        }
        let bytes =
            std::fs::read(&real).map_err(|e| format!("cannot read module {virtual_path}: {e}"))?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Resolves `specifier` as `require(specifier)` in the module `parent` (a virtual path).
    pub(crate) fn resolve(&self, specifier: &str, parent: &str) -> Resolution {
        match self.resolve_inner(specifier, parent) {
            Ok(Some(found)) => Resolution::Found(found),
            Ok(None) => Resolution::Missing(self.not_found(specifier, parent)),
            Err(message) => Resolution::Missing(message),
        }
    }

    fn not_found(&self, specifier: &str, parent: &str) -> String {
        let mut message = format!("Cannot find module '{specifier}' required by {parent}");
        if is_bare(specifier) {
            let package = package_name(specifier)
                .map(|(name, _)| name)
                .unwrap_or(specifier);
            if self.node_modules.is_some() {
                message.push_str(&format!(
                    ": it is not in the dependency bundle; add '{package}' to the master's dependencies"
                ));
            } else {
                message.push_str(&format!(
                    ": the master shipped no dependency bundle; add '{package}' to the master's dependencies"
                ));
            }
        }
        message
    }

    fn resolve_inner(&self, specifier: &str, parent: &str) -> Result<Option<String>, String> {
        if specifier.contains('\0') {
            return Ok(None);
        }
        let parent_dir = dirname(parent);
        if specifier.starts_with('#') {
            return self.resolve_imports(specifier, parent_dir);
        }
        if !is_bare(specifier) {
            let joined = if specifier.starts_with('/') {
                specifier.to_string()
            } else {
                format!("{parent_dir}/{specifier}")
            };
            let Some(path) = normalize(&joined) else {
                return Ok(None);
            };
            if let Some(found) = self.load_as_file(&path)? {
                return Ok(Some(found));
            }
            return self.load_as_directory(&path);
        }
        self.resolve_bare(specifier, parent_dir)
    }

    fn resolve_bare(&self, specifier: &str, from_dir: &str) -> Result<Option<String>, String> {
        let Some((name, subpath)) = package_name(specifier) else {
            return Ok(None);
        };
        for dir in self.node_modules_dirs(from_dir) {
            let package_dir = format!("{dir}/{name}");
            if let Some(pkg) = self.package_json(&package_dir)
                && let Some(exports) = pkg.get("exports").filter(|e| !e.is_null())
            {
                let sub = if subpath.is_empty() {
                    ".".to_string()
                } else {
                    format!(".{subpath}")
                };
                return match self.resolve_exports(&package_dir, exports, &sub)? {
                    Some(found) => Ok(Some(found)),
                    None => Err(format!(
                        "Cannot find module '{specifier}': package '{name}' does not export '{sub}' for require() (see its package.json \"exports\")"
                    )),
                };
            }
            let path = format!("{dir}/{specifier}");
            if let Some(found) = self.load_as_file(&path)? {
                return Ok(Some(found));
            }
            if let Some(found) = self.load_as_directory(&path)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The `node_modules` directories a bare require from `from_dir` searches, nearest first,
    /// ending with the bundle's.
    fn node_modules_dirs(&self, from_dir: &str) -> Vec<String> {
        let boundary = if within(from_dir, TASK_ROOT) {
            TASK_ROOT
        } else if within(from_dir, DEPS_PARENT) {
            DEPS_PARENT
        } else {
            return vec![DEPS_ROOT.to_string()];
        };
        let mut dirs = Vec::new();
        let mut dir = from_dir.to_string();
        loop {
            if !dir.ends_with("/node_modules") {
                dirs.push(format!("{dir}/node_modules"));
            }
            if dir == boundary {
                break;
            }
            dir = dirname(&dir).to_string();
            if !within(&dir, boundary) {
                break;
            }
        }
        if self.node_modules.is_some() && !dirs.iter().any(|d| d == DEPS_ROOT) {
            dirs.push(DEPS_ROOT.to_string());
        }
        dirs
    }

    fn load_as_file(&self, path: &str) -> Result<Option<String>, String> {
        for candidate in [
            path.to_string(),
            format!("{path}.js"),
            format!("{path}.json"),
            format!("{path}.node"),
        ] {
            if self.real_file(&candidate).is_some() {
                return check_loadable(candidate).map(Some);
            }
        }
        Ok(None)
    }

    fn load_index(&self, dir: &str) -> Result<Option<String>, String> {
        for candidate in [
            format!("{dir}/index.js"),
            format!("{dir}/index.json"),
            format!("{dir}/index.node"),
        ] {
            if self.real_file(&candidate).is_some() {
                return check_loadable(candidate).map(Some);
            }
        }
        Ok(None)
    }

    fn load_as_directory(&self, dir: &str) -> Result<Option<String>, String> {
        if let Some(pkg) = self.package_json(dir)
            && let Some(main) = pkg
                .get("main")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
            && let Some(main_path) = normalize(&format!("{dir}/{main}"))
        {
            if let Some(found) = self.load_as_file(&main_path)? {
                return Ok(Some(found));
            }
            if let Some(found) = self.load_index(&main_path)? {
                return Ok(Some(found));
            }
        }
        self.load_index(dir)
    }

    /// Node's PACKAGE_EXPORTS_RESOLVE for `subpath` ("." or "./x") of the package at `package_dir`.
    fn resolve_exports(
        &self,
        package_dir: &str,
        exports: &Value,
        subpath: &str,
    ) -> Result<Option<String>, String> {
        let is_conditions = match exports {
            Value::Object(map) => !map.keys().any(|k| k.starts_with('.')),
            _ => true,
        };
        if is_conditions {
            if subpath != "." {
                return Ok(None);
            }
            return self.resolve_target(package_dir, exports, None);
        }
        let Value::Object(map) = exports else {
            return Ok(None);
        };
        self.resolve_map(package_dir, map, subpath)
    }

    /// Looks `key` up in an exports/imports map: an exact key, else the longest `*` pattern,
    /// else a legacy trailing-slash folder key.
    fn resolve_map(
        &self,
        package_dir: &str,
        map: &serde_json::Map<String, Value>,
        key: &str,
    ) -> Result<Option<String>, String> {
        if let Some(target) = map.get(key).filter(|_| !key.contains('*')) {
            return self.resolve_target(package_dir, target, None);
        }
        let mut best: Option<(&str, &Value, String)> = None;
        for (pattern, target) in map {
            if let Some(star) = pattern.find('*') {
                let (prefix, suffix) = (&pattern[..star], &pattern[star + 1..]);
                if key.len() >= pattern.len() - 1
                    && key.starts_with(prefix)
                    && key.ends_with(suffix)
                {
                    let matched = key[prefix.len()..key.len() - suffix.len()].to_string();
                    if best
                        .as_ref()
                        .is_none_or(|(p, _, _)| prefix.len() > p.find('*').unwrap_or(0))
                    {
                        best = Some((pattern.as_str(), target, matched));
                    }
                }
            }
        }
        if let Some((_, target, matched)) = best {
            return self.resolve_target(package_dir, target, Some(&matched));
        }
        for (folder, target) in map {
            if folder.ends_with('/')
                && let Some(rest) = key.strip_prefix(folder.as_str())
                && let Some(base) = target.as_str()
            {
                return self.resolve_target(
                    package_dir,
                    &Value::String(format!("{base}{rest}")),
                    None,
                );
            }
        }
        Ok(None)
    }

    fn resolve_target(
        &self,
        package_dir: &str,
        target: &Value,
        pattern: Option<&str>,
    ) -> Result<Option<String>, String> {
        match target {
            Value::String(t) => {
                let t = match pattern {
                    Some(p) => t.replace('*', p),
                    None => t.clone(),
                };
                let Some(rel) = t.strip_prefix("./") else {
                    // Only `imports` may map to a bare package name.
                    return Ok(None);
                };
                let Some(path) = normalize(&format!("{package_dir}/{rel}")) else {
                    return Ok(None);
                };
                if !within(&path, package_dir) {
                    return Ok(None);
                }
                if self.real_file(&path).is_some() {
                    return check_loadable(path).map(Some);
                }
                Ok(None)
            }
            Value::Array(targets) => {
                for t in targets {
                    if let Some(found) = self.resolve_target(package_dir, t, pattern)? {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
            Value::Object(conditions) => {
                for (condition, t) in conditions {
                    if CONDITIONS.contains(&condition.as_str())
                        && let Some(found) = self.resolve_target(package_dir, t, pattern)?
                    {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// `#name` specifiers: the `imports` map of the nearest package.json above `from_dir`.
    fn resolve_imports(&self, specifier: &str, from_dir: &str) -> Result<Option<String>, String> {
        let mut dir = from_dir.to_string();
        loop {
            if let Some(pkg) = self.package_json(&dir) {
                let Some(Value::Object(imports)) = pkg.get("imports") else {
                    return Ok(None);
                };
                if let Some(target) = imports.get(specifier).filter(|_| !specifier.contains('*')) {
                    // A bare target names a package, resolved from the importing package.
                    if let Some(t) = self.first_condition(target)
                        && !t.starts_with("./")
                    {
                        return self.resolve_bare(&t, &dir);
                    }
                }
                return self.resolve_map(&dir, imports, specifier);
            }
            if dir == TASK_ROOT || dir == DEPS_ROOT || dir == "/" {
                return Ok(None);
            }
            dir = dirname(&dir).to_string();
        }
    }

    fn first_condition(&self, target: &Value) -> Option<String> {
        match target {
            Value::String(s) => Some(s.clone()),
            Value::Object(conditions) => conditions
                .iter()
                .find(|(c, _)| CONDITIONS.contains(&c.as_str()))
                .and_then(|(_, t)| self.first_condition(t)),
            Value::Array(targets) => targets.first().and_then(|t| self.first_condition(t)),
            _ => None,
        }
    }

    fn package_json(&self, dir: &str) -> Option<Value> {
        let path = format!("{dir}/package.json");
        if let Some(cached) = self.packages.borrow().get(&path) {
            return cached.clone();
        }
        let parsed = self
            .real_file(&path)
            .and_then(|real| std::fs::read(real).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        self.packages.borrow_mut().insert(path, parsed.clone());
        parsed
    }

    /// The real path of a virtual path, if it is a regular file inside one of the two trees
    /// (after following any symlink).
    fn real_file(&self, virtual_path: &str) -> Option<PathBuf> {
        let (root, rest) = if let Some(rest) = strip_root(virtual_path, TASK_ROOT) {
            (&self.task_root, rest)
        } else if let Some(rest) = strip_root(virtual_path, DEPS_ROOT) {
            (self.node_modules.as_ref()?, rest)
        } else {
            return None;
        };
        let mut real = root.clone();
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            if part == "."
                || part == ".."
                || (cfg!(windows) && (part.contains('\\') || part.contains(':')))
            {
                return None;
            }
            real.push(part);
        }
        let canonical = std::fs::canonicalize(&real).ok()?;
        if !canonical.starts_with(root) || !canonical.is_file() {
            return None;
        }
        Some(canonical)
    }
}

fn check_loadable(path: String) -> Result<String, String> {
    if path.ends_with(".node") {
        return Err(format!(
            "{path} is a native addon; the queuexec JavaScript runtime runs pure JavaScript only"
        ));
    }
    if path.ends_with(".mjs") {
        return Err(format!(
            "{path} is an ES module; the queuexec JavaScript runtime loads CommonJS (require) only"
        ));
    }
    Ok(path)
}

/// `./x`, `../x`, `/x`, `.` and `..` are paths; anything else names a package.
fn is_bare(specifier: &str) -> bool {
    !(specifier.starts_with("./")
        || specifier.starts_with("../")
        || specifier.starts_with('/')
        || specifier == "."
        || specifier == "..")
}

/// Splits a bare specifier into its package name (`name` or `@scope/name`) and the rest
/// (empty or starting with `/`).
fn package_name(specifier: &str) -> Option<(&str, &str)> {
    let end = if specifier.starts_with('@') {
        let slash = specifier.find('/')?;
        specifier[slash + 1..]
            .find('/')
            .map(|i| slash + 1 + i)
            .unwrap_or(specifier.len())
    } else {
        specifier.find('/').unwrap_or(specifier.len())
    };
    let name = &specifier[..end];
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('\\')
        || name.contains('%')
        || name.ends_with('/')
    {
        return None;
    }
    Some((name, &specifier[end..]))
}

/// Lexically normalizes an absolute virtual path; `None` when `..` climbs above `/`.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn within(path: &str, root: &str) -> bool {
    strip_root(path, root).is_some()
}

fn strip_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn fixture() -> (tempfile::TempDir, ModuleFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let task = dir.path().join("task");
        let nm = dir.path().join("bundle/node_modules");
        write(&task, "task.js", "");
        write(&task, "lib/Helper.js", "");
        write(&task, "data/config.json", "{}");
        write(&task, "dir/index.js", "");
        write(&nm, "plain/index.js", "");
        write(&nm, "withmain/package.json", r#"{"main": "lib/entry"}"#);
        write(&nm, "withmain/lib/entry.js", "");
        write(&nm, "withmain/lib/other.js", "");
        write(&nm, "withmain/node_modules/nested/index.js", "");
        write(&nm, "nested/index.js", "");
        write(
            &nm,
            "exp/package.json",
            r#"{"main": "ignored.js", "exports": {".": {"import": "./esm.mjs", "require": "./cjs.js"}, "./feature": "./lib/feature.js", "./sub/*": "./lib/sub/*.js", "./package.json": "./package.json"}}"#,
        );
        write(&nm, "exp/cjs.js", "");
        write(&nm, "exp/lib/feature.js", "");
        write(&nm, "exp/lib/sub/a.js", "");
        write(&nm, "exp/lib/hidden.js", "");
        write(&nm, "sugar/package.json", r#"{"exports": "./main.js"}"#);
        write(&nm, "sugar/main.js", "");
        write(
            &nm,
            "@scope/pkg/package.json",
            r#"{"main": "./dist/index.js"}"#,
        );
        write(&nm, "@scope/pkg/dist/index.js", "");
        write(
            &nm,
            "imp/package.json",
            r##"{"main": "index.js", "imports": {"#util": "./src/util.js", "#dep": "plain"}}"##,
        );
        write(&nm, "imp/index.js", "");
        write(&nm, "imp/src/util.js", "");
        write(&nm, "addon/index.node", "");
        let files = ModuleFiles::new(&task, Some(&nm)).expect("module files");
        (dir, files)
    }

    fn found(files: &ModuleFiles, spec: &str, parent: &str) -> String {
        match files.resolve(spec, parent) {
            Resolution::Found(f) => f,
            Resolution::Missing(m) => panic!("{spec} from {parent}: {m}"),
        }
    }

    fn missing(files: &ModuleFiles, spec: &str, parent: &str) -> String {
        match files.resolve(spec, parent) {
            Resolution::Found(f) => panic!("{spec} from {parent} resolved to {f}"),
            Resolution::Missing(m) => m,
        }
    }

    #[test]
    fn relative_requires_resolve_among_the_task_files() {
        let (_d, f) = fixture();
        assert_eq!(
            found(&f, "./lib/Helper.js", "/task/task.js"),
            "/task/lib/Helper.js"
        );
        assert_eq!(
            found(&f, "./lib/Helper", "/task/task.js"),
            "/task/lib/Helper.js"
        );
        assert_eq!(
            found(&f, "../task.js", "/task/lib/Helper.js"),
            "/task/task.js"
        );
        assert_eq!(
            found(&f, "./data/config", "/task/task.js"),
            "/task/data/config.json"
        );
        assert_eq!(found(&f, "./dir", "/task/task.js"), "/task/dir/index.js");
    }

    #[test]
    fn bare_requires_follow_node_rules_in_the_bundle() {
        let (_d, f) = fixture();
        assert_eq!(
            found(&f, "plain", "/task/task.js"),
            "/deps/node_modules/plain/index.js"
        );
        assert_eq!(
            found(&f, "withmain", "/task/task.js"),
            "/deps/node_modules/withmain/lib/entry.js"
        );
        assert_eq!(
            found(&f, "withmain/lib/other", "/task/task.js"),
            "/deps/node_modules/withmain/lib/other.js"
        );
        assert_eq!(
            found(&f, "@scope/pkg", "/task/task.js"),
            "/deps/node_modules/@scope/pkg/dist/index.js"
        );
        // A nested node_modules wins over the top level for files of that package.
        assert_eq!(
            found(&f, "nested", "/deps/node_modules/withmain/lib/entry.js"),
            "/deps/node_modules/withmain/node_modules/nested/index.js"
        );
        assert_eq!(
            found(&f, "nested", "/task/task.js"),
            "/deps/node_modules/nested/index.js"
        );
    }

    #[test]
    fn exports_use_the_require_condition_and_hide_unexported_paths() {
        let (_d, f) = fixture();
        assert_eq!(
            found(&f, "exp", "/task/task.js"),
            "/deps/node_modules/exp/cjs.js"
        );
        assert_eq!(
            found(&f, "exp/feature", "/task/task.js"),
            "/deps/node_modules/exp/lib/feature.js"
        );
        assert_eq!(
            found(&f, "exp/sub/a", "/task/task.js"),
            "/deps/node_modules/exp/lib/sub/a.js"
        );
        assert_eq!(
            found(&f, "sugar", "/task/task.js"),
            "/deps/node_modules/sugar/main.js"
        );
        let m = missing(&f, "exp/lib/hidden.js", "/task/task.js");
        assert!(m.contains("does not export './lib/hidden.js'"), "{m}");
    }

    #[test]
    fn package_imports_map_hash_specifiers() {
        let (_d, f) = fixture();
        assert_eq!(
            found(&f, "#util", "/deps/node_modules/imp/index.js"),
            "/deps/node_modules/imp/src/util.js"
        );
        assert_eq!(
            found(&f, "#dep", "/deps/node_modules/imp/index.js"),
            "/deps/node_modules/plain/index.js"
        );
    }

    #[test]
    fn missing_modules_name_the_module_and_the_file_that_asked() {
        let (_d, f) = fixture();
        let m = missing(&f, "./nope", "/task/lib/Helper.js");
        assert!(
            m.contains("'./nope'") && m.contains("/task/lib/Helper.js"),
            "{m}"
        );
        let m = missing(&f, "left-pad", "/task/task.js");
        assert!(
            m.contains("'left-pad'") && m.contains("/task/task.js") && m.contains("dependencies"),
            "{m}"
        );
    }

    #[test]
    fn paths_outside_the_two_trees_do_not_exist() {
        let (d, f) = fixture();
        std::fs::write(d.path().join("secret.js"), "").expect("write");
        missing(&f, "../secret.js", "/task/task.js");
        missing(&f, "../../../../etc/passwd", "/task/task.js");
        missing(&f, "/etc/passwd", "/task/task.js");
        missing(&f, "../bundle/node_modules/plain/index.js", "/task/task.js");
        assert!(f.read("/etc/passwd").is_err());
        assert!(f.read("/task/../secret.js").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_task_are_refused() {
        let (d, f) = fixture();
        std::fs::write(d.path().join("secret.js"), "").expect("write");
        std::os::unix::fs::symlink(d.path().join("secret.js"), d.path().join("task/link.js"))
            .expect("symlink");
        missing(&f, "./link.js", "/task/task.js");
        assert!(f.read("/task/link.js").is_err());
    }

    #[test]
    fn native_addons_are_refused_with_a_reason() {
        let (_d, f) = fixture();
        let m = missing(&f, "addon", "/task/task.js");
        assert!(m.contains("native addon"), "{m}");
    }
}
