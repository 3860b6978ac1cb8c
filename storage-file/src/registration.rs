//! `type: file` in a configuration file: the options are [`FileConfig`]'s
//! fields, and [`FileBackend`] checks and opens them. Concerns naming one
//! folder share one [`FileStore`].

use std::path::PathBuf;

use async_trait::async_trait;
use runstore_core::Result;
use runstore_core::backend::{
    Backend, BackendConfig, BackendFactory, canonical_path_key, path_marker_exists,
};

use crate::{Durability, FORMAT_FILE, FileConfig, FileStore};

/// The `type` name of the file backend.
pub const TYPE_NAME: &str = "file";

/// The [`BackendFactory`] of `type: file`.
///
/// ```
/// use runstore_core::backend::{BackendConfig, BackendFactory, Concern, Mapping};
/// let mut options = Mapping::new();
/// options.insert("path".into(), "./data".into());
/// options.insert("durability".into(), "sometimes".into());
/// let config = BackendConfig::new(Concern::Workflows, "file", options);
/// let err = runstore_file::FileBackend.validate(&config).unwrap_err();
/// assert!(err.contains("durability"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FileBackend;

/// The section's [`FileConfig`], its path resolved against the
/// configuration file's folder.
fn read(config: &BackendConfig) -> std::result::Result<FileConfig, String> {
    config.parse_path_options(|c: &mut FileConfig| &mut c.path)
}

fn path_of(config: &BackendConfig) -> Result<PathBuf> {
    read(config).map(|c| c.path).map_err(|e| config.error(e))
}

#[async_trait]
impl BackendFactory for FileBackend {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        read(config).map(|_| ())
    }

    fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
        Ok(Some(canonical_path_key(&path_of(config)?)))
    }

    /// A file root exists once its format file does.
    fn exists(&self, config: &BackendConfig) -> Result<Option<bool>> {
        Ok(Some(path_marker_exists(
            &path_of(config)?.join(FORMAT_FILE),
        )))
    }

    async fn open(&self, config: &BackendConfig) -> Result<Backend> {
        let mut c = read(config).map_err(|e| config.error(e))?;
        c.read_only |= config.read_only;
        Ok(Backend::all(FileStore::open(c).await?))
    }
}

/// Reads `durability: fsync | group_commit | none` with a message listing
/// the values.
pub(crate) fn durability<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Durability, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    match name.as_str() {
        "fsync" => Ok(Durability::Fsync),
        "group_commit" | "group-commit" => Ok(Durability::GroupCommit),
        "none" => Ok(Durability::None),
        other => Err(serde::de::Error::custom(format!(
            "option `durability`: unknown value {other:?}; use fsync (default), group_commit or none"
        ))),
    }
}
