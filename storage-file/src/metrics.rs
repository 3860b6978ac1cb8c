//! Metrics and patterns: `metrics/metrics.ndjson` and
//! `metrics/patterns.ndjson`, journals where the latest line for a key wins,
//! cached in memory and checked against the file length under the lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use runstore_core::summary::SummaryIndex;
use runstore_core::{
    BulkOutcome, Error, ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository,
    MetricsSummary, Page, Pattern, PatternCursor, PatternId, PatternQuery, Result, RunId,
    SummaryQuery, WorkflowId, Written, metric_conflict, validate_limit,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, SyncTicket, file_id, lock_mutex};
use crate::{FileStore, Inner};

pub(crate) const LOCK: &str = "metrics.lock";

/// One line of `metrics/metrics.ndjson`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum MetricLine {
    Put { metric: ExecutionMetric },
    Delete { run_id: RunId },
}

/// A journal replayed into memory, valid for `file` up to `offset`.
pub(crate) trait Journal: Default {
    type Line: DeserializeOwned;
    const NAME: &'static str;
    fn apply(&mut self, line: Self::Line);
    fn position(&mut self) -> (&mut Option<fsutil::FileId>, &mut u64);
}

/// Metrics by run, run ids by workflow (so a list reads one workflow), and
/// the summary counters kept as lines are replayed.
#[derive(Default)]
pub(crate) struct MetricsState {
    file: Option<fsutil::FileId>,
    offset: u64,
    pub(crate) metrics: BTreeMap<RunId, ExecutionMetric>,
    by_workflow: HashMap<WorkflowId, BTreeSet<RunId>>,
    summaries: SummaryIndex,
}

impl MetricsState {
    fn remove(&mut self, run_id: &RunId) {
        if let Some(old) = self.metrics.remove(run_id) {
            self.summaries.remove(&old);
            if let Some(set) = self.by_workflow.get_mut(&old.workflow_id) {
                set.remove(run_id);
                if set.is_empty() {
                    self.by_workflow.remove(&old.workflow_id);
                }
            }
        }
    }
}

impl Journal for MetricsState {
    type Line = MetricLine;
    const NAME: &'static str = "metrics.ndjson";
    fn apply(&mut self, line: MetricLine) {
        match line {
            MetricLine::Put { metric } => {
                self.remove(&metric.run_id.clone());
                self.by_workflow
                    .entry(metric.workflow_id.clone())
                    .or_default()
                    .insert(metric.run_id.clone());
                self.summaries.insert(&metric);
                self.metrics.insert(metric.run_id.clone(), metric);
            }
            MetricLine::Delete { run_id } => self.remove(&run_id),
        }
    }
    fn position(&mut self) -> (&mut Option<fsutil::FileId>, &mut u64) {
        (&mut self.file, &mut self.offset)
    }
}

/// Patterns by id.
#[derive(Default)]
pub(crate) struct PatternsState {
    file: Option<fsutil::FileId>,
    offset: u64,
    patterns: BTreeMap<PatternId, Pattern>,
}

impl Journal for PatternsState {
    type Line = Pattern;
    const NAME: &'static str = "patterns.ndjson";
    fn apply(&mut self, p: Pattern) {
        self.patterns.insert(p.id.clone(), p);
    }
    fn position(&mut self) -> (&mut Option<fsutil::FileId>, &mut u64) {
        (&mut self.file, &mut self.offset)
    }
}

pub(crate) fn journal_path(inner: &Inner, name: &str) -> Result<PathBuf> {
    inner.root.dir(&["metrics"])?;
    inner.root.path(&["metrics", name])
}

/// Brings a journal's state up to date; cuts a torn tail under the
/// exclusive lock, skips (and reports) corrupt lines.
pub(crate) fn refresh<'a, J: Journal>(
    inner: &Inner,
    mutex: &'a std::sync::Mutex<J>,
    exclusive: bool,
) -> Result<std::sync::MutexGuard<'a, J>> {
    let mut st = lock_mutex(mutex);
    let path = journal_path(inner, J::NAME)?;
    let Some(mut file) = fsutil::open_read(&path)? else {
        *st = J::default();
        return Ok(st);
    };
    let meta = file
        .metadata()
        .map_err(|e| fsutil::io_err("inspecting", &path, e))?;
    let id = file_id(&meta);
    {
        let (fid, off) = st.position();
        if *fid != Some(id) || meta.len() < *off {
            *st = J::default();
            *st.position().0 = Some(id);
        }
    }
    let offset = *st.position().1;
    if meta.len() > offset {
        let end = inner.replay(
            &mut file,
            &path,
            offset,
            exclusive.then_some(id),
            "record",
            |rec: J::Line| {
                st.apply(rec);
                Ok(())
            },
        )?;
        *st.position().1 = end;
    }
    Ok(st)
}

/// Open-time recovery: cut torn tails of both journals.
pub(crate) fn recover(inner: &Inner) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, LOCK, true)?;
    *lock_mutex(&inner.metrics) = MetricsState::default();
    *lock_mutex(&inner.patterns) = PatternsState::default();
    drop(refresh(inner, &inner.metrics, true)?);
    drop(refresh(inner, &inner.patterns, true)?);
    Ok(())
}

pub(crate) fn to_line<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec(value)
        .map_err(|e| Error::backend("encoding a record as JSON", Some(e.into())))?;
    v.push(b'\n');
    Ok(v)
}

pub(crate) fn append_to(inner: &Inner, name: &str, bytes: &[u8]) -> Result<Option<SyncTicket>> {
    let path = journal_path(inner, name)?;
    Ok(fsutil::append(&path, bytes, inner.durability, &inner.syncer)?.0)
}

pub(crate) fn sync_after(
    inner: &Inner,
    guard: fsutil::LockGuard,
    ticket: Option<SyncTicket>,
) -> Result<()> {
    drop(guard);
    if let Some(t) = ticket {
        inner.syncer.sync(t)?;
    }
    Ok(())
}

#[async_trait]
impl MetricsRepository for FileStore {
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        metric.validate()?;
        self.inner
            .blocking(move |inner| {
                let g = fsutil::take_lock(&inner.root, LOCK, true)?;
                let st = refresh(inner, &inner.metrics, true)?;
                match st.metrics.get(&metric.run_id) {
                    Some(s) if s.same_content(&metric) => return Ok(Written::unchanged(s.clone())),
                    Some(_) => return Err(metric_conflict(&metric.run_id)),
                    None => {}
                }
                drop(st);
                let t = append_to(
                    inner,
                    MetricsState::NAME,
                    &to_line(&MetricLine::Put {
                        metric: metric.clone(),
                    })?,
                )?;
                sync_after(inner, g, t)?;
                Ok(Written::inserted(metric))
            })
            .await
    }

    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        metrics.iter().try_for_each(ExecutionMetric::validate)?;
        self.inner
            .blocking(move |inner| {
                let g = fsutil::take_lock(&inner.root, LOCK, true)?;
                let st = refresh(inner, &inner.metrics, true)?;
                let mut outcome = BulkOutcome::default();
                let mut fresh: BTreeMap<RunId, &ExecutionMetric> = BTreeMap::new();
                let mut bytes = Vec::new();
                for m in &metrics {
                    match st
                        .metrics
                        .get(&m.run_id)
                        .or_else(|| fresh.get(&m.run_id).copied())
                    {
                        Some(s) if s.same_content(m) => outcome.unchanged += 1,
                        Some(_) => return Err(metric_conflict(&m.run_id)),
                        None => {
                            outcome.inserted += 1;
                            fresh.insert(m.run_id.clone(), m);
                            bytes.extend(to_line(&MetricLine::Put { metric: m.clone() })?);
                        }
                    }
                }
                drop(st);
                let t = if bytes.is_empty() {
                    None
                } else {
                    append_to(inner, MetricsState::NAME, &bytes)?
                };
                sync_after(inner, g, t)?;
                Ok(outcome)
            })
            .await
    }

    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.metrics, false)?;
                st.metrics
                    .get(&run_id)
                    .cloned()
                    .ok_or_else(|| Error::not_found(format!("metric of run {run_id}")))
            })
            .await
    }

    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        runstore_core::validate_delete_batch("run_ids", run_ids)?;
        let ids = run_ids.to_vec();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.metrics, false)?;
                Ok(ids.iter().map(|id| st.metrics.get(id).cloned()).collect())
            })
            .await
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<MetricCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.metrics, false)?;
                let lower = std::ops::Bound::Excluded(after.map(|a| a.run_id));
                let range: Box<dyn Iterator<Item = &ExecutionMetric>> = match lower {
                    std::ops::Bound::Excluded(Some(ref id)) => Box::new(
                        st.metrics
                            .range((
                                std::ops::Bound::Excluded(id.clone()),
                                std::ops::Bound::Unbounded,
                            ))
                            .map(|(_, m)| m),
                    ),
                    _ => Box::new(st.metrics.values()),
                };
                let items: Vec<ExecutionMetric> = range
                    .filter(|m| query.matches(m))
                    .take(limit + 1)
                    .cloned()
                    .collect();
                Ok(Page::from_overfetch(items, limit, |m| MetricCursor {
                    run_id: m.run_id.clone(),
                }))
            })
            .await
    }

    async fn delete(&self, run_id: &RunId) -> Result<()> {
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| {
                let g = fsutil::take_lock(&inner.root, LOCK, true)?;
                let st = refresh(inner, &inner.metrics, true)?;
                if !st.metrics.contains_key(&run_id) {
                    return Err(Error::not_found(format!("metric of run {run_id}")));
                }
                drop(st);
                let t = append_to(
                    inner,
                    MetricsState::NAME,
                    &to_line(&MetricLine::Delete { run_id })?,
                )?;
                sync_after(inner, g, t)
            })
            .await
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        let workflow_id = workflow_id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.metrics, false)?;
                st.summaries.summary(&workflow_id, &query)
            })
            .await
    }

    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        pattern.validate()?;
        self.inner
            .blocking(move |inner| {
                let g = fsutil::take_lock(&inner.root, LOCK, true)?;
                let st = refresh(inner, &inner.patterns, true)?;
                let existed = st.patterns.contains_key(&pattern.id);
                drop(st);
                let t = append_to(inner, PatternsState::NAME, &to_line(&pattern)?)?;
                sync_after(inner, g, t)?;
                Ok(Written {
                    record: pattern,
                    inserted: !existed,
                    deferred: false,
                })
            })
            .await
    }

    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.patterns, false)?;
                st.patterns
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Error::not_found(format!("pattern {id}")))
            })
            .await
    }

    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        let limit = validate_limit(query.limit)?;
        let before: Option<PatternCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh(inner, &inner.patterns, false)?;
                Ok(Page::descending_before(
                    st.patterns.values().filter(|p| query.matches(p)),
                    limit,
                    before.as_ref(),
                    PatternCursor::of,
                ))
            })
            .await
    }

    async fn delete_many(&self, run_ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        runstore_core::validate_delete_batch("run_ids", run_ids)?;
        let ids = run_ids.to_vec();
        self.inner
            .blocking(move |inner| crate::lifecycle::delete_metrics(inner, &ids))
            .await
    }
}
