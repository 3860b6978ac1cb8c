//! Human and `--json` output.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use runstore::{Error, ErrorKind, Result};
use serde::Serialize;

/// Where results go: JSON or human text on stdout, messages on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

/// The snake_case name of an error kind, as printed in `--json` mode.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    kind.code()
}

/// Whether a streamed JSON array is open on stdout: an error met while it
/// is open becomes its last element and closes it, so stdout stays one
/// valid JSON document.
static ARRAY_OPEN: AtomicBool = AtomicBool::new(false);

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("writing to stdout", e)
}

impl Out {
    pub fn new(json: bool) -> Self {
        Out { json }
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints an error: a JSON object on stdout in `--json` mode, else a
    /// line (with its chain of causes) on stderr.
    pub fn error(&self, e: &Error) {
        if self.json {
            let obj = serde_json::json!({
                "error": {
                    "kind": kind_name(e.kind()),
                    "message": e.to_string(),
                    "retryable": e.is_retryable(),
                }
            });
            // Not println!: a closed stdout (`| head`) must not panic here.
            let mut stdout = std::io::stdout().lock();
            if ARRAY_OPEN.swap(false, Ordering::SeqCst) {
                let _ = writeln!(stdout, ", {obj}\n]");
            } else {
                let _ = writeln!(stdout, "{obj}");
            }
        } else {
            let mut line = format!("error: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                line.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{line}");
        }
    }

    /// Prints one result: `value` as JSON, or the `human` text.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| Error::backend("printing JSON", Some(e.into())))?;
            writeln!(stdout, "{text}").map_err(stdout_error)?;
        } else {
            let text = human();
            if !text.is_empty() {
                writeln!(stdout, "{}", text.trim_end()).map_err(stdout_error)?;
            }
        }
        Ok(())
    }

    /// A note for humans on stderr (nothing in `--json` mode).
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }

    /// Starts a list printed item by item (a JSON array streamed element by
    /// element, or one line per item), so long lists never sit in memory.
    pub fn list(&self) -> Result<ListOut> {
        // `[` is printed with the first item (or by `finish`), so an error
        // before any item prints only the error object.
        Ok(ListOut {
            json: self.json,
            count: 0,
        })
    }
}

/// See [`Out::list`].
pub struct ListOut {
    json: bool,
    count: u64,
}

impl ListOut {
    fn write(&mut self, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}").map_err(stdout_error)
    }

    /// One item.
    pub fn item<T: Serialize>(&mut self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            let text = serde_json::to_string(value)
                .map_err(|e| Error::backend("printing JSON", Some(e.into())))?;
            if self.count == 0 {
                self.write("[")?;
                ARRAY_OPEN.store(true, Ordering::SeqCst);
            }
            let sep = if self.count == 0 { "  " } else { ", " };
            self.write(&format!("{sep}{text}"))?;
        } else {
            self.write(&human())?;
        }
        self.count += 1;
        Ok(())
    }

    /// Closes the list; returns how many items it had.
    pub fn finish(mut self, empty_note: &str) -> Result<u64> {
        if self.json {
            ARRAY_OPEN.store(false, Ordering::SeqCst);
            self.write(if self.count == 0 { "[]" } else { "]" })?;
        } else if self.count == 0 {
            eprintln!("{empty_note}");
        }
        Ok(self.count)
    }
}
