//! `runstore migrate` and `runstore verify`: the migration library of the
//! `runstore` crate (`runstore::migrate`) between two configuration files,
//! with a progress bar per concern and a final report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use runstore::migrate::{
    self, ConcernCounts, MigrateOptions, MigrationProgress, MigrationReport, OnConflict,
    SideCounts, VerifyOptions, VerifyReport,
};
use runstore::{Result, RunFilter, Storage};
use serde::Serialize;

use crate::output::Out;

/// What `--on-conflict` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConflictPolicy {
    /// List each conflicting record in the report, leave it untouched, go on.
    Report,
    /// Stop at the first conflicting record (an error of kind `conflict`).
    Fail,
}

impl From<ConflictPolicy> for OnConflict {
    fn from(p: ConflictPolicy) -> Self {
        match p {
            ConflictPolicy::Report => OnConflict::Report,
            ConflictPolicy::Fail => OnConflict::Fail,
        }
    }
}

/// Parses `--writers`: 1 to [`runstore::migrate::MAX_WRITERS`].
pub fn parse_writers(s: &str) -> std::result::Result<usize, String> {
    let max = runstore::migrate::MAX_WRITERS;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {max}, got {s:?}")),
    }
}

/// The arguments of `runstore migrate`.
#[derive(Debug)]
pub struct MigrateArgs {
    pub from: PathBuf,
    pub to: PathBuf,
    pub dry_run: bool,
    pub on_conflict: ConflictPolicy,
    pub batch_size: usize,
    pub writers: usize,
    pub deep: bool,
    pub skip_corrupt: bool,
    pub quarantine: Option<PathBuf>,
    pub since: Option<runstore::Timestamp>,
    pub keep_indexes: bool,
}

/// Opens the two sides named by configuration files. The source must
/// exist (a typo in its path must not become an empty store that migrates
/// "completely") and is opened read-only (nothing in it is created,
/// migrated or repaired), and the two must not share a store.
async fn open_both(from: &Path, to: &Path) -> Result<(Storage, Storage)> {
    let config = runstore::Config::from_file(from)?;
    let source = Storage::open_read_only(&config).await?;
    let destination = Storage::open_file(to).await?;
    if let Some(concern) = source.shares_a_store_with(&destination) {
        return Err(runstore::Error::invalid(
            "to",
            format!(
                "{} and {} name the same store (for {concern}); a migration needs two",
                from.display(),
                to.display()
            ),
        ));
    }
    Ok((source, destination))
}

/// `--json` output of `migrate`: the library's report with its verdict.
#[derive(Serialize)]
struct MigrateOutput<'a> {
    from: String,
    to: String,
    /// `report.is_complete()`: no conflict, verification equal, and (dry
    /// run) nothing left to copy.
    complete: bool,
    /// The quarantine report, when something was noted there.
    quarantine: Option<String>,
    #[serde(flatten)]
    report: &'a MigrationReport,
}

/// `--json` output of `verify`.
#[derive(Serialize)]
struct VerifyOutput<'a> {
    from: String,
    to: String,
    equal: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

/// `runstore migrate`: exit 0 when complete, 1 otherwise (conflicts, a
/// verification difference, or a dry run that found work to do).
pub async fn migrate(args: &MigrateArgs, out: &Out) -> Result<ExitCode> {
    let (source, destination) = open_both(&args.from, &args.to).await?;
    let label = if args.dry_run { "dry run" } else { "migrate" };
    let bars = Arc::new(ConcernBars::new(label, out.json));
    // Runs of the final verification (a whole one with --deep; without,
    // the check is made while copying): the larger side is the bar's length.
    if !args.dry_run && args.deep {
        bars.set_known_total("verify runs", run_total(&source, &destination).await);
    }
    let options = MigrateOptions::default()
        .batch_size(args.batch_size)
        .writers(args.writers)
        .on_conflict(args.on_conflict.into())
        .dry_run(args.dry_run)
        .bulk_load(!args.keep_indexes)
        .verify_options(
            VerifyOptions::default()
                .page_size(args.batch_size)
                .deep(args.deep),
        )
        .progress(bars.clone());
    let q = runstore::dump::Quarantine::for_options(args.skip_corrupt, args.quarantine.clone());
    let q_path = q.as_ref().map(|q| q.path().to_path_buf());
    let options = match q {
        Some(q) => options.quarantine(q),
        None => options,
    };
    let options = match args.since {
        Some(t) => options.since(t),
        None => options,
    };
    let result = migrate::migrate(&source.stores(), &destination.stores(), options).await;
    bars.clear();
    let report = result?;
    let complete = report.is_complete();
    let noted = report.quarantined + report.repaired > 0;
    let quarantine = q_path.filter(|_| noted).map(|p| p.display().to_string());
    let shown = MigrateOutput {
        from: args.from.display().to_string(),
        to: args.to.display().to_string(),
        complete,
        quarantine: quarantine.clone(),
        report: &report,
    };
    out.result(&shown, || {
        let mut text = human_migration(&report);
        if let Some(path) = &quarantine {
            text.push_str(&format!(
                "\nleft out {} unreadable records and noted {} repairs (runstore.lost tombstones), listed in {path}",
                report.quarantined, report.repaired
            ));
        }
        text
    })?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `runstore verify`: exit 0 when equal, 1 when they differ.
pub async fn verify(
    from: &Path,
    to: &Path,
    deep: bool,
    since: Option<runstore::Timestamp>,
    out: &Out,
) -> Result<ExitCode> {
    let (source, destination) = open_both(from, to).await?;
    let bars = Arc::new(ConcernBars::new("verify", out.json));
    bars.set_known_total("verify runs", run_total(&source, &destination).await);
    let mut options = VerifyOptions::default().deep(deep).progress(bars.clone());
    if let Some(t) = since {
        options = options.since(t);
    }
    let result = migrate::verify(&source.stores(), &destination.stores(), options).await;
    bars.clear();
    let report = result?;
    let equal = report.is_equal();
    let shown = VerifyOutput {
        from: from.display().to_string(),
        to: to.display().to_string(),
        equal,
        report: &report,
    };
    out.result(&shown, || human_verify(&report, true))?;
    Ok(if equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The larger run count of the two sides, for the verification bar; `None`
/// if either count fails (it only feeds the bar).
async fn run_total(a: &Storage, b: &Storage) -> Option<u64> {
    let na = a.logs.count_runs(RunFilter::default()).await.ok()?;
    let nb = b.logs.count_runs(RunFilter::default()).await.ok()?;
    Some(na.max(nb))
}

fn human_migration(r: &MigrationReport) -> String {
    let mut s = String::new();
    if r.dry_run {
        s.push_str("dry run: nothing was written; `copied` is what would be copied\n");
    }
    if let Some(t) = r.since {
        s.push_str(&format!("a pass since {t}: only what changed since then\n"));
    }
    s.push_str(&format!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "", "read", "copied", "unchanged", "updated", "conflicts"
    ));
    let rows: [(&str, &ConcernCounts); 6] = [
        ("workflows", &r.workflows),
        ("runs", &r.runs),
        ("events", &r.events),
        ("metrics", &r.metrics),
        ("patterns", &r.patterns),
        ("artifacts", &r.artifacts),
    ];
    for (name, c) in rows {
        s.push_str(&format!(
            "{name:<10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            c.read, c.copied, c.unchanged, c.updated, c.conflicts
        ));
    }
    s.push_str(&format!(
        "artifact bytes copied: {}\n",
        r.artifact_bytes_copied
    ));
    if r.runs_forwarded > 0 {
        s.push_str(&format!(
            "runs brought forward (finished or updated in the source since an earlier pass): {}\n",
            r.runs_forwarded
        ));
    }
    if r.runs_resumed > 0 {
        s.push_str(&format!(
            "runs completed after an interrupted import: {}\n",
            r.runs_resumed
        ));
    }
    let conflicts = r.conflict_count();
    if conflicts > 0 {
        s.push_str(&format!(
            "{conflicts} conflict(s), left untouched in the destination{}:\n",
            if r.conflicts_truncated {
                format!(" (first {} listed)", r.conflicts.len())
            } else {
                String::new()
            }
        ));
        for c in &r.conflicts {
            s.push_str(&format!("  {} {}: {}\n", c.concern, c.key, c.detail));
        }
    }
    if let Some(v) = &r.verify {
        s.push_str(if v.while_copying {
            "checked while copying (source = a, destination = b):\n"
        } else {
            "verification (source = a, destination = b):\n"
        });
        s.push_str(&human_verify(v, false));
        s.push('\n');
    }
    let nothing_to_copy = [r.workflows, r.runs, r.metrics, r.patterns, r.artifacts]
        .iter()
        .all(|c| c.copied == 0 && c.updated == 0);
    if let (Some(next), false) = (r.next_since, r.dry_run) {
        s.push_str(&format!("next pass: --since {next}\n"));
    }
    s.push_str(if r.is_complete() && r.since.is_some() {
        "migration complete: the destination holds everything that changed in the source since then"
    } else if r.is_complete() {
        "migration complete: the destination holds everything the source does"
    } else if r.dry_run && r.conflict_count() > 0 && nothing_to_copy {
        "dry run: nothing to copy, but the conflicts above stay conflicts until they are resolved in the destination"
    } else if r.dry_run && r.conflict_count() > 0 {
        "dry run: the migration has work to do; the conflicts above will be left untouched"
    } else if r.dry_run {
        "dry run: the migration has work to do; run it without --dry-run"
    } else {
        "migration NOT complete (see conflicts / differences above)"
    });
    s
}

fn human_verify(v: &VerifyReport, standalone: bool) -> String {
    let mut s = String::new();
    if let (Some(t), true) = (v.since, standalone) {
        s.push_str(&format!("compared what changed since {t}\n"));
    }
    s.push_str(&format!(
        "{:<10} {:>10} {:>10} {:>10}  digests\n",
        "", "source", "dest", "equal"
    ));
    let rows: [(&str, &SideCounts); 6] = [
        ("workflows", &v.workflows),
        ("runs", &v.runs),
        ("events", &v.events),
        ("metrics", &v.metrics),
        ("patterns", &v.patterns),
        ("artifacts", &v.artifacts),
    ];
    for (name, c) in rows {
        let digests = if c.digest_a == c.digest_b {
            "same"
        } else {
            "differ"
        };
        s.push_str(&format!(
            "{name:<10} {:>10} {:>10} {:>10}  {digests}\n",
            c.a, c.b, c.equal
        ));
    }
    if v.is_equal() {
        s.push_str(if v.deep {
            "equal (artifact bytes re-read on both sides)"
        } else if v.while_copying {
            "equal (each batch read back from the destination as it was written; --deep compares both sides again)"
        } else {
            "equal"
        });
    } else {
        s.push_str(&format!(
            "{} difference(s){}:",
            v.difference_count,
            if v.differences_truncated {
                format!(" (first {} listed)", v.differences.len())
            } else {
                String::new()
            }
        ));
        for d in &v.differences {
            let kind = match d.kind {
                migrate::DifferenceKind::OnlyInA => "only in the source",
                migrate::DifferenceKind::OnlyInB => "only in the destination",
                migrate::DifferenceKind::Different => "different",
            };
            s.push_str(&format!("\n  {} {}: {kind}", d.concern, d.key));
            if !d.detail.is_empty() {
                s.push_str(&format!(" ({})", d.detail));
            }
        }
    }
    if standalone && !v.is_equal() {
        s.push_str("\nthe two sides differ");
    }
    s
}

/// Plain mode prints a line every this many records of a concern.
const PLAIN_EVERY: u64 = 1000;

/// One progress bar per concern: indicatif bars on a terminal (a bar with
/// rate and ETA where the total is known, a spinner with rate otherwise),
/// plain lines on stderr when it is not a terminal, nothing in `--json`
/// mode without a terminal.
struct ConcernBars {
    /// What a concern's label starts with (`migrate`, `dry run`, `verify`).
    label: String,
    multi: Option<MultiProgress>,
    plain: bool,
    state: Mutex<BarsState>,
}

#[derive(Default)]
struct BarsState {
    bars: BTreeMap<String, Bar>,
    /// Totals the library does not give, known to the command (by label).
    known: BTreeMap<String, u64>,
}

struct Bar {
    bar: Option<ProgressBar>,
    started: Instant,
    total: Option<u64>,
    next_line: u64,
}

impl ConcernBars {
    fn new(label: &str, json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        ConcernBars {
            label: label.to_string(),
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            plain: !tty && !json,
            state: Mutex::new(BarsState::default()),
        }
    }

    fn set_known_total(&self, concern: &str, total: Option<u64>) {
        if let Some(total) = total {
            self.lock().known.insert(concern.to_string(), total);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BarsState> {
        // A panic while holding the lock only loses progress display.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `migrate runs`, `dry run metrics`; verification labels (`verify
    /// runs`) are kept as they are.
    fn label_of(&self, concern: &str) -> String {
        if concern.starts_with("verify ") {
            concern.to_string()
        } else {
            format!("{} {concern}", self.label)
        }
    }

    fn style(total: Option<u64>) -> ProgressStyle {
        // The templates are constants; fall back to the defaults if one were bad.
        let style = match total {
            Some(_) => ProgressStyle::with_template(
                "{prefix:>18} [{bar:30}] {human_pos}/{human_len} ({rate}, ETA {eta})",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
            None => ProgressStyle::with_template(
                "{prefix:>18} {spinner} {human_pos} records ({rate}, {elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        };
        // indicatif's {per_sec} prints four decimals (and absurd rates at
        // the start); whole records once meaningful read better.
        crate::progress::with_rate_key(style)
    }

    /// Removes the bars still drawn (e.g. on an error), so the report or the
    /// error message is printed on a clean line.
    fn clear(&self) {
        let mut state = self.lock();
        for b in state.bars.values_mut() {
            if let Some(bar) = b.bar.take() {
                bar.finish_and_clear();
            }
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                if multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }
}

fn eta(started: Instant, done: u64, total: u64) -> Option<Duration> {
    if done == 0 || total <= done {
        return None;
    }
    let per = started.elapsed().as_secs_f64() / done as f64;
    Some(Duration::from_secs_f64(per * (total - done) as f64))
}

impl MigrationProgress for ConcernBars {
    fn on_progress(&self, concern: &str, done: u64, total: Option<u64>) {
        let mut state = self.lock();
        let total = total.or_else(|| state.known.get(concern).copied());
        let label = self.label_of(concern);
        let entry = state.bars.entry(concern.to_string()).or_insert_with(|| {
            let bar = self.multi.as_ref().map(|multi| {
                let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                bar.set_style(Self::style(total));
                bar.set_prefix(label.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            Bar {
                bar,
                started: Instant::now(),
                total,
                next_line: PLAIN_EVERY,
            }
        });
        if let Some(bar) = &entry.bar {
            if entry.total != total {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_style(Self::style(total));
            }
            // Writers report as they finish a batch, each with the count
            // it read, and a report can overtake one sent before it: the
            // bar never steps back.
            bar.set_position(done.max(bar.position()));
        }
        entry.total = total;
        if self.plain && done >= entry.next_line {
            entry.next_line = (done / PLAIN_EVERY + 1) * PLAIN_EVERY;
            let r = crate::progress::rate_text(entry.started.elapsed().as_secs_f64(), done);
            let text = match total {
                Some(t) => {
                    let eta = eta(entry.started, done, t)
                        .map(|d| format!(", ETA {:.0}s", d.as_secs_f64().ceil()))
                        .unwrap_or_default();
                    format!("{label}: {done}/{t} records ({r}{eta})")
                }
                None => format!("{label}: {done} records ({r})"),
            };
            drop(state);
            eprintln!("{text}");
        }
    }

    fn on_finish(&self, concern: &str, done: u64) {
        let mut state = self.lock();
        let label = self.label_of(concern);
        let (started, bar) = match state.bars.get_mut(concern) {
            Some(b) => (b.started, b.bar.take()),
            // Finished without a single record: no bar was drawn.
            None => (Instant::now(), None),
        };
        drop(state);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let secs = started.elapsed().as_secs_f64();
        let text = if secs >= crate::progress::MIN_RATE_SECS {
            format!(
                "{label}: {done} records in {secs:.2}s ({})",
                crate::progress::rate_text(secs, done)
            )
        } else {
            format!("{label}: {done} records in {secs:.2}s")
        };
        if self.multi.is_some() {
            self.line(&text);
        } else if self.plain {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_does_not_step_back_when_reports_overtake_each_other() {
        let bars = ConcernBars {
            label: "migrate".into(),
            multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden())),
            plain: false,
            state: Mutex::new(BarsState::default()),
        };
        bars.on_progress("runs", 1_500, Some(3_000));
        bars.on_progress("runs", 1_000, Some(3_000));
        let position = |bars: &ConcernBars| {
            bars.lock().bars["runs"]
                .bar
                .as_ref()
                .map(ProgressBar::position)
        };
        assert_eq!(position(&bars), Some(1_500));
        bars.on_progress("runs", 2_000, Some(3_000));
        assert_eq!(position(&bars), Some(2_000));
    }

    #[test]
    fn batch_size_is_checked() {
        assert_eq!(crate::paging::parse_page_size("500"), Ok(500));
        assert_eq!(crate::paging::parse_page_size("1"), Ok(1));
        assert!(crate::paging::parse_page_size("0").is_err());
        assert!(crate::paging::parse_page_size("x").is_err());
        assert!(
            crate::paging::parse_page_size(&(runstore::MAX_PAGE_LIMIT + 1).to_string()).is_err()
        );
    }

    #[test]
    fn writers_are_checked() {
        assert_eq!(parse_writers("1"), Ok(1));
        assert_eq!(parse_writers("8"), Ok(8));
        for bad in ["0", "9", "-1", "two", ""] {
            let err = parse_writers(bad).unwrap_err();
            assert!(err.contains("1 to 8"), "{err}");
        }
    }

    #[test]
    fn eta_is_proportional_to_what_is_left() {
        let started = Instant::now() - Duration::from_secs(10);
        let e = eta(started, 100, 300).unwrap().as_secs_f64();
        assert!((19.0..=21.5).contains(&e), "{e}");
        assert!(eta(started, 0, 300).is_none());
        assert!(eta(started, 300, 300).is_none());
    }
}
