//! Deletes for retention (docs/DESIGN.md section 8): each batch is one write
//! transaction, so a crash leaves every run of it either whole or gone.

use runstore_core::{
    ArtifactsDeleted, Deleted, Result, RunId, Version, WorkflowId, decide_workflow_delete,
    validate_delete_batch,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::Ctx;

/// The ids as one JSON array, the parameter of `json_each(?1)`: a batch
/// is one set-based statement, not one per id.
pub(crate) fn id_list(ids: &[RunId], what: &str) -> Result<String> {
    serde_json::to_string(&ids.iter().map(RunId::as_str).collect::<Vec<_>>())
        .map_err(|e| runstore_core::Error::backend(what.to_string(), Some(e.into())))
}

/// Runs `sql` (a `DELETE … WHERE <key> IN (SELECT value FROM
/// json_each(?1)) RETURNING <key>`) over the batch; which ids it deleted.
fn delete_set(
    tx: &Transaction<'_>,
    sql: &str,
    ids: &[RunId],
    what: &str,
) -> Result<Deleted<RunId>> {
    let list = id_list(ids, what)?;
    let gone: std::collections::HashSet<String> = tx
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([list], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .ctx(what)?;
    Ok(Deleted::split(ids, |id| gone.contains(id.as_str())))
}

/// Deletes runs with their events, events first, in one transaction of
/// [`crate::SqliteStore::write_tx_unchecked`]: the explicit delete of the
/// events is what lets it skip the foreign-key cascade.
pub(crate) fn delete_runs(tx: &Transaction<'_>, ids: &[RunId]) -> Result<Deleted<RunId>> {
    let what = "deleting the events of runs";
    let list = id_list(ids, what)?;
    tx.prepare_cached("DELETE FROM events WHERE run_id IN (SELECT value FROM json_each(?1))")
        .and_then(|mut s| s.execute([list]))
        .ctx(what)?;
    delete_set(
        tx,
        "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?1)) RETURNING id",
        ids,
        "deleting runs",
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

/// Events per run, in `ids` order: one query over the batch (the ids
/// passed as one JSON array parameter). A run's events are numbered 1..=n
/// without gaps (every write checks it), so its last number is its count:
/// one seek to the end of its key range, where `COUNT(*)` would read every
/// event row with its payload (a sixth of a migration's reading).
pub(crate) fn event_counts(conn: &rusqlite::Connection, ids: &[RunId]) -> Result<Vec<u64>> {
    let what = "counting events of runs";
    let list = id_list(ids, what)?;
    let counts: std::collections::HashMap<String, i64> = conn
        .prepare_cached(
            "SELECT j.value, (SELECT e.seq FROM events e WHERE e.run_id = j.value \
                              ORDER BY e.seq DESC LIMIT 1) \
             FROM json_each(?1) AS j",
        )
        .and_then(|mut s| {
            s.query_map([list], |r| {
                Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
            })?
            .collect::<rusqlite::Result<_>>()
        })
        .ctx(what)?;
    Ok(ids
        .iter()
        .map(|id| u64::try_from(counts.get(id.as_str()).copied().unwrap_or(0)).unwrap_or(0))
        .collect())
}

/// Deletes the artifacts of several runs with one statement, then their
/// blobs; per run what was deleted, in `run_ids` order.
pub(crate) fn delete_runs_artifacts(
    tx: &Transaction<'_>,
    run_ids: &[RunId],
) -> Result<Vec<ArtifactsDeleted>> {
    let what = "deleting the artifacts of runs";
    let list = id_list(run_ids, what)?;
    let rows: Vec<(String, i64, i64)> = tx
        .prepare_cached(
            "DELETE FROM artifacts WHERE run_id IN (SELECT value FROM json_each(?1)) \
             RETURNING run_id, blob_id, size",
        )
        .and_then(|mut s| {
            s.query_map([list], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(what)?;
    let mut per_run: std::collections::HashMap<String, ArtifactsDeleted> = Default::default();
    let mut blobs = tx
        .prepare_cached("DELETE FROM artifact_blobs WHERE id = ?1")
        .ctx(what)?;
    for (run, blob, size) in rows {
        blobs.execute([blob]).ctx(what)?;
        per_run
            .entry(run)
            .or_default()
            .add(u64::try_from(size).unwrap_or(0));
    }
    Ok(run_ids
        .iter()
        .map(|id| per_run.get(id.as_str()).copied().unwrap_or_default())
        .collect())
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
