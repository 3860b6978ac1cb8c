//! Metrics and patterns: `metrics/metrics.ndjson` and
//! `metrics/patterns.ndjson`, journals where the latest line for a key wins,
//! cached in memory and checked against the file length under the lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use runstore_core::{
    BulkOutcome, Error, ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository,
    MetricsSummary, Page, Pattern, PatternCursor, PatternId, PatternQuery, Result, RunId,
    SummaryQuery, WorkflowId, Written, metric_conflict, validate_limit,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, SyncTicket, file_id, lock_mutex};
use crate::journal_index::{self, IndexGuard};
use crate::metric_index::{self, MetricIndex};
use crate::{FileStore, Inner};

pub(crate) const LOCK: &str = "metrics.lock";

/// One line of `metrics/metrics.ndjson`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum MetricLine {
    Put { metric: ExecutionMetric },
    Delete { run_id: RunId },
}

/// The metric journal's file name under `metrics/`.
pub(crate) const METRICS_JOURNAL: &str = "metrics.ndjson";

/// A journal replayed into memory, valid for `file` up to `offset`.
pub(crate) trait Journal: Default {
    type Line: DeserializeOwned;
    const NAME: &'static str;
    fn apply(&mut self, line: Self::Line);
    fn position(&mut self) -> (&mut Option<fsutil::FileId>, &mut u64);
}

/// The metric index brought up to date with the journal (see
/// [`crate::journal_index`]); under the exclusive lock a torn tail is cut.
pub(crate) fn refresh_metrics(inner: &Inner, exclusive: bool) -> Result<IndexGuard<'_>> {
    journal_index::refresh::<MetricIndex>(inner, &inner.metrics, exclusive)
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
    journal_index::reload(&inner.metrics);
    *lock_mutex(&inner.patterns) = PatternsState::default();
    drop(refresh_metrics(inner, true)?);
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
                let st = refresh_metrics(inner, true)?;
                match metric_index::get(&st, &metric.run_id)? {
                    Some(s) if s.same_content(&metric) => return Ok(Written::unchanged(s)),
                    Some(_) => return Err(metric_conflict(&metric.run_id)),
                    None => {}
                }
                drop(st);
                let t = append_to(
                    inner,
                    METRICS_JOURNAL,
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
                let st = refresh_metrics(inner, true)?;
                let mut outcome = BulkOutcome::default();
                let mut fresh: BTreeMap<RunId, &ExecutionMetric> = BTreeMap::new();
                let mut bytes = Vec::new();
                for m in &metrics {
                    let stored = match fresh.get(&m.run_id) {
                        Some(f) => Some((*f).clone()),
                        None => metric_index::get(&st, &m.run_id)?,
                    };
                    match stored {
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
                    append_to(inner, METRICS_JOURNAL, &bytes)?
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
                let st = refresh_metrics(inner, false)?;
                metric_index::get(&st, &run_id)?
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
                let st = refresh_metrics(inner, false)?;
                ids.iter().map(|id| metric_index::get(&st, id)).collect()
            })
            .await
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<MetricCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let st = refresh_metrics(inner, false)?;
                let after = after.map(|a| a.run_id);
                let items = metric_index::list(&st, &query, after.as_ref(), limit)?;
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
                let st = refresh_metrics(inner, true)?;
                if !metric_index::contains(&st, &run_id)? {
                    return Err(Error::not_found(format!("metric of run {run_id}")));
                }
                drop(st);
                let t = append_to(
                    inner,
                    METRICS_JOURNAL,
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
                let st = refresh_metrics(inner, false)?;
                let mut follower = lock_mutex(&inner.summaries);
                follower.follow(inner, &st)?;
                follower.counters.summary(&workflow_id, &query)
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
