//! `runstore migrate` and `runstore verify` as real processes: files ->
//! SQLite, idempotency, conflicts, a tampered artifact, a dry run, usage
//! errors, and a migration killed with SIGKILL then resumed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod support;

use support::*;

/// `a.yaml`: every concern on the file backend under `a/`; `b.yaml`: every
/// concern in the SQLite database `b/runstore.db`.
fn configs(d: &Path) {
    write(
        d,
        "a.yaml",
        &all_on("{ type: file, path: a, durability: none }"),
    );
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );
}

const MIGRATE: &[&str] = &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--json"];
const VERIFY: &[&str] = &["verify", "--from", "a.yaml", "--to", "b.yaml", "--json"];

/// The source: demo runs (every concern) and one distinctive artifact.
const ARTIFACT: &[u8] = b"a distinctive artifact body for the migration test 9876\n";

fn seed_source(d: &Path) {
    let v = rs_config(d, "a.yaml", &["demo", "--runs", "3", "--json"]);
    v.code(0);
    std::fs::write(d.join("x.bin"), ARTIFACT).unwrap();
    rs_config(
        d,
        "a.yaml",
        &["artifact", "put", "run-x", "p", "x.bin", "x.bin", "--json"],
    )
    .code(0);
}

/// A temp folder with [`configs`] and the source seeded.
fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    configs(dir.path());
    seed_source(dir.path());
    dir
}

fn stats(d: &Path, config: &str) -> Value {
    rs_config(d, config, &["stats", "--json"]).code(0)
}

/// Asserts `read == copied + unchanged + updated + conflicts` for every
/// concern.
fn assert_counts_add_up(report: &Value) {
    for c in [
        "workflows",
        "runs",
        "events",
        "metrics",
        "patterns",
        "artifacts",
    ] {
        let n = |k: &str| report[c][k].as_u64().unwrap();
        assert_eq!(
            n("read"),
            n("copied") + n("unchanged") + n("updated") + n("conflicts"),
            "{c}: {report}"
        );
    }
}

#[test]
fn files_to_sqlite_then_verify_equal_then_nothing_copied_again() {
    let dir = seeded();
    let d = dir.path();
    let source = stats(d, "a.yaml");

    let r = rs(d, MIGRATE).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["dry_run"], json!(false));
    assert_eq!(r["workflows"]["copied"], json!(2), "{r}");
    assert_eq!(r["runs"]["copied"], source["runs"], "{r}");
    assert_eq!(r["metrics"]["copied"], source["metrics"], "{r}");
    assert_eq!(r["patterns"]["copied"], source["patterns"], "{r}");
    assert_eq!(r["artifacts"]["copied"], source["artifacts"], "{r}");
    assert_eq!(r["artifact_bytes_copied"], source["artifact_bytes"], "{r}");
    assert!(r["events"]["copied"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["conflicts"], json!([]));
    assert_eq!(r["verify"]["difference_count"], json!(0), "{r}");
    assert_counts_add_up(&r);
    // The destination now counts the same.
    assert_eq!(stats(d, "b.yaml"), source);

    let v = rs(
        d,
        &with(VERIFY, &["--deep"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .code(0);
    assert_eq!(v["equal"], json!(true), "{v}");
    assert_eq!(v["deep"], json!(true));
    assert_eq!(v["runs"]["a"], source["runs"]);
    assert_eq!(v["runs"]["b"], source["runs"]);
    assert_eq!(v["artifacts"]["equal"], source["artifacts"]);
    assert_eq!(v["runs"]["digest_a"], v["runs"]["digest_b"]);
    assert_eq!(v["differences"], json!([]));

    // Again: nothing copied, everything unchanged, still complete.
    let r = rs_owned(d, &with(MIGRATE, &["--deep"])).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["verify"]["deep"], json!(true), "{r}");
    for c in [
        "workflows",
        "runs",
        "events",
        "metrics",
        "patterns",
        "artifacts",
    ] {
        assert_eq!(r[c]["copied"], json!(0), "{c}: {r}");
        assert_eq!(r[c]["read"], r[c]["unchanged"], "{c}: {r}");
    }
    assert_eq!(r["artifact_bytes_copied"], json!(0));
    assert_eq!(stats(d, "b.yaml"), source);

    // Human output names the verdict; progress goes to stderr as plain
    // lines (not a terminal), never to stdout.
    let o = rs(d, &["migrate", "--from", "a.yaml", "--to", "b.yaml"]);
    o.prints(0, &["checked while copying", "migration complete"])
        .logs(&["migrate runs: 3 records"]);
    let o = rs(
        d,
        &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--deep"],
    );
    o.prints(0, &["verification (source = a", "migration complete"])
        .logs(&["migrate runs: 3 records", "verify runs: "]);
    let o = rs(d, &["verify", "--from", "a.yaml", "--to", "b.yaml"]);
    o.prints(0, &["equal"]);
    // --json: stderr stays empty for scripts.
    let o = rs(d, MIGRATE);
    assert_eq!(o.stderr, "", "{}", o.stderr);
}

#[test]
fn dry_run_writes_nothing_and_says_what_would_be_copied() {
    let dir = seeded();
    let d = dir.path();
    let source = stats(d, "a.yaml");
    // Work to do: not complete, exit 1.
    let r = rs_owned(d, &with(MIGRATE, &["--dry-run"])).code(1);
    assert_eq!(r["dry_run"], json!(true));
    assert_eq!(r["complete"], json!(false));
    assert_eq!(r["runs"]["copied"], source["runs"], "{r}");
    assert_eq!(r["artifacts"]["copied"], source["artifacts"], "{r}");
    assert_eq!(r["verify"], json!(null));
    let dest = stats(d, "b.yaml");
    assert_eq!(dest["runs"], json!(0), "{dest}");
    assert_eq!(dest["workflow_versions"], json!(0), "{dest}");
    assert_eq!(dest["artifacts"], json!(0), "{dest}");
    // After the migration, a dry run finds nothing to do: exit 0.
    rs(d, MIGRATE).code(0);
    let r = rs_owned(d, &with(MIGRATE, &["--dry-run"])).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["runs"]["copied"], json!(0));
}

/// `workflow get demo-pipeline --version 1` in the destination.
fn demo_pipeline_v1(d: &Path) -> Value {
    rs_config(
        d,
        "b.yaml",
        &[
            "workflow",
            "get",
            "demo-pipeline",
            "--version",
            "1",
            "--json",
        ],
    )
    .code(0)
}

#[test]
fn a_conflicting_destination_is_reported_and_left_untouched() {
    let dir = seeded();
    let d = dir.path();
    // The destination holds demo-pipeline v1 with another body, and the
    // artifact run-x/p/x.bin with other bytes.
    write(
        d,
        "other.yaml",
        "id: demo-pipeline\nversion: 1\nbody: {steps: [something, else]}\n",
    );
    rs_config(d, "b.yaml", &["workflow", "put", "other.yaml", "--json"]).code(0);
    std::fs::write(d.join("y.bin"), b"other bytes").unwrap();
    rs_config(
        d,
        "b.yaml",
        &["artifact", "put", "run-x", "p", "x.bin", "y.bin", "--json"],
    )
    .code(0);
    let before_wf = demo_pipeline_v1(d);

    // --on-conflict fail: an error of kind conflict, nothing written (the
    // workflows come first and their batch holds the conflict).
    let o = rs_owned(d, &with(MIGRATE, &["--on-conflict", "fail"]));
    let v = o.code(1);
    assert_eq!(v["error"]["kind"], json!("conflict"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("demo-pipeline"),
        "{v}"
    );
    assert_eq!(stats(d, "b.yaml")["runs"], json!(0));

    // Default (report): every conflict listed, the rest copied, exit 1.
    let r = rs(d, MIGRATE).code(1);
    assert_eq!(r["complete"], json!(false), "{r}");
    assert_eq!(r["workflows"]["conflicts"], json!(1), "{r}");
    assert_eq!(r["artifacts"]["conflicts"], json!(1), "{r}");
    let conflicts = r["conflicts"].as_array().unwrap();
    let keys: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| (c["concern"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    assert!(keys.contains(&("workflows", "demo-pipeline@1")), "{r}");
    assert!(keys.contains(&("artifacts", "run-x/p/x.bin")), "{r}");
    // The verification at the end says they differ.
    assert!(
        r["verify"]["difference_count"].as_u64().unwrap() >= 2,
        "{r}"
    );
    assert_counts_add_up(&r);

    // Untouched: the destination's own version and bytes are still there.
    let after_wf = demo_pipeline_v1(d);
    assert_eq!(after_wf, before_wf);
    assert_eq!(after_wf["body"]["steps"][0], json!("something"));
    let out = d.join("got.bin");
    rs_config(
        d,
        "b.yaml",
        &[
            "artifact",
            "get",
            "run-x",
            "p",
            "x.bin",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .code(0);
    assert_eq!(std::fs::read(&out).unwrap(), b"other bytes");

    // verify lists the same records and exits 1.
    let v = rs(d, VERIFY).code(1);
    assert_eq!(v["equal"], json!(false));
    let diffs = v["differences"].as_array().unwrap();
    assert!(
        diffs
            .iter()
            .any(|x| x["concern"] == json!("artifacts") && x["key"] == json!("run-x/p/x.bin")),
        "{v}"
    );
    // The human report names them too.
    let o = rs(d, &["migrate", "--from", "a.yaml", "--to", "b.yaml"]);
    o.prints(1, &["demo-pipeline@1", "NOT complete"]);
}

#[test]
fn verify_deep_detects_a_changed_artifact_byte() {
    let dir = seeded();
    let d = dir.path();
    rs(d, MIGRATE).code(0);
    rs_owned(d, &with(VERIFY, &["--deep"])).code(0);

    let stored = find_file_with(&d.join("a"), ARTIFACT)
        .expect("the file backend keeps artifact bytes as plain files");
    flip_byte(&stored, 3, 0x01);

    let v = rs_owned(d, &with(VERIFY, &["--deep"])).code(1);
    assert_eq!(v["equal"], json!(false), "{v}");
    assert_eq!(v["deep"], json!(true));
    assert_eq!(v["difference_count"], json!(1), "{v}");
    let diff = &v["differences"][0];
    assert_eq!(diff["concern"], json!("artifacts"), "{v}");
    assert_eq!(diff["key"], json!("run-x/p/x.bin"), "{v}");
    assert_eq!(diff["kind"], json!("different"), "{v}");
    // Everything else still matches.
    assert_eq!(v["runs"]["digest_a"], v["runs"]["digest_b"]);
    let o = rs(
        d,
        &["verify", "--from", "a.yaml", "--to", "b.yaml", "--deep"],
    );
    o.prints(1, &["run-x/p/x.bin", "differ"]);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configs(d);
    // `migrate --from a.yaml --to b.yaml` with one bad option.
    let bad = |option: &'static str, value: &'static str| {
        vec![
            "migrate", "--from", "a.yaml", "--to", "b.yaml", option, value, "--json",
        ]
    };
    for args in [
        vec!["migrate", "--from", "a.yaml", "--json"],
        bad("--batch-size", "0"),
        bad("--batch-size", "x"),
        bad("--on-conflict", "overwrite"),
        bad("--writers", "0"),
        bad("--writers", "9"),
        vec!["migrate", "--from", "a.yaml", "--to", "./a.yaml", "--json"],
        vec!["verify", "--to", "b.yaml", "--json"],
        vec!["verify", "--from", "b.yaml", "--to", "b.yaml", "--json"],
    ] {
        let v = rs(d, &args).code(2);
        assert_eq!(v["error"]["kind"], json!("usage"), "{args:?}: {v}");
    }
    // Nothing was opened, so nothing was created.
    assert!(!d.join("a").exists());
    assert!(!d.join("b").exists());
    // A missing configuration file is an ordinary error (exit 1).
    let v = rs(
        d,
        &["verify", "--from", "nope.yaml", "--to", "b.yaml", "--json"],
    )
    .code(1);
    assert!(v["error"]["kind"].is_string(), "{v}");
}

/// A dump (`runstore export` format) of `runs` runs with three events each.
fn bulk_dump(dir: &Path, runs: usize) {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("workflows.ndjson"),
        "{\"id\":\"bulk\",\"version\":1,\"body\":{\"steps\":[\"a\",\"b\",\"c\"]},\"created_at\":\"2026-01-01T00:00:00.000000Z\"}\n",
    )
    .unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("runs.ndjson")).unwrap());
    for i in 0..runs {
        let id = format!("bulk-{i:06}");
        let events: Vec<Value> = (1..=3)
            .map(|seq| {
                json!({"run_id": id, "seq": seq, "kind": "step.finished",
                       "at": format!("2026-01-01T00:00:0{seq}.000000Z"),
                       "payload": {"i": i, "step": seq}, "idempotency_key": null})
            })
            .collect();
        let line = json!({
            "run": {"id": id, "workflow_id": "bulk", "workflow_version": 1,
                    "status": "succeeded", "trigger": "manual",
                    "started_at": "2026-01-01T00:00:00.000000Z",
                    "ended_at": "2026-01-01T00:01:00.000000Z",
                    "attributes": {"n": i}, "summaries": {}},
            "events": events,
        });
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
    // Format 1 needs no file digests; the counts are what the files hold.
    let manifest = json!({"format": "runstore-dump/1", "counts": {
        "workflows": 1, "runs": runs, "events": runs * 3,
        "metrics": 0, "patterns": 0, "artifacts": 0, "artifact_bytes": 0}});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

#[test]
fn killed_with_sigkill_part_way_then_resumed_is_equal() {
    const RUNS: u64 = 3000;
    let dir = seeded();
    let d = dir.path();
    bulk_dump(&d.join("dump"), RUNS as usize);
    rs_config(d, "a.yaml", &["import", "dump", "--json"]).code(0);
    let source = stats(d, "a.yaml");
    let total = source["runs"].as_u64().unwrap();
    assert_eq!(total, RUNS + 3);

    let mut child = Command::new(env!("CARGO_BIN_EXE_runstore"))
        .current_dir(d)
        .args([
            "migrate",
            "--from",
            "a.yaml",
            "--to",
            "b.yaml",
            "--batch-size",
            "50",
        ])
        .env_remove("RUNSTORE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first plain progress line of the runs, then SIGKILL.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("migrate runs: ") {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // The first line comes at 1,000 runs or just past it: with more than one
    // writer, another batch can finish between the count and the line.
    let first = seen
        .lines()
        .find_map(|l| l.strip_prefix("migrate runs: "))
        .and_then(|rest| rest.split_once(&format!("/{total} records")))
        .and_then(|(done, _)| done.parse::<u64>().ok());
    assert!(
        first.is_some_and(|n| (1000..total).contains(&n)),
        "{first:?}\n{seen}"
    );
    // Killed, not finished.
    assert_eq!(status.code(), None, "{status:?}\n{seen}");
    let part = stats(d, "b.yaml")["runs"].as_u64().unwrap();
    assert!(
        part > 0 && part < total,
        "{part} of {total} copied before the kill"
    );
    // Part way is not equal.
    rs(d, VERIFY).code(1);

    // Resume, with four writers (a whole verification at the end, so the
    // runs are not checked one batch at a time): the runs already there are
    // skipped, the rest copied.
    let r = rs_owned(
        d,
        &with(MIGRATE, &["--batch-size", "50", "--writers", "4", "--deep"]),
    )
    .code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    let copied = r["runs"]["copied"].as_u64().unwrap();
    let unchanged = r["runs"]["unchanged"].as_u64().unwrap();
    assert_eq!(unchanged, part, "{r}");
    assert_eq!(copied + unchanged, total, "{r}");
    assert_eq!(r["runs_resumed"], json!(0), "{r}");
    let v = rs(d, VERIFY).code(0);
    assert_eq!(v["equal"], json!(true), "{v}");
    assert_eq!(v["runs"]["equal"], json!(total));
    assert_eq!(v["events"]["a"], v["events"]["b"]);
    assert_eq!(stats(d, "b.yaml"), source);
}

#[test]
fn verify_detects_a_changed_event_payload_and_a_missing_artifact() {
    let dir = seeded();
    let d = dir.path();
    // c.yaml: a copy of the source made through a dump, with one event
    // payload changed and one artifact left out.
    write(
        d,
        "c.yaml",
        &all_on("{ type: sqlite, path: c/runstore.db }"),
    );
    rs(
        d,
        &["--config", "a.yaml", "export", "--out", "dump", "--json"],
    )
    .code(0);
    let runs_file = d.join("dump/runs.ndjson");
    let runs = std::fs::read_to_string(&runs_file).unwrap();
    let mut lines: Vec<Value> = runs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changed_run = lines[0]["run"]["id"].as_str().unwrap().to_string();
    lines[0]["events"][0]["payload"] = json!({"tampered": true});
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&runs_file, text).unwrap();
    let arts_file = d.join("dump/artifacts.ndjson");
    let arts = std::fs::read_to_string(&arts_file).unwrap();
    let kept: String = arts
        .lines()
        .filter(|l| !l.contains("\"run-x\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(kept.lines().count() + 1, arts.lines().count());
    std::fs::write(&arts_file, kept).unwrap();
    // The dump no longer matches its manifest: imported as a damaged one.
    rs_config(
        d,
        "c.yaml",
        &[
            "import",
            "dump",
            "--skip-corrupt",
            "--quarantine",
            "q.ndjson",
            "--json",
        ],
    )
    .code(0);

    let v = rs(
        d,
        &["verify", "--from", "a.yaml", "--to", "c.yaml", "--json"],
    )
    .code(1);
    assert_eq!(v["equal"], json!(false), "{v}");
    assert_eq!(v["difference_count"], json!(2), "{v}");
    let diffs = v["differences"].as_array().unwrap();
    assert!(
        diffs.iter().any(|x| x["concern"] == json!("events")
            && x["key"] == json!(format!("{changed_run}#1"))
            && x["kind"] == json!("different")),
        "{v}"
    );
    assert!(
        diffs.iter().any(|x| x["concern"] == json!("artifacts")
            && x["key"] == json!("run-x/p/x.bin")
            && x["kind"] == json!("only_in_a")),
        "{v}"
    );
    assert_eq!(
        v["artifacts"]["a"].as_u64().unwrap(),
        v["artifacts"]["b"].as_u64().unwrap() + 1
    );
    assert_ne!(v["events"]["digest_a"], v["events"]["digest_b"]);
    assert_eq!(v["runs"]["digest_a"], v["runs"]["digest_b"], "{v}");
}

/// files -> Postgres (a fresh schema of the test server), verify equal, then
/// a run changed behind the store's back: verify exits 1 and names it.
#[test]
fn files_to_postgres_then_verify_finds_a_changed_run() {
    let Some((schema, pg)) =
        pg_schema("runstore-cli files_to_postgres_then_verify_finds_a_changed_run")
    else {
        return;
    };
    let dir = seeded();
    let d = dir.path();
    write(d, "pg.yaml", &all_on(&pg));
    let source = stats(d, "a.yaml");
    const TO_PG: &[&str] = &["--from", "a.yaml", "--to", "pg.yaml", "--json"];

    let r = rs_owned(d, &with(&["migrate"], TO_PG)).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["runs"]["copied"], source["runs"], "{r}");
    assert_eq!(r["artifacts"]["copied"], source["artifacts"], "{r}");
    assert_eq!(r["verify"]["difference_count"], json!(0), "{r}");
    assert_eq!(stats(d, "pg.yaml"), source);
    let v = rs_owned(d, &with(&["verify", "--deep"], TO_PG)).code(0);
    assert_eq!(v["equal"], json!(true), "{v}");
    assert_eq!(v["differences"], json!([]), "{v}");

    // Change one run's trigger in the destination, behind the store's back.
    let config = schema.config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let changed: String = rt.block_on(async {
        let client = runstore_postgres::testing::raw_client(&config.url)
            .await
            .unwrap();
        let sql = format!(
            "UPDATE \"{}\".runs SET trigger = $1 WHERE id = (SELECT min(id) FROM \"{}\".runs) RETURNING id",
            config.schema, config.schema
        );
        client.query_one(&sql, &[&"changed"]).await.unwrap().get(0)
    });

    let v = rs_owned(d, &with(&["verify"], TO_PG)).code(1);
    assert_eq!(v["equal"], json!(false), "{v}");
    assert_eq!(v["difference_count"], json!(1), "{v}");
    let diff = &v["differences"][0];
    assert_eq!(diff["concern"], json!("runs"), "{v}");
    assert_eq!(diff["key"], json!(changed), "{v}");
    assert_eq!(diff["kind"], json!("different"), "{v}");
    assert_ne!(v["runs"]["digest_a"], v["runs"]["digest_b"], "{v}");
    let o = rs(d, &["verify", "--from", "a.yaml", "--to", "pg.yaml"]);
    o.prints(1, &[&changed]);
}

/// The production layout (workflows on files, logs and metrics on Postgres,
/// artifacts on S3): files -> production, verify deep, then back into a
/// fresh file root, verify deep again; the artifact bytes made the trip.
#[test]
fn files_to_production_layout_with_s3_and_back_verified() {
    let Some((_schema, pg)) =
        pg_schema("runstore-cli files_to_production_layout_with_s3_and_back_verified")
    else {
        return;
    };
    let Some(server) = runstore_s3::testing::server_or_skip("runstore-cli migrate to s3 and back")
    else {
        return;
    };
    let s3 = runstore_s3::testing::test_config(&server);
    let dir = seeded();
    let d = dir.path();
    write(
        d,
        "prod.yaml",
        &format!(
            "storage:\n  workflows: {{ type: file, path: prod }}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {{ type: s3, bucket: {}, prefix: {}, endpoint: \"{}\", access_key_id: \"${{KEY}}\", secret_access_key: \"${{KEY}}\" }}\n",
            s3.bucket,
            s3.prefix,
            server.endpoint(),
        ),
    );
    write(d, "back.yaml", &all_on("{ type: file, path: back }"));
    let source = stats_with_key(d, "a.yaml");

    let there = ["--from", "a.yaml", "--to", "prod.yaml", "--json"];
    let r = rs_key(d, &with(&["migrate", "--deep"], &there)).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["artifacts"]["copied"], source["artifacts"], "{r}");
    assert_eq!(r["artifact_bytes_copied"], source["artifact_bytes"], "{r}");
    assert_eq!(r["verify"]["difference_count"], json!(0), "{r}");
    assert_eq!(stats_with_key(d, "prod.yaml"), source);

    let back = ["--from", "prod.yaml", "--to", "back.yaml", "--json"];
    let r = rs_key(d, &with(&["migrate", "--deep"], &back)).code(0);
    assert_eq!(r["complete"], json!(true), "{r}");
    assert_eq!(r["verify"]["difference_count"], json!(0), "{r}");
    let v = rs_key(
        d,
        &with(
            &["verify", "--deep"],
            &["--from", "a.yaml", "--to", "back.yaml", "--json"],
        ),
    )
    .code(0);
    assert_eq!(v["equal"], json!(true), "{v}");
    // The distinctive artifact came back byte for byte.
    rs_key(
        d,
        &with(
            &["--config", "back.yaml"],
            &[
                "artifact", "get", "run-x", "p", "x.bin", "--out", "back.bin", "--json",
            ],
        ),
    )
    .code(0);
    assert_eq!(std::fs::read(d.join("back.bin")).unwrap(), ARTIFACT);
}

/// `runstore` with the S3 test credentials in `KEY`, as `${KEY}` in the YAML
/// asks (secrets stay out of the file).
fn rs_key(d: &Path, args: &[String]) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in(d, &args, &[("KEY", runstore_s3::testing::TEST_KEY)])
}

fn stats_with_key(d: &Path, config: &str) -> Value {
    rs_key(d, &with(&["--config", config], &["stats", "--json"])).code(0)
}

/// A source whose root or database file does not exist (a typo) is refused
/// and nothing is created there; two configurations naming one store are
/// refused as well.
#[test]
fn a_missing_source_or_the_same_store_twice_is_refused_and_nothing_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configs(d);
    write(d, "typo.yaml", &all_on("{ type: file, path: a-typo }"));
    write(
        d,
        "typo-db.yaml",
        &all_on("{ type: sqlite, path: no/such.db }"),
    );
    for from in ["typo.yaml", "typo-db.yaml"] {
        for cmd in ["migrate", "verify"] {
            let v = rs(d, &[cmd, "--from", from, "--to", "b.yaml", "--json"]).code(1);
            assert_eq!(v["error"]["kind"], json!("not_found"), "{cmd} {from}: {v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(from),
                "{v}"
            );
        }
    }
    assert!(!d.join("a-typo").exists());
    assert!(!d.join("no").exists());
    assert!(!d.join("b").exists());

    // The same root under two spellings, in two files.
    seed_source(d);
    write(d, "same.yaml", &all_on("{ type: file, path: ./a/../a }"));
    let v = rs(
        d,
        &["migrate", "--from", "a.yaml", "--to", "same.yaml", "--json"],
    )
    .code(1);
    assert_eq!(v["error"]["kind"], json!("invalid_input"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("same store"),
        "{v}"
    );
}

#[test]
fn a_pass_since_the_last_watermark_copies_the_new_runs() {
    let dir = seeded();
    let d = dir.path();
    let first = rs(d, MIGRATE).code(0);
    let since = first["next_since"].as_str().unwrap().to_string();
    assert_eq!(first["since"], json!(null), "{first}");
    // The source moves on: two more demo runs.
    rs_config(d, "a.yaml", &["demo", "--runs", "2", "--json"]).code(0);

    let second = rs_owned(d, &with(MIGRATE, &["--since", &since])).code(0);
    assert_eq!(second["complete"], json!(true), "{second}");
    assert_eq!(second["since"], json!(since), "{second}");
    // The watermark lies a minute before the first pass, so the runs of
    // the seed are read again (unchanged); what the watermark leaves out
    // is tested in the library (runstore/tests/migrate_live.rs).
    assert_eq!(second["runs"]["copied"], json!(2), "{second}");
    assert_eq!(second["verify"]["since"], json!(since), "{second}");
    assert_eq!(
        second["verify"]["runs"]["a"], second["runs"]["read"],
        "{second}"
    );
    assert_counts_add_up(&second);
    // Everything is there: a whole verification is equal.
    rs(d, VERIFY).code(0);
    let v = rs_owned(d, &with(VERIFY, &["--since", &since])).code(0);
    assert_eq!(v["since"], json!(since), "{v}");
    assert_eq!(v["runs"]["b"], second["runs"]["read"], "{v}");

    // The human report names the window and the next watermark.
    let o = rs(
        d,
        &[
            "migrate", "--from", "a.yaml", "--to", "b.yaml", "--since", &since,
        ],
    );
    o.prints(
        0,
        &[
            "a pass since",
            "next pass: --since ",
            "everything that changed in the source since then",
        ],
    );
    // A bad time is a usage error naming it.
    let bad = rs_owned(d, &with(MIGRATE, &["--since", "yesterday-ish"]));
    assert_ne!(bad.code, 0);
    assert!(
        bad.stdout.contains("since") || bad.stderr.contains("since"),
        "{} {}",
        bad.stdout,
        bad.stderr
    );
}

#[test]
fn a_sqlite_source_is_read_without_a_byte_changing() {
    let dir = seeded();
    let d = dir.path();
    // files -> SQLite, then SQLite (now the source) -> files.
    rs(d, MIGRATE).code(0);
    write(
        d,
        "c.yaml",
        &all_on("{ type: file, path: c, durability: none }"),
    );
    let db = d.join("b/runstore.db");
    // An abandoned staged blob: any read-write open removes it as
    // housekeeping, so it stays only if the source is opened read-only.
    // The checkpoint leaves every page in the main file, so the bytes
    // compared below are the whole database.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO artifact_blobs (id, staged_at, complete) VALUES (424242, 0, 0)",
        [],
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    let report = rs(
        d,
        &["migrate", "--from", "b.yaml", "--to", "c.yaml", "--json"],
    )
    .code(0);
    assert_counts_add_up(&report);
    assert!(std::fs::read(&db).unwrap() == before, "the source changed");
    assert_eq!(stats(d, "c.yaml"), stats(d, "a.yaml"));
}
