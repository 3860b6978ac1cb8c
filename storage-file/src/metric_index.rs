//! The metric table: the index `metrics/index.sqlite` of the metric journal
//! (see [`crate::journal_index`]), one row per stored metric keyed by run
//! id, and the summary counters of this process, which follow the journal.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use runstore_core::summary::SummaryIndex;
use runstore_core::{Error, ExecutionMetric, MetricQuery, Result, RunId};

use crate::Inner;
use crate::fsutil::{self, FileId};
use crate::journal_index::{IndexGuard, Indexed, SqlCtx, decode_record, each_record, sum_of};
use crate::metrics::MetricLine;

/// The metric journal's index.
pub(crate) struct MetricIndex;

impl Indexed for MetricIndex {
    type Line = MetricLine;
    const DB: [&'static str; 2] = ["metrics", "index.sqlite"];
    const JOURNAL: [&'static str; 2] = ["metrics", "metrics.ndjson"];
    const WHAT: &'static str = "record";
    // `gone` is 0 for a stored metric; a delete keeps the row as a
    // tombstone, `gone` = 1 + the offset of its `delete` line, so that a
    // process following the journal finds what the line removed. The
    // tombstones go with the next compaction of the journal.
    const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS metrics (
            run_id TEXT NOT NULL, gone INTEGER NOT NULL, workflow_id TEXT NOT NULL,
            workflow_version INTEGER NOT NULL, metric TEXT NOT NULL,
            PRIMARY KEY (run_id, gone));
        CREATE INDEX IF NOT EXISTS metrics_by_workflow ON metrics (workflow_id, run_id)
            WHERE gone = 0;";
    const CLEAR: &'static str = "DELETE FROM metrics";
    const COMPACTED: &'static str = "DELETE FROM metrics WHERE gone > 0";

    fn apply(
        conn: &Connection,
        offset: u64,
        line: MetricLine,
    ) -> Result<std::result::Result<bool, String>> {
        match line {
            MetricLine::Put { metric } => {
                let json = encode(&metric)?;
                // Never written by the backend (a record over a stored
                // metric is a conflict), so a follower starts over.
                let replaced = contains(conn, &metric.run_id)?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO metrics
                       (run_id, gone, workflow_id, workflow_version, metric)
                     VALUES (?1, 0, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        metric.run_id.as_str(),
                        metric.workflow_id.as_str(),
                        metric.workflow_version.get(),
                        json
                    ])
                })
                .sql("indexing a metric")?;
                Ok(Ok(replaced))
            }
            MetricLine::Delete { run_id } => {
                conn.prepare_cached(
                    "UPDATE OR REPLACE metrics SET gone = ?2 WHERE run_id = ?1 AND gone = 0",
                )
                .and_then(|mut s| s.execute(params![run_id.as_str(), tombstone(offset)]))
                .sql("removing a metric from the index")?;
                Ok(Ok(false))
            }
        }
    }
}

/// The `gone` value of a metric deleted by the line at `offset`.
fn tombstone(offset: u64) -> i64 {
    i64::try_from(offset).map_or(i64::MAX, |o| o.saturating_add(1))
}

/// Whether run `run_id` has a stored metric.
pub(crate) fn contains(conn: &Connection, run_id: &RunId) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM metrics WHERE run_id = ?1 AND gone = 0")
        .and_then(|mut s| s.exists([run_id.as_str()]))
        .sql("looking up a metric")
}

fn encode(m: &ExecutionMetric) -> Result<String> {
    serde_json::to_string(m).map_err(|e| Error::backend("encoding a metric", Some(e.into())))
}

const INDEX: &str = "metrics/index.sqlite";

fn decode(json: &str) -> Result<ExecutionMetric> {
    decode_record(INDEX, json)
}

/// The metric of run `run_id` with `gone` (0: the stored one).
fn get_gone(conn: &Connection, run_id: &RunId, gone: i64) -> Result<Option<ExecutionMetric>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT metric FROM metrics WHERE run_id = ?1 AND gone = ?2")
        .and_then(|mut s| {
            s.query_row(params![run_id.as_str(), gone], |r| r.get(0))
                .optional()
        })
        .sql("reading a metric")?;
    json.as_deref().map(decode).transpose()
}

/// The metric of run `run_id`.
pub(crate) fn get(conn: &Connection, run_id: &RunId) -> Result<Option<ExecutionMetric>> {
    get_gone(conn, run_id, 0)
}

/// A page of metrics in run id order after `after`, matching `query`
/// (`limit + 1` of them at most, for [`runstore_core::Page::from_overfetch`]).
pub(crate) fn list(
    conn: &Connection,
    query: &MetricQuery,
    after: Option<&RunId>,
    limit: usize,
) -> Result<Vec<ExecutionMetric>> {
    let mut cond = vec!["run_id > ?1 AND gone = 0".to_string()];
    let mut args = vec![Value::Text(after.map_or("", |a| a.as_str()).into())];
    if let Some(w) = &query.workflow_id {
        args.push(Value::Text(w.as_str().into()));
        cond.push(format!("workflow_id = ?{}", args.len()));
    }
    if let Some(v) = query.workflow_version {
        args.push(Value::Integer(v.get().into()));
        cond.push(format!("workflow_version = ?{}", args.len()));
    }
    args.push(Value::Integer(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT metric FROM metrics WHERE {} ORDER BY run_id LIMIT ?{}",
        cond.join(" AND "),
        args.len()
    );
    let mut out = Vec::new();
    each_record(
        conn,
        INDEX,
        &sql,
        params_from_iter(args),
        "listing metrics",
        |m| {
            if query.matches(&m) {
                out.push(m);
            }
            Ok(true)
        },
    )?;
    Ok(out)
}

/// Every metric in run id order, for a compaction or a rebuild of the
/// summary counters.
pub(crate) fn each(
    conn: &Connection,
    mut f: impl FnMut(ExecutionMetric) -> Result<()>,
) -> Result<()> {
    each_record(
        conn,
        INDEX,
        "SELECT metric FROM metrics WHERE gone = 0 ORDER BY run_id",
        [],
        "reading every metric",
        |m| f(m).map(|()| true),
    )
}

/// The bytes the live metrics take as `put` lines of the journal.
pub(crate) fn live_bytes(conn: &Connection) -> Result<u64> {
    // `{"op":"put","metric":` + the metric + `}` + newline.
    sum_of(
        conn,
        "SELECT COALESCE(SUM(length(CAST(metric AS BLOB)) + 23), 0) FROM metrics
         WHERE gone = 0",
    )
}

/// The summary counters of this process (core's [`SummaryIndex`]), valid
/// for the journal `journal` up to `offset` as long as the index counts
/// `rewrites` (see [`crate::journal_index::Cover::rewrites`]). They follow
/// the journal line by line: a `put` adds its metric, a `delete` removes
/// the metric its tombstone in the index holds. Anything else (another journal file, a line the
/// index could not apply that way) rebuilds them from the index.
#[derive(Default)]
pub(crate) struct SummaryFollower {
    journal: Option<FileId>,
    offset: u64,
    rewrites: i64,
    pub(crate) counters: SummaryIndex,
}

impl SummaryFollower {
    /// Brings the counters up to what `index` covers; the caller holds the
    /// metrics lock and `index` is up to date with the journal.
    pub(crate) fn follow(&mut self, inner: &Inner, index: &IndexGuard<'_>) -> Result<()> {
        let Some(cover) = index.cover()? else {
            *self = SummaryFollower::default();
            return Ok(());
        };
        let follows = self.journal == Some(cover.journal)
            && self.rewrites == cover.rewrites
            && self.offset <= cover.covered;
        if follows && self.offset == cover.covered {
            return Ok(());
        }
        if follows {
            let path = inner.root.path(&MetricIndex::JOURNAL)?;
            let mut file = fsutil::open_read(&path)?
                .ok_or_else(|| Error::backend("the metric journal vanished", None))?;
            let counters = &mut self.counters;
            // Lines past the cover are at most a torn tail: nothing read.
            inner.replay_into(
                &mut file,
                &path,
                self.offset,
                None,
                "record",
                |offset, l: MetricLine| {
                    match l {
                        MetricLine::Put { metric } => counters.insert(&metric),
                        MetricLine::Delete { run_id } => {
                            // What the line removed, if anything (else the
                            // index counted a rewrite).
                            if let Some(m) = get_gone(index, &run_id, tombstone(offset))? {
                                counters.remove(&m);
                            }
                        }
                    }
                    Ok(Ok(()))
                },
            )?;
        } else {
            let mut counters = SummaryIndex::default();
            each(index, |m| {
                counters.insert(&m);
                Ok(())
            })?;
            self.counters = counters;
        }
        self.journal = Some(cover.journal);
        self.offset = cover.covered;
        self.rewrites = cover.rewrites;
        Ok(())
    }
}
