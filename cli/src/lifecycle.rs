//! `runstore prune` and the delete commands (`run delete`, `artifact
//! delete`, `workflow delete`, `metrics delete`): retention through the
//! library (`runstore::retention`). Every delete needs `--yes`, so a script
//! states what it means and a person is never surprised.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use runstore::retention::{PruneOptions, PruneReport, delete_workflow_version, prune};
use runstore::{ArtifactKey, Error, Result, RunId, Storage, Version, WorkflowId};
use serde::Serialize;

use crate::output::Out;
use crate::progress::Progress;

/// Arguments of `runstore prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Report what would be pruned (per rule) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// A policy file (`retention:` at the top, as in the configuration);
    /// default: the configuration's `retention:` section.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Copy each pruned run to the stores of this configuration, read it
    /// back, and only then delete it.
    #[arg(long, value_name = "CONFIG")]
    archive_to: Option<PathBuf>,
    /// With --archive-to: a run that cannot be read to be archived goes to
    /// a quarantine report and is kept (neither archived nor deleted)
    /// instead of stopping the prune.
    #[arg(long, requires = "archive_to")]
    skip_corrupt: bool,
    /// Where the quarantine report goes (with --skip-corrupt); default
    /// `runstore-quarantine-<time>.ndjson` here.
    #[arg(long, value_name = "FILE", requires = "skip_corrupt")]
    quarantine: Option<PathBuf>,
    /// Runs read and deleted per page (1 to 10000).
    #[arg(long, value_name = "N", default_value = "500", value_parser = crate::paging::parse_page_size)]
    batch_size: usize,
}

/// Arguments of `runstore run delete`.
#[derive(Debug, Args)]
pub struct RunDeleteArgs {
    /// The runs to delete, with their events, metrics and artifacts.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Required: says that the deletion is meant.
    #[arg(long, required = true)]
    yes: bool,
}

/// Arguments of `runstore metrics delete`.
#[derive(Debug, Args)]
pub struct MetricsDeleteArgs {
    /// The runs whose metrics are deleted.
    #[arg(required = true)]
    runs: Vec<String>,
    /// Required: says that the deletion is meant.
    #[arg(long, required = true)]
    yes: bool,
}

/// Arguments of `runstore artifact delete`.
#[derive(Debug, Args)]
pub struct ArtifactDeleteArgs {
    /// The run id.
    run: String,
    /// The phase (omit with --all).
    #[arg(required_unless_present = "all")]
    phase: Option<String>,
    /// The logical path (omit with --all).
    #[arg(required_unless_present = "all")]
    path: Option<String>,
    /// Delete every artifact of the run, in one call.
    #[arg(long, conflicts_with_all = ["phase", "path"])]
    all: bool,
    /// Required: says that the deletion is meant.
    #[arg(long, required = true)]
    yes: bool,
}

/// Arguments of `runstore workflow delete`.
#[derive(Debug, Args)]
pub struct WorkflowDeleteArgs {
    /// The workflow id.
    id: String,
    /// The version to delete.
    #[arg(long, value_name = "N")]
    version: u32,
    /// Delete even while runs of that version exist (never while another
    /// version names it as parent).
    #[arg(long)]
    force: bool,
    /// Required: says that the deletion is meant.
    #[arg(long, required = true)]
    yes: bool,
}

/// `runstore prune`.
pub async fn prune_cmd(
    storage: &Storage,
    args: PruneArgs,
    json: bool,
    out: &Out,
) -> Result<ExitCode> {
    let policy = match &args.policy {
        Some(file) => runstore::config::policy_from_file(file)?,
        None => storage.config().retention.clone().ok_or_else(|| {
            Error::invalid(
                "policy",
                "no retention policy: give --policy FILE or add a retention: section to the configuration",
            )
        })?,
    };
    let mut options = PruneOptions::default()
        .dry_run(args.dry_run)
        .page_size(args.batch_size);
    let _archive;
    if let Some(config) = &args.archive_to {
        let dest = Storage::open_file(config).await?;
        options = options.archive_to(dest.stores());
        _archive = dest;
    }
    let q = runstore::dump::Quarantine::for_options(args.skip_corrupt, args.quarantine.clone());
    let q_path = q.as_ref().map(|q| q.path().display().to_string());
    if let Some(q) = q {
        options = options.quarantine(q);
    }
    let mut bar = Progress::start(
        if args.dry_run {
            "prune (dry run) examined"
        } else {
            "prune examined"
        },
        json,
    );
    let mut seen = 0;
    let report = prune(&storage.stores(), &policy, options, |r| {
        bar.inc(r.examined - seen);
        seen = r.examined;
    })
    .await?;
    bar.finish();
    out.result(&report, || {
        let mut text = table(&report);
        if report.quarantined > 0 {
            text.push_str(&format!(
                "{} runs kept: they could not be read to be archived; listed in {}\n",
                report.quarantined,
                q_path.as_deref().unwrap_or("the quarantine report")
            ));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The report as a table, one row per rule and a total.
fn table(report: &PruneReport) -> String {
    let mut s = format!(
        "{}{} runs examined\n{:<8} {:>8} {:>10} {:>8} {:>10} {:>12} {:>9}\n",
        if report.dry_run {
            "dry run: nothing changed; "
        } else {
            ""
        },
        report.examined,
        "rule",
        "runs",
        "events",
        "metrics",
        "artifacts",
        "bytes",
        "archived"
    );
    let row = |name: String, r: &runstore::retention::RuleReport| {
        format!(
            "{:<8} {:>8} {:>10} {:>8} {:>10} {:>12} {:>9}\n",
            name, r.runs, r.events, r.metrics, r.artifacts, r.bytes, r.archived
        )
    };
    for r in &report.rules {
        s.push_str(&row(format!("#{}", r.rule + 1), r));
    }
    s.push_str(&row("total".into(), &report.total()));
    if report.deliveries > 0 {
        s.push_str(&format!("{} delivery ids forgotten\n", report.deliveries));
    }
    s
}

/// What a delete command did.
#[derive(Serialize)]
struct DeleteOutput {
    deleted: Vec<String>,
    absent: Vec<String>,
}

fn delete_result(out: &Out, what: &str, d: DeleteOutput) -> Result<ExitCode> {
    out.result(&d, || {
        let mut s = String::new();
        for id in &d.deleted {
            s.push_str(&format!("deleted {what} {id}\n"));
        }
        for id in &d.absent {
            s.push_str(&format!("not found: {what} {id}\n"));
        }
        s
    })?;
    // Deleting what is not there is observable: exit 1, like NotFound.
    Ok(if d.absent.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_ids(ids: &[String]) -> Result<Vec<RunId>> {
    let ids: Vec<RunId> = ids.iter().map(RunId::new).collect::<Result<_>>()?;
    runstore::validate_delete_batch("run_ids", &ids)?;
    Ok(ids)
}

/// `runstore run delete`: artifacts, metrics, then the runs with their
/// events (the order of a prune).
pub async fn run_delete(storage: &Storage, args: RunDeleteArgs, out: &Out) -> Result<ExitCode> {
    let _ = args.yes;
    let ids = run_ids(&args.ids)?;
    let stores = storage.stores();
    for id in &ids {
        stores.artifacts.delete_run_artifacts(id).await?;
    }
    stores.metrics.delete_many(&ids).await?;
    let d = stores.logs.delete_runs(&ids).await?;
    delete_result(
        out,
        "run",
        DeleteOutput {
            deleted: d.deleted.iter().map(ToString::to_string).collect(),
            absent: d.absent.iter().map(ToString::to_string).collect(),
        },
    )
}

/// `runstore metrics delete`.
pub async fn metrics_delete(
    storage: &Storage,
    args: MetricsDeleteArgs,
    out: &Out,
) -> Result<ExitCode> {
    let _ = args.yes;
    let ids = run_ids(&args.runs)?;
    let d = storage.stores().metrics.delete_many(&ids).await?;
    delete_result(
        out,
        "metric of run",
        DeleteOutput {
            deleted: d.deleted.iter().map(ToString::to_string).collect(),
            absent: d.absent.iter().map(ToString::to_string).collect(),
        },
    )
}

/// `runstore artifact delete`.
pub async fn artifact_delete(
    storage: &Storage,
    args: ArtifactDeleteArgs,
    out: &Out,
) -> Result<ExitCode> {
    let _ = args.yes;
    let artifacts = storage.stores().artifacts;
    if args.all {
        let run = RunId::new(&args.run)?;
        let d = artifacts.delete_run_artifacts(&run).await?;
        #[derive(Serialize)]
        struct AllOut {
            run: String,
            artifacts: u64,
            bytes: u64,
        }
        let o = AllOut {
            run: run.to_string(),
            artifacts: d.count,
            bytes: d.bytes,
        };
        out.result(&o, || {
            format!(
                "deleted {} artifact(s), {} bytes, of run {}",
                o.artifacts, o.bytes, o.run
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let key = ArtifactKey::parse(
        &args.run,
        args.phase.as_deref().unwrap_or_default(),
        args.path.as_deref().unwrap_or_default(),
    )?;
    artifacts.delete(&key).await?;
    delete_result(
        out,
        "artifact",
        DeleteOutput {
            deleted: vec![key.to_string()],
            absent: Vec::new(),
        },
    )
}

/// `runstore workflow delete`: `Conflict` while runs of the version exist
/// (unless --force) or another version names it as parent.
pub async fn workflow_delete(
    storage: &Storage,
    args: WorkflowDeleteArgs,
    out: &Out,
) -> Result<ExitCode> {
    let _ = args.yes;
    let id = WorkflowId::new(&args.id)?;
    let version = Version::new(args.version)?;
    delete_workflow_version(&storage.stores(), &id, version, args.force).await?;
    delete_result(
        out,
        "workflow",
        DeleteOutput {
            deleted: vec![format!("{id} version {version}")],
            absent: Vec::new(),
        },
    )
}
