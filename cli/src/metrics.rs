//! `runstore metrics summary`: a workflow's metrics summary, for people or
//! as JSON (`metrics record` is in `writes.rs`, `metrics delete` in
//! `lifecycle.rs`).

use std::process::ExitCode;

use runstore::{Result, Storage, SummaryQuery, WorkflowId};

use crate::args::version_arg;
use crate::output::Out;

/// A number for humans: at most six decimals, no trailing zeros.
fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// A summary for humans.
pub fn summary_text(s: &runstore::MetricsSummary) -> String {
    let mut t = format!(
        "{}{}: {} executions ({} succeeded, {} failed, {} cancelled)",
        s.workflow_id,
        s.workflow_version
            .map(|v| format!(" v{v}"))
            .unwrap_or_default(),
        s.executions,
        s.succeeded,
        s.failed,
        s.cancelled
    );
    if let Some(r) = s.success_rate {
        t.push_str(&format!(", success rate {:.1}%", r * 100.0));
    }
    if let Some(d) = &s.duration {
        t.push_str(&format!(
            "\n  duration ms: min {:.1}, p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}, mean {:.1}",
            d.min as f64 / 1000.0,
            d.p50 as f64 / 1000.0,
            d.p95 as f64 / 1000.0,
            d.p99 as f64 / 1000.0,
            d.max as f64 / 1000.0,
            d.mean / 1000.0
        ));
    }
    for (name, v) in &s.values {
        t.push_str(&format!(
            "\n  {name}: count {}, sum {}, min {}, max {}, mean {}",
            v.count,
            num(v.sum),
            num(v.min),
            num(v.max),
            num(v.mean)
        ));
    }
    t
}

/// `runstore metrics summary WORKFLOW [--version N]`.
pub async fn metrics_summary(
    storage: &Storage,
    workflow: &str,
    version: Option<u32>,
    out: &Out,
) -> Result<ExitCode> {
    let id = WorkflowId::new(workflow)?;
    let query = match version_arg(version)? {
        Some(v) => SummaryQuery::version(v),
        None => SummaryQuery::default(),
    };
    let s = storage.metrics.summary(&id, query).await?;
    if s.executions == 0 {
        // An empty summary reads like a workflow that never ran; say which
        // it is, so a typo in the id is noticed.
        let known = !storage.workflows.list_versions(&id).await?.is_empty();
        out.note(&if known {
            format!("workflow {id} has no recorded metrics yet")
        } else {
            format!("no workflow {id} is stored, and no metrics name it (check the id)")
        });
    }
    out.result(&s, || summary_text(&s))?;
    Ok(ExitCode::SUCCESS)
}
