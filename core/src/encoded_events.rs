//! Events with their payloads kept as JSON text, the form a bulk copy
//! carries them in ([`crate::LogRepository::events_of_small_runs_encoded`],
//! [`crate::LogRepository::import_runs_encoded`]): a store that keeps
//! payloads as text reads and writes them without building a
//! [`serde_json::Value`] of each.

use serde::{Deserialize, Serialize};

use crate::digest::canonical_json;
use crate::error::Result;
use crate::id::RunId;
use crate::json_text::JsonText;
use crate::logs::{
    Event, Run, RunWithEvents, event_fields, same_event_fields, validate_run_batch,
    validate_run_events,
};
use crate::timestamp::Timestamp;

/// A stored [`Event`] whose payload is JSON text. It serialises as the
/// event does, so a line written from one reads as the other.
///
/// ```
/// use runstore_core::{EncodedEvent, NewEvent, RunId};
/// let run = RunId::new("r1").unwrap();
/// let event = NewEvent::new("step", serde_json::json!({"n": 1})).into_event(run, 1);
/// let encoded = EncodedEvent::from_event(event.clone()).unwrap();
/// assert_eq!(encoded.payload.as_str(), r#"{"n":1}"#);
/// assert_eq!(encoded.into_event().unwrap(), event);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedEvent {
    /// Its run.
    pub run_id: RunId,
    /// 1, 2, 3 … per run.
    pub seq: u64,
    /// What happened.
    pub kind: String,
    /// When it happened.
    pub at: Timestamp,
    /// Details, as JSON text; `null` when a line has none (as for [`Event`]).
    #[serde(default = "null")]
    pub payload: JsonText,
    /// The idempotency key it was appended with.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn null() -> JsonText {
    JsonText::from_value(&serde_json::Value::Null).expect("null is JSON")
}

impl EncodedEvent {
    /// `event` with its payload written as text.
    pub fn from_event(event: Event) -> Result<Self> {
        Ok(EncodedEvent {
            payload: JsonText::from_value(&event.payload)?,
            run_id: event.run_id,
            seq: event.seq,
            kind: event.kind,
            at: event.at,
            idempotency_key: event.idempotency_key,
        })
    }

    /// The event, its payload read from the text.
    pub fn into_event(self) -> Result<Event> {
        Ok(Event {
            payload: self.payload.to_value()?,
            run_id: self.run_id,
            seq: self.seq,
            kind: self.kind,
            at: self.at,
            idempotency_key: self.idempotency_key,
        })
    }
}

event_fields!(EncodedEvent, JsonText, |e| e.payload.validate("payload"));

/// A [`RunWithEvents`] whose payloads are JSON text: what
/// [`crate::LogRepository::import_runs_encoded`] takes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedRun {
    /// The run.
    pub run: Run,
    /// Its events, numbered 1..=n in order.
    pub events: Vec<EncodedEvent>,
}

impl EncodedRun {
    /// `run` with its payloads written as text.
    pub fn from_run(run: RunWithEvents) -> Result<Self> {
        Ok(EncodedRun {
            events: run
                .events
                .into_iter()
                .map(EncodedEvent::from_event)
                .collect::<Result<_>>()?,
            run: run.run,
        })
    }

    /// The run, its payloads read from their text.
    pub fn into_run(self) -> Result<RunWithEvents> {
        Ok(RunWithEvents {
            events: self
                .events
                .into_iter()
                .map(EncodedEvent::into_event)
                .collect::<Result<_>>()?,
            run: self.run,
        })
    }

    /// [`RunWithEvents::validate`], the payloads checked on their text
    /// ([`JsonText::validate`]): the same rules, in the same words.
    pub fn validate(&self) -> Result<()> {
        validate_run_events(&self.run, &self.events)
    }

    /// [`RunWithEvents::validate_batch`] of encoded runs, as every
    /// backend's `import_runs_encoded` checks a batch before writing.
    pub fn validate_batch(batch: &[EncodedRun]) -> Result<()> {
        validate_run_batch(batch, |r| &r.run, EncodedRun::validate)
    }

    /// Equality of stored content with `other`, comparing payloads as
    /// values ([`Event::same_content`]).
    pub fn same_content(&self, other: &RunWithEvents) -> Result<bool> {
        if !self.run.same_content(&other.run) || self.events.len() != other.events.len() {
            return Ok(false);
        }
        for (a, b) in self.events.iter().zip(&other.events) {
            if !same_event_fields(a, b)
                || canonical_json(&a.payload.to_value()?) != canonical_json(&b.payload)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEvent, Version, WorkflowId};

    fn run_with(payloads: &[serde_json::Value]) -> RunWithEvents {
        let run = Run::new(WorkflowId::new("wf").unwrap(), Version::FIRST);
        let events = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| NewEvent::new("k", p.clone()).into_event(run.id.clone(), i as u64 + 1))
            .collect();
        RunWithEvents { run, events }
    }

    #[test]
    fn an_encoded_run_is_checked_by_the_rules_of_a_run() {
        let good = run_with(&[serde_json::json!({"a": 1}), serde_json::json!(null)]);
        let encoded = EncodedRun::from_run(good.clone()).unwrap();
        encoded.validate().unwrap();
        assert!(encoded.same_content(&good).unwrap());
        assert!(encoded.clone().into_run().unwrap().same_content(&good));

        let mut gap = good.clone();
        gap.events[1].seq = 3;
        let mut nul = good.clone();
        nul.events[0].payload = serde_json::json!({"a": "\u{0}"});
        let mut key_twice = good.clone();
        for e in &mut key_twice.events {
            e.idempotency_key = Some("k".into());
        }
        for bad in [gap, nul, key_twice] {
            let by_value = bad.validate().unwrap_err().to_string();
            let by_text = EncodedRun::from_run(bad)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert_eq!(by_value, by_text);
        }

        let twice = vec![encoded.clone(), encoded];
        let e = EncodedRun::validate_batch(&twice).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }

    #[test]
    fn same_content_compares_payloads_as_values_and_every_field() {
        let good = run_with(&[
            serde_json::json!({"a": 1, "b": [true]}),
            serde_json::json!(null),
        ]);
        // Other spacing and key order: the same content.
        let mut encoded = EncodedRun::from_run(good.clone()).unwrap();
        encoded.events[0].payload = JsonText::new(r#"{ "b": [ true ], "a": 1 }"#).unwrap();
        assert!(encoded.same_content(&good).unwrap());

        let mut payload = good.clone();
        payload.events[0].payload = serde_json::json!({"a": 2, "b": [true]});
        let mut kind = good.clone();
        kind.events[1].kind = "other".into();
        let mut at = good.clone();
        at.events[1].at = at.events[1].at.saturating_add_micros(1);
        let mut key = good.clone();
        key.events[1].idempotency_key = Some("k".into());
        let mut fewer = good.clone();
        fewer.events.pop();
        let mut status = good.clone();
        status.run.trigger = "other".into();
        for other in [payload, kind, at, key, fewer, status] {
            assert!(!encoded.same_content(&other).unwrap(), "{other:?}");
            assert!(!encoded.clone().into_run().unwrap().same_content(&other));
        }
    }

    #[test]
    fn a_line_of_an_event_reads_as_an_encoded_event() {
        let event = run_with(&[serde_json::json!({"x": [1, 2.5, "y"]})])
            .events
            .remove(0);
        let line = serde_json::to_string(&event).unwrap();
        let encoded: EncodedEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(serde_json::to_string(&encoded).unwrap(), line);
        assert_eq!(encoded.into_event().unwrap(), event);
        // No payload reads as null, as for an event.
        let bare = r#"{"run_id":"r","seq":1,"kind":"k","at":"2024-01-01T00:00:00Z"}"#;
        let read: Event = serde_json::from_str(bare).unwrap();
        let encoded: EncodedEvent = serde_json::from_str(bare).unwrap();
        assert_eq!(encoded.into_event().unwrap(), read);
    }
}
