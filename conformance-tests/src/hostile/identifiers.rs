//! Identifiers and artifact paths, built directly and read inside records.

use runstore_core::{
    ArtifactKey, ArtifactPath, Error, ExecutionMetric, Pattern, PatternId, Phase, Run, RunId,
    RunStatus, WorkflowDefinition, WorkflowId,
};
use serde_json::{Value, json};

use super::{check_invalid, hostile_strings, id_ok, path_ok, shown};
use crate::factory::StoreFactory;
use crate::fixtures::{akey, def, event, metric, pattern, rid, run};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq};

/// A value type built from a string: the field its errors name, which
/// strings are valid for it, and the constructor.
struct Built {
    field: &'static str,
    valid: fn(&str) -> bool,
    build: fn(&str) -> Result<(), Error>,
}

const BUILT: [Built; 5] = [
    Built {
        field: WorkflowId::FIELD,
        valid: id_ok,
        build: |s| WorkflowId::new(s).map(drop),
    },
    Built {
        field: RunId::FIELD,
        valid: id_ok,
        build: |s| RunId::new(s).map(drop),
    },
    Built {
        field: Phase::FIELD,
        valid: id_ok,
        build: |s| Phase::new(s).map(drop),
    },
    Built {
        field: PatternId::FIELD,
        valid: id_ok,
        build: |s| PatternId::new(s).map(drop),
    },
    Built {
        field: ArtifactPath::FIELD,
        valid: path_ok,
        build: |s| ArtifactPath::new(s).map(drop),
    },
];

/// Valid records as JSON, into which one field at a time gets a hostile
/// value.
struct Records {
    run: Value,
    def: Value,
    event: Value,
    metric: Value,
    pattern: Value,
    key: Value,
}

/// A record deserialized with a hostile value in one field: which field of
/// which record, the field name the error must carry, which strings are
/// valid there, and the deserialization (what serde said).
struct InRecord {
    what: &'static str,
    field: &'static str,
    valid: fn(&str) -> bool,
    read: fn(&Records, &str) -> Result<(), String>,
}

/// `base` with `key` set to `value`.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    v[key] = value;
    v
}

/// What serde said, without the value.
fn said<T>(result: serde_json::Result<T>) -> Result<(), String> {
    result.map(drop).map_err(|e| e.to_string())
}

const IN_RECORDS: [InRecord; 9] = [
    InRecord {
        what: "Run.id",
        field: RunId::FIELD,
        valid: id_ok,
        read: |r, s| said(serde_json::from_value::<Run>(with(&r.run, "id", json!(s)))),
    },
    InRecord {
        what: "Run.workflow_id",
        field: WorkflowId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<Run>(with(
                &r.run,
                "workflow_id",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "WorkflowDefinition.id",
        field: WorkflowId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<WorkflowDefinition>(with(
                &r.def,
                "id",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "Event.run_id",
        field: RunId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<runstore_core::Event>(with(
                &r.event,
                "run_id",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "ExecutionMetric.run_id",
        field: RunId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<ExecutionMetric>(with(
                &r.metric,
                "run_id",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "Pattern.evidence",
        field: RunId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<Pattern>(with(
                &r.pattern,
                "evidence",
                json!(["r1", s]),
            )))
        },
    },
    InRecord {
        what: "Pattern.id",
        field: PatternId::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<Pattern>(with(
                &r.pattern,
                "id",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "ArtifactKey.phase",
        field: Phase::FIELD,
        valid: id_ok,
        read: |r, s| {
            said(serde_json::from_value::<ArtifactKey>(with(
                &r.key,
                "phase",
                json!(s),
            )))
        },
    },
    InRecord {
        what: "ArtifactKey.path",
        field: ArtifactPath::FIELD,
        valid: path_ok,
        read: |r, s| {
            said(serde_json::from_value::<ArtifactKey>(with(
                &r.key,
                "path",
                json!(s),
            )))
        },
    },
];

/// A serialized fixture; an error fails the rule as a setup error.
fn setup(value: serde_json::Result<Value>) -> Result<Value, RuleError> {
    value.map_err(|e| RuleError::Failed(format!("test setup: {e}")))
}

/// "`WorkflowId`, `RunId`, `Phase`: 1 to 128 bytes of `[A-Za-z0-9._-]`, not
/// starting with `.`; case-sensitive." "Artifact logical path: relative,
/// `/`-separated, each segment 1 to 255 bytes, no empty, `.` or `..`
/// segment, no `\`, no NUL or control character, at most 1024 bytes in all,
/// UTF-8." "Every value is validated when it is constructed; a bad one is
/// `Error::InvalidInput` naming the field and the rule broken."
///
/// Every corpus string (plus length boundaries) is accepted by
/// `WorkflowId`, `RunId`, `Phase`, `PatternId` and `ArtifactPath`
/// exactly when the rule allows it, and refused with `InvalidInput` naming
/// the field otherwise; the same holds when the value arrives inside a
/// record through serde (a run, an event, a definition, a metric, a
/// pattern's evidence, an artifact key), which is how stored records are
/// read back by backends.
pub async fn hostile_identifiers_rejected_naming_field(f: &dyn StoreFactory) -> RuleResult {
    // No store is needed to construct values, but the rule runs per backend
    // like every other; creating one checks the factory is usable.
    let _s = f.create().await?;
    let mut corpus = hostile_strings();
    corpus.extend([
        "x".repeat(128),
        "x".repeat(129),
        format!("{}/{}", "a".repeat(255), "b".repeat(255)),
        format!("{}/b", "a".repeat(256)),
        ["s"; 512].join("/"),
        format!("{}/c", ["s"; 511].join("/")),
    ]);
    let records = Records {
        run: setup(serde_json::to_value(run("r", "etl", 1, 10)))?,
        def: setup(serde_json::to_value(def("etl", 1, None)))?,
        event: setup(serde_json::to_value(event("k", 1).into_event(rid("r"), 1)))?,
        metric: setup(serde_json::to_value(metric(
            "r",
            "etl",
            1,
            RunStatus::Succeeded,
            5,
        )))?,
        pattern: setup(serde_json::to_value(pattern("p", "etl", 1)))?,
        key: setup(serde_json::to_value(akey("r", "p", "x")))?,
    };

    let mut accepted = 0usize;
    let mut refused = 0usize;
    for s in &corpus {
        for built in &BUILT {
            let (field, result) = (built.field, (built.build)(s));
            let what = format!("building a {field} from {}", shown(s));
            if (built.valid)(s) {
                ensure!(
                    result.is_ok(),
                    "{what}: the value is valid and must be accepted, got {result:?}"
                );
                accepted += 1;
            } else {
                check_invalid(result, field, &what)?;
                refused += 1;
            }
        }
        ensure_eq!(
            ArtifactKey::parse("r", "p", s).is_ok(),
            path_ok(s),
            "ArtifactKey::parse(\"r\", \"p\", {}) accepted",
            shown(s)
        );

        // Inside records, through serde.
        for record in &IN_RECORDS {
            let (what, field) = (record.what, record.field);
            match ((record.valid)(s), (record.read)(&records, s)) {
                (true, Ok(())) => {}
                (true, Err(e)) => {
                    return Err(RuleError::Failed(format!(
                        "deserializing a record with {what} = {}: the value is valid and must be accepted, got: {e}",
                        shown(s)
                    )));
                }
                (false, Ok(())) => {
                    return Err(RuleError::Failed(format!(
                        "deserializing a record with {what} = {}: expected an error naming `{field}`, got Ok",
                        shown(s)
                    )));
                }
                (false, Err(e)) => ensure!(
                    e.contains(field),
                    "deserializing a record with {what} = {}: the error must name `{field}`, got: {e}",
                    shown(s)
                ),
            }
        }
    }
    ensure!(
        accepted > 0 && refused > accepted,
        "test setup: the corpus must hold both valid and (mostly) invalid identifiers, got {accepted} accepted and {refused} refused"
    );
    Ok(())
}
