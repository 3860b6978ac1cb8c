//! The web page: server-side templates (minijinja, HTML escaped), SVG
//! charts drawn here, no script and nothing fetched from elsewhere.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use minijinja::{Environment, context};
use runstore::{
    ArtifactQuery, Error, ErrorKind, EventQuery, ExecutionMetric, MetricQuery, MetricsSummary,
    Result, Run, RunFilter, RunId, RunQuery, RunStatus, SummaryQuery, WorkflowId, WorkflowQuery,
};
use serde::Serialize;

use crate::AppState;
use crate::api::RawQuery;
use crate::chart::{self, Series};
use crate::error::ApiError;
use crate::query::Params;

/// Runs per page of the list.
const RUNS_PER_PAGE: usize = 50;
/// Events shown on a run's page.
const EVENTS_SHOWN: usize = 1000;
/// Metrics read for a workflow's charts (the most recent pages).
const METRICS_CHARTED: usize = 5000;

/// The parsed templates.
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub(crate) fn new() -> Result<Templates> {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("../templates/base.html")),
            ("index.html", include_str!("../templates/index.html")),
            ("run.html", include_str!("../templates/run.html")),
            ("workflow.html", include_str!("../templates/workflow.html")),
        ] {
            env.add_template(name, text)
                .map_err(|e| Error::backend(format!("template {name}"), Some(e.into())))?;
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> std::result::Result<Response, ApiError> {
        let html = self
            .env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::backend(format!("rendering {name}"), Some(e.into())))?;
        Ok(Html(html).into_response())
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/runs/{id}", get(run_page))
        .route("/workflows/{id}", get(workflow_page))
        .route("/static/style.css", get(style))
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

/// A run as a row of the page.
#[derive(Serialize)]
struct RunRow {
    id: String,
    workflow_id: String,
    version: u32,
    status: String,
    trigger: String,
    started_at: String,
    ended_at: Option<String>,
    duration: Option<String>,
}

fn duration_text(micros: i64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn status_name(s: RunStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl From<&Run> for RunRow {
    fn from(r: &Run) -> Self {
        RunRow {
            id: r.id.to_string(),
            workflow_id: r.workflow_id.to_string(),
            version: r.workflow_version.get(),
            status: status_name(r.status),
            trigger: r.trigger.clone(),
            started_at: r.started_at.to_string(),
            ended_at: r.ended_at.map(|t| t.to_string()),
            duration: r
                .ended_at
                .map(|e| duration_text(e.as_micros() - r.started_at.as_micros())),
        }
    }
}

async fn index(State(s): State<AppState>, q: RawQuery) -> std::result::Result<Response, ApiError> {
    let mut p = Params::new(q.0);
    let workflow = p.take("workflow");
    let status = p.take("status");
    let since = p.take("since");
    let cursor = p.cursor();
    p.done()?;
    let mut filter = RunFilter::default();
    filter.workflow_id = workflow.clone().map(WorkflowId::new).transpose()?;
    filter.statuses = match &status {
        Some(s) => vec![crate::query::status(s)?],
        None => Vec::new(),
    };
    filter.started_from = since.as_deref().map(parse_since).transpose()?;
    let page = s
        .storage
        .logs
        .query_runs(
            RunQuery::new(filter)
                .with_limit(RUNS_PER_PAGE)
                .with_cursor(cursor),
        )
        .await?;
    let runs: Vec<RunRow> = page.items.iter().map(RunRow::from).collect();
    let defs = s
        .storage
        .workflows
        .list(WorkflowQuery::default().with_limit(500))
        .await?;
    let mut workflows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for d in &defs.items {
        workflows
            .entry(d.id.to_string())
            .or_default()
            .push(d.version.get());
    }
    // The link to the next page keeps the filters.
    let next = page.next.map(|c| {
        let mut q = vec![format!("cursor={}", c.as_str())];
        for (k, v) in [
            ("workflow", &workflow),
            ("status", &status),
            ("since", &since),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode(v)));
            }
        }
        format!("/?{}", q.join("&"))
    });
    s.pages.render(
        "index.html",
        context! {
            runs, workflows, next,
            filter => context! { workflow, status, since },
            statuses => ["pending", "running", "succeeded", "failed", "cancelled"],
        },
    )
}

/// `since`: RFC 3339, or a date (`2026-12-01`, midnight UTC).
fn parse_since(s: &str) -> Result<runstore::Timestamp> {
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    text.parse()
        .map_err(|e| Error::invalid("since", format!("`{s}`: {e}")))
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An event as the timeline shows it.
#[derive(Serialize)]
struct EventRow {
    seq: u64,
    kind: String,
    at: String,
    payload: String,
    /// An error or failure, or the last event of a failed run.
    failing: bool,
    last: bool,
}

async fn run_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    let id = RunId::new(id)?;
    let run = s.storage.logs.get_run(&id).await?;
    let page = s
        .storage
        .logs
        .list_events(&id, EventQuery::default().with_limit(EVENTS_SHOWN))
        .await?;
    let failed = run.status == RunStatus::Failed;
    let count = page.items.len();
    let events: Vec<EventRow> = page
        .items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = e.kind.to_lowercase();
            let last = i + 1 == count;
            EventRow {
                seq: e.seq,
                kind: e.kind.clone(),
                at: e.at.to_string(),
                payload: serde_json::to_string(&e.payload).unwrap_or_default(),
                failing: kind.contains("error") || kind.contains("fail") || (failed && last),
                last,
            }
        })
        .collect();
    let failing_seq = events.iter().rev().find(|e| e.failing).map(|e| e.seq);
    let metric = match s.storage.metrics.get(&id).await {
        Ok(m) => Some(context! {
            duration => duration_text(i64::try_from(m.duration_micros).unwrap_or(i64::MAX)),
            counters => m.counters,
            values => m.values,
            recorded_at => m.recorded_at.to_string(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let artifacts = s
        .storage
        .artifacts
        .list(ArtifactQuery::run(id.clone()).with_limit(1000))
        .await?;
    let artifacts: Vec<_> = artifacts
        .items
        .iter()
        .map(|a| {
            context! {
                phase => a.key.phase.to_string(),
                path => a.key.path.to_string(),
                size => a.size,
                sha256 => a.sha256.to_hex(),
                content_type => a.content_type.clone(),
                href => format!("/v1/artifacts/{}/{}/{}", a.key.run_id, a.key.phase, a.key.path),
            }
        })
        .collect();
    s.pages.render(
        "run.html",
        context! {
            run => RunRow::from(&run),
            attributes => serde_json::to_string(&run.attributes).unwrap_or_default(),
            summaries => serde_json::to_string(&run.summaries).unwrap_or_default(),
            events, failing_seq, metric, artifacts,
            more_events => page.next.is_some(),
        },
    )
}

async fn workflow_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    let id = WorkflowId::new(id)?;
    let versions = s.storage.workflows.list_versions(&id).await?;
    let versions: Vec<_> = versions
        .iter()
        .map(|d| {
            context! {
                version => d.version.get(),
                parent => d.parent.map(|p| p.get()),
                created_at => d.created_at.to_string(),
                description => d.description.clone(),
            }
        })
        .collect();
    let summary = s
        .storage
        .metrics
        .summary(&id, SummaryQuery::default())
        .await?;
    // The most recent metrics, then per hour (a span of two days or less)
    // or per day, the summary core computes for any set of metrics.
    let mut recent: Vec<ExecutionMetric> = Vec::new();
    let mut cursor = None;
    loop {
        let mut q = MetricQuery::default().with_limit(500).with_cursor(cursor);
        q.workflow_id = Some(id.clone());
        let page = s.storage.metrics.list(q).await?;
        recent.extend(page.items);
        match page.next {
            Some(c) if recent.len() < METRICS_CHARTED => cursor = Some(c),
            _ => break,
        }
    }
    let first = recent.iter().map(|m| m.recorded_at).min();
    let last = recent.iter().map(|m| m.recorded_at).max();
    let hourly = match (first, last) {
        (Some(a), Some(b)) => b.as_micros() - a.as_micros() <= 2 * 86_400 * 1_000_000,
        _ => false,
    };
    let (key_len, unit) = if hourly { (13, "hour") } else { (10, "day") };
    let mut days: BTreeMap<String, Vec<ExecutionMetric>> = BTreeMap::new();
    for m in recent {
        let key: String = m.recorded_at.to_string().chars().take(key_len).collect();
        let key = if hourly { format!("{key}h") } else { key };
        days.entry(key).or_default().push(m);
    }
    let labels: Vec<String> = days.keys().cloned().collect();
    let mut rate = Vec::new();
    let (mut p50, mut p95) = (Vec::new(), Vec::new());
    for metrics in days.values() {
        let day = MetricsSummary::compute(id.clone(), None, metrics);
        rate.push(day.success_rate.map(|r| 100.0 * r));
        let ms = |micros: u64| Some(micros as f64 / 1000.0);
        p50.push(day.duration.as_ref().and_then(|d| ms(d.p50)));
        p95.push(day.duration.as_ref().and_then(|d| ms(d.p95)));
    }
    let rate_chart = chart::lines(
        &format!("success rate per {unit}"),
        "%",
        &labels,
        &[Series {
            name: "success",
            color: "#2ca02c",
            values: rate,
        }],
        Some(100.0),
    );
    let duration_chart = chart::lines(
        &format!("duration per {unit}"),
        "ms",
        &labels,
        &[
            Series {
                name: "p50",
                color: "#1f77b4",
                values: p50,
            },
            Series {
                name: "p95",
                color: "#d62728",
                values: p95,
            },
        ],
        None,
    );
    s.pages.render(
        "workflow.html",
        context! {
            id => id.to_string(),
            versions,
            summary => serde_json::to_value(&summary).unwrap_or_default(),
            rate_chart => minijinja::Value::from_safe_string(rate_chart),
            duration_chart => minijinja::Value::from_safe_string(duration_chart),
        },
    )
}
