//! `runstore backup` and `runstore restore`: the library's backup sets
//! (`runstore::backup`) with progress lines and the command's output.

use std::path::Path;
use std::process::ExitCode;

use runstore::backup::{self, BackupOptions, RestoreOptions};
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
