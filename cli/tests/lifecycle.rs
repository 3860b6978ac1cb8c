//! `runstore prune` and the delete commands, run as real processes on the
//! embedded default (files and SQLite) in a temp folder.

use std::path::Path;

use serde_json::{Value, json};

mod support;

use support::*;

fn demo_ids(dir: &Path, runs: &str) -> Vec<String> {
    let v = rs(dir, &["demo", "--runs", runs, "--json"]).ok();
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn run_count(dir: &Path) -> usize {
    rs(dir, &["run", "list", "--json"])
        .ok()
        .as_array()
        .unwrap()
        .len()
}

fn total(report: &Value) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for r in report["rules"].as_array().unwrap() {
        t.0 += r["runs"].as_u64().unwrap();
        t.1 += r["events"].as_u64().unwrap();
        t.2 += r["metrics"].as_u64().unwrap();
        t.3 += r["artifacts"].as_u64().unwrap();
    }
    t
}

#[test]
fn prune_dry_run_then_prune_then_nothing_left_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_ids(d, "5");
    assert_eq!(run_count(d), 5);
    // Without a policy: invalid input naming the fix.
    let msg = rs(d, &["prune", "--json"]).error("invalid_input");
    assert!(msg.contains("--policy"), "{msg}");

    write(
        d,
        "policy.yaml",
        "retention:\n  rules:\n    - { outcome: any, keep_last: 2 }\n",
    );
    let dry = rs(
        d,
        &["prune", "--dry-run", "--policy", "policy.yaml", "--json"],
    )
    .ok();
    assert_eq!(dry["dry_run"], json!(true));
    assert_eq!(dry["examined"], json!(5));
    let (runs, events, metrics, artifacts) = total(&dry);
    assert_eq!(runs, 3);
    assert!(events > 0 && artifacts > 0);
    assert_eq!(metrics, 3);
    assert_eq!(run_count(d), 5, "a dry run changes nothing");

    let done = rs(d, &["prune", "--policy", "policy.yaml", "--json"]).ok();
    assert_eq!(total(&done), (runs, events, metrics, artifacts));
    assert_eq!(run_count(d), 2);
    let again = rs(d, &["prune", "--policy", "policy.yaml", "--json"]).ok();
    assert_eq!(total(&again).0, 0);

    // Human output: a table with a total row.
    rs(d, &["prune", "--policy", "policy.yaml"]).prints(0, &["rule", "total", "2 runs examined"]);
    // A bad policy file: its line and column.
    write(
        d,
        "bad.yaml",
        "retention:\n  rules:\n    - { outcome: any, max_age: 2w }\n",
    );
    let msg = rs(d, &["prune", "--policy", "bad.yaml", "--json"]).error("invalid_input");
    assert!(msg.contains("bad.yaml line 3"), "{msg}");
}

#[test]
fn prune_from_the_configuration_with_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "rs.yaml",
        "storage:\n  workflows: { type: file, path: ./src }\n  logs: { type: sqlite, path: ./src/rs.db }\n  metrics: { type: sqlite, path: ./src/rs.db }\n  artifacts: { type: file, path: ./src }\nretention:\n  artifacts: delete\n  rules:\n    - { outcome: any, keep_last: 1 }\n",
    );
    write(
        d,
        "archive.yaml",
        &all_on("{ type: file, path: ./archive }"),
    );
    let v = rs_config(d, "rs.yaml", &["demo", "--runs", "3", "--json"]).ok();
    let ids: Vec<String> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let report = rs_config(
        d,
        "rs.yaml",
        &["prune", "--archive-to", "archive.yaml", "--json"],
    )
    .ok();
    let archived: u64 = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["archived"].as_u64().unwrap())
        .sum();
    assert_eq!(archived, 2);
    let left = rs_config(d, "rs.yaml", &["run", "list", "--json"]).ok();
    assert_eq!(left.as_array().unwrap().len(), 1);
    let arch = rs_config(d, "archive.yaml", &["run", "list", "--json"]).ok();
    assert_eq!(arch.as_array().unwrap().len(), 2);
    // Every run is in exactly one place, with its events.
    for id in &ids {
        let here = rs_config(d, "rs.yaml", &["run", "show", id, "--json"]).code;
        let there = rs_config(d, "archive.yaml", &["run", "show", id, "--json"]);
        assert!(
            (here == 0) != (there.code == 0),
            "run {id} in both or neither"
        );
        if there.code == 0 {
            assert!(!there.json()["events"].as_array().unwrap().is_empty());
        }
    }
}

#[test]
fn prune_skip_corrupt_keeps_a_run_it_cannot_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "rs.yaml",
        &(all_on("{ type: file, path: ./src }")
            + "retention:\n  rules:\n    - { outcome: any, keep_last: 1 }\n"),
    );
    write(
        d,
        "archive.yaml",
        &all_on("{ type: sqlite, path: ./archive.db }"),
    );
    rs_config(d, "rs.yaml", &["demo", "--runs", "3", "--json"]).ok();
    let listed = rs_config(d, "rs.yaml", &["run", "list", "--json"]).ok();
    let oldest = listed.as_array().unwrap()[2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A damaged middle event line: the run reads with a hole.
    damage_line(&d.join(format!("src/logs/events/{oldest}.ndjson")), 1);

    // Strict: the archive refuses the run and nothing of its page is deleted.
    let strict = rs_config(
        d,
        "rs.yaml",
        &["prune", "--archive-to", "archive.yaml", "--json"],
    );
    assert_ne!(strict.code, 0, "{}", strict.stdout);
    assert_eq!(
        rs_config(d, "rs.yaml", &["run", "list", "--json"])
            .ok()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let q = d.join("q.ndjson");
    let args = [
        "prune",
        "--archive-to",
        "archive.yaml",
        "--skip-corrupt",
        "--quarantine",
        q.to_str().unwrap(),
        "--json",
    ];
    let report = rs_config(d, "rs.yaml", &args).ok();
    assert_eq!(report["quarantined"], json!(1), "{report}");
    let left = rs_config(d, "rs.yaml", &["run", "list", "--json"]).ok();
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "the damaged run is kept: {left:?}");
    assert!(left.contains(&oldest.as_str()));
    let note: Value =
        serde_json::from_str(std::fs::read_to_string(&q).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(note["key"], json!(oldest));
    assert_eq!(
        rs_config(d, "archive.yaml", &["run", "list", "--json"])
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn delete_commands_need_yes_and_report_absent_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = demo_ids(d, "3");
    // Without --yes: a usage error, nothing deleted.
    let o = rs(d, &["run", "delete", &ids[0], "--json"]);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert_eq!(run_count(d), 3);

    let v = rs(d, &["run", "delete", &ids[0], "--yes", "--json"]).ok();
    assert_eq!(v["deleted"], json!([ids[0]]));
    rs(d, &["run", "show", &ids[0], "--json"]).error("not_found");
    // Twice: observable, exit 1, reported absent.
    let v = rs(d, &["run", "delete", &ids[0], "--yes", "--json"]).code(1);
    assert_eq!(v["absent"], json!([ids[0]]));

    let v = rs(
        d,
        &[
            "metrics",
            "delete",
            &ids[1],
            "no-such-run",
            "--yes",
            "--json",
        ],
    )
    .code(1);
    assert_eq!(v["deleted"], json!([ids[1]]));
    assert_eq!(v["absent"], json!(["no-such-run"]));

    let listed = rs(d, &["artifact", "list", &ids[1], "--json"]).ok();
    let n = listed.as_array().unwrap().len() as u64;
    assert!(n > 0);
    let v = rs(
        d,
        &["artifact", "delete", &ids[1], "--all", "--yes", "--json"],
    )
    .ok();
    assert_eq!(v["artifacts"], json!(n));
    let listed = rs(d, &["artifact", "list", &ids[1], "--json"]).ok();
    assert!(listed.as_array().unwrap().is_empty());

    let listed = rs(d, &["artifact", "list", &ids[2], "--json"]).ok();
    let first = &listed[0]["key"];
    let (phase, path) = (
        first["phase"].as_str().unwrap().to_string(),
        first["path"].as_str().unwrap().to_string(),
    );
    rs(
        d,
        &[
            "artifact", "delete", &ids[2], &phase, &path, "--yes", "--json",
        ],
    )
    .ok();
    rs(
        d,
        &[
            "artifact", "delete", &ids[2], &phase, &path, "--yes", "--json",
        ],
    )
    .error("not_found");

    // Workflow versions: v1 is v2's parent, and v2 has runs.
    let msg = rs(
        d,
        &[
            "workflow",
            "delete",
            "demo-pipeline",
            "--version",
            "2",
            "--yes",
            "--json",
        ],
    )
    .error("conflict");
    assert!(msg.contains("run"), "{msg}");
    let msg = rs(
        d,
        &[
            "workflow",
            "delete",
            "demo-pipeline",
            "--version",
            "1",
            "--force",
            "--yes",
            "--json",
        ],
    )
    .error("conflict");
    assert!(msg.contains("parent"), "{msg}");
    rs(
        d,
        &[
            "workflow",
            "delete",
            "demo-pipeline",
            "--version",
            "2",
            "--force",
            "--yes",
            "--json",
        ],
    )
    .ok();
    rs(
        d,
        &[
            "workflow",
            "delete",
            "demo-pipeline",
            "--version",
            "1",
            "--force",
            "--yes",
            "--json",
        ],
    )
    .ok();
    rs(
        d,
        &[
            "workflow",
            "delete",
            "demo-pipeline",
            "--version",
            "1",
            "--force",
            "--yes",
            "--json",
        ],
    )
    .error("not_found");
}

/// A prune killed with SIGKILL in the middle, then run again: the result is
/// what one uninterrupted prune gives, nothing is half deleted (no events,
/// metric or artifact of a pruned run remains; every kept run is whole), and
/// the file backend's check finds nothing.
#[test]
fn prune_killed_midway_is_finished_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "rs.yaml", &all_on("{ type: file, path: ./data }"));
    write(
        d,
        "policy.yaml",
        "retention:\n  rules:\n    - { outcome: any, keep_last: 40 }\n",
    );
    rs_config(d, "rs.yaml", &["demo", "--runs", "160", "--json"]).ok();
    let before = rs_config(d, "rs.yaml", &["stats", "--json"]).ok();
    let runs = before["runs"].as_u64().unwrap();
    assert_eq!(runs, 160);
    let dry = rs_config(
        d,
        "rs.yaml",
        &["prune", "--dry-run", "--policy", "policy.yaml", "--json"],
    )
    .ok();
    let (doomed, _, doomed_metrics, doomed_artifacts) = total(&dry);
    assert_eq!(doomed, 120);

    // One run per page, so the kill lands between (or inside) deletes.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runstore"))
        .current_dir(d)
        .args([
            "--config",
            "rs.yaml",
            "prune",
            "--policy",
            "policy.yaml",
            "--batch-size",
            "1",
            "--json",
        ])
        .env_remove("RUNSTORE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the prune has visibly started deleting, then kill it.
    let events_dir = d.join("data").join("logs").join("events");
    let count = || std::fs::read_dir(&events_dir).unwrap().count() as u64;
    let start = std::time::Instant::now();
    while count() > runs - 5 && start.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let mid = count();
    eprintln!("killed ({status}) with {mid} events files left of {runs}");
    assert!(!status.success(), "the prune finished before the kill");
    assert!(mid < runs, "nothing was pruned before the kill");

    let second = rs_config(
        d,
        "rs.yaml",
        &["prune", "--policy", "policy.yaml", "--json"],
    )
    .ok();
    assert!(total(&second).0 <= doomed);
    let after = rs_config(d, "rs.yaml", &["stats", "--json"]).ok();
    assert_eq!(after["runs"].as_u64().unwrap(), runs - doomed);
    assert_eq!(
        after["metrics"].as_u64().unwrap(),
        before["metrics"].as_u64().unwrap() - doomed_metrics
    );
    assert_eq!(
        after["artifacts"].as_u64().unwrap(),
        before["artifacts"].as_u64().unwrap() - doomed_artifacts
    );
    // One events file per kept run: no events outlived their run.
    assert_eq!(count(), runs - doomed);
    let check = rs_config(d, "rs.yaml", &["check", "--json"]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    // A third prune has nothing to do.
    let third = rs_config(
        d,
        "rs.yaml",
        &["prune", "--policy", "policy.yaml", "--json"],
    )
    .ok();
    assert_eq!(total(&third).0, 0);
}
