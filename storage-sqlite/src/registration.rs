//! `type: sqlite` in a configuration file: the options are
//! [`SqliteConfig`]'s fields, and [`SqliteBackend`] checks and opens them.
//! Concerns naming one database file share one [`SqliteStore`].

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use runstore_core::Result;
use runstore_core::backend::{
    Backend, BackendConfig, BackendFactory, canonical_path_key, deserialize_duration,
    option_message, path_marker_exists,
};

use crate::{SqliteConfig, SqliteStore, Synchronous};

/// The `type` name of the SQLite backend.
pub const TYPE_NAME: &str = "sqlite";

/// Most reader connections a store may open.
pub(crate) const MAX_READERS: usize = 64;

/// The [`BackendFactory`] of `type: sqlite`.
///
/// ```
/// use runstore_core::backend::{BackendConfig, BackendFactory, Concern, Mapping};
/// let mut options = Mapping::new();
/// options.insert("path".into(), "./data/runstore.db".into());
/// options.insert("readers".into(), 0.into());
/// let config = BackendConfig::new(Concern::Logs, "sqlite", options);
/// let err = runstore_sqlite::SqliteBackend.validate(&config).unwrap_err();
/// assert!(err.contains("readers"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteBackend;

/// The section's [`SqliteConfig`], checked, its path resolved against the
/// configuration file's folder.
fn read(config: &BackendConfig) -> std::result::Result<SqliteConfig, String> {
    let c = config.parse_path_options(|c: &mut SqliteConfig| &mut c.path)?;
    c.validate().map_err(|e| option_message(&e))?;
    Ok(c)
}

fn path_of(config: &BackendConfig) -> Result<PathBuf> {
    read(config).map(|c| c.path).map_err(|e| config.error(e))
}

#[async_trait]
impl BackendFactory for SqliteBackend {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        read(config).map(|_| ())
    }

    fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
        Ok(Some(canonical_path_key(&path_of(config)?)))
    }

    fn exists(&self, config: &BackendConfig) -> Result<Option<bool>> {
        Ok(Some(path_marker_exists(&path_of(config)?)))
    }

    async fn open(&self, config: &BackendConfig) -> Result<Backend> {
        let mut c = read(config).map_err(|e| config.error(e))?;
        c.read_only |= config.read_only;
        Ok(Backend::all(SqliteStore::open(c).await?))
    }
}

/// Reads `synchronous: normal | full`, in any case.
pub(crate) fn synchronous<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Synchronous, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    match name.to_ascii_lowercase().as_str() {
        "normal" => Ok(Synchronous::Normal),
        "full" => Ok(Synchronous::Full),
        other => Err(serde::de::Error::custom(format!(
            "option `synchronous`: unknown value {other:?}; use normal (default) or full"
        ))),
    }
}

pub(crate) fn busy_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    deserialize_duration("busy_timeout", d)
}

pub(crate) fn default_busy_timeout() -> Duration {
    Duration::from_millis(5000)
}

pub(crate) fn default_readers() -> usize {
    4
}

/// The accepted `checkpoint_pages`: below 100 pages a busy writer copies
/// the log almost every commit; above 1,000,000 (4 GiB) the log is a
/// second database.
pub(crate) const CHECKPOINT_PAGES: std::ops::RangeInclusive<u32> = 100..=1_000_000;

pub(crate) fn default_checkpoint_pages() -> u32 {
    10_000
}
