//! `runstore export` and `runstore import`: the backend-neutral NDJSON dump
//! described in `cli/README.md`. Both stream page by page (export) or line
//! by line in small batches (import), so memory stays bounded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runstore::{
    ArtifactInfo, ArtifactQuery, BulkOutcome, Error, ExecutionMetric, LogRepositoryExt,
    MetricQuery, Pattern, PatternQuery, PutOptions, Result, RunQuery, RunWithEvents, Sha256Hasher,
    Storage, WorkflowDefinition, WorkflowQuery,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

use crate::output::Out;
use crate::paging::Items;
use crate::progress::Progress;

/// The format tag written to `manifest.json`. Version 2 keeps artifact
/// bytes by their SHA-256 (`blobs/<sha256>`), so artifacts `a/x` and
/// `a/x/y` of one run and phase both fit; version 1 kept them under their
/// logical paths, and is still read.
pub const DUMP_FORMAT: &str = "runstore-dump/2";
const DUMP_FORMAT_V1: &str = "runstore-dump/1";

/// The NDJSON files of a dump, in the order they are written and read.
const NDJSON_FILES: [&str; 5] = [
    "workflows.ndjson",
    "runs.ndjson",
    "metrics.ndjson",
    "patterns.ndjson",
    "artifacts.ndjson",
];

const PAGE: usize = 500;
const RUN_BATCH: usize = 100;
const METRIC_BATCH: usize = 500;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// An NDJSON file being written.
struct Ndjson {
    path: PathBuf,
    w: BufWriter<tokio::fs::File>,
}

impl Ndjson {
    async fn create(dir: &Path, name: &str) -> Result<Ndjson> {
        let path = dir.join(name);
        let f = tokio::fs::File::create(&path)
            .await
            .map_err(io(format!("creating {}", path.display())))?;
        Ok(Ndjson {
            path,
            w: BufWriter::new(f),
        })
    }

    async fn line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut text = serde_json::to_vec(value)
            .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
        text.push(b'\n');
        self.w
            .write_all(&text)
            .await
            .map_err(io(format!("writing {}", self.path.display())))
    }

    async fn close(mut self) -> Result<()> {
        self.w
            .flush()
            .await
            .map_err(io(format!("writing {}", self.path.display())))?;
        self.w
            .into_inner()
            .sync_all()
            .await
            .map_err(io(format!("writing {}", self.path.display())))
    }
}

/// Opens `dir/parts…` for reading, refusing anything that could lead
/// outside the dump folder: a symbolic link at any level, a file with more
/// than one hard link (another name of a file elsewhere), or something
/// other than a regular file. `None` if it does not exist. The file opened
/// is checked to be the one inspected, so a swap in between is refused.
fn open_in_dump(dir: &Path, parts: &[&str]) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |path: &Path, why: &str| {
        Error::invalid(
            "dump",
            format!(
                "{} {why}; a dump is read only from plain files inside its folder",
                path.display()
            ),
        )
    };
    let mut path = dir.to_path_buf();
    let mut meta = None;
    for part in parts {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(refuse(&path, "is a symbolic link")),
            Ok(m) => meta = Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
        }
    }
    let Some(meta) = meta.filter(|m| m.is_file()) else {
        return Err(refuse(&path, "is not a regular file"));
    };
    if meta.nlink() > 1 {
        return Err(refuse(&path, "has more than one hard link"));
    }
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let opened = file
        .metadata()
        .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(refuse(&path, "changed while it was opened"));
    }
    Ok(Some(file))
}

/// The path parts of an artifact's bytes inside a dump of `format`:
/// `blobs/<sha256>` (version 2), or `artifacts/<run>/<phase>/<path…>`
/// (version 1). Ids, phases and logical paths are validated segments (no
/// `..`, no `/` or `\` inside), and a hash is hex.
fn artifact_parts(format: &str, info: &ArtifactInfo) -> Vec<String> {
    if format == DUMP_FORMAT_V1 {
        let mut parts = vec![
            "artifacts".to_string(),
            info.key.run_id.as_str().to_string(),
            info.key.phase.as_str().to_string(),
        ];
        parts.extend(info.key.path.segments().map(str::to_string));
        return parts;
    }
    vec!["blobs".to_string(), info.sha256.to_hex()]
}

fn joined(dir: &Path, parts: &[String]) -> PathBuf {
    let mut p = dir.to_path_buf();
    p.extend(parts);
    p
}

/// Writes every item of a listing to the NDJSON file `name` of `dir`, with
/// a progress line; returns how many.
async fn write_listing<T, F, Fut>(
    dir: &Path,
    name: &str,
    label: &str,
    quiet: bool,
    mut fetch: F,
) -> Result<u64>
where
    T: Serialize,
    F: FnMut(Option<runstore::Cursor>) -> Fut,
    Fut: std::future::Future<Output = Result<runstore::Page<T>>>,
{
    let mut file = Ndjson::create(dir, name).await?;
    let mut p = Progress::start(label, quiet);
    let mut all = Items::default();
    while let Some(item) = all.next(&mut fetch).await? {
        file.line(&item).await?;
        p.inc(1);
    }
    file.close().await?;
    Ok(p.finish())
}

/// Copies an artifact's bytes to `tmp`, then places them at `target`. The
/// reader checks the hash at the end of the stream, so a corrupt artifact
/// fails here (`Corrupt`) and nothing is placed.
async fn copy_artifact(
    storage: &Storage,
    info: &ArtifactInfo,
    tmp: &Path,
    target: &Path,
) -> Result<()> {
    let mut reader = storage.artifacts.get(&info.key).await?;
    let mut f = tokio::fs::File::create(tmp)
        .await
        .map_err(io(format!("creating {}", tmp.display())))?;
    tokio::io::copy(&mut reader.body, &mut f)
        .await
        .map_err(io(format!("exporting artifact {}", info.key)))?;
    f.sync_all()
        .await
        .map_err(io(format!("writing {}", tmp.display())))?;
    tokio::fs::rename(tmp, target)
        .await
        .map_err(io(format!("placing {}", target.display())))
}

/// Makes `dir` for an export: created if absent, refused if not empty.
pub async fn prepare_out_dir(dir: &Path) -> Result<()> {
    match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => {
            if entries
                .next_entry()
                .await
                .map_err(io(format!("reading {}", dir.display())))?
                .is_some()
            {
                return Err(Error::invalid(
                    "out",
                    format!("{} is not empty; export into a new folder", dir.display()),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io(format!("creating {}", dir.display())))
}

/// `runstore export --out DIR [--skip-corrupt]`. With a quarantine, a run
/// whose events cannot be read and an artifact whose bytes fail their hash
/// are left out of the dump and noted there; anything else still stops it.
pub async fn export(
    storage: &Storage,
    dir: &Path,
    mut q: Option<Quarantine>,
    out: &Out,
) -> Result<ExitCode> {
    prepare_out_dir(dir).await?;
    let quiet = out.json;

    // Workflows by (id, version), so parents come before their children.
    let workflows = write_listing(dir, "workflows.ndjson", "export workflows", quiet, |c| {
        storage
            .workflows
            .list(WorkflowQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;

    // Runs with their events embedded.
    let mut file = Ndjson::create(dir, "runs.ndjson").await?;
    let mut p = Progress::start("export runs", quiet);
    let mut events = 0u64;
    let mut all = Items::default();
    let query = RunQuery::default().with_limit(PAGE);
    while let Some(run) = all
        .next(|c| storage.logs.query_runs(query.clone().with_cursor(c)))
        .await?
    {
        let ev = match (storage.logs.all_events(&run.id).await, q.as_mut()) {
            (Ok(ev), _) => ev,
            (Err(e), Some(q)) if e.kind() == runstore::ErrorKind::Corrupt => {
                q.add(
                    "runs",
                    run.id.as_str(),
                    "the source store",
                    &e.to_string(),
                    true,
                )?;
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        events += ev.len() as u64;
        file.line(&RunWithEvents { run, events: ev }).await?;
        p.inc(1);
    }
    file.close().await?;
    let runs = p.finish();

    let metrics = write_listing(dir, "metrics.ndjson", "export metrics", quiet, |c| {
        storage
            .metrics
            .list(MetricQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;
    let patterns = write_listing(dir, "patterns.ndjson", "export patterns", quiet, |c| {
        storage
            .metrics
            .list_patterns(PatternQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;

    let mut file = Ndjson::create(dir, "artifacts.ndjson").await?;
    tokio::fs::create_dir_all(dir.join("blobs"))
        .await
        .map_err(io(format!("creating {}", dir.join("blobs").display())))?;
    let mut p = Progress::start("export artifacts", quiet);
    let mut bytes = 0u64;
    let mut all = Items::default();
    let query = ArtifactQuery::default().with_limit(PAGE);
    while let Some(info) = all
        .next(|c| storage.artifacts.list(query.clone().with_cursor(c)))
        .await?
    {
        let target = joined(dir, &artifact_parts(DUMP_FORMAT, &info));
        // Same hash, same bytes: written once however many artifacts share
        // them.
        if !tokio::fs::try_exists(&target).await.unwrap_or(false) {
            let tmp = target.with_extension("partial");
            match (
                copy_artifact(storage, &info, &tmp, &target).await,
                q.as_mut(),
            ) {
                (Ok(()), _) => {}
                (Err(e), Some(q)) if e.kind() == runstore::ErrorKind::Corrupt => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    q.add(
                        "artifacts",
                        &info.key.to_string(),
                        "the source store",
                        &e.to_string(),
                        true,
                    )?;
                    continue;
                }
                (Err(e), _) => return Err(e),
            }
        }
        bytes += info.size;
        file.line(&info).await?;
        p.inc(1);
    }
    file.close().await?;
    let artifacts = p.finish();

    let counts = json!({
        "workflows": workflows,
        "runs": runs,
        "events": events,
        "metrics": metrics,
        "patterns": patterns,
        "artifacts": artifacts,
        "artifact_bytes": bytes,
    });
    // Digests of the files, so a change is found before import.
    let mut files = serde_json::Map::new();
    for name in NDJSON_FILES {
        let path = dir.join(name);
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        let (sha, size) = hash_file(&mut f, &path).await?;
        files.insert(name.to_string(), json!({"sha256": sha, "bytes": size}));
    }
    // Written last, through a temp file: a dump with a manifest is whole.
    let manifest = json!({"format": DUMP_FORMAT, "counts": counts, "files": files});
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
    let tmp = dir.join("manifest.json.partial");
    tokio::fs::write(&tmp, text + "\n")
        .await
        .map_err(io("writing manifest.json"))?;
    tokio::fs::File::open(&tmp)
        .await
        .map_err(io("writing manifest.json"))?
        .sync_all()
        .await
        .map_err(io("writing manifest.json"))?;
    tokio::fs::rename(&tmp, dir.join("manifest.json"))
        .await
        .map_err(io("writing manifest.json"))?;

    let quarantine = q.as_ref().filter(|q| q.lines > 0).map(Quarantine::summary);
    let value =
        json!({"exported": counts, "quarantine": quarantine, "dir": dir.display().to_string()});
    out.result(&value, || {
        let mut text = format!(
            "exported {workflows} workflow versions, {runs} runs ({events} events), {metrics} metrics, \
             {patterns} patterns, {artifacts} artifacts ({bytes} bytes) to {}",
            dir.display()
        );
        if let Some(q) = q.as_ref().filter(|q| q.lines > 0) {
            text.push_str(&format!(
                "\nleft out {} unreadable records, listed in {}",
                q.skipped.values().sum::<u64>(),
                q.path.display()
            ));
        }
        text
    })?;
    if let Some(q) = q {
        q.close()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How `import` treats records it cannot read or store.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// Quarantine unreadable records and import the rest (instead of
    /// stopping at the first).
    pub skip_corrupt: bool,
    /// Where the quarantine report goes (with `skip_corrupt`); default
    /// `runstore-quarantine-<time>.ndjson` in the current folder.
    pub quarantine: Option<PathBuf>,
}

/// The quarantine report of `--skip-corrupt`: one NDJSON line per record
/// that was skipped or repaired (`concern`, `key`, `location`, `reason`),
/// created with the first line.
pub struct Quarantine {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// Records skipped, per concern.
    skipped: std::collections::BTreeMap<&'static str, u64>,
    /// Lines written.
    lines: u64,
}

impl Quarantine {
    /// The quarantine of `--skip-corrupt` (none without it), at `path` or
    /// `runstore-quarantine-<time>.ndjson` in the current folder.
    pub fn for_options(skip_corrupt: bool, path: Option<PathBuf>) -> Option<Quarantine> {
        skip_corrupt.then(|| {
            Quarantine::new(path.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "runstore-quarantine-{}.ndjson",
                    runstore::Timestamp::now().as_micros()
                ))
            }))
        })
    }

    /// What the output says of it.
    fn summary(&self) -> serde_json::Value {
        json!({"path": self.path.display().to_string(), "skipped": self.skipped, "notes": self.lines})
    }

    fn new(path: PathBuf) -> Self {
        Quarantine {
            path,
            file: None,
            skipped: Default::default(),
            lines: 0,
        }
    }

    /// Notes a record; `skipped` when it was left out (not repaired).
    fn add(
        &mut self,
        concern: &'static str,
        key: &str,
        location: &str,
        reason: &str,
        skipped: bool,
    ) -> Result<()> {
        use std::io::Write;
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| Error::io(format!("creating {}", self.path.display()), e))?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let line = json!({"concern": concern, "key": key, "location": location, "reason": reason, "skipped": skipped});
        if let Some(f) = self.file.as_mut() {
            writeln!(f, "{line}")
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        }
        if skipped {
            *self.skipped.entry(concern).or_default() += 1;
        }
        self.lines += 1;
        Ok(())
    }

    fn skipped(&self, concern: &str) -> u64 {
        self.skipped.get(concern).copied().unwrap_or(0)
    }

    fn close(self) -> Result<()> {
        use std::io::Write;
        if let Some(mut f) = self.file {
            f.flush()
                .and_then(|_| f.get_ref().sync_all())
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }
}

/// Reads an NDJSON file line by line; a missing file counts as empty.
struct Lines {
    path: PathBuf,
    name: String,
    lines: Option<tokio::io::Lines<BufReader<tokio::fs::File>>>,
    number: u64,
}

impl Lines {
    async fn open(dir: &Path, name: &str) -> Result<Lines> {
        let path = dir.join(name);
        let lines = open_in_dump(dir, &[name])?
            .map(|f| BufReader::new(tokio::fs::File::from_std(f)).lines());
        Ok(Lines {
            path,
            name: name.to_string(),
            lines,
            number: 0,
        })
    }

    /// The next record; blank lines are skipped.
    async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(lines) = self.lines.as_mut() else {
            return Ok(None);
        };
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(io(format!("reading {}", self.path.display())))?;
            let Some(line) = line else { return Ok(None) };
            self.number += 1;
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map(Some).map_err(|e| {
                Error::invalid("dump", format!("{} line {}: {e}", self.name, self.number))
            });
        }
    }
}

impl Lines {
    /// Like [`Lines::next`], but with a quarantine a line that does not
    /// parse is noted there and skipped.
    async fn next_or_skip<T: DeserializeOwned>(
        &mut self,
        q: &mut Option<Quarantine>,
        concern: &'static str,
    ) -> Result<Option<T>> {
        loop {
            match self.next::<T>().await {
                Err(e) if e.kind() == runstore::ErrorKind::InvalidInput && q.is_some() => {
                    if let Some(q) = q.as_mut() {
                        let location = format!("{} line {}", self.name, self.number);
                        q.add(concern, "", &location, &e.to_string(), true)?;
                    }
                }
                other => return other,
            }
        }
    }
}

fn add(total: &mut BulkOutcome, o: BulkOutcome) {
    total.inserted += o.inserted;
    total.unchanged += o.unchanged;
}

/// SHA-256 and size of an open file, streamed from where it stands.
async fn hash_file(f: &mut tokio::fs::File, path: &Path) -> Result<(runstore::Sha256Digest, u64)> {
    let mut hasher = Sha256Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finish(), size))
}

/// What `manifest.json` says.
#[derive(Debug, serde::Deserialize)]
struct Manifest {
    format: String,
    #[serde(default)]
    counts: Counts,
    /// SHA-256 and size of each NDJSON file (format 2).
    #[serde(default)]
    files: std::collections::BTreeMap<String, FileDigest>,
}

#[derive(Debug, serde::Deserialize)]
struct FileDigest {
    sha256: runstore::Sha256Digest,
    bytes: u64,
}

/// The record counts of a dump, as its manifest states them and as its
/// files hold them.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
struct Counts {
    workflows: u64,
    runs: u64,
    events: u64,
    metrics: u64,
    patterns: u64,
    artifacts: u64,
    artifact_bytes: u64,
}

/// Reads and checks `manifest.json`: present (an export writes it last, so
/// a folder without one is an export that did not finish), of a format
/// this build reads.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    use std::io::Read;
    let mut f = open_in_dump(dir, &["manifest.json"])?.ok_or_else(|| {
        Error::invalid(
            "dump",
            format!(
                "{} has no manifest.json: it is not a complete dump (export writes the manifest last, so an export that did not finish leaves none)",
                dir.display()
            ),
        )
    })?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| Error::io("reading manifest.json", e))?;
    let m: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid("dump", format!("manifest.json: {e}")))?;
    let format = m["format"].as_str().unwrap_or_default();
    if format != DUMP_FORMAT && format != DUMP_FORMAT_V1 {
        return Err(Error::invalid(
            "dump",
            format!(
                "manifest.json: format is {}, expected {DUMP_FORMAT:?} (or {DUMP_FORMAT_V1:?})",
                m["format"]
            ),
        ));
    }
    serde_json::from_value(m).map_err(|e| Error::invalid("dump", format!("manifest.json: {e}")))
}

/// Counts what the dump's files hold (one streaming pass, nothing kept)
/// and compares it with the manifest: a dump cut short or changed by hand
/// is refused before anything is written.
async fn check_counts(dir: &Path, stated: &Counts) -> Result<()> {
    let mut found = Counts::default();
    let mut lines = Lines::open(dir, "workflows.ndjson").await?;
    while lines.next::<serde::de::IgnoredAny>().await?.is_some() {
        found.workflows += 1;
    }
    let mut lines = Lines::open(dir, "runs.ndjson").await?;
    while let Some(r) = lines.next::<RunEvents>().await? {
        found.runs += 1;
        found.events += r.events.len() as u64;
    }
    let mut lines = Lines::open(dir, "metrics.ndjson").await?;
    while lines.next::<serde::de::IgnoredAny>().await?.is_some() {
        found.metrics += 1;
    }
    let mut lines = Lines::open(dir, "patterns.ndjson").await?;
    while lines.next::<serde::de::IgnoredAny>().await?.is_some() {
        found.patterns += 1;
    }
    let mut lines = Lines::open(dir, "artifacts.ndjson").await?;
    while let Some(info) = lines.next::<ArtifactInfo>().await? {
        found.artifacts += 1;
        found.artifact_bytes += info.size;
    }
    if found == *stated {
        return Ok(());
    }
    let pairs = [
        (
            "workflow versions",
            "workflows.ndjson",
            found.workflows,
            stated.workflows,
        ),
        ("runs", "runs.ndjson", found.runs, stated.runs),
        ("events", "runs.ndjson", found.events, stated.events),
        ("metrics", "metrics.ndjson", found.metrics, stated.metrics),
        (
            "patterns",
            "patterns.ndjson",
            found.patterns,
            stated.patterns,
        ),
        (
            "artifacts",
            "artifacts.ndjson",
            found.artifacts,
            stated.artifacts,
        ),
        (
            "artifact bytes",
            "artifacts.ndjson",
            found.artifact_bytes,
            stated.artifact_bytes,
        ),
    ];
    let diffs: Vec<String> = pairs
        .iter()
        .filter(|(_, _, f, s)| f != s)
        .map(|(what, file, f, s)| format!("{file} holds {f} {what}, manifest.json says {s}"))
        .collect();
    Err(Error::corrupt(
        dir.display().to_string(),
        format!(
            "the dump does not hold what its manifest says ({}); it is incomplete or was changed, and nothing was imported",
            diffs.join("; ")
        ),
    ))
}

/// Compares each NDJSON file with its digest in the manifest (format 2;
/// format 1 had none). A missing file must be listed as empty.
async fn check_digests(dir: &Path, manifest: &Manifest) -> Result<()> {
    if manifest.format == DUMP_FORMAT_V1 {
        return Ok(());
    }
    let mut diffs = Vec::new();
    for name in NDJSON_FILES {
        let Some(stated) = manifest.files.get(name) else {
            diffs.push(format!("manifest.json lists no digest of {name}"));
            continue;
        };
        let (sha, size) = match open_in_dump(dir, &[name])? {
            Some(f) => {
                let mut f = tokio::fs::File::from_std(f);
                hash_file(&mut f, &dir.join(name)).await?
            }
            None => (runstore::Sha256Digest::of(b""), 0),
        };
        if sha != stated.sha256 || size != stated.bytes {
            diffs.push(format!(
                "{name} has {size} bytes with sha256 {sha}, manifest.json says {} bytes with sha256 {}",
                stated.bytes, stated.sha256
            ));
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::corrupt(
        dir.display().to_string(),
        format!(
            "the dump's files are not the ones exported ({}); nothing was imported",
            diffs.join("; ")
        ),
    ))
}

/// A line of `runs.ndjson` read only for its events' count.
#[derive(serde::Deserialize)]
struct RunEvents {
    #[serde(default)]
    events: Vec<serde::de::IgnoredAny>,
}

/// `runstore import DIR`.
pub async fn import(
    storage: &Storage,
    dir: &Path,
    options: ImportOptions,
    out: &Out,
) -> Result<ExitCode> {
    if storage
        .backends()
        .iter()
        .any(|b| matches!(b.backend.handle, runstore::BackendHandle::Memory))
    {
        // Always on stderr (also with --json): it is what the user must know.
        eprintln!(
            "warning: the configuration keeps some concerns in memory; what this import stores there is gone when the command ends"
        );
    }
    let meta = tokio::fs::metadata(dir)
        .await
        .map_err(|e| Error::invalid("dir", format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            "dir",
            format!("{} is not a folder", dir.display()),
        ));
    }
    let manifest = read_manifest(dir)?;
    let format = manifest.format.clone();
    let mut q = Quarantine::for_options(options.skip_corrupt, options.quarantine.clone());
    // Before anything is written: the files are the ones exported, and
    // hold what the manifest says. With --skip-corrupt a damaged dump is
    // what is being rescued: say so and go on.
    let checked = match check_counts(dir, &manifest.counts).await {
        Ok(()) => check_digests(dir, &manifest).await,
        Err(e) => Err(e),
    };
    match checked {
        Err(e) if q.is_some() && e.kind() != runstore::ErrorKind::Unavailable => {
            eprintln!("warning: {e}; importing what can be read (--skip-corrupt)");
        }
        other => other?,
    }
    let quiet = out.json;

    let mut workflows = BulkOutcome::default();
    let mut lines = Lines::open(dir, "workflows.ndjson").await?;
    let mut p = Progress::start("import workflows", quiet);
    while let Some(def) = lines
        .next_or_skip::<WorkflowDefinition>(&mut q, "workflows")
        .await?
    {
        if let (Some(q), Err(e)) = (q.as_mut(), def.validate()) {
            let key = format!("{}@{}", def.id, def.version);
            let location = format!("workflows.ndjson line {}", lines.number);
            q.add("workflows", &key, &location, &e.to_string(), true)?;
            continue;
        }
        let w = storage.workflows.store(def).await?;
        add(
            &mut workflows,
            BulkOutcome {
                inserted: u64::from(w.inserted),
                unchanged: u64::from(!w.inserted),
                deferred: 0,
            },
        );
        p.inc(1);
    }
    p.finish();

    let mut runs = BulkOutcome::default();
    let mut lines = Lines::open(dir, "runs.ndjson").await?;
    let mut p = Progress::start("import runs", quiet);
    let mut batch = Vec::with_capacity(RUN_BATCH);
    loop {
        let next = lines.next_or_skip::<RunWithEvents>(&mut q, "runs").await?;
        let done = next.is_none();
        if let Some(r) = next {
            match (q.as_mut(), r.validate()) {
                (Some(q), Err(_)) => {
                    let location = format!("runs.ndjson line {}", lines.number);
                    let key = r.run.id.to_string();
                    let (fixed, notes) = r.repaired();
                    match fixed.validate() {
                        Ok(()) => {
                            for n in &notes {
                                q.add("runs", &key, &location, n, false)?;
                            }
                            batch.push(fixed);
                        }
                        Err(e) => q.add("runs", &key, &location, &e.to_string(), true)?,
                    }
                }
                _ => batch.push(r),
            }
        }
        if batch.len() >= RUN_BATCH || (done && !batch.is_empty()) {
            let n = batch.len() as u64;
            add(
                &mut runs,
                storage.logs.import_runs(std::mem::take(&mut batch)).await?,
            );
            p.inc(n);
        }
        if done {
            break;
        }
    }
    p.finish();

    let mut metrics = BulkOutcome::default();
    let mut lines = Lines::open(dir, "metrics.ndjson").await?;
    let mut p = Progress::start("import metrics", quiet);
    let mut batch = Vec::with_capacity(METRIC_BATCH);
    loop {
        let next = lines
            .next_or_skip::<ExecutionMetric>(&mut q, "metrics")
            .await?;
        let done = next.is_none();
        if let Some(m) = next {
            match (q.as_mut(), m.validate()) {
                (Some(q), Err(e)) => {
                    let location = format!("metrics.ndjson line {}", lines.number);
                    q.add(
                        "metrics",
                        m.run_id.as_str(),
                        &location,
                        &e.to_string(),
                        true,
                    )?;
                }
                _ => batch.push(m),
            }
        }
        if batch.len() >= METRIC_BATCH || (done && !batch.is_empty()) {
            let n = batch.len() as u64;
            add(
                &mut metrics,
                storage
                    .metrics
                    .record_many(std::mem::take(&mut batch))
                    .await?,
            );
            p.inc(n);
        }
        if done {
            break;
        }
    }
    p.finish();

    // Patterns are upserted by id; one already stored identically is counted
    // unchanged and not written again.
    let mut patterns = BulkOutcome::default();
    let mut lines = Lines::open(dir, "patterns.ndjson").await?;
    let mut p = Progress::start("import patterns", quiet);
    while let Some(pat) = lines.next_or_skip::<Pattern>(&mut q, "patterns").await? {
        if let (Some(q), Err(e)) = (q.as_mut(), pat.validate()) {
            let location = format!("patterns.ndjson line {}", lines.number);
            q.add("patterns", pat.id.as_str(), &location, &e.to_string(), true)?;
            continue;
        }
        let same = match storage.metrics.get_pattern(&pat.id).await {
            Ok(stored) => stored.same_content(&pat),
            Err(e) if e.kind() == runstore::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if same {
            patterns.unchanged += 1;
        } else {
            storage.metrics.upsert_pattern(pat).await?;
            patterns.inserted += 1;
        }
        p.inc(1);
    }
    p.finish();

    let mut artifacts = BulkOutcome::default();
    let mut lines = Lines::open(dir, "artifacts.ndjson").await?;
    let mut p = Progress::start("import artifacts", quiet);
    while let Some(info) = lines
        .next_or_skip::<ArtifactInfo>(&mut q, "artifacts")
        .await?
    {
        let parts = artifact_parts(&format, &info);
        let file = joined(dir, &parts);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        // Check the bytes against the dump before storing anything; the
        // same handle is then stored, so what was checked is what goes in.
        let checked: Result<tokio::fs::File> = async {
            let opened = open_in_dump(dir, &parts)?.ok_or_else(|| {
                Error::invalid(
                    "dump",
                    format!(
                        "the bytes of artifact {} are missing ({})",
                        info.key,
                        file.display()
                    ),
                )
            })?;
            let mut body = tokio::fs::File::from_std(opened);
            let (sha, size) = hash_file(&mut body, &file).await?;
            if sha != info.sha256 || size != info.size {
                return Err(Error::corrupt(
                    file.display().to_string(),
                    format!(
                        "artifact {} has sha256 {sha} and size {size} in the dump, but artifacts.ndjson says sha256 {} and size {}",
                        info.key, info.sha256, info.size
                    ),
                ));
            }
            Ok(body)
        }
        .await;
        let mut body = match (checked, q.as_mut()) {
            (Ok(body), _) => body,
            (Err(e), Some(q)) if e.kind() != runstore::ErrorKind::Unavailable => {
                let location = format!("artifacts.ndjson line {}", lines.number);
                q.add(
                    "artifacts",
                    &info.key.to_string(),
                    &location,
                    &e.to_string(),
                    true,
                )?;
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        use tokio::io::AsyncSeekExt;
        body.rewind()
            .await
            .map_err(io(format!("reading {}", file.display())))?;
        let options = PutOptions::default()
            .content_type(info.content_type.clone())
            .created_by(info.created_by.clone())
            .created_at(info.created_at);
        let w = storage
            .artifacts
            .put(&info.key, Box::new(body), options)
            .await?;
        if w.inserted {
            artifacts.inserted += 1;
        } else {
            artifacts.unchanged += 1;
        }
        p.inc(1);
    }
    p.finish();

    // After: every record the manifest counts was stored or found stored
    // (strict), or stored or quarantined (--skip-corrupt: the manifest of
    // a damaged dump may be damaged too, so it is only reported).
    let skipped = |c: &str| q.as_ref().map_or(0, |q| q.skipped(c));
    let done = |o: &BulkOutcome, c: &str| o.inserted + o.unchanged + skipped(c);
    let after = [
        (
            "workflow versions",
            done(&workflows, "workflows"),
            manifest.counts.workflows,
        ),
        ("runs", done(&runs, "runs"), manifest.counts.runs),
        (
            "metrics",
            done(&metrics, "metrics"),
            manifest.counts.metrics,
        ),
        (
            "patterns",
            done(&patterns, "patterns"),
            manifest.counts.patterns,
        ),
        (
            "artifacts",
            done(&artifacts, "artifacts"),
            manifest.counts.artifacts,
        ),
    ];
    if let Some((what, got, want)) = after.iter().find(|(_, got, want)| got != want) {
        if q.is_some() {
            eprintln!("warning: {got} {what} imported or quarantined, the manifest counts {want}");
        } else {
            return Err(Error::corrupt(
                dir.display().to_string(),
                format!(
                    "imported {got} {what}, the manifest counts {want}; the dump changed while it was imported"
                ),
            ));
        }
    }

    let quarantine = q.as_ref().filter(|q| q.lines > 0).map(Quarantine::summary);
    let value = json!({
        "imported": {
            "workflows": workflows,
            "runs": runs,
            "metrics": metrics,
            "patterns": patterns,
            "artifacts": artifacts,
        },
        "quarantine": quarantine,
        "dir": dir.display().to_string(),
    });
    out.result(&value, || {
        let f = |name: &str, o: &BulkOutcome| {
            format!("{name}: {} new, {} unchanged", o.inserted, o.unchanged)
        };
        let mut lines = vec![
            f("workflows", &workflows),
            f("runs", &runs),
            f("metrics", &metrics),
            f("patterns", &patterns),
            f("artifacts", &artifacts),
        ];
        if let Some(q) = q.as_ref().filter(|q| q.lines > 0) {
            let skipped: u64 = q.skipped.values().sum();
            lines.push(format!(
                "skipped {skipped} unreadable records and repaired others: {} notes in {}",
                q.lines,
                q.path.display()
            ));
        }
        lines.join("\n")
    })?;
    if let Some(q) = q {
        q.close()?;
    }
    Ok(ExitCode::SUCCESS)
}
