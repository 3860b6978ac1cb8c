//! [`migrate`]: the copy, concern by concern.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, stream};
use runstore_core::{
    ArtifactInfo, BulkLoadOptions, EncodedEvent, EncodedRun, Error, ErrorKind, Event,
    ExecutionMetric, NewEvent, PutOptions, Result, Run, RunFilter, RunId, RunWithEvents,
    Sha256Digest, StoreSet, Timestamp, WorkflowDefinition,
};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use super::pager::{self, Pager};
use super::runs_check::{RunCount, RunsCheck, read_back};
use super::verify::{Tally, verify};
use super::{
    Concern, ConflictRecord, MigrateOptions, MigrationReport, OnConflict, VerifyReport,
    WATERMARK_MARGIN_SECS, run_filters_since,
};
use crate::dump::Quarantine;

/// Copies everything from `from` to `to` (see the [module docs](super)),
/// then verifies the two sides unless [`MigrateOptions::verify`] is off.
///
/// Order: workflow versions (ascending `(id, version)`, so a parent is always
/// stored before its children), runs with their events, metrics, patterns,
/// artifacts. A record absent from the destination is copied; present with
/// the same content, skipped; present with other content, reported and left
/// untouched ([`OnConflict::Report`]) or the migration stops
/// ([`OnConflict::Fail`]).
/// Writes go in batches and are idempotent, so a batch is written first and
/// its records are looked up one by one only when the destination refuses it.
///
/// # Errors
/// [`runstore_core::ErrorKind::InvalidInput`] for bad options; any error of
/// either side's backend (the migration can be started again after it); a
/// [`runstore_core::ErrorKind::Conflict`] with [`OnConflict::Fail`].
pub async fn migrate(
    from: &StoreSet,
    to: &StoreSet,
    options: MigrateOptions,
) -> Result<MigrationReport> {
    options.validate()?;
    let started = Timestamp::now();
    // The source is only read: through a read-only view, no write of the
    // migration can reach it.
    let from = &from.read_only();
    let read = ReadSoFar::default();
    let checking = options.verify && !options.dry_run && !options.verify_options.deep;
    let fresh = holds_no_runs(to).await?;
    // A part of the migration, with its own counts and check.
    let part = |check: bool| Migrator {
        from,
        to,
        report: MigrationReport::default(),
        opts: &options,
        check: check.then(|| {
            Tally::new(
                VerifyReport {
                    since: options.since,
                    while_copying: true,
                    ..Default::default()
                },
                options.verify_options.max_reported,
            )
        }),
        read: &read,
        fresh,
    };
    let mut m = part(checking);
    m.report = MigrationReport {
        dry_run: options.dry_run,
        since: options.since,
        next_since: Some(started.saturating_add_micros(-WATERMARK_MARGIN_SECS * 1_000_000)),
        ..Default::default()
    };
    m.workflows().await?;
    // Metrics do not depend on runs: they are copied alongside, so the two
    // keep both sides busy. The extra writers of runs share the work of
    // one reader (see `MigrateOptions::writers`).
    let mut metrics = part(checking);
    let mut helpers: Vec<Migrator<'_>> = (1..options.writers).map(|_| part(false)).collect();
    let copy = async { tokio::try_join!(m.runs(&mut helpers), metrics.metrics()) };
    if options.bulk_load && !options.dry_run {
        let expected = source_runs(from, options.since).await;
        bulk_loading(to, expected, copy).await?;
    } else {
        copy.await?;
    }
    for h in helpers {
        m.report.absorb(h.report, options.max_reported);
    }
    m.report.absorb(metrics.report, options.max_reported);
    if let (Some(check), Some(other)) = (m.check.as_mut(), metrics.check) {
        check.absorb(other, Concern::Metrics);
    }
    m.patterns().await?;
    m.artifacts().await?;
    let mut report = m.report;
    // The parts list theirs as they meet them: one order for every run.
    report
        .conflicts
        .sort_by(|a, b| (a.concern, &a.key).cmp(&(b.concern, &b.key)));
    if let Some(check) = m.check {
        report.verify = Some(check.finish());
    } else if options.verify && !options.dry_run {
        let mut vo = options.verify_options.clone();
        if vo.progress.is_none() {
            vo.progress = options.progress.clone();
        }
        // A pass since a watermark is proved over what it looked at.
        if vo.since.is_none() {
            vo.since = options.since;
        }
        report.verify = Some(verify(from, to, vo).await?);
    }
    if let Some(q) = &options.quarantine {
        let q = q
            .lock()
            .map_err(|_| Error::backend("the quarantine's lock was poisoned", None))?;
        if let Some(summary) = q.summary() {
            report.quarantined = summary.skipped_total();
            report.repaired = summary.notes - summary.skipped_total();
        }
        // What was left out or repaired differs on purpose.
        if let Some(v) = report.verify.as_mut() {
            let before = v.differences.len();
            v.differences.retain(|d| {
                let run = d.key.split('#').next().unwrap_or(&d.key);
                !(q.holds(&d.key) || q.holds(run))
            });
            let excused = (before - v.differences.len()) as u64;
            v.difference_count -= excused;
            v.excused = excused;
        }
    }
    Ok(report)
}

/// How many runs the source holds (since `since`), if it can say: the
/// total of the progress bar and the size of a bulk load. A failing count
/// is no reason to stop.
async fn source_runs(from: &StoreSet, since: Option<Timestamp>) -> Option<u64> {
    let filters = match since {
        Some(t) => run_filters_since(t),
        None => vec![RunFilter::default()],
    };
    let mut total = Some(0u64);
    for f in filters {
        let n = from.logs.count_runs(f).await.ok();
        total = total.zip(n).map(|(a, b)| a + b);
    }
    total
}

/// Runs `copy` inside a bulk load of the destination's logs and metrics
/// (see [`MigrateOptions::bulk_load`]). The load is ended whether the copy
/// succeeds or not, so a failed migration leaves the destination with its
/// indexes; the copy's error comes first.
async fn bulk_loading<T>(
    to: &StoreSet,
    expected_runs: Option<u64>,
    copy: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let mut options = BulkLoadOptions::default();
    options.expected_runs = expected_runs;
    to.logs.begin_bulk_load(options).await?;
    if let Err(e) = to.metrics.begin_bulk_load(options).await {
        let _ = to.logs.end_bulk_load().await;
        return Err(e);
    }
    let copied = copy.await;
    let logs = to.logs.end_bulk_load().await;
    let metrics = to.metrics.end_bulk_load().await;
    let out = copied?;
    logs?;
    metrics?;
    Ok(out)
}

struct Migrator<'a> {
    from: &'a StoreSet,
    to: &'a StoreSet,
    opts: &'a MigrateOptions,
    /// This part's counts (the parts' are added up at the end).
    report: MigrationReport,
    /// The check made while copying (see [`MigrateOptions::verify`]).
    check: Option<Tally>,
    /// Shared by the parts, for progress.
    read: &'a ReadSoFar,
    /// The destination held no run when the migration began: a run it
    /// holds now was put there by this migration, or by someone else
    /// meanwhile, which `import_runs` refuses as a conflict. So a batch
    /// goes straight to `import_runs`, without looking up its runs first.
    fresh: bool,
}

/// Records read so far per concern (indexed by [`Concern`]), over every
/// part of a migration: what progress shows while parts copy alongside
/// each other.
#[derive(Default)]
struct ReadSoFar([AtomicU64; 6]);

/// How a destination run's events compare with the source's.
enum EventsState {
    /// Same events.
    Equal,
    /// The destination holds the first `n` events only.
    Prefix,
    /// Other events.
    Differ(String),
}

/// Whether `to` held no run when the migration began (one page of one
/// run, cheap on every backend, unlike a count).
async fn holds_no_runs(to: &StoreSet) -> Result<bool> {
    Ok(pager::runs(to, 1).next().await?.is_none())
}

fn is_not_found(e: &Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

fn is_conflict(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Immutable)
}

fn new_event(e: Event) -> NewEvent {
    NewEvent {
        kind: e.kind,
        at: e.at,
        payload: e.payload,
        idempotency_key: e.idempotency_key,
    }
}

fn event_count(runs: &[EncodedRun]) -> u64 {
    runs.iter().map(|r| r.events.len() as u64).sum()
}

fn workflow_difference(a: &WorkflowDefinition, b: &WorkflowDefinition) -> String {
    format!(
        "content hash {} in the source, {} in the destination",
        a.content_hash(),
        b.content_hash()
    )
}

/// What the reading half of [`Migrator::runs`] hands to the writing half.
enum RunItem {
    /// Runs whose events all fit in one batch, their payloads as the text
    /// the source holds (see [`ReadRun::Small`]).
    Batch(Vec<EncodedRun>),
    /// A run with more events than a batch holds: the first chunk, and a
    /// pager positioned after it.
    Large {
        run: Box<Run>,
        first: Vec<Event>,
        rest: Pager<Event>,
    },
}

/// How many runs' events the reader fetches at once: overlaps the round
/// trips of a networked source.
const READ_AHEAD: usize = 4;

/// A run read from the source with its events.
enum ReadRun {
    /// A run whose events all came with its page, their payloads as the
    /// text the source holds: a batch carries them to the destination
    /// without building each as a value and writing it out again (a fifth
    /// of a files -> SQLite hop's time).
    Small { run: Run, events: Vec<EncodedEvent> },
    /// A run read on its own: its first chunk of events, and a pager
    /// positioned after them.
    Paged {
        run: Run,
        first: Vec<Event>,
        rest: Pager<Event>,
    },
}

impl ReadRun {
    /// The events in hand.
    fn len(&self) -> usize {
        match self {
            ReadRun::Small { events, .. } => events.len(),
            ReadRun::Paged { first, .. } => first.len(),
        }
    }

    /// The run with the events in hand, as a batch carries it, through
    /// [`checked`].
    fn checked(self, opts: &MigrateOptions) -> Result<Option<EncodedRun>> {
        let r = match self {
            ReadRun::Small { run, events } => {
                let r = EncodedRun { run, events };
                // Checked on the text first: repairs are rare.
                if opts.quarantine.is_none() || r.validate().is_ok() {
                    return Ok(Some(r));
                }
                r.into_run()?
            }
            ReadRun::Paged { run, first, .. } => RunWithEvents { run, events: first },
        };
        checked(r, opts)?.map(EncodedRun::from_run).transpose()
    }
}

/// Reads a run's first `max_events` events; `None` if the run was deleted
/// from the source since it was listed (retention): nothing is left to copy.
/// With a quarantine, a run whose events cannot be read is noted there and
/// left out (`None`) too.
async fn read_run(
    from: &StoreSet,
    run: Run,
    max_events: usize,
    q: Option<&Arc<Mutex<Quarantine>>>,
) -> Result<Option<ReadRun>> {
    let mut rest = pager::events(&from.logs, &run.id, max_events);
    let mut first = Vec::new();
    while first.len() < max_events {
        match rest.next().await {
            Ok(Some(e)) => first.push(e),
            Ok(None) => break,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Corrupt && q.is_some() => {
                note(q, "runs", run.id.as_str(), &e.to_string(), true)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    // Looks ahead only when a full chunk was read, so a run that fits costs
    // one page.
    if first.len() == max_events {
        rest.peek().await?;
    }
    Ok(Some(ReadRun::Paged { run, first, rest }))
}

/// Reads a page of runs with their events: the runs that hold fewer
/// events than a batch with one `events_of_small_runs` (each run read
/// once), the others with [`read_run`]. In page order; a run deleted from
/// the source since it was listed is left out. With a quarantine, a page
/// whose events cannot be read is read again run by run, so only the
/// unreadable run is noted and left out.
async fn read_page(
    from: &StoreSet,
    page: Vec<Run>,
    max_events: usize,
    q: Option<&Arc<Mutex<Quarantine>>>,
) -> Result<Vec<ReadRun>> {
    let ids: Vec<RunId> = page.iter().map(|r| r.id.clone()).collect();
    let mut out: Vec<ReadRun> = Vec::with_capacity(page.len());
    let read = match from
        .logs
        .events_of_small_runs_encoded(&ids, max_events)
        .await
    {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::Corrupt && q.is_some() => {
            for run in page {
                out.extend(read_run(from, run, max_events, q).await?);
            }
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    for (run, events) in page.into_iter().zip(read) {
        let Some(events) = events else {
            out.extend(read_run(from, run, max_events, q).await?);
            continue;
        };
        // No events: a run without any, or one deleted since it was listed.
        if events.is_empty() {
            match from.logs.get_run(&run.id).await {
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        out.push(ReadRun::Small { run, events });
    }
    Ok(out)
}

/// Reads runs from the source with their events and sends them in batches
/// of at most `batch_size` runs and `max_events_per_batch` events. Ends
/// quietly when the writer has stopped.
async fn read_runs(
    from: &StoreSet,
    opts: &MigrateOptions,
    tx: mpsc::Sender<RunItem>,
) -> Result<()> {
    let max_events = opts.max_events_per_batch;
    // One listing of every run, or (a pass since a watermark) the
    // listings of what changed, one after the other.
    let filters = match opts.since {
        Some(t) => run_filters_since(t),
        None => vec![RunFilter::default()],
    };
    let mut sources = filters
        .into_iter()
        .map(|f| pager::runs_where(from, f, opts.batch_size));
    let mut src = sources.next();
    let mut batch: Vec<EncodedRun> = Vec::new();
    let mut batch_events = 0usize;
    loop {
        let mut page = Vec::new();
        while page.len() < opts.batch_size {
            let Some(s) = src.as_mut() else { break };
            match s.next().await? {
                Some(run) => page.push(run),
                None => src = sources.next(),
            }
        }
        if page.is_empty() {
            break;
        }
        for mut read in read_page(from, page, max_events, opts.quarantine.as_ref()).await? {
            let large = match &mut read {
                ReadRun::Paged { rest, .. } => rest.peek().await?.is_some(),
                ReadRun::Small { .. } => false,
            };
            let full = batch.len() >= opts.batch_size || batch_events + read.len() > max_events;
            if (full || large) && !batch.is_empty() {
                batch_events = 0;
                if tx
                    .send(RunItem::Batch(std::mem::take(&mut batch)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            match read {
                ReadRun::Paged { run, first, rest } if large => {
                    let item = RunItem::Large {
                        run: Box::new(run),
                        first,
                        rest,
                    };
                    if tx.send(item).await.is_err() {
                        return Ok(());
                    }
                }
                read => {
                    let Some(r) = read.checked(opts)? else {
                        continue;
                    };
                    batch_events += r.events.len();
                    batch.push(r);
                }
            }
        }
    }
    if !batch.is_empty() {
        // A closed channel means the writer failed; it reports why.
        let _ = tx.send(RunItem::Batch(batch)).await;
    }
    Ok(())
}

/// The records `dest` holds of the runs of `batch`, read with one paged
/// query (pages of `page`) over the batch's `started_at` window, or run by
/// run when that window holds many more runs than the batch. With `fresh`
/// (`dest` held no run when the migration began, see [`Migrator::fresh`]),
/// the window is not counted first: it holds the runs this migration
/// copied there, read oldest first, so hardly more than the batch.
pub(super) async fn stored_in(
    dest: &StoreSet,
    page: usize,
    batch: &[&Run],
    fresh: bool,
) -> Result<HashMap<RunId, Run>> {
    let mut found = HashMap::new();
    let (Some(from), Some(to)) = (
        batch.iter().map(|r| r.started_at).min(),
        batch.iter().map(|r| r.started_at).max(),
    ) else {
        return Ok(found);
    };
    let wanted: HashSet<&RunId> = batch.iter().map(|r| &r.id).collect();
    // `started_before` is exclusive; no time is after `Timestamp::MAX`.
    let before = (to < Timestamp::MAX).then(|| to.saturating_add_micros(1));
    let filter = RunFilter::default().started_between(Some(from), before);
    // A window that holds many more runs than the batch (the runs of a
    // pass since a watermark are spread over all of time) is cheaper
    // looked up run by run.
    let sparse =
        !fresh && dest.logs.count_runs(filter.clone()).await? > 4 * batch.len() as u64 + 100;
    if sparse {
        let mut lookups = stream::iter(batch)
            .map(|r| async move {
                match dest.logs.get_run(&r.id).await {
                    Ok(run) => Ok(Some(run)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(READ_AHEAD);
        while let Some(run) = lookups.next().await {
            if let Some(run) = run? {
                found.insert(run.id.clone(), run);
            }
        }
        return Ok(found);
    }
    let mut dst = pager::runs_where(dest, filter, page);
    while let Some(run) = dst.next().await? {
        if wanted.contains(&run.id) {
            found.insert(run.id.clone(), run);
        }
    }
    Ok(found)
}

/// Notes a record in the quarantine, if there is one; whether there is.
fn note(
    q: Option<&Arc<Mutex<Quarantine>>>,
    concern: &str,
    key: &str,
    reason: &str,
    skipped: bool,
) -> Result<bool> {
    let Some(q) = q else { return Ok(false) };
    let mut q = q
        .lock()
        .map_err(|_| Error::backend("the quarantine's lock was poisoned", None))?;
    q.add(concern, key, "the source store", reason, skipped)?;
    Ok(true)
}

/// With a quarantine, a run the destination would refuse (a hole in its
/// event numbering where a line could not be read) is repaired with
/// `runstore.lost` tombstones, or left out when it cannot be; each noted.
fn checked(r: RunWithEvents, opts: &MigrateOptions) -> Result<Option<RunWithEvents>> {
    let q = opts.quarantine.as_ref();
    if q.is_none() || r.validate().is_ok() {
        return Ok(Some(r));
    }
    let key = r.run.id.to_string();
    let (fixed, notes) = r.repaired(&format!("the source store, run {key}"));
    match fixed.validate() {
        Ok(()) => {
            for n in &notes {
                note(q, "runs", &key, n, false)?;
            }
            Ok(Some(fixed))
        }
        Err(e) => {
            note(q, "runs", &key, &e.to_string(), true)?;
            Ok(None)
        }
    }
}

/// Reads an artifact's bytes to the end, which checks them against its
/// hash: `Corrupt` when they do not match.
async fn read_through(from: &StoreSet, key: &runstore_core::ArtifactKey) -> Result<()> {
    let mut reader = from.artifacts.get(key).await?;
    tokio::io::copy(&mut reader.body, &mut tokio::io::sink())
        .await
        .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
    Ok(())
}

/// A run's source events: the ones already read, then the rest of a pager.
struct SourceEvents {
    head: VecDeque<Event>,
    rest: Option<Pager<Event>>,
    /// Events taken from `rest` (the head was counted when read).
    read_from_rest: u64,
    /// Events taken in all, for the check made while copying.
    taken: u64,
}

impl SourceEvents {
    fn new(head: Vec<Event>, rest: Option<Pager<Event>>) -> Self {
        SourceEvents {
            head: head.into(),
            rest,
            read_from_rest: 0,
            taken: 0,
        }
    }

    /// Takes every event read ahead.
    fn take_head(&mut self) -> Vec<Event> {
        let head: Vec<Event> = self.head.drain(..).collect();
        self.taken += head.len() as u64;
        head
    }

    async fn peek(&mut self) -> Result<Option<&Event>> {
        if !self.head.is_empty() {
            return Ok(self.head.front());
        }
        match &mut self.rest {
            Some(rest) => rest.peek().await,
            None => Ok(None),
        }
    }

    async fn next(&mut self) -> Result<Option<Event>> {
        if let Some(e) = self.head.pop_front() {
            self.taken += 1;
            return Ok(Some(e));
        }
        let Some(rest) = &mut self.rest else {
            return Ok(None);
        };
        let e = rest.next().await?;
        if e.is_some() {
            self.read_from_rest += 1;
            self.taken += 1;
        }
        Ok(e)
    }
}

/// The reader's items as the writers of runs take them, numbered in the
/// order taken (the check records them in that order).
struct Taken {
    rx: AsyncMutex<mpsc::Receiver<RunItem>>,
    count: AtomicU64,
}

impl Taken {
    /// The next item and its number; `None` once the reader is done.
    async fn next(&self) -> Option<(u64, RunItem)> {
        // The lock is held while waiting, so one writer waits at a time and
        // the numbers follow the channel's order.
        let mut rx = self.rx.lock().await;
        let item = rx.recv().await?;
        Some((self.count.fetch_add(1, Ordering::Relaxed), item))
    }
}

/// Up to `n` metrics from `src`, in its order; empty when it is read to
/// the end.
async fn metrics_batch(src: &mut Pager<ExecutionMetric>, n: usize) -> Result<Vec<ExecutionMetric>> {
    let mut batch = Vec::new();
    while batch.len() < n {
        match src.next().await? {
            Some(m) => batch.push(m),
            None => break,
        }
    }
    Ok(batch)
}

/// The destination's metrics of the runs of `sources` (one
/// `metrics_of_runs`), in their order; nothing for no sources.
async fn read_back_metrics(
    to: &StoreSet,
    sources: &[ExecutionMetric],
) -> Result<Vec<Option<ExecutionMetric>>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<RunId> = sources.iter().map(|m| m.run_id.clone()).collect();
    to.metrics.metrics_of_runs(&ids).await
}

/// Reads batch `batch` (its number and runs) back from `to` and records it
/// in `check`; nothing without a check or a batch.
async fn check_runs(
    to: &StoreSet,
    (opts, fresh): (&MigrateOptions, bool),
    check: Option<&RunsCheck>,
    batch: Option<(u64, Vec<RunCount>)>,
) -> Result<()> {
    let (Some(check), Some((seq, sources))) = (check, batch) else {
        return Ok(());
    };
    let back = read_back(to, opts.batch_size, sources, fresh).await?;
    check.record(seq, back).await
}

impl<'a> Migrator<'a> {
    /// Records of `concern` read so far, by every part.
    fn done(&self, concern: Concern) -> u64 {
        self.read.0[concern as usize].load(Ordering::Relaxed)
    }

    /// Takes back `n` records of `concern` counted as read (they are read
    /// again).
    fn uncount_read(&mut self, concern: Concern, n: u64) {
        self.report.counts_mut(concern).read -= n;
        self.read.0[concern as usize].fetch_sub(n, Ordering::Relaxed);
    }

    /// Counts `n` records of `concern` read from the source.
    fn count_read(&mut self, concern: Concern, n: u64) {
        self.report.counts_mut(concern).read += n;
        self.read.0[concern as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn progress(&self, concern: Concern, total: Option<u64>) {
        if let Some(p) = &self.opts.progress {
            p.on_progress(concern.as_str(), self.done(concern), total);
        }
    }

    /// Events progress while a long run is being copied: its events read so
    /// far count before the run is done.
    fn progress_events(&self, in_flight: u64) {
        if let Some(p) = &self.opts.progress {
            p.on_progress(
                Concern::Events.as_str(),
                self.done(Concern::Events) + in_flight,
                None,
            );
        }
    }

    fn finish(&self, concern: Concern) {
        if let Some(p) = &self.opts.progress {
            p.on_finish(concern.as_str(), self.done(concern));
        }
    }

    /// Counts and lists a conflict, or stops the migration with it.
    fn conflict(&mut self, concern: Concern, key: String, detail: String) -> Result<()> {
        if self.opts.on_conflict == OnConflict::Fail {
            return Err(Error::conflict(format!(
                "{concern} {key} is stored in the destination with other content: {detail}"
            )));
        }
        self.report.counts_mut(concern).conflicts += 1;
        if self.report.conflicts.len() < self.opts.max_reported {
            self.report.conflicts.push(ConflictRecord {
                concern,
                key,
                detail,
            });
        } else {
            self.report.conflicts_truncated = true;
        }
        Ok(())
    }

    /// Records one record of `concern` against the destination's copy,
    /// read back with `read` (`None`: absent), both hashed with `hash`.
    async fn check_record<T, F>(
        &mut self,
        concern: Concern,
        key: String,
        source: &T,
        read: F,
        hash: fn(&T) -> Result<Sha256Digest>,
    ) -> Result<()>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if self.check.is_none() {
            return Ok(());
        }
        let dst = match read.await {
            Ok(d) => Some(hash(&d)?),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let src = hash(source)?;
        if let Some(check) = self.check.as_mut() {
            check.record(concern, key, Some(src), dst, || "content differs".into());
        }
        Ok(())
    }

    async fn workflows(&mut self) -> Result<()> {
        let mut src = pager::workflows(self.from, self.opts.batch_size);
        while let Some(def) = src.next().await? {
            self.count_read(Concern::Workflows, 1);
            // Storing is idempotent: try it first, look only when refused.
            // A dry run (and the `Fail` policy, which must not write before
            // it knows) looks first.
            if !self.opts.dry_run && self.opts.on_conflict == OnConflict::Report {
                match self.to.workflows.store(def.clone()).await {
                    Ok(w) if w.inserted => self.report.workflows.copied += 1,
                    Ok(_) => self.report.workflows.unchanged += 1,
                    Err(e) if is_conflict(&e) => self.workflow_conflict(&def, e).await?,
                    Err(e) => return Err(e),
                }
            } else {
                match self.to.workflows.get(&def.id, def.version).await {
                    Ok(stored) if stored.same_content(&def) => self.report.workflows.unchanged += 1,
                    Ok(stored) => self.conflict(
                        Concern::Workflows,
                        format!("{}@{}", def.id, def.version),
                        workflow_difference(&def, &stored),
                    )?,
                    Err(e) if is_not_found(&e) => {
                        if !self.opts.dry_run {
                            match self.to.workflows.store(def.clone()).await {
                                Ok(_) => {}
                                Err(e) if is_conflict(&e) => {
                                    self.workflow_conflict(&def, e).await?;
                                    continue;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        self.report.workflows.copied += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            let to = self.to;
            self.check_record(
                Concern::Workflows,
                format!("{}@{}", def.id, def.version),
                &def,
                to.workflows.get(&def.id, def.version),
                |d| Ok(d.content_hash()),
            )
            .await?;
            self.progress(Concern::Workflows, None);
        }
        self.finish(Concern::Workflows);
        Ok(())
    }

    /// Reports a workflow version the destination refused, with the two
    /// content hashes when the stored version can be read.
    async fn workflow_conflict(&mut self, def: &WorkflowDefinition, refused: Error) -> Result<()> {
        let detail = match self.to.workflows.get(&def.id, def.version).await {
            Ok(stored) => workflow_difference(def, &stored),
            Err(_) => refused.to_string(),
        };
        self.conflict(
            Concern::Workflows,
            format!("{}@{}", def.id, def.version),
            detail,
        )
    }

    /// Copies the runs with their events: one reader, and this part with
    /// `helpers` writing the batches it reads, each taking the next batch
    /// when done with one.
    async fn runs(&mut self, helpers: &mut [Migrator<'a>]) -> Result<()> {
        let total = source_runs(self.from, self.opts.since).await;
        // Reading the source and writing the destination overlap: the reader
        // fills the next batch while the writers store the last ones. One
        // batch waits in the channel, which bounds the memory.
        let (from, opts) = (self.from, self.opts);
        let (tx, rx) = mpsc::channel(1);
        let taken = Taken {
            rx: AsyncMutex::new(rx),
            count: AtomicU64::new(0),
        };
        // This part's check of runs goes to every writer for the copy.
        let check = self.check.take().map(RunsCheck::new);
        let writing = async {
            let writers = std::iter::once(&mut *self)
                .map(|w| w.write_runs(&taken, check.as_ref(), total))
                .chain(
                    helpers
                        .iter_mut()
                        .map(|w| w.write_runs(&taken, check.as_ref(), total)),
                );
            let written = futures_util::future::try_join_all(writers).await;
            // A writer that fails stops the others (dropped with the join);
            // closing the channel then ends the reader quietly.
            taken.rx.lock().await.close();
            written
        };
        let (read, written) = tokio::join!(read_runs(from, opts, tx), writing);
        // The writer's error is the one to report.
        written?;
        read?;
        self.check = check.map(RunsCheck::into_tally).transpose()?;
        self.finish(Concern::Runs);
        // Its bar (if a long run drew one) must not stay through what follows.
        self.finish(Concern::Events);
        Ok(())
    }

    /// Writes batches taken from `taken` until it is empty and closed. With
    /// the check made while copying, a batch is read back while the next
    /// one is written, so the destination's writer does not wait for the
    /// reads.
    async fn write_runs(
        &mut self,
        taken: &Taken,
        check: Option<&RunsCheck>,
        total: Option<u64>,
    ) -> Result<()> {
        // Written, not yet read back, with its number.
        let mut unchecked: Option<(u64, Vec<RunCount>)> = None;
        loop {
            let Some((seq, item)) = taken.next().await else {
                return check_runs(self.to, (self.opts, self.fresh), check, unchecked).await;
            };
            match item {
                RunItem::Batch(batch) => {
                    self.count_read(Concern::Runs, batch.len() as u64);
                    self.count_read(Concern::Events, event_count(&batch));
                    let sources = check.map(|_| {
                        let counts = batch.iter().map(|r| RunCount {
                            run: r.run.clone(),
                            events: r.events.len() as u64,
                        });
                        (seq, counts.collect())
                    });
                    let earlier = std::mem::replace(&mut unchecked, sources);
                    let (to, opts, fresh) = (self.to, self.opts, self.fresh);
                    let (written, checked) = tokio::join!(
                        self.flush_runs(batch),
                        check_runs(to, (opts, fresh), check, earlier)
                    );
                    written?;
                    checked?;
                }
                RunItem::Large { run, first, rest } => {
                    let earlier = unchecked.take();
                    check_runs(self.to, (self.opts, self.fresh), check, earlier).await?;
                    self.count_read(Concern::Runs, 1);
                    self.count_read(Concern::Events, first.len() as u64);
                    let mut events = SourceEvents::new(first, Some(rest));
                    let source_run = check.is_some().then(|| (*run).clone());
                    let done = self.large_run(*run, &mut events).await;
                    self.count_read(Concern::Events, events.read_from_rest);
                    done?;
                    if let Some(run) = source_run {
                        // The events not taken (a conflict stopped the
                        // copy) are counted too: the check compares them all.
                        while events.next().await?.is_some() {}
                        let events = events.taken;
                        let this = Some((seq, vec![RunCount { run, events }]));
                        check_runs(self.to, (self.opts, self.fresh), check, this).await?;
                    }
                }
            }
            self.progress(Concern::Runs, total);
        }
    }

    /// Stores a batch of runs. The destination's copies of them are fetched
    /// with one query (the batch's `started_at` window; none into a
    /// destination that was empty, see [`Migrator::fresh`]); when none differs,
    /// the whole batch goes in one `import_runs`, which leaves identical runs
    /// as they are. Otherwise, or when the destination refuses the batch
    /// (events that differ, a prefix left by an interrupted import, a write
    /// by someone else), the runs are handled one by one, in source order.
    async fn flush_runs(&mut self, batch: Vec<EncodedRun>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let stored = if self.fresh && !self.opts.dry_run {
            HashMap::new()
        } else {
            self.stored_runs(&batch).await?
        };
        let differs = |r: &EncodedRun| {
            stored
                .get(&r.run.id)
                .is_some_and(|s| !s.same_content(&r.run))
        };
        // A run the source moved forward since an earlier pass is no
        // contradiction; only a run that cannot be brought forward is.
        let contradicts = |r: &EncodedRun| {
            stored
                .get(&r.run.id)
                .is_some_and(|s| s.forward_to(&r.run).is_err())
        };
        if self.opts.on_conflict == OnConflict::Fail
            && let Some(r) = batch.iter().find(|r| contradicts(r))
        {
            let detail = describe_run_difference(&r.run, &stored[&r.run.id]);
            return self.conflict(Concern::Runs, r.run.id.to_string(), detail);
        }
        if !self.opts.dry_run && !batch.iter().any(differs) {
            let (mut new_events, mut old_events) = (0, 0);
            for r in &batch {
                if stored.contains_key(&r.run.id) {
                    old_events += r.events.len() as u64;
                } else {
                    new_events += r.events.len() as u64;
                }
            }
            // The records only: a refused batch is read again rather than
            // kept twice in memory.
            let runs: Vec<Run> = batch.iter().map(|r| r.run.clone()).collect();
            return match self.to.logs.import_runs_encoded(batch).await {
                Ok(outcome) => {
                    self.report.runs.copied += outcome.inserted;
                    self.report.runs.unchanged += outcome.unchanged;
                    self.report.events.copied += new_events;
                    self.report.events.unchanged += old_events;
                    Ok(())
                }
                Err(e) if is_conflict(&e) => self.one_by_one(runs, new_events + old_events).await,
                Err(e) => Err(e),
            };
        }
        let mut absent = Vec::new();
        for r in batch {
            match stored.get(&r.run.id) {
                None => absent.push(r),
                Some(s) => {
                    let r = r.into_run()?;
                    let mut events = SourceEvents::new(r.events, None);
                    self.stored_run(s, &r.run, &mut events).await?;
                }
            }
        }
        self.import_absent(absent).await
    }

    /// Runs whose batch the destination refused (written meanwhile by
    /// someone else, or events that differ), one by one: each is read
    /// again from the source with its events and looked up on its own, so
    /// the one that conflicts is reported. `events_read` is what the batch
    /// held: the counts of what was read follow the second reading.
    async fn one_by_one(&mut self, runs: Vec<Run>, events_read: u64) -> Result<()> {
        let n = runs.len() as u64;
        let q = self.opts.quarantine.as_ref();
        let again = read_page(self.from, runs, self.opts.max_events_per_batch, q).await?;
        self.uncount_read(Concern::Runs, n);
        self.uncount_read(Concern::Events, events_read);
        for read in again {
            self.count_read(Concern::Runs, 1);
            self.count_read(Concern::Events, read.len() as u64);
            let (run, first, rest) = match read {
                // All its events are in hand: repaired as the batch was.
                ReadRun::Small { run, events } => {
                    let r = EncodedRun { run, events }.into_run()?;
                    match checked(r, self.opts)? {
                        Some(r) => (r.run, r.events, None),
                        None => continue,
                    }
                }
                ReadRun::Paged { run, first, rest } => (run, first, Some(rest)),
            };
            let mut events = SourceEvents::new(first, rest);
            let done = self.large_run(run, &mut events).await;
            self.count_read(Concern::Events, events.read_from_rest);
            done?;
        }
        Ok(())
    }

    /// A run the destination holds as `stored`: the same record (compare the
    /// events), an earlier state of it (bring it forward, then the events),
    /// or a contradiction.
    async fn stored_run(
        &mut self,
        stored: &Run,
        run: &Run,
        events: &mut SourceEvents,
    ) -> Result<()> {
        match stored.forward_to(run) {
            Ok(None) => self.existing_run(&run.id, events, false).await,
            Ok(Some(update)) => {
                if !self.opts.dry_run {
                    self.to.logs.update_status(&run.id, update).await?;
                }
                self.report.runs_forwarded += 1;
                self.report.runs.updated += 1;
                self.existing_run(&run.id, events, true).await
            }
            Err(_) => {
                // Its events stay unread beyond what is in hand: those are
                // counted with the conflict, so the columns add up.
                self.report.events.conflicts += events.head.len() as u64;
                let detail = describe_run_difference(run, stored);
                self.conflict(Concern::Runs, run.id.to_string(), detail)
            }
        }
    }

    /// The destination's records of the runs of `batch` (those it holds),
    /// read with one paged query over the batch's `started_at` window.
    async fn stored_runs(&self, batch: &[EncodedRun]) -> Result<HashMap<RunId, Run>> {
        let runs: Vec<&Run> = batch.iter().map(|r| &r.run).collect();
        self.stored(&runs).await
    }

    /// [`Self::stored_runs`] of bare run records.
    async fn stored(&self, batch: &[&Run]) -> Result<HashMap<RunId, Run>> {
        stored_in(self.to, self.opts.batch_size, batch, false).await
    }

    /// Imports runs absent from the destination, as one batch; if it is
    /// refused (written meanwhile by someone else), one by one to report it.
    async fn import_absent(&mut self, absent: Vec<EncodedRun>) -> Result<()> {
        if absent.is_empty() {
            return Ok(());
        }
        if self.opts.dry_run {
            self.report.runs.copied += absent.len() as u64;
            self.report.events.copied += event_count(&absent);
            return Ok(());
        }
        let events = event_count(&absent);
        let runs: Vec<Run> = absent.iter().map(|r| r.run.clone()).collect();
        match self.to.logs.import_runs_encoded(absent).await {
            Ok(outcome) => {
                self.report.runs.copied += outcome.inserted;
                self.report.runs.unchanged += outcome.unchanged;
                self.report.events.copied += events;
                Ok(())
            }
            Err(e) if is_conflict(&e) => self.one_by_one(runs, events).await,
            Err(e) => Err(e),
        }
    }

    /// A run with more events than a batch holds, looked up on its own.
    async fn large_run(&mut self, run: Run, events: &mut SourceEvents) -> Result<()> {
        match self.to.logs.get_run(&run.id).await {
            Err(e) if is_not_found(&e) => self.import_large(run, events).await,
            Ok(stored) => self.stored_run(&stored, &run, events).await,
            Err(e) => Err(e),
        }
    }

    /// Imports a large run with the events read so far, then appends the
    /// rest in chunks. Interrupted, it leaves a prefix of the events, which
    /// [`Self::existing_run`] completes.
    async fn import_large(&mut self, run: Run, events: &mut SourceEvents) -> Result<()> {
        let id = run.id.clone();
        let first: Vec<Event> = events.take_head();
        let n_first = first.len() as u64;
        if !self.opts.dry_run {
            match self
                .to
                .logs
                .import_runs(vec![RunWithEvents { run, events: first }])
                .await
            {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    return self.conflict(Concern::Runs, id.to_string(), e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        self.report.runs.copied += 1;
        self.report.events.copied += n_first;
        self.append_rest(&id, events, n_first + 1).await
    }

    /// Appends the events left in `rest`, which start at `next_seq`, in
    /// chunks; each chunk checks the numbers the destination gave.
    async fn append_rest(
        &mut self,
        id: &RunId,
        rest: &mut SourceEvents,
        next_seq: u64,
    ) -> Result<()> {
        let mut expected = next_seq;
        loop {
            let mut chunk = Vec::new();
            while chunk.len() < self.opts.max_events_per_batch {
                match rest.next().await? {
                    Some(e) => chunk.push(e),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return Ok(());
            }
            let n = chunk.len() as u64;
            if !self.opts.dry_run {
                let news: Vec<NewEvent> = chunk.into_iter().map(new_event).collect();
                let appended = self.to.logs.append_events(id, news).await?;
                for (i, a) in appended.iter().enumerate() {
                    let want = expected + i as u64;
                    if a.duplicate || a.seq != want {
                        // Someone else appends to this run in the destination.
                        return self.conflict(
                            Concern::Runs,
                            id.to_string(),
                            format!(
                                "event {want} was numbered {} (duplicate: {}) by the destination",
                                a.seq, a.duplicate
                            ),
                        );
                    }
                }
            }
            self.report.events.copied += n;
            expected += n;
            // A long run can take a while: show its events moving.
            self.progress_events(rest.read_from_rest);
        }
    }

    /// A run already in the destination with the same record: compares the
    /// events, completing a prefix left by an interrupted chunked import or
    /// by a source that appended since an earlier pass. A `forwarded` run is
    /// already counted (in `runs_forwarded`); only its events are counted
    /// here.
    async fn existing_run(
        &mut self,
        id: &RunId,
        src: &mut SourceEvents,
        forwarded: bool,
    ) -> Result<()> {
        let mut dst = pager::events(&self.to.logs, id, self.opts.max_events_per_batch);
        let mut n = 0u64;
        let state = loop {
            let step = match (src.peek().await?, dst.peek().await?) {
                (None, None) => Some(EventsState::Equal),
                (Some(_), None) => Some(EventsState::Prefix),
                (None, Some(d)) => Some(EventsState::Differ(format!(
                    "the destination has more events (event {} and on); the source has {n}",
                    d.seq
                ))),
                (Some(s), Some(d)) if s.same_content(d) => None,
                (Some(s), Some(d)) => Some(EventsState::Differ(format!(
                    "event {} differs: sha256 {} in the source, {} in the destination",
                    s.seq,
                    runstore_core::content_hash(s)?,
                    runstore_core::content_hash(d)?
                ))),
            };
            match step {
                Some(state) => break state,
                None => {
                    src.next().await?;
                    dst.next().await?;
                    n += 1;
                }
            }
        };
        match state {
            EventsState::Equal => {
                if !forwarded {
                    self.report.runs.unchanged += 1;
                }
                self.report.events.unchanged += n;
                Ok(())
            }
            EventsState::Prefix => {
                if !forwarded {
                    self.report.runs_resumed += 1;
                    self.report.runs.updated += 1;
                }
                self.report.events.unchanged += n;
                self.append_rest(id, src, n + 1).await
            }
            EventsState::Differ(detail) => {
                // The run's events read so far go with the conflict, so the
                // columns add up (those still unread are not counted).
                self.report.events.conflicts += n + src.head.len() as u64;
                self.conflict(Concern::Runs, id.to_string(), detail)
            }
        }
    }

    /// Copies the metrics in batches, three steps overlapped: the next batch
    /// is read from the source while this one is written and, for the check
    /// made while copying, the one before is read back. One after another,
    /// each step left the other side idle (a checked SQLite -> PostgreSQL
    /// hop spent 40 s on its metrics, against 25 s for the copy alone).
    async fn metrics(&mut self) -> Result<()> {
        let mut src = pager::metrics(self.from, self.opts.batch_size)
            .since(self.opts.since, |m| m.recorded_at);
        let per_batch = self.opts.metrics_per_batch;
        let to = self.to;
        let mut next = metrics_batch(&mut src, per_batch).await?;
        // Copied and waiting to be read back: the source's side of each.
        let mut unchecked: Vec<ExecutionMetric> = Vec::new();
        while !next.is_empty() {
            let batch = std::mem::take(&mut next);
            self.count_read(Concern::Metrics, batch.len() as u64);
            let sources = match self.check {
                Some(_) => batch.clone(),
                None => Vec::new(),
            };
            let earlier = std::mem::replace(&mut unchecked, sources);
            let (read, written, back) = tokio::join!(
                metrics_batch(&mut src, per_batch),
                self.flush_metrics(batch),
                read_back_metrics(to, &earlier),
            );
            written?;
            self.check_metrics(&earlier, back?)?;
            next = read?;
            self.progress(Concern::Metrics, None);
        }
        let back = read_back_metrics(to, &unchecked).await?;
        self.check_metrics(&unchecked, back)?;
        self.finish(Concern::Metrics);
        Ok(())
    }

    /// Records in the check made while copying each metric of `sources`
    /// against what the destination gave back for it (`stored`, in the same
    /// order).
    fn check_metrics(
        &mut self,
        sources: &[ExecutionMetric],
        stored: Vec<Option<ExecutionMetric>>,
    ) -> Result<()> {
        let Some(check) = self.check.as_mut() else {
            return Ok(());
        };
        for (m, dst) in sources.iter().zip(stored) {
            let src = super::verify::metric_hash(m)?;
            // Equal content has an equal hash (`-0.0` is hashed as `0.0`,
            // as `same_content` takes it): the usual case hashes once.
            let dst = match dst {
                Some(d) if d.same_content(m) => Some(src),
                d => d.as_ref().map(super::verify::metric_hash).transpose()?,
            };
            check.record(
                Concern::Metrics,
                m.run_id.to_string(),
                Some(src),
                dst,
                || "content differs".into(),
            );
        }
        Ok(())
    }

    /// One `record_many` of `batch`, counted; `false` if the destination
    /// refused it (some metric is stored with other content).
    async fn record_many(&mut self, batch: &[ExecutionMetric]) -> Result<bool> {
        match self.to.metrics.record_many(batch.to_vec()).await {
            Ok(o) => {
                self.report.metrics.copied += o.inserted;
                self.report.metrics.unchanged += o.unchanged;
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a batch of metrics in one `record_many` (idempotent: identical
    /// metrics are left as they are); when the destination refuses it, or in
    /// a dry run or under `Fail`, looks them up one by one.
    async fn flush_metrics(&mut self, batch: Vec<ExecutionMetric>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.opts.dry_run
            && self.opts.on_conflict == OnConflict::Report
            && self.record_many(&batch).await?
        {
            return Ok(());
        }
        let mut absent = Vec::new();
        for m in batch {
            match self.to.metrics.get(&m.run_id).await {
                Ok(stored) if stored.same_content(&m) => self.report.metrics.unchanged += 1,
                Ok(stored) => self.conflict(
                    Concern::Metrics,
                    m.run_id.to_string(),
                    format!(
                        "sha256 {} in the source, {} in the destination",
                        super::verify::metric_hash(&m)?,
                        super::verify::metric_hash(&stored)?
                    ),
                )?,
                Err(e) if is_not_found(&e) => absent.push(m),
                Err(e) => return Err(e),
            }
        }
        if absent.is_empty() {
            return Ok(());
        }
        if self.opts.dry_run {
            self.report.metrics.copied += absent.len() as u64;
            return Ok(());
        }
        if self.record_many(&absent).await? {
            return Ok(());
        }
        // Written meanwhile by someone else: one by one, to report it.
        for m in absent {
            let id = m.run_id.to_string();
            match self.to.metrics.record(m).await {
                Ok(w) if w.inserted => self.report.metrics.copied += 1,
                Ok(_) => self.report.metrics.unchanged += 1,
                Err(e) if is_conflict(&e) => self.conflict(Concern::Metrics, id, e.to_string())?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn patterns(&mut self) -> Result<()> {
        let mut src = pager::patterns(self.from, self.opts.batch_size)
            .since(self.opts.since, |p| p.detected_at);
        while let Some(p) = src.next().await? {
            self.count_read(Concern::Patterns, 1);
            let source = self.check.is_some().then(|| p.clone());
            match self.to.metrics.get_pattern(&p.id).await {
                Ok(stored) if stored.same_content(&p) => self.report.patterns.unchanged += 1,
                Ok(stored) => self.conflict(
                    Concern::Patterns,
                    p.id.to_string(),
                    format!(
                        "sha256 {} in the source, {} in the destination",
                        super::verify::pattern_hash(&p)?,
                        super::verify::pattern_hash(&stored)?
                    ),
                )?,
                Err(e) if is_not_found(&e) => {
                    if !self.opts.dry_run {
                        self.to.metrics.upsert_pattern(p).await?;
                    }
                    self.report.patterns.copied += 1;
                }
                Err(e) => return Err(e),
            }
            if let Some(p) = source {
                let to = self.to;
                self.check_record(
                    Concern::Patterns,
                    p.id.to_string(),
                    &p,
                    to.metrics.get_pattern(&p.id),
                    super::verify::pattern_hash,
                )
                .await?;
            }
            self.progress(Concern::Patterns, None);
        }
        self.finish(Concern::Patterns);
        Ok(())
    }

    async fn artifacts(&mut self) -> Result<()> {
        let mut src = pager::artifacts(self.from, self.opts.batch_size)
            .since(self.opts.since, |i| i.created_at);
        while let Some(info) = src.next().await? {
            self.count_read(Concern::Artifacts, 1);
            let key = info.key.to_string();
            match self.to.artifacts.head(&info.key).await {
                Ok(stored) => match artifact_difference(&info, &stored) {
                    None => self.report.artifacts.unchanged += 1,
                    Some(detail) => self.conflict(Concern::Artifacts, key, detail)?,
                },
                Err(e) if is_not_found(&e) => {
                    if self.opts.dry_run {
                        self.report.artifacts.copied += 1;
                        self.report.artifact_bytes_copied += info.size;
                    } else {
                        self.copy_artifact(&info).await?;
                    }
                }
                Err(e) => return Err(e),
            }
            let to = self.to;
            self.check_record(
                Concern::Artifacts,
                info.key.to_string(),
                &info,
                to.artifacts.head(&info.key),
                runstore_core::content_hash::<ArtifactInfo>,
            )
            .await?;
            self.progress(Concern::Artifacts, None);
        }
        self.finish(Concern::Artifacts);
        Ok(())
    }

    /// Streams one artifact from source to destination, keeping its info.
    /// With a quarantine, one whose source bytes fail their hash is noted
    /// there and left out.
    async fn copy_artifact(&mut self, info: &ArtifactInfo) -> Result<()> {
        match self.copy_artifact_strict(info).await {
            Err(e) if self.opts.quarantine.is_some() && !is_conflict(&e) => {
                match read_through(self.from, &info.key).await {
                    Err(bad) if bad.kind() == ErrorKind::Corrupt => {
                        let key = info.key.to_string();
                        note(
                            self.opts.quarantine.as_ref(),
                            "artifacts",
                            &key,
                            &bad.to_string(),
                            true,
                        )?;
                        Ok(())
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    async fn copy_artifact_strict(&mut self, info: &ArtifactInfo) -> Result<()> {
        let reader = self.from.artifacts.get(&info.key).await?;
        let options = PutOptions::default()
            .content_type(info.content_type.clone())
            .created_by(info.created_by.clone())
            .created_at(info.created_at);
        match self.to.artifacts.put(&info.key, reader.body, options).await {
            Ok(w) => {
                if w.record.sha256 != info.sha256 || w.record.size != info.size {
                    return Err(Error::corrupt(
                        format!("artifact {} in the destination", info.key),
                        format!(
                            "stored sha256 {} and size {}, expected sha256 {} and size {}",
                            w.record.sha256, w.record.size, info.sha256, info.size
                        ),
                    ));
                }
                if w.inserted {
                    self.report.artifacts.copied += 1;
                    self.report.artifact_bytes_copied += info.size;
                } else {
                    self.report.artifacts.unchanged += 1;
                }
                Ok(())
            }
            Err(e) if is_conflict(&e) => {
                self.conflict(Concern::Artifacts, info.key.to_string(), e.to_string())
            }
            Err(e) => Err(e),
        }
    }
}

/// Which fields of two infos of the same key differ, if any.
pub(crate) fn artifact_difference(a: &ArtifactInfo, b: &ArtifactInfo) -> Option<String> {
    let mut diffs = Vec::new();
    if a.sha256 != b.sha256 {
        diffs.push(format!("sha256 {} / {}", a.sha256, b.sha256));
    }
    if a.size != b.size {
        diffs.push(format!("size {} / {}", a.size, b.size));
    }
    if a.content_type != b.content_type {
        diffs.push(format!(
            "content_type {:?} / {:?}",
            a.content_type, b.content_type
        ));
    }
    if a.created_by != b.created_by {
        diffs.push(format!(
            "created_by {:?} / {:?}",
            a.created_by, b.created_by
        ));
    }
    if a.created_at != b.created_at {
        diffs.push(format!("created_at {} / {}", a.created_at, b.created_at));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// Which fields of two records of the same run differ, in plain words:
/// `a` is the source's record, `b` the destination's.
pub(crate) fn describe_run_difference(a: &Run, b: &Run) -> String {
    fn pair(field: &str, a: String, b: String) -> String {
        format!("{field}: source {a}, destination {b}")
    }
    let time =
        |t: Option<runstore_core::Timestamp>| t.map_or("none".to_string(), |t| t.to_string());
    let mut diffs = Vec::new();
    if a.workflow_id != b.workflow_id || a.workflow_version != b.workflow_version {
        diffs.push(pair(
            "workflow",
            format!("{}@{}", a.workflow_id, a.workflow_version),
            format!("{}@{}", b.workflow_id, b.workflow_version),
        ));
    }
    if a.status != b.status {
        diffs.push(pair("status", a.status.to_string(), b.status.to_string()));
    }
    if a.trigger != b.trigger {
        diffs.push(pair(
            "trigger",
            runstore_core::text::shown(&a.trigger),
            runstore_core::text::shown(&b.trigger),
        ));
    }
    if a.started_at != b.started_at {
        diffs.push(pair(
            "started",
            a.started_at.to_string(),
            b.started_at.to_string(),
        ));
    }
    if a.ended_at != b.ended_at {
        diffs.push(pair("ended", time(a.ended_at), time(b.ended_at)));
    }
    let json = |m: &runstore_core::JsonMap| {
        runstore_core::canonical_json(&serde_json::Value::Object(m.clone()))
    };
    if json(&a.attributes) != json(&b.attributes) {
        diffs.push("attributes differ".into());
    }
    if json(&a.summaries) != json(&b.summaries) {
        diffs.push("summaries differ".into());
    }
    if diffs.is_empty() {
        diffs.push("the records differ".into());
    }
    diffs.join("; ")
}
