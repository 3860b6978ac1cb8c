//! [`FileStore::check`](crate::FileStore::check): a full scan of the root.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use runstore_core::{Error, Event, Result, RunId, Sha256Hasher, WorkflowId};

use crate::fsutil::{self, lock_mutex};
use crate::{Inner, artifacts, journal_index, logs, metrics, workflows};

/// What kind of problem a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// A last line without its newline, left by a crash mid-append.
    TornTail,
    /// A line that is not a valid record; skipped by every read.
    CorruptLine,
    /// A whole file that cannot be read (e.g. a workflow YAML).
    CorruptFile,
    /// The run index file is missing.
    MissingIndex,
    /// The run index file does not match the run journal.
    StaleIndex,
    /// An artifact's bytes no longer match its recorded SHA-256 or size.
    HashMismatch,
    /// A file that a record points to is missing.
    MissingFile,
    /// A file no record points to (left by a crash between two steps).
    OrphanFile,
    /// A temp file left by a crash.
    LeftoverTemp,
    /// A symbolic link, or a file with more than one hard link: the backend
    /// makes neither, never follows a link and never writes through a file
    /// with another name (which could lead outside the root).
    Link,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The file (and byte offset) at fault.
    pub location: String,
    /// What is wrong, for humans.
    pub detail: String,
    /// Whether it was repaired.
    pub repaired: bool,
}

/// Everything [`FileStore::check`](crate::FileStore::check) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Each problem, with whether it was repaired.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings of one kind.
    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    fn add(
        &mut self,
        kind: FindingKind,
        location: impl Into<String>,
        detail: impl Into<String>,
        repaired: bool,
    ) {
        let location = location.into();
        if self
            .findings
            .iter()
            .any(|f| f.kind == kind && f.location == location)
        {
            return;
        }
        self.findings.push(Finding {
            kind,
            location,
            detail: detail.into(),
            repaired,
        });
    }
}

/// Temp files younger than this may belong to a write in progress.
const TEMP_GRACE: Duration = Duration::from_secs(600);

/// Scans one NDJSON file: torn tail and lines that `valid` refuses. With
/// `repair`, cuts the torn tail, and moves corrupt lines out of the file
/// into `<file>.corrupt` (kept for people, never read by the backend); the
/// file is replaced atomically with the good lines in their order.
fn scan_ndjson(
    inner: &Inner,
    report: &mut CheckReport,
    path: &Path,
    repair: bool,
    valid: impl Fn(&str) -> std::result::Result<(), String>,
) -> Result<()> {
    let Some(mut file) = fsutil::open_read(path)? else {
        return Ok(());
    };
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)
        .map_err(|e| fsutil::io_err("reading", path, e))?;
    let complete = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut corrupt = Vec::new();
    let mut off = 0usize;
    for line in raw[..complete].split_inclusive(|b| *b == b'\n') {
        let body = &line[..line.len() - 1];
        let res = if body.is_empty() {
            Ok(())
        } else {
            std::str::from_utf8(body)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(&valid)
        };
        match res {
            Ok(()) => good.extend_from_slice(line),
            Err(e) => {
                bad.extend_from_slice(line);
                corrupt.push((off, e));
            }
        }
        off += line.len();
    }
    let torn = (raw.len() - complete) as u64;
    let rewrite = repair && !corrupt.is_empty();
    if rewrite {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::backend(format!("{} has no file name", path.display()), None))?;
        let quarantine = dir.join(format!("{name}.corrupt"));
        fsutil::append(&quarantine, &bad, inner.durability, &inner.syncer)?;
        fsutil::write_atomic(dir, name, &good, inner.durability)?;
    } else if repair && torn > 0 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| fsutil::io_err("opening", path, e))?;
        fsutil::cut_torn_tail(&f, path)?;
    }
    for (off, e) in corrupt {
        report.add(
            crate::FindingKind::CorruptLine,
            format!("{} at byte {off}", path.display()),
            if rewrite {
                format!("unreadable record moved to {}.corrupt: {e}", path.display())
            } else {
                format!("unreadable record, skipped by reads: {e}")
            },
            rewrite,
        );
    }
    if torn > 0 {
        report.add(
            crate::FindingKind::TornTail,
            format!("{} at byte {complete}", path.display()),
            format!("a torn last line of {torn} bytes"),
            repair,
        );
    }
    Ok(())
}

fn parses<T: serde::de::DeserializeOwned>(line: &str) -> std::result::Result<(), String> {
    serde_json::from_str::<T>(line)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One part of the scan.
type CheckPart<'a> = dyn Fn(&mut CheckReport) -> Result<()> + 'a;

pub(crate) fn run(inner: &Inner, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // A check reports afresh what earlier operations already warned about.
    lock_mutex(&inner.warned).clear();
    for f in lock_mutex(&inner.found).drain(..) {
        report.add(f.kind, f.location, f.detail, f.repaired);
    }
    // Each part reports what stops it and the others go on, so one bad
    // spot never hides the rest.
    let parts: [(&str, &CheckPart<'_>); 6] = [
        ("links", &|r| check_links(inner, r)),
        ("logs", &|r| check_logs(inner, repair, r)),
        ("metrics", &|r| check_metrics(inner, repair, r)),
        ("workflows", &|r| check_workflows(inner, r)),
        ("artifacts", &|r| check_artifacts(inner, repair, r)),
        ("tmp", &|r| check_tmp(inner, repair, r)),
    ];
    for (part, check) in parts {
        if let Err(e) = check(&mut report) {
            report.add(
                crate::FindingKind::CorruptFile,
                format!("{} ({part})", inner.root.dir.display()),
                format!("checking {part} stopped: {e}"),
                false,
            );
        }
    }
    Ok(report)
}

/// Every symbolic link and every file with more than one hard link under
/// the root (links are reported, never followed).
fn check_links(inner: &Inner, report: &mut CheckReport) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![inner.root.dir.clone()];
    while let Some(dir) = stack.pop() {
        for (name, ft) in fsutil::list_dir(&dir)? {
            let path = dir.join(&name);
            if ft.is_symlink() {
                report.add(
                    crate::FindingKind::Link,
                    path.display().to_string(),
                    "a symbolic link inside the root; never followed, and what is behind it is not part of the store",
                    false,
                );
            } else if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let links = std::fs::symlink_metadata(&path)
                    .map_err(|e| fsutil::io_err("inspecting", &path, e))?
                    .nlink();
                if links > 1 {
                    report.add(
                        crate::FindingKind::Link,
                        path.display().to_string(),
                        format!(
                            "has {links} hard links; the backend makes none and never writes through one"
                        ),
                        false,
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_logs(inner: &Inner, repair: bool, report: &mut CheckReport) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, logs::LOCK, repair)?;
    let journal = inner.root.path(&["logs", "runs.ndjson"])?;
    scan_ndjson(inner, report, &journal, repair, parses::<logs::RunLine>)?;
    // A fresh look at the journal and the index, as a new process has.
    logs::reload_runs(inner);
    let before = lock_mutex(&inner.found).len();
    drop(logs::refresh_runs(inner, repair)?);
    for f in lock_mutex(&inner.found).drain(before..) {
        report.add(f.kind, f.location, f.detail, f.repaired);
    }
    let dir = inner.root.path(&["logs", "events"])?;
    for (name, ft) in fsutil::list_dir(&dir)? {
        let path = inner.root.path(&["logs", "events", &name])?;
        let run = name
            .strip_suffix(".ndjson")
            .and_then(|r| RunId::new(r).ok());
        let Some(run) = run.filter(|_| ft.is_file()) else {
            continue;
        };
        if logs::stored(inner, repair, std::slice::from_ref(&run))? != [true] {
            if repair {
                fsutil::remove_file(&path, inner.durability)?;
            }
            report.add(
                crate::FindingKind::OrphanFile,
                path.display().to_string(),
                format!("events of run {run}, which has no run record"),
                repair,
            );
            continue;
        }
        scan_ndjson(inner, report, &path, repair, |l| {
            let e: Event = serde_json::from_str(l).map_err(|e| e.to_string())?;
            if e.run_id != run {
                return Err(format!("belongs to run {}", e.run_id));
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn check_metrics(inner: &Inner, repair: bool, report: &mut CheckReport) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, metrics::LOCK, repair)?;
    let m = inner.root.path(&["metrics", "metrics.ndjson"])?;
    scan_ndjson(inner, report, &m, repair, parses::<metrics::MetricLine>)?;
    // A fresh look at the journal and its index, as a new process takes.
    journal_index::reload(&inner.metrics);
    let before = lock_mutex(&inner.found).len();
    drop(metrics::refresh_metrics(inner, repair)?);
    for f in lock_mutex(&inner.found).drain(before..) {
        report.add(f.kind, f.location, f.detail, f.repaired);
    }
    let p = inner.root.path(&["metrics", "patterns.ndjson"])?;
    scan_ndjson(inner, report, &p, repair, parses::<runstore_core::Pattern>)?;
    Ok(())
}

fn check_workflows(inner: &Inner, report: &mut CheckReport) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, workflows::LOCK, false)?;
    let ids: Vec<WorkflowId> = workflows::ids(inner)?;
    for id in ids {
        for v in workflows::versions(inner, &id)? {
            let path =
                inner
                    .root
                    .path(&["workflows", id.as_str(), &format!("{}.yaml", v.get())])?;
            if let Err(e) = workflows::read_version(&path, &id, v) {
                report.add(
                    crate::FindingKind::CorruptFile,
                    path.display().to_string(),
                    e.to_string(),
                    false,
                );
            }
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(runstore_core::Sha256Digest, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| fsutil::io_err("opening", path, e))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| fsutil::io_err("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finish(), size))
}

fn check_artifacts(inner: &Inner, repair: bool, report: &mut CheckReport) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, artifacts::LOCK, repair)?;
    for run in artifacts::runs_with_artifacts(inner)? {
        if let Err(e) = check_run_artifacts(inner, repair, report, &run) {
            report.add(
                crate::FindingKind::CorruptFile,
                format!("artifacts of run {run}"),
                e.to_string(),
                false,
            );
        }
    }
    Ok(())
}

fn check_run_artifacts(
    inner: &Inner,
    repair: bool,
    report: &mut CheckReport,
    run: &RunId,
) -> Result<()> {
    let journal = inner
        .root
        .path(&["artifacts", run.as_str(), artifacts::INFO_FILE])?;
    scan_ndjson(
        inner,
        report,
        &journal,
        repair,
        parses::<artifacts::InfoLine>,
    )?;
    let infos = artifacts::run_infos(inner, run)?;
    let mut known = std::collections::HashSet::new();
    for (key, info) in &infos {
        let path = inner.root.path(&artifacts::blob_parts(key))?;
        known.insert(path.clone());
        if !fsutil::regular_file_exists(&path)? {
            report.add(
                crate::FindingKind::MissingFile,
                path.display().to_string(),
                format!("the bytes of artifact {key} are missing"),
                false,
            );
            continue;
        }
        let (hash, size) = hash_file(&path)?;
        if hash != info.sha256 || size != info.size {
            report.add(
                crate::FindingKind::HashMismatch,
                path.display().to_string(),
                format!(
                    "artifact {key}: stored bytes have sha256 {hash} and size {size}, recorded sha256 {} and size {}",
                    info.sha256, info.size
                ),
                false,
            );
        }
    }
    // Files no record points to.
    let phases = inner.root.path(&["artifacts", run.as_str(), "phases"])?;
    let mut stack = vec![phases];
    while let Some(dir) = stack.pop() {
        for (name, ft) in fsutil::list_dir(&dir)? {
            let path = dir.join(&name);
            if ft.is_symlink() {
                report.add(
                    crate::FindingKind::CorruptFile,
                    path.display().to_string(),
                    "a symbolic link inside the root; never followed",
                    false,
                );
            } else if ft.is_dir() {
                stack.push(path);
            } else if !known.contains(&path) {
                if repair {
                    fsutil::remove_file(&path, inner.durability)?;
                }
                report.add(
                    crate::FindingKind::OrphanFile,
                    path.display().to_string(),
                    "an artifact file without a record",
                    repair,
                );
            }
        }
    }
    Ok(())
}

fn check_tmp(inner: &Inner, repair: bool, report: &mut CheckReport) -> Result<()> {
    // Spool files of artifact writes, and temp files of atomic replacements
    // (named `.tmp…` by tempfile) in every folder that has them.
    let mut dirs = vec![(inner.root.path(&["tmp"])?, false)];
    for parts in [&[][..], &["index"][..], &["logs", "events"][..]] {
        dirs.push((inner.root.path(parts)?, true));
    }
    for id in workflows::ids(inner)? {
        dirs.push((inner.root.path(&["workflows", id.as_str()])?, true));
    }
    let now = SystemTime::now();
    for (dir, only_dot_tmp) in dirs {
        for (name, ft) in fsutil::list_dir(&dir)? {
            if !ft.is_file() || (only_dot_tmp && !name.starts_with(".tmp")) {
                continue;
            }
            let path = dir.join(&name);
            let old = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > TEMP_GRACE)
                .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
            if old {
                if repair {
                    fsutil::remove_file(&path, inner.durability)?;
                }
                report.add(
                    crate::FindingKind::LeftoverTemp,
                    path.display().to_string(),
                    "a temp file left by an interrupted write",
                    repair,
                );
            }
        }
    }
    Ok(())
}
