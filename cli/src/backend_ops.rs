//! Operations that depend on the concrete backend: integrity checks,
//! SQLite backup and restore.

use std::path::Path;
use std::process::ExitCode;

use runstore::{BackendHandle, Config, Error, Result, Storage};
use serde_json::{Value, json};

use crate::output::Out;

type CheckOutcome = (serde_json::Map<String, Value>, Vec<String>);

/// The backend's own integrity check: its report as JSON and the problems
/// found (empty when healthy).
pub async fn check_backend(handle: &BackendHandle, repair: bool) -> Result<CheckOutcome> {
    let mut report = serde_json::Map::new();
    let mut problems = Vec::new();
    match handle {
        BackendHandle::Memory => {
            report.insert(
                "note".into(),
                json!("in-memory: nothing persisted to check"),
            );
        }
        BackendHandle::File(store) => {
            let r = store.check(repair).await?;
            report.insert("root".into(), json!(store.root().display().to_string()));
            file_report(&r, &mut report, &mut problems);
        }
        BackendHandle::Sqlite(store) => {
            report.insert("path".into(), json!(store.path().display().to_string()));
            report.insert(
                "schema_version".into(),
                json!(store.schema_version().await?),
            );
            let issues = store.integrity_check().await?;
            report.insert(
                "integrity_check".into(),
                json!(if issues.is_empty() {
                    vec!["ok".to_string()]
                } else {
                    issues.clone()
                }),
            );
            problems.extend(issues.into_iter().map(|i| format!("integrity_check: {i}")));
        }
        BackendHandle::Postgres(store) => {
            report.insert("url".into(), json!(store.config().redacted_url()));
            report.insert("schema".into(), json!(store.config().schema));
            report.insert(
                "schema_version".into(),
                json!(store.schema_version().await?),
            );
        }
        BackendHandle::S3(store) => {
            report.insert("location".into(), json!(store.config().location()));
        }
        _ => {
            report.insert(
                "note".into(),
                json!("a registered backend: no check available"),
            );
        }
    }
    Ok((report, problems))
}

/// The file backend's check report as JSON; findings not repaired are
/// problems.
fn file_report(
    r: &runstore::file::CheckReport,
    report: &mut serde_json::Map<String, Value>,
    problems: &mut Vec<String>,
) {
    let findings: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            json!({
                "kind": format!("{:?}", f.kind),
                "location": f.location,
                "detail": f.detail,
                "repaired": f.repaired,
            })
        })
        .collect();
    report.insert("findings".into(), Value::Array(findings));
    problems.extend(
        r.findings
            .iter()
            .filter(|f| !f.repaired)
            .map(|f| format!("{:?} at {}: {}", f.kind, f.location, f.detail)),
    );
}

/// The one SQLite backend of a storage, or an error saying why there is none.
fn the_sqlite(storage: &Storage, what: &str) -> Result<runstore::sqlite::SqliteStore> {
    let mut found = Vec::new();
    for b in storage.backends() {
        if let BackendHandle::Sqlite(s) = &b.backend.handle {
            found.push(s.clone());
        }
    }
    let types: Vec<&str> = storage
        .backends()
        .iter()
        .map(|b| b.type_name.as_str())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::invalid(
            what,
            format!(
                "{what} is supported for SQLite only, and no concern is on SQLite here (backends: {}); \
                 use `runstore export` for a backend-neutral dump",
                types.join(", ")
            ),
        )),
        n => Err(Error::invalid(
            what,
            format!("{n} SQLite databases are configured; {what} handles exactly one"),
        )),
    }
}

/// `runstore backup OUT`.
pub async fn backup(storage: &Storage, file: &Path, out: &Out) -> Result<ExitCode> {
    let store = the_sqlite(storage, "backup")?;
    let report = store.backup_to(file).await?;
    let value = json!({"backup": file.display().to_string(), "source": store.path().display().to_string(), "pages": report.pages, "bytes": report.bytes, "schema_version": report.schema_version});
    out.result(&value, || {
        format!("backed up {} to {}", store.path().display(), file.display())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore restore BACKUP`: opens the storage to find the database, closes
/// it, then replaces the database with the backup.
pub async fn restore(config: &Config, backup: &Path, out: &Out) -> Result<ExitCode> {
    let dest = {
        let storage = Storage::open(config).await?;
        let store = the_sqlite(&storage, "restore")?;
        store.path().to_path_buf()
    };
    runstore::sqlite::SqliteStore::restore(backup, &dest).await?;
    let value =
        json!({"restored": dest.display().to_string(), "from": backup.display().to_string()});
    out.result(&value, || {
        format!("restored {} from {}", dest.display(), backup.display())
    })?;
    Ok(ExitCode::SUCCESS)
}
