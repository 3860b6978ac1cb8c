//! Measurements that run in a child process of the harness (so that the
//! child's peak memory is theirs alone) report one line `RESULT <fields>`.

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
}
