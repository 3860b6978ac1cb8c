use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::coordination::{
    Delivery, Lease, LeaseCursor, LeaseQuery, LeaseRequest, decide_lease_acquire,
    decide_lease_release, decide_run_create, external_key_conflict, external_key_of, key_not_found,
    validate_delivery_id, validate_external_key,
};
use crate::error::Result;
use crate::id::{RunId, WorkflowId};
use crate::lifecycle::Deleted;
use crate::logs::{
    Appended, Event, EventCursor, EventQuery, LogRepository, NewEvent, Run, RunFilter, RunQuery,
    RunUpdate, RunWithEvents, run_conflict, run_not_found,
};
use crate::page::{Page, validate_limit};
use crate::timestamp::Timestamp;
use crate::written::{BulkOutcome, Written};

/// In-memory [`LogRepository`]. Leases expire by its [`ManualClock`]
/// (the system clock unless a test moves it).
#[derive(Debug, Default)]
pub struct MemoryLogs {
    runs: Mutex<BTreeMap<RunId, RunState>>,
    /// `(workflow, external key)` to run.
    keys: Mutex<HashMap<(WorkflowId, String), RunId>>,
    leases: Mutex<BTreeMap<String, Lease>>,
    deliveries: Mutex<HashMap<String, Delivery>>,
    clock: ManualClock,
}

impl MemoryLogs {
    /// An empty store whose leases and deliveries follow `clock`.
    pub fn with_clock(clock: ManualClock) -> Self {
        MemoryLogs {
            clock,
            ..Default::default()
        }
    }
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
                deferred: false,
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
            deferred: false,
        }
    }

    fn with_events(&self) -> RunWithEvents {
        RunWithEvents {
            run: self.run.clone(),
            events: self.events.clone(),
        }
    }
}

#[async_trait]
impl LogRepository for MemoryLogs {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        let mut runs = lock(&self.runs);
        let mut keys = lock(&self.keys);
        let key = external_key_of(&run).map(|(w, k)| (w.clone(), k.to_owned()));
        let by_key = key
            .as_ref()
            .and_then(|k| keys.get(k))
            .and_then(|id| runs.get(id))
            .map(|s| &s.run);
        let by_id = runs.get(&run.id).map(|s| &s.run);
        let written = decide_run_create(run, by_id, by_key)?;
        if written.inserted {
            if let Some(k) = key {
                keys.insert(k, written.record.id.clone());
            }
            runs.insert(
                written.record.id.clone(),
                RunState::new(written.record.clone()),
            );
        }
        Ok(written)
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
        let runs = lock(&self.runs);
        query.page_of(runs.values().map(|s| &s.run))
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        Ok(lock(&self.runs)
            .values()
            .filter(|s| filter.matches(&s.run))
            .count() as u64)
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        let mut runs = lock(&self.runs);
        let state = runs.remove(id).ok_or_else(|| run_not_found(id))?;
        self.forget_key(&state.run);
        Ok(())
    }

    async fn import_runs(&self, batch: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        RunWithEvents::validate_batch(&batch)?;
        let mut runs = lock(&self.runs);
        let mut keys = lock(&self.keys);
        // Check everything first: all or nothing.
        let mut outcome = BulkOutcome::default();
        for r in &batch {
            match runs.get(&r.run.id) {
                Some(state) if state.with_events().same_content(r) => outcome.unchanged += 1,
                Some(_) => return Err(run_conflict(&r.run.id)),
                None => {
                    if let Some((w, k)) = external_key_of(&r.run)
                        && let Some(holder) = keys.get(&(w.clone(), k.to_owned()))
                    {
                        return Err(external_key_conflict(&r.run, holder));
                    }
                    outcome.inserted += 1
                }
            }
        }
        for r in batch {
            if runs.contains_key(&r.run.id) {
                continue;
            }
            if let Some((w, k)) = external_key_of(&r.run) {
                keys.insert((w.clone(), k.to_owned()), r.run.id.clone());
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
        Ok(Deleted::split(ids, |id| match runs.remove(id) {
            Some(state) => {
                self.forget_key(&state.run);
                true
            }
            None => false,
        }))
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        validate_external_key(key)?;
        let runs = lock(&self.runs);
        lock(&self.keys)
            .get(&(workflow.clone(), key.to_owned()))
            .and_then(|id| runs.get(id))
            .map(|s| s.run.clone())
            .ok_or_else(|| key_not_found(workflow, key))
    }

    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        request.validate()?;
        let mut leases = lock(&self.leases);
        let lease = decide_lease_acquire(leases.get(&request.name), &request, self.clock.now())?;
        leases.insert(lease.name.clone(), lease.clone());
        Ok(lease)
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        let mut leases = lock(&self.leases);
        let lease = decide_lease_release(leases.get(name), name, token, self.clock.now())?;
        leases.insert(lease.name.clone(), lease);
        Ok(())
    }

    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        let now = self.clock.now();
        let leases = lock(&self.leases);
        super::page_after(
            leases.values().filter(|l| query.matches(l, now)).cloned(),
            query.limit,
            query.cursor.as_ref(),
            LeaseCursor::of,
        )
    }

    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        validate_delivery_id(id)?;
        let mut deliveries = lock(&self.deliveries);
        if let Some(d) = deliveries.get(id) {
            return Ok(Written::unchanged(d.clone()));
        }
        let d = Delivery {
            id: id.to_owned(),
            recorded_at: self.clock.now(),
        };
        deliveries.insert(id.to_owned(), d.clone());
        Ok(Written::inserted(d))
    }

    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        let mut deliveries = lock(&self.deliveries);
        let before = deliveries.len();
        deliveries.retain(|_, d| d.recorded_at >= recorded_before);
        Ok((before - deliveries.len()) as u64)
    }
}

impl MemoryLogs {
    fn forget_key(&self, run: &Run) {
        if let Some((w, k)) = external_key_of(run) {
            lock(&self.keys).remove(&(w.clone(), k.to_owned()));
        }
    }
}

/// A clock that reads the system clock plus an offset a test can move
/// forward, so lease expiry can be checked without waiting. Clones share
/// the offset.
///
/// ```
/// use std::time::Duration;
/// use runstore_core::memory::ManualClock;
/// let clock = ManualClock::default();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert!(clock.now().as_micros() - before.as_micros() >= 3_600_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    offset_micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// The system clock plus the offset.
    pub fn now(&self) -> Timestamp {
        Timestamp::now().saturating_add_micros(self.offset_micros.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }
}
