//! Opening a store and answering a dashboard's first reads, `get_recent(50)`,
//! the filtered query and a metrics summary, in a child process of its
//! own, so that its peak resident memory (`VmHWM`) is that of a process
//! that opens a large store: what the file backend's on-disk indexes bound.

use std::path::Path;
use std::time::Instant;

use crate::BenchResult;
use crate::stores::Backend;
use crate::workloads::{filtered, recent, summary};

/// What the child measured.
#[derive(Clone, Debug)]
pub struct ChildResult {
    /// Open plus the three reads, in milliseconds.
    pub millis: f64,
    /// The child's peak resident memory in bytes.
    pub peak_bytes: u64,
}

/// The child: `--open-child BACKEND DIR RUNS METRICS`. Opens the store at
/// `DIR`, reads, prints `RESULT <millis> <peak bytes>`.
pub async fn child_main(args: &[String]) -> BenchResult<()> {
    let [backend, dir, runs, metrics, pg @ ..] = args else {
        return Err("--open-child BACKEND DIR RUNS METRICS [URL SCHEMA]".into());
    };
    let backend = crate::artifacts::parse_backend(backend).ok_or("unknown backend")?;
    let runs: usize = runs.parse().map_err(|e| format!("runs: {e}"))?;
    let metrics: usize = metrics.parse().map_err(|e| format!("metrics: {e}"))?;
    let start = Instant::now();
    let stores = backend
        .reopen(Path::new(dir), crate::child::pg_args(pg))
        .await?;
    recent(&*stores.logs, 1).await?;
    filtered(&*stores.logs, runs, 1).await?;
    summary(&*stores.metrics, metrics, 1).await?;
    let millis = start.elapsed().as_secs_f64() * 1e3;
    let peak = crate::machine::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {millis} {peak}");
    Ok(())
}

/// The parent's side: runs `exe --open-child ...` on a store the parent
/// loaded and closed.
pub fn run_child(
    exe: &Path,
    backend: Backend,
    dir: &Path,
    runs: usize,
    metrics: usize,
) -> BenchResult<ChildResult> {
    let (runs, metrics) = (runs.to_string(), metrics.to_string());
    let args = [
        std::ffi::OsStr::new(crate::artifacts::backend_arg(backend)),
        dir.as_os_str(),
        std::ffi::OsStr::new(&runs),
        std::ffi::OsStr::new(&metrics),
    ];
    crate::child::run_parsed(exe, "--open-child", &args, None, "open", |fields| {
        let [millis, peak, ..] = fields else {
            return None;
        };
        Some(ChildResult {
            millis: millis.parse().ok()?,
            peak_bytes: peak.parse().ok()?,
        })
    })
}
