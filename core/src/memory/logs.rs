use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::id::RunId;
use crate::lifecycle::Deleted;
use crate::logs::{
    Appended, Event, EventCursor, EventQuery, LogRepository, NewEvent, Run, RunCursor, RunFilter,
    RunQuery, RunUpdate, RunWithEvents,
};
use crate::page::{Page, validate_limit};
use crate::written::{BulkOutcome, Written};

/// In-memory [`LogRepository`].
#[derive(Debug, Default)]
pub struct MemoryLogs {
    runs: Mutex<BTreeMap<RunId, RunState>>,
}

#[derive(Debug, Clone)]
struct RunState {
    run: Run,
    events: Vec<Event>,
    keys: HashMap<String, u64>,
}

impl RunState {
    fn new(run: Run) -> Self {
        RunState {
            run,
            events: Vec::new(),
            keys: HashMap::new(),
        }
    }

    fn append(&mut self, event: NewEvent) -> Appended {
        if let Some(key) = &event.idempotency_key
            && let Some(&seq) = self.keys.get(key)
        {
            return Appended {
                seq,
                duplicate: true,
            };
        }
        let seq = self.events.len() as u64 + 1;
        if let Some(key) = &event.idempotency_key {
            self.keys.insert(key.clone(), seq);
        }
        self.events.push(event.into_event(self.run.id.clone(), seq));
        Appended {
            seq,
            duplicate: false,
        }
    }

    fn with_events(&self) -> RunWithEvents {
        RunWithEvents {
            run: self.run.clone(),
            events: self.events.clone(),
        }
    }
}

fn run_not_found(id: &RunId) -> Error {
    Error::not_found(format!("run {id}"))
}

/// The conflict message of a create or import that differs from what is stored.
pub(crate) fn run_conflict(id: &RunId) -> Error {
    Error::conflict(format!("run {id} is already stored with other content"))
}

#[async_trait]
impl LogRepository for MemoryLogs {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        let mut runs = lock(&self.runs);
        if let Some(state) = runs.get(&run.id) {
            if state.run.same_content(&run) {
                return Ok(Written::unchanged(state.run.clone()));
            }
            return Err(run_conflict(&run.id));
        }
        runs.insert(run.id.clone(), RunState::new(run.clone()));
        Ok(Written::inserted(run))
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        lock(&self.runs)
            .get(id)
            .map(|s| s.run.clone())
            .ok_or_else(|| run_not_found(id))
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let mut runs = lock(&self.runs);
        let state = runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
        let (next, _changed) = state.run.apply_update(&update)?;
        state.run = next.clone();
        Ok(next)
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        event.validate()?;
        let mut runs = lock(&self.runs);
        let state = runs.get_mut(run_id).ok_or_else(|| run_not_found(run_id))?;
        Ok(state.append(event))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let mut runs = lock(&self.runs);
        let state = runs.get_mut(run_id).ok_or_else(|| run_not_found(run_id))?;
        Ok(events.into_iter().map(|e| state.append(e)).collect())
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        // Input before existence (core/README.md): a bad limit or cursor is
        // InvalidInput even for a run that does not exist.
        validate_limit(query.limit)?;
        query.validate()?;
        if let Some(c) = &query.cursor {
            c.decode::<EventCursor>()?;
        }
        let runs = lock(&self.runs);
        let state = runs.get(run_id).ok_or_else(|| run_not_found(run_id))?;
        query.page_of(&state.events)
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        let before: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let runs = lock(&self.runs);
        Ok(Page::descending_before(
            runs.values()
                .map(|s| &s.run)
                .filter(|r| query.filter.matches(r)),
            limit,
            before.as_ref(),
            RunCursor::of,
        ))
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        Ok(lock(&self.runs)
            .values()
            .filter(|s| filter.matches(&s.run))
            .count() as u64)
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        lock(&self.runs)
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| run_not_found(id))
    }

    async fn import_runs(&self, batch: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        let mut ids = std::collections::HashSet::new();
        for r in &batch {
            r.validate()?;
            if !ids.insert(r.run.id.clone()) {
                return Err(Error::invalid(
                    "runs",
                    format!("run {} appears twice in one import batch", r.run.id),
                ));
            }
        }
        let mut runs = lock(&self.runs);
        // Check everything first: all or nothing.
        let mut outcome = BulkOutcome::default();
        for r in &batch {
            match runs.get(&r.run.id) {
                Some(state) if state.with_events().same_content(r) => outcome.unchanged += 1,
                Some(_) => return Err(run_conflict(&r.run.id)),
                None => outcome.inserted += 1,
            }
        }
        for r in batch {
            if runs.contains_key(&r.run.id) {
                continue;
            }
            let mut state = RunState::new(r.run);
            for e in r.events {
                if let Some(k) = &e.idempotency_key {
                    state.keys.insert(k.clone(), e.seq);
                }
                state.events.push(e);
            }
            runs.insert(state.run.id.clone(), state);
        }
        Ok(outcome)
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<Deleted<RunId>> {
        crate::lifecycle::validate_delete_batch("run_ids", ids)?;
        let mut runs = lock(&self.runs);
        Ok(Deleted::split(ids, |id| runs.remove(id).is_some()))
    }
}
