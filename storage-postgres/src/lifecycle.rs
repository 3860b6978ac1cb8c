//! Deletes for retention (docs/DESIGN.md section 8). Each batch is one
//! transaction of set-based statements (`= ANY($1)`), so a crash leaves
//! every run of it whole or gone, and a batch costs a few round trips.

use std::collections::HashSet;

use runstore_core::{
    ArtifactsDeleted, Deleted, Result, RunId, Version, WorkflowId, decide_workflow_delete,
    validate_delete_batch,
};

use crate::PostgresStore;
use crate::client::with_tx;
use crate::error::Fail;
use crate::metrics::{METRIC_COLUMNS, forget_deleted, metric_of};
use crate::rows::{v32, version};

impl PostgresStore {
    /// Deletes runs, then the events of those deleted (the run row first,
    /// as `delete_run` does: its lock keeps appends out).
    pub(crate) async fn lifecycle_delete_runs(&self, ids: &[RunId]) -> Result<Deleted<RunId>> {
        validate_delete_batch("run_ids", ids)?;
        let keys: Vec<&str> = ids.iter().map(RunId::as_str).collect();
        let (keys, this) = (&keys, self);
        let gone: HashSet<String> = with_tx!(self, "deleting runs", |tx| {
            let runs = tx
                .prepare_cached(&this.sql("DELETE FROM {s}.runs WHERE id = ANY($1) RETURNING id"))
                .await?;
            let gone: Vec<String> = tx
                .query(&runs, &[keys])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let events = tx
                .prepare_cached(&this.sql("DELETE FROM {s}.events WHERE run_id = ANY($1)"))
                .await?;
            tx.execute(&events, &[&gone]).await?;
            Ok::<_, Fail>(gone.into_iter().collect())
        })?;
        Ok(Deleted::split(ids, |id| gone.contains(id.as_str())))
    }

    /// Deletes metrics and their named values and counts them out of the
    /// summaries, in one transaction.
    pub(crate) async fn lifecycle_delete_metrics(&self, ids: &[RunId]) -> Result<Deleted<RunId>> {
        validate_delete_batch("run_ids", ids)?;
        let keys: Vec<&str> = ids.iter().map(RunId::as_str).collect();
        let (keys, this) = (&keys, self);
        let gone: HashSet<String> = with_tx!(self, "deleting metrics", |tx| {
            let st = tx
                .prepare_cached(&this.sql(&format!(
                    "DELETE FROM {{s}}.metrics WHERE run_id = ANY($1) RETURNING {METRIC_COLUMNS}"
                )))
                .await?;
            let rows = tx.query(&st, &[keys]).await?;
            let deleted = rows.iter().map(metric_of).collect::<Result<Vec<_>>>()?;
            forget_deleted(&tx, &this.inner.schema_sql, &deleted).await?;
            Ok::<_, Fail>(
                deleted
                    .into_iter()
                    .map(|m| m.run_id.as_str().to_string())
                    .collect(),
            )
        })?;
        Ok(Deleted::split(ids, |id| gone.contains(id.as_str())))
    }

    /// Deletes a run's artifact rows, then their blobs (chunks cascade).
    pub(crate) async fn lifecycle_delete_run_artifacts(
        &self,
        run_id: &RunId,
    ) -> Result<ArtifactsDeleted> {
        let what = format!("deleting the artifacts of run {run_id}");
        let this = self;
        with_tx!(self, &what, |tx| {
            let st = tx
                .prepare_cached(
                    &this
                        .sql("DELETE FROM {s}.artifacts WHERE run_id = $1 RETURNING blob_id, size"),
                )
                .await?;
            let rows = tx.query(&st, &[&run_id.as_str()]).await?;
            let mut out = ArtifactsDeleted::default();
            let mut blobs = Vec::with_capacity(rows.len());
            for r in &rows {
                blobs.push(r.get::<_, i64>(0));
                out.add(u64::try_from(r.get::<_, i64>(1)).unwrap_or(0));
            }
            let del = tx
                .prepare_cached(&this.sql("DELETE FROM {s}.blobs WHERE id = ANY($1)"))
                .await?;
            tx.execute(&del, &[&blobs]).await?;
            Ok::<_, Fail>(out)
        })
    }

    /// Deletes the artifacts of several runs in one transaction: their
    /// rows, then their blobs; per run what was deleted, in `run_ids` order.
    pub(crate) async fn lifecycle_delete_runs_artifacts(
        &self,
        run_ids: &[RunId],
    ) -> Result<Vec<ArtifactsDeleted>> {
        validate_delete_batch("run_ids", run_ids)?;
        let keys: Vec<&str> = run_ids.iter().map(RunId::as_str).collect();
        let (keys, this) = (&keys, self);
        let per_run: std::collections::HashMap<String, ArtifactsDeleted> = with_tx!(
            self,
            "deleting the artifacts of runs",
            |tx| {
                let st = tx
                    .prepare_cached(&this.sql(
                        "DELETE FROM {s}.artifacts WHERE run_id = ANY($1) RETURNING run_id, blob_id, size",
                    ))
                    .await?;
                let rows = tx.query(&st, &[keys]).await?;
                let mut per_run = std::collections::HashMap::<String, ArtifactsDeleted>::new();
                let mut blobs = Vec::with_capacity(rows.len());
                for r in &rows {
                    blobs.push(r.get::<_, i64>(1));
                    per_run
                        .entry(r.get::<_, String>(0))
                        .or_default()
                        .add(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0));
                }
                let del = tx
                    .prepare_cached(&this.sql("DELETE FROM {s}.blobs WHERE id = ANY($1)"))
                    .await?;
                tx.execute(&del, &[&blobs]).await?;
                Ok::<_, Fail>(per_run)
            }
        )?;
        Ok(run_ids
            .iter()
            .map(|id| per_run.get(id.as_str()).cloned().unwrap_or_default())
            .collect())
    }

    /// Events per run in one query, in `ids` order. A run's events are
    /// numbered 1..=n without gaps (every write checks it), so its last
    /// number is its count: one index seek per run, whatever its size.
    pub(crate) async fn lifecycle_event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        validate_delete_batch("run_ids", ids)?;
        let keys: Vec<&str> = ids.iter().map(RunId::as_str).collect();
        let rows = self
            .query_all(
                "counting events of runs",
                // One index probe per id: `run_id = ANY($1) GROUP BY` can
                // plan as a scan of every event when statistics are stale.
                "SELECT r.id, (SELECT e.seq FROM {s}.events e WHERE e.run_id = r.id COLLATE \"C\" \
                               ORDER BY e.seq DESC LIMIT 1) \
                 FROM unnest($1::text[]) AS r(id)",
                &[&keys],
            )
            .await?;
        let counts: std::collections::HashMap<String, i64> = rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, Option<i64>>(1).unwrap_or(0)))
            .collect();
        Ok(ids
            .iter()
            .map(|id| u64::try_from(counts.get(id.as_str()).copied().unwrap_or(0)).unwrap_or(0))
            .collect())
    }

    /// Deletes one workflow version after [`decide_workflow_delete`]; the
    /// row is locked first so a child stored concurrently waits (its
    /// foreign key reads the parent row) or is seen.
    pub(crate) async fn lifecycle_delete_workflow(
        &self,
        id: &WorkflowId,
        v: Version,
    ) -> Result<()> {
        let what = format!("deleting workflow {id} version {v}");
        let this = self;
        let n = v32(v);
        with_tx!(self, &what, |tx| {
            let lock = tx
                .prepare_cached(
                    &this.sql(
                        "SELECT 1 FROM {s}.workflows WHERE id = $1 AND version = $2 FOR UPDATE",
                    ),
                )
                .await?;
            let stored = tx.query_opt(&lock, &[&id.as_str(), &n]).await?.is_some();
            let child = tx
                .prepare_cached(&this.sql(
                    "SELECT version FROM {s}.workflows WHERE id = $1 AND parent = $2 ORDER BY version LIMIT 1",
                ))
                .await?;
            let child = match tx.query_opt(&child, &[&id.as_str(), &n]).await? {
                Some(row) => Some(version(
                    || format!("workflows ({id}, child of {v})"),
                    row.get(0),
                )?),
                None => None,
            };
            decide_workflow_delete(id, v, stored, child)?;
            let del = tx
                .prepare_cached(
                    &this.sql("DELETE FROM {s}.workflows WHERE id = $1 AND version = $2"),
                )
                .await?;
            tx.execute(&del, &[&id.as_str(), &n]).await?;
            Ok::<_, Fail>(())
        })
    }
}
