//! The run table: the run index `index/runs.sqlite` (see
//! [`crate::journal_index`]), one row per stored run, ordered by
//! `(started_at, id)` overall and per workflow and found by external key,
//! and the queries served from it. Every query reads only the rows it
//! returns or filters, so memory does not grow with the number of runs.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use runstore_core::{
    Error, Page, Result, Run, RunCursor, RunFilter, RunId, WorkflowId, external_key_of,
};

use super::journal::RunLine;
use crate::journal_index::{IndexGuard, Indexed, SqlCtx, decode_record, each_record, sum_of};

/// The run journal's index.
pub(crate) struct RunIndex;

impl Indexed for RunIndex {
    type Line = RunLine;
    const DB: [&'static str; 2] = ["index", "runs.sqlite"];
    const JOURNAL: [&'static str; 2] = ["logs", "runs.ndjson"];
    const WHAT: &'static str = "run record";
    // The filter columns beside the run, so that a query skips rows
    // without decoding them.
    const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, workflow_id TEXT NOT NULL,
            workflow_version INTEGER NOT NULL, status TEXT NOT NULL, ended_at INTEGER,
            external_key TEXT, run TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at, id);
        CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, started_at, id);
        CREATE INDEX IF NOT EXISTS runs_by_key ON runs (workflow_id, external_key)
            WHERE external_key IS NOT NULL;";
    const CLEAR: &'static str = "DELETE FROM runs";
    const COMPACTED: &'static str = "";

    fn apply(
        conn: &Connection,
        _offset: u64,
        line: RunLine,
    ) -> Result<std::result::Result<bool, String>> {
        match line {
            RunLine::Put { run } => {
                let json = serde_json::to_string(&run)
                    .map_err(|e| Error::backend("encoding a run", Some(e.into())))?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO runs (id, started_at, workflow_id, workflow_version,
                       status, ended_at, external_key, run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        run.id.as_str(),
                        run.started_at.as_micros(),
                        run.workflow_id.as_str(),
                        run.workflow_version.get(),
                        run.status.as_str(),
                        run.ended_at.map(|t| t.as_micros()),
                        external_key_of(&run).map(|(_, k)| k),
                        json
                    ])
                })
                .sql("indexing a run")?;
            }
            RunLine::Delete { id } => {
                conn.prepare_cached("DELETE FROM runs WHERE id = ?1")
                    .and_then(|mut s| s.execute([id.as_str()]))
                    .sql("removing a run from the index")?;
            }
        }
        Ok(Ok(false))
    }
}

const INDEX: &str = "index/runs.sqlite";

fn decode(json: &str) -> Result<Run> {
    decode_record(INDEX, json)
}

/// The run `id`.
pub(crate) fn get(conn: &Connection, id: &RunId) -> Result<Option<Run>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT run FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
        .sql("reading a run")?;
    json.as_deref().map(decode).transpose()
}

/// Whether run `id` is stored, remembered while the journal is unchanged
/// (the check every append makes).
pub(crate) fn contains_known(index: &mut IndexGuard<'_>, id: &RunId) -> Result<bool> {
    if index.known().contains(id.as_str()) {
        return Ok(true);
    }
    let found = contains(index, id)?;
    if found {
        let known = index.known();
        if known.len() >= KNOWN_MAX {
            known.clear();
        }
        known.insert(id.as_str().to_owned());
    }
    Ok(found)
}

/// Run ids remembered as stored before the memory is cleared.
const KNOWN_MAX: usize = 4096;

/// Whether run `id` is stored.
pub(crate) fn contains(conn: &Connection, id: &RunId) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .and_then(|mut s| s.exists([id.as_str()]))
        .sql("looking up a run")
}

/// Whether each run of `ids` is stored, looked up in one read transaction
/// of the index (one lock of its shared memory, not one per run).
pub(crate) fn contains_each(conn: &Connection, ids: &[RunId]) -> Result<Vec<bool>> {
    let tx = conn.unchecked_transaction().sql("looking up runs")?;
    let found = ids
        .iter()
        .map(|id| contains(&tx, id))
        .collect::<Result<Vec<bool>>>()?;
    tx.commit().sql("looking up runs")?;
    Ok(found)
}

/// The run holding external key `key` of `workflow`.
pub(crate) fn by_key(conn: &Connection, workflow: &WorkflowId, key: &str) -> Result<Option<Run>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT run FROM runs WHERE workflow_id = ?1 AND external_key = ?2 LIMIT 1")
        .and_then(|mut s| {
            s.query_row(params![workflow.as_str(), key], |r| r.get(0))
                .optional()
        })
        .sql("looking up a run by key")?;
    json.as_deref().map(decode).transpose()
}

/// The `WHERE` conditions of a filter that its columns decide, with their
/// arguments; what they do not decide (the trigger) is checked on the
/// decoded run with [`RunFilter::matches`].
fn conditions(f: &RunFilter, bound: Option<Bound>) -> (String, Vec<Value>) {
    let mut cond = vec!["1 = 1".to_string()];
    let mut args: Vec<Value> = Vec::new();
    // Each `?` of `sql` becomes the next numbered parameter, bound to `v`.
    let mut arg = |sql: &str, values: Vec<Value>| {
        let mut out = String::new();
        let mut values = values.into_iter();
        for part in sql.split_inclusive('?') {
            match part.strip_suffix('?') {
                Some(head) => {
                    args.extend(values.next());
                    out.push_str(&format!("{head}?{}", args.len()));
                }
                None => out.push_str(part),
            }
        }
        cond.push(out);
    };
    if let Some(w) = &f.workflow_id {
        arg("workflow_id = ?", vec![Value::Text(w.as_str().into())]);
    }
    if let Some(v) = f.workflow_version {
        arg("workflow_version = ?", vec![Value::Integer(v.get().into())]);
    }
    if !f.statuses.is_empty() {
        let marks = vec!["?"; f.statuses.len()].join(", ");
        let values = f
            .statuses
            .iter()
            .map(|s| Value::Text(s.as_str().into()))
            .collect();
        arg(&format!("status IN ({marks})"), values);
    }
    let time = |t: runstore_core::Timestamp| vec![Value::Integer(t.as_micros())];
    if let Some(t) = f.started_from {
        arg("started_at >= ?", time(t));
    }
    if let Some(t) = f.started_before {
        arg("started_at < ?", time(t));
    }
    if let Some(t) = f.ended_from {
        arg("ended_at >= ?", time(t));
    }
    if let Some(t) = f.ended_before {
        arg("ended_at < ?", time(t));
    }
    if let Some(Bound { at, id, cmp }) = bound {
        arg(
            &format!("(started_at, id) {cmp} (?, ?)"),
            vec![Value::Integer(at), Value::Text(id)],
        );
    }
    (cond.join(" AND "), args)
}

/// The index that serves a filter's order.
fn order_index(f: &RunFilter) -> &'static str {
    if f.workflow_id.is_some() {
        "runs_by_workflow"
    } else {
        "runs_by_time"
    }
}

/// A cursor's position as a condition: runs strictly before it (`<`,
/// newest first) or after it (`>`, oldest first).
struct Bound {
    at: i64,
    id: String,
    cmp: &'static str,
}

/// A page of the runs matching `f`, newest first (oldest first when
/// `ascending`), after the cursor `after`.
pub(crate) fn query(
    conn: &Connection,
    f: &RunFilter,
    after: Option<RunCursor>,
    ascending: bool,
    limit: usize,
) -> Result<Page<Run>> {
    let (cmp, dir) = if ascending { (">", "") } else { ("<", " DESC") };
    let bound = after.map(|a| Bound {
        at: a.started_at.as_micros(),
        id: a.id.into_string(),
        cmp,
    });
    let (cond, args) = conditions(f, bound);
    let sql = format!(
        "SELECT run FROM runs INDEXED BY {} WHERE {cond}
         ORDER BY started_at{dir}, id{dir}",
        order_index(f)
    );
    let mut items = Vec::new();
    each_record(
        conn,
        INDEX,
        &sql,
        params_from_iter(args),
        "querying runs",
        |run: Run| {
            if f.matches(&run) {
                items.push(run);
            }
            Ok(items.len() <= limit)
        },
    )?;
    Ok(Page::from_overfetch(items, limit, RunCursor::of))
}

/// How many runs match `filter`.
pub(crate) fn count(conn: &Connection, f: &RunFilter) -> Result<u64> {
    let (cond, args) = conditions(f, None);
    if f.trigger.is_none() {
        let n: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM runs WHERE {cond}"))
            .and_then(|mut s| s.query_row(params_from_iter(args), |r| r.get(0)))
            .sql("counting runs")?;
        return Ok(n.max(0) as u64);
    }
    let mut n = 0;
    let sql = format!("SELECT run FROM runs WHERE {cond}");
    each_record(
        conn,
        INDEX,
        &sql,
        params_from_iter(args),
        "counting runs",
        |run: Run| {
            n += u64::from(f.matches(&run));
            Ok(true)
        },
    )?;
    Ok(n)
}

/// Every run, oldest first, for a compaction: `f` takes each in turn.
pub(crate) fn each_oldest_first(
    conn: &Connection,
    mut f: impl FnMut(Run) -> Result<()>,
) -> Result<()> {
    each_record(
        conn,
        INDEX,
        "SELECT run FROM runs INDEXED BY runs_by_time ORDER BY started_at, id",
        [],
        "reading every run",
        |run| f(run).map(|()| true),
    )
}

/// The bytes the live runs take as `put` lines of the journal: what a
/// compaction would write.
pub(crate) fn live_bytes(conn: &Connection) -> Result<u64> {
    // `{"op":"put","run":` + the run + `}` + newline.
    sum_of(
        conn,
        "SELECT COALESCE(SUM(length(CAST(run AS BLOB)) + 20), 0) FROM runs",
    )
}
