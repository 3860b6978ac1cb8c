//! `runstore backup` and `runstore restore`: the library's backup sets
//! (`runstore::backup`) with progress lines and the command's output.

use std::path::Path;
use std::process::ExitCode;

use runstore::backup::{self, BackupOptions, RestoreOptions};
use runstore::dump::Quarantine;
use runstore::recover::{self as recovery, RecoverOptions};
use runstore::{Config, Result, Storage};
use serde_json::json;

use crate::dump::Steps;
use crate::output::Out;

/// `runstore backup [--to DIR]`.
pub async fn backup(storage: &Storage, to: &Path, out: &Out) -> Result<ExitCode> {
    let options = BackupOptions::default().progress(Steps::new("backup", out.json));
    let set = backup::backup(storage, to, options).await?;
    let value = json!({"set": set.path.display().to_string(), "manifest": set.manifest});
    out.result(&value, || {
        let mut lines = vec![format!("backup set {}", set.path.display())];
        for part in &set.manifest.parts {
            let concerns: Vec<&str> = part.concerns.iter().map(|c| c.as_str()).collect();
            let counts: Vec<String> = part
                .counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            lines.push(format!(
                "  {} ({}, {:?}) -> {}: {}",
                concerns.join(", "),
                part.backend,
                part.method,
                part.location,
                counts.join(", ")
            ));
        }
        lines.join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore restore SET`.
pub async fn restore(config: &Config, set: &Path, out: &Out) -> Result<ExitCode> {
    let options = RestoreOptions::default().progress(Steps::new("restore", out.json));
    let report = backup::restore(config, set, options).await?;
    out.result(&report, || {
        let counts: Vec<String> = report
            .counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let mut text = format!(
            "{} {} ({} parts): {}; counts and digests match the set",
            if report.resumed {
                "finished the interrupted restore of"
            } else {
                "restored"
            },
            set.display(),
            report.parts,
            counts.join(", ")
        );
        for k in &report.kept {
            text.push_str(&format!("\nkept what it replaced: {k}"));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore recover --from DIR [--skip-corrupt]`.
pub async fn recover(
    config: &Config,
    from: &Path,
    q: Option<Quarantine>,
    out: &Out,
) -> Result<ExitCode> {
    let options = RecoverOptions::default()
        .quarantine(q)
        .progress(Steps::new("recover", out.json));
    let report = recovery::recover(config, from, options).await?;
    out.result(&report, || {
        let mut lines = Vec::new();
        for aside in &report.moved_aside {
            lines.push(format!(
                "moved the damaged database aside to {}",
                aside.display()
            ));
        }
        let (runs, events) = match (&report.imported, &report.migrated) {
            (Some(i), _) => (i.runs.inserted + i.runs.unchanged, None),
            (_, Some(m)) => (m.runs.copied + m.runs.unchanged, Some(m.events.copied + m.events.unchanged)),
            _ => (0, None),
        };
        lines.push(match events {
            Some(events) => format!("recovered {runs} runs ({events} events) from {}", from.display()),
            None => format!("recovered {runs} runs from {}", from.display()),
        });
        if let Some(q) = &report.quarantine {
            lines.push(format!(
                "skipped {} unreadable records; {} notes (skips and runstore.lost tombstones) in {}",
                q.skipped_total(),
                q.notes,
                q.path.display()
            ));
        }
        lines.join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}
