//! Shared by the CLI test binaries: running `runstore` as a real process
//! and asserting on its exit code and `--json` output.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// What a finished `runstore` process left behind.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The cursor a listing cut at `--limit` printed on stderr (`more
    /// runs: --cursor C`); panics with stderr if there is none.
    pub fn more_cursor(&self) -> String {
        self.stderr
            .trim()
            .strip_prefix("more runs: --cursor ")
            .expect(&self.stderr)
            .to_string()
    }

    /// Stdout parsed as JSON (panics with both streams if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit code `code` and returns the JSON.
    pub fn code(&self, code: i32) -> Value {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Asserts success and returns the JSON.
    pub fn ok(&self) -> Value {
        self.code(0)
    }

    /// Asserts exit code `code` and that stdout (human output) holds each
    /// of `texts`.
    pub fn prints(&self, code: i32, texts: &[&str]) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for t in texts {
            assert!(
                self.stdout.contains(t),
                "{t:?} not in stdout:\n{}",
                self.stdout
            );
        }
        self
    }

    /// Asserts that stderr (progress, messages) holds each of `texts`.
    pub fn logs(&self, texts: &[&str]) -> &Self {
        for t in texts {
            assert!(
                self.stderr.contains(t),
                "{t:?} not in stderr:\n{}",
                self.stderr
            );
        }
        self
    }

    /// Asserts exit code 1 with a JSON error of `kind`; returns its message.
    pub fn error(&self, kind: &str) -> String {
        let v = self.code(1);
        assert_eq!(v["error"]["kind"], json!(kind), "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    }
}

/// Runs `runstore` in `dir` with `args` and the extra environment `env`,
/// never with an inherited `RUNSTORE_CONFIG`.
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runstore"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("RUNSTORE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running runstore");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `runstore` in `dir` with `args`.
pub fn rs(dir: &Path, args: &[&str]) -> Outcome {
    run_in(dir, args, &[])
}

/// [`rs`] with owned arguments.
pub fn rs_owned(dir: &Path, args: &[String]) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rs(dir, &args)
}

/// `base` then `extra`, owned.
pub fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Finds the file under `root` whose bytes are `content`.
pub fn find_file_with(root: &Path, content: &[u8]) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if let Some(found) = find_file_with(&p, content) {
                return Some(found);
            }
        } else if std::fs::read(&p).ok().as_deref() == Some(content) {
            return Some(p);
        }
    }
    None
}

/// Replaces line `index` (from 0) of the text file at `path` with text
/// that is not a record, behind the store's back.
pub fn damage_line(path: &Path, index: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[index] = "{ this line was damaged".to_string();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Flips bit `mask` of byte `at` of the file at `path`, behind the store's back.
pub fn flip_byte(path: &Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// A fresh schema of the Postgres test server, dropped with the guard, and
/// the YAML flow mapping of a backend on it; `None` after saying loudly that
/// `test` did not run (or panicking under `RUNSTORE_REQUIRE_PG=1`).
pub fn pg_schema(test: &str) -> Option<(runstore_postgres::testing::TestSchema, String)> {
    use runstore_postgres::testing;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(config) = rt.block_on(testing::test_config()) else {
        testing::no_server(test, &testing::why_no_server().unwrap_or_default());
        return None;
    };
    // JSON strings are valid YAML double-quoted scalars.
    let url = serde_json::to_string(&config.url).unwrap();
    let pg = format!(
        "{{ type: postgres, url: {url}, schema: {}, pool_size: 2 }}",
        config.schema
    );
    Some((testing::TestSchema::new(config), pg))
}

/// A configuration with all four concerns on the backend `backend` (a YAML
/// flow mapping).
pub fn all_on(backend: &str) -> String {
    format!(
        "storage:\n  workflows: {backend}\n  logs: {backend}\n  metrics: {backend}\n  artifacts: {backend}\n"
    )
}

/// Runs `runstore --config <config> <args>` in `dir`.
pub fn rs_config(dir: &Path, config: &str, args: &[&str]) -> Outcome {
    let all: Vec<&str> = ["--config", config].iter().chain(args).copied().collect();
    rs(dir, &all)
}
