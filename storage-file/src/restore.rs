//! Restoring concerns of a root: a copy is built in a staged root beside
//! it, then each concern's folders are moved in, the replaced ones kept in
//! an aside root.

use std::path::Path;

use runstore_core::{Error, Result};

use crate::FileStore;
use crate::fsutil::{Root, take_lock};

/// The folders of a root that hold one concern's records, and the lock
/// files its writers take. `None` for a name that is not a concern.
fn layout(concern: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match concern {
        "workflows" => (&["workflows"], &[crate::workflows::LOCK]),
        "logs" => (
            &["logs", "index", "coord"],
            &[crate::logs::LOCK, "coord.lock"],
        ),
        "metrics" => (&["metrics"], &[crate::metrics::LOCK]),
        "artifacts" => (&["artifacts"], &[crate::artifacts::LOCK]),
        _ => return None,
    })
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing the folder {}", dir.display()), e))
}

impl FileStore {
    /// Moves the folders of `concerns` (`workflows`, `logs`, `metrics`,
    /// `artifacts`) from the root `staged` (restored beside `root`, by
    /// importing into a [`FileStore`] there) into `root`, keeping the
    /// replaced folders in the new root `aside`. Each concern is moved under
    /// the exclusive locks its writers take, so a process with the root open
    /// finds the new files the next time it takes them (as after a
    /// compaction). Every step checks what is already done, so it can be run
    /// again after a crash; `staged` is removed at the end.
    pub async fn swap_in(
        staged: impl AsRef<Path>,
        root: impl AsRef<Path>,
        aside: impl AsRef<Path>,
        concerns: &[&str],
    ) -> Result<()> {
        let (staged, root, aside) = (
            staged.as_ref().to_path_buf(),
            root.as_ref().to_path_buf(),
            aside.as_ref().to_path_buf(),
        );
        let mut layouts = Vec::new();
        for c in concerns {
            layouts.push(layout(c).ok_or_else(|| {
                Error::invalid("concern", format!("`{c}` is not a concern of a file root"))
            })?);
        }
        tokio::task::spawn_blocking(move || {
            if !staged.exists() {
                return Ok(());
            }
            std::fs::create_dir_all(&root)
                .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
            let format = crate::FORMAT_FILE;
            if !root.join(format).exists() && staged.join(format).exists() {
                std::fs::copy(staged.join(format), root.join(format)).map_err(|e| {
                    Error::io(format!("writing {}", root.join(format).display()), e)
                })?;
            }
            let r = Root {
                dir: root.clone(),
                sync_new_dirs: true,
                read_only: false,
            };
            for (folders, locks) in layouts {
                let _guards = locks
                    .iter()
                    .map(|l| take_lock(&r, l, true))
                    .collect::<Result<Vec<_>>>()?;
                for folder in folders {
                    let (from, here, kept) =
                        (staged.join(folder), root.join(folder), aside.join(folder));
                    if !from.exists() {
                        continue;
                    }
                    // An empty folder (a root just created) is not kept.
                    if here.exists() && std::fs::remove_dir(&here).is_err() {
                        std::fs::create_dir_all(&aside)
                            .map_err(|e| Error::io(format!("creating {}", aside.display()), e))?;
                        rename(&here, &kept)?;
                    }
                    rename(&from, &here)?;
                }
                sync_dir(&root)?;
            }
            std::fs::remove_dir_all(&staged)
                .map_err(|e| Error::io(format!("removing {}", staged.display()), e))?;
            if aside.exists() {
                sync_dir(&aside)?;
            }
            sync_dir(
                root.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
        })
        .await
        .map_err(|e| Error::backend("restoring a file root", Some(e.into())))?
    }
}
