//! Bulk loads: the secondary indexes a large import can do without, dropped
//! when it starts and built again, each in one sorted pass, when it ends.
//! The same design as the SQLite backend's `bulk_load` module, over this
//! schema's indexes.
//!
//! What stays is what a rule or the load itself needs: primary keys, the
//! unique indexes (idempotency and external keys, artifact blobs) and
//! `runs_by_start`, through which a migration finds the runs of a batch
//! already stored. Reads stay correct without the others, only slower. A
//! store opened while any is missing builds it before the open returns
//! ([`PostgresStore::ensure_indexes`]), so a load cut short leaves no schema
//! without its indexes. Every drop and build takes the schema's migration
//! lock, so two processes opening at once do not build one index twice.

use runstore_core::{BulkLoadOf, BulkLoadOptions, Result};

use crate::PostgresStore;
use crate::error::Fail;

/// A secondary index a bulk load drops, with its definition (`{schema}`
/// stands for the quoted schema): the newest migration's (checked by a
/// test against a new schema).
struct Deferrable {
    concern: BulkLoadOf,
    name: &'static str,
    on: &'static str,
}

const DEFERRABLE: &[Deferrable] = &[
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_workflow",
        on: "{schema}.runs (workflow_id, workflow_version, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_workflow_any_version",
        on: "{schema}.runs (workflow_id, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_status",
        on: "{schema}.runs (status, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_trigger",
        on: "{schema}.runs (trigger, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_end",
        on: "{schema}.runs (ended_at, status) WHERE ended_at IS NOT NULL",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_workflow",
        on: "{schema}.metrics (workflow_id, workflow_version, run_id)",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_version",
        on: "{schema}.metrics (workflow_version, run_id)",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_duration",
        on: "{schema}.metrics (workflow_id, workflow_version, duration_micros)",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_time",
        on: "{schema}.metrics (workflow_id, workflow_version, recorded_at)",
    },
];

impl PostgresStore {
    /// The deferrable indexes of `concern` (all with `None`) missing from
    /// the schema.
    async fn missing_indexes(
        &self,
        concern: Option<BulkLoadOf>,
    ) -> Result<Vec<&'static Deferrable>> {
        let schema = self.inner.config.schema.clone();
        let present: Vec<String> = self
            .bounded("looking up indexes", async {
                let client = self.client().await?;
                let rows = client
                    .query(
                        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1",
                        &[&schema],
                    )
                    .await?;
                Ok::<_, Fail>(rows.iter().map(|r| r.get(0)).collect())
            })
            .await?;
        Ok(DEFERRABLE
            .iter()
            .filter(|d| concern.is_none_or(|c| c == d.concern))
            .filter(|d| !present.iter().any(|p| p == d.name))
            .collect())
    }

    /// Starts a load of `concern`: drops its deferrable indexes, in one
    /// transaction, if [`BulkLoadOptions::pays_off`] for the rows stored.
    /// Nothing to do on a read-only store, which takes no load.
    pub(crate) async fn begin_load_of(
        &self,
        concern: BulkLoadOf,
        options: BulkLoadOptions,
    ) -> Result<()> {
        if self.inner.config.read_only {
            return Ok(());
        }
        let q = &self.inner.schema_sql;
        let key = crate::migrate::lock_key(&self.inner.config.schema);
        self.bounded_by(
            "starting a bulk load",
            self.inner.config.migration_timeout,
            async {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                    .await?;
                let stored: i64 = tx
                    .query_one(
                        &format!("SELECT count(*) FROM {q}.{}", concern.sized_by()),
                        &[],
                    )
                    .await?
                    .get(0);
                if options.pays_off(u64::try_from(stored).unwrap_or(0)) {
                    for d in DEFERRABLE.iter().filter(|d| d.concern == concern) {
                        tx.batch_execute(&format!("DROP INDEX IF EXISTS {q}.{}", d.name))
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok::<_, Fail>(())
            },
        )
        .await
    }

    /// Builds every missing deferrable index of `concern` (all of them with
    /// `None`), one transaction each, within the migration timeout: what a
    /// load's end and every open do.
    pub(crate) async fn ensure_indexes(&self, concern: Option<BulkLoadOf>) -> Result<()> {
        if self.inner.config.read_only {
            return Ok(());
        }
        let q = &self.inner.schema_sql;
        let key = crate::migrate::lock_key(&self.inner.config.schema);
        for d in self.missing_indexes(concern).await? {
            let what = format!("building the index {}", d.name);
            let sql = format!(
                "CREATE INDEX IF NOT EXISTS {} ON {}",
                d.name,
                d.on.replace("{schema}", q)
            );
            self.bounded_by(&what, self.inner.config.migration_timeout, async {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                    .await?;
                tx.batch_execute(&sql).await?;
                tx.commit().await?;
                Ok::<_, Fail>(())
            })
            .await?;
        }
        Ok(())
    }
}
