//! `runstore`: the command line of runstore. See `cli/README.md`.

mod args;
mod artifacts;
mod backend_ops;
mod backup;
mod check;
mod coordination;
mod csv_export;
mod demo;
mod dump;
mod init;
mod lifecycle;
mod metrics;
mod migration;
mod outbox;
mod output;
mod paging;
mod progress;
mod references;
mod runs;
mod serve;
mod stats;
mod workflows;
mod writes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runstore::{Config, Error, Result, Storage};

use crate::output::Out;

/// Stores and inspects workflow definitions, runs, metrics and artifacts on
/// the backends a YAML file chooses.
#[derive(Debug, Parser)]
#[command(name = "runstore", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: $RUNSTORE_CONFIG, else the embedded
    /// default: files and SQLite under ./runstore-data).
    #[arg(long, global = true, env = "RUNSTORE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout (errors too, as
    /// {"error":{"kind":…,"message":…}}).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the configured stores (folders, databases, schemas) and shows them.
    Init,
    /// Counts the records of each concern.
    Stats,
    /// Checks the integrity of every store: torn or corrupt records, artifact
    /// hashes, SQLite integrity_check, schema versions. Exits 1 on problems.
    Check {
        /// Let the file backend repair what it can (torn last lines).
        #[arg(long)]
        repair: bool,
    },
    /// Workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Runs and their events.
    #[command(subcommand)]
    Run(RunCmd),
    /// Events of a run.
    #[command(subcommand)]
    Event(EventCmd),
    /// Detected patterns.
    #[command(subcommand)]
    Pattern(PatternCmd),
    /// Artifacts and bundles.
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// Metrics summaries.
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// Backs up every concern into a new timestamped set (SQLite databases
    /// by online backup, other stores as a logical dump) with a manifest of
    /// counts and digests; never overwrites.
    Backup {
        /// The folder the set is created in.
        #[arg(long, value_name = "DIR", default_value = "runstore-backups")]
        to: PathBuf,
    },
    /// Restores a set written by `backup` into the configured stores,
    /// keeping what it replaces (`.before-restore.<time>`) and checking
    /// counts and digests afterwards. Run it again to finish one a crash
    /// interrupted.
    Restore {
        /// The set's folder (`runstore-backups/runstore-backup-<time>`).
        set: PathBuf,
    },
    /// Writes a backend-neutral NDJSON dump of everything (see README).
    Export {
        /// The folder to write; created if absent, must be empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// `ndjson`: the dump `import` reads (default); `csv`: runs,
        /// events and metrics as CSV files for spreadsheets.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        /// Leave out what cannot be read (a run whose events fail to read,
        /// an artifact that fails its hash), listing it in a quarantine
        /// report; strict (stop at the first) without.
        #[arg(long)]
        skip_corrupt: bool,
        /// Where the quarantine report goes (with --skip-corrupt); default
        /// `runstore-quarantine-<time>.ndjson` here.
        #[arg(long, value_name = "FILE", requires = "skip_corrupt")]
        quarantine: Option<PathBuf>,
    },
    /// Loads a dump written by `export`; importing it twice changes nothing.
    Import {
        /// The dump folder.
        dir: PathBuf,
        /// Import what can be read: unreadable records go to a quarantine
        /// report and are skipped, holes in a run's event numbering become
        /// `runstore.lost` tombstones. Strict (stop at the first) without.
        #[arg(long)]
        skip_corrupt: bool,
        /// Where the quarantine report goes (with --skip-corrupt); default
        /// `runstore-quarantine-<time>.ndjson` here.
        #[arg(long, value_name = "FILE", requires = "skip_corrupt")]
        quarantine: Option<PathBuf>,
    },
    /// Copies everything from the stores of one configuration to those of
    /// another (idempotent, resumable), then verifies both sides. Exits 1
    /// when not complete (conflicts, differences, or work left in a dry run).
    /// The global --config is not used.
    Migrate {
        /// The source configuration file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The destination configuration file.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Say what would be copied and which conflicts exist; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// A record the destination holds with other content: list it and go
        /// on (report), or stop with an error (fail).
        #[arg(long, value_enum, value_name = "POLICY", default_value = "report")]
        on_conflict: migration::ConflictPolicy,
        /// Records read per page and written per batch (1 to 10000).
        #[arg(long, value_name = "N", default_value = "500", value_parser = paging::parse_page_size)]
        batch_size: usize,
        /// Batches of runs written at once (1 to 8): while one is written,
        /// the next is looked up and prepared, and a destination with a pool
        /// of connections writes both. Runs go one batch at a time when the
        /// check is made while copying (without --deep).
        #[arg(long, value_name = "N", default_value = "2", value_parser = migration::parse_writers)]
        writers: usize,
        /// Verify with a whole comparison of both sides at the end, artifact
        /// bytes re-read and hashed. Without it, each batch is read back from
        /// the destination as it is written and compared with the source
        /// records in hand.
        #[arg(long)]
        deep: bool,
        /// Copy what can be read: a run whose events cannot be read and an
        /// artifact that fails its hash go to a quarantine report and are
        /// skipped, holes in a run's event numbering become `runstore.lost`
        /// tombstones. Strict (stop at the first) without.
        #[arg(long)]
        skip_corrupt: bool,
        /// Where the quarantine report goes (with --skip-corrupt); default
        /// `runstore-quarantine-<time>.ndjson` here.
        #[arg(long, value_name = "FILE", requires = "skip_corrupt")]
        quarantine: Option<PathBuf>,
        /// A pass over what changed since TIME (the `next_since` the last
        /// pass printed; RFC 3339, a date, or an age like `2h`): runs started
        /// or ended since then or still unfinished, metrics, patterns and
        /// artifacts since then. The verification covers the same.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Keep the destination's secondary indexes while copying, so that
        /// its readers stay fast. Without it, a destination that can (SQLite)
        /// drops them for a copy that brings more runs than it holds and
        /// builds each once at the end, which is faster.
        #[arg(long)]
        keep_indexes: bool,
    },
    /// Serves the HTTP API (`/v1`, described at `/v1/openapi.json`) and a web
    /// page of runs on the configured storage until interrupted. With
    /// RUNSTORE_API_TOKEN set, writes (and reads, unless --open-reads) need
    /// `Authorization: Bearer <token>`; without it only a loopback address
    /// is served.
    Serve {
        /// The address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Reads need no token even when one is set.
        #[arg(long)]
        open_reads: bool,
        /// Largest artifact upload in bytes (default 1 GiB).
        #[arg(long, value_name = "BYTES")]
        max_upload: Option<u64>,
    },
    /// Rebuilds the configured stores from NDJSON: a dump folder (`export`,
    /// or a backup set's `dump`) or a file root's journals. A SQLite
    /// database that fails its integrity check is moved aside first
    /// (`<name>.corrupted.<time>`).
    Recover {
        /// The dump folder or file root to read.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Copy what can be read; unreadable records go to a quarantine
        /// report (see `migrate --skip-corrupt`).
        #[arg(long)]
        skip_corrupt: bool,
        /// Where the quarantine report goes (with --skip-corrupt).
        #[arg(long, value_name = "FILE", requires = "skip_corrupt")]
        quarantine: Option<PathBuf>,
    },
    /// Compares the stores of two configurations record by record (counts
    /// and content hashes per concern). Exits 1 when they differ. The global
    /// --config is not used.
    Verify {
        /// One side (reported as `a`, the source).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The other side (reported as `b`, the destination).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Re-read and hash every artifact's bytes on both sides.
        #[arg(long)]
        deep: bool,
        /// Compare only what changed since TIME (as `migrate --since`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Does what an application does: stores a workflow and a second version,
    /// runs it several times with events, metrics and artifacts, bundles one
    /// run, queries recent runs and prints a summary.
    Demo {
        /// How many runs to make.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Applies the retention policy: prunes (or archives then prunes) the
    /// finished runs it lets go, with a report per rule.
    Prune(lifecycle::PruneArgs),
    /// Leases between workers: list, acquire, release.
    #[command(subcommand)]
    Lease(coordination::LeaseCmd),
    /// The delivery ledger: record an id, forget old ones.
    #[command(subcommand)]
    Delivery(coordination::DeliveryCmd),
    /// The local outboxes of logs and metrics: status, drain.
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// The NDJSON dump (every concern; what `import` reads).
    Ndjson,
    /// `runs.csv`, `events.csv`, `metrics.csv` (RFC 4180, header row).
    Csv,
}

#[derive(Debug, Subcommand)]
enum WorkflowCmd {
    /// Stores a definition from a YAML or JSON file (see README for its shape).
    Put {
        /// The definition file (`.json` is read as JSON, anything else as YAML).
        file: PathBuf,
    },
    /// Shows one version (the latest without --version).
    Get {
        /// The workflow id.
        id: String,
        /// The version.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Lists every definition, or every version of one workflow.
    List {
        /// Only this workflow.
        id: Option<String>,
    },
    /// Deletes one version (needs --yes).
    Delete(lifecycle::WorkflowDeleteArgs),
}

#[derive(Debug, Subcommand)]
enum RunCmd {
    /// Shows a run and its events (all of them, or of one kind, or the
    /// last N); by id, or by workflow and external key.
    Show {
        /// The run id (or its first characters).
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        id: Option<String>,
        /// The run's external key (with --workflow).
        #[arg(long, value_name = "KEY", requires = "workflow")]
        key: Option<String>,
        /// The workflow of --key.
        #[arg(long, value_name = "ID", requires = "key")]
        workflow: Option<String>,
        /// Only events of this kind.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only the last N events (still shown in order).
        #[arg(long, value_name = "N", value_parser = paging::parse_page_size)]
        last: Option<usize>,
    },
    /// Creates a run (pending); the same id again with the same content
    /// is a no-op.
    Create {
        /// The workflow id.
        workflow: String,
        /// The workflow version.
        version: u32,
        /// What started it (default `manual`).
        #[arg(long)]
        trigger: Option<String>,
        /// An attribute KEY=VALUE (VALUE as JSON when it parses); repeat.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attributes: Vec<String>,
        /// The run id (default: a new time-ordered id).
        #[arg(long)]
        id: Option<String>,
        /// An external key, unique per workflow: if a run of the workflow
        /// has it, that run is shown and nothing is created.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Moves a run to `running`.
    Start {
        /// The run id.
        id: String,
    },
    /// Finishes a run now: succeeded, failed or cancelled.
    Finish {
        /// The run id.
        id: String,
        /// The terminal status.
        status: String,
        /// A summary KEY=VALUE (VALUE as JSON when it parses); repeat.
        #[arg(long = "summary", value_name = "KEY=VALUE")]
        summaries: Vec<String>,
    },
    /// Lists runs, newest first (or oldest first).
    List {
        /// Only this workflow.
        #[arg(long, value_name = "ID")]
        workflow: Option<String>,
        /// Only these statuses (repeat or separate with commas).
        #[arg(long, value_name = "S", value_delimiter = ',')]
        status: Vec<String>,
        /// Only this workflow version.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Only runs with this trigger.
        #[arg(long, value_name = "T")]
        trigger: Option<String>,
        /// Only runs started at or after T: RFC 3339, a date (2026-11-30,
        /// midnight UTC), or an age (90s, 15m, 12h, 2d ago).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only runs started before T (same forms as --since).
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// Continue after the cursor a previous listing printed (in the
        /// same order).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// At most this many runs (1 to 10,000).
        #[arg(long, value_name = "N", default_value = "100", value_parser = paging::parse_page_size)]
        limit: usize,
        /// Oldest start first, instead of newest first.
        #[arg(long)]
        oldest_first: bool,
    },
    /// Deletes runs with their events, metrics and artifacts (needs --yes).
    Delete(lifecycle::RunDeleteArgs),
}

#[derive(Debug, Subcommand)]
enum ArtifactCmd {
    /// Stores FILE as the artifact RUN/PHASE/PATH.
    Put {
        /// The run id.
        run: String,
        /// The phase.
        phase: String,
        /// The logical path, `/`-separated.
        path: String,
        /// The file to store.
        file: PathBuf,
        /// Content type (default application/octet-stream).
        #[arg(long = "type", value_name = "T")]
        content_type: Option<String>,
        /// Replace the stored artifact only if its SHA-256 is this.
        #[arg(long, value_name = "SHA")]
        overwrite_token: Option<String>,
    },
    /// Reads the artifact RUN/PHASE/PATH (to stdout, or to --out).
    Get {
        /// The run id.
        run: String,
        /// The phase.
        phase: String,
        /// The logical path.
        path: String,
        /// Write the bytes to this file (required with --json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Lists a run's artifacts.
    List {
        /// The run id.
        run: String,
        /// Only this phase.
        #[arg(long, value_name = "P")]
        phase: Option<String>,
    },
    /// Zips MEMBERs of RUN into the artifact PATH. PATH and each MEMBER are
    /// written `phase/path` (the first segment is the phase).
    Bundle {
        /// The run id.
        run: String,
        /// Where the bundle goes, as `phase/path`.
        path: String,
        /// The artifacts to bundle, each as `phase/path`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Deletes one artifact, or every artifact of a run with --all (needs --yes).
    Delete(lifecycle::ArtifactDeleteArgs),
}

#[derive(Debug, Subcommand)]
enum EventCmd {
    /// Appends one event (--kind, --payload, --key) or, with --stdin, every
    /// NDJSON line of stdin ({"kind", "payload", "idempotency_key", "at"})
    /// in one batch.
    Append {
        /// The run id.
        run: String,
        /// The event's kind.
        #[arg(long)]
        kind: Option<String>,
        /// The payload, as JSON.
        #[arg(long)]
        payload: Option<String>,
        /// An idempotency key: appending it again stores nothing.
        #[arg(long)]
        key: Option<String>,
        /// Read NDJSON events from stdin.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PatternCmd {
    /// Lists detected patterns, newest first.
    List {
        /// Only this workflow's.
        workflow: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MetricsCmd {
    /// Records the metric of a finished run: status and duration from the
    /// run, named values and counters from flags.
    Record {
        /// The run id.
        run: String,
        /// The duration in milliseconds (default: the run's end minus its start).
        #[arg(long, value_name = "MS")]
        duration_ms: Option<f64>,
        /// A named value NAME=NUMBER; repeat.
        #[arg(long = "value", value_name = "NAME=N")]
        values: Vec<String>,
        /// A named counter NAME=INTEGER; repeat.
        #[arg(long = "counter", value_name = "NAME=N")]
        counters: Vec<String>,
    },
    /// The summary of a workflow, or of one version.
    Summary {
        /// The workflow id.
        workflow: String,
        /// Only this version.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Deletes the metrics of runs (needs --yes).
    Delete(lifecycle::MetricsDeleteArgs),
}

fn main() -> ExitCode {
    let json_flag = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, json_flag),
    };
    if let Some(e) = same_sides(&cli) {
        return usage_error(e, json_flag);
    }
    let out = Out::new(cli.json);
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&Error::io("starting the async runtime", e));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(code) => code,
        // The reader went away (`runstore run show X | head`): nothing more
        // to say to it, and no reason to fail.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::from(1)
        }
    }
}

/// Whether `e` is a write to a pipe whose reader has closed it.
fn closed_pipe(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Diagnostics on stderr when `RUNSTORE_LOG` names a level (`error`,
/// `warn`, `info`, `debug`, `trace`); silent otherwise.
fn init_tracing() {
    let Ok(level) = std::env::var("RUNSTORE_LOG") else {
        return;
    };
    let Ok(level) = level.trim().parse::<tracing::Level>() else {
        eprintln!(
            "RUNSTORE_LOG={level:?} is not a level (error, warn, info, debug, trace); ignored"
        );
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .try_init();
}

/// `migrate` or `verify` with --from and --to naming the same file: a usage
/// error (a store migrated onto itself proves nothing).
fn same_sides(cli: &Cli) -> Option<clap::Error> {
    let (Command::Migrate { from, to, .. } | Command::Verify { from, to, .. }) = &cli.command
    else {
        return None;
    };
    let same = match (std::fs::canonicalize(from), std::fs::canonicalize(to)) {
        (Ok(a), Ok(b)) => a == b,
        _ => from == to,
    };
    same.then(|| {
        use clap::CommandFactory;
        Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--from and --to name the same configuration file `{}`",
                from.display()
            ),
        )
    })
}

/// Help and version go to stdout with code 0; usage errors exit 2, as a
/// JSON object in --json mode.
fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if json {
        let message = e.render().to_string();
        let message = message.trim();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        let obj = serde_json::json!({"error": {"kind": "usage", "message": message}});
        println!("{obj}");
    } else {
        let _ = e.print();
    }
    ExitCode::from(2)
}

/// Reads the configuration named by --config / RUNSTORE_CONFIG, or the
/// embedded default.
fn load_config(cli_config: Option<&PathBuf>) -> Result<Config> {
    match cli_config {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    }
}

async fn run(cli: Cli, out: &Out) -> Result<ExitCode> {
    match cli.command {
        // Both sides come from their own files: --config is not read, so a
        // broken $RUNSTORE_CONFIG does not stop a migration.
        Command::Migrate {
            from,
            to,
            dry_run,
            on_conflict,
            batch_size,
            writers,
            deep,
            skip_corrupt,
            quarantine,
            since,
            keep_indexes,
        } => {
            let args = migration::MigrateArgs {
                from,
                to,
                dry_run,
                on_conflict,
                batch_size,
                writers,
                deep,
                skip_corrupt,
                quarantine,
                since: since.map(|t| args::parse_time("since", &t)).transpose()?,
                keep_indexes,
            };
            migration::migrate(&args, out).await
        }
        Command::Verify {
            from,
            to,
            deep,
            since,
        } => {
            let since = since.map(|t| args::parse_time("since", &t)).transpose()?;
            migration::verify(&from, &to, deep, since, out).await
        }
        // Reads only the outbox folders: works while the database is down.
        Command::Outbox(outbox::OutboxCmd::Status) => {
            let config = load_config(cli.config.as_ref())?;
            outbox::status(&config, out).await
        }
        Command::Restore { set } => {
            let config = load_config(cli.config.as_ref())?;
            backup::restore(&config, &set, out).await
        }
        Command::Recover {
            from,
            skip_corrupt,
            quarantine,
        } => {
            let config = load_config(cli.config.as_ref())?;
            let q = runstore::dump::Quarantine::for_options(skip_corrupt, quarantine);
            backup::recover(&config, &from, q, out).await
        }
        command => {
            let config = load_config(cli.config.as_ref())?;
            let storage = if writes(&command) {
                Storage::open(&config).await?
            } else {
                // A read in a folder without a store must say so, not
                // create an empty store and answer "no runs".
                Storage::open_existing(&config).await.map_err(|e| {
                    if e.kind() == runstore::ErrorKind::NotFound {
                        runstore::Error::not_found(format!(
                            "{e}; `runstore init` creates a store, or point --config (RUNSTORE_CONFIG) at yours"
                        ))
                    } else {
                        e
                    }
                })?
            };
            dispatch(command, &storage, out).await
        }
    }
}

/// Whether a command may create the store it opens (`init` and the
/// commands that write); reads need an existing one.
fn writes(command: &Command) -> bool {
    matches!(
        command,
        Command::Init
            | Command::Demo { .. }
            | Command::Import { .. }
            | Command::Workflow(WorkflowCmd::Put { .. })
            | Command::Artifact(ArtifactCmd::Put { .. } | ArtifactCmd::Bundle { .. })
            | Command::Run(RunCmd::Create { .. } | RunCmd::Start { .. } | RunCmd::Finish { .. })
            | Command::Event(EventCmd::Append { .. })
            | Command::Metrics(MetricsCmd::Record { .. })
            | Command::Lease(
                coordination::LeaseCmd::Acquire(_) | coordination::LeaseCmd::Release { .. }
            )
            | Command::Delivery(coordination::DeliveryCmd::Record { .. })
            | Command::Outbox(_)
            | Command::Serve { .. }
    )
}

async fn dispatch(command: Command, storage: &Storage, out: &Out) -> Result<ExitCode> {
    match command {
        Command::Prune(args) => lifecycle::prune_cmd(storage, args, out.json(), out).await,
        Command::Workflow(WorkflowCmd::Delete(args)) => {
            lifecycle::workflow_delete(storage, args, out).await
        }
        Command::Run(RunCmd::Delete(args)) => lifecycle::run_delete(storage, args, out).await,
        Command::Artifact(ArtifactCmd::Delete(args)) => {
            lifecycle::artifact_delete(storage, args, out).await
        }
        Command::Metrics(MetricsCmd::Delete(args)) => {
            lifecycle::metrics_delete(storage, args, out).await
        }
        Command::Init => init::init(storage, out).await,
        Command::Stats => stats::stats(storage, out).await,
        Command::Check { repair } => check::check(storage, repair, out).await,
        Command::Workflow(WorkflowCmd::Put { file }) => {
            workflows::workflow_put(storage, &file, out).await
        }
        Command::Workflow(WorkflowCmd::Get { id, version }) => {
            workflows::workflow_get(storage, &id, version, out).await
        }
        Command::Workflow(WorkflowCmd::List { id }) => {
            workflows::workflow_list(storage, id.as_deref(), out).await
        }
        Command::Run(RunCmd::Show {
            id,
            key,
            workflow,
            kind,
            last,
        }) => {
            let which = match (id, key, workflow) {
                (Some(id), _, _) => runs::RunRef::Id(id),
                (None, Some(key), Some(workflow)) => runs::RunRef::Key { workflow, key },
                _ => {
                    return Err(Error::invalid(
                        "run",
                        "give a run id, or --workflow and --key",
                    ));
                }
            };
            runs::run_show(storage, which, kind, last, out).await
        }
        Command::Run(RunCmd::List {
            workflow,
            version,
            status,
            trigger,
            since,
            until,
            limit,
            cursor,
            oldest_first,
        }) => {
            let filter = runs::RunListArgs {
                workflow,
                version,
                status,
                trigger,
                since,
                until,
                limit,
                cursor,
                oldest_first,
            };
            runs::run_list(storage, filter, out).await
        }
        Command::Artifact(ArtifactCmd::Put {
            run,
            phase,
            path,
            file,
            content_type,
            overwrite_token,
        }) => {
            artifacts::artifact_put(
                storage,
                (&run, &phase, &path),
                &file,
                content_type,
                overwrite_token,
                out,
            )
            .await
        }
        Command::Artifact(ArtifactCmd::Get {
            run,
            phase,
            path,
            out: file,
        }) => artifacts::artifact_get(storage, (&run, &phase, &path), file.as_deref(), out).await,
        Command::Artifact(ArtifactCmd::List { run, phase }) => {
            artifacts::artifact_list(storage, &run, phase.as_deref(), out).await
        }
        Command::Artifact(ArtifactCmd::Bundle { run, path, members }) => {
            artifacts::artifact_bundle(storage, &run, &path, &members, out).await
        }
        Command::Run(RunCmd::Create {
            workflow,
            version,
            trigger,
            attributes,
            id,
            key,
        }) => {
            let run = writes::NewRunArgs {
                workflow,
                version,
                trigger,
                attributes,
                id,
                key,
            };
            writes::run_create(storage, run, out).await
        }
        Command::Run(RunCmd::Start { id }) => writes::run_start(storage, &id, out).await,
        Command::Run(RunCmd::Finish {
            id,
            status,
            summaries,
        }) => writes::run_finish(storage, &id, &status, &summaries, out).await,
        Command::Event(EventCmd::Append {
            run,
            kind,
            payload,
            key,
            stdin,
        }) => {
            let input = writes::EventInput {
                kind,
                payload,
                key,
                stdin,
            };
            writes::event_append(storage, &run, input, out).await
        }
        Command::Pattern(PatternCmd::List { workflow }) => {
            writes::pattern_list(storage, workflow.as_deref(), out).await
        }
        Command::Metrics(MetricsCmd::Record {
            run,
            duration_ms,
            values,
            counters,
        }) => writes::metrics_record(storage, &run, duration_ms, &values, &counters, out).await,
        Command::Metrics(MetricsCmd::Summary { workflow, version }) => {
            metrics::metrics_summary(storage, &workflow, version, out).await
        }
        Command::Backup { to } => backup::backup(storage, &to, out).await,
        Command::Export {
            out: dir,
            format: ExportFormat::Ndjson,
            skip_corrupt,
            quarantine,
        } => {
            let q = runstore::dump::Quarantine::for_options(skip_corrupt, quarantine);
            dump::export(storage, &dir, q, out).await
        }
        Command::Export {
            out: dir,
            format: ExportFormat::Csv,
            skip_corrupt: false,
            ..
        } => csv_export::export(storage, &dir, out).await,
        Command::Export { .. } => Err(Error::invalid(
            "skip-corrupt",
            "--skip-corrupt is for the NDJSON dump, not --format csv",
        )),
        Command::Import {
            dir,
            skip_corrupt,
            quarantine,
        } => dump::import(storage, &dir, skip_corrupt, quarantine, out).await,
        Command::Demo { runs } => demo::demo(storage, runs, out).await,
        Command::Serve {
            listen,
            open_reads,
            max_upload,
        } => serve::serve(storage, listen, open_reads, max_upload, out).await,
        Command::Lease(cmd) => coordination::lease(storage, cmd, out).await,
        Command::Outbox(outbox::OutboxCmd::Drain) => outbox::drain(storage, out).await,
        Command::Outbox(outbox::OutboxCmd::Status) => outbox::status(storage.config(), out).await,
        Command::Delivery(cmd) => coordination::delivery(storage, cmd, out).await,
        Command::Restore { .. }
        | Command::Recover { .. }
        | Command::Migrate { .. }
        | Command::Verify { .. } => Err(Error::backend(
            "restore, recover, migrate and verify are handled before opening",
            None,
        )),
    }
}
