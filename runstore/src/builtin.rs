//! Factories of the built-in backend types.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use runstore_core::Result;
use serde::Deserialize;

use crate::config::BackendConfig;
use crate::registry::{Backend, BackendFactory, BackendHandle};

/// `type: memory`: the reference in-memory backend. Nothing persists; each
/// concern gets its own handle.
pub(crate) struct MemoryFactory;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryOptions {}

#[async_trait]
impl BackendFactory for MemoryFactory {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        config.parse_options::<MemoryOptions>().map(|_| ())
    }

    async fn open(&self, _config: &BackendConfig) -> Result<Backend> {
        let s = runstore_core::memory::store_set();
        Ok(Backend {
            workflows: Some(s.workflows),
            logs: Some(s.logs),
            metrics: Some(s.metrics),
            artifacts: Some(s.artifacts),
            handle: BackendHandle::Memory,
        })
    }
}

/// The canonical form of `path` even when it does not exist yet: the
/// deepest existing ancestor canonicalized, then the rest appended. Two
/// spellings of one file (`./a/../db`, a symlinked folder) give one key.
#[cfg_attr(not(any(feature = "file", feature = "sqlite")), allow(dead_code))]
pub(crate) fn canonical_key(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut existing = absolute.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out).display().to_string();
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalize(&absolute).display().to_string(),
        }
    }
}

/// Removes `.` and resolves `..` lexically (only for the part that does not
/// exist yet, where there is no symlink to follow).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The options of a backend kept at the path of its `path` option (file,
/// SQLite).
#[cfg(any(feature = "file", feature = "sqlite"))]
trait PathOptions: serde::de::DeserializeOwned {
    /// The store's own options.
    type Store;
    /// The `path` option as written.
    fn path(&self) -> &str;
    /// The store's options from the other options, or what is wrong.
    fn store_options(&self) -> std::result::Result<Self::Store, String>;
    /// The file whose presence says a store exists at `path` (the path
    /// itself by default).
    fn marker(path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// Parses and checks the options `O` of `config`: the path resolved against
/// the configuration's folder, and the store's options.
#[cfg(any(feature = "file", feature = "sqlite"))]
fn read_at_path<O: PathOptions>(
    config: &BackendConfig,
) -> std::result::Result<(PathBuf, O::Store), String> {
    let o: O = config.parse_options()?;
    if o.path().is_empty() {
        return Err("option `path` must not be empty".into());
    }
    Ok((config.resolve_path(o.path()), o.store_options()?))
}

/// `validate` and `share_key` of a [`BackendFactory`] whose options are the
/// [`PathOptions`] `$options`: concerns naming one canonical path share one
/// handle.
#[cfg(any(feature = "file", feature = "sqlite"))]
macro_rules! path_backend_methods {
    ($options:ty) => {
        fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
            read_at_path::<$options>(config).map(|_| ())
        }

        fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
            let (path, _) = read_at_path::<$options>(config).map_err(|e| config.error(e))?;
            Ok(Some(canonical_key(&path)))
        }

        fn exists(&self, config: &BackendConfig) -> Result<Option<bool>> {
            let (path, _) = read_at_path::<$options>(config).map_err(|e| config.error(e))?;
            let marker = <$options as PathOptions>::marker(&path);
            Ok(Some(std::fs::symlink_metadata(&marker).is_ok()))
        }
    };
}

#[cfg(feature = "file")]
pub(crate) use file::FileFactory;

#[cfg(feature = "file")]
mod file {
    use super::*;
    use runstore_file::{Durability, FileOptions, FileStore};

    /// `type: file`: one folder holds workflows (YAML) and artifacts.
    pub(crate) struct FileFactory;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        path: String,
        #[serde(default)]
        durability: Option<String>,
    }

    fn durability(name: &str) -> std::result::Result<Durability, String> {
        crate::builtin::file_durability(name)
    }

    impl PathOptions for Options {
        type Store = FileOptions;

        fn path(&self) -> &str {
            &self.path
        }

        fn store_options(&self) -> std::result::Result<FileOptions, String> {
            let mut fo = FileOptions::default();
            if let Some(d) = &self.durability {
                fo.durability = durability(d)?;
            }
            Ok(fo)
        }

        /// A file root exists once its format file does.
        fn marker(path: &Path) -> PathBuf {
            path.join(runstore_file::FORMAT_FILE)
        }
    }

    #[async_trait]
    impl BackendFactory for FileFactory {
        path_backend_methods!(Options);

        async fn open(&self, config: &BackendConfig) -> Result<Backend> {
            let (path, fo) = read_at_path::<Options>(config).map_err(|e| config.error(e))?;
            let store = FileStore::open(path, fo).await?;
            Ok(Backend::all(store.clone(), BackendHandle::File(store)))
        }
    }
}

#[cfg(feature = "file")]
fn file_durability(name: &str) -> std::result::Result<runstore_file::Durability, String> {
    use runstore_file::Durability;
    match name {
        "fsync" => Ok(Durability::Fsync),
        "group_commit" | "group-commit" => Ok(Durability::GroupCommit),
        "none" => Ok(Durability::None),
        other => Err(format!(
            "option `durability`: unknown value {other:?}; use fsync (default), group_commit or none"
        )),
    }
}

#[cfg(feature = "sqlite")]
pub(crate) use sqlite::SqliteFactory;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use runstore_sqlite::{SqliteOptions, SqliteStore};

    /// `type: sqlite`: one database file; concerns naming the same file
    /// share one handle.
    pub(crate) struct SqliteFactory;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        path: String,
        #[serde(default)]
        synchronous: Option<String>,
        #[serde(default)]
        busy_timeout: Option<serde_yaml::Value>,
        #[serde(default)]
        readers: Option<usize>,
    }

    impl PathOptions for Options {
        type Store = SqliteOptions;

        fn path(&self) -> &str {
            &self.path
        }

        fn store_options(&self) -> std::result::Result<SqliteOptions, String> {
            let mut so = SqliteOptions::default();
            if let Some(s) = &self.synchronous {
                so.synchronous = crate::builtin::sqlite_synchronous(s)?;
            }
            if let Some(t) = &self.busy_timeout {
                so.busy_timeout = crate::builtin::duration("busy_timeout", t)?;
            }
            if let Some(n) = self.readers {
                if n == 0 || n > 64 {
                    return Err("option `readers` must be 1 to 64".into());
                }
                so.readers = n;
            }
            Ok(so)
        }
    }

    #[async_trait]
    impl BackendFactory for SqliteFactory {
        path_backend_methods!(Options);

        async fn open(&self, config: &BackendConfig) -> Result<Backend> {
            let (path, so) = read_at_path::<Options>(config).map_err(|e| config.error(e))?;
            // A fresh machine has no ./runstore-data yet.
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    runstore_core::Error::io(format!("creating folder {}", parent.display()), e)
                })?;
            }
            let store = SqliteStore::open(path, so).await?;
            Ok(Backend::all(store.clone(), BackendHandle::Sqlite(store)))
        }
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_synchronous(name: &str) -> std::result::Result<runstore_sqlite::Synchronous, String> {
    use runstore_sqlite::Synchronous;
    match name.to_ascii_lowercase().as_str() {
        "normal" => Ok(Synchronous::Normal),
        "full" => Ok(Synchronous::Full),
        other => Err(format!(
            "option `synchronous`: unknown value {other:?}; use normal (default) or full"
        )),
    }
}

/// A duration option: a number of seconds, or a string with a unit
/// (`500ms`, `5s`, `2m`), more than 0 and at most a day.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
fn duration(key: &str, v: &serde_yaml::Value) -> std::result::Result<std::time::Duration, String> {
    let bad = || {
        format!(
            "option `{key}` must be seconds (e.g. 5 or 0.5) or a string like \"500ms\", \"5s\", \"2m\""
        )
    };
    let secs = match v {
        serde_yaml::Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        serde_yaml::Value::String(s) => {
            let s = s.trim();
            let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
                (n, 0.001)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else {
                (s, 1.0)
            };
            num.trim().parse::<f64>().map_err(|_| bad())? * mul
        }
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!(
            "option `{key}` must be more than 0 and at most 1 day"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(feature = "postgres")]
pub(crate) use postgres::PostgresFactory;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use runstore_postgres::{PostgresConfig, PostgresStore};

    /// `type: postgres`: concerns naming the same URL and schema share one
    /// pool.
    pub(crate) struct PostgresFactory;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        url: String,
        #[serde(default)]
        pool_size: Option<usize>,
        #[serde(default)]
        schema: Option<String>,
        #[serde(default)]
        connect_timeout: Option<serde_yaml::Value>,
        #[serde(default)]
        operation_timeout: Option<serde_yaml::Value>,
    }

    fn read(config: &BackendConfig) -> std::result::Result<PostgresConfig, String> {
        let o: Options = config.parse_options()?;
        let mut pc = PostgresConfig::new(o.url);
        if let Some(n) = o.pool_size {
            if n == 0 {
                return Err("option `pool_size` must be at least 1".into());
            }
            pc.pool_size = n;
        }
        if let Some(s) = o.schema {
            pc.schema = s;
        }
        if let Some(t) = &o.connect_timeout {
            pc.connect_timeout = crate::builtin::duration("connect_timeout", t)?;
        }
        if let Some(t) = &o.operation_timeout {
            pc.operation_timeout = crate::builtin::duration("operation_timeout", t)?;
        }
        Ok(pc)
    }

    #[async_trait]
    impl BackendFactory for PostgresFactory {
        fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
            read(config).map(|_| ())
        }

        fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
            let pc = read(config).map_err(|e| config.error(e))?;
            Ok(Some(format!("{}\u{0}{}", pc.url, pc.schema)))
        }

        async fn open(&self, config: &BackendConfig) -> Result<Backend> {
            let pc = read(config).map_err(|e| config.error(e))?;
            let store = PostgresStore::connect(pc).await?;
            Ok(Backend::all(store.clone(), BackendHandle::Postgres(store)))
        }
    }
}

#[cfg(feature = "s3")]
pub(crate) use s3::S3Factory;

#[cfg(feature = "s3")]
mod s3 {
    use super::*;
    use runstore_s3::{S3Config, S3Store};

    /// `type: s3`: artifacts only. The options are the crate's own
    /// `S3Config`, read as they are.
    pub(crate) struct S3Factory;

    fn read(config: &BackendConfig) -> std::result::Result<S3Config, String> {
        let c: S3Config = config.parse_options()?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[async_trait]
    impl BackendFactory for S3Factory {
        fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
            read(config).map(|_| ())
        }

        async fn open(&self, config: &BackendConfig) -> Result<Backend> {
            let c = read(config).map_err(|e| config.error(e))?;
            let store = S3Store::open(c).await?;
            Ok(Backend {
                workflows: None,
                logs: None,
                metrics: None,
                artifacts: Some(std::sync::Arc::new(store.clone())),
                handle: BackendHandle::S3(store),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_key_joins_spellings_of_one_file_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let a = canonical_key(&dir.path().join("db/x.db"));
        let b = canonical_key(&dir.path().join("sub/../db/./x.db"));
        let c = canonical_key(&dir.path().join("db/y.db"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(Path::new(&a).is_absolute());
    }
}
