//! Deletes for retention (docs/DESIGN.md section 8): each batch is one write
//! transaction, so a crash leaves every run of it either whole or gone.

use runstore_core::{
    ArtifactsDeleted, Deleted, Result, RunId, Version, WorkflowId, decide_workflow_delete,
    validate_delete_batch,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::Ctx;

/// Deletes every row `sql` (one `?1` id parameter) matches, per id, in `tx`.
fn delete_each(
    tx: &Transaction<'_>,
    sql: &str,
    ids: &[RunId],
    what: &str,
) -> Result<Deleted<RunId>> {
    let mut stmt = tx.prepare_cached(sql).ctx(what)?;
    let mut failed = None;
    let out = Deleted::split(ids, |id| match stmt.execute([id.as_str()]) {
        Ok(n) => n > 0,
        Err(e) => {
            failed.get_or_insert(e);
            false
        }
    });
    match failed {
        Some(e) => Err(e).ctx(what),
        None => Ok(out),
    }
}

/// Deletes runs; their events go with them (ON DELETE CASCADE), in the same
/// transaction.
pub(crate) fn delete_runs(tx: &Transaction<'_>, ids: &[RunId]) -> Result<Deleted<RunId>> {
    delete_each(tx, "DELETE FROM runs WHERE id = ?1", ids, "deleting runs")
}

/// Deletes metrics; their named values go with them (ON DELETE CASCADE).
pub(crate) fn delete_metrics(tx: &Transaction<'_>, ids: &[RunId]) -> Result<Deleted<RunId>> {
    delete_each(
        tx,
        "DELETE FROM metrics WHERE run_id = ?1",
        ids,
        "deleting metrics",
    )
}

/// Checks a batch before a transaction is opened.
pub(crate) fn check_batch(ids: &[RunId]) -> Result<()> {
    validate_delete_batch("run_ids", ids)
}

/// Deletes a run's artifact rows and then their blobs (chunks cascade).
pub(crate) fn delete_run_artifacts(
    tx: &Transaction<'_>,
    run_id: &RunId,
) -> Result<ArtifactsDeleted> {
    let what = "deleting a run's artifacts";
    let rows: Vec<(i64, i64)> = tx
        .prepare_cached("DELETE FROM artifacts WHERE run_id = ?1 RETURNING blob_id, size")
        .and_then(|mut s| {
            s.query_map([run_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(what)?;
    let mut out = ArtifactsDeleted::default();
    let mut blobs = tx
        .prepare_cached("DELETE FROM artifact_blobs WHERE id = ?1")
        .ctx(what)?;
    for (blob, size) in rows {
        blobs.execute([blob]).ctx(what)?;
        out.add(u64::try_from(size).unwrap_or(0));
    }
    Ok(out)
}

/// Events per run, in `ids` order (one indexed count each).
pub(crate) fn event_counts(conn: &rusqlite::Connection, ids: &[RunId]) -> Result<Vec<u64>> {
    let what = "counting events of runs";
    let mut stmt = conn
        .prepare_cached("SELECT COUNT(*) FROM events WHERE run_id = ?1")
        .ctx(what)?;
    ids.iter()
        .map(|id| {
            stmt.query_row([id.as_str()], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .ctx(what)
        })
        .collect()
}

/// Deletes one workflow version, after [`decide_workflow_delete`].
pub(crate) fn delete_workflow(
    tx: &Transaction<'_>,
    id: &WorkflowId,
    version: Version,
) -> Result<()> {
    let what = "deleting a workflow version";
    let stored = tx
        .prepare_cached("SELECT 1 FROM workflows WHERE id = ?1 AND version = ?2")
        .and_then(|mut s| {
            s.query_row(params![id.as_str(), version.get()], |_| Ok(()))
                .optional()
        })
        .ctx(what)?
        .is_some();
    let child: Option<i64> = tx
        .prepare_cached(
            "SELECT version FROM workflows WHERE id = ?1 AND parent = ?2 ORDER BY version LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![id.as_str(), version.get()], |r| r.get(0))
                .optional()
        })
        .ctx(what)?;
    let child = child
        .map(|c| crate::rows::version("workflows row", c))
        .transpose()?;
    decide_workflow_delete(id, version, stored, child)?;
    tx.prepare_cached("DELETE FROM workflows WHERE id = ?1 AND version = ?2")
        .and_then(|mut s| s.execute(params![id.as_str(), version.get()]))
        .ctx(what)?;
    Ok(())
}
