//! Runs and their events: the trait [`LogRepository`] and its data types.

use std::fmt::{self, Debug};
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::coordination::{Delivery, Lease, LeaseQuery, LeaseRequest};
use crate::digest::canonical_json;
use crate::error::{Error, Result};
use crate::id::{RunId, Version, WorkflowId};
use crate::lifecycle::Deleted;
use crate::page::{Cursor, Page};
use crate::text::{validate_json, validate_label};
use crate::timestamp::Timestamp;
use crate::written::{BulkOutcome, Written};

/// A JSON object: free attributes and summaries of a run.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// The status of a run. It only moves forward:
/// `pending -> running -> succeeded | failed | cancelled`
/// (`pending` may also finish directly, e.g. a cancelled queued run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Created, not started.
    Pending,
    /// Started, not finished.
    Running,
    /// Finished well. Terminal.
    Succeeded,
    /// Finished badly. Terminal.
    Failed,
    /// Stopped before finishing. Terminal.
    Cancelled,
}

impl RunStatus {
    /// Every status, in order.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Succeeded, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The lowercase name, as stored by every backend.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    fn rank(self) -> u8 {
        match self {
            RunStatus::Pending => 0,
            RunStatus::Running => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "status",
                    format!(
                        "must be one of pending, running, succeeded, failed, cancelled; got {}",
                        crate::text::shown(s)
                    ),
                )
            })
    }
}

/// One run of a workflow version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The run.
    pub id: RunId,
    /// The workflow it runs.
    pub workflow_id: WorkflowId,
    /// The version it runs.
    pub workflow_version: Version,
    /// Where it is.
    pub status: RunStatus,
    /// What started it, e.g. `manual`, `schedule`, `webhook`.
    pub trigger: String,
    /// When the run entered the system (also for `pending` runs). Runs are
    /// ordered and filtered by it.
    pub started_at: Timestamp,
    /// When it reached a terminal status; set exactly for terminal runs.
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    /// Free attributes given at creation.
    #[serde(default)]
    pub attributes: JsonMap,
    /// Summaries, e.g. outputs or totals; replaced by status updates that
    /// carry them, frozen once the run is terminal.
    #[serde(default)]
    pub summaries: JsonMap,
    /// An outside id the run belongs to (a CI run, a webhook subject),
    /// unique per workflow: creating a run whose key is taken returns the
    /// stored run (docs/DESIGN.md section 11). A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_key: Option<String>,
}

impl Run {
    /// A `pending` run started now, with a generated id and trigger `manual`.
    pub fn new(workflow_id: WorkflowId, workflow_version: Version) -> Self {
        Run {
            id: RunId::generate(),
            workflow_id,
            workflow_version,
            status: RunStatus::Pending,
            trigger: "manual".into(),
            started_at: Timestamp::now(),
            ended_at: None,
            attributes: JsonMap::new(),
            summaries: JsonMap::new(),
            external_key: None,
        }
    }

    /// The same run with an external key (see [`Run::external_key`]).
    ///
    /// ```
    /// use runstore_core::{Run, Version, WorkflowId};
    /// let run = Run::new(WorkflowId::new("deploy").unwrap(), Version::FIRST)
    ///     .with_external_key("github-run-9912");
    /// assert_eq!(run.external_key.as_deref(), Some("github-run-9912"));
    /// ```
    pub fn with_external_key(mut self, key: impl Into<String>) -> Self {
        self.external_key = Some(key.into());
        self
    }

    /// Checks the record's own rules: trigger label, JSON free of NUL, and
    /// `ended_at` set exactly when terminal and not before `started_at`.
    pub fn validate(&self) -> Result<()> {
        validate_label("trigger", &self.trigger)?;
        if let Some(key) = &self.external_key {
            crate::coordination::validate_external_key(key)?;
        }
        validate_json(
            "attributes",
            &serde_json::Value::Object(self.attributes.clone()),
        )?;
        validate_json(
            "summaries",
            &serde_json::Value::Object(self.summaries.clone()),
        )?;
        match (self.status.is_terminal(), self.ended_at) {
            (true, None) => Err(Error::invalid(
                "ended_at",
                format!("run {} is {} and needs an end time", self.id, self.status),
            )),
            (false, Some(_)) => Err(Error::invalid(
                "ended_at",
                format!(
                    "run {} is {} and cannot have an end time",
                    self.id, self.status
                ),
            )),
            (_, Some(end)) if end < self.started_at => Err(Error::invalid(
                "ended_at",
                format!(
                    "{end} is before the start {} of run {}",
                    self.started_at, self.id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Equality of stored content, comparing JSON canonically.
    pub fn same_content(&self, other: &Run) -> bool {
        self.id == other.id
            && self.workflow_id == other.workflow_id
            && self.workflow_version == other.workflow_version
            && self.status == other.status
            && self.trigger == other.trigger
            && self.started_at == other.started_at
            && self.ended_at == other.ended_at
            && self.external_key == other.external_key
            && json_map_eq(&self.attributes, &other.attributes)
            && json_map_eq(&self.summaries, &other.summaries)
    }

    /// Applies a status update to this run, following the forward-only rules
    /// of docs/DESIGN.md section 4. Returns the run as it must be stored, and
    /// whether anything changed. Every backend calls this, under its lock or
    /// transaction, so the rules are the same everywhere.
    pub fn apply_update(&self, update: &RunUpdate) -> Result<(Run, bool)> {
        update.validate()?;
        if self.status.is_terminal() {
            if update.status == self.status {
                return Ok((self.clone(), false));
            }
            return Err(Error::conflict(format!(
                "run {} already finished as {} at {}; cannot become {}",
                self.id,
                self.status,
                self.ended_at.map(|t| t.to_string()).unwrap_or_default(),
                update.status
            )));
        }
        if update.status.rank() < self.status.rank() {
            return Err(Error::conflict(format!(
                "run {} is {}; status moves forward only and cannot become {}",
                self.id, self.status, update.status
            )));
        }
        let mut next = self.clone();
        next.status = update.status;
        if update.status.is_terminal() {
            let end = update.ended_at.unwrap_or_else(Timestamp::now);
            if end < self.started_at {
                return Err(Error::invalid(
                    "ended_at",
                    format!(
                        "{end} is before the start {} of run {}",
                        self.started_at, self.id
                    ),
                ));
            }
            next.ended_at = Some(end);
        }
        if let Some(summaries) = &update.summaries {
            next.summaries = summaries.clone();
        }
        let changed = !next.same_content(self);
        Ok((next, changed))
    }

    /// How `self` (a run as one store holds it) is brought to `later` (the
    /// same run as another store holds it, e.g. a live source that kept
    /// going after a first migration pass) with the forward-only updates of
    /// [`Run::apply_update`]: `Ok(None)` when they are equal, the update
    /// when `later` is a legal forward state of `self` (a later status, an
    /// end time, new summaries while not finished), and
    /// [`Error::Conflict`] naming the difference otherwise.
    ///
    /// ```
    /// use runstore_core::{Run, RunStatus, RunUpdate, Timestamp, Version, WorkflowId};
    /// let copied = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    /// let (mut later, _) = copied.apply_update(&RunUpdate::running()).unwrap();
    /// let end = Timestamp::now();
    /// (later, _) = later.apply_update(&RunUpdate::finished(RunStatus::Succeeded, end)).unwrap();
    /// let update = copied.forward_to(&later).unwrap().unwrap();
    /// assert!(copied.apply_update(&update).unwrap().0.same_content(&later));
    /// // Backwards is a contradiction.
    /// assert!(later.forward_to(&copied).is_err());
    /// ```
    pub fn forward_to(&self, later: &Run) -> Result<Option<RunUpdate>> {
        if self.same_content(later) {
            return Ok(None);
        }
        let fixed = self.id == later.id
            && self.workflow_id == later.workflow_id
            && self.workflow_version == later.workflow_version
            && self.trigger == later.trigger
            && self.started_at == later.started_at
            && self.external_key == later.external_key
            && json_map_eq(&self.attributes, &later.attributes);
        let update = RunUpdate {
            status: later.status,
            ended_at: later.ended_at,
            summaries: Some(later.summaries.clone()),
        };
        let reached = fixed
            && self
                .apply_update(&update)
                .is_ok_and(|(next, _)| next.same_content(later));
        if reached {
            Ok(Some(update))
        } else {
            Err(Error::conflict(format!(
                "run {} is {} here and {} there; no forward-only update leads from one to the other",
                self.id, self.status, later.status
            )))
        }
    }
}

/// The error of a run that does not exist, worded alike by every backend.
pub fn run_not_found(id: &RunId) -> Error {
    Error::not_found(format!("run {id}"))
}

/// The conflict of a create or import that differs from what is stored,
/// worded alike by every backend.
pub fn run_conflict(id: &RunId) -> Error {
    Error::conflict(format!("run {id} is already stored with other content"))
}

/// Compares two JSON maps by canonical text.
pub(crate) fn json_map_eq(a: &JsonMap, b: &JsonMap) -> bool {
    a.len() == b.len()
        && canonical_json(&serde_json::Value::Object(a.clone()))
            == canonical_json(&serde_json::Value::Object(b.clone()))
}

/// A status change for [`LogRepository::update_status`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunUpdate {
    /// The new status.
    pub status: RunStatus,
    /// The end time, for a terminal status; now if not given.
    pub ended_at: Option<Timestamp>,
    /// New summaries, replacing the stored ones; kept if not given.
    pub summaries: Option<JsonMap>,
}

impl RunUpdate {
    /// Moves to `running`.
    pub fn running() -> Self {
        RunUpdate {
            status: RunStatus::Running,
            ended_at: None,
            summaries: None,
        }
    }

    /// Finishes with a terminal status at `ended_at`.
    pub fn finished(status: RunStatus, ended_at: Timestamp) -> Self {
        RunUpdate {
            status,
            ended_at: Some(ended_at),
            summaries: None,
        }
    }

    setters! {
        /// Sets the summaries.
        with_summaries(summaries: JsonMap) => summaries = Some(summaries);
    }

    /// An end time only with a terminal status; summaries free of NUL.
    pub fn validate(&self) -> Result<()> {
        if !self.status.is_terminal() && self.ended_at.is_some() {
            return Err(Error::invalid(
                "ended_at",
                format!("status {} cannot have an end time", self.status),
            ));
        }
        if let Some(s) = &self.summaries {
            validate_json("summaries", &serde_json::Value::Object(s.clone()))?;
        }
        Ok(())
    }
}

/// An event to append; the store numbers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened, e.g. `step.started`.
    pub kind: String,
    /// When it happened.
    pub at: Timestamp,
    /// Details: any JSON.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// If set, appending the same key to the same run again stores nothing
    /// and returns the first append's sequence number (webhook redelivery).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl NewEvent {
    /// An event of `kind` now with `payload`.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        NewEvent {
            kind: kind.into(),
            at: Timestamp::now(),
            payload,
            idempotency_key: None,
        }
    }

    setters! {
        /// Sets the idempotency key.
        with_idempotency_key(key: impl Into<String>) => idempotency_key = Some(key.into());
        /// Sets the time.
        with_at(at: Timestamp) => at = at;
    }

    /// Kind and key are labels; payload free of NUL.
    pub fn validate(&self) -> Result<()> {
        validate_label("kind", &self.kind)?;
        if let Some(key) = &self.idempotency_key {
            validate_label("idempotency_key", key)?;
        }
        validate_json("payload", &self.payload)
    }

    /// The stored event this becomes with number `seq`.
    pub fn into_event(self, run_id: RunId, seq: u64) -> Event {
        Event {
            run_id,
            seq,
            kind: self.kind,
            at: self.at,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
        }
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its run.
    pub run_id: RunId,
    /// 1, 2, 3 … per run, in append order, without gaps.
    pub seq: u64,
    /// What happened.
    pub kind: String,
    /// When it happened.
    pub at: Timestamp,
    /// Details.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// The idempotency key it was appended with.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl Event {
    /// Equality of stored content, comparing JSON canonically.
    pub fn same_content(&self, other: &Event) -> bool {
        same_event_fields(self, other)
            && canonical_json(&self.payload) == canonical_json(&other.payload)
    }
}

/// The result of one append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The event's sequence number (the original one for a repeated key);
    /// 0 for a deferred append, which the store numbers when it drains.
    pub seq: u64,
    /// `true` if the idempotency key was already used and nothing was stored.
    pub duplicate: bool,
    /// `true` if the backend was unavailable and the event went to the
    /// logs outbox (docs/DESIGN.md section 10), stored when it drains.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
}

impl Appended {
    /// A new event stored as number `seq`.
    pub fn stored(seq: u64) -> Self {
        Appended {
            seq,
            duplicate: false,
            deferred: false,
        }
    }

    /// A repeated idempotency key: the first append's number, nothing stored.
    pub fn duplicate_of(seq: u64) -> Self {
        Appended {
            seq,
            duplicate: true,
            deferred: false,
        }
    }

    /// An event written to the outbox, numbered when it drains.
    pub fn deferred() -> Self {
        Appended {
            seq: 0,
            duplicate: false,
            deferred: true,
        }
    }
}

/// A run with all its events, for import and migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunWithEvents {
    /// The run.
    pub run: Run,
    /// Its events, numbered 1..=n in order.
    pub events: Vec<Event>,
}

impl RunWithEvents {
    /// Checks the run, and that events belong to it, are numbered 1..=n and
    /// use each idempotency key once.
    pub fn validate(&self) -> Result<()> {
        validate_run_events(&self.run, &self.events)
    }

    /// The kind of the tombstone events [`RunWithEvents::repaired`] puts
    /// where events were lost.
    pub const LOST_KIND: &'static str = "runstore.lost";

    /// This run with its events made importable after damage, and what was
    /// changed (empty when nothing was): events of another run or numbered
    /// 0 are dropped, of a number seen before the first is kept, events
    /// are put in number order, each hole in the numbering becomes a
    /// [`RunWithEvents::LOST_KIND`] tombstone (`payload` says which number,
    /// why, and `location`: where the original was stored; `at` is the time
    /// of the event before it), and an
    /// idempotency key used again is dropped from the later event. The run
    /// record itself is not changed: check it with [`Run::validate`].
    ///
    /// ```
    /// use runstore_core::{Event, NewEvent, Run, RunWithEvents, Version, WorkflowId};
    /// let run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    /// let e = |seq| NewEvent::new("step", serde_json::json!(seq)).into_event(run.id.clone(), seq);
    /// let damaged = RunWithEvents { run: run.clone(), events: vec![e(1), e(3)] };
    /// assert!(damaged.validate().is_err());
    /// let (fixed, notes) = damaged.repaired("runs.ndjson line 7");
    /// fixed.validate().unwrap();
    /// assert_eq!(fixed.events[1].kind, RunWithEvents::LOST_KIND);
    /// assert_eq!(notes.len(), 1);
    /// ```
    pub fn repaired(self, location: &str) -> (RunWithEvents, Vec<String>) {
        let RunWithEvents { run, events } = self;
        let mut notes = Vec::new();
        let mut by_seq: std::collections::BTreeMap<u64, Event> = std::collections::BTreeMap::new();
        for e in events {
            if e.run_id != run.id {
                notes.push(format!("dropped event {} of run {}", e.seq, e.run_id));
            } else if e.seq == 0 {
                notes.push("dropped an event numbered 0".to_string());
            } else {
                match by_seq.entry(e.seq) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        notes.push(format!("dropped a second event numbered {}", e.seq));
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(e);
                    }
                }
            }
        }
        let mut out: Vec<Event> = Vec::with_capacity(by_seq.len());
        let mut keys = std::collections::HashSet::new();
        let mut last_at = run.started_at;
        for (seq, mut e) in by_seq {
            while (out.len() as u64) + 1 < seq {
                let lost = out.len() as u64 + 1;
                notes.push(format!(
                    "event {lost} is lost: a tombstone stands in its place"
                ));
                out.push(Event {
                    run_id: run.id.clone(),
                    seq: lost,
                    kind: Self::LOST_KIND.to_string(),
                    at: last_at,
                    payload: serde_json::json!({
                        "seq": lost,
                        "reason": "not readable where it was stored",
                        "location": location,
                    }),
                    idempotency_key: None,
                });
            }
            if let Some(k) = &e.idempotency_key
                && !keys.insert(k.clone())
            {
                notes.push(format!("event {seq}: idempotency key used before, dropped"));
                e.idempotency_key = None;
            }
            last_at = e.at;
            out.push(e);
        }
        (RunWithEvents { run, events: out }, notes)
    }

    /// Checks an import batch, as every backend's `import_runs` does before
    /// writing anything: each run by [`RunWithEvents::validate`], no run id
    /// twice, no external key twice in one workflow.
    pub fn validate_batch(batch: &[RunWithEvents]) -> Result<()> {
        validate_run_batch(batch, |r| &r.run, RunWithEvents::validate)
    }

    /// Equality of stored content.
    pub fn same_content(&self, other: &RunWithEvents) -> bool {
        self.run.same_content(&other.run)
            && self.events.len() == other.events.len()
            && self
                .events
                .iter()
                .zip(&other.events)
                .all(|(a, b)| a.same_content(b))
    }
}

/// The fields of a stored event that the rules of an import batch read,
/// whatever form its payload is kept in ([`Event`],
/// [`crate::EncodedEvent`]): so each rule is written once.
pub(crate) trait EventFields {
    fn run_id(&self) -> &RunId;
    fn seq(&self) -> u64;
    fn kind(&self) -> &str;
    fn idempotency_key(&self) -> Option<&str>;
    fn at(&self) -> Timestamp;
    /// [`validate_json`] of the payload, naming field `payload`.
    fn validate_payload(&self) -> Result<()>;
}

/// An event as a backend builds it from a stored row, in either form:
/// [`Event`], or [`crate::EncodedEvent`] with the payload as the text
/// stored. A backend writes one conversion of its rows, generic over this,
/// for both.
pub trait StoredEvent: Sized {
    /// How the payload is kept: a [`serde_json::Value`], or
    /// [`crate::JsonText`]; read from the stored text with serde.
    type Payload: serde::de::DeserializeOwned;

    /// The event of these fields.
    fn from_parts(
        run_id: RunId,
        seq: u64,
        kind: String,
        at: Timestamp,
        payload: Self::Payload,
        idempotency_key: Option<String>,
    ) -> Self;
}

/// Implements [`EventFields`] and [`StoredEvent`] for an event type whose
/// fields are named as [`Event`]'s, its payload a `$payload`, with
/// `$check` checking the payload of `$e`.
macro_rules! event_fields {
    ($ty:ty, $payload:ty, |$e:ident| $check:expr) => {
        impl $crate::logs::StoredEvent for $ty {
            type Payload = $payload;

            fn from_parts(
                run_id: $crate::id::RunId,
                seq: u64,
                kind: String,
                at: $crate::timestamp::Timestamp,
                payload: $payload,
                idempotency_key: Option<String>,
            ) -> Self {
                Self {
                    run_id,
                    seq,
                    kind,
                    at,
                    payload,
                    idempotency_key,
                }
            }
        }

        impl $crate::logs::EventFields for $ty {
            fn run_id(&self) -> &$crate::id::RunId {
                &self.run_id
            }
            fn seq(&self) -> u64 {
                self.seq
            }
            fn kind(&self) -> &str {
                &self.kind
            }
            fn idempotency_key(&self) -> Option<&str> {
                self.idempotency_key.as_deref()
            }
            fn at(&self) -> $crate::timestamp::Timestamp {
                self.at
            }
            fn validate_payload(&self) -> $crate::error::Result<()> {
                let $e = self;
                $check
            }
        }
    };
}
pub(crate) use event_fields;

event_fields!(Event, serde_json::Value, |e| validate_json(
    "payload", &e.payload
));

/// Whether two events agree in every field but the payload, in either form.
pub(crate) fn same_event_fields(a: &impl EventFields, b: &impl EventFields) -> bool {
    a.run_id() == b.run_id()
        && a.seq() == b.seq()
        && a.kind() == b.kind()
        && a.at() == b.at()
        && a.idempotency_key() == b.idempotency_key()
}

/// [`RunWithEvents::validate`] of a run and its events in either form.
pub(crate) fn validate_run_events<E: EventFields>(run: &Run, events: &[E]) -> Result<()> {
    run.validate()?;
    let mut keys = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if e.run_id() != &run.id {
            return Err(Error::invalid(
                "events",
                format!(
                    "event {} belongs to run {}, not {}",
                    e.seq(),
                    e.run_id(),
                    run.id
                ),
            ));
        }
        let expected = i as u64 + 1;
        if e.seq() != expected {
            return Err(Error::invalid(
                "events",
                format!(
                    "run {}: event numbers must be 1..=n without gaps; expected {expected}, got {}",
                    run.id,
                    e.seq()
                ),
            ));
        }
        validate_label("kind", e.kind())?;
        e.validate_payload()?;
        if let Some(k) = e.idempotency_key() {
            validate_label("idempotency_key", k)?;
            if !keys.insert(k) {
                return Err(Error::invalid(
                    "events",
                    format!(
                        "run {}: idempotency key {} used twice",
                        run.id,
                        crate::text::shown(k)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// [`RunWithEvents::validate_batch`] of runs in either form: each run by
/// `validate`, no run id twice, no external key twice in one workflow.
pub(crate) fn validate_run_batch<T>(
    batch: &[T],
    run: impl Fn(&T) -> &Run,
    validate: impl Fn(&T) -> Result<()>,
) -> Result<()> {
    let mut ids = std::collections::HashSet::new();
    for r in batch {
        validate(r)?;
        let id = &run(r).id;
        if !ids.insert(id) {
            return Err(Error::invalid(
                "runs",
                format!("run {id} appears twice in one import batch"),
            ));
        }
    }
    crate::coordination::validate_batch_keys(batch.iter().map(run))
}

/// Which runs a query or count selects. Every set field must match.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Only this workflow version.
    pub workflow_version: Option<Version>,
    /// Only these statuses; empty means any.
    pub statuses: Vec<RunStatus>,
    /// Only runs started at or after this time.
    pub started_from: Option<Timestamp>,
    /// Only runs started strictly before this time.
    pub started_before: Option<Timestamp>,
    /// Only runs with this trigger.
    pub trigger: Option<String>,
    /// Only runs that ended at or after this time (so only terminal runs).
    pub ended_from: Option<Timestamp>,
    /// Only runs that ended strictly before this time (so only terminal
    /// runs): what retention selects.
    pub ended_before: Option<Timestamp>,
}

impl RunFilter {
    setters! {
        /// Only this workflow.
        workflow(id: WorkflowId) => workflow_id = Some(id);
        /// Only this version.
        version(version: Version) => workflow_version = Some(version);
        /// Only these statuses.
        statuses(statuses: impl IntoIterator<Item = RunStatus>) => statuses = statuses.into_iter().collect();
        /// Only runs with this trigger.
        trigger(trigger: impl Into<String>) => trigger = Some(trigger.into());
    }
    /// Only runs started in `[from, before)`.
    pub fn started_between(mut self, from: Option<Timestamp>, before: Option<Timestamp>) -> Self {
        self.started_from = from;
        self.started_before = before;
        self
    }

    /// Only runs that ended in `[from, before)`; either bound set selects
    /// terminal runs only.
    pub fn ended_between(mut self, from: Option<Timestamp>, before: Option<Timestamp>) -> Self {
        self.ended_from = from;
        self.ended_before = before;
        self
    }

    /// Checks the trigger label.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.trigger {
            validate_label("trigger", t)?;
        }
        Ok(())
    }

    /// Whether `run` passes this filter. The reference semantics every
    /// backend's SQL must match.
    pub fn matches(&self, run: &Run) -> bool {
        self.workflow_id
            .as_ref()
            .is_none_or(|w| *w == run.workflow_id)
            && self
                .workflow_version
                .is_none_or(|v| v == run.workflow_version)
            && (self.statuses.is_empty() || self.statuses.contains(&run.status))
            && self.started_from.is_none_or(|t| run.started_at >= t)
            && self.started_before.is_none_or(|t| run.started_at < t)
            && self.trigger.as_ref().is_none_or(|t| *t == run.trigger)
            && self
                .ended_from
                .is_none_or(|t| run.ended_at.is_some_and(|e| e >= t))
            && self
                .ended_before
                .is_none_or(|t| run.ended_at.is_some_and(|e| e < t))
    }
}

/// A page of runs: [`RunFilter`] plus paging. Ordered by `started_at`
/// descending, then run id descending (bytewise): newest first. With
/// [`oldest_first`](Self::oldest_first), the reverse.
///
/// ```
/// use runstore_core::{RunFilter, RunQuery};
/// // Every run, oldest first, 1,000 at a time (a copy in start order).
/// let q = RunQuery::new(RunFilter::default()).oldest_first().with_limit(1_000);
/// assert!(q.ascending);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunQuery {
    /// Which runs.
    pub filter: RunFilter,
    /// Page size, 1 to [`crate::MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
    /// Oldest first: `(started_at, id)` ascending, instead of descending.
    pub ascending: bool,
}

paged_query!(RunQuery {
    filter: RunFilter::default(),
    ascending: false,
});

impl RunQuery {
    /// A query of `filter`.
    pub fn new(filter: RunFilter) -> Self {
        RunQuery {
            filter,
            ..Default::default()
        }
    }

    /// Oldest first: `(started_at, id)` ascending. A copy that reads in
    /// this order writes each destination's indexes in key order.
    pub fn oldest_first(mut self) -> Self {
        self.ascending = true;
        self
    }

    /// Whether `run` comes after the cursor position `cursor` in this
    /// query's order.
    pub fn comes_after(&self, run: &Run, cursor: &RunCursor) -> bool {
        let key = (run.started_at, &run.id);
        let at = (cursor.started_at, &cursor.id);
        if self.ascending { key > at } else { key < at }
    }

    /// The reference: one page of the runs in `runs` (any order) that pass
    /// the filter, in this query's order after its cursor. The semantics
    /// every backend's query matches.
    pub fn page_of<'a>(&self, runs: impl IntoIterator<Item = &'a Run>) -> Result<Page<Run>> {
        self.filter.validate()?;
        let limit = crate::page::validate_limit(self.limit)?;
        let after: Option<RunCursor> = self.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut items: Vec<&Run> = runs
            .into_iter()
            .filter(|r| self.filter.matches(r))
            .filter(|r| after.as_ref().is_none_or(|a| self.comes_after(r, a)))
            .collect();
        items.sort_by(|a, b| {
            let order = (a.started_at, &a.id).cmp(&(b.started_at, &b.id));
            if self.ascending {
                order
            } else {
                order.reverse()
            }
        });
        items.truncate(limit.saturating_add(1));
        Ok(Page::from_overfetch(
            items.into_iter().cloned().collect(),
            limit,
            RunCursor::of,
        ))
    }
}

/// The key in a [`RunQuery`] cursor: the last run's `(started_at, id)`.
/// The next page holds runs strictly *less* than it in that order (newest
/// first), or strictly greater (oldest first).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCursor {
    /// Last run's start, in microseconds since the epoch.
    pub started_at: Timestamp,
    /// Last run's id.
    pub id: RunId,
}

impl RunCursor {
    /// The cursor key of a run.
    pub fn of(run: &Run) -> Self {
        RunCursor {
            started_at: run.started_at,
            id: run.id.clone(),
        }
    }
}

/// A page of one run's events, in sequence order (ascending by default).
///
/// ```
/// use runstore_core::EventQuery;
/// // The last 20 `step.failed` events, newest first.
/// let q = EventQuery::default().of_kind("step.failed").newest_first().with_limit(20);
/// assert!(q.descending);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventQuery {
    /// Page size, 1 to [`crate::MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Highest sequence number first (the last events of a run), instead
    /// of lowest first.
    pub descending: bool,
}

paged_query!(EventQuery {
    kind: None,
    descending: false,
});

impl EventQuery {
    setters! {
        /// Only events of `kind`.
        of_kind(kind: impl Into<String>) => kind = Some(kind.into());
    }

    /// Newest first: the last events of a run.
    pub fn newest_first(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Checks the kind label.
    pub fn validate(&self) -> Result<()> {
        if let Some(k) = &self.kind {
            validate_label("kind", k)?;
        }
        Ok(())
    }

    /// Whether `event` passes the filter. The reference semantics every
    /// backend's query matches.
    pub fn matches(&self, event: &Event) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == event.kind)
    }

    /// Whether an event numbered `seq` comes after the cursor position
    /// `cursor` in this query's order.
    pub fn comes_after(&self, seq: u64, cursor: &EventCursor) -> bool {
        if self.descending {
            seq < cursor.seq
        } else {
            seq > cursor.seq
        }
    }

    /// The reference: one page of `events` (all of a run's events, in
    /// ascending sequence order) for this query. The cursor is found by
    /// binary search, so paging through a long run costs a page per page.
    pub fn page_of(&self, events: &[Event]) -> Result<Page<Event>> {
        self.validate()?;
        let limit = crate::page::validate_limit(self.limit)?;
        let after: Option<EventCursor> = self.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let items: Vec<Event> = if self.descending {
            let end = after.map_or(events.len(), |a| events.partition_point(|e| e.seq < a.seq));
            events[..end]
                .iter()
                .rev()
                .filter(|e| self.matches(e))
                .take(limit + 1)
                .cloned()
                .collect()
        } else {
            let start = after.map_or(0, |a| events.partition_point(|e| e.seq <= a.seq));
            events[start..]
                .iter()
                .filter(|e| self.matches(e))
                .take(limit + 1)
                .cloned()
                .collect()
        };
        Ok(Page::from_overfetch(items, limit, |e| EventCursor {
            seq: e.seq,
        }))
    }
}

/// The key in an [`EventQuery`] cursor: the last event's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventCursor {
    /// Last sequence number returned.
    pub seq: u64,
}

/// Checks a request of [`LogRepository::events_of_small_runs`]: a batch of
/// ids as [`crate::validate_delete_batch`] takes it, and a `max_events` of
/// at least 1 (with 0 no run would be small, and every run would be told
/// apart by reading nothing).
pub fn validate_small_runs_request(ids: &[RunId], max_events: usize) -> Result<()> {
    crate::validate_delete_batch("run_ids", ids)?;
    if max_events == 0 {
        return Err(Error::invalid("max_events", "must be at least 1"));
    }
    Ok(())
}

/// Stores runs and their events. See docs/DESIGN.md section 4, "Runs and events".
#[async_trait]
pub trait LogRepository: Send + Sync + Debug + 'static {
    /// Creates a run. Absent: inserted. Present and identical: a no-op
    /// (`inserted == false`). Present and different: [`Error::Conflict`].
    /// A run whose [`Run::external_key`] another run of its workflow holds
    /// is not stored: that run is returned (`inserted == false`). The rule
    /// is [`crate::decide_run_create`].
    async fn create_run(&self, run: Run) -> Result<Written<Run>>;

    /// One run, or [`Error::NotFound`].
    async fn get_run(&self, id: &RunId) -> Result<Run>;

    /// Moves a run's status forward (see [`Run::apply_update`]) and returns
    /// the stored run. Finishing again with the same terminal status succeeds
    /// and changes nothing; any other change of a terminal run is
    /// [`Error::Conflict`].
    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run>;

    /// Appends one event, numbered by the store. [`Error::NotFound`] if the
    /// run does not exist.
    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended>;

    /// Appends events in order, all or nothing. A key repeated within the
    /// batch behaves as if appended twice in a row.
    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>>;

    /// One page of a run's events in sequence order; [`Error::NotFound`] if
    /// the run does not exist.
    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>>;

    /// One page of runs, newest start first (see [`RunQuery`]).
    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>>;

    /// How many runs pass `filter`.
    async fn count_runs(&self, filter: RunFilter) -> Result<u64>;

    /// Deletes a run and its events; [`Error::NotFound`] if absent.
    async fn delete_run(&self, id: &RunId) -> Result<()>;

    /// Stores whole runs with their events (import, migration), all or
    /// nothing. A run already stored identically (record and events) is left
    /// as it is; one stored differently is [`Error::Conflict`] and nothing of
    /// the batch is written.
    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome>;

    /// Hints that a large import follows (see [`crate::BulkLoadOptions`]):
    /// the backend may put off work it does faster once at the end. Every
    /// write keeps its rules and every read its answer meanwhile. Calling it
    /// again while a load is under way is allowed. The default does nothing.
    async fn begin_bulk_load(&self, options: crate::BulkLoadOptions) -> Result<()> {
        let _ = options;
        Ok(())
    }

    /// Ends a bulk load: whatever was put off is done when this returns. A
    /// no-op without a load under way. A store left mid-load by a crash
    /// finishes that work when it is next opened. The default does nothing.
    async fn end_bulk_load(&self) -> Result<()> {
        Ok(())
    }

    /// Deletes runs with their events, at most
    /// [`crate::MAX_DELETE_BATCH`] ids each once (checked by
    /// [`crate::validate_delete_batch`]). A run's events never outlive its
    /// record: they go first or in the same transaction. Absent ids are
    /// reported, not an error, so a prune can treat them as done.
    async fn delete_runs(&self, ids: &[RunId]) -> Result<Deleted<RunId>>;

    /// How many events each run holds, in the order of `ids` (0 for a run
    /// that is not stored), at most [`crate::MAX_DELETE_BATCH`] ids: what a
    /// prune reports before it deletes. The default pages through each
    /// run's events; backends with an index answer in one query.
    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        crate::validate_delete_batch("run_ids", ids)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut n = 0u64;
            each_event_page(self, id, |page| n += page.len() as u64).await?;
            out.push(n);
        }
        Ok(out)
    }

    /// Every event of each run of `ids`, in the order of `ids` (at most
    /// [`crate::MAX_DELETE_BATCH`], each once), each run's in sequence
    /// order; a run that is not stored has none. One call for a page of
    /// small runs, as a migration reads them: the caller bounds the total
    /// (with [`LogRepository::event_counts`]), since nothing is paged. The
    /// default reads each run's pages; the SQL backends answer with one
    /// query.
    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        crate::validate_delete_batch("run_ids", ids)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut events = Vec::new();
            each_event_page(self, id, |page| events.extend(page)).await?;
            out.push(events);
        }
        Ok(out)
    }

    /// The events of each run of `ids` that holds fewer than `max_events`
    /// events, in sequence order; `None` for a run that holds `max_events`
    /// or more, which the caller pages with [`LogRepository::list_events`].
    /// In the order of `ids` (at most [`crate::MAX_DELETE_BATCH`], each
    /// once); a run that is not stored has `Some` of none. `max_events` is
    /// at least 1 ([`validate_small_runs_request`]).
    ///
    /// What [`LogRepository::event_counts`] and then
    /// [`LogRepository::events_of_runs`] of the small runs answer, in one
    /// call: a migration reads its source's runs so. The default makes
    /// those two calls; a backend that counts a run's events by reading
    /// them (the file backend) overrides it to read each run once, holding
    /// at most `max_events` events of a large run while it tells it apart.
    async fn events_of_small_runs(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<Event>>>> {
        validate_small_runs_request(ids, max_events)?;
        let small = SmallRuns::new(self.event_counts(ids).await?, max_events);
        let events = self.events_of_runs(&small.to_read(ids)).await?;
        Ok(small.answer(events))
    }

    /// [`LogRepository::events_of_small_runs`] with each payload as the
    /// JSON text it is stored as ([`crate::EncodedEvent`]): what a
    /// migration reads, so a payload goes from store to store without being
    /// built as a value. The same runs, events and `None`s; each payload
    /// reads as the value `events_of_small_runs` gives. The default writes
    /// the payloads of `events_of_small_runs` as text; a backend that
    /// stores text overrides it to hand that text over.
    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<crate::EncodedEvent>>>> {
        let read = self.events_of_small_runs(ids, max_events).await?;
        read.into_iter()
            .map(|run| {
                run.map(|events| {
                    events
                        .into_iter()
                        .map(crate::EncodedEvent::from_event)
                        .collect()
                })
                .transpose()
            })
            .collect()
    }

    /// [`LogRepository::import_runs`] of runs whose payloads are JSON text
    /// ([`crate::EncodedRun`]): the same rules (checked by
    /// [`crate::EncodedRun::validate_batch`] first), the same outcome, the
    /// same stored content. The default reads the payloads as values and
    /// calls `import_runs`; a backend that stores text overrides it to
    /// store the text.
    async fn import_runs_encoded(&self, runs: Vec<crate::EncodedRun>) -> Result<BulkOutcome> {
        crate::EncodedRun::validate_batch(&runs)?;
        let runs = runs
            .into_iter()
            .map(crate::EncodedRun::into_run)
            .collect::<Result<Vec<_>>>()?;
        self.import_runs(runs).await
    }

    /// The run of `workflow` with external key `key`, or [`Error::NotFound`].
    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run>;

    /// Acquires the lease `request.name` for `request.holder`, or renews it
    /// when that holder holds it, by the store's clock (the rule is
    /// [`crate::decide_lease_acquire`]). [`Error::Conflict`] naming holder
    /// and expiry while another holder holds it. Tokens of a name only grow,
    /// also across restarts.
    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease>;

    /// Releases a lease held with `token` (the rule is
    /// [`crate::decide_lease_release`]): [`Error::Conflict`] if the token is
    /// not current or the lease expired, [`Error::NotFound`] for a name
    /// never acquired.
    async fn release_lease(&self, name: &str, token: u64) -> Result<()>;

    /// One page of leases by name: those held now by the store's clock, or
    /// with [`LeaseQuery::include_expired`] every name ever acquired.
    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>>;

    /// Records a delivery id (a webhook or message id) before anything else
    /// is known of it: `inserted == true` exactly once per id across every
    /// handle and process; later calls return the first record.
    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>>;

    /// Forgets deliveries recorded strictly before `recorded_before` (their
    /// retention age) and says how many.
    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64>;
}

/// Hands every page of run `id`'s events to `each`, in order; nothing for a
/// run that is not stored. What the defaults of
/// [`LogRepository::event_counts`] and [`LogRepository::events_of_runs`]
/// read.
async fn each_event_page<L: LogRepository + ?Sized>(
    logs: &L,
    id: &RunId,
    mut each: impl FnMut(Vec<Event>) + Send,
) -> Result<()> {
    let mut cursor = None;
    loop {
        let query = EventQuery::default()
            .with_limit(crate::MAX_PAGE_LIMIT)
            .with_cursor(cursor);
        match logs.list_events(id, query).await {
            Ok(page) => {
                each(page.items);
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => return Ok(()),
                }
            }
            Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The events of one query over several runs (ordered by run, then
/// sequence), grouped per run in the order of `ids` (`run_of` says whose an
/// event is): how the SQL backends answer [`LogRepository::events_of_runs`].
pub fn events_by_run<E>(
    ids: &[RunId],
    events: Vec<E>,
    run_of: impl Fn(&E) -> &RunId,
) -> Vec<Vec<E>> {
    let mut per_run: std::collections::HashMap<RunId, Vec<E>> =
        std::collections::HashMap::with_capacity(ids.len());
    for e in events {
        per_run.entry(run_of(&e).clone()).or_default().push(e);
    }
    ids.iter()
        .map(|id| per_run.remove(id).unwrap_or_default())
        .collect()
}

/// The answer of [`LogRepository::events_of_small_runs`] put together from
/// the runs' event counts: which runs to read, then where their events
/// go. What the default does, and a backend that counts first.
///
/// ```
/// use runstore_core::{RunId, SmallRuns};
/// let ids: Vec<RunId> = ["a", "b", "c"].iter().map(|i| RunId::new(*i).unwrap()).collect();
/// let small = SmallRuns::new(vec![1, 5, 0], 3);
/// assert_eq!(small.to_read(&ids), vec![ids[0].clone(), ids[2].clone()]);
/// let answer = small.answer(vec![vec!["a1"], vec![]]);
/// assert_eq!(answer, vec![Some(vec!["a1"]), None, Some(vec![])]);
/// ```
#[derive(Clone, Debug)]
pub struct SmallRuns {
    counts: Vec<u64>,
    max_events: usize,
}

impl SmallRuns {
    /// Runs with `counts` events each (in the order of the ids), of which
    /// those with fewer than `max_events` are small.
    pub fn new(counts: Vec<u64>, max_events: usize) -> Self {
        SmallRuns { counts, max_events }
    }

    fn is_small(&self, n: u64) -> bool {
        usize::try_from(n).is_ok_and(|n| n < self.max_events)
    }

    /// The small runs of `ids`, in order: those whose events to read.
    pub fn to_read(&self, ids: &[RunId]) -> Vec<RunId> {
        ids.iter()
            .zip(&self.counts)
            .filter(|&(_, &n)| self.is_small(n))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Each run's events (`events` holds those of [`SmallRuns::to_read`],
    /// in order), `None` for a run that is not small.
    pub fn answer<E>(self, events: Vec<Vec<E>>) -> Vec<Option<Vec<E>>> {
        let mut events = events.into_iter();
        self.counts
            .iter()
            .map(|&n| {
                if self.is_small(n) {
                    Some(events.next().unwrap_or_default())
                } else {
                    None
                }
            })
            .collect()
    }
}
