//! Opening each backend fresh for a workload: a new folder, database file
//! or PostgreSQL schema, so no workload sees another's data.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use runstore_core::StoreSet;
use runstore_file::{Durability, FileConfig, FileStore};
use runstore_postgres::PostgresStore;
use runstore_postgres::testing::TestSchema;
use runstore_s3::{S3Config, S3Store};

use crate::BenchResult;

/// A backend and its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The reference in-memory backend (no durability; a ceiling).
    Memory,
    /// Plain files.
    File(Durability),
    /// SQLite, `synchronous=FULL` when `full`, else `NORMAL` (the default).
    Sqlite {
        /// `synchronous=FULL`.
        full: bool,
    },
    /// PostgreSQL (the server of `runstore_postgres::testing`).
    Postgres,
    /// Artifacts on S3 (the server of `runstore_s3::testing`: moto or
    /// `RUNSTORE_S3_URL`), the other concerns in memory. Only the artifact
    /// workload measures it.
    S3,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Memory => f.write_str("memory"),
            Backend::File(Durability::Fsync) => f.write_str("file (fsync)"),
            Backend::File(Durability::GroupCommit) => f.write_str("file (group commit)"),
            Backend::File(_) => f.write_str("file (no fsync)"),
            Backend::Sqlite { full: true } => f.write_str("sqlite (FULL)"),
            Backend::Sqlite { full: false } => f.write_str("sqlite (NORMAL)"),
            Backend::Postgres => f.write_str("postgres"),
            Backend::S3 => f.write_str("s3"),
        }
    }
}

/// An open backend; dropping it drops its PostgreSQL schema.
pub struct Opened {
    /// The four handles.
    pub stores: StoreSet,
    /// Where a remote backend's data lives, for child processes: (url,
    /// schema) for PostgreSQL, (endpoint, bucket/prefix) for S3.
    pub remote: Option<(String, String)>,
    _schema: Option<TestSchema>,
}

fn set<T>(store: T) -> StoreSet
where
    T: runstore_core::WorkflowRepository
        + runstore_core::LogRepository
        + runstore_core::MetricsRepository
        + runstore_core::ArtifactStore,
{
    let s = Arc::new(store);
    StoreSet {
        workflows: s.clone(),
        logs: s.clone(),
        metrics: s.clone(),
        artifacts: s,
    }
}

impl Backend {
    /// Opens a fresh, empty instance; file and SQLite data go under
    /// `scratch` (which must be new and empty for each call).
    pub async fn open(self, scratch: &Path) -> BenchResult<Opened> {
        let plain = |stores| Opened {
            stores,
            remote: None,
            _schema: None,
        };
        match self {
            Backend::Memory => Ok(plain(runstore_core::memory::store_set())),
            Backend::File(d) => {
                let store =
                    FileStore::open(FileConfig::new(scratch.join("root")).with_durability(d))
                        .await?;
                Ok(plain(set(store)))
            }
            Backend::Sqlite { full } => open_sqlite(scratch, full).await.map(plain),
            Backend::Postgres => {
                let config = runstore_postgres::testing::test_config()
                    .await
                    .ok_or("no PostgreSQL server (set RUNSTORE_PG_URL)")?;
                let guard = TestSchema::new(config.clone());
                let remote = Some((config.url.clone(), config.schema.clone()));
                let store = PostgresStore::open(config).await?;
                Ok(Opened {
                    stores: set(store),
                    remote,
                    _schema: Some(guard),
                })
            }
            Backend::S3 => {
                let server = runstore_s3::testing::test_server()
                    .map_err(|e| format!("no S3 server: {e}"))?;
                let config = runstore_s3::testing::test_config(&server);
                let remote = Some((
                    server.endpoint().to_string(),
                    format!("{}/{}", config.bucket, config.prefix),
                ));
                let store = S3Store::open(config).await?;
                Ok(Opened {
                    stores: StoreSet {
                        artifacts: Arc::new(store),
                        ..runstore_core::memory::store_set()
                    },
                    remote,
                    _schema: None,
                })
            }
        }
    }

    /// Opens an existing instance again (child processes of the artifact
    /// measurements): the same folder, or the remote location of
    /// [`Opened::remote`].
    pub async fn reopen(
        self,
        scratch: &Path,
        remote: Option<(&str, &str)>,
    ) -> BenchResult<StoreSet> {
        match (self, remote) {
            (Backend::S3, Some((endpoint, at))) => {
                let (bucket, prefix) = at.split_once('/').ok_or("s3 needs bucket/prefix")?;
                let config = S3Config::new(bucket)
                    .with_prefix(prefix)
                    .with_endpoint(endpoint)
                    .with_credentials(
                        runstore_s3::testing::TEST_KEY,
                        runstore_s3::testing::TEST_KEY,
                    );
                Ok(StoreSet {
                    artifacts: Arc::new(S3Store::open(config).await?),
                    ..runstore_core::memory::store_set()
                })
            }
            (Backend::S3, None) => Err("s3 needs an endpoint and a bucket/prefix".into()),
            (Backend::Postgres, Some((url, schema))) => {
                let config = runstore_postgres::PostgresConfig::new(url).with_schema(schema);
                Ok(set(PostgresStore::open(config).await?))
            }
            (Backend::Postgres, None) => Err("postgres needs a url and a schema".into()),
            (other, _) => Ok(Box::pin(other.open(scratch)).await?.stores),
        }
    }
}

async fn open_sqlite(scratch: &Path, full: bool) -> BenchResult<StoreSet> {
    use runstore_sqlite::{SqliteConfig, SqliteStore, Synchronous};
    let synchronous = if full {
        Synchronous::Full
    } else {
        Synchronous::Normal
    };
    let config = SqliteConfig::new(scratch.join("runstore.db")).with_synchronous(synchronous);
    let store = SqliteStore::open(config).await?;
    Ok(set(store))
}
