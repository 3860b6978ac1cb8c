//! No password reaches any output, error or `Debug`, in any form a
//! PostgreSQL connection string may take: URL userinfo, `?password=`,
//! key/value pairs (quoted, with spaces), and passwords holding unencoded
//! `/`, `@` or `:`, which are refused with advice to percent-encode.

use std::path::Path;

mod support;

use support::*;

/// `(user, host, port, db)` of the harness's `postgres://USER@HOST:PORT/DB`.
fn parts(url: &str) -> (String, String, String, String) {
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (user, rest) = rest.split_once('@').expect("a user");
    let (hostport, db) = rest.split_once('/').expect("a database");
    let db = db.split('?').next().unwrap_or(db);
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    (user.into(), host.into(), port.into(), db.into())
}

fn config_with(d: &Path, url: &str, schema: &str) {
    // A JSON string is a valid YAML double-quoted scalar.
    let url = serde_json::to_string(url).unwrap();
    write(
        d,
        "pg.yaml",
        &all_on(&format!(
            "{{ type: postgres, url: {url}, schema: {schema}, pool_size: 2 }}"
        )),
    );
}

fn assert_hidden(o: &Outcome, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(
            !o.stdout.contains(s) && !o.stderr.contains(s),
            "{what}: {s:?} shown\nstdout:\n{}\nstderr:\n{}",
            o.stdout,
            o.stderr
        );
    }
}

#[test]
fn init_and_debug_never_show_a_password() {
    let Some((schema, _)) = pg_schema("runstore-cli init_and_debug_never_show_a_password") else {
        return;
    };
    let config = schema.config();
    let (user, host, port, db) = parts(&config.url);
    // The harness's servers trust local connections, so any password opens.
    let forms = [
        (
            format!("postgres://{user}:S3cretA@{host}:{port}/{db}"),
            vec!["S3cretA"],
        ),
        (
            format!("postgres://{user}@{host}:{port}/{db}?password=S3cretB"),
            vec!["S3cretB"],
        ),
        (
            format!("host={host} port={port} user={user} password=S3cretC dbname={db}"),
            vec!["S3cretC"],
        ),
        (
            format!("host={host} port={port} user={user} password='S3c retD' dbname={db}"),
            vec!["S3c", "retD"],
        ),
    ];
    for (url, secrets) in &forms {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        config_with(d, url, &config.schema);
        let plain = rs(d, &["--config", "pg.yaml", "init"]);
        assert_eq!(plain.code, 0, "{url}: {}{}", plain.stdout, plain.stderr);
        assert_hidden(&plain, secrets, "init");
        let json = rs(d, &["--config", "pg.yaml", "init", "--json"]);
        assert_eq!(json.code, 0);
        assert_hidden(&json, secrets, "init --json");
        assert!(json.stdout.contains("***"), "{}", json.stdout);

        // Debug of the configuration and of the opened storage.
        let cfg = runstore::Config::from_file(d.join("pg.yaml")).unwrap();
        let shown = format!("{cfg:?}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let storage = rt.block_on(runstore::Storage::open(&cfg)).unwrap();
        let shown = format!("{shown} {storage:?}");
        for s in secrets {
            assert!(!shown.contains(s), "Debug shows {s:?}: {shown}");
        }
    }
}

#[test]
fn an_unencoded_password_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (url, secrets) in [
        ("postgres://u:S3cr/et@127.0.0.1:1/db", vec!["S3cr", "et@"]),
        (
            "postgres://u:p@ss/w:rd@127.0.0.1:1/db",
            vec!["p@ss", "ss/w", "w:rd"],
        ),
    ] {
        config_with(d, url, "runstore");
        for args in [
            vec!["--config", "pg.yaml", "init", "--json"],
            vec!["--config", "pg.yaml", "stats"],
        ] {
            let o = rs(d, &args);
            assert_eq!(o.code, 1, "{url}: {}{}", o.stdout, o.stderr);
            assert_hidden(&o, &secrets, url);
            let all = format!("{}{}", o.stdout, o.stderr);
            assert!(all.contains("percent-encoded"), "{all}");
            assert!(!all.contains("lookup address"), "{all}");
        }
    }
}
