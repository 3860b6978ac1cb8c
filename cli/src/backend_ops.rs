//! Operations that depend on the concrete backend: the integrity checks of
//! `runstore check`.

use runstore::{BackendHandle, Builtin, Result};
use serde_json::{Value, json};

type CheckOutcome = (serde_json::Map<String, Value>, Vec<String>);

/// The backend's own integrity check: its report as JSON and the problems
/// found (empty when healthy).
pub async fn check_backend(handle: &BackendHandle, repair: bool) -> Result<CheckOutcome> {
    let mut report = serde_json::Map::new();
    let mut problems = Vec::new();
    match Builtin::of(handle) {
        Builtin::Memory => {
            report.insert(
                "note".into(),
                json!("in-memory: nothing persisted to check"),
            );
        }
        Builtin::File(store) => {
            let r = store.check(repair).await?;
            report.insert("root".into(), json!(store.root().display().to_string()));
            file_report(&r, &mut report, &mut problems);
        }
        Builtin::Sqlite(store) => {
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
        Builtin::Postgres(store) => {
            report.insert("url".into(), json!(store.config().redacted_url()));
            report.insert("schema".into(), json!(store.config().schema));
            report.insert(
                "schema_version".into(),
                json!(store.schema_version().await?),
            );
        }
        Builtin::S3(store) => {
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
