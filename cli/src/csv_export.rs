//! `runstore export --format csv`: runs, events and metrics as RFC 4180
//! CSV files with a header row (`runs.csv`, `events.csv`, `metrics.csv`),
//! for spreadsheets and tools that do not read NDJSON. Streamed page by
//! page; JSON fields (attributes, summaries, payloads, counters, values)
//! are one cell of compact JSON each. It is an export for reading, not a
//! backup: `import` reads the NDJSON dump only.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;

use runstore::{
    Error, EventQuery, MAX_PAGE_LIMIT, MetricQuery, Result, Run, RunQuery, Storage, Timestamp,
};
use serde_json::json;

use crate::output::Out;
use crate::paging::Items;
use crate::progress::Progress;

const PAGE: usize = 500;

type Writer = csv::Writer<BufWriter<File>>;

fn create(dir: &Path, name: &str, header: &[&str]) -> Result<Writer> {
    let path = dir.join(name);
    let file =
        File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(BufWriter::new(file));
    w.write_record(header).map_err(csv_err(name))?;
    Ok(w)
}

fn csv_err(name: &str) -> impl Fn(csv::Error) -> Error + '_ {
    move |e| Error::backend(format!("writing {name}"), Some(Box::new(e)))
}

/// Flushes and fsyncs a finished file.
fn finish(w: Writer, name: &str) -> Result<()> {
    let buf = w
        .into_inner()
        .map_err(|e| Error::backend(format!("writing {name}"), Some(Box::new(e.into_error()))))?;
    let file = buf
        .into_inner()
        .map_err(|e| Error::io(format!("writing {name}"), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("writing {name}"), e))
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

fn json_cell<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::backend("encoding JSON", Some(e.into())))
}

fn run_row(r: &Run) -> Result<Vec<String>> {
    let duration_ms = r
        .ended_at
        .map(|e| ((e.as_micros() - r.started_at.as_micros()) as f64 / 1000.0).to_string())
        .unwrap_or_default();
    Ok(vec![
        r.id.to_string(),
        r.workflow_id.to_string(),
        r.workflow_version.get().to_string(),
        r.status.to_string(),
        r.trigger.clone(),
        r.started_at.to_string(),
        time(r.ended_at),
        duration_ms,
        r.external_key.clone().unwrap_or_default(),
        json_cell(&r.attributes)?,
        json_cell(&r.summaries)?,
    ])
}

/// Writes `runs.csv`, `events.csv` and `metrics.csv` into `dir` (created;
/// must be empty).
pub async fn export(storage: &Storage, dir: &Path, out: &Out) -> Result<ExitCode> {
    runstore::dump::prepare_out_dir(dir).await?;
    let quiet = out.json;
    let mut runs_w = create(
        dir,
        "runs.csv",
        &[
            "id",
            "workflow_id",
            "workflow_version",
            "status",
            "trigger",
            "started_at",
            "ended_at",
            "duration_ms",
            "external_key",
            "attributes",
            "summaries",
        ],
    )?;
    let mut events_w = create(
        dir,
        "events.csv",
        &["run_id", "seq", "kind", "at", "idempotency_key", "payload"],
    )?;
    let mut p = Progress::start("export runs (csv)", quiet);
    let mut events = 0u64;
    let mut runs = Items::default();
    let query = RunQuery::default().with_limit(PAGE);
    while let Some(run) = runs
        .next(|c| storage.logs.query_runs(query.clone().with_cursor(c)))
        .await?
    {
        runs_w
            .write_record(run_row(&run)?)
            .map_err(csv_err("runs.csv"))?;
        // A run's events page by page too: long runs stay bounded.
        let mut run_events = Items::default();
        let query = EventQuery::default().with_limit(MAX_PAGE_LIMIT);
        while let Some(e) = run_events
            .next(|c| {
                storage
                    .logs
                    .list_events(&run.id, query.clone().with_cursor(c))
            })
            .await?
        {
            events_w
                .write_record([
                    e.run_id.to_string(),
                    e.seq.to_string(),
                    e.kind.clone(),
                    e.at.to_string(),
                    e.idempotency_key.clone().unwrap_or_default(),
                    json_cell(&e.payload)?,
                ])
                .map_err(csv_err("events.csv"))?;
            events += 1;
        }
        p.inc(1);
    }
    finish(runs_w, "runs.csv")?;
    finish(events_w, "events.csv")?;
    let runs = p.finish();

    let mut metrics_w = create(
        dir,
        "metrics.csv",
        &[
            "run_id",
            "workflow_id",
            "workflow_version",
            "status",
            "duration_ms",
            "recorded_at",
            "counters",
            "values",
        ],
    )?;
    let mut p = Progress::start("export metrics (csv)", quiet);
    let mut all = Items::default();
    let query = MetricQuery::default().with_limit(PAGE);
    while let Some(m) = all
        .next(|c| storage.metrics.list(query.clone().with_cursor(c)))
        .await?
    {
        metrics_w
            .write_record([
                m.run_id.to_string(),
                m.workflow_id.to_string(),
                m.workflow_version.get().to_string(),
                m.status.to_string(),
                (m.duration_micros as f64 / 1000.0).to_string(),
                m.recorded_at.to_string(),
                json_cell(&m.counters)?,
                json_cell(&m.values)?,
            ])
            .map_err(csv_err("metrics.csv"))?;
        p.inc(1);
    }
    finish(metrics_w, "metrics.csv")?;
    let metrics = p.finish();
    let value = json!({
        "exported": {"runs": runs, "events": events, "metrics": metrics},
        "format": "csv",
        "dir": dir.display().to_string(),
    });
    out.result(&value, || {
        format!(
            "exported {runs} runs, {events} events and {metrics} metrics as CSV to {}",
            dir.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
