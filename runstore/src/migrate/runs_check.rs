//! The check of runs made while copying (see
//! [`MigrateOptions::verify`](super::MigrateOptions::verify)): each batch is
//! read back from the destination by the writer that wrote it, and
//! recorded against the source in the order the batches left the reader.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use runstore_core::{Error, Result, Run, RunId, StoreSet};
use tokio::sync::Notify;

use super::Concern;
use super::copy::{describe_run_difference, stored_in};
use super::verify::Tally;

/// A source run as the check compares it: its record, and how many events
/// it has.
pub(super) struct RunCount {
    pub(super) run: Run,
    pub(super) events: u64,
}

/// Runs read back from the destination: the source's, with the
/// destination's records (those it holds) and event counts.
pub(super) struct ReadBack {
    sources: Vec<RunCount>,
    stored: HashMap<RunId, Run>,
    counts: Vec<u64>,
}

/// Reads the runs of `sources` back from `to` with two calls: their
/// records by one query over their start-time window, their event counts
/// by one `event_counts`. Needs no migrator, so it can run while the
/// migrator writes the next batch.
pub(super) async fn read_back(
    to: &StoreSet,
    page: usize,
    sources: Vec<RunCount>,
    fresh: bool,
) -> Result<ReadBack> {
    let runs: Vec<&Run> = sources.iter().map(|s| &s.run).collect();
    let stored = stored_in(to, page, &runs, fresh).await?;
    let ids: Vec<RunId> = sources.iter().map(|s| s.run.id.clone()).collect();
    let counts = if ids.is_empty() {
        Vec::new()
    } else {
        to.logs.event_counts(&ids).await?
    };
    Ok(ReadBack {
        sources,
        stored,
        counts,
    })
}

/// Records runs read back from the destination against the source: the
/// record by content hash, the events by count.
fn record(check: &mut Tally, back: ReadBack) -> Result<()> {
    for (src, n) in back.sources.iter().zip(back.counts) {
        let id = src.run.id.to_string();
        let dst = back.stored.get(&src.run.id);
        let src_hash = runstore_core::content_hash(&src.run)?;
        let dst_hash = match dst {
            Some(d) if hashes_alike(&src.run, d) => Some(src_hash),
            d => d.map(runstore_core::content_hash).transpose()?,
        };
        check.record(Concern::Runs, id.clone(), Some(src_hash), dst_hash, || {
            dst.map(|d| describe_run_difference(&src.run, d))
                .unwrap_or_default()
        });
        check.record_count(
            Concern::Events,
            format!("{id}#*"),
            src.events,
            dst.map(|_| n),
        );
    }
    Ok(())
}

/// Whether `a` and `b` have one content hash, known without hashing `b`:
/// equal records write one canonical text, but for a float zero, whose
/// sign `==` ignores and the text keeps. So equal records without a
/// negative zero; any other pair is hashed.
fn hashes_alike(a: &Run, b: &Run) -> bool {
    fn negative_zero(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) => {
                n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative())
            }
            serde_json::Value::Array(items) => items.iter().any(negative_zero),
            serde_json::Value::Object(map) => map.values().any(negative_zero),
            _ => false,
        }
    }
    let in_maps = |r: &Run| {
        r.attributes
            .values()
            .chain(r.summaries.values())
            .any(negative_zero)
    };
    a == b && !in_maps(a) && !in_maps(b)
}

/// The check of runs shared by their writers. The reader's batches are
/// numbered in the order the writers take them; a batch's read-back is
/// recorded once every earlier one is, whichever writer finishes first,
/// so the digests follow the source's order however many writers there
/// are.
///
/// A writer whose batch is [`RunsCheck::AHEAD`] or more batches ahead of
/// the oldest one not yet recorded waits: a run with many events can keep
/// one writer busy for long, and what the others read back meanwhile
/// would otherwise pile up.
pub(super) struct RunsCheck {
    state: Mutex<State>,
    recorded: Notify,
}

struct State {
    tally: Tally,
    /// The number of the oldest batch not yet recorded.
    next: u64,
    /// Read-backs of later batches, recorded when their turn comes.
    waiting: BTreeMap<u64, ReadBack>,
}

impl RunsCheck {
    /// Read-backs held at most, waiting for an earlier batch's.
    const AHEAD: u64 = 4;

    /// Takes over `tally`, where the runs are recorded.
    pub(super) fn new(tally: Tally) -> Self {
        RunsCheck {
            state: Mutex::new(State {
                tally,
                next: 0,
                waiting: BTreeMap::new(),
            }),
            recorded: Notify::new(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::backend("the check's lock was poisoned", None))
    }

    /// Records batch `seq` (every number from 0 is recorded once), after
    /// the batches before it.
    pub(super) async fn record(&self, seq: u64, back: ReadBack) -> Result<()> {
        loop {
            // Registered before the look, so a recording in between wakes it.
            let recorded = self.recorded.notified();
            if seq < self.lock()?.next + Self::AHEAD {
                break;
            }
            recorded.await;
        }
        let mut state = self.lock()?;
        state.waiting.insert(seq, back);
        let before = state.next;
        loop {
            let next = state.next;
            let Some(back) = state.waiting.remove(&next) else {
                break;
            };
            record(&mut state.tally, back)?;
            state.next += 1;
        }
        if state.next != before {
            self.recorded.notify_waiters();
        }
        Ok(())
    }

    /// The tally, with every batch recorded.
    ///
    /// # Errors
    /// A batch numbered but never recorded (a writer stopped early).
    pub(super) fn into_tally(self) -> Result<Tally> {
        let state = self
            .state
            .into_inner()
            .map_err(|_| Error::backend("the check's lock was poisoned", None))?;
        if !state.waiting.is_empty() {
            return Err(Error::backend(
                format!(
                    "the check of runs is missing batch {} of those copied",
                    state.next
                ),
                None,
            ));
        }
        Ok(state.tally)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use runstore_core::{Timestamp, Version, WorkflowId};

    use super::*;
    use crate::migrate::VerifyReport;

    /// Batch `seq`: two runs, both read back, the second with one event
    /// fewer in the destination. The same each time it is made.
    fn batch(seq: u64) -> ReadBack {
        let wf = WorkflowId::new("wf").unwrap();
        let runs: Vec<Run> = (0..2)
            .map(|i| {
                let mut r = Run::new(wf.clone(), Version::FIRST);
                r.id = RunId::new(format!("run-{seq}-{i}")).unwrap();
                r.started_at = Timestamp::from_micros(1_000 * seq as i64 + i).unwrap();
                r
            })
            .collect();
        ReadBack {
            stored: runs.iter().map(|r| (r.id.clone(), r.clone())).collect(),
            sources: runs
                .into_iter()
                .map(|run| RunCount { run, events: 3 })
                .collect(),
            counts: vec![3, 2],
        }
    }

    async fn recorded_in(order: &[u64]) -> VerifyReport {
        let check = RunsCheck::new(Tally::new(VerifyReport::default(), 100));
        for &seq in order {
            check.record(seq, batch(seq)).await.unwrap();
        }
        check.into_tally().unwrap().finish()
    }

    #[tokio::test]
    async fn batches_recorded_out_of_order_give_the_report_of_the_source_order() {
        let in_order = recorded_in(&[0, 1, 2, 3]).await;
        assert_eq!(in_order.runs.a, 8);
        assert_eq!(in_order.events.a, 24);
        assert_eq!(in_order.difference_count, 4);
        assert_eq!(recorded_in(&[2, 0, 3, 1]).await, in_order);
        // The order matters to the digests, so the check above could fail.
        let unordered = {
            let mut tally = Tally::new(VerifyReport::default(), 100);
            for seq in [1, 0, 2, 3] {
                record(&mut tally, batch(seq)).unwrap();
            }
            tally.finish()
        };
        assert_ne!(unordered.runs.digest_a, in_order.runs.digest_a);
    }

    #[test]
    fn equal_runs_share_a_hash_and_a_signed_zero_is_hashed() {
        let mut a = batch(0).sources.remove(0).run;
        a.attributes
            .insert("cost".into(), serde_json::json!([1.5, {"z": 0.0}]));
        let b = a.clone();
        assert!(hashes_alike(&a, &b));
        assert_eq!(
            runstore_core::content_hash(&a).unwrap(),
            runstore_core::content_hash(&b).unwrap()
        );
        // `==` holds, the texts (and hashes) differ: never taken as alike.
        let mut signed = a.clone();
        signed
            .attributes
            .insert("cost".into(), serde_json::json!([1.5, {"z": -0.0}]));
        assert_eq!(a, signed);
        assert_ne!(
            runstore_core::content_hash(&a).unwrap(),
            runstore_core::content_hash(&signed).unwrap()
        );
        assert!(!hashes_alike(&a, &signed));
        assert!(!hashes_alike(&signed, &a));
        let mut other = a.clone();
        other.trigger = "other".into();
        assert!(!hashes_alike(&a, &other));
    }

    #[tokio::test]
    async fn a_batch_too_far_ahead_waits_for_the_oldest_one() {
        let check = Arc::new(RunsCheck::new(Tally::new(VerifyReport::default(), 100)));
        for seq in 1..RunsCheck::AHEAD {
            check.record(seq, batch(seq)).await.unwrap();
        }
        let ahead = tokio::spawn({
            let check = check.clone();
            async move {
                check
                    .record(RunsCheck::AHEAD, batch(RunsCheck::AHEAD))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ahead.is_finished(), "it must wait for batch 0");
        check.record(0, batch(0)).await.unwrap();
        ahead.await.unwrap().unwrap();
        let check = Arc::into_inner(check).unwrap();
        let report = check.into_tally().unwrap().finish();
        assert_eq!(report.runs.a, 2 * (RunsCheck::AHEAD + 1));
    }

    #[tokio::test]
    async fn a_batch_never_recorded_is_an_error() {
        let check = RunsCheck::new(Tally::new(VerifyReport::default(), 100));
        check.record(1, batch(1)).await.unwrap();
        let Err(e) = check.into_tally() else {
            panic!("batch 0 was never recorded");
        };
        assert!(e.to_string().contains("batch 0"), "{e}");
    }
}
