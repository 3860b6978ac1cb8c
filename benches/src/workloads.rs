//! The workloads through the runstore traits, and the run that puts each
//! beside its raw baseline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use runstore_core::{
    LogRepository, LogRepositoryExt, MetricsRepository, NewEvent, Run, RunFilter, RunId, RunQuery,
    RunStatus, RunUpdate, RunWithEvents, Timestamp, Version, WorkflowId,
};
use runstore_file::Durability;
use std::sync::Arc;

use crate::BenchResult;
use crate::data;
use crate::migration::{self, HopMode, HopResult};
use crate::raw;
use crate::report::{Row, Stats, Target, Unit};
use crate::scale::Sizes;
use crate::stores::{Backend, Opened};
use runstore::outbox::DrainOptions;

/// A running run to append to.
async fn open_run(logs: &dyn LogRepository, id: &str) -> BenchResult<RunId> {
    let mut run = Run::new(WorkflowId::new("wf-append")?, Version::FIRST);
    run.id = RunId::new(id)?;
    let id = run.id.clone();
    logs.create_run(run).await?;
    logs.update_status(&id, RunUpdate::running()).await?;
    Ok(id)
}

/// `n` single appends to one run. Ops/s.
pub async fn single_append(logs: &dyn LogRepository, run: &str, n: usize) -> BenchResult<f64> {
    let id = open_run(logs, run).await?;
    let start = Instant::now();
    for seq in 1..=n as u64 {
        logs.append_event(&id, NewEvent::new("step", data::payload(seq)))
            .await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// 8 tasks appending `n / 8` events each: to one shared run when
/// `one_run` (webhook bursts; what group commit can batch when a run's
/// events share a file), else each to its own run. Ops/s in all.
pub async fn concurrent_append(
    logs: Arc<dyn LogRepository>,
    tag: &str,
    n: usize,
    one_run: bool,
) -> BenchResult<f64> {
    let per = n / 8;
    let mut ids = Vec::new();
    if one_run {
        let id = open_run(&*logs, tag).await?;
        ids = vec![id; 8];
    } else {
        for w in 0..8 {
            ids.push(open_run(&*logs, &format!("{tag}-{w}")).await?);
        }
    }
    let start = Instant::now();
    let tasks = ids.into_iter().map(|id| {
        let logs = logs.clone();
        tokio::spawn(async move {
            for seq in 1..=per as u64 {
                logs.append_event(&id, NewEvent::new("step", data::payload(seq)))
                    .await?;
            }
            Ok::<_, runstore_core::Error>(())
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t??;
    }
    Ok((per * 8) as f64 / start.elapsed().as_secs_f64())
}

/// `batches` calls of `append_events` with `batch` events. Events/s.
pub async fn batched_append(
    logs: &dyn LogRepository,
    run: &str,
    batches: usize,
    batch: usize,
) -> BenchResult<f64> {
    let id = open_run(logs, run).await?;
    let start = Instant::now();
    for b in 0..batches {
        let events = (0..batch)
            .map(|k| NewEvent::new("step", data::payload((b * batch + k) as u64)))
            .collect();
        logs.append_events(&id, events).await?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// `import_runs` in batches of 1,000 runs. Records (runs + events)/s.
pub async fn bulk_import(logs: &dyn LogRepository, runs: &[RunWithEvents]) -> BenchResult<f64> {
    let start = Instant::now();
    let mut records = 0;
    for chunk in runs.chunks(1000) {
        let out = logs.import_runs(chunk.to_vec()).await?;
        if out.inserted != chunk.len() as u64 {
            return Err(format!("imported {} of {} runs", out.inserted, chunk.len()).into());
        }
        records += chunk.iter().map(|r| 1 + r.events.len()).sum::<usize>();
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// Loads runs `0..rows` of `tag` through `import_runs` in batches of 5,000.
pub async fn load_runs(logs: &dyn LogRepository, tag: &str, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 5_000).min(rows);
        let batch = (i..end).map(|k| data::run_with_events(tag, k, 0)).collect();
        logs.import_runs(batch).await?;
        i = end;
    }
    Ok(())
}

/// `get_recent(50)` of the query workflow, `reps` times. Milliseconds each.
pub async fn recent(logs: &dyn LogRepository, reps: usize) -> BenchResult<Vec<f64>> {
    let wf = WorkflowId::new(data::QUERY_WORKFLOW)?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let runs = logs.get_recent(&wf, None, 50).await?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if runs.len() != 50 {
            return Err(format!("get_recent returned {} runs", runs.len()).into());
        }
    }
    Ok(out)
}

/// The filtered query over `rows` runs, `reps` times. Milliseconds each.
pub async fn filtered(logs: &dyn LogRepository, rows: usize, reps: usize) -> BenchResult<Vec<f64>> {
    let spec = data::filter_spec(rows);
    let filter = RunFilter::default()
        .workflow(WorkflowId::new(spec.workflow)?)
        .statuses([spec.status])
        .trigger(spec.trigger)
        .started_between(
            Some(Timestamp::from_micros(spec.from)?),
            Some(Timestamp::from_micros(spec.before)?),
        );
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let page = logs
            .query_runs(RunQuery::new(filter.clone()).with_limit(50))
            .await?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if page.items.is_empty() || page.items.iter().any(|r| r.status != RunStatus::Failed) {
            return Err("the filtered query returned a wrong page".into());
        }
    }
    Ok(out)
}

/// Loads metrics `0..rows` through `record_many` in batches of 10,000.
pub async fn load_metrics(metrics: &dyn MetricsRepository, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 10_000).min(rows);
        metrics
            .record_many((i..end).map(data::metric).collect())
            .await?;
        i = end;
    }
    Ok(())
}

/// The summary of the summary workflow, `reps` times. Milliseconds each.
pub async fn summary(
    metrics: &dyn MetricsRepository,
    rows: usize,
    reps: usize,
) -> BenchResult<Vec<f64>> {
    let wf = WorkflowId::new(data::SUMMARY_WORKFLOW)?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let s = metrics.summary(&wf, Default::default()).await?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if s.executions != rows as u64 {
            return Err(format!("summary counted {} of {rows} metrics", s.executions).into());
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ the run

/// The workloads, in the order they run.
pub const WORKLOADS: [&str; 8] = [
    "appends",
    "imports",
    "queries",
    "summaries",
    "artifacts",
    "migration",
    "prune",
    "outbox",
];

/// Everything a run needs.
pub struct Plan {
    /// Names of the workloads to run (of [`WORKLOADS`]).
    pub workloads: Vec<String>,
    /// Sizes of the chosen scale.
    pub sizes: Sizes,
    /// Backends to measure.
    pub backends: Vec<Backend>,
    /// This program (the artifact children run it).
    pub exe: PathBuf,
    /// A folder for every database and file of the run.
    pub scratch: PathBuf,
    /// Print progress to stderr.
    pub verbose: bool,
}

struct Ctx<'a> {
    plan: &'a Plan,
    n: usize,
    rows: Vec<Row>,
    /// Raw bulk-insert figures (rusqlite tx, binary COPY), for migration.
    raw_bulk: Vec<(Backend, (String, Stats))>,
    /// A no-op round trip to tokio's blocking pool, median microseconds,
    /// measured once when first asked.
    hop_micros: Option<f64>,
}

impl Ctx<'_> {
    /// What one hop to the blocking pool and back costs in this run: the
    /// file and SQLite backends take it once per call, to keep blocking
    /// I/O off the executor, and the raw baselines do not.
    async fn hop_micros(&mut self) -> f64 {
        if let Some(h) = self.hop_micros {
            return h;
        }
        let mut v = Vec::with_capacity(300);
        for _ in 0..300 {
            let t = Instant::now();
            let _ = tokio::task::spawn_blocking(|| ()).await;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let h = stats_of(&v).map_or(0.0, |s| s.median);
        self.hop_micros = Some(h);
        h
    }

    fn dir(&mut self) -> BenchResult<PathBuf> {
        self.n += 1;
        let d = self.plan.scratch.join(format!("w{:03}", self.n));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
    fn log(&self, msg: &str) {
        if self.plan.verbose {
            eprintln!(
                "[{:>8.1}s] {msg}",
                START.with(|s| s.elapsed().as_secs_f64())
            );
        }
    }
    /// The backends that hold runs and metrics (all but the artifacts-only
    /// S3 store).
    fn record_backends(&self) -> Vec<Backend> {
        self.plan
            .backends
            .iter()
            .copied()
            .filter(|b| *b != Backend::S3)
            .collect()
    }

    fn has(&self, b: Backend) -> bool {
        self.plan.backends.contains(&b)
    }
}

thread_local! {
    static START: Instant = Instant::now();
}

fn stats_of(values: &[f64]) -> Option<Stats> {
    Stats::of(values)
}

/// Repeats an async measurement; the first error ends it.
async fn repeat<F, Fut>(reps: usize, mut f: F) -> BenchResult<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = BenchResult<f64>>,
{
    let mut v = Vec::new();
    for i in 0..reps {
        v.push(f(i).await?);
    }
    stats_of(&v).ok_or_else(|| "no figures".into())
}

fn fill(row: &mut Row, r: BenchResult<Stats>) {
    match r {
        Ok(s) => row.stats = Some(s),
        Err(e) => row.note = format!("failed: {e}"),
    }
}

fn raw_named(
    name: &str,
    r: BenchResult<Stats>,
    notes: &mut Vec<String>,
) -> Option<(String, Stats)> {
    match r {
        Ok(s) => Some((name.to_string(), s)),
        Err(e) => {
            notes.push(format!("raw {name} failed: {e}"));
            None
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> BenchResult<T> + Send + 'static,
) -> BenchResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

/// Runs every workload on every backend of the plan, beside the raw
/// baselines, and returns the rows of the table and notes on raw
/// baselines that failed.
pub async fn run_all(plan: &Plan) -> (Vec<Row>, Vec<String>) {
    let mut ctx = Ctx {
        plan,
        n: 0,
        rows: Vec::new(),
        raw_bulk: Vec::new(),
        hop_micros: None,
    };
    START.with(|_| ());
    let mut raw_notes = Vec::new();
    let pg_raw = if ctx.has(Backend::Postgres) {
        match pg_raw_schema().await {
            Ok(p) => Some(p),
            Err(e) => {
                raw_notes.push(format!("raw postgres unavailable: {e}"));
                None
            }
        }
    } else {
        None
    };
    let runs = |name: &str| plan.workloads.iter().any(|w| w == name);
    if runs("appends") {
        appends(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    // The migration rows are shown beside the raw bulk-import figures.
    if runs("imports") || runs("migration") {
        imports(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    if runs("queries") {
        queries(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    if runs("summaries") {
        summaries(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    if runs("artifacts") {
        artifacts(&mut ctx, &mut raw_notes).await;
    }
    if runs("migration") {
        migration(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    if runs("prune") {
        prunes(&mut ctx, pg_raw.as_ref(), &mut raw_notes).await;
    }
    if runs("outbox") {
        outboxes(&mut ctx, &mut raw_notes).await;
    }
    if let Some((url, schema)) = &pg_raw
        && let Ok(c) = raw::pg_connect(url, schema).await
    {
        let _ = raw::pg_drop(&c, schema).await;
    }
    (ctx.rows, raw_notes)
}

/// `1M`, `100k` or `200`: a row count for labels.
pub fn count_label(rows: usize) -> String {
    if rows >= 1_000_000 && rows.is_multiple_of(1_000_000) {
        format!("{}M", rows / 1_000_000)
    } else if rows >= 1000 && rows.is_multiple_of(1000) {
        format!("{}k", rows / 1000)
    } else {
        rows.to_string()
    }
}

/// `1 GiB`, `64 MiB` or `64 KiB`: a size for labels.
pub fn size_label(size: u64) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{} KiB", size >> 10)
    }
}

/// (url, schema) of a fresh schema for the raw PostgreSQL tables.
async fn pg_raw_schema() -> BenchResult<(String, String)> {
    let server = runstore_postgres::testing::test_server()
        .await
        .ok_or("no PostgreSQL server")?;
    let schema = format!("bench_raw_{}", std::process::id());
    let c = raw::pg_connect(server.url(), &schema).await?;
    raw::pg_drop(&c, &schema).await?;
    let c = raw::pg_connect(server.url(), &schema).await?;
    raw::pg_create_tables(&c).await?;
    Ok((server.url().to_string(), schema))
}

/// The raw counterpart of an append workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RawAppend {
    FsyncSingle,
    FsyncBatched,
    SqliteAutocommit,
    SqliteConcurrent,
    SqliteTx,
    PgInsert,
    PgConcurrent,
    PgTx,
}

impl RawAppend {
    fn name(self, batch: usize) -> String {
        match self {
            RawAppend::FsyncSingle => "write+fdatasync".into(),
            RawAppend::FsyncBatched => format!("{batch} lines+fdatasync"),
            RawAppend::SqliteAutocommit => "rusqlite autocommit".into(),
            RawAppend::SqliteConcurrent => "rusqlite 8 conns".into(),
            RawAppend::SqliteTx => "rusqlite tx".into(),
            RawAppend::PgInsert => "tokio-postgres insert".into(),
            RawAppend::PgConcurrent => "tokio-postgres 8 clients".into(),
            RawAppend::PgTx => "tokio-postgres tx".into(),
        }
    }
}

/// One repetition of a raw append baseline, in folder `dir`.
async fn raw_append(
    kind: RawAppend,
    s: &Sizes,
    dir: PathBuf,
    pg: Option<&(String, String)>,
) -> BenchResult<f64> {
    std::fs::create_dir_all(&dir)?;
    let (n, conc, batches, batch) = (s.single_appends, s.concurrent_appends, s.batches, s.batch);
    let pg = || pg.ok_or_else(|| crate::BenchError::from("no PostgreSQL server"));
    match kind {
        RawAppend::FsyncSingle => blocking(move || raw::fdatasync_single(&dir, n)).await,
        RawAppend::FsyncBatched => {
            blocking(move || raw::fdatasync_batched(&dir, batches, batch)).await
        }
        // FULL: what the durable single append row of SQLite uses.
        RawAppend::SqliteAutocommit => {
            blocking(move || {
                raw::sqlite_autocommit(&raw::sqlite_open(&dir.join("raw.db"), "FULL")?, "raw", n)
            })
            .await
        }
        // NORMAL: the backend's default, used by the other SQLite rows.
        RawAppend::SqliteConcurrent => {
            blocking(move || raw::sqlite_concurrent(&dir.join("raw.db"), "NORMAL", "raw", conc))
                .await
        }
        RawAppend::SqliteTx => {
            blocking(move || {
                let mut conn = raw::sqlite_open(&dir.join("raw.db"), "NORMAL")?;
                raw::sqlite_transactions(&mut conn, "raw", batches, batch)
            })
            .await
        }
        RawAppend::PgInsert | RawAppend::PgConcurrent | RawAppend::PgTx => {
            let (url, schema) = pg()?;
            let mut c = raw::pg_connect(url, schema).await?;
            c.batch_execute("TRUNCATE events").await?;
            match kind {
                RawAppend::PgInsert => raw::pg_autocommit(&c, "raw", n).await,
                RawAppend::PgConcurrent => raw::pg_concurrent(url, schema, conc).await,
                _ => raw::pg_transactions(&mut c, "raw", batches, batch).await,
            }
        }
    }
}

/// Which append workload a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Append {
    Single,
    Concurrent,
    ConcurrentOneRun,
    Batched,
}

async fn backend_append(
    kind: Append,
    b: Backend,
    s: &Sizes,
    dir: PathBuf,
    i: usize,
) -> BenchResult<f64> {
    std::fs::create_dir_all(&dir)?;
    let o = b.open(&dir).await?;
    match kind {
        Append::Single => {
            single_append(&*o.stores.logs, &format!("single-{i}"), s.single_appends).await
        }
        Append::Concurrent | Append::ConcurrentOneRun => {
            concurrent_append(
                o.stores.logs.clone(),
                &format!("conc-{i}"),
                s.concurrent_appends,
                kind == Append::ConcurrentOneRun,
            )
            .await
        }
        Append::Batched => {
            batched_append(&*o.stores.logs, &format!("batch-{i}"), s.batches, s.batch).await
        }
    }
}

async fn appends(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    for b in ctx.record_backends() {
        for kind in [
            Append::Single,
            Append::Concurrent,
            Append::ConcurrentOneRun,
            Append::Batched,
        ] {
            // The durable single append uses the durable setting; 8
            // concurrent file appenders use group commit.
            let mb = match (kind, b) {
                (Append::Single, Backend::Sqlite { .. }) => Backend::Sqlite { full: true },
                (Append::Concurrent | Append::ConcurrentOneRun, Backend::File(_)) => {
                    Backend::File(Durability::GroupCommit)
                }
                _ => b,
            };
            let (op, raw_kind, target) = match (kind, b) {
                (Append::Single, Backend::File(_)) => (
                    "durable single append".to_string(),
                    Some(RawAppend::FsyncSingle),
                    Some(Target::RatioAtLeast(0.9)),
                ),
                (Append::Single, Backend::Sqlite { .. }) => (
                    "durable single append".into(),
                    Some(RawAppend::SqliteAutocommit),
                    Some(Target::RatioAtLeast(0.7)),
                ),
                (Append::Single, Backend::Postgres) => (
                    "durable single append".into(),
                    Some(RawAppend::PgInsert),
                    None,
                ),
                (Append::Single, Backend::Memory | Backend::S3) => {
                    ("durable single append".into(), None, None)
                }
                (Append::Concurrent | Append::ConcurrentOneRun, Backend::File(_)) => (
                    "8 concurrent appenders".into(),
                    Some(RawAppend::FsyncSingle),
                    Some(Target::RatioAtLeast(6.0)),
                ),
                (Append::Concurrent | Append::ConcurrentOneRun, Backend::Sqlite { .. }) => (
                    "8 concurrent appenders".into(),
                    Some(RawAppend::SqliteConcurrent),
                    None,
                ),
                (Append::Concurrent | Append::ConcurrentOneRun, Backend::Postgres) => (
                    "8 concurrent appenders".into(),
                    Some(RawAppend::PgConcurrent),
                    None,
                ),
                (Append::Concurrent | Append::ConcurrentOneRun, Backend::Memory | Backend::S3) => {
                    ("8 concurrent appenders".into(), None, None)
                }
                (Append::Batched, Backend::File(_)) => (
                    format!("batched append ({})", s.batch),
                    Some(RawAppend::FsyncBatched),
                    None,
                ),
                (Append::Batched, Backend::Sqlite { .. }) => (
                    format!("batched append ({})", s.batch),
                    Some(RawAppend::SqliteTx),
                    Some(Target::RatioAtLeast(0.8)),
                ),
                (Append::Batched, Backend::Postgres) => (
                    format!("batched append ({})", s.batch),
                    Some(RawAppend::PgTx),
                    None,
                ),
                (Append::Batched, Backend::Memory | Backend::S3) => {
                    (format!("batched append ({})", s.batch), None, None)
                }
            };
            let op = match kind {
                Append::Concurrent => format!("{op} (8 runs)"),
                Append::ConcurrentOneRun => format!("{op} (1 run)"),
                _ => op,
            };
            ctx.log(&format!("{op}: {mb}"));
            let mut row = Row::new(op, mb.to_string(), Unit::OpsPerSec);
            row.target = target;
            // Raw and backend alternate within each repetition, so that a
            // disk shared with other work slows both alike.
            let (mut raw_v, mut back_v) = (Vec::new(), Vec::new());
            let mut raw_err = None;
            let mut back_err = None;
            for i in 0..s.reps {
                if let Some(rk) = raw_kind
                    && raw_err.is_none()
                {
                    let dir = ctx.plan.scratch.join(format!(
                        "raw-{}-{rk:?}-{i}",
                        crate::artifacts::backend_arg(mb)
                    ));
                    match raw_append(rk, &s, dir.clone(), pg).await {
                        Ok(v) => raw_v.push(v),
                        Err(e) => raw_err = Some(e.to_string()),
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
                if back_err.is_none() {
                    let dir = ctx.plan.scratch.join(format!(
                        "{}-{kind:?}-{i}",
                        crate::artifacts::backend_arg(mb)
                    ));
                    match backend_append(kind, mb, &s, dir.clone(), i).await {
                        Ok(v) => back_v.push(v),
                        Err(e) => back_err = Some(e.to_string()),
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            match back_err {
                Some(e) => row.note = format!("failed: {e}"),
                None => row.stats = stats_of(&back_v),
            }
            let single_file = matches!((kind, b), (Append::Single, Backend::File(_)));
            if let Some(rk) = raw_kind {
                let mut name = rk.name(s.batch);
                if matches!(kind, Append::Concurrent | Append::ConcurrentOneRun)
                    && matches!(b, Backend::File(_))
                {
                    name = format!("1 writer {name}");
                }
                match raw_err {
                    Some(e) => notes.push(format!("raw {name} failed: {e}")),
                    None => row.raw = stats_of(&raw_v).map(|st| (name, st)),
                }
            }
            if single_file
                && let (Some(st), Some((_, raw))) = (&row.stats, &row.raw)
                && st.median < raw.median
            {
                let hop = ctx.hop_micros().await;
                row.note = hop_note(1e6 / st.median, 1e6 / raw.median, hop);
            }
            ctx.rows.push(row);
        }
    }
}

async fn imports(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    let runs: Arc<Vec<RunWithEvents>> = Arc::new(
        (0..s.import_runs)
            .map(|i| data::run_with_events("imp", i, 10))
            .collect(),
    );
    ctx.log("bulk import: raw baselines");
    let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
    let file_raw = {
        let (d, runs, reps) = (dir.clone(), runs.clone(), s.reps);
        blocking(move || {
            let mut v = Vec::new();
            for i in 0..reps {
                let d = d.join(format!("f{i}"));
                std::fs::create_dir_all(&d)?;
                v.push(raw::file_bulk(&d, &runs)?);
            }
            stats_of(&v).ok_or_else(|| "no figures".into())
        })
        .await
    };
    let file_raw = raw_named("NDJSON+fdatasync", file_raw, notes);
    let sq_raw = {
        let (d, runs, reps) = (dir.clone(), runs.clone(), s.reps);
        blocking(move || {
            let mut v = Vec::new();
            for i in 0..reps {
                let mut conn = raw::sqlite_open(&d.join(format!("imp{i}.db")), "NORMAL")?;
                v.push(raw::sqlite_bulk(&mut conn, &runs)?);
            }
            stats_of(&v).ok_or_else(|| "no figures".into())
        })
        .await
    };
    let sq_raw = raw_named("rusqlite tx", sq_raw, notes);
    if let Some(r) = &sq_raw {
        ctx.raw_bulk
            .push((Backend::Sqlite { full: false }, r.clone()));
    }
    let mut pg_raw = None;
    if let Some((url, schema)) = pg {
        let r = async {
            let c = raw::pg_connect(url, schema).await?;
            let mut v = Vec::new();
            for _ in 0..s.reps {
                c.batch_execute("TRUNCATE runs, events").await?;
                v.push(raw::pg_copy_bulk(&c, &runs).await?);
            }
            c.batch_execute("TRUNCATE runs, events").await?;
            stats_of(&v).ok_or_else(|| crate::BenchError::from("no figures"))
        }
        .await;
        pg_raw = raw_named("binary COPY", r, notes);
        if let Some(r) = &pg_raw {
            ctx.raw_bulk.push((Backend::Postgres, r.clone()));
        }
    }
    for b in ctx.record_backends() {
        ctx.log(&format!("bulk import: {b}"));
        let mut row = Row::new(
            format!("bulk import ({} runs x 10 events)", s.import_runs),
            b.to_string(),
            Unit::RecordsPerSec,
        );
        let runs = runs.clone();
        let r = repeat(s.reps, |i| {
            let dir = ctx
                .plan
                .scratch
                .join(format!("imp-{}-{i}", crate::artifacts::backend_arg(b)));
            let runs = runs.clone();
            async move {
                std::fs::create_dir_all(&dir)?;
                let o = b.open(&dir).await?;
                bulk_import(&*o.stores.logs, &runs).await
            }
        })
        .await;
        fill(&mut row, r);
        match b {
            Backend::File(_) => {
                row.raw = file_raw.clone();
                row.target = Some(Target::RatioAtLeast(0.5));
                row.note = "one events file per run, as the layout has it, against one appended file for the raw baseline: the batch's files are made durable with one syncfs, and creating them bounds the rate (in perf, ext4's inode allocation in ext4_create takes most of the time)".into();
            }
            Backend::Sqlite { .. } => row.raw = sq_raw.clone(),
            Backend::Postgres => {
                row.raw = pg_raw.clone();
                row.target = Some(Target::RatioAtLeast(0.8));
            }
            Backend::Memory | Backend::S3 => {}
        }
        ctx.rows.push(row);
    }
}

async fn queries(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    for &rows in &s.query_rows {
        let label = count_label(rows);
        ctx.log(&format!("queries at {rows} runs: raw rusqlite"));
        let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
        let sq = {
            let (d, reps) = (dir.clone(), s.query_reps);
            blocking(move || {
                let mut conn = raw::sqlite_open(&d.join("q.db"), "NORMAL")?;
                raw::sqlite_load_runs(&mut conn, "q", rows)?;
                conn.execute_batch("ANALYZE")?;
                let a = raw::sqlite_recent(&conn, reps)?;
                let b = raw::sqlite_filtered(&conn, &data::filter_spec(rows), reps)?;
                Ok((stats_of(&a), stats_of(&b)))
            })
            .await
        };
        let (sq_recent, sq_filtered) = match sq {
            Ok((a, b)) => (
                a.map(|a| ("rusqlite".to_string(), a)),
                b.map(|b| ("rusqlite".to_string(), b)),
            ),
            Err(e) => {
                notes.push(format!("raw rusqlite queries at {rows} failed: {e}"));
                (None, None)
            }
        };
        let (mut pg_recent, mut pg_filtered) = (None, None);
        if let Some((url, schema)) = pg {
            ctx.log(&format!("queries at {rows} runs: raw tokio-postgres"));
            let r = async {
                let c = raw::pg_connect(url, schema).await?;
                c.batch_execute("TRUNCATE runs, events").await?;
                raw::pg_load_runs(&c, "q", rows).await?;
                let a = raw::pg_recent(&c, s.query_reps).await?;
                let b = raw::pg_filtered(&c, &data::filter_spec(rows), s.query_reps).await?;
                c.batch_execute("TRUNCATE runs, events").await?;
                BenchResult::Ok((stats_of(&a), stats_of(&b)))
            }
            .await;
            match r {
                Ok((a, b)) => {
                    pg_recent = a.map(|a| ("tokio-postgres".to_string(), a));
                    pg_filtered = b.map(|b| ("tokio-postgres".to_string(), b));
                }
                Err(e) => notes.push(format!("raw tokio-postgres queries at {rows} failed: {e}")),
            }
        }
        for b in ctx.record_backends() {
            let mut recent_row = Row::new(
                format!("get_recent(50) @ {label} runs"),
                b.to_string(),
                Unit::Millis,
            );
            let mut filt_row = Row::new(
                format!("filtered query @ {label} runs"),
                b.to_string(),
                Unit::Millis,
            );
            if matches!(b, Backend::File(_)) && rows > s.file_query_cap {
                let note = format!(
                    "not measured: loading {rows} runs into the file backend is beyond this run's time budget; see the {} row",
                    count_label(s.file_query_cap)
                );
                recent_row.note = note.clone();
                filt_row.note = note;
                ctx.rows.push(recent_row);
                ctx.rows.push(filt_row);
                continue;
            }
            ctx.log(&format!("queries at {rows} runs: loading {b}"));
            let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
            let r = async {
                let o = b.open(&dir).await?;
                let t = Instant::now();
                load_runs(&*o.stores.logs, "q", rows).await?;
                let load = t.elapsed().as_secs_f64();
                let a = recent(&*o.stores.logs, s.query_reps).await?;
                let f = filtered(&*o.stores.logs, rows, s.query_reps).await?;
                BenchResult::Ok((load, a, f))
            }
            .await;
            match r {
                Ok((load, a, f)) => {
                    recent_row.stats = stats_of(&a);
                    filt_row.stats = stats_of(&f);
                    recent_row.note = format!(
                        "loaded with import_runs at {} runs/s",
                        crate::report::fmt_num(rows as f64 / load)
                    );
                }
                Err(e) => {
                    recent_row.note = format!("failed: {e}");
                    filt_row.note = format!("failed: {e}");
                }
            }
            match b {
                Backend::Sqlite { .. } => {
                    recent_row.raw = sq_recent.clone();
                    filt_row.raw = sq_filtered.clone();
                }
                Backend::Postgres => {
                    recent_row.raw = pg_recent.clone();
                    filt_row.raw = pg_filtered.clone();
                }
                _ => {}
            }
            if rows >= 1_000_000 && matches!(b, Backend::Sqlite { .. } | Backend::Postgres) {
                recent_row.target = Some(Target::RatioAtMost(2.0));
            }
            if matches!(b, Backend::Sqlite { .. })
                && let (Some(st), Some((_, raw))) = (&recent_row.stats, &recent_row.raw)
                && st.median > raw.median
            {
                let (ours, raw) = (st.median * 1e3, raw.median * 1e3);
                let hop = ctx.hop_micros().await;
                recent_row.note = format!("{}; {}", recent_row.note, hop_note(ours, raw, hop));
            }
            ctx.rows.push(recent_row);
            ctx.rows.push(filt_row);
            if matches!(b, Backend::File(_)) {
                let row = open_row(ctx, b, &dir, rows).await;
                ctx.rows.push(row);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Opening the loaded root in a child process and answering the
/// dashboard's reads, after a metric is recorded for every run: the time
/// and the child's peak memory.
async fn open_row(ctx: &mut Ctx<'_>, b: Backend, dir: &Path, rows: usize) -> Row {
    let mut row = Row::new(
        format!(
            "open + get_recent + filtered + summary @ {} runs",
            count_label(rows)
        ),
        b.to_string(),
        Unit::Millis,
    );
    ctx.log(&format!("open at {rows} runs: recording metrics into {b}"));
    let loaded = async {
        let o = b.open(dir).await?;
        load_metrics(&*o.stores.metrics, rows).await
    }
    .await;
    if let Err(e) = loaded {
        row.note = format!("failed: {e}");
        return row;
    }
    ctx.log(&format!("open at {rows} runs: {b} in a child process"));
    let (exe, d) = (ctx.plan.exe.clone(), dir.to_path_buf());
    match blocking(move || crate::open_root::run_child(&exe, b, &d, rows, rows)).await {
        Ok(r) => {
            row.stats = stats_of(&[r.millis]);
            row.peak_bytes = Some(r.peak_bytes);
            row.target = Some(Target::PeakUnderMib(256.0));
            row.note = "a new process opens the root (indexes on disk) and reads; peak RSS is that process's".into();
        }
        Err(e) => row.note = format!("failed: {e}"),
    }
    row
}

/// Records per second of `rows` records done in `secs`, as one figure.
fn rate(rows: usize, secs: f64) -> Option<Stats> {
    stats_of(&[rows as f64 / secs.max(1e-9)])
}

/// The summary over `rows` metrics, and the recording of those metrics
/// (`record_many` of 10,000, which keeps the summary counters) beside the
/// raw library inserting the same rows.
async fn summaries(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    let reps = s.reps.max(5);
    for &rows in &s.summary_rows {
        let label = count_label(rows);
        ctx.log(&format!("summary over {rows} metrics: raw"));
        let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
        let sq = {
            let d = dir.clone();
            blocking(move || {
                let mut conn = raw::sqlite_open(&d.join("m.db"), "NORMAL")?;
                let start = Instant::now();
                raw::sqlite_load_metrics(&mut conn, rows)?;
                let load = rate(rows, start.elapsed().as_secs_f64());
                conn.execute_batch("ANALYZE")?;
                let summary = stats_of(&raw::sqlite_summary(&conn, reps)?);
                Ok((summary.ok_or("no figures")?, load.ok_or("no figures")?))
            })
            .await
        };
        let (sq, sq_load) = match sq {
            Ok((a, b)) => (
                Some(("rusqlite aggregate".to_string(), a)),
                Some(("rusqlite tx".to_string(), b)),
            ),
            Err(e) => {
                notes.push(format!("raw rusqlite aggregate failed: {e}"));
                (None, None)
            }
        };
        let (mut pgr, mut pg_load) = (None, None);
        if let Some((url, schema)) = pg {
            let r = async {
                let c = raw::pg_connect(url, schema).await?;
                c.batch_execute("TRUNCATE metrics").await?;
                let start = Instant::now();
                raw::pg_load_metrics(&c, rows).await?;
                let load = rate(rows, start.elapsed().as_secs_f64());
                let v = raw::pg_summary(&c, reps).await?;
                c.batch_execute("TRUNCATE metrics").await?;
                Ok::<_, crate::BenchError>((
                    stats_of(&v).ok_or_else(|| crate::BenchError::from("no figures"))?,
                    load.ok_or_else(|| crate::BenchError::from("no figures"))?,
                ))
            }
            .await;
            match r {
                Ok((a, b)) => {
                    pgr = Some(("tokio-postgres aggregate".to_string(), a));
                    pg_load = Some(("tokio-postgres COPY".to_string(), b));
                }
                Err(e) => notes.push(format!("raw tokio-postgres aggregate failed: {e}")),
            }
        }
        for b in ctx.record_backends() {
            let mut row = Row::new(
                format!("summary over {label} metrics"),
                b.to_string(),
                Unit::Millis,
            );
            let mut load_row = Row::new(
                format!("record metrics ({label}, record_many of 10k)"),
                b.to_string(),
                Unit::RecordsPerSec,
            );
            if rows >= 1_000_000 {
                row.target = Some(Target::UnderMillis(10.0));
            }
            if matches!(b, Backend::File(_)) && rows > s.file_query_cap {
                row.note = format!(
                    "not measured: loading {rows} metrics into the file backend is beyond this run's time budget; see the {} row",
                    count_label(s.file_query_cap)
                );
                ctx.rows.push(row);
                continue;
            }
            ctx.log(&format!("summary over {rows} metrics: {b}"));
            let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
            let r = async {
                let o = b.open(&dir).await?;
                let start = Instant::now();
                load_metrics(&*o.stores.metrics, rows).await?;
                let load = rate(rows, start.elapsed().as_secs_f64());
                Ok::<_, crate::BenchError>((summary(&*o.stores.metrics, rows, reps).await?, load))
            }
            .await;
            match r {
                Ok((v, load)) => {
                    row.stats = stats_of(&v);
                    load_row.stats = load;
                }
                Err(e) => row.note = format!("failed: {e}"),
            }
            match b {
                Backend::Sqlite { .. } => {
                    row.raw = sq.clone();
                    load_row.raw = sq_load.clone();
                }
                Backend::Postgres => {
                    row.raw = pgr.clone();
                    load_row.raw = pg_load.clone();
                }
                _ => {}
            }
            ctx.rows.push(row);
            if load_row.stats.is_some() {
                ctx.rows.push(load_row);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

async fn artifacts(ctx: &mut Ctx<'_>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    for &size in &s.artifact_sizes {
        let label = size_label(size);
        let reps = if size >= 256 << 20 { 1 } else { s.reps };
        ctx.log(&format!("artifact {label}: raw"));
        let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
        let raw_r = {
            let d = dir.clone();
            blocking(move || {
                let (mut w, mut r, mut placed, mut sha) = (vec![], vec![], vec![], vec![]);
                for _ in 0..reps {
                    let (a, b) = raw::file_artifact(&d, size)?;
                    w.push(a);
                    r.push(b);
                    placed.push(raw::file_artifact_placed(&d, size)?);
                    sha.push(raw::sha256_rate(size));
                }
                Ok((
                    stats_of(&w),
                    stats_of(&r),
                    stats_of(&placed),
                    stats_of(&sha),
                ))
            })
            .await
        };
        let raw = match raw_r {
            Ok((w, r, placed, sha)) => RawArtifact {
                write: w.map(|w| ("std::fs write+fsync".to_string(), w)),
                read: r.map(|r| ("std::fs read".to_string(), r)),
                placed: placed.map(|p| ("tmp+fsync+rename+dir fsync".to_string(), p)),
                sha256: sha,
                s3: None,
            },
            Err(e) => {
                notes.push(format!("raw artifact {label} failed: {e}"));
                RawArtifact::default()
            }
        };
        let mut raw = raw;
        if ctx.has(Backend::S3) {
            ctx.log(&format!("artifact {label}: raw object_store"));
            let (mut w, mut r) = (vec![], vec![]);
            for _ in 0..reps {
                match raw::s3_artifact(size).await {
                    Ok((a, b)) => {
                        w.push(a);
                        r.push(b);
                    }
                    Err(e) => {
                        notes.push(format!("raw object_store artifact {label} failed: {e}"));
                        break;
                    }
                }
            }
            raw.s3 = stats_of(&w).zip(stats_of(&r));
        }
        for b in ctx.plan.backends.clone() {
            if b == Backend::Memory {
                // Holding the bytes in memory is what the memory backend
                // does: a peak-memory figure would say nothing.
                continue;
            }
            ctx.log(&format!("artifact {label}: {b}"));
            let mut wrow = Row::new(
                format!("artifact write {label}"),
                b.to_string(),
                Unit::MibPerSec,
            );
            let mut rrow = Row::new(
                format!("artifact read {label}"),
                b.to_string(),
                Unit::MibPerSec,
            );
            let mut w = Vec::new();
            let mut r = Vec::new();
            let mut peak_w = 0u64;
            let mut peak_r = 0u64;
            let mut err = None;
            for _ in 0..reps {
                let dir = match ctx.dir() {
                    Ok(d) => d,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                };
                let one = async {
                    // The parent keeps the store open only to own the
                    // PostgreSQL schema; the children do the work.
                    let o = b.open(&dir).await?;
                    let exe = ctx.plan.exe.clone();
                    let (d2, pg) = (dir.clone(), o.remote.clone());
                    let cw = blocking(move || {
                        crate::artifacts::run_child(&exe, b, "write", size, &d2, pg.as_ref())
                    })
                    .await?;
                    let exe = ctx.plan.exe.clone();
                    let (d2, pg) = (dir.clone(), o.remote.clone());
                    let cr = blocking(move || {
                        crate::artifacts::run_child(&exe, b, "read", size, &d2, pg.as_ref())
                    })
                    .await?;
                    drop(o);
                    BenchResult::Ok((cw, cr))
                }
                .await;
                let _ = std::fs::remove_dir_all(&dir);
                match one {
                    Ok((cw, cr)) => {
                        w.push(cw.mib_per_sec);
                        r.push(cr.mib_per_sec);
                        peak_w = peak_w.max(cw.peak_bytes);
                        peak_r = peak_r.max(cr.peak_bytes);
                    }
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(e) = err {
                wrow.note = format!("failed: {e}");
                rrow.note = wrow.note.clone();
            } else {
                wrow.stats = stats_of(&w);
                rrow.stats = stats_of(&r);
                wrow.peak_bytes = Some(peak_w);
                rrow.peak_bytes = Some(peak_r);
            }
            raw.apply(b, size, &mut wrow, &mut rrow);
            ctx.rows.push(wrow);
            ctx.rows.push(rrow);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The raw figures of one artifact size, measured in the same run.
#[derive(Default)]
struct RawArtifact {
    write: Option<(String, Stats)>,
    read: Option<(String, Stats)>,
    placed: Option<(String, Stats)>,
    sha256: Option<Stats>,
    /// object_store (write, read) against the S3 test server.
    s3: Option<(Stats, Stats)>,
}

impl RawArtifact {
    /// Sets the raw figures and targets of a backend's write and read rows.
    /// Writes and verified reads hash every byte, so at 1 GiB files and
    /// SQLite are held to half of what the disk and SHA-256 allow
    /// (`min(write+fsync, sha256)` for writes, `sha256` for reads); a small
    /// file artifact to half a crash-safe raw write (temp file, fsync,
    /// rename, folder fsync). Every 1 GiB row must stay under 64 MiB.
    fn apply(&self, b: Backend, size: u64, wrow: &mut Row, rrow: &mut Row) {
        let big = size >= 1 << 30;
        let local = matches!(b, Backend::File(_) | Backend::Sqlite { .. });
        let peak = |r: f64| {
            if big {
                Some(Target::RatioAtLeastPeakUnder(r, 64.0))
            } else {
                Some(Target::RatioAtLeast(r))
            }
        };
        wrow.raw = self.write.clone();
        rrow.raw = self.read.clone();
        if b == Backend::S3 {
            if let Some((w, r)) = self.s3 {
                wrow.raw = Some(("object_store put".into(), w));
                rrow.raw = Some(("object_store get".into(), r));
            }
        } else if big && local {
            if let (Some((_, w)), Some(sha)) = (&self.write, self.sha256) {
                let min = if w.median <= sha.median { *w } else { sha };
                wrow.raw = Some(("min(write+fsync, sha256)".into(), min));
                wrow.target = peak(0.5);
            }
            if let Some(sha) = self.sha256 {
                rrow.raw = Some(("sha256".into(), sha));
                rrow.target = peak(0.5);
            }
        } else if size <= 1 << 20 && matches!(b, Backend::File(_)) {
            wrow.raw = self.placed.clone();
            wrow.target = peak(0.5);
        }
        if big && wrow.target.is_none() {
            wrow.target = Some(Target::PeakUnderMib(64.0));
            rrow.target = Some(Target::PeakUnderMib(64.0));
        }
    }
}

/// Migration per hop, files -> SQLite -> PostgreSQL, with
/// `runstore::migrate` in a child process per hop (see [`migration`]).
/// Records are runs + events + metrics copied. Each hop is held to its
/// destination's raw bulk insert of the same records
/// ([`migration::raw_sized`]), measured right before the hop: on a shared
/// machine both figures swing by a quarter between runs minutes apart
/// (rusqlite at 287,000 and 364,000 records/s within ten minutes, the same
/// hop at 58 and 78 s), so a baseline taken long before its hop decides the
/// ratio as much as the hop does. The pairs are measured `reps` times from
/// one seeded source, and each row gives the medians. The bulk-import
/// baseline of a few thousand runs is given beside it in the note.
async fn migration(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    let url = pg.map(|(url, _)| url.as_str());
    let hops = [
        (
            Backend::File(Durability::Fsync),
            Backend::Sqlite { full: false },
        ),
        (Backend::Sqlite { full: false }, Backend::Postgres),
    ];
    let raw_name = |b: Backend| match b {
        Backend::Postgres => "binary COPY, same records",
        _ => "rusqlite tx, same records",
    };
    let mut rows: Vec<Row> = hops
        .iter()
        .map(|(a, b)| {
            let mut r = Row::new(
                format!("migration ({} runs x 10 events + metrics)", s.migrate_runs),
                // The source's durability plays no part in reading it.
                format!(
                    "{} -> {b}",
                    if matches!(a, Backend::File(_)) {
                        "file".to_string()
                    } else {
                        a.to_string()
                    }
                ),
                Unit::RecordsPerSec,
            );
            r.target = Some(Target::RatioAtLeastPeakUnder(0.5, 200.0));
            r
        })
        .collect();
    if !hops
        .iter()
        .all(|(a, b)| ctx.has(norm(*a)) && ctx.has(norm(*b)))
    {
        for r in &mut rows {
            r.note = "not measured: needs the file, sqlite and postgres backends".into();
        }
        ctx.rows.extend(rows);
        return;
    }
    let reps = s.reps.clamp(1, 3);
    let mut raws: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut raw_failed: [Option<String>; 2] = [None, None];
    let mut hops_done: [Vec<HopResult>; 2] = [Vec::new(), Vec::new()];
    let mut checks_done: Vec<(HopMode, HopResult)> = Vec::new();
    let mut cold: Option<Result<HopResult, String>> = None;
    let r = async {
        let src_dir = ctx.dir()?;
        ctx.log(&format!(
            "migration: seeding {} runs and metrics into files",
            s.migrate_runs
        ));
        {
            let src = Backend::File(Durability::None).open(&src_dir).await?;
            migration::seed_runs(&*src.stores.logs, "mig0", s.migrate_runs).await?;
            load_metrics(&*src.stores.metrics, s.migrate_runs).await?;
        }
        for rep in 0..reps {
            let dirs = [src_dir.clone(), ctx.dir()?, ctx.dir()?];
            // Each destination stays open here (its PostgreSQL schema lives
            // as long as the handle) while a child migrates into it.
            let mut opened = Vec::new();
            for (h, (from, to)) in hops.iter().enumerate() {
                if raw_failed[h].is_none() {
                    ctx.log(&format!(
                        "migration: raw {} ({} runs), pair {}/{reps}",
                        raw_name(*to),
                        s.migrate_runs,
                        rep + 1
                    ));
                    match raw_baseline(ctx, *to, s.migrate_runs, url).await {
                        Ok(rate) => {
                            ctx.log(&format!("migration: raw {rate:.0} records/s"));
                            raws[h].push(rate);
                        }
                        Err(e) => raw_failed[h] = Some(e.to_string()),
                    }
                }
                ctx.log(&format!(
                    "migration hop {}: {from} -> {to}, pair {}/{reps}",
                    h + 1,
                    rep + 1
                ));
                migration::write_back()?;
                let dst = to.open(&dirs[h + 1]).await?;
                let hop = hop_child(
                    ctx,
                    HopMode::Copy,
                    (*from, &dirs[h]),
                    (*to, &dirs[h + 1]),
                    &dst,
                )
                .await?;
                hop.copied_all(s.migrate_runs, &format!("hop {}", h + 1))?;
                ctx.log(&format!(
                    "migration hop {}: {:.0} records/s, peak RSS {} MiB",
                    h + 1,
                    hop.records as f64 / hop.secs,
                    hop.peak_bytes >> 20
                ));
                hops_done[h].push(hop);
                opened.push(dst);
            }
            // The last hop again, right after its baseline and copy: into a
            // fresh destination with the check made while copying, and (once)
            // the copied pair verified whole.
            let (from, to) = hops[hops.len() - 1];
            let src = dirs[hops.len() - 1].clone();
            let fresh_dir = ctx.dir()?;
            let fresh = to.open(&fresh_dir).await?;
            let mut modes = vec![(HopMode::Checked, fresh_dir.clone(), &fresh)];
            if rep + 1 == reps {
                modes.push((
                    HopMode::Verify,
                    dirs[hops.len()].clone(),
                    &opened[hops.len() - 1],
                ));
            }
            for (mode, dst_dir, dst) in modes {
                ctx.log(&format!("migration {from} -> {to}: {mode:?}"));
                migration::write_back()?;
                let r = hop_child(ctx, mode, (from, &src), (to, &dst_dir), dst).await?;
                checks_done.push((mode, r));
            }
            drop(fresh);
            let _ = std::fs::remove_dir_all(fresh_dir);
            drop(opened);
            for d in &dirs[1..] {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        // Once more, the first hop from a source read from the disk.
        let (from, to) = hops[0];
        ctx.log(&format!("migration hop 1: {from} -> {to}, source evicted"));
        migration::write_back()?;
        match migration::evict_from_page_cache(&src_dir) {
            Ok(files) => {
                ctx.log(&format!("migration: {files} source files evicted"));
                let dst_dir = ctx.dir()?;
                let dst = to.open(&dst_dir).await?;
                let hop =
                    hop_child(ctx, HopMode::Copy, (from, &src_dir), (to, &dst_dir), &dst).await?;
                hop.copied_all(s.migrate_runs, "hop 1 from the evicted source")?;
                ctx.log(&format!(
                    "migration hop 1, source evicted: {:.0} records/s",
                    hop.records as f64 / hop.secs
                ));
                cold = Some(Ok(hop));
                drop(dst);
                let _ = std::fs::remove_dir_all(dst_dir);
            }
            Err(e) => cold = Some(Err(e.to_string())),
        }
        let _ = std::fs::remove_dir_all(src_dir);
        BenchResult::Ok(())
    }
    .await;
    for (h, e) in raw_failed.iter().enumerate() {
        if let Some(e) = e {
            notes.push(format!("raw {} failed: {e}", raw_name(hops[h].1)));
        }
    }
    let failed = r.err().map(|e| e.to_string());
    for (h, r) in rows.iter_mut().enumerate() {
        if let Some(e) = &failed {
            r.note = format!("failed: {e}");
            continue;
        }
        r.raw = stats_of(&raws[h]).map(|s| (raw_name(hops[h].1).to_string(), s));
        let rates: Vec<f64> = hops_done[h]
            .iter()
            .map(|x| x.records as f64 / x.secs)
            .collect();
        r.stats = stats_of(&rates);
        r.peak_bytes = hops_done[h].iter().map(|x| x.peak_bytes).max();
        r.note = format!(
            "peak RSS = the migrating child process's whole peak (both stores open); raw = the destination's raw bulk insert of the same records, in transactions of 1,000 runs, measured right before each of the {reps} hops"
        );
        let small = hops[h].1;
        if let (Some((name, small)), Some(rate)) = (
            ctx.raw_bulk
                .iter()
                .find(|(k, _)| *k == small)
                .map(|(_, r)| r),
            r.stats,
        ) {
            r.note.push_str(&format!(
                "; against the {name} bulk import of {} runs, {:.2}x",
                s.import_runs,
                rate.median / small.median
            ));
        }
    }
    if let (None, Some(cold), Some(raw)) =
        (&failed, &cold, rows[0].raw.as_ref().map(|(_, s)| s.median))
    {
        rows[0].note.push_str(&match cold {
            Ok(hop) => {
                let rate = hop.records as f64 / hop.secs;
                format!(
                    "; once more from a source evicted from the page cache first (read from the disk, as a store written long before is): {rate:.0} records/s, {:.2}x the median raw",
                    rate / raw
                )
            }
            Err(e) => format!("; from a source evicted from the page cache: not measured ({e})"),
        });
    }
    if failed.is_none() {
        rows.push(check_row(
            &rows[rows.len() - 1],
            &hops_done[1],
            &checks_done,
        ));
    }
    ctx.rows.extend(rows);
}

/// [`migration::raw_sized`] into a scratch directory, after the dirty pages
/// of what ran before are written back.
async fn raw_baseline(
    ctx: &mut Ctx<'_>,
    to: Backend,
    runs: usize,
    url: Option<&str>,
) -> BenchResult<f64> {
    if to == Backend::Postgres && url.is_none() {
        return Err("no PostgreSQL server".into());
    }
    let dir = ctx.dir()?;
    migration::write_back()?;
    let rate = migration::raw_sized(to, &dir, runs, url).await;
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// One hop in a child process ([`migration::run_child`]) into `dst`, which
/// the caller holds open.
async fn hop_child(
    ctx: &Ctx<'_>,
    mode: HopMode,
    (from, src_dir): (Backend, &Path),
    (to, dst_dir): (Backend, &Path),
    dst: &Opened,
) -> BenchResult<HopResult> {
    let (exe, src_dir, dst_dir, pg) = (
        ctx.plan.exe.clone(),
        src_dir.to_path_buf(),
        dst_dir.to_path_buf(),
        dst.remote.clone(),
    );
    blocking(move || {
        migration::run_child(&exe, mode, (from, &src_dir), (to, &dst_dir), pg.as_ref())
    })
    .await
}

/// The last hop copied with the check made while copying, beside the copy
/// alone and a whole two-sided verify of the same pair: what the check
/// costs, as a share of the copy.
fn check_row(copy_row: &Row, copies: &[HopResult], checks: &[(HopMode, HopResult)]) -> Row {
    let mut r = Row::new(
        copy_row
            .operation
            .replace("migration (", "migration, checked while copying ("),
        copy_row.backend.clone(),
        Unit::RecordsPerSec,
    );
    r.raw = copy_row.raw.clone();
    r.target = copy_row.target;
    let secs = |mode: HopMode| {
        let v: Vec<f64> = checks
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, h)| h.secs)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let copy_secs = (!copies.is_empty())
        .then(|| copies.iter().map(|h| h.secs).sum::<f64>() / copies.len() as f64);
    let rates: Vec<f64> = checks
        .iter()
        .filter(|(m, _)| *m == HopMode::Checked)
        .map(|(_, h)| h.records as f64 / h.secs)
        .collect();
    r.stats = stats_of(&rates);
    r.peak_bytes = checks
        .iter()
        .filter(|(m, _)| *m == HopMode::Checked)
        .map(|(_, h)| h.peak_bytes)
        .max();
    r.note = match (copy_secs, secs(HopMode::Checked), secs(HopMode::Verify)) {
        (Some(copy), Some(checked), Some(whole)) => format!(
            "the check while copying adds {:.2} s to a {copy:.2} s copy ({:.0}% of it); a whole two-sided verify of the same pair takes {whole:.2} s ({:.0}% of the copy)",
            checked - copy,
            100.0 * (checked - copy) / copy,
            100.0 * whole / copy
        ),
        _ => "not measured".into(),
    };
    r
}

/// What bounds a call of a backend that keeps blocking work off the
/// executor, next to its raw baseline: microseconds per call of each, and
/// of one hop to the blocking pool and back in the same run.
fn hop_note(ours_us: f64, raw_us: f64, hop_us: f64) -> String {
    format!(
        "bounded by the hop to tokio's blocking pool: {ours_us:.0} us per call against {raw_us:.0} us raw, a gap of {:.0} us, of which a no-op spawn_blocking round trip takes {hop_us:.0} us in this run. Running the call in place (block_in_place) removes the hop but panics on a current-thread runtime or in a LocalSet, so the library keeps it",
        ours_us - raw_us
    )
}

/// The backend as listed in a plan (settings folded).
fn norm(b: Backend) -> Backend {
    match b {
        Backend::File(_) => Backend::File(Durability::Fsync),
        Backend::Sqlite { .. } => Backend::Sqlite { full: false },
        other => other,
    }
}

/// Where the harness keeps a run's data: under `base`, removed afterwards.
pub fn scratch_in(base: Option<&Path>) -> BenchResult<tempfile::TempDir> {
    Ok(match base {
        Some(b) => tempfile::Builder::new()
            .prefix("runstore-bench-")
            .tempdir_in(b)?,
        None => tempfile::Builder::new()
            .prefix("runstore-bench-")
            .tempdir()?,
    })
}

/// Prune beside a raw batched `DELETE` (see [`crate::prune`]).
async fn prunes(ctx: &mut Ctx<'_>, pg: Option<&(String, String)>, notes: &mut Vec<String>) {
    let s = ctx.plan.sizes.clone();
    ctx.log(&format!("prune of {} runs: raw baselines", s.prune_runs));
    let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
    let sq = {
        let (d, n) = (dir.clone(), s.prune_runs);
        blocking(move || {
            let v = crate::prune::sqlite_raw(&d, n)?;
            stats_of(&[v]).ok_or_else(|| "no figures".into())
        })
        .await
    };
    let sq = raw_named("rusqlite batched DELETE", sq, notes);
    let mut pgr = None;
    if let Some((url, schema)) = pg {
        let r = async {
            let c = raw::pg_connect(url, schema).await?;
            let v = crate::prune::pg_raw(&c, s.prune_runs).await?;
            stats_of(&[v]).ok_or_else(|| crate::BenchError::from("no figures"))
        }
        .await;
        pgr = raw_named("tokio-postgres batched DELETE", r, notes);
    }
    let _ = std::fs::remove_dir_all(&dir);
    for b in ctx.record_backends() {
        let n = match b {
            Backend::File(_) => s.prune_runs.min(s.file_prune_cap),
            _ => s.prune_runs,
        };
        let mut row = Row::new(
            format!("prune ({} runs x 10 events)", count_label(n)),
            b.to_string(),
            Unit::OpsPerSec,
        );
        ctx.log(&format!("prune of {n} runs: {b}"));
        let dir = ctx.dir().unwrap_or_else(|_| ctx.plan.scratch.clone());
        let r = async {
            // The parent loads the corpus (and owns the PostgreSQL schema);
            // a child prunes, so its peak memory is the prune's alone.
            let o = b.open(&dir).await?;
            let finished = crate::prune::load(&o.stores, n).await?;
            let r = if matches!(b, Backend::Memory) {
                // A memory store lives in this process only.
                let (runs_per_sec, runs) = crate::prune::run_prune(&o.stores).await?;
                crate::prune::ChildResult {
                    runs_per_sec,
                    runs,
                    peak_bytes: 0,
                }
            } else {
                let (exe, d2, pg) = (ctx.plan.exe.clone(), dir.clone(), o.remote.clone());
                blocking(move || crate::prune::run_child(&exe, b, &d2, pg.as_ref())).await?
            };
            drop(o);
            if r.runs != finished {
                return Err(format!("pruned {} of {finished} finished runs", r.runs).into());
            }
            BenchResult::Ok(r)
        }
        .await;
        match r {
            Ok(v) => {
                row.stats = stats_of(&[v.runs_per_sec]);
                row.peak_bytes = (v.peak_bytes > 0).then_some(v.peak_bytes);
            }
            Err(e) => row.note = format!("failed: {e}"),
        }
        match b {
            Backend::Sqlite { .. } => {
                row.raw = sq.clone();
                row.target = Some(Target::RatioAtLeastPeakUnder(0.5, 200.0));
            }
            Backend::Postgres => {
                row.raw = pgr.clone();
                row.target = Some(Target::RatioAtLeastPeakUnder(0.5, 200.0));
            }
            // No raw delete to compare with; the memory target holds.
            Backend::File(_) => row.target = Some(Target::PeakUnderMib(200.0)),
            _ => {}
        }
        if row.note.is_empty() {
            let at = if n < s.prune_runs {
                format!("; the file backend is measured at {} runs", count_label(n))
            } else {
                String::new()
            };
            row.note = format!(
                "pruned runs/s (finished runs); peak RSS = the pruning child process's whole peak, the corpus loaded by the parent{at}"
            );
        }
        ctx.rows.push(row);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The outbox (see [`crate::outbox`]): deferred appends beside the file
/// backend's durable append, and the drain into each logs backend.
async fn outboxes(ctx: &mut Ctx<'_>, notes: &mut Vec<String>) {
    let n = ctx.plan.sizes.single_appends;
    let reps = ctx.plan.sizes.reps;
    ctx.log(&format!(
        "outbox: {n} deferred appends beside {n} durable file appends"
    ));
    let mut file = Vec::new();
    let mut deferred = Vec::new();
    let mut failure = None;
    // Interleaved, so both see the same disk at the same time.
    for _ in 0..reps {
        let r = async {
            let f = crate::outbox::file_durable_appends(&ctx.dir()?, n).await?;
            let d = crate::outbox::deferred_appends(&ctx.dir()?.join("outbox"), n).await?;
            Ok::<_, crate::BenchError>((f, d))
        }
        .await;
        match r {
            Ok((f, d)) => {
                file.push(f);
                deferred.push(d);
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let mut row = Row::new(
        "deferred append (outbox, fsync)".to_string(),
        "outbox".to_string(),
        Unit::OpsPerSec,
    );
    match failure {
        None => {
            row.stats = stats_of(&deferred);
            row.raw = raw_named(
                "file backend durable append",
                stats_of(&file).ok_or_else(|| "no figures".into()),
                notes,
            );
            row.target = Some(Target::RatioAtLeast(0.8));
            row.note = "appends/s while the backend is down: each appended and fsynced to the outbox before it returns; the raw column is the file backend's durable single append in the same run".into();
        }
        Some(e) => row.note = format!("failed: {e}"),
    }
    ctx.rows.push(row);
    for b in ctx.plan.backends.clone() {
        if b == Backend::S3 {
            continue;
        }
        let mut row = Row::new(
            format!("outbox drain ({n} appends)"),
            b.to_string(),
            Unit::OpsPerSec,
        );
        ctx.log(&format!("outbox drain of {n} appends into {b}"));
        let r = async {
            let dir = ctx.dir()?;
            let mut v = Vec::new();
            for i in 0..reps {
                let o = b.open(&dir.join(format!("store{i}"))).await?;
                let ob = dir.join(format!("outbox{i}"));
                v.push(
                    crate::outbox::drain_into(
                        &o.stores,
                        &ob,
                        &format!("drain-{i}"),
                        n,
                        DrainOptions::default(),
                    )
                    .await?,
                );
            }
            Ok::<_, crate::BenchError>(v)
        }
        .await;
        match r {
            Ok(v) => {
                row.stats = stats_of(&v);
                row.note = "deferred appends stored per second once the backend is back (in order; consecutive appends of a run go in one call)".into();
            }
            Err(e) => row.note = format!("failed: {e}"),
        }
        ctx.rows.push(row);
    }
    // A long outage: a journal 100 times longer, drained in 200 batches.
    // The journal's head moves past each batch, so the rate per entry
    // should stay near the short drain's; a drain that rewrote the rest of
    // the journal after every batch slows down with the journal's length.
    let long = n * 100;
    let batch = (long / 200).max(1);
    let mut row = Row::new(
        format!("outbox drain, long outage ({long} appends, batches of {batch})"),
        Backend::Memory.to_string(),
        Unit::OpsPerSec,
    );
    ctx.log(&format!(
        "outbox drain of {long} appends in batches of {batch}"
    ));
    let r = async {
        let dir = ctx.dir()?;
        let o = Backend::Memory.open(&dir.join("store")).await?;
        crate::outbox::drain_into(
            &o.stores,
            &dir.join("outbox"),
            "drain-long",
            long,
            DrainOptions::default().with_batch(batch),
        )
        .await
    }
    .await;
    match r {
        Ok(rate) => {
            row.stats = stats_of(&[rate]);
            row.note = format!(
                "one run; deferred appends stored per second, {batch} replayed between two moves of the journal's head (compare the {n}-append drain into memory above)"
            );
        }
        Err(e) => row.note = format!("failed: {e}"),
    }
    ctx.rows.push(row);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Scale;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_run_on_memory_fills_every_row() {
        let scratch = tempfile::tempdir().unwrap();
        let plan = Plan {
            workloads: WORKLOADS.iter().map(ToString::to_string).collect(),
            sizes: Scale::Tiny.sizes(),
            backends: vec![Backend::Memory],
            exe: PathBuf::from("unused: no artifact rows for memory"),
            scratch: scratch.path().to_path_buf(),
            verbose: false,
        };
        let (rows, notes) = run_all(&plan).await;
        assert!(notes.is_empty(), "{notes:?}");
        let memory: Vec<&Row> = rows.iter().filter(|r| r.backend == "memory").collect();
        // 4 append rows, 1 import, 2 queries, 1 summary, 1 recording of
        // metrics, 1 prune and 2 outbox drains (a short one and a long
        // outage) at tiny scale.
        assert_eq!(memory.len(), 12, "{rows:#?}");
        let deferred = rows
            .iter()
            .find(|r| r.backend == "outbox")
            .expect("the outbox row");
        assert!(
            deferred.stats.is_some() && deferred.raw.is_some(),
            "{deferred:#?}"
        );
        for r in memory {
            let s = r
                .stats
                .unwrap_or_else(|| panic!("{} not measured: {}", r.operation, r.note));
            assert!(s.median > 0.0 && s.min <= s.median && s.median <= s.max);
        }
        assert!(
            rows.iter()
                .any(|r| r.operation.starts_with("migration") && r.note.contains("not measured"))
        );
    }

    #[test]
    fn labels_read_well() {
        assert_eq!(count_label(1_000_000), "1M");
        assert_eq!(count_label(100_000), "100k");
        assert_eq!(count_label(250), "250");
        assert_eq!(size_label(1 << 30), "1 GiB");
        assert_eq!(size_label(64 << 20), "64 MiB");
        assert_eq!(size_label(64 << 10), "64 KiB");
    }
}
