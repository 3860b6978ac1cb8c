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
                "{spinner} {prefix}: {human_pos} records ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
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

    /// Ends the step with a final line.
    pub fn finish(self) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        };
        let line = format!(
            "{}: {} records in {:.2}s ({:.0}/s)",
            self.label, self.count, secs, rate
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            eprintln!("{line}");
        } else if self.plain {
            eprintln!("{line}");
        }
        self.count
    }
}
