//! `runstore lease …`, `runstore delivery …`, and runs by external key
//! from the command line, and external keys through migrate, export and
//! import (leases and deliveries are not carried: they coordinate live
//! workers of one store).

use std::path::Path;

use serde_json::json;

mod support;

use support::*;

#[test]
fn leases_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let v = rs(
        d,
        &[
            "lease", "acquire", "deploy", "--holder", "a", "--ttl", "10m", "--json",
        ],
    )
    .ok();
    assert_eq!(v["holder"], json!("a"));
    let token = v["token"].as_u64().unwrap();
    // Renewal by the holder keeps the token.
    let v = rs(
        d,
        &["lease", "acquire", "deploy", "--holder", "a", "--json"],
    )
    .ok();
    assert_eq!(v["token"].as_u64(), Some(token));
    let v = rs(
        d,
        &["lease", "acquire", "deploy", "--holder", "b", "--json"],
    )
    .code(1);
    assert_eq!(v["error"]["kind"], json!("conflict"), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("\"a\"") || m.contains(" a "), "{m}");
    rs(d, &["lease", "list"]).prints(0, &["deploy", "token 1", "held until"]);
    let v = rs(d, &["lease", "list", "--json"]).ok();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let wrong = (token + 1).to_string();
    let v = rs(
        d,
        &["lease", "release", "deploy", "--token", &wrong, "--json"],
    )
    .code(1);
    assert_eq!(v["error"]["kind"], json!("conflict"), "{v}");
    rs(
        d,
        &[
            "lease",
            "release",
            "deploy",
            "--token",
            &token.to_string(),
            "--json",
        ],
    )
    .ok();
    assert_eq!(rs(d, &["lease", "list", "--json"]).ok(), json!([]));
    let v = rs(d, &["lease", "list", "--all", "--json"]).ok();
    assert_eq!(v[0]["name"], json!("deploy"), "{v}");
    let v = rs(
        d,
        &["lease", "acquire", "deploy", "--holder", "b", "--json"],
    )
    .ok();
    assert!(v["token"].as_u64().unwrap() > token, "{v}");
    // A zero time to live is a usage error.
    let v = rs(
        d,
        &[
            "lease", "acquire", "x", "--holder", "b", "--ttl", "0s", "--json",
        ],
    )
    .code(2);
    assert_eq!(v["error"]["kind"], json!("usage"), "{v}");
}

#[test]
fn deliveries_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let v = rs(d, &["delivery", "record", "evt_1", "--json"]).ok();
    assert_eq!(v["new"], json!(true), "{v}");
    let v = rs(d, &["delivery", "record", "evt_1", "--json"]).ok();
    assert_eq!(v["new"], json!(false), "{v}");
    rs(d, &["delivery", "record", "evt_1"]).prints(0, &["seen before"]);
    let v = rs(d, &["delivery", "prune", "--older-than", "1d", "--json"]).ok();
    assert_eq!(v["pruned"], json!(0), "{v}");
    let v = rs(d, &["delivery", "record", "", "--json"]).code(1);
    assert_eq!(v["error"]["kind"], json!("invalid_input"), "{v}");
}

fn keyed_run(d: &Path, config: &str, id: &str, key: &str) -> serde_json::Value {
    rs_config(
        d,
        config,
        &[
            "run", "create", "etl", "1", "--id", id, "--key", key, "--json",
        ],
    )
    .ok()
}

/// `run show --workflow etl --key KEY --json`.
fn by_key(d: &Path, config: &str, key: &str) -> Outcome {
    rs_config(
        d,
        config,
        &["run", "show", "--workflow", "etl", "--key", key, "--json"],
    )
}

#[test]
fn runs_by_external_key_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "a.yaml", &all_on("{ type: file, path: a }"));
    let v = keyed_run(d, "a.yaml", "r1", "gh-1");
    assert_eq!(v["run"]["external_key"], json!("gh-1"), "{v}");
    // The same key again answers the stored run.
    let v = keyed_run(d, "a.yaml", "r2", "gh-1");
    assert_eq!(v["run"]["id"], json!("r1"), "{v}");
    let v = by_key(d, "a.yaml", "gh-1").ok();
    assert_eq!(v["run"]["id"], json!("r1"), "{v}");
    rs_config(d, "a.yaml", &["run", "show", "r1"]).prints(0, &["external key: gh-1"]);
    let v = by_key(d, "a.yaml", "nope").code(1);
    assert_eq!(v["error"]["kind"], json!("not_found"), "{v}");
    let v = rs_config(d, "a.yaml", &["run", "show", "--key", "gh-1", "--json"]).code(2);
    assert_eq!(v["error"]["kind"], json!("usage"), "{v}");
}

/// External keys survive files -> SQLite (-> Postgres when a server is
/// there) and an export/import round trip; leases and deliveries stay.
#[test]
fn external_keys_migrate_and_export() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "a.yaml", &all_on("{ type: file, path: a }"));
    write(
        d,
        "b.yaml",
        &all_on("{ type: sqlite, path: b/runstore.db }"),
    );
    keyed_run(d, "a.yaml", "r1", "gh-1");
    keyed_run(d, "a.yaml", "r2", "gh-2");
    rs_config(d, "a.yaml", &["lease", "acquire", "l", "--holder", "a"]).prints(0, &["l"]);
    rs_config(d, "a.yaml", &["delivery", "record", "d1"]).prints(0, &["new"]);
    rs(
        d,
        &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--json"],
    )
    .ok();
    rs(
        d,
        &["verify", "--from", "a.yaml", "--to", "b.yaml", "--json"],
    )
    .ok();
    let show = |config: &str, key: &str| by_key(d, config, key).ok()["run"]["id"].clone();
    assert_eq!(show("b.yaml", "gh-2"), json!("r2"));
    // Not carried: the destination has no lease and has never seen d1.
    assert_eq!(
        rs_config(d, "b.yaml", &["lease", "list", "--all", "--json"]).ok(),
        json!([])
    );
    let v = rs_config(d, "b.yaml", &["delivery", "record", "d1", "--json"]).ok();
    assert_eq!(v["new"], json!(true), "{v}");
    // Export and import into a fresh SQLite store.
    let dump = d.join("dump");
    rs_config(
        d,
        "b.yaml",
        &["export", "--out", dump.to_str().unwrap(), "--json"],
    )
    .ok();
    write(
        d,
        "c.yaml",
        &all_on("{ type: sqlite, path: c/runstore.db }"),
    );
    rs_config(d, "c.yaml", &["import", dump.to_str().unwrap(), "--json"]).ok();
    assert_eq!(show("c.yaml", "gh-1"), json!("r1"));
    if let Some((_schema, pg)) = pg_schema("external_keys_migrate_and_export") {
        write(d, "p.yaml", &all_on(&pg));
        rs(
            d,
            &["migrate", "--from", "c.yaml", "--to", "p.yaml", "--json"],
        )
        .ok();
        assert_eq!(show("p.yaml", "gh-1"), json!("r1"));
        assert_eq!(show("p.yaml", "gh-2"), json!("r2"));
    }
}
