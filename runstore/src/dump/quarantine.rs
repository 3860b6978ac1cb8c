//! The quarantine report of a `--skip-corrupt` pass.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::{Error, Result};

/// The quarantine report of a pass that skips what it cannot read: one
/// NDJSON line per record that was skipped or repaired (`concern`, `key`,
/// `location`, `reason`, `skipped`), created with the first line, so a
/// clean pass leaves no file.
#[derive(Debug)]
pub struct Quarantine {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    skipped: BTreeMap<String, u64>,
    lines: u64,
    keys: std::collections::BTreeSet<String>,
}

/// What a quarantine holds, for a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QuarantineSummary {
    /// The report file.
    pub path: PathBuf,
    /// Records left out, per concern.
    pub skipped: BTreeMap<String, u64>,
    /// Lines written (skipped and repaired records).
    pub notes: u64,
}

impl QuarantineSummary {
    /// Records left out, all concerns together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl Quarantine {
    /// A quarantine writing to `path` (which must not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Quarantine {
            path: path.into(),
            file: None,
            skipped: BTreeMap::new(),
            lines: 0,
            keys: Default::default(),
        }
    }

    /// A quarantine at `path`, or at `runstore-quarantine-<time>.ndjson`
    /// in the current folder; none unless `skip_corrupt`.
    pub fn for_options(skip_corrupt: bool, path: Option<PathBuf>) -> Option<Quarantine> {
        skip_corrupt.then(|| {
            Quarantine::new(path.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "runstore-quarantine-{}.ndjson",
                    crate::Timestamp::now().as_micros()
                ))
            }))
        })
    }

    /// The report file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notes a record; `skipped` when it was left out (not repaired).
    pub fn add(
        &mut self,
        concern: &str,
        key: &str,
        location: &str,
        reason: &str,
        skipped: bool,
    ) -> Result<()> {
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
            *self.skipped.entry(concern.to_string()).or_default() += 1;
        }
        if !key.is_empty() {
            self.keys.insert(key.to_string());
        }
        self.lines += 1;
        Ok(())
    }

    /// Whether the record `key` (a run id, an artifact key, …) was noted.
    pub fn holds(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Records of `concern` left out so far.
    pub fn skipped(&self, concern: &str) -> u64 {
        self.skipped.get(concern).copied().unwrap_or(0)
    }

    /// What it holds; `None` while nothing was noted.
    pub fn summary(&self) -> Option<QuarantineSummary> {
        (self.lines > 0).then(|| QuarantineSummary {
            path: self.path.clone(),
            skipped: self.skipped.clone(),
            notes: self.lines,
        })
    }

    /// Flushes and syncs the report; what it holds.
    pub fn close(self) -> Result<Option<QuarantineSummary>> {
        let summary = self.summary();
        if let Some(mut f) = self.file {
            f.flush()
                .and_then(|_| f.get_ref().sync_all())
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(summary)
    }
}
