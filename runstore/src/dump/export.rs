//! Writing a dump, or only hashing what it would hold.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::files::{Ndjson, artifact_parts, io, joined};
use super::{DUMP_FORMAT, DumpCounts, DumpReport, ExportOptions, FileDigest, Step};
use crate::Concern;
use crate::{
    ArtifactInfo, ArtifactQuery, Error, Items, LogRepositoryExt, MetricQuery, PatternQuery, Result,
    RunQuery, RunWithEvents, Storage, WorkflowQuery,
};

const PAGE: usize = 500;

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

/// Writes every record of `storage` to the new or empty folder `dir` as a
/// dump (see the [module](super) documentation), `manifest.json` last.
pub async fn export(storage: &Storage, dir: &Path, options: ExportOptions) -> Result<DumpReport> {
    prepare_out_dir(dir).await?;
    tokio::fs::create_dir_all(dir.join("blobs"))
        .await
        .map_err(io(format!("creating {}", dir.join("blobs").display())))?;
    let mut options = options;
    let report = write_all(storage, Some(dir), &mut options).await?;
    // Written last, through a temp file: a dump with a manifest is whole.
    let manifest = json!({"format": DUMP_FORMAT, "counts": report.counts, "files": report.files});
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
    crate::fsutil::write_durably(&dir.join("manifest.json"), (text + "\n").as_bytes()).await?;
    let quarantine = match options.quarantine.take() {
        Some(q) => q.close()?,
        None => None,
    };
    Ok(DumpReport {
        quarantine,
        ..report
    })
}

/// The counts and file digests an export of `concerns` would write now,
/// computed without writing anything: two stores holding the same records
/// give the same digests, whatever their backends. Artifacts count by the
/// SHA-256 their store lists, their bytes are not read.
pub async fn content_digest(storage: &Storage, concerns: &[Concern]) -> Result<DumpReport> {
    let mut options = ExportOptions::default().concerns(concerns);
    write_all(storage, None, &mut options).await
}

/// Writes (or, without a folder, hashes) the five NDJSON files and the
/// blobs.
async fn write_all(
    storage: &Storage,
    dir: Option<&Path>,
    options: &mut ExportOptions,
) -> Result<DumpReport> {
    let wanted = |c: Concern| options.concerns.as_ref().is_none_or(|cs| cs.contains(&c));
    let (want_workflows, want_logs, want_metrics, want_artifacts) = (
        wanted(Concern::Workflows),
        wanted(Concern::Logs),
        wanted(Concern::Metrics),
        wanted(Concern::Artifacts),
    );
    let progress = options.progress.clone();
    let progress = progress.as_ref();
    let mut counts = DumpCounts::default();
    let mut files = BTreeMap::new();

    // Workflows by (id, version), so parents come before their children.
    let (n, d) = write_listing(dir, "workflows.ndjson", progress, want_workflows, |c| {
        storage
            .workflows
            .list(WorkflowQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;
    counts.workflows = n;
    files.insert("workflows.ndjson".to_string(), d);

    // Runs with their events embedded.
    let mut file = Ndjson::create(dir, "runs.ndjson").await?;
    let mut step = Step::start(progress, "runs");
    let mut all = Items::default();
    let query = RunQuery::default().with_limit(PAGE);
    while want_logs
        && let Some(run) = all
            .next(|c| storage.logs.query_runs(query.clone().with_cursor(c)))
            .await?
    {
        let events = match (
            storage.logs.all_events(&run.id).await,
            options.quarantine.as_mut(),
        ) {
            (Ok(events), _) => events,
            (Err(e), Some(q)) if e.kind() == crate::ErrorKind::Corrupt => {
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
        counts.events += events.len() as u64;
        file.line(&RunWithEvents { run, events }).await?;
        step.inc(1);
    }
    counts.runs = step.finish();
    files.insert("runs.ndjson".to_string(), file.close().await?);

    let (n, d) = write_listing(dir, "metrics.ndjson", progress, want_metrics, |c| {
        storage
            .metrics
            .list(MetricQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;
    counts.metrics = n;
    files.insert("metrics.ndjson".to_string(), d);
    let (n, d) = write_listing(dir, "patterns.ndjson", progress, want_metrics, |c| {
        storage
            .metrics
            .list_patterns(PatternQuery::default().with_limit(PAGE).with_cursor(c))
    })
    .await?;
    counts.patterns = n;
    files.insert("patterns.ndjson".to_string(), d);

    let mut file = Ndjson::create(dir, "artifacts.ndjson").await?;
    let mut step = Step::start(progress, "artifacts");
    let mut all = Items::default();
    let query = ArtifactQuery::default().with_limit(PAGE);
    while want_artifacts
        && let Some(info) = all
            .next(|c| storage.artifacts.list(query.clone().with_cursor(c)))
            .await?
    {
        if let Some(dir) = dir {
            let target = joined(dir, &artifact_parts(DUMP_FORMAT, &info));
            // Same hash, same bytes: written once however many artifacts
            // share them.
            if !tokio::fs::try_exists(&target).await.unwrap_or(false) {
                let tmp = target.with_extension("partial");
                match (
                    copy_artifact(storage, &info, &tmp, &target).await,
                    options.quarantine.as_mut(),
                ) {
                    (Ok(()), _) => {}
                    (Err(e), Some(q)) if e.kind() == crate::ErrorKind::Corrupt => {
                        let _ = tokio::fs::remove_file(&tmp).await;
                        let key = info.key.to_string();
                        q.add("artifacts", &key, "the source store", &e.to_string(), true)?;
                        continue;
                    }
                    (Err(e), _) => return Err(e),
                }
            }
        }
        counts.artifact_bytes += info.size;
        file.line(&info).await?;
        step.inc(1);
    }
    counts.artifacts = step.finish();
    files.insert("artifacts.ndjson".to_string(), file.close().await?);

    Ok(DumpReport {
        counts,
        files,
        quarantine: None,
    })
}

/// Writes every item of a listing (none unless `wanted`) to the NDJSON
/// file `name`; returns how many and the file's digest.
async fn write_listing<T, F, Fut>(
    dir: Option<&Path>,
    name: &'static str,
    progress: Option<&std::sync::Arc<dyn crate::migrate::MigrationProgress>>,
    wanted: bool,
    mut fetch: F,
) -> Result<(u64, FileDigest)>
where
    T: Serialize,
    F: FnMut(Option<crate::Cursor>) -> Fut,
    Fut: std::future::Future<Output = Result<crate::Page<T>>>,
{
    let mut file = Ndjson::create(dir, name).await?;
    let mut step = Step::start(progress, name.trim_end_matches(".ndjson"));
    let mut all = Items::default();
    while wanted && let Some(item) = all.next(&mut fetch).await? {
        file.line(&item).await?;
        step.inc(1);
    }
    let digest = file.close().await?;
    Ok((step.finish(), digest))
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
