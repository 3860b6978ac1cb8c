//! `runstore outbox status` and `runstore outbox drain`, over an outbox
//! folder holding what a process deferred while its database was down.

use serde_json::json;

mod support;

use support::*;

const CONFIG: &str = "storage:\n  workflows: { type: file, path: data }\n  logs: { type: sqlite, path: data/runstore.db, outbox: { path: outbox } }\n  metrics: { type: sqlite, path: data/runstore.db, outbox: { path: outbox } }\n  artifacts: { type: file, path: data }\n";

#[test]
fn status_and_drain_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "rs.yaml", CONFIG);
    rs_config(
        d,
        "rs.yaml",
        &["run", "create", "etl", "1", "--id", "r1", "--json"],
    )
    .ok();
    let v = rs_config(d, "rs.yaml", &["outbox", "status", "--json"]).ok();
    assert_eq!(v[0]["pending"], json!({"logs": 0, "metrics": 0}), "{v}");
    // Two appends a process deferred (the journal's documented format).
    let line = |n: u32| {
        format!(
            "{{\"entry\":\"0190-e{n}\",\"at\":\"2026-12-01T10:00:00Z\",\"op\":\"append_events\",\"run_id\":\"r1\",\"events\":[{{\"kind\":\"step\",\"at\":\"2026-12-01T10:00:00Z\",\"payload\":{{\"n\":{n}}},\"idempotency_key\":\"outbox-{n}\"}}]}}\n"
        )
    };
    std::fs::write(d.join("outbox/journal.ndjson"), line(1) + &line(2)).unwrap();
    let v = rs_config(d, "rs.yaml", &["outbox", "status", "--json"]).ok();
    assert_eq!(v[0]["pending"]["logs"], json!(2), "{v}");
    assert_eq!(v[0]["oldest"], json!("2026-12-01T10:00:00.000000Z"), "{v}");
    rs_config(d, "rs.yaml", &["outbox", "status"]).prints(0, &["2 pending", "oldest deferred"]);
    let v = rs_config(d, "rs.yaml", &["outbox", "drain", "--json"]).ok();
    assert_eq!(v[0]["report"]["drained"], json!(2), "{v}");
    let v = rs_config(d, "rs.yaml", &["run", "show", "r1", "--json"]).ok();
    let ns: Vec<_> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(1), json!(2)], "{v}");
    let v = rs_config(d, "rs.yaml", &["outbox", "status", "--json"]).ok();
    assert_eq!(v[0]["pending"]["logs"], json!(0), "{v}");
    // Draining again stores nothing twice.
    std::fs::write(d.join("outbox/journal.ndjson"), line(2)).unwrap();
    rs_config(d, "rs.yaml", &["outbox", "drain", "--json"]).ok();
    let v = rs_config(d, "rs.yaml", &["run", "show", "r1", "--json"]).ok();
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn without_an_outbox_it_says_how_to_configure_one() {
    let d = tempfile::tempdir().unwrap();
    let v = rs(d.path(), &["outbox", "status", "--json"]).code(1);
    assert_eq!(v["error"]["kind"], json!("invalid_input"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outbox: { path"),
        "{v}"
    );
    let bad = "storage:\n  workflows: { type: file, path: data, outbox: { path: o } }\n  logs: { type: sqlite, path: data/runstore.db }\n  metrics: { type: sqlite, path: data/runstore.db }\n  artifacts: { type: file, path: data }\n";
    write(d.path(), "bad.yaml", bad);
    let v = rs_config(d.path(), "bad.yaml", &["outbox", "status", "--json"]).code(1);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logs and metrics"),
        "{v}"
    );
}
