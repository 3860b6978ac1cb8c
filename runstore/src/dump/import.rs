//! Loading a dump into a storage.

use std::path::Path;

use tokio::io::AsyncSeekExt;

use super::files::{
    Lines, artifact_parts, check_counts, check_digests, hash_file, io, joined, open_in_dump,
    read_manifest,
};
use super::{ImportOptions, ImportReport, Step};
use crate::Concern;
use crate::{
    ArtifactInfo, BulkOutcome, EncodedRun, Error, ExecutionMetric, Pattern, PutOptions, Result,
    Storage, WorkflowDefinition,
};

const RUN_BATCH: usize = 100;
const METRIC_BATCH: usize = 500;

fn add(total: &mut BulkOutcome, o: BulkOutcome) {
    total.inserted += o.inserted;
    total.unchanged += o.unchanged;
}

/// Loads the dump in `dir` into `storage`. Records already stored with the
/// same content count as unchanged, so importing twice changes nothing.
/// Before anything is written the dump's files are checked against its
/// manifest, and afterwards every record it counts must have been stored
/// (or, with a quarantine, stored or quarantined).
pub async fn import(storage: &Storage, dir: &Path, options: ImportOptions) -> Result<ImportReport> {
    let mut warnings = Vec::new();
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
    let mut q = options.quarantine;
    let progress = options.progress.as_ref();
    let wanted = |c: Concern| options.concerns.as_ref().is_none_or(|cs| cs.contains(&c));
    let open = |name: &'static str, c: Concern| async move {
        if wanted(c) {
            Lines::open(dir, name).await
        } else {
            Ok(Lines::none(dir, name))
        }
    };
    // Before anything is written: the files are the ones exported, and
    // hold what the manifest says. With --skip-corrupt a damaged dump is
    // what is being rescued: say so and go on.
    let checked = match check_counts(dir, &manifest.counts).await {
        Ok(()) => check_digests(dir, &manifest).await,
        Err(e) => Err(e),
    };
    match checked {
        Err(e) if q.is_some() && e.kind() != crate::ErrorKind::Unavailable => {
            warnings.push(format!("{e}; importing what can be read"));
        }
        other => other?,
    }

    let mut workflows = BulkOutcome::default();
    let mut lines = open("workflows.ndjson", Concern::Workflows).await?;
    let mut p = Step::start(progress, "workflows");
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
    let mut lines = open("runs.ndjson", Concern::Logs).await?;
    let mut p = Step::start(progress, "runs");
    let mut batch = Vec::with_capacity(RUN_BATCH);
    loop {
        // Payloads stay the text of the line: none is built as a value,
        // unless its run needs a repair.
        let next = lines.next_or_skip::<EncodedRun>(&mut q, "runs").await?;
        let done = next.is_none();
        if let Some(r) = next {
            match (q.as_mut(), r.validate()) {
                (Some(q), Err(_)) => {
                    let location = format!("runs.ndjson line {}", lines.number);
                    let key = r.run.id.to_string();
                    let (fixed, notes) = r.into_run()?.repaired(&location);
                    match fixed.validate() {
                        Ok(()) => {
                            for n in &notes {
                                q.add("runs", &key, &location, n, false)?;
                            }
                            batch.push(EncodedRun::from_run(fixed)?);
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
                storage
                    .logs
                    .import_runs_encoded(std::mem::take(&mut batch))
                    .await?,
            );
            p.inc(n);
        }
        if done {
            break;
        }
    }
    p.finish();

    let mut metrics = BulkOutcome::default();
    let mut lines = open("metrics.ndjson", Concern::Metrics).await?;
    let mut p = Step::start(progress, "metrics");
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
    let mut lines = open("patterns.ndjson", Concern::Metrics).await?;
    let mut p = Step::start(progress, "patterns");
    while let Some(pat) = lines.next_or_skip::<Pattern>(&mut q, "patterns").await? {
        if let (Some(q), Err(e)) = (q.as_mut(), pat.validate()) {
            let location = format!("patterns.ndjson line {}", lines.number);
            q.add("patterns", pat.id.as_str(), &location, &e.to_string(), true)?;
            continue;
        }
        let same = match storage.metrics.get_pattern(&pat.id).await {
            Ok(stored) => stored.same_content(&pat),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => false,
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
    let mut lines = open("artifacts.ndjson", Concern::Artifacts).await?;
    let mut p = Step::start(progress, "artifacts");
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
            (Err(e), Some(q)) if e.kind() != crate::ErrorKind::Unavailable => {
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
            Concern::Workflows,
            "workflow versions",
            done(&workflows, "workflows"),
            manifest.counts.workflows,
        ),
        (
            Concern::Logs,
            "runs",
            done(&runs, "runs"),
            manifest.counts.runs,
        ),
        (
            Concern::Metrics,
            "metrics",
            done(&metrics, "metrics"),
            manifest.counts.metrics,
        ),
        (
            Concern::Metrics,
            "patterns",
            done(&patterns, "patterns"),
            manifest.counts.patterns,
        ),
        (
            Concern::Artifacts,
            "artifacts",
            done(&artifacts, "artifacts"),
            manifest.counts.artifacts,
        ),
    ];
    if let Some((_, what, got, want)) = after
        .iter()
        .find(|(c, _, got, want)| wanted(*c) && got != want)
    {
        if q.is_some() {
            warnings.push(format!(
                "{got} {what} imported or quarantined, the manifest counts {want}"
            ));
        } else {
            return Err(Error::corrupt(
                dir.display().to_string(),
                format!(
                    "imported {got} {what}, the manifest counts {want}; the dump changed while it was imported"
                ),
            ));
        }
    }

    let quarantine = match q {
        Some(q) => q.close()?,
        None => None,
    };
    Ok(ImportReport {
        workflows,
        runs,
        metrics,
        patterns,
        artifacts,
        quarantine,
        warnings,
    })
}
