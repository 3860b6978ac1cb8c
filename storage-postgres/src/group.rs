//! Group commit of single appends: `append_event` calls without an
//! idempotency key that wait for the same run in this process are written
//! by one of them in one statement and one commit.
//!
//! Appends to one run serialize on its row lock (that is how they number
//! without gaps), so each would otherwise wait for the commit (a WAL flush)
//! of the one before: 8 tasks appending to one run got no more than one
//! task alone. Now whoever holds the run's writer slot takes everything
//! queued meanwhile; the others find their sequence number when they get
//! the slot. Each call still returns only once its event is committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use runstore_core::{Appended, Error, ErrorKind, NewEvent, Result, RunId};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use crate::PostgresStore;
use crate::error::Fail;
use crate::rows::json_text;

/// The queues of the runs being appended to in this process.
#[derive(Default)]
pub(crate) struct AppendQueues {
    runs: Mutex<HashMap<String, Arc<RunQueue>>>,
}

/// Appends waiting for one run, and the slot of the one writing them.
#[derive(Default)]
struct RunQueue {
    pending: Mutex<Vec<Waiting>>,
    writer: tokio::sync::Mutex<()>,
}

/// One queued event, stored form.
struct Waiting {
    kind: String,
    at: i64,
    payload: String,
    done: oneshot::Sender<Outcome>,
}

/// What became of a queued event.
enum Outcome {
    /// Committed with this number.
    Appended(u64),
    /// The group failed on something that wrote nothing (no such run …):
    /// append alone, to get this event's own answer.
    Alone,
    /// The group's outcome is unknown (it timed out or lost its
    /// connection; it may have been committed).
    Unknown,
}

/// Takes a run's queue out of the map when the last caller using it is
/// done (also when that caller is cancelled).
struct Held<'a> {
    queues: &'a AppendQueues,
    run_id: &'a str,
    queue: Arc<RunQueue>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut runs = self
            .queues
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's reference and ours: nobody else is using it.
        if Arc::strong_count(&self.queue) == 2 {
            runs.remove(self.run_id);
        }
    }
}

impl AppendQueues {
    fn hold<'a>(&'a self, run_id: &'a str) -> Held<'a> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = runs.entry(run_id.to_string()).or_default().clone();
        Held {
            queues: self,
            run_id,
            queue,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PostgresStore {
    /// Appends one event without an idempotency key, grouped with the
    /// others waiting for the same run (see the module docs).
    pub(crate) async fn append_grouped(
        &self,
        what: &str,
        run_id: &RunId,
        event: &NewEvent,
    ) -> Result<Appended> {
        let held = self.inner.appends.hold(run_id.as_str());
        let (done, mut answer) = oneshot::channel();
        lock(&held.queue.pending).push(Waiting {
            kind: event.kind.clone(),
            at: event.at.as_micros(),
            payload: json_text("payload", &event.payload)?,
            done,
        });
        let outcome = self
            .bounded(what, async {
                let _slot = held.queue.writer.lock().await;
                match answer.try_recv() {
                    // Written (or failed) by the writer before us.
                    Ok(outcome) => return Ok(outcome),
                    // Taken by a writer that was cancelled midway.
                    Err(TryRecvError::Closed) => return Ok(Outcome::Unknown),
                    Err(TryRecvError::Empty) => {}
                }
                // Ours is still queued: write it and everything with it.
                let group = std::mem::take(&mut *lock(&held.queue.pending));
                let alone = group.len() == 1;
                let first = self.append_rows(what, run_id, &group).await;
                for (i, w) in group.into_iter().enumerate() {
                    let outcome = match &first {
                        Ok(first) => Outcome::Appended(first + i as u64),
                        Err(e) if e.kind() == ErrorKind::Unavailable => Outcome::Unknown,
                        Err(_) => Outcome::Alone,
                    };
                    // A caller that gave up no longer listens.
                    let _ = w.done.send(outcome);
                }
                match first {
                    // Our own answer is among those just sent.
                    Ok(_) => Ok(answer.try_recv().unwrap_or(Outcome::Unknown)),
                    Err(e) if alone || e.kind() == ErrorKind::Unavailable => Err(Fail::Core(e)),
                    Err(_) => Ok(Outcome::Alone),
                }
            })
            .await;
        drop(held);
        match outcome? {
            Outcome::Appended(seq) => Ok(Appended {
                seq,
                duplicate: false,
                deferred: false,
            }),
            // The group wrote nothing: this event alone gets its own answer.
            Outcome::Alone => {
                let (done, _) = oneshot::channel();
                let row = Waiting {
                    kind: event.kind.clone(),
                    at: event.at.as_micros(),
                    payload: json_text("payload", &event.payload)?,
                    done,
                };
                let seq = self.append_rows(what, run_id, &[row]).await?;
                Ok(Appended {
                    seq,
                    duplicate: false,
                    deferred: false,
                })
            }
            Outcome::Unknown => Err(Error::unavailable(
                format!(
                    "{what}: the group commit it joined did not finish; the event may have been appended"
                ),
                None,
            )),
        }
    }

    /// Appends `rows` to the run in one statement under its row lock
    /// (retried like every write); returns the first sequence number.
    async fn append_rows(&self, what: &str, run_id: &RunId, rows: &[Waiting]) -> Result<u64> {
        let kinds: Vec<&str> = rows.iter().map(|w| w.kind.as_str()).collect();
        let ats: Vec<i64> = rows.iter().map(|w| w.at).collect();
        let payloads: Vec<&str> = rows.iter().map(|w| w.payload.as_str()).collect();
        let n = rows.len() as i64;
        self.retrying(what, || async {
            let client = self.client().await?;
            let st = client
                .prepare_cached(&self.sql(
                    "WITH r AS (UPDATE {s}.runs SET event_count = event_count + $5 WHERE id = $1
                                RETURNING event_count)
                     INSERT INTO {s}.events (run_id, seq, kind, at, payload)
                     SELECT $1, r.event_count - $5 + e.ord, e.kind, e.at, e.payload
                     FROM r, unnest($2::text[], $3::bigint[], $4::text[])
                          WITH ORDINALITY AS e(kind, at, payload, ord)
                     RETURNING seq",
                ))
                .await?;
            let seqs = client
                .query(&st, &[&run_id.as_str(), &kinds, &ats, &payloads, &n])
                .await?;
            match seqs.iter().map(|r| r.get::<_, i64>(0)).min() {
                Some(first) => Ok(first as u64),
                None => Err(Fail::Core(Error::not_found(format!("run {run_id}")))),
            }
        })
        .await
    }
}
