//! `runstore init`: creates the configured stores and shows which backend
//! holds each concern.

use std::process::ExitCode;

use runstore::{Concern, Config, Result, Storage};
use serde_json::{Value, json};

use crate::output::Out;

/// Describes each concern's backend, with URLs redacted.
fn describe(config: &Config) -> Value {
    let mut concerns = serde_json::Map::new();
    for c in Concern::ALL {
        let b = config.backend(c);
        let mut o = serde_json::Map::new();
        o.insert("type".into(), json!(b.type_name));
        for (k, v) in &b.options {
            let key = k.as_str().unwrap_or("?").to_string();
            let value = match v {
                runstore::yaml::Value::String(s) => {
                    let s = if key == "path" {
                        let p = b.resolve_path(s);
                        std::path::absolute(&p).unwrap_or(p).display().to_string()
                    } else {
                        runstore::config::redact_url(s)
                    };
                    json!(s)
                }
                other => serde_json::to_value(other).unwrap_or(Value::Null),
            };
            o.insert(key, value);
        }
        concerns.insert(c.as_str().into(), Value::Object(o));
    }
    Value::Object(concerns)
}

/// `runstore init`.
pub async fn init(storage: &Storage, out: &Out) -> Result<ExitCode> {
    let config = storage.config();
    let value = json!({
        "initialized": true,
        "config": config.source,
        "backends": storage.backends().len(),
        "concerns": describe(config),
    });
    out.result(&value, || {
        let mut s = format!("runstore is ready ({})\n", config.source);
        if let Some(map) = value["concerns"].as_object() {
            for (name, v) in map {
                s.push_str(&format!("  {name:<10} {v}\n"));
            }
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}
