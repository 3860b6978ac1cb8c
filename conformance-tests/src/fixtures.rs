//! Small builders of valid records, shared by the rules.

use std::future::Future;

use runstore_core::{
    Appended, ArtifactKey, Cursor, ExecutionMetric, JsonMap, NewEvent, Page, Pattern, PatternId,
    Phase, Run, RunId, RunStatus, Timestamp, Version, WorkflowDefinition, WorkflowId,
};
use serde_json::json;

use crate::ensure;
use crate::outcome::RuleError;

/// A workflow id from a literal; panics on an invalid literal (a bug in a rule).
pub fn wf(id: &str) -> WorkflowId {
    WorkflowId::new(id).expect("valid workflow id literal")
}

/// A version from a literal.
pub fn v(n: u32) -> Version {
    Version::new(n).expect("valid version literal")
}

/// A run id from a literal.
pub fn rid(id: &str) -> RunId {
    RunId::new(id).expect("valid run id literal")
}

/// A phase from a literal.
pub fn phase(p: &str) -> Phase {
    Phase::new(p).expect("valid phase literal")
}

/// An artifact key from literals.
pub fn akey(run: &str, phase: &str, path: &str) -> ArtifactKey {
    ArtifactKey::parse(run, phase, path).expect("valid artifact key literal")
}

/// A time `secs` seconds and `micros` microseconds after 2026-01-01T00:00:00Z.
pub fn t(secs: i64, micros: i64) -> Timestamp {
    Timestamp::from_micros(1_767_225_600_000_000 + secs * 1_000_000 + micros)
        .expect("time in range")
}

/// A definition with a small body.
pub fn def(id: &str, version: u32, parent: Option<u32>) -> WorkflowDefinition {
    let mut d = WorkflowDefinition::new(
        wf(id),
        v(version),
        json!({"steps": [{"name": "extract", "retries": version}], "schedule": "@daily"}),
    )
    .with_description(format!("{id} v{version}"))
    .with_created_at(t(i64::from(version), 0));
    d.parent = parent.map(v);
    d
}

/// A pending run of `workflow` v`version` started at `t(start_secs, 0)`.
pub fn run(id: &str, workflow: &str, version: u32, start_secs: i64) -> Run {
    let mut attributes = JsonMap::new();
    attributes.insert("owner".into(), json!("team-a"));
    Run {
        id: rid(id),
        workflow_id: wf(workflow),
        workflow_version: v(version),
        status: RunStatus::Pending,
        trigger: "manual".into(),
        started_at: t(start_secs, 0),
        ended_at: None,
        attributes,
        summaries: JsonMap::new(),
        external_key: None,
    }
}

/// An event of `kind` at `t(secs, 0)`.
pub fn event(kind: &str, secs: i64) -> NewEvent {
    NewEvent::new(kind, json!({"n": secs})).with_at(t(secs, 0))
}

/// What `append_event` returns for a new event stored as number `seq`.
pub fn appended(seq: u64) -> Appended {
    Appended {
        seq,
        duplicate: false,
        deferred: false,
    }
}

/// What `append_event` returns for a repeated idempotency key first stored
/// as number `seq` (nothing stored).
pub fn duplicate_of(seq: u64) -> Appended {
    Appended {
        seq,
        duplicate: true,
        deferred: false,
    }
}

/// Reads every page that `fetch` gives for a cursor (`None`: the first),
/// checking that pages are at most `limit` long and that `next` is set
/// exactly when more items follow (then the page is full). `call` names the
/// listing and `items` what it lists, in failure messages.
pub(crate) async fn all_pages_checked<T, F, Fut>(
    call: &str,
    items: &str,
    limit: usize,
    mut fetch: F,
) -> Result<Vec<T>, RuleError>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = runstore_core::Result<Page<T>>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for page_no in 1..=10_000usize {
        let page = fetch(cursor).await?;
        let len = page.items.len();
        ensure!(
            len <= limit,
            "{call} page {page_no} holds {len} {items}, more than the limit"
        );
        out.extend(page.items);
        match page.next {
            Some(next) => {
                ensure!(
                    len == limit,
                    "{call} page {page_no} has `next` set but only {len} {items}"
                );
                cursor = Some(next);
            }
            None => return Ok(out),
        }
    }
    Err(RuleError::Failed(format!(
        "{call} returned 10000 pages; the cursor does not advance"
    )))
}

/// Reads every page that `fetch` gives for a cursor (`None`: the first), at
/// most 10000 (a cursor that never ends would hang the rule); returns the
/// items and the number of pages read.
pub(crate) async fn all_pages<T, F, Fut>(mut fetch: F) -> runstore_core::Result<(Vec<T>, usize)>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = runstore_core::Result<Page<T>>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    while pages < 10_000 {
        let page = fetch(cursor).await?;
        pages += 1;
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok((out, pages))
}

/// A finished run's metric.
pub fn metric(
    run: &str,
    workflow: &str,
    version: u32,
    status: RunStatus,
    micros: u64,
) -> ExecutionMetric {
    ExecutionMetric {
        run_id: rid(run),
        workflow_id: wf(workflow),
        workflow_version: v(version),
        status,
        duration_micros: micros,
        recorded_at: t(micros as i64 % 100_000, 0),
        counters: [("steps".to_string(), 3)].into_iter().collect(),
        values: [("cost".to_string(), micros as f64 / 7.0)]
            .into_iter()
            .collect(),
    }
}

/// A pattern detected at `t(secs, 0)`.
pub fn pattern(id: &str, workflow: &str, secs: i64) -> Pattern {
    Pattern {
        id: PatternId::new(id).expect("valid pattern id literal"),
        workflow_id: wf(workflow),
        kind: "slow_step".into(),
        description: "step extract is slow".into(),
        data: json!({"step": "extract", "p95_ms": 1200}),
        confidence: 0.75,
        evidence: vec![rid("r1"), rid("r2")],
        detected_at: t(secs, 0),
    }
}

/// A tiny fixed-seed pseudo-random generator (SplitMix64), so rules that
/// need "random" data are deterministic and need no extra crate.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
