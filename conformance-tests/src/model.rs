//! Model-based property tests: random operations on all four traits,
//! applied to the backend and to the reference model, must agree.
//!
//! proptest generates and shrinks the operation sequences on a thread of
//! its own (its value trees are not `Send`, so they cannot live inside the
//! rule's future); the rule runs each sequence on a fresh backend and a
//! fresh [`runstore_core::memory`] store set, and answers pass or fail.

use std::fmt;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use runstore_core::{
    Appended, ArtifactInfo, ArtifactKey, ArtifactQuery, ArtifactStoreExt, BulkOutcome,
    BundleRequest, Event, EventQuery, ExecutionMetric, JsonMap, MetricQuery, MetricsSummary,
    NewEvent, Pattern, PatternId, PatternQuery, PutOptions, Result, Run, RunFilter, RunQuery,
    RunStatus, RunUpdate, RunWithEvents, Sha256Digest, StoreSet, SummaryQuery, WorkflowDefinition,
    WorkflowQuery, Written,
};
use serde_json::json;

use crate::factory::{Capability, StoreFactory, TestStores};
use crate::fixtures::{akey, phase, rid, t, v, wf};
use crate::outcome::{RuleError, RuleResult};

/// Cases when `RUNSTORE_PROPTEST_CASES` is not set.
pub const DEFAULT_CASES: u32 = 24;
/// Most operations in one generated sequence.
pub const MAX_OPS: usize = 40;
/// Most shrink steps after a failure (each runs a whole sequence).
const MAX_SHRINK_STEPS: u32 = 400;
/// Most time spent shrinking, so a slow backend stays within the rule
/// timeout; the smallest failing sequence found by then is reported.
const SHRINK_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

const WFS: [&str; 2] = ["w1", "w2"];
const RUNS: [&str; 2] = ["r1", "r2"];
// Imports mostly bring runs of their own; r2 may collide with a created run.
const IMPORT_RUNS: [&str; 2] = ["r2", "i1"];
// Metrics need no stored run: a larger pool so summaries see several.
const METRIC_RUNS: [&str; 4] = ["r1", "r2", "m3", "m4"];
// ("a", "x/y") < ("a-b", "x") as tuples, but not as "phase/path" strings.
const PHASES: [&str; 2] = ["a", "a-b"];
const PATHS: [&str; 2] = ["x", "x/y"];
const CONTENTS: [&[u8]; 3] = [b"", b"one", b"two"];
const PATTERNS: [&str; 2] = ["p1", "p2"];
// The last kind holds a control character: every backend must refuse it.
const KINDS: [&str; 4] = ["step", "step", "step.done", "bad\u{7}kind"];
const TRIGGERS: [&str; 2] = ["manual", "cron"];
const KEYS: [&str; 2] = ["k1", "k2"];
const TYPES: [Option<&str>; 4] = [None, None, Some("text/plain"), Some("bad\ntype")];
const STATUSES: [RunStatus; 5] = RunStatus::ALL;
const METRIC_STATUSES: [RunStatus; 3] =
    [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Running];

/// One operation on one of the four traits, over small pools of values so
/// that collisions and conflicts happen often.
#[derive(Clone, Debug)]
#[allow(missing_docs)] // the fields are the arguments of the call named by the variant
pub enum Op {
    /// Applies again the operation `back` places earlier (retries,
    /// redelivery); nothing if there is none.
    Again {
        back: usize,
    },
    StoreWorkflow {
        id: &'static str,
        version: u32,
        parent: Option<u32>,
        body: u8,
        created: i64,
    },
    GetWorkflow {
        id: &'static str,
        version: u32,
    },
    GetLatest {
        id: &'static str,
    },
    ListVersions {
        id: &'static str,
    },
    ListWorkflows {
        id: Option<&'static str>,
        limit: usize,
    },
    CreateRun {
        run: &'static str,
        wf: &'static str,
        version: u32,
        start: i64,
        trigger: &'static str,
    },
    GetRun {
        run: &'static str,
    },
    UpdateStatus {
        run: &'static str,
        status: RunStatus,
        end: Option<i64>,
        summary: Option<u8>,
    },
    Append {
        run: &'static str,
        kind: &'static str,
        at: i64,
        key: Option<&'static str>,
    },
    AppendBatch {
        run: &'static str,
        events: Vec<(&'static str, i64, Option<&'static str>)>,
    },
    ListEvents {
        run: &'static str,
        limit: usize,
    },
    QueryRuns {
        wf: Option<&'static str>,
        statuses: Vec<RunStatus>,
        limit: usize,
    },
    CountRuns {
        wf: Option<&'static str>,
        status: Option<RunStatus>,
    },
    DeleteRun {
        run: &'static str,
    },
    Import {
        runs: Vec<ImportSpec>,
    },
    Record {
        metric: MetricSpec,
    },
    RecordMany {
        metrics: Vec<MetricSpec>,
    },
    GetMetric {
        run: &'static str,
    },
    DeleteMetric {
        run: &'static str,
    },
    ListMetrics {
        wf: Option<&'static str>,
        limit: usize,
    },
    Summary {
        wf: &'static str,
        version: Option<u32>,
    },
    UpsertPattern {
        id: &'static str,
        wf: &'static str,
        kind: &'static str,
        at: i64,
        confidence: u8,
    },
    ListPatterns {
        wf: Option<&'static str>,
        limit: usize,
    },
    Put {
        run: &'static str,
        phase: &'static str,
        path: &'static str,
        content: u8,
        token: Option<u8>,
        content_type: Option<&'static str>,
        at: i64,
    },
    GetArtifact {
        run: &'static str,
        phase: &'static str,
        path: &'static str,
    },
    ListArtifacts {
        run: Option<&'static str>,
        phase: Option<&'static str>,
        limit: usize,
    },
    DeleteArtifact {
        run: &'static str,
        phase: &'static str,
        path: &'static str,
    },
    BundleAll {
        run: &'static str,
    },
    Bundle {
        run: &'static str,
        path: &'static str,
        members: Vec<(&'static str, &'static str)>,
    },
    /// Changes an artifact's stored bytes behind the store's back (through
    /// [`StoreFactory::tamper_artifact`], and in the reference), then reads
    /// it; nothing without [`Capability::TamperArtifacts`].
    Tamper {
        run: &'static str,
        phase: &'static str,
        path: &'static str,
    },
}

/// A whole run to import.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub struct ImportSpec {
    pub run: &'static str,
    pub wf: &'static str,
    pub status: RunStatus,
    pub start: i64,
    pub end: i64,
    pub events: u8,
    pub keyed: bool,
}

/// A metric to record.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub struct MetricSpec {
    pub run: &'static str,
    pub wf: &'static str,
    pub version: u32,
    pub status: RunStatus,
    pub duration: u64,
    pub value: Option<f64>,
    pub at: i64,
}

fn pick<T: Clone + fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> + use<T> {
    prop::sample::select(items.to_vec())
}

fn opt<T: Clone + fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = Option<T>> + use<T> {
    prop::option::of(pick(items))
}

fn metric_spec() -> impl Strategy<Value = MetricSpec> {
    (
        pick(&METRIC_RUNS),
        pick(&WFS),
        1..=2u32,
        pick(&METRIC_STATUSES),
        pick(&[5u64, 1000]),
        opt(&[1.5f64]),
        0..2i64,
    )
        .prop_map(
            |(run, wf, version, status, duration, value, at)| MetricSpec {
                run,
                wf,
                version,
                status,
                duration,
                value,
                at,
            },
        )
}

fn import_spec() -> impl Strategy<Value = ImportSpec> {
    (
        pick(&IMPORT_RUNS),
        pick(&WFS),
        pick(&STATUSES),
        0..3i64,
        0..3i64,
        0..3u8,
        any::<bool>(),
    )
        .prop_map(|(run, wf, status, start, end, events, keyed)| ImportSpec {
            run,
            wf,
            status,
            start,
            end,
            events,
            keyed,
        })
}

/// The strategy of one operation.
fn op() -> impl Strategy<Value = Op> {
    let workflows = prop_oneof![
        4 => (pick(&WFS), 1..=2u32, prop_oneof![3 => Just(None), 1 => (1..=2u32).prop_map(Some)], 0..2u8, 0..3i64)
            .prop_map(|(id, version, parent, body, created)| Op::StoreWorkflow { id, version, parent, body, created }),
        1 => (pick(&WFS), 1..=2u32).prop_map(|(id, version)| Op::GetWorkflow { id, version }),
        1 => pick(&WFS).prop_map(|id| Op::GetLatest { id }),
        1 => pick(&WFS).prop_map(|id| Op::ListVersions { id }),
        1 => (opt(&WFS), 1..=3usize).prop_map(|(id, limit)| Op::ListWorkflows { id, limit }),
    ];
    let runs = prop_oneof![
        3 => (pick(&RUNS), pick(&WFS), 1..=2u32, 0..3i64, pick(&TRIGGERS))
            .prop_map(|(run, wf, version, start, trigger)| Op::CreateRun { run, wf, version, start, trigger }),
        1 => pick(&RUNS).prop_map(|run| Op::GetRun { run }),
        3 => (pick(&RUNS), pick(&STATUSES), prop_oneof![2 => Just(None), 1 => (0..4i64).prop_map(Some)], prop::option::of(0..2u8))
            .prop_map(|(run, status, end, summary)| Op::UpdateStatus { run, status, end, summary }),
        3 => (pick(&RUNS), pick(&KINDS), 0..3i64, opt(&KEYS))
            .prop_map(|(run, kind, at, key)| Op::Append { run, kind, at, key }),
        2 => (pick(&RUNS), prop::collection::vec((pick(&KINDS), 0..3i64, opt(&KEYS)), 0..4))
            .prop_map(|(run, events)| Op::AppendBatch { run, events }),
        1 => (pick(&RUNS), 1..=3usize).prop_map(|(run, limit)| Op::ListEvents { run, limit }),
        1 => (opt(&WFS), prop::collection::vec(pick(&STATUSES), 0..3), 1..=3usize)
            .prop_map(|(wf, statuses, limit)| Op::QueryRuns { wf, statuses, limit }),
        1 => (opt(&WFS), opt(&STATUSES)).prop_map(|(wf, status)| Op::CountRuns { wf, status }),
        1 => pick(&RUNS).prop_map(|run| Op::DeleteRun { run }),
        1 => prop::collection::vec(import_spec(), 1..3).prop_map(|runs| Op::Import { runs }),
    ];
    let metrics = prop_oneof![
        3 => metric_spec().prop_map(|metric| Op::Record { metric }),
        2 => prop::collection::vec(metric_spec(), 0..4).prop_map(|metrics| Op::RecordMany { metrics }),
        1 => pick(&METRIC_RUNS).prop_map(|run| Op::GetMetric { run }),
        1 => pick(&METRIC_RUNS).prop_map(|run| Op::DeleteMetric { run }),
        1 => (opt(&WFS), 1..=3usize).prop_map(|(wf, limit)| Op::ListMetrics { wf, limit }),
        2 => (pick(&WFS), prop::option::of(1..=2u32)).prop_map(|(wf, version)| Op::Summary { wf, version }),
        2 => (pick(&PATTERNS), pick(&WFS), pick(&KINDS), 0..3i64, 0..3u8)
            .prop_map(|(id, wf, kind, at, confidence)| Op::UpsertPattern { id, wf, kind, at, confidence }),
        1 => (opt(&WFS), 1..=3usize).prop_map(|(wf, limit)| Op::ListPatterns { wf, limit }),
    ];
    let artifacts = prop_oneof![
        6 => (pick(&RUNS[..1]), pick(&PHASES), pick(&PATHS), 0..3u8, prop_oneof![3 => Just(None), 1 => (0..3u8).prop_map(Some)], pick(&TYPES), 0..3i64)
            .prop_map(|(run, phase, path, content, token, content_type, at)| Op::Put { run, phase, path, content, token, content_type, at }),
        2 => (pick(&RUNS[..1]), pick(&PHASES), pick(&PATHS)).prop_map(|(run, phase, path)| Op::GetArtifact { run, phase, path }),
        1 => (opt(&RUNS), opt(&PHASES), 1..=3usize).prop_map(|(run, phase, limit)| Op::ListArtifacts { run, phase, limit }),
        1 => (pick(&RUNS[..1]), pick(&PHASES), pick(&PATHS)).prop_map(|(run, phase, path)| Op::DeleteArtifact { run, phase, path }),
        2 => (pick(&RUNS[..1]), pick(&PHASES), pick(&PATHS)).prop_map(|(run, phase, path)| Op::Tamper { run, phase, path }),
        2 => pick(&RUNS[..1]).prop_map(|run| Op::BundleAll { run }),
        1 => (pick(&RUNS[..1]), pick(&["b.zip", "x"]), pick(&[1u8, 2, 4, 8, 3, 6, 12, 15, 0]), any::<bool>())
            .prop_map(|(run, path, mask, reversed)| {
                // A set of the four member keys, small ones more often
                // (none: invalid input), in either order.
                let mut members: Vec<_> = PHASES
                    .iter()
                    .flat_map(|p| PATHS.iter().map(move |m| (*p, *m)))
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, k)| k)
                    .collect();
                if reversed {
                    members.reverse();
                }
                Op::Bundle { run, path, members }
            }),
    ];
    prop_oneof![
        3 => workflows,
        5 => runs,
        4 => metrics,
        4 => artifacts,
        2 => (1..=4usize).prop_map(|back| Op::Again { back }),
    ]
}

/// What an operation returned, in a form two backends can be compared on.
#[derive(Debug)]
enum Obs {
    Def(Written<WorkflowDefinition>),
    Defs(Vec<WorkflowDefinition>, usize),
    Run(Written<Run>),
    Runs(Vec<Run>, usize),
    Count(u64),
    Appended(Vec<Appended>),
    Events(Vec<Event>, usize),
    Bulk(BulkOutcome),
    Unit,
    Metric(Written<ExecutionMetric>),
    Metrics(Vec<ExecutionMetric>, usize),
    Summary(Box<MetricsSummary>),
    Pattern(Written<Pattern>),
    Patterns(Vec<Pattern>, usize),
    Artifact(Written<ArtifactInfo>),
    Bytes(ArtifactInfo, Vec<u8>),
    Artifacts(Vec<ArtifactInfo>, usize),
}

fn all_same<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// Whether two observations agree, with each type's content equality.
fn agree(a: &Obs, b: &Obs) -> bool {
    use Obs::*;
    match (a, b) {
        (Def(x), Def(y)) => {
            x.inserted == y.inserted
                && x.record.same_content(&y.record)
                && x.record.created_at == y.record.created_at
        }
        (Defs(x, p), Defs(y, q)) => {
            p == q
                && all_same(x, y, |a, b| {
                    a.same_content(b) && a.created_at == b.created_at
                })
        }
        (Run(x), Run(y)) => x.inserted == y.inserted && x.record.same_content(&y.record),
        (Runs(x, p), Runs(y, q)) => p == q && all_same(x, y, |a, b| a.same_content(b)),
        (Count(x), Count(y)) => x == y,
        (Appended(x), Appended(y)) => x == y,
        (Events(x, p), Events(y, q)) => p == q && all_same(x, y, |a, b| a.same_content(b)),
        (Bulk(x), Bulk(y)) => x == y,
        (Unit, Unit) => true,
        (Metric(x), Metric(y)) => x.inserted == y.inserted && x.record.same_content(&y.record),
        (Metrics(x, p), Metrics(y, q)) => p == q && all_same(x, y, |a, b| a.same_content(b)),
        (Summary(x), Summary(y)) => x.agrees_with(y),
        (Pattern(x), Pattern(y)) => x.inserted == y.inserted && x.record.same_content(&y.record),
        (Patterns(x, p), Patterns(y, q)) => p == q && all_same(x, y, |a, b| a.same_content(b)),
        (Artifact(x), Artifact(y)) => x == y,
        (Bytes(i, x), Bytes(j, y)) => i == j && x == y,
        (Artifacts(x, p), Artifacts(y, q)) => p == q && x == y,
        _ => false,
    }
}

/// Reads every page of a listing; returns the items and the page count.
macro_rules! all_pages {
    ($call:expr, $query:expr, $limit:expr) => {{
        let query = $query;
        let mut items = Vec::new();
        let mut cursor = None;
        let mut pages = 0usize;
        loop {
            let page = $call(query.clone().with_limit($limit).with_cursor(cursor)).await?;
            pages += 1;
            items.extend(page.items);
            match page.next {
                Some(c) if pages < 1000 => cursor = Some(c),
                _ => break,
            }
        }
        (items, pages)
    }};
}

/// Lists with a default `$query` whose `$field` is `$value`, every page of
/// `$limit` items, observed as `$obs(items, pages)`.
macro_rules! list_where {
    ($call:expr, $query:ty, $field:ident = $value:expr, $limit:expr, $obs:path) => {{
        let mut q = <$query>::default();
        q.$field = $value;
        let (items, pages) = all_pages!($call, q, $limit);
        $obs(items, pages)
    }};
}

fn json_n(n: u8) -> JsonMap {
    let mut m = JsonMap::new();
    m.insert("n".into(), json!(n));
    m
}

fn metric_of(m: &MetricSpec) -> ExecutionMetric {
    ExecutionMetric {
        run_id: rid(m.run),
        workflow_id: wf(m.wf),
        workflow_version: v(m.version),
        status: m.status,
        duration_micros: m.duration,
        recorded_at: t(m.at, 0),
        counters: Default::default(),
        values: m
            .value
            .map(|x| ("cost".to_string(), x))
            .into_iter()
            .collect(),
    }
}

fn import_of(spec: &ImportSpec) -> RunWithEvents {
    let id = rid(spec.run);
    let run = Run {
        id: id.clone(),
        workflow_id: wf(spec.wf),
        workflow_version: v(1),
        status: spec.status,
        trigger: "import".into(),
        started_at: t(spec.start, 0),
        ended_at: spec
            .status
            .is_terminal()
            .then(|| t(spec.start + spec.end, 0)),
        attributes: json_n(1),
        summaries: JsonMap::new(),
        external_key: None,
    };
    let events = (1..=u64::from(spec.events))
        .map(|seq| Event {
            run_id: id.clone(),
            seq,
            kind: "imported".into(),
            at: t(seq as i64, 0),
            payload: json!({"seq": seq}),
            idempotency_key: spec.keyed.then(|| format!("k{seq}")),
        })
        .collect();
    RunWithEvents { run, events }
}

fn new_event(kind: &str, at: i64, key: Option<&str>) -> NewEvent {
    let e = NewEvent::new(kind, json!({"at": at})).with_at(t(at, 0));
    match key {
        Some(k) => e.with_idempotency_key(k),
        None => e,
    }
}

/// Applies one operation to a store set.
async fn apply(s: &StoreSet, op: &Op) -> Result<Obs> {
    Ok(match op {
        // Resolved by run_case before it gets here.
        Op::Again { .. } | Op::Tamper { .. } => Obs::Unit,
        Op::StoreWorkflow {
            id,
            version,
            parent,
            body,
            created,
        } => {
            let mut d = WorkflowDefinition::new(wf(id), v(*version), json!({"body": body}))
                .with_created_at(t(*created, 0));
            d.parent = parent.map(v);
            Obs::Def(s.workflows.store(d).await?)
        }
        Op::GetWorkflow { id, version } => {
            Obs::Defs(vec![s.workflows.get(&wf(id), v(*version)).await?], 1)
        }
        Op::GetLatest { id } => Obs::Defs(vec![s.workflows.get_latest(&wf(id)).await?], 1),
        Op::ListVersions { id } => Obs::Defs(s.workflows.list_versions(&wf(id)).await?, 1),
        Op::ListWorkflows { id, limit } => list_where!(
            |q| s.workflows.list(q),
            WorkflowQuery,
            id = id.map(wf),
            *limit,
            Obs::Defs
        ),
        Op::CreateRun {
            run,
            wf: w,
            version,
            start,
            trigger,
        } => {
            let r = Run {
                id: rid(run),
                workflow_id: wf(w),
                workflow_version: v(*version),
                status: RunStatus::Pending,
                trigger: trigger.to_string(),
                started_at: t(*start, 0),
                ended_at: None,
                attributes: json_n(0),
                summaries: JsonMap::new(),
                external_key: None,
            };
            Obs::Run(s.logs.create_run(r).await?)
        }
        Op::GetRun { run } => Obs::Runs(vec![s.logs.get_run(&rid(run)).await?], 1),
        Op::UpdateStatus {
            run,
            status,
            end,
            summary,
        } => {
            let mut u = if status.is_terminal() {
                // Always an explicit end: "now" would differ between stores.
                RunUpdate::finished(*status, t(end.unwrap_or(3), 0))
            } else {
                let mut u = RunUpdate::running();
                u.status = *status;
                u.ended_at = end.map(|e| t(e, 0));
                u
            };
            if let Some(n) = summary {
                u = u.with_summaries(json_n(*n));
            }
            Obs::Runs(vec![s.logs.update_status(&rid(run), u).await?], 1)
        }
        Op::Append { run, kind, at, key } => Obs::Appended(vec![
            s.logs
                .append_event(&rid(run), new_event(kind, *at, *key))
                .await?,
        ]),
        Op::AppendBatch { run, events } => {
            let batch = events
                .iter()
                .map(|(k, at, key)| new_event(k, *at, *key))
                .collect();
            Obs::Appended(s.logs.append_events(&rid(run), batch).await?)
        }
        Op::ListEvents { run, limit } => {
            let id = rid(run);
            let (items, pages) = all_pages!(
                |q| s.logs.list_events(&id, q),
                EventQuery::default(),
                *limit
            );
            Obs::Events(items, pages)
        }
        Op::QueryRuns {
            wf: w,
            statuses,
            limit,
        } => {
            let mut f = RunFilter::default().statuses(statuses.clone());
            f.workflow_id = w.map(wf);
            let (items, pages) = all_pages!(|q| s.logs.query_runs(q), RunQuery::new(f), *limit);
            Obs::Runs(items, pages)
        }
        Op::CountRuns { wf: w, status } => {
            let mut f = RunFilter::default().statuses(*status);
            f.workflow_id = w.map(wf);
            Obs::Count(s.logs.count_runs(f).await?)
        }
        Op::DeleteRun { run } => {
            s.logs.delete_run(&rid(run)).await?;
            Obs::Unit
        }
        Op::Import { runs } => Obs::Bulk(
            s.logs
                .import_runs(runs.iter().map(import_of).collect())
                .await?,
        ),
        Op::Record { metric } => Obs::Metric(s.metrics.record(metric_of(metric)).await?),
        Op::RecordMany { metrics } => Obs::Bulk(
            s.metrics
                .record_many(metrics.iter().map(metric_of).collect())
                .await?,
        ),
        Op::GetMetric { run } => Obs::Metrics(vec![s.metrics.get(&rid(run)).await?], 1),
        Op::DeleteMetric { run } => {
            s.metrics.delete(&rid(run)).await?;
            Obs::Unit
        }
        Op::ListMetrics { wf: w, limit } => list_where!(
            |q| s.metrics.list(q),
            MetricQuery,
            workflow_id = w.map(wf),
            *limit,
            Obs::Metrics
        ),
        Op::Summary { wf: w, version } => {
            let mut q = SummaryQuery::default();
            q.workflow_version = version.map(v);
            Obs::Summary(Box::new(s.metrics.summary(&wf(w), q).await?))
        }
        Op::UpsertPattern {
            id,
            wf: w,
            kind,
            at,
            confidence,
        } => {
            let p = Pattern {
                id: PatternId::new(*id).expect("pool literal"),
                workflow_id: wf(w),
                kind: kind.to_string(),
                description: String::new(),
                data: json!({"c": confidence}),
                // 1.5 is out of range: invalid input.
                confidence: f64::from(*confidence) * 0.75,
                evidence: vec![rid("r1")],
                detected_at: t(*at, 0),
            };
            Obs::Pattern(s.metrics.upsert_pattern(p).await?)
        }
        Op::ListPatterns { wf: w, limit } => list_where!(
            |q| s.metrics.list_patterns(q),
            PatternQuery,
            workflow_id = w.map(wf),
            *limit,
            Obs::Patterns
        ),
        Op::Put {
            run,
            phase: p,
            path,
            content,
            token,
            content_type,
            at,
        } => {
            let mut o = PutOptions::default()
                .created_at(t(*at, 0))
                .created_by("model");
            if let Some(ct) = content_type {
                o = o.content_type(*ct);
            }
            if let Some(tk) = token {
                o = o.overwrite_token(Sha256Digest::of(CONTENTS[*tk as usize]));
            }
            let bytes = CONTENTS[*content as usize].to_vec();
            Obs::Artifact(s.artifacts.put_bytes(&akey(run, p, path), bytes, o).await?)
        }
        Op::GetArtifact {
            run,
            phase: p,
            path,
        } => {
            let (info, bytes) = s.artifacts.get_bytes(&akey(run, p, path)).await?;
            Obs::Bytes(info, bytes)
        }
        Op::ListArtifacts {
            run,
            phase: p,
            limit,
        } => {
            let mut q = ArtifactQuery::default();
            q.run_id = run.map(rid);
            q.phase = p.map(phase);
            let (items, pages) = all_pages!(|q| s.artifacts.list(q), q, *limit);
            Obs::Artifacts(items, pages)
        }
        Op::DeleteArtifact {
            run,
            phase: p,
            path,
        } => {
            s.artifacts.delete(&akey(run, p, path)).await?;
            Obs::Unit
        }
        Op::BundleAll { run } => {
            // Every member-phase artifact the store itself lists: a bundle
            // that succeeds far more often than one of named members.
            let mut q = ArtifactQuery::run(rid(run));
            q.limit = 100;
            let members = s
                .artifacts
                .list(q)
                .await?
                .items
                .into_iter()
                .filter(|i| PHASES.contains(&i.key.phase.as_str()))
                .map(|i| (i.key.phase, i.key.path))
                .collect();
            let req = BundleRequest::new(
                rid(run),
                phase("bundles"),
                akey(run, "bundles", "all.zip").path,
                members,
            )
            .with_options(PutOptions::default().created_at(t(0, 0)));
            Obs::Artifact(s.artifacts.bundle(req).await?)
        }
        Op::Bundle { run, path, members } => {
            let target = akey(run, "bundles", path);
            let members = members
                .iter()
                .map(|(p, m)| (phase(p), akey(run, p, m).path))
                .collect();
            let req = BundleRequest::new(rid(run), target.phase, target.path, members)
                .with_options(PutOptions::default().created_at(t(0, 0)));
            Obs::Artifact(s.artifacts.bundle(req).await?)
        }
    })
}

/// Reads of the whole state, run after each sequence so that a difference
/// no operation happened to observe is still caught.
fn final_reads() -> Vec<Op> {
    let mut ops = vec![
        Op::ListWorkflows {
            id: None,
            limit: 100,
        },
        Op::QueryRuns {
            wf: None,
            statuses: Vec::new(),
            limit: 100,
        },
        Op::ListMetrics {
            wf: None,
            limit: 100,
        },
        Op::ListPatterns {
            wf: None,
            limit: 100,
        },
        Op::ListArtifacts {
            run: None,
            phase: None,
            limit: 100,
        },
    ];
    // Again one item a page, so that paging is checked whatever the ops did.
    ops.extend([
        Op::ListWorkflows { id: None, limit: 1 },
        Op::QueryRuns {
            wf: None,
            statuses: Vec::new(),
            limit: 1,
        },
        Op::ListMetrics { wf: None, limit: 1 },
        Op::ListPatterns { wf: None, limit: 1 },
        Op::ListArtifacts {
            run: None,
            phase: None,
            limit: 1,
        },
    ]);
    for run in RUNS.into_iter().chain(["i1"]) {
        ops.push(Op::ListEvents { run, limit: 100 });
        ops.push(Op::ListEvents { run, limit: 2 });
    }
    for w in WFS {
        ops.push(Op::Summary {
            wf: w,
            version: None,
        });
    }
    ops
}

/// The concrete operation at `i`, following `Again` back.
fn resolve(ops: &[Op], mut i: usize) -> &Op {
    while let Op::Again { back } = &ops[i] {
        if *back > i {
            break;
        }
        i -= back;
    }
    &ops[i]
}

fn show(r: &Result<Obs>) -> String {
    match r {
        Ok(o) => format!("Ok({o:?})"),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// Tampers with the artifact `key` on both sides (the reference's first
/// byte flipped), then reads it from each with `read`. Section 4: reads
/// "fail with `Corrupt` if the stored bytes no longer match their hash", so
/// the model expects `Corrupt`. Nothing happens without the capability, for
/// an absent or empty artifact (not every backend can tamper with one), or
/// for one already tampered with (a factory's second change may or may not
/// undo its first).
async fn tamper_both(
    f: &dyn StoreFactory,
    backend: &TestStores,
    reference: &StoreSet,
    raw: &runstore_core::memory::MemoryArtifacts,
    key: ArtifactKey,
    read: &Op,
) -> (Result<Obs>, Result<Obs>) {
    let size = reference.artifacts.head(&key).await.map(|i| i.size);
    if !f.capabilities().has(Capability::TamperArtifacts)
        || !matches!(size, Ok(n) if n > 0)
        || apply(reference, read).await.is_err()
    {
        return (Ok(Obs::Unit), Ok(Obs::Unit));
    }
    raw.tamper(&key, |bytes| bytes[0] ^= 0xff);
    let want = Err(runstore_core::Error::corrupt(
        key.to_string(),
        "tampered with: reads must fail",
    ));
    let got = match f.tamper_artifact(backend, &key).await {
        Ok(()) => apply(&backend.stores, read).await,
        Err(e) => Err(e),
    };
    (got, want)
}

/// Runs one sequence on a fresh backend and a fresh reference; `Ok(None)`
/// when every result agrees, `Ok(Some(why))` at the first disagreement.
async fn run_case(
    f: &dyn StoreFactory,
    ops: &[Op],
) -> std::result::Result<Option<String>, RuleError> {
    let backend = f.create().await?;
    let raw = Arc::new(runstore_core::memory::MemoryArtifacts::default());
    let mut reference = runstore_core::memory::store_set();
    reference.artifacts = raw.clone();
    let finals = final_reads();
    for (i, op) in ops.iter().chain(&finals).enumerate() {
        let op = match op {
            Op::Again { back } if *back <= i => resolve(ops, i - back),
            other => other,
        };
        let (got, want) = match op {
            Op::Tamper { run, phase, path } => {
                let read = Op::GetArtifact { run, phase, path };
                tamper_both(f, &backend, &reference, &raw, akey(run, phase, path), &read).await
            }
            _ => (
                apply(&backend.stores, op).await,
                apply(&reference, op).await,
            ),
        };
        let same = match (&got, &want) {
            (Ok(a), Ok(b)) => agree(a, b),
            (Err(a), Err(b)) => a.kind() == b.kind(),
            _ => false,
        };
        if !same {
            let at = if i < ops.len() {
                format!("operation {i}")
            } else {
                format!("final read {}", i - ops.len())
            };
            return Ok(Some(format!(
                "{at}: {op:?}\n  backend: {}\nreference: {}",
                show(&got),
                show(&want)
            )));
        }
    }
    Ok(None)
}

/// How many cases to run: `RUNSTORE_PROPTEST_CASES`, else [`DEFAULT_CASES`].
fn cases() -> u32 {
    std::env::var("RUNSTORE_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_CASES)
}

/// Generates sequences and shrinks a failing one, on a thread of its own.
/// Sends each sequence to run and waits for its verdict (`true`: passed).
fn generator(
    cases: u32,
    tx: tokio::sync::mpsc::Sender<Vec<Op>>,
    mut verdicts: tokio::sync::mpsc::Receiver<bool>,
) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = prop::collection::vec(op(), 1..=MAX_OPS);
    let mut ask = |ops: Vec<Op>| -> Option<bool> {
        tx.blocking_send(ops).ok()?;
        verdicts.blocking_recv()
    };
    for _ in 0..cases {
        let Ok(mut tree) = strategy.new_tree(&mut runner) else {
            return;
        };
        match ask(tree.current()) {
            None => return,
            Some(true) => continue,
            Some(false) => {}
        }
        // Shrink as proptest does: simplify while it still fails, complicate
        // back when a simplification passes.
        if !tree.simplify() {
            return;
        }
        for _ in 0..MAX_SHRINK_STEPS {
            match ask(tree.current()) {
                None => return,
                Some(false) => {
                    if !tree.simplify() {
                        return;
                    }
                }
                Some(true) => {
                    if !tree.complicate() {
                        return;
                    }
                }
            }
        }
        return;
    }
}

/// "Every backend ... the same numbers as the reference implementation"
/// and, in general, section 4's promise that every backend shows the same
/// semantics: random sequences (fixed seed, up to 40 operations over all
/// four traits, drawn from small pools so that collisions, conflicts and
/// invalid values happen) give the same results on the backend as on the
/// reference in-memory backend: equal content, or errors of the same kind.
/// A volume rule: each case creates a fresh store set, 24 cases by default
/// (`RUNSTORE_PROPTEST_CASES` raises it), more while shrinking a failure.
pub async fn model_based_random_operations_match_reference(f: &dyn StoreFactory) -> RuleResult {
    let cases = cases();
    let (ops_tx, mut ops_rx) = tokio::sync::mpsc::channel::<Vec<Op>>(1);
    let (verdict_tx, verdict_rx) = tokio::sync::mpsc::channel::<bool>(1);
    std::thread::Builder::new()
        .name("runstore-model-gen".into())
        .spawn(move || generator(cases, ops_tx, verdict_rx))
        .map_err(|e| RuleError::Failed(format!("cannot start the generator thread: {e}")))?;
    let mut first: Option<(usize, String)> = None;
    let mut minimal: Option<(Vec<Op>, String)> = None;
    let mut ran = 0u32;
    let mut failed_at = None;
    while let Some(ops) = ops_rx.recv().await {
        if failed_at.is_some_and(|t: std::time::Instant| t.elapsed() > SHRINK_BUDGET) {
            break;
        }
        ran += 1;
        let verdict = run_case(f, &ops).await?;
        let passed = verdict.is_none();
        if let Some(why) = verdict {
            if first.is_none() {
                first = Some((ops.len(), why.clone()));
                failed_at = Some(std::time::Instant::now());
            }
            minimal = Some((ops, why));
        }
        if verdict_tx.send(passed).await.is_err() {
            break;
        }
    }
    match (first, minimal) {
        (Some((first_len, first_why)), Some((ops, why))) => {
            let listing: Vec<String> = ops
                .iter()
                .enumerate()
                .map(|(i, o)| format!("  {i}: {o:?}"))
                .collect();
            Err(RuleError::Failed(format!(
                "backend and reference disagree after {ran} sequence runs.\n\
                 Minimal failing sequence ({} operations, shrunk from {first_len}):\n{}\n\
                 Disagreement: {why}\n(first failure before shrinking: {first_why})",
                ops.len(),
                listing.join("\n")
            )))
        }
        _ => {
            if ran < cases {
                return Err(RuleError::Failed(format!(
                    "the generator stopped after {ran} of {cases} cases"
                )));
            }
            Ok(())
        }
    }
}
