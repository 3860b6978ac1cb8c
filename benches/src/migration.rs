//! One migration hop measured in a child process of its own, so that its
//! peak resident memory (`VmHWM`) is the migrating process's whole peak:
//! both stores opened, every page and batch in flight.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use runstore::migrate::{MigrateOptions, MigrationProgress, VerifyOptions, migrate, verify};
use runstore_core::LogRepository;

use crate::BenchResult;
use crate::artifacts::{backend_arg, parse_backend};
use crate::data;
use crate::stores::Backend;

/// Runs per `import_runs` batch when seeding.
pub const BATCH: usize = 1000;

/// What one hop measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HopResult {
    /// Runs, events and metrics copied.
    pub records: u64,
    /// Wall-clock seconds of the migration (opening the stores excluded).
    pub secs: f64,
    /// The child's peak resident memory in bytes.
    pub peak_bytes: u64,
}

impl HopResult {
    /// Whether the hop copied every record of a source of `runs` runs
    /// (each with 10 events and a metric); the error names the hop as
    /// `what`.
    pub fn copied_all(&self, runs: usize, what: &str) -> BenchResult<()> {
        let expected = (runs * 12) as u64;
        if self.records != expected {
            return Err(format!(
                "{what} copied {} records, expected {expected}",
                self.records
            )
            .into());
        }
        Ok(())
    }
}

/// Fills `logs` with `runs` runs of 10 events each, generated batch by
/// batch so that the seeding holds one batch in memory.
pub async fn seed_runs(logs: &dyn LogRepository, tag: &str, runs: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < runs {
        let end = (i + BATCH).min(runs);
        let batch = (i..end)
            .map(|n| data::run_with_events(tag, n, 10))
            .collect();
        logs.import_runs(batch).await?;
        i = end;
    }
    Ok(())
}

/// `--seed-child DIR RUNS`: fills a file store at `DIR` with the
/// migration workload's source (`RUNS` runs of 10 events, one metric each),
/// so that a hop can be measured by hand with `--migrate-child` against the
/// same source several times.
pub async fn seed_child_main(args: &[String]) -> BenchResult<()> {
    let [dir, runs] = args else {
        return Err("--seed-child DIR RUNS".into());
    };
    let runs: usize = runs
        .parse()
        .map_err(|_| format!("RUNS {runs:?} is not a count"))?;
    let src = Backend::File(runstore_file::Durability::None)
        .open(Path::new(dir))
        .await?;
    seed_runs(&*src.stores.logs, "mig0", runs).await?;
    crate::workloads::load_metrics(&*src.stores.metrics, runs).await?;
    println!("RESULT {runs}");
    Ok(())
}

/// Writes every dirty page back to disk (`sync`) before a hop or its raw
/// baseline is timed. Seeding the source leaves gigabytes for the kernel to
/// write back, and a hop started at once waits behind them (files ->
/// SQLite ran at 202,383 records/s so in a full run, against about 345,000
/// by hand on a source written long before, as a real one is).
pub fn write_back() -> BenchResult<()> {
    let status = std::process::Command::new("sync").status()?;
    if !status.success() {
        return Err(format!("sync failed: {status}").into());
    }
    Ok(())
}

/// Drops every file under `dir` from the page cache (after [`write_back`],
/// since dirty pages stay), so that a hop reads its source from the disk,
/// as a store written long before is read. Needs no privilege: it is
/// `posix_fadvise(DONTNEED)` on each file. Returns the files evicted.
///
/// Without it, how much of the source a hop finds in memory depends on
/// what ran before it: the raw baseline measured right before a hop writes
/// a few gigabytes of its own and pushes part of the source out.
#[cfg(target_os = "linux")]
pub fn evict_from_page_cache(dir: &Path) -> BenchResult<u64> {
    let mut files = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let file = std::fs::File::open(entry.path())?;
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
                files += 1;
            }
        }
    }
    Ok(files)
}

/// Elsewhere there is no per-file way to do it without privilege.
#[cfg(not(target_os = "linux"))]
pub fn evict_from_page_cache(_dir: &Path) -> BenchResult<u64> {
    Err("evicting a directory from the page cache needs Linux".into())
}

/// The destination's raw bulk insert of the records a hop copies
/// (`runs` runs of 10 events and a metric each, see
/// [`crate::raw::sqlite_bulk_sized`]), into a fresh raw database in `dir`
/// or a fresh raw schema on the server at `url`: the baseline a hop is
/// held to, measured at the hop's own size, since a load of a few
/// thousand runs into an empty database stays in the page cache and
/// never checkpoints gigabytes. Records/s.
pub async fn raw_sized(
    to: Backend,
    dir: &Path,
    runs: usize,
    url: Option<&str>,
) -> BenchResult<f64> {
    match to {
        Backend::Sqlite { .. } => {
            let path = dir.join("raw-sized.db");
            tokio::task::spawn_blocking(move || {
                let mut conn = crate::raw::sqlite_open(&path, "NORMAL")?;
                crate::raw::sqlite_bulk_sized(&mut conn, "raw", runs)
            })
            .await?
        }
        Backend::Postgres => {
            let url = url.ok_or("no PostgreSQL server")?;
            let schema = format!("bench_raw_sized_{}", std::process::id());
            let c = crate::raw::pg_connect(url, &schema).await?;
            crate::raw::pg_drop(&c, &schema).await?;
            let c = crate::raw::pg_connect(url, &schema).await?;
            crate::raw::pg_create_tables(&c).await?;
            let rate = crate::raw::pg_copy_bulk_sized(&c, "raw", runs).await;
            crate::raw::pg_drop(&c, &schema).await?;
            rate
        }
        other => Err(format!("no raw bulk insert for {other}").into()),
    }
}

/// `--raw-child BACKEND DIR RUNS [URL]`: prints `RESULT <records/s>` of
/// [`raw_sized`], to set a hand-run hop beside its baseline.
pub async fn raw_child_main(args: &[String]) -> BenchResult<()> {
    let [to, dir, runs, url @ ..] = args else {
        return Err("--raw-child sqlite|postgres DIR RUNS [URL]".into());
    };
    let to = parse_backend(to).ok_or(format!("unknown backend {to:?}"))?;
    let runs: usize = runs
        .parse()
        .map_err(|_| format!("RUNS {runs:?} is not a count"))?;
    std::fs::create_dir_all(dir)?;
    let rate = raw_sized(to, Path::new(dir), runs, url.first().map(String::as_str)).await?;
    println!("RESULT {rate}");
    Ok(())
}

/// What a child does with the two stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopMode {
    /// Copies, verification off: the copy alone.
    Copy,
    /// [`HopMode::Copy`] without telling the destination of a bulk load
    /// (`MigrateOptions::bulk_load(false)`): its indexes kept throughout,
    /// for measuring what the bulk load saves.
    CopyKeepingIndexes,
    /// Copies with the check made while copying (the default of
    /// `runstore migrate`).
    Checked,
    /// Verifies an already copied pair, both sides read whole (`runstore
    /// verify`): the figure the check while copying replaces.
    Verify,
}

impl HopMode {
    fn arg(self) -> &'static str {
        match self {
            HopMode::Copy => "copy",
            HopMode::CopyKeepingIndexes => "copy-keeping-indexes",
            HopMode::Checked => "checked",
            HopMode::Verify => "verify",
        }
    }

    fn parse(s: &str) -> Option<HopMode> {
        [
            HopMode::Copy,
            HopMode::CopyKeepingIndexes,
            HopMode::Checked,
            HopMode::Verify,
        ]
        .into_iter()
        .find(|m| m.arg() == s)
    }
}

/// The child's side of `--migrate-child MODE FROM FROM_DIR TO TO_DIR [URL
/// SCHEMA]`: does what [`HopMode`] says and prints `RESULT <records>
/// <seconds> <peak bytes>` (records copied, or compared for a verify). The
/// PostgreSQL url and schema are for whichever side is PostgreSQL.
pub async fn child_main(args: &[String]) -> BenchResult<()> {
    let [mode, from, from_dir, to, to_dir, pg @ ..] = args else {
        return Err(
            "--migrate-child copy|copy-keeping-indexes|checked|verify FROM FROM_DIR TO TO_DIR [URL SCHEMA]".into(),
        );
    };
    let mode = HopMode::parse(mode).ok_or(format!("unknown mode {mode:?}"))?;
    let backend = |name: &str| parse_backend(name).ok_or(format!("unknown backend {name:?}"));
    let pg = crate::child::pg_args(pg);
    let from = backend(from)?.reopen(Path::new(from_dir), pg).await?;
    let to = backend(to)?.reopen(Path::new(to_dir), pg).await?;
    let start = Instant::now();
    let records = if mode == HopMode::Verify {
        let report = verify(&from, &to, VerifyOptions::default()).await?;
        if !report.is_equal() {
            return Err(format!("the copy differs in {} records", report.difference_count).into());
        }
        report.runs.a + report.events.a + report.metrics.a
    } else {
        // The library's defaults (batch size, writers), as a user gets them.
        let options = MigrateOptions::default()
            .verify(mode == HopMode::Checked)
            .bulk_load(mode != HopMode::CopyKeepingIndexes)
            .progress(Arc::new(PhaseTimes::new()));
        let report = migrate(&from, &to, options).await?;
        if let Some(v) = report.verify.as_ref().filter(|v| !v.is_equal()) {
            return Err(format!("the check found {} differences", v.difference_count).into());
        }
        report.runs.copied + report.events.copied + report.metrics.copied
    };
    let secs = start.elapsed().as_secs_f64();
    let peak = crate::machine::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {records} {secs} {peak}");
    Ok(())
}

/// Prints each concern's time to stderr as it finishes, so a slow hop
/// shows where its time went (the parent keeps stderr for failures only).
struct PhaseTimes {
    last: Mutex<Instant>,
}

impl PhaseTimes {
    fn new() -> Self {
        PhaseTimes {
            last: Mutex::new(Instant::now()),
        }
    }
}

impl MigrationProgress for PhaseTimes {
    fn on_progress(&self, _: &str, _: u64, _: Option<u64>) {}

    fn on_finish(&self, concern: &str, done: u64) {
        if let Ok(mut last) = self.last.lock() {
            eprintln!("{concern}: {done} in {:.2} s", last.elapsed().as_secs_f64());
            *last = Instant::now();
        }
    }
}

/// The parent's side: runs `exe --migrate-child ...` and reads its result.
pub fn run_child(
    exe: &Path,
    mode: HopMode,
    (from, from_dir): (Backend, &Path),
    (to, to_dir): (Backend, &Path),
    pg: Option<&(String, String)>,
) -> BenchResult<HopResult> {
    let args = [
        std::ffi::OsStr::new(mode.arg()),
        std::ffi::OsStr::new(backend_arg(from)),
        from_dir.as_os_str(),
        std::ffi::OsStr::new(backend_arg(to)),
        to_dir.as_os_str(),
    ];
    crate::child::run_parsed(exe, "--migrate-child", &args, pg, "migration", parse_hop)
}

/// `<records> <seconds> <peak bytes>`.
fn parse_hop(fields: &[String]) -> Option<HopResult> {
    let [records, secs, peak, ..] = fields else {
        return None;
    };
    Some(HopResult {
        records: records.parse().ok()?,
        secs: secs.parse().ok()?,
        peak_bytes: peak.parse().ok()?,
    })
}
