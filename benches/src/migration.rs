//! One migration hop measured in a child process of its own, so that its
//! peak resident memory (`VmHWM`) is the migrating process's whole peak:
//! both stores opened, every page and batch in flight.

use std::path::Path;
use std::time::Instant;

use runstore::migrate::{MigrateOptions, migrate};
use runstore_core::LogRepository;

use crate::BenchResult;
use crate::artifacts::{backend_arg, parse_backend};
use crate::data;
use crate::stores::Backend;

/// Runs per `import_runs` batch when seeding, and per migration batch.
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

/// The child's side of `--migrate-child FROM FROM_DIR TO TO_DIR [URL SCHEMA]`:
/// migrates (verification off: it is a second full read) and prints
/// `RESULT <records> <seconds> <peak bytes>`. The PostgreSQL url and schema
/// are for whichever side is PostgreSQL.
pub async fn child_main(args: &[String]) -> BenchResult<()> {
    let [from, from_dir, to, to_dir, pg @ ..] = args else {
        return Err("--migrate-child FROM FROM_DIR TO TO_DIR [URL SCHEMA]".into());
    };
    let backend = |name: &str| parse_backend(name).ok_or(format!("unknown backend {name:?}"));
    let pg = crate::child::pg_args(pg);
    let from = backend(from)?.reopen(Path::new(from_dir), pg).await?;
    let to = backend(to)?.reopen(Path::new(to_dir), pg).await?;
    let start = Instant::now();
    let options = MigrateOptions::default().batch_size(BATCH).verify(false);
    let report = migrate(&from, &to, options).await?;
    let secs = start.elapsed().as_secs_f64();
    let records = report.runs.copied + report.events.copied + report.metrics.copied;
    let peak = crate::machine::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {records} {secs} {peak}");
    Ok(())
}

/// The parent's side: runs `exe --migrate-child ...` and reads its result.
pub fn run_child(
    exe: &Path,
    (from, from_dir): (Backend, &Path),
    (to, to_dir): (Backend, &Path),
    pg: Option<&(String, String)>,
) -> BenchResult<HopResult> {
    let args = [
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
