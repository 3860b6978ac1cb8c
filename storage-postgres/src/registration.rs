//! `type: postgres` in a configuration file: the options are
//! [`PostgresConfig`]'s fields, and [`PostgresBackend`] checks and opens
//! them. Concerns naming one URL and schema share one pool.

use async_trait::async_trait;
use runstore_core::Result;
use runstore_core::backend::{Backend, BackendConfig, BackendFactory, option_message};

use crate::{PostgresConfig, PostgresStore};

/// The `type` name of the PostgreSQL backend.
pub const TYPE_NAME: &str = "postgres";

/// The [`BackendFactory`] of `type: postgres`. Whether the database exists
/// is only known by connecting, so `exists` keeps the default (`None`).
///
/// ```
/// use runstore_core::backend::{BackendConfig, BackendFactory, Concern, Mapping};
/// let mut options = Mapping::new();
/// options.insert("url".into(), "postgres://app:s3cret@db/runs".into());
/// options.insert("pool_size".into(), 0.into());
/// let config = BackendConfig::new(Concern::Logs, "postgres", options);
/// let err = runstore_postgres::PostgresBackend.validate(&config).unwrap_err();
/// assert!(err.contains("pool_size") && !err.contains("s3cret"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresBackend;

/// The section's [`PostgresConfig`], checked without connecting.
fn read(config: &BackendConfig) -> std::result::Result<PostgresConfig, String> {
    let c: PostgresConfig = config.parse_options()?;
    c.validate().map_err(|e| option_message(&e))?;
    Ok(c)
}

#[async_trait]
impl BackendFactory for PostgresBackend {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        read(config).map(|_| ())
    }

    fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
        let c = read(config).map_err(|e| config.error(e))?;
        Ok(Some(format!("{}\u{0}{}", c.url, c.schema)))
    }

    async fn open(&self, config: &BackendConfig) -> Result<Backend> {
        let mut c = read(config).map_err(|e| config.error(e))?;
        c.read_only |= config.read_only;
        Ok(Backend::all(PostgresStore::open(c).await?))
    }
}
