//! `import --skip-corrupt`: a dump of a damaged store imports what can be
//! read; holes in a run's event numbering become `runstore.lost`
//! tombstones, unreadable records go to the quarantine report.

use serde_json::{Value, json};

mod support;

use support::*;

#[test]
fn a_damaged_dump_imports_with_tombstones_and_a_quarantine_report() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "a.yaml", &all_on("{ type: file, path: a }"));
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );
    rs_config(
        d,
        "a.yaml",
        &["run", "create", "etl", "1", "--id", "r1", "--json"],
    )
    .ok();
    for i in 1..=4 {
        let payload = format!("{{\"i\":{i}}}");
        rs_config(
            d,
            "a.yaml",
            &[
                "event",
                "append",
                "r1",
                "--kind",
                "step",
                "--payload",
                &payload,
                "--json",
            ],
        )
        .ok();
    }
    rs_config(
        d,
        "a.yaml",
        &["run", "create", "etl", "1", "--id", "r2", "--json"],
    )
    .ok();
    // A corrupt middle event line in the file root.
    damage_line(&d.join("a/logs/events/r1.ndjson"), 1);

    let dump = d.join("dump");
    rs_config(
        d,
        "a.yaml",
        &["export", "--out", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    // A garbage line in metrics.ndjson too.
    std::fs::write(dump.join("metrics.ndjson"), "not a metric\n").unwrap();

    // Strict: refused.
    let strict = rs_config(d, "b.yaml", &["import", dump.to_str().unwrap(), "--json"]);
    assert_eq!(strict.code, 1, "{}", strict.stdout);

    let report = d.join("q.ndjson");
    let v = rs_config(
        d,
        "b.yaml",
        &[
            "import",
            dump.to_str().unwrap(),
            "--skip-corrupt",
            "--quarantine",
            report.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["imported"]["runs"]["inserted"], json!(2), "{v}");
    assert_eq!(v["quarantine"]["skipped"]["metrics"], json!(1), "{v}");
    let shown = rs_config(d, "b.yaml", &["run", "show", "r1", "--json"]).ok();
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["step", "runstore.lost", "step", "step"], "{shown}");
    assert_eq!(shown["events"][1]["payload"]["seq"], json!(2));
    let location = shown["events"][1]["payload"]["location"].as_str().unwrap();
    assert!(location.starts_with("runs.ndjson line "), "{shown}");
    let notes: Vec<Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n["concern"] == "runs" && n["key"] == "r1" && n["skipped"] == false),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n["concern"] == "metrics" && n["location"] == "metrics.ndjson line 1"),
        "{notes:?}"
    );
    // Without --skip-corrupt, --quarantine is a usage error.
    let o = rs_config(
        d,
        "b.yaml",
        &[
            "import",
            dump.to_str().unwrap(),
            "--quarantine",
            "x",
            "--json",
        ],
    );
    assert_eq!(o.code, 2, "{}", o.stdout);
}

#[test]
fn export_skips_a_tampered_artifact_and_the_dump_stays_whole() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "a.yaml", &all_on("{ type: file, path: a }"));
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );
    std::fs::write(d.join("good.bin"), b"good bytes\n").unwrap();
    std::fs::write(d.join("bad.bin"), b"bytes to be tampered with\n").unwrap();
    for (path, file) in [("good.bin", "good.bin"), ("bad.bin", "bad.bin")] {
        rs_config(
            d,
            "a.yaml",
            &["artifact", "put", "r1", "p", path, file, "--json"],
        )
        .ok();
    }
    let stored = find_file_with(&d.join("a"), b"bytes to be tampered with\n").unwrap();
    flip_byte(&stored, 0, 0x01);

    let strict = d.join("strict");
    let o = rs_config(
        d,
        "a.yaml",
        &["export", "--out", strict.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        !strict.join("manifest.json").exists(),
        "a failed export has no manifest"
    );

    let dump = d.join("dump");
    let report = d.join("q.ndjson");
    let v = rs_config(
        d,
        "a.yaml",
        &[
            "export",
            "--out",
            dump.to_str().unwrap(),
            "--skip-corrupt",
            "--quarantine",
            report.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    assert_eq!(v["exported"]["artifacts"], json!(1), "{v}");
    assert_eq!(v["quarantine"]["skipped"]["artifacts"], json!(1), "{v}");
    let notes = std::fs::read_to_string(&report).unwrap();
    assert!(notes.contains("r1/p/bad.bin"), "{notes}");
    // The dump is whole: it imports strictly.
    let v = rs_config(d, "b.yaml", &["import", dump.to_str().unwrap(), "--json"]).ok();
    assert_eq!(v["imported"]["artifacts"]["inserted"], json!(1), "{v}");
}
