use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{lock, page_after};
use crate::error::{Error, Result};
use crate::id::{PatternId, RunId, WorkflowId};
use crate::metrics::{
    ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository, MetricsSummary, Pattern,
    PatternCursor, PatternQuery, SummaryQuery, metric_conflict,
};
use crate::page::{Page, validate_limit};
use crate::summary::SummaryIndex;
use crate::written::{BulkOutcome, Written};

/// In-memory [`MetricsRepository`].
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    metrics: BTreeMap<RunId, ExecutionMetric>,
    summaries: SummaryIndex,
    patterns: BTreeMap<PatternId, Pattern>,
}

#[async_trait]
impl MetricsRepository for MemoryMetrics {
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        metric.validate()?;
        let mut st = lock(&self.state);
        match st.metrics.get(&metric.run_id) {
            Some(stored) if stored.same_content(&metric) => Ok(Written::unchanged(stored.clone())),
            Some(_) => Err(metric_conflict(&metric.run_id)),
            None => {
                st.summaries.insert(&metric);
                st.metrics.insert(metric.run_id.clone(), metric.clone());
                Ok(Written::inserted(metric))
            }
        }
    }

    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        metrics.iter().try_for_each(ExecutionMetric::validate)?;
        let mut st = lock(&self.state);
        let mut outcome = BulkOutcome::default();
        let mut fresh: BTreeMap<RunId, ExecutionMetric> = BTreeMap::new();
        for m in metrics {
            let stored = st.metrics.get(&m.run_id).or_else(|| fresh.get(&m.run_id));
            match stored {
                Some(s) if s.same_content(&m) => outcome.unchanged += 1,
                Some(_) => return Err(metric_conflict(&m.run_id)),
                None => {
                    outcome.inserted += 1;
                    fresh.insert(m.run_id.clone(), m);
                }
            }
        }
        for m in fresh.values() {
            st.summaries.insert(m);
        }
        st.metrics.extend(fresh);
        Ok(outcome)
    }

    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        lock(&self.state)
            .metrics
            .get(run_id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("metric of run {run_id}")))
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        let st = lock(&self.state);
        page_after(
            st.metrics.values().filter(|m| query.matches(m)).cloned(),
            query.limit,
            query.cursor.as_ref(),
            |m| MetricCursor {
                run_id: m.run_id.clone(),
            },
        )
    }

    async fn delete(&self, run_id: &RunId) -> Result<()> {
        let mut st = lock(&self.state);
        let gone = st
            .metrics
            .remove(run_id)
            .ok_or_else(|| Error::not_found(format!("metric of run {run_id}")))?;
        st.summaries.remove(&gone);
        Ok(())
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        lock(&self.state).summaries.summary(workflow_id, &query)
    }

    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        pattern.validate()?;
        let mut st = lock(&self.state);
        let existed = st
            .patterns
            .insert(pattern.id.clone(), pattern.clone())
            .is_some();
        Ok(Written {
            record: pattern,
            inserted: !existed,
            deferred: false,
        })
    }

    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        lock(&self.state)
            .patterns
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("pattern {id}")))
    }

    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        let limit = validate_limit(query.limit)?;
        let before: Option<PatternCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let st = lock(&self.state);
        Ok(Page::descending_before(
            st.patterns.values().filter(|p| query.matches(p)),
            limit,
            before.as_ref(),
            PatternCursor::of,
        ))
    }

    async fn delete_many(&self, run_ids: &[RunId]) -> Result<crate::Deleted<RunId>> {
        crate::lifecycle::validate_delete_batch("run_ids", run_ids)?;
        let mut st = lock(&self.state);
        let st = &mut *st;
        Ok(crate::Deleted::split(run_ids, |id| {
            match st.metrics.remove(id) {
                Some(gone) => {
                    st.summaries.remove(&gone);
                    true
                }
                None => false,
            }
        }))
    }
}
