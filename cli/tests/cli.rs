//! Every command of `runstore`, run as a real process in a temp folder
//! (so the embedded default puts `./runstore-data` there), asserting on the
//! `--json` output and the exit code.

use std::path::Path;

use serde_json::{Value, json};

mod support;

use support::*;

/// Runs the demo and returns its JSON.
fn demo(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["demo", "--json"];
    args.extend_from_slice(extra);
    rs(dir, &args).ok()
}

fn run_ids(demo: &Value) -> Vec<String> {
    demo["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--json"],
        vec!["bogus", "--json"],
        vec!["workflow", "get", "--json"],
        vec!["run", "list", "--limit", "many", "--json"],
        vec!["artifact", "bundle", "r", "p/x", "--json"],
    ] {
        let o = rs(dir.path(), &args);
        assert_eq!(o.code, 2, "{args:?}: {}{}", o.stdout, o.stderr);
        let v = o.json();
        assert_eq!(v["error"]["kind"], json!("usage"), "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let o = rs(dir.path(), &["bogus"]);
    o.prints(2, &[]).logs(&["bogus"]);
    let o = rs(dir.path(), &["--help"]);
    o.prints(0, &["export"]);
    // Nothing was created by failed parsing.
    assert!(!dir.path().join("runstore-data").exists());
}

#[test]
fn init_creates_the_embedded_default_in_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    let v = rs(dir.path(), &["init", "--json"]).ok();
    assert_eq!(v["initialized"], json!(true));
    assert_eq!(v["config"], json!("embedded default"));
    assert_eq!(v["concerns"]["workflows"]["type"], json!("file"));
    assert_eq!(v["concerns"]["logs"]["type"], json!("sqlite"));
    assert_eq!(v["concerns"]["metrics"]["type"], json!("sqlite"));
    assert_eq!(v["concerns"]["artifacts"]["type"], json!("file"));
    // logs and metrics share one SQLite handle, workflows and artifacts one root.
    assert_eq!(v["backends"], json!(2));
    assert!(dir.path().join("runstore-data").is_dir());
    assert!(dir.path().join("runstore-data/runstore.db").is_file());
    // Human output too.
    let o = rs(dir.path(), &["init"]);
    o.prints(0, &["runstore is ready"]);
}

#[test]
fn workflow_put_get_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "v1.yaml",
        "id: etl\nversion: 1\ndescription: first\ncreated_at: 2026-01-01T00:00:00Z\nbody:\n  steps: [extract, load]\n",
    );
    write(
        d,
        "v2.json",
        r#"{"id": "etl", "version": 2, "parent": 1, "body": {"steps": ["extract", "check", "load"]}}"#,
    );
    write(
        d,
        "v1-other.yaml",
        "id: etl\nversion: 1\nbody: {steps: [x]}\n",
    );
    write(
        d,
        "orphan.yaml",
        "id: etl\nversion: 5\nparent: 4\nbody: {}\n",
    );
    write(d, "bad.yaml", "id: etl\nversion: 0\nbody: {}\n");

    let v = rs(d, &["workflow", "put", "v1.yaml", "--json"]).ok();
    assert_eq!(v["inserted"], json!(true));
    assert_eq!(v["workflow"]["version"], json!(1));
    let hash1 = v["workflow"]["content_hash"].as_str().unwrap().to_string();
    assert_eq!(hash1.len(), 64);
    // Same content again: a no-op.
    let v = rs(d, &["workflow", "put", "v1.yaml", "--json"]).ok();
    assert_eq!(v["inserted"], json!(false));
    let v = rs(d, &["workflow", "put", "v2.json", "--json"]).ok();
    assert_eq!(v["inserted"], json!(true));
    assert_eq!(v["workflow"]["parent"], json!(1));

    let m = rs(d, &["workflow", "put", "v1-other.yaml", "--json"]).error("conflict");
    assert!(m.contains("etl"), "{m}");
    rs(d, &["workflow", "put", "orphan.yaml", "--json"]).error("not_found");
    rs(d, &["workflow", "put", "bad.yaml", "--json"]).error("invalid_input");
    rs(d, &["workflow", "put", "absent.yaml", "--json"]).error("invalid_input");

    let v = rs(d, &["workflow", "get", "etl", "--json"]).ok();
    assert_eq!(v["version"], json!(2));
    assert_eq!(v["body"]["steps"][1], json!("check"));
    let v = rs(d, &["workflow", "get", "etl", "--version", "1", "--json"]).ok();
    assert_eq!(v["description"], json!("first"));
    assert_eq!(v["created_at"], json!("2026-01-01T00:00:00.000000Z"));
    assert_eq!(v["content_hash"], json!(hash1));
    rs(d, &["workflow", "get", "etl", "--version", "3", "--json"]).error("not_found");
    rs(d, &["workflow", "get", "nope", "--json"]).error("not_found");
    rs(d, &["workflow", "get", "../x", "--json"]).error("invalid_input");

    write(d, "other.yaml", "id: another\nversion: 1\nbody: {}\n");
    rs(d, &["workflow", "put", "other.yaml", "--json"]).ok();
    let v = rs(d, &["workflow", "list", "--json"]).ok();
    let listed: Vec<(String, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_string(),
                w["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![("another".into(), 1), ("etl".into(), 1), ("etl".into(), 2)]
    );
    let v = rs(d, &["workflow", "list", "etl", "--json"]).ok();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = rs(d, &["workflow", "list", "none-such", "--json"]).ok();
    assert_eq!(v, json!([]));
    // Human list: one line per definition.
    let o = rs(d, &["workflow", "list"]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.lines().count(), 3, "{}", o.stdout);
}

#[test]
fn demo_runs_twice_and_queries_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = demo(d, &[]);
    assert_eq!(first["workflow"]["versions"][0]["inserted"], json!(true));
    assert_eq!(first["workflow"]["versions"][1]["inserted"], json!(true));
    assert_eq!(first["workflow"]["versions"][1]["parent"], json!(1));
    assert_eq!(first["total_runs"], json!(5));
    assert_eq!(first["summary"]["executions"], json!(5));
    assert!(first["bundle"]["sha256"].is_string());
    assert_eq!(first["recent"].as_array().unwrap().len(), 5);

    let second = demo(d, &[]);
    // Re-storing the same versions is a no-op; runs are new.
    assert_eq!(second["workflow"]["versions"][0]["inserted"], json!(false));
    assert_eq!(second["workflow"]["versions"][1]["inserted"], json!(false));
    assert_eq!(second["total_runs"], json!(10));
    assert_eq!(second["summary"]["executions"], json!(10));
    let (a, b) = (run_ids(&first), run_ids(&second));
    assert!(a.iter().all(|id| !b.contains(id)));

    // The human demo prints a summary.
    let o = rs(d, &["demo"]);
    o.prints(0, &["recent runs", "executions"]);

    // run show
    let id = &a[0];
    let v = rs(d, &["run", "show", id, "--json"]).ok();
    assert_eq!(v["run"]["id"], json!(id));
    let events = v["events"].as_array().unwrap();
    assert!(events.len() >= 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i as u64 + 1));
    }
    assert_eq!(events[0]["kind"], json!("webhook.received"));
    rs(d, &["run", "show", "no-such-run", "--json"]).error("not_found");

    // run list and its filters
    let all = rs(d, &["run", "list", "--json"]).ok();
    assert_eq!(all.as_array().unwrap().len(), 15);
    let starts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["started_at"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(starts, sorted, "newest first");
    // --oldest-first: the same runs, reversed; its cursor continues in order.
    let oldest = rs(d, &["run", "list", "--oldest-first", "--json"]).ok();
    let mut reversed = all.as_array().unwrap().clone();
    reversed.reverse();
    assert_eq!(oldest.as_array().unwrap(), &reversed);
    let o = rs(
        d,
        &["run", "list", "--oldest-first", "--limit", "4", "--json"],
    );
    let first = o.code(0);
    assert_eq!(first.as_array().unwrap()[..], reversed[..4]);
    let cursor = o.more_cursor();
    let rest = rs(
        d,
        &[
            "run",
            "list",
            "--oldest-first",
            "--limit",
            "4",
            "--cursor",
            &cursor,
            "--json",
        ],
    )
    .ok();
    assert_eq!(rest.as_array().unwrap()[..], reversed[4..8]);
    let v = rs(d, &["run", "list", "--limit", "2", "--json"]).ok();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = rs(
        d,
        &[
            "run",
            "list",
            "--workflow",
            "demo-pipeline",
            "--status",
            "failed",
            "--json",
        ],
    )
    .ok();
    let failed = v.as_array().unwrap();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|r| r["status"] == json!("failed")));
    let v = rs(
        d,
        &["run", "list", "--status", "succeeded,failed", "--json"],
    )
    .ok();
    assert_eq!(v.as_array().unwrap().len(), 15);
    let v = rs(
        d,
        &["run", "list", "--since", "2999-01-01T00:00:00Z", "--json"],
    )
    .ok();
    assert_eq!(v, json!([]));
    let v = rs(
        d,
        &["run", "list", "--until", "2000-01-01T00:00:00Z", "--json"],
    )
    .ok();
    assert_eq!(v, json!([]));
    let v = rs(
        d,
        &[
            "run",
            "list",
            "--since",
            "2000-01-01T00:00:00Z",
            "--workflow",
            "other",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v, json!([]));
    rs(d, &["run", "list", "--status", "done", "--json"]).error("invalid_input");
    rs(d, &["run", "list", "--since", "yesterday", "--json"]).error("invalid_input");

    // metrics summary
    let v = rs(d, &["metrics", "summary", "demo-pipeline", "--json"]).ok();
    assert_eq!(v["executions"], json!(15));
    assert_eq!(
        v["succeeded"].as_u64().unwrap() + v["failed"].as_u64().unwrap(),
        15
    );
    assert!(v["duration"]["p95"].as_u64().unwrap() >= v["duration"]["p50"].as_u64().unwrap());
    let v2 = rs(
        d,
        &[
            "metrics",
            "summary",
            "demo-pipeline",
            "--version",
            "2",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v2["workflow_version"], json!(2));
    assert!(v2["executions"].as_u64().unwrap() < 15);
    let none = rs(d, &["metrics", "summary", "unknown-wf", "--json"]).ok();
    assert_eq!(none["executions"], json!(0));

    // stats
    let s = rs(d, &["stats", "--json"]).ok();
    assert_eq!(s["workflows"], json!(1));
    assert_eq!(s["workflow_versions"], json!(2));
    assert_eq!(s["runs"], json!(15));
    assert_eq!(s["metrics"], json!(15));
    assert_eq!(s["patterns"], json!(1));
    assert_eq!(
        s["runs_by_status"]["succeeded"].as_u64().unwrap()
            + s["runs_by_status"]["failed"].as_u64().unwrap(),
        15
    );
    assert!(s["artifacts"].as_u64().unwrap() >= 15);
}

#[test]
fn artifact_put_get_list_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = "run-1";
    write(d, "a.txt", "hello artifact\n");
    write(d, "b.txt", "other bytes\n");
    // `artifact put run-1 PHASE PATH FILE [EXTRA...] --json`
    let put = |phase: &str, path: &str, file: &str, extra: &[&str]| {
        let mut args = vec!["artifact", "put", run, phase, path, file];
        args.extend_from_slice(extra);
        args.push("--json");
        rs(d, &args)
    };
    let v = put("build", "out/a.txt", "a.txt", &["--type", "text/plain"]).ok();
    assert_eq!(v["inserted"], json!(true));
    assert_eq!(v["artifact"]["size"], json!(15));
    assert_eq!(v["artifact"]["content_type"], json!("text/plain"));
    assert_eq!(v["artifact"]["created_by"], json!("runstore-cli"));
    let sha = v["artifact"]["sha256"].as_str().unwrap().to_string();
    // Same bytes: no-op. Other bytes: immutable. Wrong token: conflict.
    let v = put("build", "out/a.txt", "a.txt", &[]).ok();
    assert_eq!(v["inserted"], json!(false));
    put("build", "out/a.txt", "b.txt", &[]).error("immutable");
    let wrong = "0".repeat(64);
    put(
        "build",
        "out/a.txt",
        "b.txt",
        &["--overwrite-token", &wrong],
    )
    .error("conflict");
    put("build", "out/a.txt", "b.txt", &["--overwrite-token", "xyz"]).error("invalid_input");
    put("build", "../a.txt", "a.txt", &[]).error("invalid_input");
    put("build", "x.txt", "missing.txt", &[]).error("invalid_input");
    // The right token replaces it.
    let v = put("build", "out/a.txt", "b.txt", &["--overwrite-token", &sha]).ok();
    assert_eq!(v["artifact"]["size"], json!(12));
    put("test", "report.txt", "a.txt", &[]).ok();

    let got = d.join("got.txt");
    let v = rs(
        d,
        &[
            "artifact",
            "get",
            run,
            "build",
            "out/a.txt",
            "--out",
            got.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["bytes"], json!(12));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "other bytes\n");
    rs(
        d,
        &[
            "artifact", "get", run, "build", "nope.txt", "--out", "x", "--json",
        ],
    )
    .error("not_found");
    rs(d, &["artifact", "get", run, "build", "out/a.txt", "--json"]).error("invalid_input");
    // Without --json and --out, the bytes go to stdout.
    let o = rs(d, &["artifact", "get", run, "test", "report.txt"]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout, "hello artifact\n");

    let v = rs(d, &["artifact", "list", run, "--json"]).ok();
    let paths: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["key"]["phase"].as_str().unwrap(),
                i["key"]["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(paths, vec!["build/out/a.txt", "test/report.txt"]);
    let v = rs(d, &["artifact", "list", run, "--phase", "test", "--json"]).ok();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        rs(d, &["artifact", "list", "other-run", "--json"]).ok(),
        json!([])
    );

    let v = rs(
        d,
        &[
            "artifact",
            "bundle",
            run,
            "bundles/all.zip",
            "build/out/a.txt",
            "test/report.txt",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["inserted"], json!(true));
    assert_eq!(v["artifact"]["content_type"], json!("application/zip"));
    let bundle_sha = v["artifact"]["sha256"].clone();
    // Deterministic: the same members again give the same bytes, a no-op.
    let v = rs(
        d,
        &[
            "artifact",
            "bundle",
            run,
            "bundles/all.zip",
            "test/report.txt",
            "build/out/a.txt",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["inserted"], json!(false));
    assert_eq!(v["artifact"]["sha256"], bundle_sha);
    rs(
        d,
        &[
            "artifact",
            "bundle",
            run,
            "bundles/x.zip",
            "build/missing.txt",
            "--json",
        ],
    )
    .error("not_found");
    rs(
        d,
        &[
            "artifact",
            "bundle",
            run,
            "nophase",
            "build/out/a.txt",
            "--json",
        ],
    )
    .error("invalid_input");
    let v = rs(
        d,
        &["artifact", "list", run, "--phase", "bundles", "--json"],
    )
    .ok();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn check_passes_then_finds_a_tampered_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, &["--runs", "2"]);
    let content = b"a distinctive artifact body 12345\n";
    std::fs::write(d.join("c.bin"), content).unwrap();
    rs(
        d,
        &["artifact", "put", "run-c", "p", "c.bin", "c.bin", "--json"],
    )
    .ok();

    let v = rs(d, &["check", "--json"]).ok();
    assert_eq!(v["ok"], json!(true), "{v}");
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    let sqlite = backends
        .iter()
        .find(|b| b["type"] == json!("sqlite"))
        .unwrap();
    assert!(sqlite["schema_version"].as_u64().unwrap() >= 1, "{sqlite}");
    assert_eq!(sqlite["integrity_check"], json!(["ok"]));
    assert!(v["artifacts"]["checked"].as_u64().unwrap() >= 5);

    let v = rs(d, &["check", "--repair", "--json"]).ok();
    assert_eq!(v["ok"], json!(true), "{v}");

    // Flip a byte of the stored artifact behind the store's back.
    let stored = find_file_with(&d.join("runstore-data"), content)
        .expect("the file backend keeps artifact bytes as plain files");
    flip_byte(&stored, 0, 0x20);
    let o = rs(d, &["check", "--json"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    let v = o.json();
    assert_eq!(v["ok"], json!(false));
    let corrupt = v["artifacts"]["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{v}");
    assert_eq!(corrupt[0]["key"], json!("run-c/p/c.bin"));
    assert_eq!(corrupt[0]["kind"], json!("corrupt"));
    // Reading it fails too, and leaves no file behind.
    let out = d.join("c.out");
    rs(
        d,
        &[
            "artifact",
            "get",
            "run-c",
            "p",
            "c.bin",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .error("corrupt");
    assert!(!out.exists());
    // To stdout: not one byte of it, and exit 1.
    let o = rs(d, &["artifact", "get", "run-c", "p", "c.bin"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stdout.is_empty(),
        "unverified bytes reached stdout: {:?}",
        o.stdout
    );
    assert!(o.stderr.contains("corrupt"), "{}", o.stderr);
}

/// A reader that closes the pipe early (`| head`) ends the command quietly.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Far more than a pipe holds, so the writer meets the closed pipe.
    std::fs::write(d.join("big.bin"), vec![7u8; 4 << 20]).unwrap();
    rs(
        d,
        &[
            "artifact", "put", "run-p", "p", "big.bin", "big.bin", "--json",
        ],
    )
    .ok();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runstore"))
        .current_dir(d)
        .env_remove("RUNSTORE_CONFIG")
        .args(["artifact", "get", "run-p", "p", "big.bin"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then hang up.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("error"), "{err}");
}

/// The `type` of each backend in a check report, and the findings of the
/// file backend's.
fn file_findings(check: &Value) -> Vec<Value> {
    let backends = check["backends"].as_array().unwrap();
    let file = backends
        .iter()
        .find(|b| b["type"] == json!("file"))
        .unwrap_or_else(|| panic!("no file backend in {check}"));
    file["findings"].as_array().unwrap().clone()
}

/// storage-file/FORMAT.md "Recovery": a torn last line and a garbage line
/// in an NDJSON journal are reported by `check`, repaired by `check
/// --repair` (the garbage kept in `<file>.corrupt`), and a second check is
/// clean.
#[test]
fn check_repair_fixes_a_torn_line_and_a_garbage_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "files.yaml", &all_on("{ type: file, path: data }"));
    rs_config(d, "files.yaml", &["demo", "--runs", "2", "--json"]).ok();
    let v = rs_config(d, "files.yaml", &["check", "--json"]).ok();
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(file_findings(&v), Vec::<Value>::new(), "{v}");

    let journal = std::fs::read_dir(d.join("data/logs/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .min()
        .expect("an events journal");
    let good = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert!(lines.len() >= 2, "{good}");
    // Garbage between the first two records; a record torn mid-append.
    let damaged = format!(
        "{}\nthis is not a record\n{}\n{{\"run_id\":\"tor",
        lines[0],
        lines[1..].join("\n")
    );
    std::fs::write(&journal, damaged).unwrap();
    let name = journal.file_name().unwrap().to_str().unwrap().to_string();
    let kinds = |findings: &[Value], repaired: bool| -> Vec<String> {
        findings
            .iter()
            .map(|f| {
                assert!(f["location"].as_str().unwrap().contains(&name), "{f}");
                assert_eq!(f["repaired"], json!(repaired), "{f}");
                f["kind"].as_str().unwrap().to_string()
            })
            .collect()
    };

    let v = rs_config(d, "files.yaml", &["check", "--json"]).code(1);
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(
        kinds(&file_findings(&v), false),
        ["CorruptLine", "TornTail"],
        "{v}"
    );
    // Reporting changed nothing.
    assert!(std::fs::read_to_string(&journal).unwrap().contains("tor"));

    let v = rs_config(d, "files.yaml", &["check", "--repair", "--json"]).ok();
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        kinds(&file_findings(&v), true),
        ["CorruptLine", "TornTail"],
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), good);
    let kept = std::fs::read_to_string(format!("{}.corrupt", journal.display())).unwrap();
    assert_eq!(kept, "this is not a record\n");

    let v = rs_config(d, "files.yaml", &["check", "--json"]).ok();
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(file_findings(&v), Vec::<Value>::new(), "{v}");
}

#[test]
fn backup_and_restore_every_concern() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, &["--runs", "2"]);
    let before = rs(d, &["stats", "--json"]).ok();
    let v = rs(d, &["backup", "--to", "sets", "--json"]).ok();
    let set = v["set"].as_str().unwrap().to_string();
    assert!(set.contains("runstore-backup-"), "{v}");
    assert!(d.join(&set).join("backup.json").is_file());
    let parts = v["manifest"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{v}");
    demo(d, &["--runs", "3"]);
    assert_eq!(rs(d, &["stats", "--json"]).ok()["runs"], json!(5));
    let r = rs(d, &["restore", &set, "--json"]).ok();
    assert_eq!(r["counts"]["runs"], json!(2), "{r}");
    assert_eq!(r["kept"].as_array().unwrap().len(), 2, "{r}");
    let after = rs(d, &["stats", "--json"]).ok();
    assert_eq!(after, before);
    rs(d, &["restore", "no-such-set", "--json"]).error("not_found");
    // A second backup is a new set beside the first.
    let again = rs(d, &["backup", "--to", "sets", "--json"]).ok();
    assert_ne!(again["set"], v["set"]);
}

#[test]
fn memory_stores_back_up_but_do_not_restore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = write(
        d,
        "mem.yaml",
        "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: file, path: data }\n",
    );
    let cfg = cfg.to_str().unwrap();
    rs(d, &["--config", cfg, "init", "--json"]).ok();
    let v = rs(d, &["--config", cfg, "backup", "--to", "sets", "--json"]).ok();
    let set = v["set"].as_str().unwrap().to_string();
    let m = rs(d, &["--config", cfg, "restore", &set, "--json"]).error("invalid_input");
    assert!(m.contains("memory"), "{m}");
    // check on memory and file backends works.
    let v = rs(d, &["--config", cfg, "check", "--json"]).ok();
    assert_eq!(v["ok"], json!(true));
}

/// Every file under `root`, relative path -> bytes.
fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn export_import_round_trip_is_equal_record_for_record_and_idempotent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    demo(a.path(), &["--runs", "6"]);
    write(a.path(), "wf.yaml", "id: solo\nversion: 1\nbody: {x: 1}\n");
    rs(a.path(), &["workflow", "put", "wf.yaml", "--json"]).ok();
    write(a.path(), "n.bin", "nested\n");
    rs(
        a.path(),
        &[
            "artifact",
            "put",
            "run-x",
            "deep",
            "a/b/c.bin",
            "n.bin",
            "--json",
        ],
    )
    .ok();
    // `a/b` beside `a/b/c.bin`: both fit in a dump.
    write(a.path(), "p.bin", "prefix\n");
    rs(
        a.path(),
        &["artifact", "put", "run-x", "deep", "a/b", "p.bin", "--json"],
    )
    .ok();

    let dump_a = a.path().join("dump");
    let v = rs(
        a.path(),
        &["export", "--out", dump_a.to_str().unwrap(), "--json"],
    )
    .ok();
    assert_eq!(v["exported"]["runs"], json!(6));
    assert_eq!(v["exported"]["workflows"], json!(3));
    assert_eq!(v["exported"]["metrics"], json!(6));
    assert_eq!(v["exported"]["patterns"], json!(1));
    for f in [
        "manifest.json",
        "workflows.ndjson",
        "runs.ndjson",
        "metrics.ndjson",
        "patterns.ndjson",
        "artifacts.ndjson",
    ] {
        assert!(dump_a.join(f).is_file(), "{f}");
    }
    // Bytes are kept by hash.
    let nested =
        find_file_with(&dump_a.join("blobs"), b"nested\n").expect("the bytes of a/b/c.bin");
    find_file_with(&dump_a.join("blobs"), b"prefix\n").expect("the bytes of a/b");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dump_a.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["format"], json!("runstore-dump/2"), "{manifest}");
    assert_eq!(manifest["counts"]["runs"], json!(6), "{manifest}");
    // Exporting into a non-empty folder is refused.
    rs(
        a.path(),
        &["export", "--out", dump_a.to_str().unwrap(), "--json"],
    )
    .error("invalid_input");

    let v = rs(b.path(), &["import", dump_a.to_str().unwrap(), "--json"]).ok();
    assert_eq!(v["imported"]["runs"]["inserted"], json!(6));
    assert_eq!(v["imported"]["workflows"]["inserted"], json!(3));
    // Twice: nothing changes.
    let v = rs(b.path(), &["import", dump_a.to_str().unwrap(), "--json"]).ok();
    for concern in ["workflows", "runs", "metrics", "patterns", "artifacts"] {
        assert_eq!(
            v["imported"][concern]["inserted"],
            json!(0),
            "{concern}: {v}"
        );
    }
    assert_eq!(v["imported"]["runs"]["unchanged"], json!(6));

    let dump_b = b.path().join("dump");
    rs(
        b.path(),
        &["export", "--out", dump_b.to_str().unwrap(), "--json"],
    )
    .ok();
    let (ta, tb) = (tree(&dump_a), tree(&dump_b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(
            *bytes == tb[name],
            "{name} differs:\nA: {}\nB: {}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&tb[name])
        );
    }
    assert_eq!(
        rs(a.path(), &["stats", "--json"]).ok(),
        rs(b.path(), &["stats", "--json"]).ok()
    );

    // A dump without its manifest is an export that did not finish.
    let e = tempfile::tempdir().unwrap();
    let dump_e = e.path().join("dump");
    copy_tree(&dump_a, &dump_e);
    std::fs::remove_file(dump_e.join("manifest.json")).unwrap();
    let m = rs(e.path(), &["import", dump_e.to_str().unwrap(), "--json"]).error("invalid_input");
    assert!(m.contains("no manifest.json"), "{m}");
    std::fs::write(dump_e.join("manifest.json"), r#"{"format":"other/9"}"#).unwrap();
    let m = rs(e.path(), &["import", dump_e.to_str().unwrap(), "--json"]).error("invalid_input");
    assert!(m.contains("runstore-dump/2"), "{m}");
    // A file cut short (here: the last runs gone) is refused before
    // anything is written.
    copy_tree(&dump_a, &dump_e);
    let runs = std::fs::read_to_string(dump_e.join("runs.ndjson")).unwrap();
    let cut: Vec<&str> = runs.lines().take(2).collect();
    std::fs::write(dump_e.join("runs.ndjson"), cut.join("\n") + "\n").unwrap();
    let m = rs(e.path(), &["import", dump_e.to_str().unwrap(), "--json"]).error("corrupt");
    assert!(
        m.contains("runs.ndjson holds 2 runs, manifest.json says 6"),
        "{m}"
    );
    assert_eq!(rs(e.path(), &["stats", "--json"]).ok()["runs"], json!(0));

    // A corrupt dump is refused before anything of that artifact is stored.
    let c = tempfile::tempdir().unwrap();
    let dump_c = c.path().join("dump");
    copy_tree(&dump_a, &dump_c);
    let blob = dump_c.join(nested.strip_prefix(&dump_a).unwrap());
    std::fs::write(&blob, "tampered").unwrap();
    rs(c.path(), &["import", dump_c.to_str().unwrap(), "--json"]).error("corrupt");
    // A bad line names the file and the line.
    std::fs::write(dump_c.join("metrics.ndjson"), "not json\n").unwrap();
    let m = rs(c.path(), &["import", dump_c.to_str().unwrap(), "--json"]).error("invalid_input");
    assert!(m.contains("metrics.ndjson line 1"), "{m}");
    // A file changed with its counts intact is found by its digest.
    copy_tree(&dump_a, &dump_c);
    let metrics = std::fs::read_to_string(dump_c.join("metrics.ndjson")).unwrap();
    std::fs::write(
        dump_c.join("metrics.ndjson"),
        metrics.replacen("\"duration_micros\":", "\"duration_micros\": ", 1),
    )
    .unwrap();
    let m = rs(c.path(), &["import", dump_c.to_str().unwrap(), "--json"]).error("corrupt");
    assert!(m.contains("metrics.ndjson has"), "{m}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

#[test]
fn progress_lines_go_to_stderr_when_not_a_terminal() {
    let a = tempfile::tempdir().unwrap();
    demo(a.path(), &["--runs", "2"]);
    let o = rs(a.path(), &["export", "--out", "dump"]);
    o.prints(0, &["exported"]).logs(&["export runs: 2 records"]);
}

#[test]
fn config_errors_name_line_column_key_and_missing_variables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "bad.yaml",
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: sqlit, path: x.db }\n  metrics: { type: sqlite, path: x.db }\n  artifacts: { type: file, path: data }\n",
    );
    let m = rs(d, &["--config", "bad.yaml", "stats", "--json"]).error("invalid_input");
    assert!(m.contains("bad.yaml line 3 column 9"), "{m}");
    assert!(m.contains("storage.logs"), "{m}");
    assert!(
        m.contains("known types: file, memory, postgres, s3, sqlite"),
        "{m}"
    );

    write(
        d,
        "env.yaml",
        "storage:\n  workflows: { type: file, path: \"${RS_TEST_ROOT}\" }\n  logs: { type: sqlite, path: \"${RS_TEST_ROOT}/x.db\" }\n  metrics: { type: sqlite, path: x.db }\n  artifacts: { type: file, path: data }\n",
    );
    let o = run_in(
        d,
        &["--config", "env.yaml", "init", "--json"],
        &[("RS_TEST_MISSING", "")],
    );
    let m = o.error("invalid_input");
    assert!(m.contains("RS_TEST_ROOT"), "{m}");
    assert!(m.contains("not set"), "{m}");
    assert!(m.contains("line 2"), "{m}");
    // With the variable set (and RUNSTORE_CONFIG instead of --config).
    let o = run_in(
        d,
        &["init", "--json"],
        &[
            ("RS_TEST_ROOT", "root-from-env"),
            ("RUNSTORE_CONFIG", "env.yaml"),
        ],
    );
    let v = o.ok();
    assert!(
        v["concerns"]["workflows"]["path"]
            .as_str()
            .unwrap()
            .ends_with("root-from-env"),
        "{v}"
    );
    assert!(d.join("root-from-env/x.db").is_file());

    write(d, "syntax.yaml", "storage:\n  workflows: [\n");
    let m = rs(d, &["--config", "syntax.yaml", "stats", "--json"]).error("invalid_input");
    assert!(m.contains("syntax.yaml line "), "{m}");

    write(
        d,
        "unknown-key.yaml",
        "storage:\n  workflows: { type: file, path: data }\n  logz: {}\n",
    );
    let m = rs(d, &["--config", "unknown-key.yaml", "stats", "--json"]).error("invalid_input");
    assert!(m.contains("line 3 column 3"), "{m}");
    assert!(m.contains("logz"), "{m}");

    // Human mode: the error on stderr, exit 1.
    let o = rs(d, &["--config", "bad.yaml", "stats"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.starts_with("error: "), "{}", o.stderr);
    assert!(o.stdout.is_empty());
}

#[test]
fn postgres_through_a_config_file() {
    let Some((_schema, pg)) = pg_schema("runstore-cli postgres_through_a_config_file") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "pg.yaml", &all_on(&pg));
    let cfg = ["--config", "pg.yaml"];
    let with = |args: &[&str]| {
        let mut all = cfg.to_vec();
        all.extend_from_slice(args);
        rs(d, &all)
    };
    let v = with(&["init", "--json"]).ok();
    assert_eq!(v["backends"], json!(1));
    let first = {
        let o = with(&["demo", "--runs", "3", "--json"]);
        o.ok()
    };
    assert_eq!(first["total_runs"], json!(3));
    let second = with(&["demo", "--runs", "3", "--json"]).ok();
    assert_eq!(second["total_runs"], json!(6));
    assert_eq!(second["workflow"]["versions"][1]["inserted"], json!(false));
    let s = with(&["stats", "--json"]).ok();
    assert_eq!(s["runs"], json!(6));
    assert_eq!(s["workflow_versions"], json!(2));
    let v = with(&["check", "--json"]).ok();
    assert_eq!(v["ok"], json!(true));
    assert!(v["backends"][0]["schema_version"].as_u64().unwrap() >= 1);
    let v = with(&["backup", "--to", "sets", "--json"]).ok();
    assert_eq!(
        v["manifest"]["parts"][0]["method"],
        json!("logical-dump"),
        "{v}"
    );
    assert_eq!(v["manifest"]["parts"][0]["counts"]["runs"], json!(6), "{v}");

    // Round trip Postgres -> files/SQLite (default) and back out equal.
    let dump = d.join("dump");
    with(&["export", "--out", dump.to_str().unwrap(), "--json"]).ok();
    let other = tempfile::tempdir().unwrap();
    rs(other.path(), &["import", dump.to_str().unwrap(), "--json"]).ok();
    let dump2 = other.path().join("dump");
    rs(
        other.path(),
        &["export", "--out", dump2.to_str().unwrap(), "--json"],
    )
    .ok();
    assert_eq!(tree(&dump), tree(&dump2));
}

/// Reads in a folder without a store say there is none and create
/// nothing; `init` and writes create it.
#[test]
fn reads_without_a_store_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        vec!["stats", "--json"],
        vec!["check", "--json"],
        vec!["run", "list", "--json"],
        vec!["workflow", "list", "--json"],
        vec!["export", "--out", "dump", "--json"],
    ] {
        let m = rs(d, &args).error("not_found");
        assert!(m.contains("runstore init"), "{args:?}: {m}");
        assert!(
            !d.join("runstore-data").exists(),
            "{args:?} created a store"
        );
    }
    rs(d, &["init", "--json"]).ok();
    assert!(d.join("runstore-data").is_dir());
    let v = rs(d, &["stats", "--json"]).ok();
    assert_eq!(v["runs"], json!(0), "{v}");
}

/// `artifact list --json` prints one valid JSON document even when the
/// listing fails (here: the run's artifacts folder was replaced by a
/// symbolic link, which the file backend refuses).
#[test]
fn a_failing_list_still_prints_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = demo(d, &["--runs", "1"]);
    let run = run_ids(&v)[0].clone();
    let v = rs(d, &["artifact", "list", &run, "--json"]).ok();
    assert!(!v.as_array().unwrap().is_empty(), "{v}");
    let folder = d.join("runstore-data/artifacts").join(&run);
    let elsewhere = d.join("elsewhere");
    std::fs::rename(&folder, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &folder).unwrap();
    let o = rs(d, &["artifact", "list", &run, "--json"]);
    // `json()` panics unless stdout is one JSON document.
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let v = o.json();
    assert_eq!(v["error"]["kind"], json!("corrupt"), "{v}");
    // An empty listing is `[]`.
    let v = rs(d, &["artifact", "list", "no-such-run", "--json"]).ok();
    assert_eq!(v, json!([]));
}

/// `check` reports references between concerns that do not resolve (here
/// an artifact of a run that was never recorded, and runs whose workflow
/// version was removed behind the store's back), as warnings.
#[test]
fn check_reports_unresolved_references() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, &["--runs", "2"]);
    let v = rs(d, &["check", "--json"]).ok();
    assert_eq!(v["references"]["unresolved"], json!([]), "{v}");
    assert!(v["references"]["checked"].as_u64().unwrap() > 0, "{v}");

    std::fs::write(d.join("x.bin"), b"x").unwrap();
    rs(
        d,
        &[
            "artifact",
            "put",
            "ghost-run",
            "p",
            "x.bin",
            "x.bin",
            "--json",
        ],
    )
    .ok();
    // Remove one workflow's files (a version the demo's runs name).
    let wf_dir = std::fs::read_dir(d.join("runstore-data/workflows"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_dir_all(&wf_dir).unwrap();
    let v = rs(d, &["check", "--json"]).ok();
    let unresolved = v["references"]["unresolved"].as_array().unwrap();
    assert!(
        unresolved
            .iter()
            .any(|u| u["from"] == json!("artifact ghost-run/p/x.bin")
                && u["to"] == json!("run ghost-run")),
        "{v}"
    );
    assert!(
        unresolved
            .iter()
            .any(|u| u["from"].as_str().unwrap().starts_with("run ")
                && u["to"].as_str().unwrap().starts_with("workflow ")),
        "{v}"
    );
    let o = rs(d, &["check"]);
    o.prints(0, &["unresolved", "ghost-run"]);
}

/// `import` reads a dump only from plain files inside its folder: an
/// artifact file that is a symbolic link or a hard link to a file outside
/// (here a copy of the real bytes, so the hash would match) is refused,
/// and so is a symlinked NDJSON file; the outside file is not read into
/// the store.
#[test]
fn import_refuses_links_out_of_the_dump() {
    let a = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("x.bin"), b"exported bytes\n").unwrap();
    rs(
        a.path(),
        &["artifact", "put", "run-x", "p", "x.bin", "x.bin", "--json"],
    )
    .ok();
    let dump = a.path().join("dump");
    rs(
        a.path(),
        &["export", "--out", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    let inside =
        find_file_with(&dump.join("blobs"), b"exported bytes\n").expect("the artifact's bytes");
    let victim = outside.path().join("victim.bin");
    std::fs::copy(&inside, &victim).unwrap();

    for link in ["symbolic", "hard"] {
        std::fs::remove_file(&inside).unwrap();
        if link == "symbolic" {
            std::os::unix::fs::symlink(&victim, &inside).unwrap();
        } else {
            std::fs::hard_link(&victim, &inside).unwrap();
        }
        let b = tempfile::tempdir().unwrap();
        let m = rs(b.path(), &["import", dump.to_str().unwrap(), "--json"]).error("invalid_input");
        assert!(m.contains("blobs/"), "{link}: {m}");
        let v = rs(b.path(), &["stats", "--json"]).ok();
        assert_eq!(v["artifacts"], json!(0), "{link}: {v}");
    }

    // A symlinked NDJSON file.
    std::fs::remove_file(&inside).unwrap();
    std::fs::copy(&victim, &inside).unwrap();
    let runs = dump.join("runs.ndjson");
    let runs_outside = outside.path().join("runs.ndjson");
    std::fs::rename(&runs, &runs_outside).unwrap();
    std::os::unix::fs::symlink(&runs_outside, &runs).unwrap();
    let b = tempfile::tempdir().unwrap();
    let m = rs(b.path(), &["import", dump.to_str().unwrap(), "--json"]).error("invalid_input");
    assert!(m.contains("symbolic link"), "{m}");
}

/// `run show` reads one kind's events or the last N; bad page sizes are
/// usage errors, whatever the spelling.
#[test]
fn run_show_by_kind_and_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = demo(d, &["--runs", "1"]);
    let run = run_ids(&v)[0].clone();
    let all = rs(d, &["run", "show", &run, "--json"]).ok();
    let events = all["events"].as_array().unwrap().clone();
    assert!(events.len() >= 3, "{all}");
    let kind = events[1]["kind"].as_str().unwrap().to_string();
    let want: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"] == json!(kind))
        .cloned()
        .collect();
    let v = rs(d, &["run", "show", &run, "--kind", &kind, "--json"]).ok();
    assert_eq!(v["events"], json!(want), "{v}");
    let v = rs(d, &["run", "show", &run, "--last", "2", "--json"]).ok();
    assert_eq!(v["events"], json!(events[events.len() - 2..]), "{v}");
    for bad in [
        vec!["run", "list", "--limit", "0"],
        vec!["run", "list", "--limit", "abc"],
        vec!["run", "show", &run, "--last", "0"],
    ] {
        let mut args = bad.clone();
        args.push("--json");
        let v = rs(d, &args).code(2);
        assert_eq!(v["error"]["kind"], json!("usage"), "{bad:?}: {v}");
    }
}

/// An agent driven from a shell: create, start, events (flags, a repeated
/// key, NDJSON from stdin), finish, metric; the contract's errors come
/// through as exit code 1 with their kind.
#[test]
fn shell_agent_writes_a_run_end_to_end() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rs(d, &["init", "--json"]).ok();
    let v = rs(
        d,
        &[
            "run",
            "create",
            "etl",
            "1",
            "--id",
            "r1",
            "--trigger",
            "cli",
            "--attr",
            "owner=team-a",
            "--attr",
            "n=3",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["run"]["status"], json!("pending"), "{v}");
    assert_eq!(
        v["run"]["attributes"],
        json!({"owner": "team-a", "n": 3}),
        "{v}"
    );
    rs(d, &["run", "start", "r1", "--json"]).ok();
    let append_k1 = || {
        rs(
            d,
            &[
                "event",
                "append",
                "r1",
                "--kind",
                "step",
                "--payload",
                r#"{"n":1}"#,
                "--key",
                "k1",
                "--json",
            ],
        )
        .ok()
    };
    let v = append_k1();
    assert_eq!(
        v["appended"],
        json!([{"seq": 1, "duplicate": false}]),
        "{v}"
    );
    let v = append_k1();
    assert_eq!(v["appended"], json!([{"seq": 1, "duplicate": true}]), "{v}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runstore"))
        .current_dir(d)
        .env_remove("RUNSTORE_CONFIG")
        .args(["event", "append", "r1", "--stdin", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"kind\":\"log\",\"payload\":{\"line\":\"a\"}}\n\n{\"kind\":\"log\",\"payload\":\"b\",\"idempotency_key\":\"k2\"}\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["appended"],
        json!([{"seq": 2, "duplicate": false}, {"seq": 3, "duplicate": false}]),
        "{v}"
    );
    // Metrics need a finished run.
    let m = rs(d, &["metrics", "record", "r1", "--json"]).error("invalid_input");
    assert!(m.contains("running"), "{m}");
    let v = rs(
        d,
        &[
            "run",
            "finish",
            "r1",
            "succeeded",
            "--summary",
            "rows=3",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["run"]["status"], json!("succeeded"), "{v}");
    assert_eq!(v["run"]["summaries"], json!({"rows": 3}), "{v}");
    rs(d, &["run", "finish", "r1", "failed", "--json"]).error("conflict");
    let v = rs(
        d,
        &[
            "metrics",
            "record",
            "r1",
            "--value",
            "rows=3",
            "--counter",
            "retries=1",
            "--duration-ms",
            "1500",
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["inserted"], json!(true), "{v}");
    assert_eq!(v["metric"]["duration_micros"], json!(1_500_000), "{v}");
    assert_eq!(v["metric"]["values"], json!({"rows": 3.0}), "{v}");
    // Again: recorded now, so not identical (another `recorded_at`); the
    // contract refuses a second, different metric of one run.
    rs(
        d,
        &[
            "metrics",
            "record",
            "r1",
            "--value",
            "rows=3",
            "--counter",
            "retries=1",
            "--duration-ms",
            "1500",
            "--json",
        ],
    )
    .error("conflict");
    let v = rs(d, &["run", "show", "r1", "--json"]).ok();
    assert_eq!(v["events"].as_array().unwrap().len(), 3, "{v}");
    let v = rs(d, &["pattern", "list", "--json"]).ok();
    assert_eq!(v, json!([]));
    let v = rs(d, &["metrics", "summary", "etl", "--json"]).ok();
    assert_eq!(v["executions"], json!(1), "{v}");
    // Bad input: a typed error, nothing written.
    rs(
        d,
        &["run", "create", "etl", "1", "--attr", "novalue", "--json"],
    )
    .error("invalid_input");
    rs(
        d,
        &[
            "event",
            "append",
            "r1",
            "--kind",
            "x",
            "--payload",
            "{not json",
            "--json",
        ],
    )
    .error("invalid_input");
    rs(d, &["run", "finish", "r1", "paused", "--json"]).error("invalid_input");
}

/// `run list` by version and trigger, with relative and date-only times
/// and a cursor to go on; `run show` by an unambiguous id prefix.
#[test]
fn run_list_filters_times_cursor_and_show_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (id, version, trigger) in [
        ("alpha-1", "1", "cron"),
        ("alpha-2", "2", "cron"),
        ("beta-1", "1", "hook"),
    ] {
        rs(
            d,
            &[
                "run",
                "create",
                "etl",
                version,
                "--id",
                id,
                "--trigger",
                trigger,
                "--json",
            ],
        )
        .ok();
    }
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let v = rs(d, &["run", "list", "--version", "1", "--json"]).ok();
    assert_eq!(ids(&v), vec!["alpha-1", "beta-1"], "{v}");
    let v = rs(d, &["run", "list", "--trigger", "hook", "--json"]).ok();
    assert_eq!(ids(&v), vec!["beta-1"], "{v}");
    let v = rs(d, &["run", "list", "--since", "1h", "--json"]).ok();
    assert_eq!(ids(&v).len(), 3, "{v}");
    let v = rs(d, &["run", "list", "--until", "2h", "--json"]).ok();
    assert_eq!(ids(&v).len(), 0, "{v}");
    let v = rs(
        d,
        &[
            "run",
            "list",
            "--since",
            "2000-01-01",
            "--until",
            "9999-01-01",
            "--json",
        ],
    )
    .ok();
    assert_eq!(ids(&v).len(), 3, "{v}");
    rs(d, &["run", "list", "--since", "yesterday", "--json"]).error("invalid_input");
    // Two at a time: the cursor printed on stderr continues the listing.
    let o = rs(d, &["run", "list", "--limit", "2", "--json"]);
    let first = o.code(0);
    let cursor = o.more_cursor();
    let rest = rs(
        d,
        &["run", "list", "--limit", "2", "--cursor", &cursor, "--json"],
    )
    .ok();
    let mut all = ids(&first);
    all.extend(ids(&rest));
    all.sort();
    assert_eq!(all, vec!["alpha-1", "alpha-2", "beta-1"]);
    // Prefixes.
    let v = rs(d, &["run", "show", "beta", "--json"]).ok();
    assert_eq!(v["run"]["id"], json!("beta-1"), "{v}");
    let m = rs(d, &["run", "show", "alph", "--json"]).error("invalid_input");
    assert!(m.contains("several"), "{m}");
    rs(d, &["run", "show", "gamma", "--json"]).error("not_found");
}

/// What a new user meets: the demo says where the data went and what to
/// try; a summary of an unknown workflow says so; an import into memory
/// warns; tiny inputs show no absurd rates.
#[test]
fn first_steps_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = rs(d, &["demo", "--runs", "1"]);
    o.prints(
        0,
        &[
            "stored in:",
            "runstore-data",
            "try next:",
            "runstore run list",
        ],
    );
    let o = rs(d, &["metrics", "summary", "no-such-workflow"]);
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains("no workflow no-such-workflow is stored"),
        "{}",
        o.stderr
    );
    // Export of a tiny store: no rate on the final lines (far too short to mean one).
    let o = rs(d, &["export", "--out", "dump"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for line in o.stderr.lines().filter(|l| l.contains(" records in ")) {
        assert!(!line.contains("/s"), "{line}");
    }
    write(
        d,
        "mem.yaml",
        "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n",
    );
    let o = rs(d, &["--config", "mem.yaml", "import", "dump", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("in memory"), "{}", o.stderr);
}

/// A damaged SQLite page does not stop `check`: the SQLite problems are
/// listed beside the file backend's report and the artifact hashes, and
/// stdout is one JSON document.
#[test]
fn check_goes_on_past_a_damaged_sqlite_page() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, &["--runs", "40"]);
    let db = d.join("runstore-data/runstore.db");
    // Fold the WAL in first, so the damage hits the database file itself.
    let o = rs(d, &["check", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 6, "database too small: {pages} pages");
    for p in (pages / 2)..(pages / 2 + 2) {
        for b in &mut bytes[p * page..(p + 1) * page] {
            *b = 0xa5;
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    let o = rs(d, &["check", "--json"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let v = o.json();
    if v.get("error").is_none() {
        assert_eq!(v["ok"], json!(false), "{v}");
        let backends = v["backends"].as_array().unwrap();
        let sqlite = backends
            .iter()
            .find(|b| b["type"] == json!("sqlite"))
            .unwrap();
        assert!(!sqlite["problems"].as_array().unwrap().is_empty(), "{v}");
        let file = backends
            .iter()
            .find(|b| b["type"] == json!("file"))
            .unwrap();
        assert_eq!(file["ok"], json!(true), "{v}");
        assert!(v["artifacts"]["checked"].as_u64().unwrap() > 0, "{v}");
    } else {
        panic!("check stopped instead of reporting: {v}");
    }
}

/// A dump of format version 1 (artifact bytes under their logical paths)
/// still imports.
#[test]
fn a_version_1_dump_still_imports() {
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("x.bin"), b"version one\n").unwrap();
    rs(
        a.path(),
        &[
            "artifact",
            "put",
            "run-x",
            "p",
            "dir/x.bin",
            "x.bin",
            "--json",
        ],
    )
    .ok();
    let dump = a.path().join("dump");
    rs(
        a.path(),
        &["export", "--out", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    let blob = find_file_with(&dump.join("blobs"), b"version one\n").unwrap();
    std::fs::create_dir_all(dump.join("artifacts/run-x/p/dir")).unwrap();
    std::fs::rename(&blob, dump.join("artifacts/run-x/p/dir/x.bin")).unwrap();
    std::fs::remove_dir_all(dump.join("blobs")).unwrap();
    let manifest = std::fs::read_to_string(dump.join("manifest.json")).unwrap();
    std::fs::write(
        dump.join("manifest.json"),
        manifest.replace("runstore-dump/2", "runstore-dump/1"),
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    let v = rs(b.path(), &["import", dump.to_str().unwrap(), "--json"]).ok();
    assert_eq!(v["imported"]["artifacts"]["inserted"], json!(1), "{v}");
    let out = b.path().join("back.bin");
    rs(
        b.path(),
        &[
            "artifact",
            "get",
            "run-x",
            "p",
            "dir/x.bin",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    assert_eq!(std::fs::read(&out).unwrap(), b"version one\n");
}
