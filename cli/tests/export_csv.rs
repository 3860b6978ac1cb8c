//! `runstore export --format csv`: runs, events and metrics as RFC 4180
//! CSV with a header row, read back here with a CSV parser.

use serde_json::{Value, json};

mod support;

use support::*;

fn read(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[test]
fn csv_export_of_runs_events_and_metrics() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    rs(d, &["demo", "--runs", "3", "--json"]).ok();
    // Text that needs quoting: a comma, a quote and a line break.
    rs(
        d,
        &[
            "run",
            "create",
            "etl",
            "1",
            "--id",
            "quoted",
            "--key",
            "k,1",
            "--attr",
            "note=say \"hi\", then\nleave",
            "--json",
        ],
    )
    .ok();
    rs(
        d,
        &[
            "event",
            "append",
            "quoted",
            "--kind",
            "note",
            "--payload",
            r#"{"text":"a, \"b\""}"#,
            "--json",
        ],
    )
    .ok();
    let stats = rs(d, &["stats", "--json"]).ok();
    let out = d.join("csv");
    let export = || {
        rs(
            d,
            &[
                "export",
                "--out",
                out.to_str().unwrap(),
                "--format",
                "csv",
                "--json",
            ],
        )
    };
    let v = export().ok();
    assert_eq!(v["exported"]["runs"], stats["runs"], "{v} {stats}");

    let (header, runs) = read(&out.join("runs.csv"));
    assert_eq!(
        header[..4],
        ["id", "workflow_id", "workflow_version", "status"]
    );
    assert_eq!(json!(runs.len()), stats["runs"]);
    let quoted = runs
        .iter()
        .find(|r| r[0] == "quoted")
        .expect("the quoted run");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(quoted[col("external_key")], "k,1");
    let attrs: Value = serde_json::from_str(&quoted[col("attributes")]).unwrap();
    assert_eq!(attrs["note"], json!("say \"hi\", then\nleave"));

    let (header, events) = read(&out.join("events.csv"));
    assert_eq!(
        header,
        ["run_id", "seq", "kind", "at", "idempotency_key", "payload"]
    );
    assert_eq!(json!(events.len()), v["exported"]["events"]);
    let note = events.iter().find(|e| e[0] == "quoted").unwrap();
    let payload: Value = serde_json::from_str(&note[5]).unwrap();
    assert_eq!(payload["text"], json!("a, \"b\""));

    let (header, metrics) = read(&out.join("metrics.csv"));
    assert_eq!(header[0], "run_id");
    assert_eq!(json!(metrics.len()), stats["metrics"]);
    // The files end lines with CRLF (RFC 4180).
    let raw = std::fs::read(out.join("metrics.csv")).unwrap();
    assert!(raw.windows(2).any(|w| w == b"\r\n"));
    // Into a folder that is not empty: refused.
    let v = export().code(1);
    assert_eq!(v["error"]["kind"], json!("invalid_input"), "{v}");
}
