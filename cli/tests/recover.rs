//! `migrate --skip-corrupt` and `recover`: a corrupt middle event line, a
//! tampered artifact and a truncated SQLite file each leave the way out
//! open: the copy completes, exactly the bad records are quarantined, and
//! the rest verifies equal.

use std::path::Path;

use serde_json::{Value, json};

mod support;

use support::*;

/// A file root `a` with runs r1 (4 events) and r2, and two artifacts of r1.
fn seeded(d: &Path) {
    write(d, "a.yaml", &all_on("{ type: file, path: a }"));
    rs_config(
        d,
        "a.yaml",
        &["run", "create", "etl", "1", "--id", "r1", "--json"],
    )
    .ok();
    for i in 1..=4 {
        let payload = format!("{{\"i\":{i}}}");
        let args = [
            "event",
            "append",
            "r1",
            "--kind",
            "step",
            "--payload",
            &payload,
            "--json",
        ];
        rs_config(d, "a.yaml", &args).ok();
    }
    rs_config(
        d,
        "a.yaml",
        &["run", "create", "etl", "1", "--id", "r2", "--json"],
    )
    .ok();
    for (name, text) in [
        ("good.txt", "good bytes"),
        ("bad.txt", "bytes to tamper with"),
    ] {
        let file = write(d, name, text);
        let args = [
            "artifact",
            "put",
            "r1",
            "build",
            name,
            file.to_str().unwrap(),
            "--json",
        ];
        rs_config(d, "a.yaml", &args).ok();
    }
}

/// Damages the second event line of r1.
fn damage_an_event(d: &Path) {
    damage_line(&d.join("a/logs/events/r1.ndjson"), 1);
}

fn notes(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn event_kinds(d: &Path, config: &str, run: &str) -> Vec<String> {
    let shown = rs_config(d, config, &["run", "show", run, "--json"]).ok();
    shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn migrate_skip_corrupt_quarantines_exactly_the_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seeded(d);
    damage_an_event(d);
    let bad = find_file_with(&d.join("a/artifacts"), b"bytes to tamper with").unwrap();
    flip_byte(&bad, 0, 1);
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );

    // Strict: the first bad record stops it.
    let strict = rs(
        d,
        &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--json"],
    );
    assert_ne!(strict.code, 0, "{}", strict.stdout);

    let q = d.join("q.ndjson");
    let args = [
        "migrate",
        "--from",
        "a.yaml",
        "--to",
        "b.yaml",
        "--skip-corrupt",
        "--quarantine",
        q.to_str().unwrap(),
        "--json",
    ];
    let v = rs(d, &args).ok();
    assert_eq!(v["complete"], json!(true), "{v}");
    assert_eq!(v["quarantined"], json!(1), "{v}");
    assert_eq!(v["repaired"], json!(1), "{v}");
    assert!(v["verify"]["excused"].as_u64().unwrap() > 0, "{v}");
    let notes = notes(&q);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n["concern"] == "runs" && n["key"] == "r1" && n["skipped"] == false)
    );
    assert!(
        notes.iter().any(|n| n["concern"] == "artifacts"
            && n["key"] == "r1/build/bad.txt"
            && n["skipped"] == true),
        "{notes:?}"
    );
    assert_eq!(
        event_kinds(d, "b.yaml", "r1"),
        ["step", "runstore.lost", "step", "step"]
    );
    // The good artifact and the other run came over.
    let got = rs_config(d, "b.yaml", &["artifact", "get", "r1", "build", "good.txt"]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout, "good bytes");
    rs_config(d, "b.yaml", &["run", "show", "r2", "--json"]).ok();
    let missing = rs_config(
        d,
        "b.yaml",
        &["artifact", "get", "r1", "build", "bad.txt", "--json"],
    );
    assert_ne!(missing.code, 0);
}

#[test]
fn recover_rebuilds_from_a_file_root_with_a_damaged_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seeded(d);
    damage_an_event(d);
    write(
        d,
        "db.yaml",
        &all_on("{ type: sqlite, path: db/runstore.db }"),
    );
    // Strict: the hole stops it, and says where.
    let strict = rs_config(d, "db.yaml", &["recover", "--from", "a", "--json"]);
    assert_ne!(strict.code, 0, "{}", strict.stdout);
    let q = d.join("q.ndjson");
    let args = [
        "recover",
        "--from",
        "a",
        "--skip-corrupt",
        "--quarantine",
        q.to_str().unwrap(),
        "--json",
    ];
    let v = rs_config(d, "db.yaml", &args).ok();
    assert_eq!(v["source"], json!("file-root"), "{v}");
    assert_eq!(v["quarantine"]["notes"], json!(1), "{v}");
    assert_eq!(
        event_kinds(d, "db.yaml", "r1"),
        ["step", "runstore.lost", "step", "step"]
    );
    let got = rs_config(d, "db.yaml", &["artifact", "get", "r1", "build", "bad.txt"]);
    assert_eq!(got.stdout, "bytes to tamper with");
}

#[test]
fn recover_moves_a_truncated_database_aside_and_rebuilds_it_from_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "db.yaml",
        &all_on("{ type: sqlite, path: db/runstore.db }"),
    );
    rs_config(d, "db.yaml", &["demo", "--runs", "4", "--json"]).ok();
    let dump = d.join("dump");
    rs_config(
        d,
        "db.yaml",
        &["export", "--out", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    let before = rs_config(d, "db.yaml", &["stats", "--json"]).ok();
    // Cut the database short, behind the store's back.
    let db = d.join("db/runstore.db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len() / 3]).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(d.join(format!("db/runstore.db{side}")));
    }
    let v = rs_config(
        d,
        "db.yaml",
        &["recover", "--from", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    assert_eq!(v["source"], json!("dump"), "{v}");
    let aside = v["moved_aside"][0].as_str().unwrap();
    assert!(aside.contains("runstore.db.corrupted."), "{v}");
    assert_eq!(
        std::fs::read(d.join(aside)).unwrap(),
        bytes[..bytes.len() / 3]
    );
    assert_eq!(rs_config(d, "db.yaml", &["stats", "--json"]).ok(), before);
    assert_eq!(
        rs_config(d, "db.yaml", &["check", "--json"]).ok()["ok"],
        json!(true)
    );
    // A second recovery finds a sound database and changes nothing.
    let again = rs_config(
        d,
        "db.yaml",
        &["recover", "--from", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    assert_eq!(again["moved_aside"], json!([]), "{again}");
    assert_eq!(again["imported"]["runs"]["inserted"], json!(0), "{again}");
}

#[test]
fn check_repair_says_what_it_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seeded(d);
    damage_an_event(d);
    let o = rs_config(d, "a.yaml", &["check", "--repair"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(
        o.stdout.contains("repaired: CorruptLine at "),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("runstore.lost tombstone"), "{}", o.stdout);
    assert!(
        o.stdout.contains("all good after the repairs above"),
        "{}",
        o.stdout
    );
    // Once repaired, the run still needs --skip-corrupt to be copied whole.
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );
    let strict = rs(
        d,
        &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--json"],
    );
    assert_ne!(strict.code, 0, "{}", strict.stdout);
    let v = rs(
        d,
        &[
            "migrate",
            "--from",
            "a.yaml",
            "--to",
            "b.yaml",
            "--skip-corrupt",
            "--json",
        ],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
    let q = v.json()["quarantine"].as_str().unwrap().to_string();
    let _ = std::fs::remove_file(d.join(q));
}

#[test]
fn recover_rebuilds_a_postgres_store_from_a_file_root() {
    let Some((_schema, pg)) = pg_schema("recover_rebuilds_a_postgres_store_from_a_file_root")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seeded(d);
    damage_an_event(d);
    write(d, "pg.yaml", &all_on(&pg));
    let args = ["recover", "--from", "a", "--skip-corrupt", "--json"];
    let v = rs_config(d, "pg.yaml", &args).ok();
    assert_eq!(v["migrated"]["runs"]["copied"], json!(2), "{v}");
    assert_eq!(
        event_kinds(d, "pg.yaml", "r1"),
        ["step", "runstore.lost", "step", "step"]
    );
    let got = rs_config(
        d,
        "pg.yaml",
        &["artifact", "get", "r1", "build", "good.txt"],
    );
    assert_eq!(got.stdout, "good bytes");
}
