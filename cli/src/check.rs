//! `runstore check`: each backend's own integrity check, every artifact
//! read back against its hash, and the references between concerns.

use std::process::ExitCode;

use runstore::{ArtifactKey, ArtifactQuery, Error, Result, Storage};
use serde_json::{Value, json};

use crate::output::Out;
use crate::paging::Cursors;

/// `runstore check`: every backend's own check, then every artifact read
/// back against its hash. Exit code 1 if anything is wrong.
pub async fn check(storage: &Storage, repair: bool, out: &Out) -> Result<ExitCode> {
    let mut ok = true;
    let mut backends = Vec::new();
    for opened in storage.backends() {
        let concerns: Vec<&str> = opened.concerns.iter().map(|c| c.as_str()).collect();
        // One backend that cannot be checked (a damaged page, a link) is a
        // finding; the others are still checked.
        let (mut report, problems) =
            match crate::backend_ops::check_backend(&opened.backend.handle, repair).await {
                Ok(r) => r,
                Err(e) => (
                    serde_json::Map::new(),
                    vec![format!("the check stopped: {e}")],
                ),
            };
        ok &= problems.is_empty();
        report.insert("type".into(), json!(opened.type_name));
        report.insert("concerns".into(), json!(concerns));
        report.insert("ok".into(), json!(problems.is_empty()));
        report.insert("problems".into(), json!(problems));
        backends.push(Value::Object(report));
    }

    // Artifact hashes: read every artifact through the verifying reader.
    let mut checked = 0u64;
    let mut corrupt = Vec::new();
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = match storage
            .artifacts
            .list(ArtifactQuery::default().with_limit(500).with_cursor(cursor))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                corrupt.push(json!({"key": null, "kind": crate::output::kind_name(e.kind()), "message": format!("listing artifacts stopped: {e}")}));
                break;
            }
        };
        for info in &page.items {
            checked += 1;
            if let Err(e) = verify_artifact(storage, &info.key).await {
                corrupt.push(json!({"key": info.key.to_string(), "kind": crate::output::kind_name(e.kind()), "message": e.to_string()}));
            }
        }
        pages.after(page.next);
    }
    ok &= corrupt.is_empty();
    let references = match crate::references::check(storage).await {
        Ok(r) => json!(r),
        Err(e) => {
            ok = false;
            json!({"error": e.to_string()})
        }
    };
    let value = json!({
        "ok": ok,
        "backends": backends,
        "artifacts": {"checked": checked, "corrupt": corrupt},
        "references": references,
    });
    out.result(&value, || {
        let mut s = String::new();
        for b in &backends {
            s.push_str(&format!(
                "{} ({}): {}\n",
                b["type"].as_str().unwrap_or("?"),
                b["concerns"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                if b["ok"] == json!(true) {
                    "ok"
                } else {
                    "PROBLEMS"
                }
            ));
            if let Some(problems) = b["problems"].as_array() {
                for p in problems {
                    s.push_str(&format!("  - {}\n", p.as_str().unwrap_or("?")));
                }
            }
            let repaired = b["findings"].as_array().into_iter().flatten();
            for f in repaired.filter(|f| f["repaired"] == json!(true)) {
                let location = f["location"].as_str().unwrap_or("?");
                s.push_str(&format!(
                    "  repaired: {} at {location}: {}\n",
                    f["kind"].as_str().unwrap_or("?"),
                    f["detail"].as_str().unwrap_or("?")
                ));
                if f["kind"] == json!("CorruptLine") && location.contains("/events/") {
                    s.push_str(
                        "    the run's event numbering has a hole there now: copy it with `migrate --skip-corrupt` or `export`/`import --skip-corrupt`, which put a runstore.lost tombstone in it\n",
                    );
                }
            }
        }
        s.push_str(&format!(
            "artifacts: {checked} checked, {} corrupt\n",
            corrupt.len()
        ));
        for c in &corrupt {
            s.push_str(&format!("  - {}\n", c["message"].as_str().unwrap_or("?")));
        }
        if let Some(e) = references["error"].as_str() {
            s.push_str(&format!("references: the check stopped: {e}\n"));
        } else if let Some(list) = references["unresolved"].as_array() {
            s.push_str(&format!(
                "references: {} checked, {} unresolved (warnings: writes do not enforce references between concerns)\n",
                references["checked"], list.len()
            ));
            for u in list {
                s.push_str(&format!(
                    "  - {} names {}, which is not stored\n",
                    u["from"].as_str().unwrap_or("?"),
                    u["to"].as_str().unwrap_or("?")
                ));
            }
        }
        let repaired = s.contains("  repaired: ");
        s.push_str(match (ok, repaired) {
            (true, false) => "all good",
            (true, true) => "all good after the repairs above",
            (false, _) => "problems found",
        });
        s
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn verify_artifact(storage: &Storage, key: &ArtifactKey) -> Result<u64> {
    let mut reader = storage.artifacts.get(key).await?;
    tokio::io::copy(&mut reader.body, &mut tokio::io::sink())
        .await
        .map_err(|e| Error::io(format!("reading artifact {key}"), e))
}
