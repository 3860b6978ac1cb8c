//! `runstore-benches`: runs every workload on every backend beside the raw
//! library underneath, prints one table and saves it (with a chart) under
//! `docs/`. See the crate README for the options.

use std::path::{Path, PathBuf};

use runstore_benches::artifacts;
use runstore_benches::chart;
use runstore_benches::machine::Machine;
use runstore_benches::report;
use runstore_benches::scale::Scale;
use runstore_benches::stores::Backend;
use runstore_benches::workloads::{self, Plan, WORKLOADS};
use runstore_file::Durability;

const USAGE: &str =
    "usage: runstore-benches [--scale tiny|quick|full] [--backends memory,file,sqlite,postgres]
                        [--only appends,imports,queries,summaries,artifacts,migration,prune,outbox]
                        [--migrate-runs N] [--out DIR | --no-save] [--scratch DIR] [--quiet]";

struct Args {
    scale: Scale,
    /// Workloads to run; `None`: all of them.
    only: Option<Vec<String>>,
    /// Overrides the scale's runs per migration hop.
    migrate_runs: Option<usize>,
    backends: Vec<Backend>,
    out: Option<PathBuf>,
    scratch: Option<PathBuf>,
    verbose: bool,
}

fn parse_backends(list: &str) -> Result<Vec<Backend>, String> {
    list.split(',')
        .map(|b| match b.trim() {
            "memory" => Ok(Backend::Memory),
            "file" => Ok(Backend::File(Durability::Fsync)),
            "sqlite" => Ok(Backend::Sqlite { full: false }),
            "postgres" => Ok(Backend::Postgres),
            "s3" => Ok(Backend::S3),
            other => Err(format!(
                "unknown backend {other:?} (memory, file, sqlite, postgres, s3)"
            )),
        })
        .collect()
}

fn parse_workloads(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(|w| {
            let w = w.trim();
            if WORKLOADS.contains(&w) {
                Ok(w.to_string())
            } else {
                Err(format!(
                    "unknown workload {w:?} (one of {})",
                    WORKLOADS.join(", ")
                ))
            }
        })
        .collect()
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs");
    let mut args = Args {
        scale: Scale::Quick,
        only: None,
        migrate_runs: None,
        backends: parse_backends("memory,file,sqlite,postgres,s3")?,
        out: Some(docs),
        scratch: None,
        verbose: true,
    };
    let mut out_given = false;
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--scale" => args.scale = value()?.parse()?,
            "--backends" => args.backends = parse_backends(&value()?)?,
            "--only" => args.only = Some(parse_workloads(&value()?)?),
            "--migrate-runs" => {
                let v = value()?;
                let n = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--migrate-runs needs a positive number, got {v:?}"))?;
                args.migrate_runs = Some(n);
            }
            "--out" => {
                args.out = Some(PathBuf::from(value()?));
                out_given = true;
            }
            "--no-save" => args.out = None,
            "--scratch" => args.scratch = Some(PathBuf::from(value()?)),
            "--quiet" => args.verbose = false,
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    // A partial run must not replace the published full table.
    if args.only.is_some() && !out_given {
        args.out = None;
    }
    Ok(args)
}

/// The artifact child: `--artifact-child BACKEND OP SIZE DIR [URL SCHEMA]`.
async fn child(rest: Vec<String>) -> Result<(), String> {
    let [backend, op, size, dir, pg @ ..] = rest.as_slice() else {
        return Err("--artifact-child BACKEND OP SIZE DIR [URL SCHEMA]".into());
    };
    let backend = artifacts::parse_backend(backend).ok_or("unknown backend")?;
    let size: u64 = size.parse().map_err(|e| format!("size: {e}"))?;
    let pg = runstore_benches::child::pg_args(pg);
    artifacts::child_main(backend, op, size, Path::new(dir), pg)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let child_result = match argv.first().map(String::as_str) {
        Some("--artifact-child") => Some(child(argv[1..].to_vec()).await),
        Some("--prune-child") => Some(
            runstore_benches::prune::child_main(&argv[1..])
                .await
                .map_err(|e| e.to_string()),
        ),
        Some("--open-child") => Some(
            runstore_benches::open_root::child_main(&argv[1..])
                .await
                .map_err(|e| e.to_string()),
        ),
        Some("--seed-child") => Some(
            runstore_benches::migration::seed_child_main(&argv[1..])
                .await
                .map_err(|e| e.to_string()),
        ),
        Some("--raw-child") => Some(
            runstore_benches::migration::raw_child_main(&argv[1..])
                .await
                .map_err(|e| e.to_string()),
        ),
        Some("--migrate-child") => Some(
            runstore_benches::migration::child_main(&argv[1..])
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    if let Some(result) = child_result {
        if let Err(e) = result {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse(argv.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("runstore-benches: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> runstore_benches::BenchResult<()> {
    let machine = Machine::detect();
    let started = std::time::Instant::now();
    let date = jiff_now();
    let scratch = workloads::scratch_in(args.scratch.as_deref())?;
    let mut sizes = args.scale.sizes();
    if let Some(n) = args.migrate_runs {
        sizes.migrate_runs = n;
    }
    let plan = Plan {
        workloads: args
            .only
            .clone()
            .unwrap_or_else(|| WORKLOADS.iter().map(ToString::to_string).collect()),
        sizes,
        backends: args.backends.clone(),
        exe: std::env::current_exe()?,
        scratch: scratch.path().to_path_buf(),
        verbose: args.verbose,
    };
    eprintln!(
        "runstore-benches: scale {:?} on {}",
        args.scale,
        machine.describe()
    );
    let (rows, notes) = workloads::run_all(&plan).await;
    let elapsed = started.elapsed().as_secs_f64();
    let header = format!(
        "runstore benchmarks, scale {:?}, {date}, {:.0} s\nmachine: {}",
        args.scale,
        elapsed,
        machine.describe(),
    );
    println!("{header}\n\n{}", report::text_table(&rows, &notes));
    if let Some(out) = args.out {
        std::fs::create_dir_all(&out)?;
        let md = format!(
            "# runstore benchmarks\n\nScale `{:?}`, run on {date} in {elapsed:.0} s.\n\nMachine: {}.\n\n\
             Made by `cargo run --release -p runstore-benches -- --scale {}`. Each figure is the \
             median (min-max) over repetitions; the raw figure is the library under the backend doing \
             the same work in the same run; the ratio is backend / raw (for latencies in ms, lower is better). \
             See benches/README.md for what each workload does.\n\n![chart](benchmarks.svg)\n\n{}",
            args.scale,
            machine.describe(),
            format!("{:?}", args.scale).to_lowercase(),
            report::markdown_table(&rows, &notes)
        );
        std::fs::write(out.join("benchmarks.md"), md)?;
        chart::draw(
            &rows,
            &format!("runstore vs raw, scale {:?}, {date}", args.scale),
            &out.join("benchmarks.svg"),
        )?;
        eprintln!(
            "saved {} and benchmarks.svg",
            out.join("benchmarks.md").display()
        );
    }
    Ok(())
}

/// Today's date and time in UTC, to the minute.
fn jiff_now() -> String {
    let t = runstore_core::Timestamp::now();
    let s = t.to_string();
    // RFC 3339 text; keep date, hours and minutes.
    s.get(..16)
        .map_or(s.clone(), |p| format!("{} UTC", p.replace('T', " ")))
}
