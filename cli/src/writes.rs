//! The commands that write runs, events and metrics, for shell-driven
//! agents and scripts: `run create|start|finish`, `event append`,
//! `metrics record`, and `pattern list` beside them.

use std::process::ExitCode;

use runstore::{
    Error, ExecutionMetric, JsonMap, LogRepositoryExt, NewEvent, PatternQuery, Result, Run, RunId,
    RunStatus, RunUpdate, Storage, Timestamp, Version, WorkflowId,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::output::Out;
use crate::paging::Cursors;

/// `KEY=VALUE` pairs: VALUE is taken as JSON when it parses (`n=3`,
/// `ok=true`, `tags=["a"]`), else as a string (`owner=team-a`).
pub fn parse_pairs(field: &str, pairs: &[String]) -> Result<JsonMap> {
    let mut map = JsonMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            Error::invalid(
                field,
                format!("{} must be written KEY=VALUE", runstore::text::shown(p)),
            )
        })?;
        if k.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{} has an empty key", runstore::text::shown(p)),
            ));
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(map)
}

fn print_run(out: &Out, run: &Run, verb: &str) -> Result<()> {
    out.result(&json!({ "run": run }), || {
        format!(
            "{verb} run {} ({} v{}, {})",
            run.id, run.workflow_id, run.workflow_version, run.status
        )
    })
}

/// `runstore run create WORKFLOW VERSION`.
pub async fn run_create(storage: &Storage, args: NewRunArgs, out: &Out) -> Result<ExitCode> {
    let mut run = Run::new(WorkflowId::new(args.workflow)?, Version::new(args.version)?);
    if let Some(t) = args.trigger {
        run.trigger = t;
    }
    if let Some(id) = args.id {
        run.id = RunId::new(id)?;
    }
    run.external_key = args.key;
    run.attributes = parse_pairs("attribute", &args.attributes)?;
    let written = storage.logs.create_run(run).await?;
    print_run(
        out,
        &written.record,
        if written.inserted {
            "created"
        } else {
            "already had"
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `runstore run create` is given.
#[derive(Debug)]
pub struct NewRunArgs {
    pub workflow: String,
    pub version: u32,
    pub trigger: Option<String>,
    pub attributes: Vec<String>,
    pub id: Option<String>,
    pub key: Option<String>,
}

/// `runstore run start ID`.
pub async fn run_start(storage: &Storage, id: &str, out: &Out) -> Result<ExitCode> {
    let run = storage
        .logs
        .update_status(&RunId::new(id)?, RunUpdate::running())
        .await?;
    print_run(out, &run, "started")?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore run finish ID STATUS`.
pub async fn run_finish(
    storage: &Storage,
    id: &str,
    status: &str,
    summaries: &[String],
    out: &Out,
) -> Result<ExitCode> {
    let id = RunId::new(id)?;
    let status: RunStatus = status.parse()?;
    let run = if summaries.is_empty() {
        storage.logs.finish_run(&id, status).await?
    } else {
        let update = RunUpdate::finished(status, Timestamp::now())
            .with_summaries(parse_pairs("summary", summaries)?);
        storage.logs.update_status(&id, update).await?
    };
    print_run(out, &run, "finished")?;
    Ok(ExitCode::SUCCESS)
}

/// One event as a line of NDJSON on stdin.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    kind: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    at: Option<Timestamp>,
}

/// What `event append` appends: one event from flags, or NDJSON lines.
pub struct EventInput {
    pub kind: Option<String>,
    pub payload: Option<String>,
    pub key: Option<String>,
    pub stdin: bool,
}

/// `runstore event append RUN`: one event from flags, or every NDJSON line
/// of stdin (`--stdin`) in one batch (all or nothing).
pub async fn event_append(
    storage: &Storage,
    run: &str,
    input: EventInput,
    out: &Out,
) -> Result<ExitCode> {
    let run = RunId::new(run)?;
    let events = if input.stdin {
        if input.kind.is_some() || input.payload.is_some() || input.key.is_some() {
            return Err(Error::invalid(
                "stdin",
                "--stdin reads every event from stdin; --kind, --payload and --key are for one event",
            ));
        }
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut events = Vec::new();
        let mut n = 0u64;
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| Error::io("reading stdin", e))?
        {
            n += 1;
            if line.trim().is_empty() {
                continue;
            }
            let l: EventLine = serde_json::from_str(&line)
                .map_err(|e| Error::invalid("stdin", format!("line {n}: {e}")))?;
            let mut e = NewEvent::new(l.kind, l.payload);
            if let Some(at) = l.at {
                e = e.with_at(at);
            }
            if let Some(k) = l.idempotency_key {
                e = e.with_idempotency_key(k);
            }
            events.push(e);
        }
        events
    } else {
        let kind = input.kind.ok_or_else(|| {
            Error::invalid(
                "kind",
                "give --kind (and --payload), or --stdin with NDJSON lines",
            )
        })?;
        let payload = match &input.payload {
            Some(p) => serde_json::from_str(p)
                .map_err(|e| Error::invalid("payload", format!("not JSON: {e}")))?,
            None => Value::Null,
        };
        let mut e = NewEvent::new(kind, payload);
        if let Some(k) = input.key {
            e = e.with_idempotency_key(k);
        }
        vec![e]
    };
    let appended = storage.logs.append_events(&run, events).await?;
    out.result(&json!({ "run_id": run, "appended": appended }), || {
        appended
            .iter()
            .map(|a| {
                if a.duplicate {
                    format!("event {} (already there)", a.seq)
                } else {
                    format!("event {}", a.seq)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore metrics record RUN`: the metric of a finished run, its
/// duration from the run's start and end unless given.
pub async fn metrics_record(
    storage: &Storage,
    run: &str,
    duration_ms: Option<f64>,
    values: &[String],
    counters: &[String],
    out: &Out,
) -> Result<ExitCode> {
    let run = storage.logs.get_run(&RunId::new(run)?).await?;
    let mut metric = ExecutionMetric::from_run(&run)?;
    if let Some(ms) = duration_ms {
        if !ms.is_finite() || ms < 0.0 {
            return Err(Error::invalid(
                "duration-ms",
                format!("must be a number >= 0, got {ms}"),
            ));
        }
        metric.duration_micros = (ms * 1000.0).round() as u64;
    }
    for (k, v) in parse_pairs("value", values)? {
        let n = v
            .as_f64()
            .ok_or_else(|| Error::invalid("value", format!("{k} must be a number, got {v}")))?;
        metric = metric.with_value(k, n);
    }
    for (k, v) in parse_pairs("counter", counters)? {
        let n = v.as_i64().ok_or_else(|| {
            Error::invalid("counter", format!("{k} must be a whole number, got {v}"))
        })?;
        metric = metric.with_counter(k, n);
    }
    let written = storage.metrics.record(metric).await?;
    out.result(
        &json!({ "metric": written.record, "inserted": written.inserted }),
        || {
            format!(
                "{} the metric of run {} ({}, {} ms)",
                if written.inserted {
                    "recorded"
                } else {
                    "already had"
                },
                written.record.run_id,
                written.record.status,
                written.record.duration_micros as f64 / 1000.0
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore pattern list [WORKFLOW]`, newest first.
pub async fn pattern_list(
    storage: &Storage,
    workflow: Option<&str>,
    out: &Out,
) -> Result<ExitCode> {
    let mut query = PatternQuery::default().with_limit(500);
    if let Some(w) = workflow {
        query = query.with_workflow(WorkflowId::new(w)?);
    }
    let mut list = out.list()?;
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = storage
            .metrics
            .list_patterns(query.clone().with_cursor(cursor))
            .await?;
        for p in &page.items {
            list.item(p, || {
                format!(
                    "{}  {}  {}  {:.2}  {}",
                    p.detected_at, p.workflow_id, p.kind, p.confidence, p.description
                )
            })?;
        }
        pages.after(page.next);
    }
    list.finish("no patterns")?;
    Ok(ExitCode::SUCCESS)
}
