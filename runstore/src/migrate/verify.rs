//! [`verify`]: a record-by-record comparison of two store sets by content
//! hash, as a merge-join of both sides in the same key order.

use std::cmp::Reverse;

use runstore_core::{
    ArtifactInfo, ArtifactStore, Error, ErrorKind, Event, ExecutionMetric, Pattern, PatternCursor,
    Result, Run, RunCursor, Sha256Digest, Sha256Hasher, StoreSet, content_hash,
};
use tokio::io::AsyncReadExt;

use super::copy::{artifact_difference, describe_run_difference};
use super::pager::{self, MergeJoin, Pair};
use super::{
    Concern, Difference, DifferenceKind, SideCounts, VerifyOptions, VerifyReport, run_changed_since,
};

/// Compares `a` and `b` record by record: counts per concern and the content
/// hash of every workflow version, run, event, metric, pattern and artifact
/// (its SHA-256, size, content type, creator and time; with
/// [`VerifyOptions::deep`], also its bytes re-read and hashed on both
/// sides). Both sides are walked in the same key order page by page, so
/// memory stays bounded.
///
/// # Errors
/// [`runstore_core::ErrorKind::InvalidInput`] for bad options; any error of
/// either side's backend, except a [`runstore_core::ErrorKind::Corrupt`]
/// artifact in a deep verification, which is reported as a difference.
pub async fn verify(a: &StoreSet, b: &StoreSet, options: VerifyOptions) -> Result<VerifyReport> {
    options.validate()?;
    // Verification only reads: neither side can be written through it.
    let (a, b) = (&a.read_only(), &b.read_only());
    let mut v = Verifier {
        a,
        b,
        tally: Tally::new(
            VerifyReport {
                deep: options.deep,
                since: options.since,
                ..Default::default()
            },
            options.max_reported,
        ),
        opts: &options,
    };
    v.workflows().await?;
    v.runs().await?;
    v.metrics().await?;
    v.patterns().await?;
    v.artifacts().await?;
    Ok(v.tally.finish())
}

/// SHA-256 of a metric's canonical JSON, with `-0.0` taken as `0.0` (they
/// are equal by [`ExecutionMetric::same_content`]).
pub(crate) fn metric_hash(m: &ExecutionMetric) -> Result<Sha256Digest> {
    let mut m = m.clone();
    for v in m.values.values_mut() {
        *v += 0.0;
    }
    content_hash(&m)
}

/// SHA-256 of a pattern's canonical JSON, with `-0.0` taken as `0.0`.
pub(crate) fn pattern_hash(p: &Pattern) -> Result<Sha256Digest> {
    let mut p = p.clone();
    p.confidence += 0.0;
    content_hash(&p)
}

/// Running digests of both sides of one concern.
#[derive(Default)]
struct Digests {
    a: Sha256Hasher,
    b: Sha256Hasher,
}

/// Counts, digests and differences of a comparison, concern by concern:
/// one place for [`verify`] and for the check a migration makes while it
/// copies.
pub(crate) struct Tally {
    report: VerifyReport,
    digests: [Digests; 6],
    max_reported: usize,
}

fn index(concern: Concern) -> usize {
    match concern {
        Concern::Workflows => 0,
        Concern::Runs => 1,
        Concern::Events => 2,
        Concern::Metrics => 3,
        Concern::Patterns => 4,
        Concern::Artifacts => 5,
    }
}

impl Tally {
    pub(crate) fn new(report: VerifyReport, max_reported: usize) -> Self {
        Tally {
            report,
            digests: Default::default(),
            max_reported,
        }
    }

    pub(crate) fn counts(&mut self, concern: Concern) -> &mut SideCounts {
        match concern {
            Concern::Workflows => &mut self.report.workflows,
            Concern::Runs => &mut self.report.runs,
            Concern::Events => &mut self.report.events,
            Concern::Metrics => &mut self.report.metrics,
            Concern::Patterns => &mut self.report.patterns,
            Concern::Artifacts => &mut self.report.artifacts,
        }
    }

    pub(crate) fn difference(
        &mut self,
        concern: Concern,
        key: String,
        kind: DifferenceKind,
        detail: String,
    ) {
        self.report.difference_count += 1;
        if self.report.differences.len() < self.max_reported {
            self.report.differences.push(Difference {
                concern,
                key,
                kind,
                detail,
            });
        } else {
            self.report.differences_truncated = true;
        }
    }

    /// Hashes a record into a side's digest and count, without comparing
    /// (the events of a run on one side only: the run is the difference).
    pub(crate) fn count_one_side(&mut self, concern: Concern, side_a: bool, hash: &Sha256Digest) {
        let d = &mut self.digests[index(concern)];
        if side_a {
            d.a.update(hash.as_bytes());
            self.counts(concern).a += 1;
        } else {
            d.b.update(hash.as_bytes());
            self.counts(concern).b += 1;
        }
    }

    /// One record: its content hash on side `a` and on side `b` (`None`
    /// where it is absent). Counts and hashes it, lists a difference
    /// (described by `differ` when both hold it); whether the two hold it
    /// with equal content.
    pub(crate) fn record(
        &mut self,
        concern: Concern,
        key: String,
        a: Option<Sha256Digest>,
        b: Option<Sha256Digest>,
        differ: impl FnOnce() -> String,
    ) -> bool {
        if let Some(h) = &a {
            self.count_one_side(concern, true, h);
        }
        if let Some(h) = &b {
            self.count_one_side(concern, false, h);
        }
        match (a, b) {
            (Some(x), Some(y)) if x == y => {
                self.counts(concern).equal += 1;
                true
            }
            (Some(x), Some(y)) => {
                let detail = format!("sha256 {x} / {y}: {}", differ());
                self.difference(concern, key, DifferenceKind::Different, detail);
                false
            }
            (Some(_), None) => {
                self.difference(concern, key, DifferenceKind::OnlyInA, String::new());
                false
            }
            (None, Some(_)) => {
                self.difference(concern, key, DifferenceKind::OnlyInB, String::new());
                false
            }
            (None, None) => true,
        }
    }

    /// A group of records compared by count only (the events of a run, in
    /// the check made while copying): `a` on side `a`, `b` on side `b`
    /// (`None` where the group is absent, which is not listed: its run is).
    /// The digests take the key and the count. Whether the counts agree.
    pub(crate) fn record_count(
        &mut self,
        concern: Concern,
        key: String,
        a: u64,
        b: Option<u64>,
    ) -> bool {
        let i = index(concern);
        self.digests[i].a.update(format!("{key}\n{a}\n").as_bytes());
        self.counts(concern).a += a;
        let Some(b) = b else {
            return false;
        };
        self.digests[i].b.update(format!("{key}\n{b}\n").as_bytes());
        self.counts(concern).b += b;
        if a == b {
            self.counts(concern).equal += a;
            return true;
        }
        self.difference(
            concern,
            key,
            DifferenceKind::Different,
            format!("{a} in the source, {b} in the destination"),
        );
        false
    }

    /// Takes in the counts, digests and differences of `concern` from
    /// `other`, which tallied that concern alongside this one (and only
    /// it); its differences are listed after these.
    pub(crate) fn absorb(&mut self, mut other: Tally, concern: Concern) {
        let i = index(concern);
        self.digests[i] = std::mem::take(&mut other.digests[i]);
        *self.counts(concern) = std::mem::take(other.counts(concern));
        self.report.difference_count += other.report.difference_count;
        self.report.differences_truncated |= other.report.differences_truncated;
        for d in other.report.differences {
            if self.report.differences.len() < self.max_reported {
                self.report.differences.push(d);
            } else {
                self.report.differences_truncated = true;
            }
        }
    }

    /// The report, with every concern's digests.
    pub(crate) fn finish(mut self) -> VerifyReport {
        let digests = std::mem::take(&mut self.digests);
        for (concern, d) in [
            Concern::Workflows,
            Concern::Runs,
            Concern::Events,
            Concern::Metrics,
            Concern::Patterns,
            Concern::Artifacts,
        ]
        .into_iter()
        .zip(digests)
        {
            let c = self.counts(concern);
            c.digest_a = d.a.finish().to_hex();
            c.digest_b = d.b.finish().to_hex();
        }
        self.report
    }
}

struct Verifier<'a> {
    a: &'a StoreSet,
    b: &'a StoreSet,
    opts: &'a VerifyOptions,
    tally: Tally,
}

pub(crate) fn progress_label(concern: Concern) -> &'static str {
    match concern {
        Concern::Workflows => "verify workflows",
        Concern::Runs => "verify runs",
        Concern::Events => "verify events",
        Concern::Metrics => "verify metrics",
        Concern::Patterns => "verify patterns",
        Concern::Artifacts => "verify artifacts",
    }
}

impl Verifier<'_> {
    fn progress(&mut self, concern: Concern) {
        if let Some(p) = self.opts.progress.clone() {
            let c = self.tally.counts(concern);
            p.on_progress(progress_label(concern), c.a.max(c.b), None);
        }
    }

    fn finish(&mut self, concern: Concern) {
        if let Some(p) = self.opts.progress.clone() {
            let c = self.tally.counts(concern);
            p.on_finish(progress_label(concern), c.a.max(c.b));
        }
    }

    /// Accounts one step of a merge-join given each side's content hash;
    /// `differ` describes a pair whose hashes differ. Returns whether both
    /// sides hold the record with equal content.
    fn step<T>(
        &mut self,
        concern: Concern,
        pair: &Pair<T>,
        key: impl Fn(&T) -> String,
        hash: impl Fn(&T) -> Result<Sha256Digest>,
        differ: impl Fn(&T, &T) -> String,
    ) -> Result<bool> {
        Ok(match pair {
            Pair::OnlyA(x) => self
                .tally
                .record(concern, key(x), Some(hash(x)?), None, String::new),
            Pair::OnlyB(y) => self
                .tally
                .record(concern, key(y), None, Some(hash(y)?), String::new),
            Pair::Both(x, y) => {
                self.tally
                    .record(concern, key(x), Some(hash(x)?), Some(hash(y)?), || {
                        differ(x, y)
                    })
            }
        })
    }

    async fn workflows(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        let mut join = MergeJoin::new(
            pager::workflows(self.a, ps),
            pager::workflows(self.b, ps),
            |d| (d.id.clone(), d.version),
        );
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Workflows,
                &pair,
                |d| format!("{}@{}", d.id, d.version),
                |d| Ok(d.content_hash()),
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Workflows);
        }
        self.finish(Concern::Workflows);
        Ok(())
    }

    async fn runs(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        // Runs are listed oldest first: the key grows.
        // Since a watermark: one listing kept to the runs that changed
        // (one rule for both sides), so a run is paired with itself even
        // when the two sides hold it at different states.
        let runs = |s: &StoreSet| {
            let p = pager::runs(s, ps);
            match self.opts.since {
                Some(t) => p.keep(move |r| run_changed_since(r, t)),
                None => p,
            }
        };
        let mut join = MergeJoin::new(runs(self.a), runs(self.b), RunCursor::of);
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Runs,
                &pair,
                |r: &Run| r.id.to_string(),
                content_hash,
                describe_run_difference,
            )?;
            self.run_events(&pair).await?;
            self.progress(Concern::Runs);
        }
        self.finish(Concern::Runs);
        Ok(())
    }

    /// Compares the events of one run. Events of a run on one side only are
    /// counted and hashed, not listed (the run is).
    async fn run_events(&mut self, pair: &Pair<Run>) -> Result<()> {
        let ps = self.opts.page_size;
        match pair {
            Pair::OnlyA(r) => {
                let mut events = pager::events(&self.a.logs, &r.id, ps);
                while let Some(e) = events.next().await? {
                    self.tally
                        .count_one_side(Concern::Events, true, &content_hash(&e)?);
                }
            }
            Pair::OnlyB(r) => {
                let mut events = pager::events(&self.b.logs, &r.id, ps);
                while let Some(e) = events.next().await? {
                    self.tally
                        .count_one_side(Concern::Events, false, &content_hash(&e)?);
                }
            }
            Pair::Both(r, _) => {
                let mut join = MergeJoin::new(
                    pager::events(&self.a.logs, &r.id, ps),
                    pager::events(&self.b.logs, &r.id, ps),
                    |e| e.seq,
                );
                while let Some(ev) = join.next().await? {
                    self.step(
                        Concern::Events,
                        &ev,
                        |e: &Event| format!("{}#{}", e.run_id, e.seq),
                        content_hash,
                        describe_event_difference,
                    )?;
                }
            }
        }
        Ok(())
    }

    async fn metrics(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        let since = self.opts.since;
        let metrics = |s: &StoreSet| pager::metrics(s, ps).since(since, |m| m.recorded_at);
        let mut join = MergeJoin::new(metrics(self.a), metrics(self.b), |m| m.run_id.clone());
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Metrics,
                &pair,
                |m: &ExecutionMetric| m.run_id.to_string(),
                metric_hash,
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Metrics);
        }
        self.finish(Concern::Metrics);
        Ok(())
    }

    async fn patterns(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        // Patterns are listed newest first: the key grows along `Reverse`.
        let since = self.opts.since;
        let patterns = |s: &StoreSet| pager::patterns(s, ps).since(since, |p| p.detected_at);
        let mut join = MergeJoin::new(patterns(self.a), patterns(self.b), |p| {
            Reverse(PatternCursor::of(p))
        });
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Patterns,
                &pair,
                |p: &Pattern| p.id.to_string(),
                pattern_hash,
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Patterns);
        }
        self.finish(Concern::Patterns);
        Ok(())
    }

    async fn artifacts(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        let since = self.opts.since;
        let artifacts = |s: &StoreSet| pager::artifacts(s, ps).since(since, |i| i.created_at);
        let mut join = MergeJoin::new(artifacts(self.a), artifacts(self.b), |i| i.key.clone());
        while let Some(pair) = join.next().await? {
            let equal = self.step(
                Concern::Artifacts,
                &pair,
                |i: &ArtifactInfo| i.key.to_string(),
                content_hash,
                |x, y| artifact_difference(x, y).unwrap_or_default(),
            )?;
            if self.opts.deep
                && let Pair::Both(x, y) = &pair
            {
                let ra = read_hash(self.a.artifacts.as_ref(), x).await?;
                let rb = read_hash(self.b.artifacts.as_ref(), y).await?;
                let mut problems = Vec::new();
                for (side, r) in [("a", ra), ("b", rb)] {
                    if let Err(msg) = r {
                        problems.push(format!("side {side}: {msg}"));
                    }
                }
                // Metadata already differed: that difference is listed once.
                if !problems.is_empty() {
                    if equal {
                        self.tally.report.artifacts.equal -= 1;
                    }
                    self.tally.difference(
                        Concern::Artifacts,
                        x.key.to_string(),
                        DifferenceKind::Different,
                        format!(
                            "bytes do not match the stored hash: {}",
                            problems.join("; ")
                        ),
                    );
                }
            }
            self.progress(Concern::Artifacts);
        }
        self.finish(Concern::Artifacts);
        Ok(())
    }
}

/// Reads an artifact's bytes and checks them against its listed info:
/// `Ok(Err(why))` when they do not match (or the store finds them corrupt).
async fn read_hash(
    store: &dyn ArtifactStore,
    info: &ArtifactInfo,
) -> Result<std::result::Result<(), String>> {
    let mut reader = store.get(&info.key).await?;
    let mut hasher = Sha256Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.body.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) => {
                let err = Error::io(format!("reading artifact {}", info.key), e);
                if err.kind() == ErrorKind::Corrupt {
                    return Ok(Err(err.to_string()));
                }
                return Err(err);
            }
        }
    }
    let got = hasher.finish();
    if got != info.sha256 || size != info.size {
        return Ok(Err(format!(
            "read sha256 {got} and size {size}, listed sha256 {} and size {}",
            info.sha256, info.size
        )));
    }
    Ok(Ok(()))
}

fn describe_event_difference(a: &Event, b: &Event) -> String {
    let mut diffs = Vec::new();
    if a.kind != b.kind {
        diffs.push(format!("kind {:?} / {:?}", a.kind, b.kind));
    }
    if a.at != b.at {
        diffs.push(format!("at {} / {}", a.at, b.at));
    }
    if a.idempotency_key != b.idempotency_key {
        diffs.push(format!(
            "idempotency_key {:?} / {:?}",
            a.idempotency_key, b.idempotency_key
        ));
    }
    if runstore_core::canonical_json(&a.payload) != runstore_core::canonical_json(&b.payload) {
        diffs.push("payload".into());
    }
    format!("differs in {}", diffs.join(", "))
}
