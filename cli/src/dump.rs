//! `runstore export` and `runstore import`: the library's NDJSON dump
//! (`runstore::dump`) with progress lines and the command's output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use runstore::dump::{self, ExportOptions, ImportOptions, Quarantine};
use runstore::migrate::MigrationProgress;
use runstore::{BulkOutcome, Result, Storage};
use serde_json::json;

use crate::output::Out;
use crate::progress::Progress;

/// One progress line per kind of record, for the library's dump functions.
pub struct Steps {
    label: &'static str,
    quiet: bool,
    current: Mutex<Option<(String, Progress)>>,
}

impl Steps {
    /// Progress labelled `export runs`, `import metrics`, ….
    pub fn new(label: &'static str, quiet: bool) -> Arc<Steps> {
        Arc::new(Steps {
            label,
            quiet,
            current: Mutex::new(None),
        })
    }
}

impl MigrationProgress for Steps {
    fn on_progress(&self, concern: &str, done: u64, _total: Option<u64>) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(c, _)| c != concern) {
            if let Some((_, p)) = current.take() {
                p.finish();
            }
            let p = Progress::start(format!("{} {concern}", self.label), self.quiet);
            *current = Some((concern.to_string(), p));
        }
        if let Some((_, p)) = current.as_mut() {
            p.inc(done.saturating_sub(p.count()));
        }
    }

    fn on_finish(&self, concern: &str, done: u64) {
        self.on_progress(concern, done, None);
        if let Ok(mut current) = self.current.lock()
            && let Some((_, p)) = current.take()
        {
            p.finish();
        }
    }
}

/// `runstore export --out DIR [--skip-corrupt]`.
pub async fn export(
    storage: &Storage,
    dir: &Path,
    q: Option<Quarantine>,
    out: &Out,
) -> Result<ExitCode> {
    let options = ExportOptions::default()
        .quarantine(q)
        .progress(Steps::new("export", out.json));
    let report = dump::export(storage, dir, options).await?;
    let c = &report.counts;
    let value =
        json!({"exported": c, "quarantine": report.quarantine, "dir": dir.display().to_string()});
    out.result(&value, || {
        let mut text = format!(
            "exported {} workflow versions, {} runs ({} events), {} metrics, {} patterns, {} artifacts ({} bytes) to {}",
            c.workflows,
            c.runs,
            c.events,
            c.metrics,
            c.patterns,
            c.artifacts,
            c.artifact_bytes,
            dir.display()
        );
        if let Some(q) = &report.quarantine {
            text.push_str(&format!(
                "\nleft out {} unreadable records, listed in {}",
                q.skipped_total(),
                q.path.display()
            ));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore import DIR [--skip-corrupt [--quarantine FILE]]`.
pub async fn import(
    storage: &Storage,
    dir: &Path,
    skip_corrupt: bool,
    quarantine: Option<PathBuf>,
    out: &Out,
) -> Result<ExitCode> {
    if storage
        .backends()
        .iter()
        .any(|b| b.backend.handle.is::<runstore::memory::InMemory>())
    {
        // Always on stderr (also with --json): it is what the user must know.
        eprintln!(
            "warning: the configuration keeps some concerns in memory; what this import stores there is gone when the command ends"
        );
    }
    let options = ImportOptions::default()
        .quarantine(Quarantine::for_options(skip_corrupt, quarantine))
        .progress(Steps::new("import", out.json));
    let report = dump::import(storage, dir, options).await?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let value = json!({
        "imported": {
            "workflows": report.workflows,
            "runs": report.runs,
            "metrics": report.metrics,
            "patterns": report.patterns,
            "artifacts": report.artifacts,
        },
        "quarantine": report.quarantine,
        "dir": dir.display().to_string(),
    });
    out.result(&value, || {
        let f = |name: &str, o: &BulkOutcome| {
            format!("{name}: {} new, {} unchanged", o.inserted, o.unchanged)
        };
        let mut lines = vec![
            f("workflows", &report.workflows),
            f("runs", &report.runs),
            f("metrics", &report.metrics),
            f("patterns", &report.patterns),
            f("artifacts", &report.artifacts),
        ];
        if let Some(q) = &report.quarantine {
            lines.push(format!(
                "skipped {} unreadable records and repaired others: {} notes in {}",
                q.skipped_total(),
                q.notes,
                q.path.display()
            ));
        }
        lines.join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}
