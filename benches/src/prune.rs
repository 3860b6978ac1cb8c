//! Retention (docs/DESIGN.md section 8): `runstore::retention::prune` of
//! runs with 10 events each beside a raw batched `DELETE` of the same runs
//! (events, then runs, 500 runs per transaction) on the same machine in the
//! same run. Runs are generated and loaded in chunks, so the corpus is never
//! all in memory.

use std::path::Path;
use std::time::Instant;

use runstore::retention::{OutcomeSelector, PruneOptions, RetentionPolicy, RetentionRule, prune};
use runstore_core::{RunWithEvents, StoreSet};
use tokio_postgres::Client;

use crate::BenchResult;
use crate::data;
use crate::raw;

/// Runs generated and loaded per chunk.
const CHUNK: usize = 1000;
/// Runs deleted per transaction by the raw baselines, and per prune page.
pub const BATCH: usize = 500;

/// Runs `from..to` of the prune corpus, 10 events each.
fn chunk(from: usize, to: usize) -> Vec<RunWithEvents> {
    (from..to)
        .map(|i| data::run_with_events("prn", i, 10))
        .collect()
}

/// The ids of the finished runs among `runs`: what a policy of
/// `keep_last: 0` for any outcome prunes.
fn finished_ids(runs: &[RunWithEvents]) -> Vec<String> {
    runs.iter()
        .filter(|r| r.run.status.is_terminal())
        .map(|r| r.run.id.to_string())
        .collect()
}

/// The policy every prune row applies: prune every finished run.
pub fn policy() -> RetentionPolicy {
    RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Any).with_keep_last(0),
    ])
}

/// Loads `n` runs into `stores` (the parent's side, before the child
/// prunes); how many of them are finished, which the prune must remove.
pub async fn load(stores: &StoreSet, n: usize) -> BenchResult<u64> {
    let mut finished = 0;
    for from in (0..n).step_by(CHUNK) {
        let runs = chunk(from, (from + CHUNK).min(n));
        finished += finished_ids(&runs).len() as u64;
        stores.logs.import_runs(runs).await?;
    }
    Ok(finished)
}

/// Prunes every finished run of `stores`: (pruned runs per second, runs
/// pruned).
pub async fn run_prune(stores: &StoreSet) -> BenchResult<(f64, u64)> {
    let start = Instant::now();
    let report = prune(
        stores,
        &policy(),
        PruneOptions::default().page_size(BATCH),
        |_| {},
    )
    .await?;
    let runs = report.total().runs;
    Ok((runs as f64 / start.elapsed().as_secs_f64(), runs))
}

/// What the prune child measured.
#[derive(Clone, Copy, Debug)]
pub struct ChildResult {
    /// Pruned runs per second.
    pub runs_per_sec: f64,
    /// Runs pruned.
    pub runs: u64,
    /// The child's peak resident memory in bytes: the prune's alone, since
    /// the corpus was loaded by the parent.
    pub peak_bytes: u64,
}

/// The child's side of `--prune-child BACKEND DIR [URL SCHEMA]`: reopens the
/// store the parent loaded, prunes it and prints `RESULT <runs/s> <runs>
/// <peak bytes>`.
pub async fn child_main(args: &[String]) -> BenchResult<()> {
    let [backend, dir, pg @ ..] = args else {
        return Err("--prune-child BACKEND DIR [URL SCHEMA]".into());
    };
    let backend = crate::artifacts::parse_backend(backend).ok_or("unknown backend")?;
    let stores = backend
        .reopen(Path::new(dir), crate::child::pg_args(pg))
        .await?;
    let (rate, runs) = run_prune(&stores).await?;
    let peak = crate::machine::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {rate} {runs} {peak}");
    Ok(())
}

/// The parent's side: runs `exe --prune-child ...` and reads its result.
pub fn run_child(
    exe: &Path,
    backend: crate::stores::Backend,
    dir: &Path,
    pg: Option<&(String, String)>,
) -> BenchResult<ChildResult> {
    let args = [
        std::ffi::OsStr::new(crate::artifacts::backend_arg(backend)),
        dir.as_os_str(),
    ];
    crate::child::run_parsed(exe, "--prune-child", &args, pg, "prune", parse_result)
}

/// Parses the fields of the child's `RESULT` line.
fn parse_result(fields: &[String]) -> Option<ChildResult> {
    let [rate, runs, peak, ..] = fields else {
        return None;
    };
    Some(ChildResult {
        runs_per_sec: rate.parse().ok()?,
        runs: runs.parse().ok()?,
        peak_bytes: peak.parse().ok()?,
    })
}

/// Raw SQLite: loads `n` runs into the raw tables, then deletes the
/// finished ones, events first, 500 runs per transaction. Runs per second.
pub fn sqlite_raw(dir: &Path, n: usize) -> BenchResult<f64> {
    let mut conn = raw::sqlite_open(&dir.join("prune-raw.db"), "NORMAL")?;
    let mut ids = Vec::new();
    for from in (0..n).step_by(CHUNK) {
        let runs = chunk(from, (from + CHUNK).min(n));
        raw::sqlite_bulk(&mut conn, &runs)?;
        ids.extend(finished_ids(&runs));
    }
    let start = Instant::now();
    for batch in ids.chunks(BATCH) {
        let tx = conn.transaction()?;
        {
            let mut events = tx.prepare_cached("DELETE FROM events WHERE run_id = ?1")?;
            let mut runs = tx.prepare_cached("DELETE FROM runs WHERE id = ?1")?;
            for id in batch {
                events.execute([id])?;
                runs.execute([id])?;
            }
        }
        tx.commit()?;
    }
    Ok(ids.len() as f64 / start.elapsed().as_secs_f64())
}

/// Raw PostgreSQL: loads `n` runs by binary `COPY` into the raw tables,
/// then deletes the finished ones with `= ANY($1)`, events first, 500 runs
/// per transaction. Runs per second.
pub async fn pg_raw(client: &Client, n: usize) -> BenchResult<f64> {
    client.batch_execute("TRUNCATE runs, events").await?;
    let mut ids = Vec::new();
    for from in (0..n).step_by(CHUNK) {
        let runs = chunk(from, (from + CHUNK).min(n));
        raw::pg_copy_bulk(client, &runs).await?;
        ids.extend(finished_ids(&runs));
    }
    client.batch_execute("ANALYZE runs, events").await?;
    let events = client
        .prepare("DELETE FROM events WHERE run_id = ANY($1)")
        .await?;
    let runs = client
        .prepare("DELETE FROM runs WHERE id = ANY($1)")
        .await?;
    let start = Instant::now();
    for batch in ids.chunks(BATCH) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        client.batch_execute("BEGIN").await?;
        client.execute(&events, &[&batch]).await?;
        client.execute(&runs, &[&batch]).await?;
        client.batch_execute("COMMIT").await?;
    }
    let rate = ids.len() as f64 / start.elapsed().as_secs_f64();
    client.batch_execute("TRUNCATE runs, events").await?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_child_result() {
        let f = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let r = parse_result(&f("1234.5 500 104857600")).unwrap();
        assert_eq!(
            (r.runs_per_sec, r.runs, r.peak_bytes),
            (1234.5, 500, 104_857_600)
        );
        assert!(parse_result(&f("1234.5 500")).is_none());
        assert!(parse_result(&f("fast 500 1")).is_none());
    }
}
