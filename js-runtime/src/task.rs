//! [`TaskSource`]: where a task's code is on the worker.

use std::path::{Path, PathBuf};

use queuexec_core::{Manifest, Workplace, unpack_dependency_bundle};

use crate::error::JsError;

/// The file name a task's entry has.
pub const TASK_FILE: &str = queuexec_core::config::TASK_ENTRY;

/// A task's code on disk: its entry file (task.js), the directory of the files the master
/// shipped (relative requires resolve among them), and the unpacked `node_modules` of its
/// dependency bundle (bare requires resolve there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSource {
    root: PathBuf,
    entry: PathBuf,
    node_modules: Option<PathBuf>,
}

impl TaskSource {
    /// A task whose entry is `entry`, a file inside `root`.
    pub fn new(
        root: impl Into<PathBuf>,
        entry: impl Into<PathBuf>,
        node_modules: Option<PathBuf>,
    ) -> Result<TaskSource, JsError> {
        let root = root.into();
        let entry = entry.into();
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| JsError::Io {
                action,
                path,
                source,
            }
        };
        let root = std::fs::canonicalize(&root).map_err(io("opening the task directory", &root))?;
        let entry = std::fs::canonicalize(&entry).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                JsError::TaskNotFound(format!(
                    "there is no {} (the task's entry file)",
                    entry.display()
                ))
            } else {
                io("opening the task's entry file", &entry)(e)
            }
        })?;
        if !entry.starts_with(&root) || !entry.is_file() {
            return Err(JsError::TaskNotFound(format!(
                "{} is not a file inside the task directory {}",
                entry.display(),
                root.display()
            )));
        }
        let node_modules = match node_modules {
            Some(dir) => {
                let canonical = std::fs::canonicalize(&dir)
                    .map_err(io("opening the dependencies' node_modules", &dir))?;
                if !canonical.is_dir() {
                    return Err(JsError::Io {
                        action: "opening the dependencies' node_modules",
                        path: dir,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotADirectory,
                            "not a directory",
                        ),
                    });
                }
                Some(canonical)
            }
            None => None,
        };
        Ok(TaskSource {
            root,
            entry,
            node_modules,
        })
    }

    /// `dir/task.js`, with bare requires resolved in `node_modules` when given.
    pub fn from_dir(dir: &Path, node_modules: Option<PathBuf>) -> Result<TaskSource, JsError> {
        TaskSource::new(dir, dir.join(TASK_FILE), node_modules)
    }

    /// The task a master shipped into a worker's workplace: the manifest file the core picks as
    /// the entry ([`queuexec_core::config::task_entry`]), with the manifest's dependency
    /// bundle unpacked (once per bundle hash) for bare requires.
    ///
    /// Blocking: it may unpack an archive. Call it off async threads.
    pub fn from_workplace(
        workplace_root: &Path,
        manifest: &Manifest,
    ) -> Result<TaskSource, JsError> {
        let entry = queuexec_core::config::task_entry(&manifest.files).ok_or_else(|| {
                let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
                JsError::TaskNotFound(format!(
                    "the master shipped no task.js (its files: {}); a JavaScript worker needs the master to ship its task.js",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ))
            })?;
        let workplace = Workplace::open(workplace_root)?;
        let entry_path = workplace.resolve(&entry.worker_path)?;
        let node_modules = match &manifest.dependency_bundle {
            Some(bundle) => Some(unpack_dependency_bundle(&workplace, bundle)?),
            None => None,
        };
        TaskSource::new(workplace.root(), entry_path, node_modules)
    }

    /// The directory of the task's files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry file (task.js).
    pub fn entry(&self) -> &Path {
        &self.entry
    }

    /// The dependency bundle's `node_modules`, if the task has one.
    pub fn node_modules(&self) -> Option<&Path> {
        self.node_modules.as_deref()
    }
}
