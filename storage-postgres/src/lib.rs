#![doc = include_str!("../README.md")]

mod artifacts;
mod bulk_load;
mod client;
mod config;
mod coordination;
mod error;
mod filter;
mod group;
mod lifecycle;
mod logs;
mod metrics;
mod migrate;
mod registration;
mod restore;
mod rows;
mod summaries;
mod tls;
mod workflows;

#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use runstore_core::{Error, Result, StoreSet};

pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MIGRATION_TIMEOUT, DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_POOL_SIZE, DEFAULT_SCHEMA, PostgresConfig,
};
pub use migrate::LATEST_SCHEMA_VERSION;
pub use registration::{PostgresBackend, TYPE_NAME};

/// All four runstore traits on one PostgreSQL schema, through a connection
/// pool. Cheap to clone: clones share the pool.
///
/// ```no_run
/// # async fn demo() -> runstore_core::Result<()> {
/// use runstore_postgres::{PostgresConfig, PostgresStore};
/// let store = PostgresStore::open(PostgresConfig::new("postgres://app@db.internal/runs")).await?;
/// let stores = store.store_set(); // one handle per concern
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: PostgresConfig,
    /// The schema, quoted for SQL.
    schema_sql: String,
    /// Runs imported through this store since it last had the `runs`
    /// table analyzed (see `import_runs`).
    unanalyzed: AtomicU64,
    /// An `ANALYZE` of `runs` is under way (one at a time, in the
    /// background: see `import_runs`).
    analyzing: std::sync::atomic::AtomicBool,
    /// Whether the next `import_runs` looks for stored runs first.
    import_hint: client::CarefulHint,
    /// Whether the next `record_many` looks for stored metrics first.
    record_hint: client::CarefulHint,
    /// Single appends waiting per run, for group commit.
    appends: group::AppendQueues,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config's Debug redacts the password.
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Builds the pool, checks that the server answers, and creates or
    /// migrates the schema (see the crate README).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad config (including `sslmode=verify-*`
    /// without a readable `sslrootcert`); [`Error::Unavailable`] if the server cannot be reached within
    /// the connect timeout; [`Error::Backend`] for a schema newer than this
    /// build; [`Error::Corrupt`] for an applied migration that differs from
    /// this build's.
    pub async fn open(config: PostgresConfig) -> Result<PostgresStore> {
        Self::connect_up_to(config, migrate::LATEST_SCHEMA_VERSION).await
    }

    /// [`PostgresStore::open`], migrating only up to `version` (tests of
    /// upgrades from older schemas).
    pub(crate) async fn connect_up_to(
        config: PostgresConfig,
        version: u32,
    ) -> Result<PostgresStore> {
        let (pg, tls) = config.to_pg_config()?;
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.operation_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| {
                Error::backend("building the PostgreSQL connection pool", Some(Box::new(e)))
            })?;
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                schema_sql: config::quote_ident(&config.schema),
                config,
                unanalyzed: AtomicU64::new(0),
                analyzing: std::sync::atomic::AtomicBool::new(false),
                import_hint: client::CarefulHint::default(),
                record_hint: client::CarefulHint::default(),
                appends: group::AppendQueues::default(),
            }),
        };
        let what = format!("connecting to {}", store.inner.config);
        let schema = store.inner.config.schema.clone();
        if store.inner.config.read_only {
            store.check_read_only_schema().await?;
            return Ok(store);
        }
        let limit = store.inner.config.migration_timeout;
        store
            .bounded_by(&what, limit, async {
                let mut client = store.client().await?;
                migrate::migrate(&mut client, &schema, version).await?;
                Ok(())
            })
            .await?;
        if version == migrate::LATEST_SCHEMA_VERSION {
            // A bulk load cut short (a crash, a killed migration) left
            // indexes out.
            store.ensure_indexes(None).await?;
            store.remove_stale_blobs().await?;
        }
        Ok(store)
    }

    /// A read-only store cannot create or migrate its schema: it must be
    /// there, at this build's version.
    async fn check_read_only_schema(&self) -> Result<()> {
        let schema = self.inner.config.schema.clone();
        let found = self
            .bounded("reading the schema version", async {
                let client = self.client().await?;
                let exists = client
                    .query_one(
                        "SELECT count(*) FROM information_schema.tables \
                         WHERE table_schema = $1 AND table_name = 'schema_migrations'",
                        &[&schema],
                    )
                    .await?
                    .get::<_, i64>(0)
                    > 0;
                Ok(if exists {
                    Some(migrate::current_version(&client, &schema).await?)
                } else {
                    None
                })
            })
            .await?;
        match found {
            None => Err(Error::not_found(format!(
                "a runstore schema `{schema}` at {} (opened read-only, so it is not created)",
                self.inner.config.redacted_url()
            ))),
            Some(v) if v < migrate::LATEST_SCHEMA_VERSION => Err(Error::invalid(
                "read_only",
                format!(
                    "schema `{schema}` has version {v}, older than this build's {}; a read-only open cannot migrate it: open it once for writing",
                    migrate::LATEST_SCHEMA_VERSION
                ),
            )),
            Some(v) if v > migrate::LATEST_SCHEMA_VERSION => Err(Error::backend(
                format!(
                    "schema `{schema}` has version {v}, newer than the {} this runstore-postgres knows; upgrade runstore to open it",
                    migrate::LATEST_SCHEMA_VERSION
                ),
                None,
            )),
            Some(_) => Ok(()),
        }
    }

    /// The schema version in the database (the highest applied migration).
    pub async fn schema_version(&self) -> Result<u32> {
        let schema = self.inner.config.schema.clone();
        self.bounded("reading the schema version", async {
            let client = self.client().await?;
            Ok(migrate::current_version(&client, &schema).await?)
        })
        .await
    }

    /// The config this store was opened with.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// One handle per concern, all on this store.
    pub fn store_set(&self) -> StoreSet {
        StoreSet {
            workflows: Arc::new(self.clone()),
            logs: Arc::new(self.clone()),
            metrics: Arc::new(self.clone()),
            artifacts: Arc::new(self.clone()),
        }
    }

    /// `template` with `{s}` replaced by the quoted schema.
    fn sql(&self, template: &str) -> String {
        template.replace("{s}", &self.inner.schema_sql)
    }
}
