//! `runstore serve` in a real headless browser (Chromium from the system's
//! packages): the page loads, lists the demo's runs, opens a failed run and
//! shows its last event; a screenshot is kept in the test target folder.
//! Without Chromium the test says so loudly and does not run; with
//! `RUNSTORE_REQUIRE_BROWSER=1` (as in CI) that is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod support;

use support::*;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUNSTORE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Chromium, headless, in a fresh profile, with what keeps it off the
/// network of this machine; returns what it printed.
fn browse(chromium: &Path, profile: &Path, args: &[&str]) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `runstore serve` on a free port in `dir`; the address it printed.
fn serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runstore"))
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("RUNSTORE_CONFIG")
        .env_remove("RUNSTORE_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

#[test]
fn the_page_lists_runs_and_shows_a_failed_runs_last_event() {
    let Some(chromium) = chromium() else {
        let why = "no Chromium (/usr/bin/chromium): the browser test did not run";
        if std::env::var("RUNSTORE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("{why}, and RUNSTORE_REQUIRE_BROWSER=1");
        }
        eprintln!("SKIPPED: {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let demo = rs(d, &["demo", "--runs", "5", "--json"]).ok();
    let ids: Vec<String> = demo["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let (mut server, base) = serve(d);
    let profile = tempfile::tempdir().unwrap();

    let index = browse(
        &chromium,
        profile.path(),
        &["--dump-dom", &format!("{base}/")],
    );
    for id in &ids {
        assert!(
            index.contains(id.as_str()),
            "run {id} is not listed:\n{index}"
        );
    }
    // The failed run's row links to its page.
    let row = index
        .split("<tr ")
        .find(|r| r.contains("status-failed"))
        .unwrap_or_else(|| panic!("no failed run listed:\n{index}"));
    let failed = row
        .split("href=\"/runs/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();

    let page = browse(
        &chromium,
        profile.path(),
        &["--dump-dom", &format!("{base}/runs/{failed}")],
    );
    let last = rs(d, &["run", "show", &failed, "--last", "1", "--json"]).ok();
    let last: &Value = &last["events"][0];
    let seq = last["seq"].as_u64().unwrap();
    let kind = last["kind"].as_str().unwrap();
    let marker = format!("id=\"event-{seq}\" class=\"event failing last\"");
    assert!(
        page.contains(&marker),
        "the last event is not marked:\n{page}"
    );
    assert!(page.contains(kind), "{page}");
    assert!(page.contains("schema mismatch"), "{page}");
    assert!(page.contains(&format!("href=\"#event-{seq}\"")), "{page}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-failed-run.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &chromium,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1400",
            &format!("{base}/runs/{failed}"),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot kept at {}", shot.display());

    let _ = server.kill();
    let _ = server.wait();
}
