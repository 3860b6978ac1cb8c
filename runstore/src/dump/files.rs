//! Reading and writing the files of a dump.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

use super::{
    DUMP_FORMAT, DUMP_FORMAT_V1, DumpCounts, DumpManifest, FileDigest, NDJSON_FILES, Quarantine,
};
use crate::{ArtifactInfo, Error, Result, Sha256Hasher};

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// An NDJSON file being written, hashed on the way; with no folder only
/// hashed (what [`super::content_digest`] needs).
pub(crate) struct Ndjson {
    path: PathBuf,
    w: Option<BufWriter<tokio::fs::File>>,
    hasher: Sha256Hasher,
    bytes: u64,
}

impl Ndjson {
    pub(crate) async fn create(dir: Option<&Path>, name: &str) -> Result<Ndjson> {
        let path = dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        let w = match dir {
            Some(_) => Some(BufWriter::new(
                tokio::fs::File::create(&path)
                    .await
                    .map_err(io(format!("creating {}", path.display())))?,
            )),
            None => None,
        };
        Ok(Ndjson {
            path,
            w,
            hasher: Sha256Hasher::new(),
            bytes: 0,
        })
    }

    pub(crate) async fn line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut text = serde_json::to_vec(value)
            .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
        text.push(b'\n');
        self.hasher.update(&text);
        self.bytes += text.len() as u64;
        match self.w.as_mut() {
            Some(w) => w
                .write_all(&text)
                .await
                .map_err(io(format!("writing {}", self.path.display()))),
            None => Ok(()),
        }
    }

    /// Flushes and syncs the file; its digest.
    pub(crate) async fn close(self) -> Result<FileDigest> {
        if let Some(mut w) = self.w {
            w.flush()
                .await
                .map_err(io(format!("writing {}", self.path.display())))?;
            w.into_inner()
                .sync_all()
                .await
                .map_err(io(format!("writing {}", self.path.display())))?;
        }
        Ok(FileDigest {
            sha256: self.hasher.finish(),
            bytes: self.bytes,
        })
    }
}

/// Opens `dir/parts…` for reading, refusing anything that could lead
/// outside the dump folder: a symbolic link at any level, a file with more
/// than one hard link (another name of a file elsewhere), or something
/// other than a regular file. `None` if it does not exist. The file opened
/// is checked to be the one inspected, so a swap in between is refused.
pub(crate) fn open_in_dump(dir: &Path, parts: &[&str]) -> Result<Option<std::fs::File>> {
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
pub(crate) fn artifact_parts(format: &str, info: &ArtifactInfo) -> Vec<String> {
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

pub(crate) fn joined(dir: &Path, parts: &[String]) -> PathBuf {
    let mut p = dir.to_path_buf();
    p.extend(parts);
    p
}

/// Reads an NDJSON file line by line; a missing file counts as empty.
pub(crate) struct Lines {
    path: PathBuf,
    name: String,
    lines: Option<tokio::io::Lines<BufReader<tokio::fs::File>>>,
    pub(crate) number: u64,
}

impl Lines {
    /// A file read as empty (a concern an import leaves out).
    pub(crate) fn none(dir: &Path, name: &str) -> Lines {
        Lines {
            path: dir.join(name),
            name: name.to_string(),
            lines: None,
            number: 0,
        }
    }

    pub(crate) async fn open(dir: &Path, name: &str) -> Result<Lines> {
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
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
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
    pub(crate) async fn next_or_skip<T: DeserializeOwned>(
        &mut self,
        q: &mut Option<Quarantine>,
        concern: &'static str,
    ) -> Result<Option<T>> {
        loop {
            match self.next::<T>().await {
                Err(e) if e.kind() == crate::ErrorKind::InvalidInput && q.is_some() => {
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

/// SHA-256 and size of an open file, streamed from where it stands.
pub(crate) async fn hash_file(
    f: &mut tokio::fs::File,
    path: &Path,
) -> Result<(crate::Sha256Digest, u64)> {
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

/// Reads and checks `manifest.json`: present (an export writes it last, so
/// a folder without one is an export that did not finish), of a format
/// this build reads.
pub(crate) fn read_manifest(dir: &Path) -> Result<DumpManifest> {
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
pub(crate) async fn check_counts(dir: &Path, stated: &DumpCounts) -> Result<()> {
    let mut found = DumpCounts::default();
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
pub(crate) async fn check_digests(dir: &Path, manifest: &DumpManifest) -> Result<()> {
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
            None => (crate::Sha256Digest::of(b""), 0),
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
