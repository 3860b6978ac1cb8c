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
    let mut v = Verifier {
        a,
        b,
        report: VerifyReport {
            deep: options.deep,
            since: options.since,
            ..Default::default()
        },
        opts: &options,
    };
    v.workflows().await?;
    v.runs().await?;
    v.metrics().await?;
    v.patterns().await?;
    v.artifacts().await?;
    Ok(v.report)
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

impl Digests {
    fn finish(self, counts: &mut SideCounts) {
        counts.digest_a = self.a.finish().to_hex();
        counts.digest_b = self.b.finish().to_hex();
    }
}

struct Verifier<'a> {
    a: &'a StoreSet,
    b: &'a StoreSet,
    opts: &'a VerifyOptions,
    report: VerifyReport,
}

fn progress_label(concern: Concern) -> &'static str {
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
    fn counts(&mut self, concern: Concern) -> &mut SideCounts {
        match concern {
            Concern::Workflows => &mut self.report.workflows,
            Concern::Runs => &mut self.report.runs,
            Concern::Events => &mut self.report.events,
            Concern::Metrics => &mut self.report.metrics,
            Concern::Patterns => &mut self.report.patterns,
            Concern::Artifacts => &mut self.report.artifacts,
        }
    }

    fn difference(&mut self, concern: Concern, key: String, kind: DifferenceKind, detail: String) {
        self.report.difference_count += 1;
        if self.report.differences.len() < self.opts.max_reported {
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

    fn progress(&mut self, concern: Concern) {
        if let Some(p) = self.opts.progress.clone() {
            let c = self.counts(concern);
            p.on_progress(progress_label(concern), c.a.max(c.b), None);
        }
    }

    fn finish(&mut self, concern: Concern) {
        if let Some(p) = self.opts.progress.clone() {
            let c = self.counts(concern);
            p.on_finish(progress_label(concern), c.a.max(c.b));
        }
    }

    /// Accounts one step of a merge-join given each side's content hash;
    /// `differ` describes a pair whose hashes differ. Returns whether both
    /// sides hold the record with equal content.
    fn step<T>(
        &mut self,
        concern: Concern,
        digests: &mut Digests,
        pair: &Pair<T>,
        key: impl Fn(&T) -> String,
        hash: impl Fn(&T) -> Result<Sha256Digest>,
        differ: impl Fn(&T, &T) -> String,
    ) -> Result<bool> {
        match pair {
            Pair::OnlyA(x) => {
                digests.a.update(hash(x)?.as_bytes());
                self.counts(concern).a += 1;
                self.difference(concern, key(x), DifferenceKind::OnlyInA, String::new());
                Ok(false)
            }
            Pair::OnlyB(y) => {
                digests.b.update(hash(y)?.as_bytes());
                self.counts(concern).b += 1;
                self.difference(concern, key(y), DifferenceKind::OnlyInB, String::new());
                Ok(false)
            }
            Pair::Both(x, y) => {
                let (hx, hy) = (hash(x)?, hash(y)?);
                digests.a.update(hx.as_bytes());
                digests.b.update(hy.as_bytes());
                let c = self.counts(concern);
                c.a += 1;
                c.b += 1;
                if hx == hy {
                    c.equal += 1;
                    Ok(true)
                } else {
                    let detail = format!("sha256 {hx} / {hy}: {}", differ(x, y));
                    self.difference(concern, key(x), DifferenceKind::Different, detail);
                    Ok(false)
                }
            }
        }
    }

    async fn workflows(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        let mut join = MergeJoin::new(
            pager::workflows(self.a, ps),
            pager::workflows(self.b, ps),
            |d| (d.id.clone(), d.version),
        );
        let mut digests = Digests::default();
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Workflows,
                &mut digests,
                &pair,
                |d| format!("{}@{}", d.id, d.version),
                |d| Ok(d.content_hash()),
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Workflows);
        }
        digests.finish(&mut self.report.workflows);
        self.finish(Concern::Workflows);
        Ok(())
    }

    async fn runs(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        // Runs are listed newest first: the key grows along `Reverse`.
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
        let mut join = MergeJoin::new(runs(self.a), runs(self.b), |r| Reverse(RunCursor::of(r)));
        let mut digests = Digests::default();
        let mut event_digests = Digests::default();
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Runs,
                &mut digests,
                &pair,
                |r: &Run| r.id.to_string(),
                content_hash,
                describe_run_difference,
            )?;
            self.run_events(&pair, &mut event_digests).await?;
            self.progress(Concern::Runs);
        }
        digests.finish(&mut self.report.runs);
        event_digests.finish(&mut self.report.events);
        self.finish(Concern::Runs);
        Ok(())
    }

    /// Compares the events of one run. Events of a run on one side only are
    /// counted and hashed, not listed (the run is).
    async fn run_events(&mut self, pair: &Pair<Run>, digests: &mut Digests) -> Result<()> {
        let ps = self.opts.page_size;
        match pair {
            Pair::OnlyA(r) => {
                let mut events = pager::events(&self.a.logs, &r.id, ps);
                while let Some(e) = events.next().await? {
                    digests.a.update(content_hash(&e)?.as_bytes());
                    self.report.events.a += 1;
                }
            }
            Pair::OnlyB(r) => {
                let mut events = pager::events(&self.b.logs, &r.id, ps);
                while let Some(e) = events.next().await? {
                    digests.b.update(content_hash(&e)?.as_bytes());
                    self.report.events.b += 1;
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
                        digests,
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
        let metrics = |s: &StoreSet| {
            let p = pager::metrics(s, ps);
            match since {
                Some(t) => p.keep(move |m| m.recorded_at >= t),
                None => p,
            }
        };
        let mut join = MergeJoin::new(metrics(self.a), metrics(self.b), |m| m.run_id.clone());
        let mut digests = Digests::default();
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Metrics,
                &mut digests,
                &pair,
                |m: &ExecutionMetric| m.run_id.to_string(),
                metric_hash,
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Metrics);
        }
        digests.finish(&mut self.report.metrics);
        self.finish(Concern::Metrics);
        Ok(())
    }

    async fn patterns(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        // Patterns are listed newest first: the key grows along `Reverse`.
        let since = self.opts.since;
        let patterns = |s: &StoreSet| {
            let p = pager::patterns(s, ps);
            match since {
                Some(t) => p.keep(move |p| p.detected_at >= t),
                None => p,
            }
        };
        let mut join = MergeJoin::new(patterns(self.a), patterns(self.b), |p| {
            Reverse(PatternCursor::of(p))
        });
        let mut digests = Digests::default();
        while let Some(pair) = join.next().await? {
            self.step(
                Concern::Patterns,
                &mut digests,
                &pair,
                |p: &Pattern| p.id.to_string(),
                pattern_hash,
                |_, _| "content differs".into(),
            )?;
            self.progress(Concern::Patterns);
        }
        digests.finish(&mut self.report.patterns);
        self.finish(Concern::Patterns);
        Ok(())
    }

    async fn artifacts(&mut self) -> Result<()> {
        let ps = self.opts.page_size;
        let since = self.opts.since;
        let artifacts = |s: &StoreSet| {
            let p = pager::artifacts(s, ps);
            match since {
                Some(t) => p.keep(move |i| i.created_at >= t),
                None => p,
            }
        };
        let mut join = MergeJoin::new(artifacts(self.a), artifacts(self.b), |i| i.key.clone());
        let mut digests = Digests::default();
        while let Some(pair) = join.next().await? {
            let equal = self.step(
                Concern::Artifacts,
                &mut digests,
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
                        self.report.artifacts.equal -= 1;
                    }
                    self.difference(
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
        digests.finish(&mut self.report.artifacts);
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
