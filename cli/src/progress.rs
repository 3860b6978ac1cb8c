//! Progress of long commands (export, import): a spinner with counts and
//! rate on a terminal, plain lines on stderr otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain mode prints a line every this many records.
const PLAIN_EVERY: u64 = 1000;

/// Counts records of one step (e.g. `export runs`).
pub struct Progress {
    label: String,
    count: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
}

/// Shortest time over which a rate means something: before it, a handful
/// of records in microseconds would show billions per second.
pub const MIN_RATE_SECS: f64 = 0.5;

/// `N/s`, or `-/s` while too little time has passed to say.
pub fn rate_text(secs: f64, done: u64) -> String {
    if secs >= MIN_RATE_SECS {
        format!("{:.0}/s", done as f64 / secs)
    } else {
        "-/s".to_string()
    }
}

/// The `{rate}` key of progress templates: [`rate_text`] of the bar.
pub fn with_rate_key(style: ProgressStyle) -> ProgressStyle {
    style.with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(
                w,
                "{}",
                rate_text(state.elapsed().as_secs_f64(), state.pos())
            );
        },
    )
}

impl Progress {
    /// Starts counting. `quiet` suppresses plain lines (the bar is still shown
    /// on a terminal, on stderr, so `--json` stdout stays clean).
    pub fn start(label: impl Into<String>, quiet: bool) -> Progress {
        let label = label.into();
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // The template is a constant; fall back to the default if it were bad.
            let style = ProgressStyle::with_template(
                "{spinner} {prefix}: {human_pos} records ({rate}, {elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(with_rate_key(style));
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            label,
            count: 0,
            started: Instant::now(),
            bar,
            plain: !tty && !quiet,
        }
    }

    /// Adds `n` records.
    pub fn inc(&mut self, n: u64) {
        let before = self.count;
        self.count += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.plain && before / PLAIN_EVERY != self.count / PLAIN_EVERY {
            eprintln!("{}: {} records", self.label, self.count);
        }
    }

    /// Records counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Ends the step with a final line.
    pub fn finish(self) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        let line = if secs >= MIN_RATE_SECS {
            format!(
                "{}: {} records in {:.2}s ({})",
                self.label,
                self.count,
                secs,
                rate_text(secs, self.count)
            )
        } else {
            format!("{}: {} records in {:.2}s", self.label, self.count, secs)
        };
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            eprintln!("{line}");
        } else if self.plain {
            eprintln!("{line}");
        }
        self.count
    }
}
