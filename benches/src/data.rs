//! Deterministic workload data: the same runs, events and metrics go to
//! every backend and to the raw tables, so their figures compare.

use std::collections::BTreeMap;

use runstore_core::{
    Event, ExecutionMetric, Run, RunId, RunStatus, RunWithEvents, Timestamp, Version, WorkflowId,
};
use serde_json::json;

/// Workflows the query data is spread over.
pub const WORKFLOWS: usize = 10;
/// The workflow that `get_recent(50)` and the filtered query ask for.
pub const QUERY_WORKFLOW: &str = "wf-3";
/// The workflow every summary metric belongs to.
pub const SUMMARY_WORKFLOW: &str = "wf-summary";
/// First start time of generated runs (2026-01-01T00:00:00Z).
pub const BASE_MICROS: i64 = 1_767_225_600_000_000;

/// The status of run `i`: 80% succeeded, 15% failed, 5% cancelled.
pub fn status_of(i: usize) -> RunStatus {
    // Divided by 7 so that statuses spread over every workflow (i % 10).
    match (i / 7) % 20 {
        0..=15 => RunStatus::Succeeded,
        16..=18 => RunStatus::Failed,
        _ => RunStatus::Cancelled,
    }
}

/// The trigger of run `i`.
pub fn trigger_of(i: usize) -> &'static str {
    ["manual", "schedule", "webhook"][i % 3]
}

/// The start time of run `i`: one millisecond apart, so all distinct.
pub fn started_of(i: usize) -> i64 {
    BASE_MICROS + i as i64 * 1_000
}

/// Run `i` of a data set tagged `tag` (tags keep sets apart in one store).
pub fn run(tag: &str, i: usize) -> Run {
    let status = status_of(i);
    let started = started_of(i);
    let mut attributes = serde_json::Map::new();
    attributes.insert("host".into(), json!(format!("worker-{}", i % 7)));
    Run {
        id: RunId::new(format!("{tag}-{i:08}")).expect("generated run ids are valid"),
        workflow_id: WorkflowId::new(format!("wf-{}", i % WORKFLOWS)).expect("valid workflow id"),
        workflow_version: Version::new(1 + (i % 3) as u32).expect("version >= 1"),
        status,
        trigger: trigger_of(i).into(),
        started_at: Timestamp::from_micros(started).expect("in range"),
        ended_at: Some(Timestamp::from_micros(started + 500).expect("in range")),
        attributes,
        summaries: serde_json::Map::new(),
        external_key: None,
    }
}

/// The payload of event `seq` (small, like a log line).
pub fn payload(seq: u64) -> serde_json::Value {
    json!({"step": seq, "msg": "step finished", "ok": true})
}

/// Run `i` with `events` events numbered 1..=events.
pub fn run_with_events(tag: &str, i: usize, events: usize) -> RunWithEvents {
    let run = run(tag, i);
    let events = (1..=events as u64)
        .map(|seq| Event {
            run_id: run.id.clone(),
            seq,
            kind: "step".into(),
            at: run.started_at.saturating_add_micros(seq as i64),
            payload: payload(seq),
            idempotency_key: None,
        })
        .collect();
    RunWithEvents { run, events }
}

/// Metric `i` of the summary workflow.
pub fn metric(i: usize) -> ExecutionMetric {
    let mut counters = BTreeMap::new();
    counters.insert("steps".to_string(), 10);
    let mut values = BTreeMap::new();
    values.insert("cost".to_string(), (i % 1000) as f64 / 100.0);
    ExecutionMetric {
        run_id: RunId::new(format!("m-{i:08}")).expect("valid run id"),
        workflow_id: WorkflowId::new(SUMMARY_WORKFLOW).expect("valid workflow id"),
        workflow_version: Version::new(1 + (i % 2) as u32).expect("version >= 1"),
        status: status_of(i),
        // A spread of durations so percentiles do real work.
        duration_micros: ((i as u64).wrapping_mul(7919) % 1_000_000) + 1,
        recorded_at: Timestamp::from_micros(started_of(i)).expect("in range"),
        counters,
        values,
    }
}

/// The filter of the "filtered query" workload: the query workflow, failed
/// runs, triggered by webhook, in the second half of the data set.
pub struct FilterSpec {
    /// Workflow.
    pub workflow: &'static str,
    /// Status.
    pub status: RunStatus,
    /// Trigger.
    pub trigger: &'static str,
    /// Start time lower bound (inclusive), microseconds.
    pub from: i64,
    /// Start time upper bound (exclusive), microseconds.
    pub before: i64,
}

/// The filtered query over a data set of `rows` runs.
pub fn filter_spec(rows: usize) -> FilterSpec {
    FilterSpec {
        workflow: QUERY_WORKFLOW,
        status: RunStatus::Failed,
        trigger: "webhook",
        from: started_of(rows / 2),
        before: started_of(rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_valid() {
        for i in 0..50 {
            run_with_events("t", i, 3).validate().unwrap();
            metric(i).validate().unwrap();
        }
    }

    #[test]
    fn filtered_query_matches_some_runs() {
        let spec = filter_spec(1000);
        let hits = (0..1000)
            .map(|i| run("t", i))
            .filter(|r| {
                r.workflow_id.as_str() == spec.workflow
                    && r.status == spec.status
                    && r.trigger == spec.trigger
                    && (spec.from..spec.before).contains(&r.started_at.as_micros())
            })
            .count();
        assert!(hits > 0);
    }
}
