//! The run table: every stored run in memory, ordered by `(started_at,
//! id)` overall and per workflow and found by external key, and the queries
//! served from it. The journal module keeps it up to date.

use std::collections::{BTreeSet, HashMap};

use runstore_core::{
    Page, Result, Run, RunCursor, RunFilter, RunId, Timestamp, WorkflowId, external_key_of,
};

use super::journal::RunLine;
use crate::fsutil;

/// A run's place in the table: newest last.
type OrderKey = (Timestamp, RunId);

/// The run table in memory, valid for the journal file `file` up to `offset`.
#[derive(Default)]
pub(crate) struct RunsState {
    pub(super) file: Option<fsutil::FileId>,
    pub(super) offset: u64,
    /// Journal bytes covered by the index file on disk.
    pub(super) indexed: u64,
    /// The index must be rewritten at the next exclusive lock.
    pub(super) index_dirty: bool,
    pub(crate) runs: HashMap<RunId, Run>,
    pub(super) order: BTreeSet<OrderKey>,
    by_workflow: HashMap<WorkflowId, BTreeSet<OrderKey>>,
    /// `(workflow, external key)` to the run holding it.
    by_key: HashMap<(WorkflowId, String), RunId>,
}

impl RunsState {
    pub(super) fn clear(&mut self) {
        *self = RunsState::default();
    }

    /// The index must be (re)written: it is missing or stale, or the
    /// journal outgrew it.
    pub(super) fn index_due(&self) -> bool {
        let outgrown = self.offset - self.indexed > (1 << 20).max(self.indexed / 2);
        self.index_dirty || outgrown
    }

    pub(super) fn put(&mut self, run: Run) {
        self.remove(&run.id.clone());
        let key = (run.started_at, run.id.clone());
        self.order.insert(key.clone());
        self.by_workflow
            .entry(run.workflow_id.clone())
            .or_default()
            .insert(key);
        if let Some((w, k)) = external_key_of(&run) {
            self.by_key
                .insert((w.clone(), k.to_owned()), run.id.clone());
        }
        self.runs.insert(run.id.clone(), run);
    }

    /// The run holding `key` of `workflow`.
    pub(super) fn by_key(&self, workflow: &WorkflowId, key: &str) -> Option<&Run> {
        self.by_key
            .get(&(workflow.clone(), key.to_owned()))
            .and_then(|id| self.runs.get(id))
    }

    fn remove(&mut self, id: &RunId) {
        if let Some(old) = self.runs.remove(id) {
            let key = (old.started_at, old.id.clone());
            self.order.remove(&key);
            if let Some(set) = self.by_workflow.get_mut(&old.workflow_id) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_workflow.remove(&old.workflow_id);
                }
            }
            if let Some((w, k)) = external_key_of(&old) {
                let pair = (w.clone(), k.to_owned());
                if self.by_key.get(&pair) == Some(&old.id) {
                    self.by_key.remove(&pair);
                }
            }
        }
    }

    pub(super) fn apply(&mut self, line: RunLine) {
        match line {
            RunLine::Put { run } => self.put(run),
            RunLine::Delete { id } => self.remove(&id),
        }
    }

    /// The order keys of every run, or of `workflow`'s runs; `None` if
    /// `workflow` has none.
    fn ordered(&self, workflow: Option<&WorkflowId>) -> Option<&BTreeSet<OrderKey>> {
        match workflow {
            Some(w) => self.by_workflow.get(w),
            None => Some(&self.order),
        }
    }

    /// A page of the runs matching `f`, newest first, after the cursor
    /// `before`.
    pub(super) fn query(
        &self,
        f: &RunFilter,
        before: Option<RunCursor>,
        limit: usize,
    ) -> Result<Page<Run>> {
        let Some(set) = self.ordered(f.workflow_id.as_ref()) else {
            return Ok(Page::empty());
        };
        // Walk newest first, from just below the cursor and the
        // `started_before` bound, stopping at `started_from`.
        let mut upper: Option<OrderKey> = before.map(|b| (b.started_at, b.id));
        if let Some(b) = f.started_before {
            // "-" is the least valid run id, so every run started at
            // `b` or later lies at or above this key.
            let bound = (b, RunId::new("-")?);
            if upper.as_ref().is_none_or(|u| bound < *u) {
                upper = Some(bound);
            }
        }
        let iter: Box<dyn Iterator<Item = &OrderKey>> = match upper {
            Some(u) => Box::new(set.range(..u).rev()),
            None => Box::new(set.iter().rev()),
        };
        let mut items = Vec::new();
        for (at, id) in iter {
            if f.started_before.is_some_and(|b| *at >= b) {
                continue;
            }
            if f.started_from.is_some_and(|from| *at < from) {
                break;
            }
            if let Some(run) = self.runs.get(id)
                && f.matches(run)
            {
                items.push(run.clone());
                if items.len() > limit {
                    break;
                }
            }
        }
        Ok(Page::from_overfetch(items, limit, RunCursor::of))
    }

    /// How many runs match `filter`.
    pub(super) fn count(&self, filter: &RunFilter) -> u64 {
        let Some(set) = self.ordered(filter.workflow_id.as_ref()) else {
            return 0;
        };
        set.iter()
            .filter_map(|(_, id)| self.runs.get(id))
            .filter(|r| filter.matches(r))
            .count() as u64
    }
}
