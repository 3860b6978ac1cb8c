//! `runstore outbox status` and `runstore outbox drain`: the local outboxes
//! of the logs and metrics concerns (docs/DESIGN.md section 10).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use runstore::outbox::{DrainReport, Outbox};
use runstore::{Concern, Config, Error, Result, Storage, Timestamp};
use serde_json::json;

use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// Pending writes per concern and the age of the oldest, for every
    /// configured outbox. Reads only the outbox folders, so it works while
    /// the database is down.
    Status,
    /// Replays every pending write into its backend now; exits 1 if the
    /// backend is still unavailable and writes are left.
    Drain,
}

/// The configured outbox folders, each once, with the concerns using it.
fn folders(config: &Config) -> Result<BTreeMap<PathBuf, Vec<Concern>>> {
    let mut out: BTreeMap<PathBuf, Vec<Concern>> = BTreeMap::new();
    for concern in [Concern::Logs, Concern::Metrics] {
        let bc = config.backend(concern);
        if let Some(dir) = bc.outbox_path().map_err(|e| bc.error(e))? {
            out.entry(dir).or_default().push(concern);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "outbox",
            format!(
                "{} configures no outbox; add `outbox: {{ path: ./outbox }}` to the logs or metrics mapping",
                config.source
            ),
        ));
    }
    Ok(out)
}

fn age(since: Timestamp) -> String {
    let secs = (Timestamp::now().as_micros() - since.as_micros()).max(0) / 1_000_000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub async fn status(config: &Config, out: &Out) -> Result<ExitCode> {
    let mut all = Vec::new();
    let mut text = String::new();
    for (dir, concerns) in folders(config)? {
        let status = Outbox::open(&dir)?.status().await?;
        text.push_str(&format!(
            "{} ({}): {} pending (logs {}, metrics {}){}{}\n",
            dir.display(),
            concerns
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            status.total(),
            status.pending.get("logs").copied().unwrap_or(0),
            status.pending.get("metrics").copied().unwrap_or(0),
            status
                .oldest
                .map(|t| format!(", oldest deferred {} ago", age(t)))
                .unwrap_or_default(),
            if status.rejected > 0 {
                format!(
                    "; {} rejected for good, kept in rejected.ndjson",
                    status.rejected
                )
            } else {
                String::new()
            }
        ));
        all.push(status);
    }
    out.result(&all, || text.trim_end().to_string())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn drain(storage: &Storage, out: &Out) -> Result<ExitCode> {
    folders(storage.config())?;
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let mut text = String::new();
    let mut left = 0;
    for outbox in storage.outboxes() {
        // The background drain that opening started may have done part of
        // the work already: report what this process drained in all.
        let now: DrainReport = outbox.drain().await?;
        let r = DrainReport {
            drained: outbox.counters().drained(),
            rejected: outbox.counters().rejected(),
            left: now.left,
        };
        left += r.left;
        text.push_str(&format!(
            "{}: {} stored, {} rejected, {} left\n",
            outbox.path().display(),
            r.drained,
            r.rejected,
            r.left
        ));
        reports.push(json!({"path": outbox.path(), "report": r}));
    }
    out.result(&reports, || text.trim_end().to_string())?;
    if left > 0 {
        out.note(&format!(
            "{left} writes are still in the outbox: the backend is unavailable; run it again later"
        ));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
