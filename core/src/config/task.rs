//! Which manifest file is the task's entry (task.js), and the asset list a master ships when
//! it is given a task file plus further files (the CLI's `--task`/`--file`, Python's
//! `task=`/`assets=`).

use std::path::{Component, Path, PathBuf};

use crate::assets::{AssetSpec, ManifestEntry};
use crate::error::{Error, Result};

/// The entry point of a task: the file workers run.
pub const TASK_ENTRY: &str = "task.js";

/// The manifest file that is the task's entry: the one named [`TASK_ENTRY`], else the first
/// whose worker path's last segment is `task.js` (so `src/task.js` counts, `mytask.js` does
/// not). `None` when the master shipped no task.
pub fn task_entry(files: &[ManifestEntry]) -> Option<&ManifestEntry> {
    files.iter().find(|f| f.name == TASK_ENTRY).or_else(|| {
        files
            .iter()
            .find(|f| f.worker_path.rsplit('/').next() == Some(TASK_ENTRY))
    })
}

/// The assets for a task file plus further files: `task` (anywhere on the master) ships as
/// `task.js` at the workplace's root; each of `files` ships under its own name at the same
/// relative path it has on the master.
///
/// # Errors
/// [`Error::Config`] for a file given with an absolute path or one that climbs out with `..`
/// (it would have no place in the workplace).
pub fn asset_specs(task: Option<&Path>, files: &[PathBuf]) -> Result<Vec<AssetSpec>> {
    let mut specs = Vec::with_capacity(files.len() + 1);
    if let Some(task) = task {
        specs.push(AssetSpec {
            name: TASK_ENTRY.to_owned(),
            master_path: task.to_path_buf(),
            worker_path: TASK_ENTRY.to_owned(),
        });
    }
    for file in files {
        let mut parts = Vec::new();
        for component in file.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => {
                    return Err(Error::config(format!(
                        "asset file {}: give a path relative to the current directory, without \
                         `..`; workers install it at the same relative path in their workplace",
                        file.display()
                    )));
                }
            }
        }
        let Some(name) = parts.last().cloned() else {
            return Err(Error::config(format!(
                "asset file {:?} names no file; give the path of a file",
                file.display().to_string()
            )));
        };
        specs.push(AssetSpec {
            name,
            master_path: file.clone(),
            worker_path: parts.join("/"),
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::Sha256;

    fn entry(name: &str, worker_path: &str) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            worker_path: worker_path.into(),
            sha256: Sha256([7; 32]),
            size: 1,
        }
    }

    #[test]
    fn the_file_named_task_js_is_the_entry() {
        let files = [
            entry("helper", "lib/task.js"),
            entry("task.js", "src/main.js"),
        ];
        assert_eq!(
            task_entry(&files).map(|f| f.worker_path.as_str()),
            Some("src/main.js")
        );
    }

    #[test]
    fn else_the_file_whose_last_path_segment_is_task_js() {
        let files = [entry("a", "mytask.js"), entry("b", "src/task.js")];
        assert_eq!(task_entry(&files).map(|f| f.name.as_str()), Some("b"));
        assert!(task_entry(&[entry("a", "mytask.js")]).is_none());
        assert!(task_entry(&[]).is_none());
    }

    #[test]
    fn a_task_ships_as_task_js_and_files_keep_their_relative_paths() {
        let specs = asset_specs(
            Some(Path::new("/abs/where/t.js")),
            &[PathBuf::from("./lib/util.js"), PathBuf::from("data.json")],
        )
        .expect("specs");
        let got: Vec<_> = specs
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.master_path.clone(),
                    s.worker_path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("task.js", PathBuf::from("/abs/where/t.js"), "task.js"),
                ("util.js", PathBuf::from("./lib/util.js"), "lib/util.js"),
                ("data.json", PathBuf::from("data.json"), "data.json"),
            ]
        );
    }

    #[test]
    fn absolute_and_climbing_file_paths_are_refused() {
        for bad in ["/etc/passwd", "../up.js", "a/../../b.js"] {
            let message = asset_specs(None, &[PathBuf::from(bad)])
                .expect_err(bad)
                .to_string();
            assert!(
                message.contains("relative to the current directory"),
                "{message}"
            );
            assert!(message.contains(bad), "{message}");
        }
        assert!(asset_specs(None, &[PathBuf::from(".")]).is_err());
    }
}
