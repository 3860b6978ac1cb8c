//! Results: one row per (operation, backend), with the raw figure of the
//! same run, the ratio and its target; printed as a text table
//! and saved as Markdown.

use std::fmt::Write as _;

/// What a figure measures. Throughputs are better higher, latencies lower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Operations per second.
    OpsPerSec,
    /// Records (runs plus events, or rows) per second.
    RecordsPerSec,
    /// MiB per second.
    MibPerSec,
    /// Milliseconds per operation.
    Millis,
}

impl Unit {
    /// Whether a higher figure is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Unit::Millis)
    }
    /// Short label for the table.
    pub fn label(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::RecordsPerSec => "rec/s",
            Unit::MibPerSec => "MiB/s",
            Unit::Millis => "ms",
        }
    }
}

/// Median, min and max of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many measurements.
    pub n: usize,
}

impl Stats {
    /// Stats of `values`; `None` if empty or any value is not finite.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// A target of the benchmark table (benches/README.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Median / raw median at least this (throughputs).
    RatioAtLeast(f64),
    /// Median / raw median at most this (latencies).
    RatioAtMost(f64),
    /// Median latency under this many milliseconds.
    UnderMillis(f64),
    /// Peak resident memory under this many MiB.
    PeakUnderMib(f64),
    /// Both: median / raw median at least this, and peak resident memory
    /// under this many MiB (large artifacts).
    RatioAtLeastPeakUnder(f64, f64),
}

impl Target {
    /// How the target reads in the table.
    pub fn describe(self) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r}x raw"),
            Target::RatioAtMost(r) => format!("<= {r}x raw"),
            Target::UnderMillis(ms) => format!("< {ms} ms"),
            Target::PeakUnderMib(m) => format!("peak < {m} MiB"),
            Target::RatioAtLeastPeakUnder(r, m) => format!(">= {r}x raw, peak < {m} MiB"),
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The workload, e.g. `durable single append`.
    pub operation: String,
    /// The backend and its settings, e.g. `file (fsync)`.
    pub backend: String,
    /// What the figures measure.
    pub unit: Unit,
    /// The backend's figures; `None` if it could not be measured.
    pub stats: Option<Stats>,
    /// The raw library's name and figures in the same run.
    pub raw: Option<(String, Stats)>,
    /// Peak resident memory of the measuring process, in bytes.
    pub peak_bytes: Option<u64>,
    /// The target of the row, if one applies.
    pub target: Option<Target>,
    /// Why a figure is missing or what it means.
    pub note: String,
}

/// Whether a row meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No target applies.
    NoTarget,
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// A target applies but a figure is missing.
    NotMeasured,
}

impl Row {
    /// A row without raw figure, target or note.
    pub fn new(operation: impl Into<String>, backend: impl Into<String>, unit: Unit) -> Row {
        Row {
            operation: operation.into(),
            backend: backend.into(),
            unit,
            stats: None,
            raw: None,
            peak_bytes: None,
            target: None,
            note: String::new(),
        }
    }

    /// Backend median over raw median.
    pub fn ratio(&self) -> Option<f64> {
        let s = self.stats?;
        let (_, r) = self.raw.as_ref()?;
        (r.median > 0.0).then(|| s.median / r.median)
    }

    /// The verdict against the target.
    pub fn verdict(&self) -> Verdict {
        let Some(target) = self.target else {
            return Verdict::NoTarget;
        };
        let ok = match target {
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Target::UnderMillis(t) => self.stats.map(|s| s.median < t),
            Target::PeakUnderMib(t) => self.peak_bytes.map(|b| (b as f64) / MIB < t),
            Target::RatioAtLeastPeakUnder(r, t) => self
                .ratio()
                .zip(self.peak_bytes)
                .map(|(ratio, b)| ratio >= r && (b as f64) / MIB < t),
        };
        match ok {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::Missed,
            None => Verdict::NotMeasured,
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// A figure with three significant digits (or more for big numbers).
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let mut s = format!("{:.0}", v);
        // Thousands separators make 1,000,000-row figures readable.
        let neg = s.starts_with('-');
        if neg {
            s.remove(0);
        }
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if neg { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

const HEADERS: [&str; 9] = [
    "operation",
    "backend",
    "median (min-max)",
    "unit",
    "peak RSS",
    "raw (same run)",
    "ratio",
    "target",
    "result",
];

fn cells(row: &Row) -> [String; 9] {
    let fig = |s: &Stats| {
        format!(
            "{} ({}-{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        )
    };
    let stats = row.stats.as_ref().map_or("not measured".into(), fig);
    let raw = row.raw.as_ref().map_or("-".into(), |(name, s)| {
        format!("{}: {}", name, fmt_num(s.median))
    });
    let ratio = row.ratio().map_or("-".into(), |r| format!("{r:.2}x"));
    let peak = row
        .peak_bytes
        .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / MIB));
    let target = row.target.map_or("-".into(), Target::describe);
    let verdict = match row.verdict() {
        Verdict::NoTarget => "-",
        Verdict::Met => "met",
        Verdict::Missed => "MISSED",
        Verdict::NotMeasured => "not measured",
    };
    [
        row.operation.clone(),
        row.backend.clone(),
        stats,
        row.unit.label().into(),
        peak,
        raw,
        ratio,
        target,
        verdict.into(),
    ]
}

/// The rows as an aligned text table (what the command prints), then the
/// notes of the rows and `extra` notes.
pub fn text_table(rows: &[Row], extra: &[String]) -> String {
    let all: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join(" | ").trim_end());
    };
    line(&mut out, &HEADERS.map(String::from));
    let _ = writeln!(out, "{}", widths.map(|w| "-".repeat(w)).join("-+-"));
    for r in &all {
        line(&mut out, r);
    }
    let notes = notes(rows, extra);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

fn notes(rows: &[Row], extra: &[String]) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("{} / {}: {}", r.operation, r.backend, r.note))
        .chain(extra.iter().cloned())
        .collect()
}

/// The rows as a Markdown table, followed by the notes.
pub fn markdown_table(rows: &[Row], extra: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}|", HEADERS.map(|_| "---").join("|"));
    for r in rows {
        let c = cells(r).map(|c| c.replace('|', "\\|"));
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    let notes = notes(rows, extra);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes on rows:\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f64]) -> Stats {
        Stats::of(v).unwrap()
    }

    #[test]
    fn stats_take_median_min_max() {
        let s = stats(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn verdicts_follow_the_target() {
        let mut row = Row::new("batched append", "sqlite", Unit::OpsPerSec);
        row.stats = Some(stats(&[80.0]));
        row.raw = Some(("rusqlite tx".into(), stats(&[100.0])));
        row.target = Some(Target::RatioAtLeast(0.8));
        assert_eq!(row.verdict(), Verdict::Met);
        row.target = Some(Target::RatioAtLeast(0.9));
        assert_eq!(row.verdict(), Verdict::Missed);
        row.target = Some(Target::RatioAtMost(0.5));
        assert_eq!(row.verdict(), Verdict::Missed);
        row.raw = None;
        assert_eq!(row.verdict(), Verdict::NotMeasured);
        row.target = Some(Target::UnderMillis(100.0));
        assert_eq!(row.verdict(), Verdict::Met);
        row.target = Some(Target::PeakUnderMib(64.0));
        row.peak_bytes = Some(65 << 20);
        assert_eq!(row.verdict(), Verdict::Missed);
        row.target = None;
        assert_eq!(row.verdict(), Verdict::NoTarget);
    }

    #[test]
    fn tables_show_every_row_and_note() {
        let mut a = Row::new("durable single append", "file (fsync)", Unit::OpsPerSec);
        a.stats = Some(stats(&[900.0, 1000.0, 1100.0]));
        a.raw = Some(("write+fdatasync".into(), stats(&[1000.0])));
        a.target = Some(Target::RatioAtLeast(0.9));
        let mut b = Row::new("migration", "files -> sqlite", Unit::RecordsPerSec);
        b.note = "not measured: no migrate".into();
        let text = text_table(&[a.clone(), b.clone()], &["raw x failed".into()]);
        assert!(text.contains("raw x failed"), "{text}");
        assert!(text.contains("1.00x"), "{text}");
        assert!(text.contains("met"), "{text}");
        assert!(text.contains("not measured: no migrate"), "{text}");
        let md = markdown_table(&[a, b], &[]);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            3,
            "{md}"
        );
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.1234), "0.123");
    }
}
