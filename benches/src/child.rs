//! Measurements that run in a child process of the harness (so that the
//! child's peak memory is theirs alone) report one line `RESULT <fields>`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::BenchResult;

/// Runs `cmd` and returns the whitespace-separated fields of its `RESULT`
/// line; an error with the child's stderr if it failed. `what` names the
/// measurement in errors.
pub fn run(mut cmd: Command, what: &str) -> BenchResult<Vec<String>> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{what} child failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .ok_or_else(|| format!("{what} child printed no RESULT line: {stdout:?}").into())
}

/// Runs `exe FLAG ARGS… [URL SCHEMA]` (the PostgreSQL server of the child,
/// if any) and parses its `RESULT` fields with `parse`; `what` names the
/// measurement in errors.
pub fn run_parsed<T>(
    exe: &Path,
    flag: &str,
    args: &[&OsStr],
    pg: Option<&(String, String)>,
    what: &str,
    parse: fn(&[String]) -> Option<T>,
) -> BenchResult<T> {
    let mut cmd = Command::new(exe);
    cmd.arg(flag).args(args);
    if let Some((url, schema)) = pg {
        cmd.arg(url).arg(schema);
    }
    let fields = run(cmd, what)?;
    parse(&fields).ok_or_else(|| format!("bad {what} child output {fields:?}").into())
}

/// The optional `URL SCHEMA` tail of a child's arguments.
pub fn pg_args(tail: &[String]) -> Option<(&str, &str)> {
    match tail {
        [url, schema] => Some((url.as_str(), schema.as_str())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_line_and_reports_failures() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo noise; echo 'RESULT 1.5 42'"]);
        assert_eq!(run(ok, "t").unwrap(), vec!["1.5", "42"]);
        let mut silent = Command::new("sh");
        silent.args(["-c", "echo nothing"]);
        assert!(
            run(silent, "t")
                .unwrap_err()
                .to_string()
                .contains("no RESULT")
        );
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo boom >&2; exit 3"]);
        assert!(run(failing, "t").unwrap_err().to_string().contains("boom"));
    }

    #[test]
    fn runs_a_child_with_its_server_and_parses_the_result() {
        let pg = ("postgres://x".to_string(), "s1".to_string());
        let sh = Path::new("/bin/sh");
        // `sh -c CMD A B` sees A as $0 and B as $1.
        let args = [OsStr::new("echo RESULT $0 $1")];
        let got = run_parsed(sh, "-c", &args, Some(&pg), "t", |f| Some(f.to_vec())).unwrap();
        assert_eq!(got, ["postgres://x", "s1"]);
        let bad = run_parsed(sh, "-c", &args, None, "t", |_| None::<()>);
        assert!(bad.unwrap_err().to_string().contains("bad t child output"));
        let tail = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pg_args(&tail(&["u", "s"])), Some(("u", "s")));
        assert_eq!(pg_args(&tail(&[])), None);
    }
}
