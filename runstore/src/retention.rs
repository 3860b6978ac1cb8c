//! Pruning by a [`RetentionPolicy`] (docs/DESIGN.md section 8): runs are
//! selected page by page, each decided by [`RetentionPolicy::decide`] (through
//! a [`runstore_core::retention::Ranker`]), and the pruned ones of a page are
//! deleted in batches in the order artifacts (unless kept), metrics, then
//! runs with their events (the run record last). `NotFound` and already
//! absent records count as done, so an interrupted prune is finished by the
//! next one. With an archive destination, each pruned run is first copied
//! there and read back; a failed archive deletes nothing.

use std::collections::BTreeMap;

/// The policy types of `runstore-core`, so that applications reach them here.
pub use runstore_core::retention::*;

use runstore_core::{
    ArtifactQuery, Cursor, Error, ErrorKind, LogRepositoryExt, MAX_PAGE_LIMIT, Result, Run,
    RunFilter, RunId, RunQuery, RunWithEvents, StoreSet, Timestamp,
};
use serde::Serialize;

/// Options of [`prune`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Report what would be pruned and change nothing.
    pub dry_run: bool,
    /// The time ages are measured at; now when not given.
    pub now: Option<Timestamp>,
    /// Runs read (and deleted) per page, 1 to [`MAX_PAGE_LIMIT`].
    pub page_size: usize,
    /// Copy each pruned run here, and read it back, before deleting it.
    pub archive: Option<StoreSet>,
    /// With an archive: a run that cannot be read to be archived is noted
    /// here and kept (neither archived nor deleted) instead of stopping
    /// the prune.
    pub quarantine: Option<std::sync::Arc<std::sync::Mutex<crate::dump::Quarantine>>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            now: None,
            page_size: 500,
            archive: None,
            quarantine: None,
        }
    }
}

impl PruneOptions {
    /// Sets the dry-run flag.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Measures ages at `now`.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
    /// Sets the page size.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }
    /// Archives pruned runs to `dest` before deleting them.
    pub fn archive_to(mut self, dest: StoreSet) -> Self {
        self.archive = Some(dest);
        self
    }
    /// A run that cannot be read to be archived goes to `quarantine` and is
    /// kept, instead of stopping the prune.
    pub fn quarantine(mut self, quarantine: crate::dump::Quarantine) -> Self {
        self.quarantine = Some(std::sync::Arc::new(std::sync::Mutex::new(quarantine)));
        self
    }
}

/// What was (or, in a dry run, would be) removed under one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RuleReport {
    /// The rule's index in the policy.
    pub rule: usize,
    /// Runs pruned.
    pub runs: u64,
    /// Their events.
    pub events: u64,
    /// Their metrics.
    pub metrics: u64,
    /// Their artifacts (zero when the policy keeps artifacts).
    pub artifacts: u64,
    /// Bytes of those artifacts.
    pub bytes: u64,
    /// Runs copied to the archive.
    pub archived: u64,
}

/// What [`prune`] did, per rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Terminal runs looked at.
    pub examined: u64,
    /// One entry per rule that pruned something, by rule index.
    pub rules: Vec<RuleReport>,
    /// Delivery ids forgotten by the policy's `deliveries` age (none in a
    /// dry run).
    pub deliveries: u64,
    /// Runs kept because they could not be read to be archived (with a
    /// quarantine).
    pub quarantined: u64,
}

impl PruneReport {
    /// Totals over every rule (its `rule` is meaningless).
    pub fn total(&self) -> RuleReport {
        let mut t = RuleReport::default();
        for r in &self.rules {
            t.runs += r.runs;
            t.events += r.events;
            t.metrics += r.metrics;
            t.artifacts += r.artifacts;
            t.bytes += r.bytes;
            t.archived += r.archived;
        }
        t
    }
}

/// Applies `policy` to `stores`. `progress` is called after each page with
/// the report so far. See the module documentation for the order and the
/// guarantees.
pub async fn prune(
    stores: &StoreSet,
    policy: &RetentionPolicy,
    options: PruneOptions,
    mut progress: impl FnMut(&PruneReport),
) -> Result<PruneReport> {
    let span = tracing::info_span!(
        "prune",
        dry_run = options.dry_run,
        rules = policy.rules.len()
    );
    tracing::Instrument::instrument(prune_inner(stores, policy, options, &mut progress), span).await
}

async fn prune_inner(
    stores: &StoreSet,
    policy: &RetentionPolicy,
    options: PruneOptions,
    progress: &mut impl FnMut(&PruneReport),
) -> Result<PruneReport> {
    policy.validate()?;
    let limit = runstore_core::validate_limit(options.page_size)?;
    let now = options.now.unwrap_or_else(Timestamp::now);
    let deliveries = match policy.deliveries {
        Some(age) if !options.dry_run => {
            let micros = i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2) * 1_000_000;
            stores
                .logs
                .prune_deliveries(now.saturating_add_micros(-micros))
                .await?
        }
        _ => 0,
    };
    let mut ranker = policy.ranker();
    let mut per_rule: BTreeMap<usize, RuleReport> = BTreeMap::new();
    let mut examined = 0u64;
    // Only finished runs are pruned, but the walk does not filter by
    // status: every run in start order is one index scan in each backend,
    // while a filter on the three finished statuses makes SQLite merge
    // three index ranges and sort each page. Unfinished runs are few and
    // are skipped below.
    let mut filter = RunFilter::default();
    // Without `keep_last`, no rank is needed: a pruned run ended at least
    // the shortest `max_age` ago, so only those are returned (an unfinished
    // run has no end time). With `keep_last`, every finished run counts
    // towards the ranks and all are read.
    if policy.rules.iter().all(|r| r.keep_last.is_none()) {
        match policy.rules.iter().filter_map(|r| r.max_age).min() {
            Some(age) => {
                let micros = i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2) * 1_000_000;
                filter.ended_before = Some(now.saturating_add_micros(1 - micros));
            }
            // No rule: nothing is ever pruned.
            None => {
                return Ok(PruneReport {
                    dry_run: options.dry_run,
                    deliveries,
                    ..Default::default()
                });
            }
        }
    }
    let mut quarantined = 0u64;
    let read_page = |cursor: Option<Cursor>| {
        stores.logs.query_runs(
            RunQuery::new(filter.clone())
                .with_limit(limit)
                .with_cursor(cursor),
        )
    };
    let mut page = read_page(None).await?;
    // The records of one page are deleted while the next page is read and
    // its dependents are deleted: the two pages hold other runs, and a
    // page's records still go after its own dependents.
    let mut records: Option<Records> = None;
    loop {
        let mut doomed: Vec<(usize, Run)> = Vec::new();
        for run in page.items.iter().filter(|r| r.status.is_terminal()) {
            examined += 1;
            if let Decision::Prune { rule } = ranker.next(run, now) {
                doomed.push((rule, run.clone()));
            }
        }
        // The next page's cursor lies past every run of this page, so the
        // deletes cannot move it.
        let next = async {
            match page.next.clone() {
                Some(cursor) => read_page(Some(cursor)).await.map(Some),
                None => Ok(None),
            }
        };
        let this = async {
            if doomed.is_empty() {
                Ok((0, None))
            } else {
                prune_page(stores, policy, &options, &doomed, &mut per_rule).await
            }
        };
        let (this, next, before) = tokio::join!(this, next, delete_records(stores, records.take()));
        let (kept, pending) = this?;
        quarantined += kept;
        records = pending;
        let next = next?;
        let mut deleted = before?;
        if next.is_none() {
            deleted.extend(delete_records(stores, records.take()).await?);
        }
        for rule in deleted {
            entry(&mut per_rule, rule).runs += 1;
        }
        let report = PruneReport {
            dry_run: options.dry_run,
            examined,
            rules: per_rule.values().cloned().collect(),
            deliveries,
            quarantined,
        };
        progress(&report);
        match next {
            Some(next) => page = next,
            None => {
                tracing::info!(examined, pruned = report.total().runs, "prune finished");
                return Ok(report);
            }
        }
    }
}

/// The runs of a page whose dependents are deleted: their records, with
/// their events, go next.
struct Records {
    ids: Vec<RunId>,
    /// The rule that pruned each, in `ids` order.
    rules: Vec<usize>,
}

/// Deletes the records of `records`; the rule of each run deleted now.
/// Runs already absent were pruned by an earlier, interrupted prune: done,
/// and counted there.
async fn delete_records(stores: &StoreSet, records: Option<Records>) -> Result<Vec<usize>> {
    let Some(Records { ids, rules }) = records else {
        return Ok(Vec::new());
    };
    let runs = stores.logs.delete_runs(&ids).await?;
    tracing::debug!(
        deleted = runs.deleted.len(),
        absent = runs.absent.len(),
        "pruned a page"
    );
    let rule_of: BTreeMap<&RunId, usize> = ids.iter().zip(rules).collect();
    // An id the backend did not ask about is not counted.
    Ok(runs
        .deleted
        .iter()
        .filter_map(|id| rule_of.get(id).copied())
        .collect())
}

/// A run's artifacts: count and bytes, page by page.
async fn artifact_totals(stores: &StoreSet, id: &RunId) -> Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    let mut cursor = None;
    loop {
        let page = stores
            .artifacts
            .list(
                ArtifactQuery::run(id.clone())
                    .with_limit(MAX_PAGE_LIMIT)
                    .with_cursor(cursor),
            )
            .await?;
        for info in &page.items {
            count += 1;
            bytes += info.size;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok((count, bytes)),
        }
    }
}

/// Prunes the dependents of one page's runs (archiving them first, with an
/// archive): how many runs were kept because they could not be archived
/// (with a quarantine), and the records to delete next (none in a dry run).
async fn prune_page(
    stores: &StoreSet,
    policy: &RetentionPolicy,
    options: &PruneOptions,
    doomed: &[(usize, Run)],
    per_rule: &mut BTreeMap<usize, RuleReport>,
) -> Result<(u64, Option<Records>)> {
    let delete_artifacts = policy.artifacts == ArtifactRetention::Delete;
    if options.archive.is_some() && options.dry_run {
        // What would be archived.
        for (rule, _) in doomed {
            entry(per_rule, *rule).archived += 1;
        }
    }
    if let Some(dest) = &options.archive
        && !options.dry_run
    {
        // Every run of the page is archived and checked before anything
        // of the page is deleted.
        let mut kept = Vec::new();
        for (rule, run) in doomed {
            match (archive_run(stores, dest, run).await, &options.quarantine) {
                (Ok(()), _) => entry(per_rule, *rule).archived += 1,
                (Err(e), Some(q))
                    if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::InvalidInput) =>
                {
                    q.lock()
                        .map_err(|_| Error::backend("the quarantine's lock was poisoned", None))?
                        .add(
                            "runs",
                            run.id.as_str(),
                            "the source store",
                            &e.to_string(),
                            true,
                        )?;
                    kept.push(run.id.clone());
                }
                (Err(e), _) => return Err(e),
            }
        }
        if !kept.is_empty() {
            let rest: Vec<(usize, Run)> = doomed
                .iter()
                .filter(|(_, r)| !kept.contains(&r.id))
                .cloned()
                .collect();
            let mut unarchived = options.clone();
            unarchived.archive = None;
            let records = if rest.is_empty() {
                None
            } else {
                Box::pin(prune_page(stores, policy, &unarchived, &rest, per_rule))
                    .await?
                    .1
            };
            return Ok((kept.len() as u64, records));
        }
    }
    // Counted and deleted a page at a time: one call per concern, not
    // one per run.
    let ids: Vec<RunId> = doomed.iter().map(|(_, run)| run.id.clone()).collect();
    if options.dry_run {
        let events = stores.logs.event_counts(&ids).await?;
        for ((rule, run), n) in doomed.iter().zip(&events) {
            let (artifacts, bytes) = if delete_artifacts {
                artifact_totals(stores, &run.id).await?
            } else {
                (0, 0)
            };
            let has_metric = match stores.metrics.get(&run.id).await {
                Ok(_) => true,
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            let r = entry(per_rule, *rule);
            r.events += n;
            r.artifacts += artifacts;
            r.bytes += bytes;
            r.metrics += u64::from(has_metric);
            r.runs += 1;
        }
        return Ok((0, None));
    }
    // A page at a time, one call per concern; the run's dependents (its
    // artifacts and metric) at once, the records last, so an interrupted
    // prune leaves runs that the next one finds and finishes.
    let artifacts = async {
        if delete_artifacts {
            stores.artifacts.delete_runs_artifacts(&ids).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (events, artifacts, metrics) = tokio::join!(
        stores.logs.event_counts(&ids),
        artifacts,
        stores.metrics.delete_many(&ids)
    );
    let (events, artifacts, metrics) = (events?, artifacts?, metrics?);
    for ((rule, _), n) in doomed.iter().zip(&events) {
        entry(per_rule, *rule).events += n;
    }
    for ((rule, _), d) in doomed.iter().zip(artifacts.iter().flatten()) {
        let r = entry(per_rule, *rule);
        r.artifacts += d.count;
        r.bytes += d.bytes;
    }
    let rule_of: BTreeMap<&RunId, usize> = doomed.iter().map(|(r, run)| (&run.id, *r)).collect();
    for rule in metrics.deleted.iter().filter_map(|id| rule_of.get(id)) {
        entry(per_rule, *rule).metrics += 1;
    }
    Ok((
        0,
        Some(Records {
            ids,
            rules: doomed.iter().map(|(rule, _)| *rule).collect(),
        }),
    ))
}

fn entry(per_rule: &mut BTreeMap<usize, RuleReport>, rule: usize) -> &mut RuleReport {
    per_rule.entry(rule).or_insert_with(|| RuleReport {
        rule,
        ..Default::default()
    })
}

/// Copies one run (its workflow version and ancestors, record and events,
/// metric, artifacts) to `dest` with the idempotent writes the migration
/// uses, then reads everything back and compares. Any difference is an
/// error, so nothing of the run is deleted.
pub async fn archive_run(src: &StoreSet, dest: &StoreSet, run: &Run) -> Result<()> {
    // The workflow version and its ancestors, oldest first, so parents
    // exist before children.
    let mut chain = Vec::new();
    let mut next = Some(run.workflow_version);
    while let Some(v) = next {
        match src.workflows.get(&run.workflow_id, v).await {
            Ok(def) => {
                next = def.parent;
                chain.push(def);
            }
            // A run may outlive its definition; archive what exists.
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    for def in chain.into_iter().rev() {
        dest.workflows.store(def).await?;
    }
    let events = src.logs.all_events(&run.id).await?;
    let whole = RunWithEvents {
        run: run.clone(),
        events,
    };
    dest.logs.import_runs(vec![whole.clone()]).await?;
    let metric = match src.metrics.get(&run.id).await {
        Ok(m) => Some(m),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(m) = &metric {
        dest.metrics.record_many(vec![m.clone()]).await?;
    }
    let mut cursor = None;
    loop {
        let page = src
            .artifacts
            .list(
                ArtifactQuery::run(run.id.clone())
                    .with_limit(100)
                    .with_cursor(cursor),
            )
            .await?;
        for info in &page.items {
            let reader = src.artifacts.get(&info.key).await?;
            let options = runstore_core::PutOptions::default()
                .content_type(info.content_type.clone())
                .created_by(info.created_by.clone())
                .created_at(info.created_at);
            let put = dest.artifacts.put(&info.key, reader.body, options).await?;
            if put.record.sha256 != info.sha256 || put.record.size != info.size {
                return Err(archive_mismatch(&run.id, &format!("artifact {}", info.key)));
            }
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Read back and compare before the source is touched.
    let back = RunWithEvents {
        run: dest.logs.get_run(&run.id).await?,
        events: dest.logs.all_events(&run.id).await?,
    };
    if !back.same_content(&whole) {
        return Err(archive_mismatch(&run.id, "record or events"));
    }
    if let Some(m) = &metric
        && !dest.metrics.get(&run.id).await?.same_content(m)
    {
        return Err(archive_mismatch(&run.id, "metric"));
    }
    let (count, bytes) = artifact_totals(src, &run.id).await?;
    if artifact_totals(dest, &run.id).await? != (count, bytes) {
        return Err(archive_mismatch(&run.id, "artifacts"));
    }
    Ok(())
}

fn archive_mismatch(id: &RunId, what: &str) -> Error {
    Error::conflict(format!(
        "archive of run {id}: the {what} read back from the archive differs from the source; nothing was deleted"
    ))
}

/// Deletes a workflow version, refusing (`Conflict`) while runs of that
/// version exist unless `force`; the backend refuses (`Conflict`) while
/// another version names it as parent, forced or not.
pub async fn delete_workflow_version(
    stores: &StoreSet,
    id: &runstore_core::WorkflowId,
    version: runstore_core::Version,
    force: bool,
) -> Result<()> {
    if !force {
        let runs = stores
            .logs
            .count_runs(RunFilter::default().workflow(id.clone()).version(version))
            .await?;
        if runs > 0 {
            return Err(Error::conflict(format!(
                "workflow {id} version {version} has {runs} stored run(s); delete them first or force"
            )));
        }
    }
    stores.workflows.delete(id, version).await
}

/// Counters of a [`RetentionTask`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RetentionStats {
    /// Prunes finished.
    pub passes: u64,
    /// Prunes that failed (the task goes on at the next interval).
    pub failures: u64,
    /// Runs pruned over all passes.
    pub runs_pruned: u64,
}

/// A background task applying a policy every interval; see
/// [`RetentionTask::spawn`]. Dropping it without [`RetentionTask::stop`]
/// also stops it (at its next wake-up).
#[derive(Debug)]
pub struct RetentionTask {
    cancel: tokio::sync::watch::Sender<bool>,
    stats: std::sync::Arc<std::sync::Mutex<RetentionStats>>,
    handle: tokio::task::JoinHandle<()>,
}

impl RetentionTask {
    /// Spawns the task on the current tokio runtime: a prune of `stores`
    /// by `policy` right away, then every `interval`. A failed prune is
    /// logged and counted, and retried at the next interval (a prune is
    /// re-runnable). `options.now` is ignored: each pass measures ages at
    /// its own start.
    pub fn spawn(
        stores: StoreSet,
        policy: RetentionPolicy,
        interval: std::time::Duration,
        options: PruneOptions,
    ) -> RetentionTask {
        let (cancel, mut cancelled) = tokio::sync::watch::channel(false);
        let stats = std::sync::Arc::new(std::sync::Mutex::new(RetentionStats::default()));
        let counters = stats.clone();
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = cancelled.changed() => return,
                }
                let mut opts = options.clone();
                opts.now = None;
                let pass = {
                    let n = counters.lock().map(|s| s.passes + s.failures).unwrap_or(0);
                    tracing::info_span!("retention_pass", pass = n + 1)
                };
                let result = tokio::select! {
                    r = tracing::Instrument::instrument(prune(&stores, &policy, opts, |_| {}), pass) => r,
                    // A stop in the middle of a pass: the pass is dropped
                    // between two awaits; the next prune finishes its work.
                    _ = cancelled.changed() => return,
                };
                let mut s = counters.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(report) => {
                        s.passes += 1;
                        s.runs_pruned += report.total().runs;
                        tracing::info!(
                            pruned = report.total().runs,
                            total_pruned = s.runs_pruned,
                            "retention pass done"
                        );
                    }
                    Err(e) => {
                        s.failures += 1;
                        tracing::warn!(error = %e, "retention pass failed; retried at the next interval");
                    }
                }
            }
        });
        RetentionTask {
            cancel,
            stats,
            handle,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RetentionStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the task and waits for it; returns the final counters.
    pub async fn stop(self) -> RetentionStats {
        let _ = self.cancel.send(true);
        let _ = self.handle.await;
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}
