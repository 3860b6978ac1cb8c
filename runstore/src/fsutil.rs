//! Small durable file-system steps shared by dumps and backups.

use std::path::Path;

use crate::{Error, Result};

/// Syncs a folder, so the names created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing the folder {}", dir.display()), e))
}

/// Writes `bytes` to `path` whole or not at all: a synced temp file renamed
/// over it, then the folder synced.
pub(crate) async fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let what = |e| Error::io(format!("writing {}", path.display()), e);
    tokio::fs::write(&tmp, bytes).await.map_err(what)?;
    tokio::fs::File::open(&tmp)
        .await
        .map_err(what)?
        .sync_all()
        .await
        .map_err(what)?;
    tokio::fs::rename(&tmp, path).await.map_err(what)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
