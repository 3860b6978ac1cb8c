//! The hostile-input corpus, fed to every backend (docs/DESIGN.md section 2).
//!
//! [`hostile_strings`] is public so that backends can feed the same corpus
//! to their own tests (file names, SQL, CLI output). Each rule decides for
//! every string, with predicates written here from the text of docs/DESIGN.md
//! section 2 and core/README.md (not with core's validators), whether it is
//! valid for a field, and checks that the store accepts exactly the valid
//! ones, keeps them verbatim, and refuses the others with `InvalidInput`
//! naming the field, storing nothing.

use std::collections::BTreeSet;

use runstore_core::{
    ArtifactKey, ArtifactPath, ArtifactQuery, ArtifactStoreExt, Cursor, Error, ErrorKind,
    EventQuery, ExecutionMetric, LogRepositoryExt, MAX_PAGE_LIMIT, MetricQuery, NewEvent, Pattern,
    PatternId, PatternQuery, Phase, PutOptions, Run, RunFilter, RunId, RunQuery, RunStatus,
    RunUpdate, RunWithEvents, WorkflowDefinition, WorkflowId, WorkflowQuery,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{akey, def, event, metric, pattern, phase, rid, run, t, v, wf};
use crate::outcome::{RuleError, RuleResult};
use crate::runs::{events_all, query_all};
use crate::{ensure, ensure_eq, ensure_err};

/// Strings an attacker, a buggy client or an unlucky user may send: path
/// traversal, absolute and Windows paths, NUL and control characters, 10 KB
/// strings, SQL and shell fragments, percent-encoding, Unicode look-alikes
/// (fullwidth dots and letters, division slash), invisible and
/// direction-changing characters, reserved device names. Every string is
/// distinct. Some are valid for some fields (e.g. SQL fragments are valid
/// event kinds and artifact paths; `CON` is a valid identifier).
pub fn hostile_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        // Empty, dots and traversal.
        "",
        ".",
        "..",
        "...",
        "./x",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "x/",
        "/etc/passwd",
        "C:\\x",
        "C:x",
        "\\\\server\\share",
        "a\\b",
        // NUL and control characters.
        "\0",
        "a\0b",
        "nul\0",
        "\u{1}",
        "\u{7}bell",
        "\u{1b}[31mred",
        "line\nbreak",
        "\n",
        "cr\rlf",
        "tab\tx",
        "\u{7f}del",
        "\u{85}next-line",
        // SQL, shell and template fragments.
        "'; DROP TABLE runs; --",
        "\" OR 1=1 --",
        "' OR ''='",
        "%' OR '1'='1",
        "1; SELECT pg_sleep(10)",
        "$$; DROP SCHEMA public CASCADE; $$",
        "\\x00",
        "$(rm -rf /)",
        "`id`",
        "${HOME}",
        "{{7*7}}",
        "<script>alert(1)</script>",
        "*",
        "?",
        // Percent-encoding.
        "%2e%2e",
        "%2e%2e/x",
        "..%2f..%2fetc",
        "%00",
        // Look-alike and invisible Unicode.
        "．．",
        "．．/x",
        "\u{2215}",
        "a\u{2215}..\u{2215}b",
        "\u{ff0f}etc\u{ff0f}passwd",
        "ｒｅｐｏｒｔ/．．/x",
        "e\u{301}",
        "é",
        "\u{feff}bom",
        "\u{200b}",
        "\u{202e}txt.exe",
        "😀",
        " leading space",
        "trailing space ",
        // Valid identifiers that are awkward elsewhere.
        "CON",
        "nul",
        "aux.txt",
        "-rf",
        "--help",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    out.push("x".repeat(10 * 1024));
    out.push("é".repeat(5 * 1024));
    out.push(format!("{}/{}", "a".repeat(300), "b"));
    out
}

/// docs/DESIGN.md section 2: "1 to 128 bytes of `[A-Za-z0-9._-]`, not starting
/// with `.`".
fn id_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// docs/DESIGN.md section 2: "relative, `/`-separated, each segment 1 to 255
/// bytes, no empty, `.` or `..` segment, no `\`, no NUL or control
/// character, at most 1024 bytes in all".
fn path_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && !s.starts_with('/')
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
        && s.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.len() <= 255)
}

/// core/README.md: labels (kinds, triggers, content types, names, keys)
/// refuse control characters; core's `MAX_LABEL_LEN` is 256 bytes.
fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// Free text (descriptions): no control character but `\n`, `\r`, `\t`.
fn text_ok(s: &str) -> bool {
    s.len() <= 64 * 1024
        && !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// "no string anywhere may hold NUL" (core/README.md).
fn json_ok(s: &str) -> bool {
    !s.contains('\0')
}

fn shown(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut:?}… ({} bytes)", s.len())
    } else {
        format!("{cut:?}")
    }
}

/// One record deserialized with a hostile value: which field of which
/// record, the field name the error must carry, whether the value is valid,
/// and what serde said.
type SerdeProbe = (&'static str, &'static str, bool, Result<(), String>);

/// Fails unless `result` is `InvalidInput` whose message names `field`.
fn check_invalid<T: std::fmt::Debug>(
    result: runstore_core::Result<T>,
    field: &str,
    what: &str,
) -> RuleResult {
    let err = ensure_err!(result, ErrorKind::InvalidInput, "{what}");
    ensure!(
        err.to_string().contains(field),
        "{what}: the InvalidInput error must name the field `{field}`, got: {err}"
    );
    Ok(())
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
    let base_run = serde_json::to_value(run("r", "etl", 1, 10))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;
    let base_def = serde_json::to_value(def("etl", 1, None))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;
    let base_event = serde_json::to_value(event("k", 1).into_event(rid("r"), 1))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;
    let base_metric = serde_json::to_value(metric("r", "etl", 1, RunStatus::Succeeded, 5))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;
    let base_pattern = serde_json::to_value(pattern("p", "etl", 1))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;
    let base_key = serde_json::to_value(akey("r", "p", "x"))
        .map_err(|e| RuleError::Failed(format!("test setup: {e}")))?;

    let mut accepted = 0usize;
    let mut refused = 0usize;
    for s in &corpus {
        let constructed: [(&str, Result<(), Error>, bool); 5] = [
            (
                WorkflowId::FIELD,
                WorkflowId::new(s.as_str()).map(drop),
                id_ok(s),
            ),
            (RunId::FIELD, RunId::new(s.as_str()).map(drop), id_ok(s)),
            (Phase::FIELD, Phase::new(s.as_str()).map(drop), id_ok(s)),
            (
                PatternId::FIELD,
                PatternId::new(s.as_str()).map(drop),
                id_ok(s),
            ),
            (
                ArtifactPath::FIELD,
                ArtifactPath::new(s.as_str()).map(drop),
                path_ok(s),
            ),
        ];
        for (field, result, valid) in constructed {
            let what = format!("building a {field} from {}", shown(s));
            if valid {
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
        let records: Vec<SerdeProbe> = {
            let mut out = Vec::new();
            let mut r = base_run.clone();
            r["id"] = json!(s);
            out.push((
                "Run.id",
                RunId::FIELD,
                id_ok(s),
                serde_json::from_value::<Run>(r)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut r = base_run.clone();
            r["workflow_id"] = json!(s);
            out.push((
                "Run.workflow_id",
                WorkflowId::FIELD,
                id_ok(s),
                serde_json::from_value::<Run>(r)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut d = base_def.clone();
            d["id"] = json!(s);
            out.push((
                "WorkflowDefinition.id",
                WorkflowId::FIELD,
                id_ok(s),
                serde_json::from_value::<WorkflowDefinition>(d)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut e = base_event.clone();
            e["run_id"] = json!(s);
            out.push((
                "Event.run_id",
                RunId::FIELD,
                id_ok(s),
                serde_json::from_value::<runstore_core::Event>(e)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut m = base_metric.clone();
            m["run_id"] = json!(s);
            out.push((
                "ExecutionMetric.run_id",
                RunId::FIELD,
                id_ok(s),
                serde_json::from_value::<ExecutionMetric>(m)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut p = base_pattern.clone();
            p["evidence"] = json!(["r1", s]);
            out.push((
                "Pattern.evidence",
                RunId::FIELD,
                id_ok(s),
                serde_json::from_value::<Pattern>(p)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut p = base_pattern.clone();
            p["id"] = json!(s);
            out.push((
                "Pattern.id",
                PatternId::FIELD,
                id_ok(s),
                serde_json::from_value::<Pattern>(p)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut k = base_key.clone();
            k["phase"] = json!(s);
            out.push((
                "ArtifactKey.phase",
                Phase::FIELD,
                id_ok(s),
                serde_json::from_value::<ArtifactKey>(k)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            let mut k = base_key.clone();
            k["path"] = json!(s);
            out.push((
                "ArtifactKey.path",
                ArtifactPath::FIELD,
                path_ok(s),
                serde_json::from_value::<ArtifactKey>(k)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            ));
            out
        };
        for (what, field, valid, result) in records {
            match (valid, result) {
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

/// "Every value is validated when it is constructed; a bad one is
/// `Error::InvalidInput` naming the field and the rule broken. No backend
/// ever sees an unvalidated id or path" — and the free-text and JSON fields
/// that are only plain `String`s and JSON values in the records are checked
/// by the backend itself (core/README.md: "Free-text fields (kinds,
/// triggers, content types, names, keys) refuse control characters; no
/// string anywhere may hold NUL"; checks in the order input, existence,
/// state).
///
/// The backend refuses, with `InvalidInput` naming the field, every corpus
/// string that is not a valid label as an event kind, idempotency key,
/// trigger (in a run, an import and a query filter), content type, creator,
/// pattern kind, metric counter and value name; invalid text as a workflow
/// or pattern description; NUL inside JSON (run attributes, summaries,
/// event payloads, workflow bodies, pattern data, keys and values);
/// non-finite metric values, a confidence outside `[0, 1]`, a metric of an
/// unfinished run. Afterwards nothing of it is stored. Invalid input to a
/// missing run is `InvalidInput`, not `NotFound`.
pub async fn hostile_text_rejected_by_backend(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let st = &s.stores;
    st.workflows.store(def("etl", 1, None)).await?;
    st.logs.create_run(run("r", "etl", 1, 10)).await?;
    let bad_labels: Vec<String> = hostile_strings()
        .into_iter()
        .filter(|s| !label_ok(s))
        .collect();
    ensure!(
        bad_labels.len() >= 10,
        "test setup: too few invalid labels in the corpus"
    );

    for (i, bad) in bad_labels.iter().enumerate() {
        let b = shown(bad);
        check_invalid(
            st.logs
                .append_event(
                    &rid("r"),
                    NewEvent::new(bad.clone(), json!({})).with_at(t(1, 0)),
                )
                .await,
            "kind",
            &format!("append_event(kind = {b})"),
        )?;
        check_invalid(
            st.logs
                .append_event(&rid("r"), event("ok", 1).with_idempotency_key(bad.clone()))
                .await,
            "idempotency_key",
            &format!("append_event(idempotency_key = {b})"),
        )?;
        check_invalid(
            st.logs
                .append_events(
                    &rid("r"),
                    vec![
                        event("ok", 1),
                        NewEvent::new(bad.clone(), json!(1)).with_at(t(2, 0)),
                    ],
                )
                .await,
            "kind",
            &format!("append_events([ok, kind = {b}])"),
        )?;
        check_invalid(
            st.logs
                .append_event(
                    &rid("missing"),
                    NewEvent::new(bad.clone(), json!({})).with_at(t(1, 0)),
                )
                .await,
            "kind",
            &format!("append_event(missing run, kind = {b}): input is checked before existence"),
        )?;
        let mut r = run(&format!("bad-trigger-{i}"), "etl", 1, 20);
        r.trigger = bad.clone();
        check_invalid(
            st.logs.create_run(r.clone()).await,
            "trigger",
            &format!("create_run(trigger = {b})"),
        )?;
        check_invalid(
            st.logs
                .import_runs(vec![RunWithEvents {
                    run: r,
                    events: Vec::new(),
                }])
                .await,
            "trigger",
            &format!("import_runs(run with trigger = {b})"),
        )?;
        let imported = RunWithEvents {
            run: run(&format!("bad-kind-{i}"), "etl", 1, 20),
            events: vec![
                NewEvent::new(bad.clone(), json!({}))
                    .with_at(t(21, 0))
                    .into_event(rid(&format!("bad-kind-{i}")), 1),
            ],
        };
        check_invalid(
            st.logs.import_runs(vec![imported]).await,
            "kind",
            &format!("import_runs(event kind = {b})"),
        )?;
        check_invalid(
            st.logs
                .query_runs(RunQuery::new(RunFilter::default().trigger(bad.clone())))
                .await,
            "trigger",
            &format!("query_runs(trigger = {b})"),
        )?;
        check_invalid(
            st.logs
                .count_runs(RunFilter::default().trigger(bad.clone()))
                .await,
            "trigger",
            &format!("count_runs(trigger = {b})"),
        )?;
        let key = akey("r", "p", &format!("bad-{i}"));
        check_invalid(
            st.artifacts
                .put_bytes(
                    &key,
                    b"x".to_vec(),
                    PutOptions::default().content_type(bad.clone()),
                )
                .await,
            "content_type",
            &format!("put(content_type = {b})"),
        )?;
        check_invalid(
            st.artifacts
                .put_bytes(
                    &key,
                    b"x".to_vec(),
                    PutOptions::default().created_by(bad.clone()),
                )
                .await,
            "created_by",
            &format!("put(created_by = {b})"),
        )?;
        let mut p = pattern(&format!("bad-{i}"), "etl", 1);
        p.kind = bad.clone();
        check_invalid(
            st.metrics.upsert_pattern(p).await,
            "kind",
            &format!("upsert_pattern(kind = {b})"),
        )?;
        let mut m = metric(&format!("bad-value-{i}"), "etl", 1, RunStatus::Succeeded, 5);
        m.values.insert(bad.clone(), 1.0);
        check_invalid(
            st.metrics.record(m.clone()).await,
            "value name",
            &format!("record(value name = {b})"),
        )?;
        check_invalid(
            st.metrics
                .record_many(vec![metric("fine", "etl", 1, RunStatus::Failed, 3), m])
                .await,
            "value name",
            &format!("record_many([fine, value name = {b}])"),
        )?;
        let mut m = metric(
            &format!("bad-counter-{i}"),
            "etl",
            1,
            RunStatus::Succeeded,
            5,
        );
        m.counters.insert(bad.clone(), 1);
        check_invalid(
            st.metrics.record(m).await,
            "counter name",
            &format!("record(counter name = {b})"),
        )?;
    }

    let bad_text: Vec<String> = hostile_strings()
        .into_iter()
        .filter(|s| !text_ok(s))
        .collect();
    ensure!(
        !bad_text.is_empty(),
        "test setup: no invalid text in the corpus"
    );
    for (i, bad) in bad_text.iter().enumerate() {
        let b = shown(bad);
        check_invalid(
            st.workflows
                .store(def("etl", 2 + i as u32, None).with_description(bad.clone()))
                .await,
            "description",
            &format!("store(workflow description = {b})"),
        )?;
        let mut p = pattern(&format!("bad-desc-{i}"), "etl", 1);
        p.description = bad.clone();
        check_invalid(
            st.metrics.upsert_pattern(p).await,
            "description",
            &format!("upsert_pattern(description = {b})"),
        )?;
    }

    // NUL inside JSON, as a value and as a key, deep down.
    let nul_values = [
        json!({"a": "x\u{0}y"}),
        json!({"a\u{0}": 1}),
        json!({"a": [1, {"b": ["\u{0}"]}]}),
    ];
    for (i, bad) in nul_values.iter().enumerate() {
        let what = format!("JSON {}", serde_json::to_string(bad).unwrap_or_default());
        let mut r = run(&format!("nul-attr-{i}"), "etl", 1, 30);
        r.attributes = bad.as_object().cloned().unwrap_or_default();
        check_invalid(
            st.logs.create_run(r).await,
            "attributes",
            &format!("create_run(attributes = {what})"),
        )?;
        let mut r = run(&format!("nul-sum-{i}"), "etl", 1, 30);
        r.summaries = bad.as_object().cloned().unwrap_or_default();
        check_invalid(
            st.logs.create_run(r).await,
            "summaries",
            &format!("create_run(summaries = {what})"),
        )?;
        let summaries = bad.as_object().cloned().unwrap_or_default();
        check_invalid(
            st.logs
                .update_status(
                    &rid("r"),
                    RunUpdate::running().with_summaries(summaries.clone()),
                )
                .await,
            "summaries",
            &format!("update_status(r, running, summaries = {what})"),
        )?;
        check_invalid(
            st.logs
                .update_status(
                    &rid("missing"),
                    RunUpdate::running().with_summaries(summaries),
                )
                .await,
            "summaries",
            &format!(
                "update_status(missing run, summaries = {what}): input is checked before existence"
            ),
        )?;
        check_invalid(
            st.logs
                .append_event(&rid("r"), NewEvent::new("ok", bad.clone()).with_at(t(1, 0)))
                .await,
            "payload",
            &format!("append_event(payload = {what})"),
        )?;
        let mut d = def("nul-body", 1, None);
        d.body = bad.clone();
        check_invalid(
            st.workflows.store(d).await,
            "body",
            &format!("store(workflow body = {what})"),
        )?;
        let mut p = pattern(&format!("nul-data-{i}"), "etl", 1);
        p.data = bad.clone();
        check_invalid(
            st.metrics.upsert_pattern(p).await,
            "data",
            &format!("upsert_pattern(data = {what})"),
        )?;
    }

    // Numbers.
    for (i, x) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
        .into_iter()
        .enumerate()
    {
        let mut m = metric(&format!("nonfinite-{i}"), "etl", 1, RunStatus::Succeeded, 5);
        m.values.insert("cost".into(), x);
        check_invalid(
            st.metrics.record(m).await,
            "values",
            &format!("record(value cost = {x})"),
        )?;
    }
    for (i, c) in [1.000_000_1, -0.1, f64::NAN, f64::INFINITY, 2.0]
        .into_iter()
        .enumerate()
    {
        let mut p = pattern(&format!("confidence-{i}"), "etl", 1);
        p.confidence = c;
        check_invalid(
            st.metrics.upsert_pattern(p).await,
            "confidence",
            &format!("upsert_pattern(confidence = {c})"),
        )?;
    }
    for status in [RunStatus::Pending, RunStatus::Running] {
        let m = metric(&format!("unfinished-{status}"), "etl", 1, status, 5);
        check_invalid(
            st.metrics.record(m).await,
            "status",
            &format!("record(metric of a {status} run)"),
        )?;
    }
    let mut m = metric("too-long", "etl", 1, RunStatus::Succeeded, 5);
    m.duration_micros = i64::MAX as u64 + 1;
    check_invalid(
        st.metrics.record(m).await,
        "duration_micros",
        "record(duration_micros = i64::MAX + 1)",
    )?;

    // Nothing of it was stored.
    ensure_eq!(
        events_all(st.logs.as_ref(), &rid("r"), 100).await?.len(),
        0,
        "events of run r after refused appends"
    );
    let runs = query_all(st.logs.as_ref(), RunFilter::default(), 100).await?;
    ensure_eq!(
        runs.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
        vec!["r".to_string()],
        "runs after refused creates and imports"
    );
    ensure_eq!(
        runs[0],
        run("r", "etl", 1, 10),
        "run r after refused updates"
    );
    ensure_eq!(
        st.workflows.list(WorkflowQuery::default()).await?.items,
        vec![def("etl", 1, None)],
        "workflows after refused stores"
    );
    ensure_eq!(
        st.metrics.list(MetricQuery::default()).await?.items.len(),
        0,
        "metrics after refused records"
    );
    ensure_eq!(
        st.metrics
            .list_patterns(PatternQuery::default())
            .await?
            .items
            .len(),
        0,
        "patterns after refused upserts"
    );
    ensure_eq!(
        st.artifacts
            .list(ArtifactQuery::default())
            .await?
            .items
            .len(),
        0,
        "artifacts after refused puts"
    );
    Ok(())
}

/// "no input can make a backend touch a file outside its root or run SQL
/// that it did not prepare" and "a value read back equals the value
/// written" (docs/DESIGN.md section 2).
///
/// Hostile but valid values are stored and read back byte for byte: SQL,
/// shell and template fragments, look-alike and invisible Unicode, 10 KB
/// strings, as event kinds, idempotency keys, payloads, run triggers and
/// attributes, workflow ids, descriptions and bodies, pattern kinds and
/// descriptions, metric names, artifact content types, creators, phases and
/// paths (`ｒｅｐｏｒｔ/．．/x`, `%2e%2e/x`, `a∕b`, `CON`). Each is kept
/// distinct from its ASCII look-alike (`report/x`, `a/b`, `é` vs `e`+`◌́`):
/// equality filters and key lookups match only the exact bytes.
pub async fn hostile_but_valid_values_stored_verbatim(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let st = &s.stores;
    let corpus = hostile_strings();
    let distinct: BTreeSet<&String> = corpus.iter().collect();
    ensure_eq!(
        distinct.len(),
        corpus.len(),
        "test setup: corpus strings must be distinct"
    );

    // Labels: event kinds, keys, payloads, triggers.
    let labels: Vec<&String> = corpus.iter().filter(|s| label_ok(s)).collect();
    ensure!(
        labels.len() >= 20,
        "test setup: too few valid labels in the corpus"
    );
    let mut holder = run("holder", "etl", 1, 10);
    for (i, s) in corpus.iter().filter(|s| json_ok(s)).enumerate() {
        holder.attributes.insert(format!("a{i:03}"), json!(s));
        holder.attributes.insert(format!("k{i:03}-{s}"), json!(i));
    }
    st.logs.create_run(holder.clone()).await?;
    ensure_eq!(
        st.logs.get_run(&rid("holder")).await?,
        holder,
        "run with hostile attribute keys and values read back"
    );
    let mut sent = Vec::new();
    for (i, s) in labels.iter().enumerate() {
        let e = NewEvent::new(s.as_str(), json!({"s": s, (*s).clone(): [s, i]}))
            .with_at(t(20, i as i64))
            .with_idempotency_key(s.as_str());
        let got = st.logs.append_event(&rid("holder"), e.clone()).await?;
        ensure_eq!(
            got.seq,
            i as u64 + 1,
            "append_event(kind = key = {})",
            shown(s)
        );
        sent.push(e.into_event(rid("holder"), i as u64 + 1));
    }
    ensure_eq!(
        events_all(st.logs.as_ref(), &rid("holder"), 7).await?,
        sent,
        "events with hostile kinds, keys and payloads read back verbatim"
    );
    for (i, s) in labels.iter().enumerate() {
        let again = st
            .logs
            .append_event(
                &rid("holder"),
                event("again", 30).with_idempotency_key(s.as_str()),
            )
            .await?;
        ensure!(
            again.duplicate && again.seq == i as u64 + 1,
            "append_event(key = {}) again must find exactly that key (seq {}), got {again:?}",
            shown(s),
            i + 1
        );
    }
    let longer = st
        .logs
        .append_event(
            &rid("holder"),
            event("again", 31).with_idempotency_key("'; DROP TABLE runs; -- "),
        )
        .await?;
    ensure!(
        !longer.duplicate,
        "a key differing from a stored one by a trailing space must be new"
    );

    for (i, s) in labels.iter().enumerate() {
        let mut r = run(&format!("trig-{i:03}"), "etl", 2, 100 + i as i64);
        r.trigger = s.to_string();
        st.logs.create_run(r.clone()).await?;
        ensure_eq!(
            st.logs.get_run(&r.id).await?,
            r,
            "run with trigger {} read back",
            shown(s)
        );
    }
    for (i, s) in labels.iter().enumerate() {
        let filter = RunFilter::default().trigger(s.as_str());
        let got = query_all(st.logs.as_ref(), filter.clone(), 10).await?;
        ensure_eq!(
            got.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
            vec![format!("trig-{i:03}")],
            "query_runs(trigger = {}) must match exactly that trigger, no pattern, no look-alike",
            shown(s)
        );
        ensure_eq!(
            st.logs.count_runs(filter).await?,
            1,
            "count_runs(trigger = {})",
            shown(s)
        );
    }

    // Look-alike kinds and triggers stay distinct.
    let looks = [
        "step.started",
        "ｓｔｅｐ.started",
        "Step.started",
        "step.started ",
        "step\u{200b}.started",
    ];
    st.logs.create_run(run("looks", "etl", 1, 5)).await?;
    for (i, k) in looks.iter().enumerate() {
        st.logs
            .append_event(&rid("looks"), event(k, i as i64).with_idempotency_key(*k))
            .await?;
        let mut r = run(&format!("look-{i}"), "look", 1, 50 + i as i64);
        r.trigger = k.to_string();
        st.logs.create_run(r).await?;
    }
    let kinds: Vec<String> = events_all(st.logs.as_ref(), &rid("looks"), 10)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    ensure_eq!(
        kinds,
        looks.map(String::from).to_vec(),
        "look-alike event kinds must be stored as five distinct kinds"
    );
    for (i, k) in looks.iter().enumerate() {
        ensure_eq!(
            st.logs.get_recent(&wf("look"), None, 10).await?.len(),
            looks.len(),
            "runs of workflow `look`"
        );
        let got = query_all(
            st.logs.as_ref(),
            RunFilter::default().workflow(wf("look")).trigger(*k),
            10,
        )
        .await?;
        ensure_eq!(
            got.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
            vec![format!("look-{i}")],
            "query_runs(trigger = {k:?}) among look-alike triggers"
        );
    }

    // Valid but awkward identifiers.
    let ids: Vec<&String> = corpus.iter().filter(|s| id_ok(s)).collect();
    ensure!(
        ids.len() >= 4,
        "test setup: too few valid identifiers in the corpus"
    );
    for (i, id) in ids.iter().enumerate() {
        let d = def(id, 1, None);
        st.workflows.store(d.clone()).await?;
        ensure_eq!(
            st.workflows.get(&wf(id), v(1)).await?,
            d,
            "workflow with id {id:?}"
        );
        let r = run(id, id, 1, 200 + i as i64);
        st.logs.create_run(r.clone()).await?;
        ensure_eq!(st.logs.get_run(&rid(id)).await?, r, "run with id {id:?}");
        let key = ArtifactKey::new(rid(id), phase(id), ArtifactPath::new(id.as_str())?);
        st.artifacts
            .put_bytes(
                &key,
                id.as_bytes().to_vec(),
                PutOptions::default().created_at(t(1, 0)),
            )
            .await?;
        ensure_eq!(
            st.artifacts.get_bytes(&key).await?.1,
            id.as_bytes().to_vec(),
            "artifact {key}"
        );
        let p = pattern(id, id, 1);
        st.metrics.upsert_pattern(p.clone()).await?;
        ensure_eq!(
            st.metrics.get_pattern(&p.id).await?,
            p,
            "pattern with id {id:?}"
        );
    }
    ensure_err!(
        st.workflows.get(&wf("con"), v(1)).await,
        ErrorKind::NotFound,
        "get(workflow `con`) with only `CON` stored"
    );
    ensure_err!(
        st.logs.get_run(&rid("Nul")).await,
        ErrorKind::NotFound,
        "get_run(`Nul`) with only `nul` stored"
    );

    // Text: workflow descriptions and bodies, pattern descriptions.
    let texts: Vec<&String> = corpus.iter().filter(|s| text_ok(s)).collect();
    for (i, s) in texts.iter().enumerate() {
        let mut d = def("texts", i as u32 + 1, None).with_description(s.as_str());
        d.body = json!({"value": s, (*s).clone(): {"nested": [s]}});
        let stored = st.workflows.store(d.clone()).await?;
        ensure_eq!(
            stored.record,
            d,
            "store(workflow with description {})",
            shown(s)
        );
        let back = st.workflows.get(&wf("texts"), v(i as u32 + 1)).await?;
        ensure_eq!(
            back,
            d,
            "workflow with description and body {} read back",
            shown(s)
        );
        ensure_eq!(
            back.content_hash(),
            d.content_hash(),
            "content hash with {}",
            shown(s)
        );
        let mut p = pattern(&format!("text-{i:03}"), "texts", i as i64);
        p.description = s.to_string();
        p.data = json!({"why": s});
        if label_ok(s) {
            p.kind = s.to_string();
        }
        st.metrics.upsert_pattern(p.clone()).await?;
        ensure_eq!(
            st.metrics.get_pattern(&p.id).await?,
            p,
            "pattern with description {} read back",
            shown(s)
        );
    }

    // Metric names.
    let mut m = metric("named", "etl", 1, RunStatus::Succeeded, 5);
    for (i, s) in labels.iter().enumerate() {
        m.values.insert(s.to_string(), i as f64 + 0.5);
        m.counters.insert(s.to_string(), i as i64);
    }
    st.metrics.record(m.clone()).await?;
    ensure_eq!(
        st.metrics.get(&rid("named")).await?,
        m,
        "metric with hostile value and counter names read back"
    );
    let summary = st.metrics.summary(&wf("etl"), Default::default()).await?;
    ensure_eq!(
        summary.values.keys().collect::<Vec<_>>(),
        m.values.keys().collect::<Vec<_>>(),
        "summary value names must be the hostile names verbatim"
    );

    // Artifact paths, content types and creators.
    let mut paths: Vec<String> = corpus.iter().filter(|s| path_ok(s)).cloned().collect();
    paths.extend(
        [
            "x",
            "report/x",
            "Report/x",
            "a/b",
            "a\u{2215}b",
            "\u{ff0f}etc\u{ff0f}passwd/x",
            "e",
            "ｒｅｐｏｒｔ/x",
        ]
        .map(String::from),
    );
    paths.sort();
    paths.dedup();
    let label_list: Vec<&&String> = labels.iter().collect();
    let mut want = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = ArtifactKey::new(rid("holder"), phase("out"), ArtifactPath::new(p.as_str())?);
        let label = label_list[i % label_list.len()];
        let body = format!("{i}:{p}").into_bytes();
        let info = st
            .artifacts
            .put_bytes(
                &key,
                body.clone(),
                PutOptions::default()
                    .content_type(label.as_str())
                    .created_by(label.as_str())
                    .created_at(t(40, i as i64)),
            )
            .await?;
        ensure!(
            info.inserted,
            "put({}) must store a new artifact: it is not the same path as any other",
            shown(p)
        );
        want.push((key, body, info.record));
    }
    for (key, body, info) in &want {
        let (got_info, got_body) = st.artifacts.get_bytes(key).await?;
        ensure_eq!(
            &got_info,
            info,
            "info of artifact {} read back",
            shown(key.path.as_str())
        );
        ensure_eq!(
            &got_body,
            body,
            "bytes of artifact {} read back",
            shown(key.path.as_str())
        );
    }
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = st
            .artifacts
            .list(
                ArtifactQuery::run(rid("holder"))
                    .with_phase(phase("out"))
                    .with_limit(5)
                    .with_cursor(cursor),
            )
            .await?;
        listed.extend(
            page.items
                .into_iter()
                .map(|i| i.key.path.as_str().to_string()),
        );
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut bytewise = paths.clone();
    bytewise.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ensure_eq!(
        listed,
        bytewise,
        "artifact list must hold every hostile path exactly once, verbatim, bytewise ordered, distinct from look-alikes"
    );
    Ok(())
}

/// "page with an opaque cursor" (docs/DESIGN.md section 4) and "a bad one is
/// `Error::InvalidInput` naming the field" (section 2), for cursors and
/// page sizes (core/README.md: "`limit` is 1 to 10,000").
///
/// On every paged query (workflows, runs, events, metrics, patterns,
/// artifacts), garbage cursors (SQL fragments, random hex, empty, hex of
/// JSON of the wrong shape, well-formed keys carrying invalid ids, paths
/// or times, and real cursors of another query kind) are `InvalidInput`
/// naming `cursor`; limits 0, 10,001 and `usize::MAX` are `InvalidInput`
/// naming `limit`, and 10,000 is accepted. For a run that does not exist,
/// bad input is reported before `NotFound`. Nothing changes.
pub async fn hostile_cursors_and_limits_rejected(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let st = &s.stores;
    st.workflows.store(def("etl", 1, None)).await?;
    st.workflows.store(def("etl", 2, None)).await?;
    st.logs.create_run(run("r1", "etl", 1, 10)).await?;
    st.logs.create_run(run("r2", "etl", 1, 11)).await?;
    st.logs
        .append_events(
            &rid("r1"),
            vec![event("a", 1), event("b", 2), event("c", 3)],
        )
        .await?;
    st.metrics
        .record(metric("r1", "etl", 1, RunStatus::Succeeded, 5))
        .await?;
    st.metrics
        .record(metric("r2", "etl", 1, RunStatus::Failed, 6))
        .await?;
    st.metrics.upsert_pattern(pattern("p1", "etl", 1)).await?;
    st.metrics.upsert_pattern(pattern("p2", "etl", 2)).await?;
    for p in ["a", "b"] {
        st.artifacts
            .put_bytes(
                &akey("r1", "out", p),
                p.as_bytes().to_vec(),
                PutOptions::default(),
            )
            .await?;
    }

    // Real cursors: one of events, one of workflows.
    let event_cursor = st
        .logs
        .list_events(&rid("r1"), EventQuery::default().with_limit(1))
        .await?
        .next;
    let workflow_cursor = st
        .workflows
        .list(WorkflowQuery::default().with_limit(1))
        .await?
        .next;
    let (Some(event_cursor), Some(workflow_cursor)) = (event_cursor, workflow_cursor) else {
        return Err(RuleError::Failed(
            "list_events(limit 1) of 3 events and list(limit 1) of 2 workflows must both set next"
                .into(),
        ));
    };

    let hex = |v: serde_json::Value| Cursor::encode(&v);
    let mut garbage: Vec<(String, Cursor)> = [
        "'; DROP TABLE runs; --",
        "\" OR 1=1 --",
        "",
        "zz",
        "deadbeef",
        "00ff00ff00ff00ff00ff",
        "%2e%2e",
        "．．",
    ]
    .iter()
    .map(|g| (format!("garbage {g:?}"), Cursor::from_string(*g)))
    .collect();
    garbage.push((
        "a 10 KB string".into(),
        Cursor::from_string("7b".repeat(5 * 1024)),
    ));
    for v in [
        json!(null),
        json!({}),
        json!([]),
        json!("'; DROP TABLE runs; --"),
        json!(42),
    ] {
        garbage.push((format!("the hex of {v}"), hex(v)));
    }
    let common = garbage.clone();

    let good_time = "2026-01-01T00:00:00.000000Z";
    let per_query: Vec<(&str, Vec<(String, Cursor)>)> = vec![
        (
            "workflows.list",
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                (
                    "a forged key with id `'; DROP`".into(),
                    hex(json!({"id": "'; DROP TABLE workflows; --", "version": 1})),
                ),
                (
                    "a forged key with version 0".into(),
                    hex(json!({"id": "etl", "version": 0})),
                ),
            ],
        ),
        (
            "query_runs",
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with id `../x`".into(),
                    hex(json!({"started_at": good_time, "id": "../x"})),
                ),
                (
                    "a forged key with a bad time".into(),
                    hex(json!({"started_at": "yesterday'; --", "id": "r1"})),
                ),
            ],
        ),
        (
            "list_events",
            vec![
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with seq `1; DROP`".into(),
                    hex(json!({"seq": "1; DROP TABLE events"})),
                ),
                ("a forged key with seq -5".into(), hex(json!({"seq": -5}))),
            ],
        ),
        (
            "metrics.list",
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with run id `' OR 1=1 --`".into(),
                    hex(json!({"run_id": "' OR 1=1 --"})),
                ),
            ],
        ),
        (
            "list_patterns",
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with id `..`".into(),
                    hex(json!({"detected_at": good_time, "id": ".."})),
                ),
            ],
        ),
        (
            "artifacts.list",
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with path `../../etc/passwd`".into(),
                    hex(json!({"run_id": "r1", "phase": "out", "path": "../../etc/passwd"})),
                ),
                (
                    "a forged key with phase `/tmp`".into(),
                    hex(json!({"run_id": "r1", "phase": "/tmp", "path": "a"})),
                ),
            ],
        ),
    ];

    for (query, specific) in per_query {
        for (what, cursor) in common.iter().cloned().chain(specific) {
            let c = Some(cursor);
            let label = format!("{query} with {what} as cursor");
            match query {
                "workflows.list" => check_invalid(
                    st.workflows
                        .list(WorkflowQuery::default().with_cursor(c))
                        .await,
                    "cursor",
                    &label,
                )?,
                "query_runs" => check_invalid(
                    st.logs.query_runs(RunQuery::default().with_cursor(c)).await,
                    "cursor",
                    &label,
                )?,
                "list_events" => {
                    check_invalid(
                        st.logs
                            .list_events(&rid("r1"), EventQuery::default().with_cursor(c.clone()))
                            .await,
                        "cursor",
                        &label,
                    )?;
                    check_invalid(
                        st.logs
                            .list_events(&rid("missing"), EventQuery::default().with_cursor(c))
                            .await,
                        "cursor",
                        &format!("{label}, for a run that does not exist (input before existence)"),
                    )?;
                }
                "metrics.list" => check_invalid(
                    st.metrics.list(MetricQuery::default().with_cursor(c)).await,
                    "cursor",
                    &label,
                )?,
                "list_patterns" => check_invalid(
                    st.metrics
                        .list_patterns(PatternQuery::default().with_cursor(c))
                        .await,
                    "cursor",
                    &label,
                )?,
                _ => check_invalid(
                    st.artifacts
                        .list(ArtifactQuery::default().with_cursor(c))
                        .await,
                    "cursor",
                    &label,
                )?,
            }
        }
    }

    for limit in [0, MAX_PAGE_LIMIT + 1, usize::MAX] {
        let label = |q: &str| format!("{q} with limit {limit}");
        check_invalid(
            st.workflows
                .list(WorkflowQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("workflows.list"),
        )?;
        check_invalid(
            st.logs
                .query_runs(RunQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("query_runs"),
        )?;
        check_invalid(
            st.logs
                .list_events(&rid("r1"), EventQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("list_events"),
        )?;
        check_invalid(
            st.logs
                .list_events(&rid("missing"), EventQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("list_events of a run that does not exist (input before existence)"),
        )?;
        check_invalid(
            st.metrics
                .list(MetricQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("metrics.list"),
        )?;
        check_invalid(
            st.metrics
                .list_patterns(PatternQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("list_patterns"),
        )?;
        check_invalid(
            st.artifacts
                .list(ArtifactQuery::default().with_limit(limit))
                .await,
            "limit",
            &label("artifacts.list"),
        )?;
        check_invalid(
            st.logs.get_recent(&wf("etl"), None, limit).await,
            "limit",
            &label("get_recent"),
        )?;
    }
    // The largest page is allowed.
    let max = MAX_PAGE_LIMIT;
    ensure_eq!(
        st.workflows
            .list(WorkflowQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        2,
        "workflows.list(limit {max})"
    );
    ensure_eq!(
        st.logs
            .query_runs(RunQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        2,
        "query_runs(limit {max})"
    );
    ensure_eq!(
        st.logs
            .list_events(&rid("r1"), EventQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        3,
        "list_events(limit {max})"
    );
    ensure_eq!(
        st.metrics
            .list(MetricQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        2,
        "metrics.list(limit {max})"
    );
    ensure_eq!(
        st.metrics
            .list_patterns(PatternQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        2,
        "list_patterns(limit {max})"
    );
    ensure_eq!(
        st.artifacts
            .list(ArtifactQuery::default().with_limit(max))
            .await?
            .items
            .len(),
        2,
        "artifacts.list(limit {max})"
    );
    // The real cursors still work where they belong.
    let rest = st
        .logs
        .list_events(
            &rid("r1"),
            EventQuery::default().with_cursor(Some(event_cursor)),
        )
        .await?;
    ensure_eq!(
        rest.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3],
        "list_events after its own cursor"
    );
    let rest = st
        .workflows
        .list(WorkflowQuery::default().with_cursor(Some(workflow_cursor)))
        .await?;
    ensure_eq!(
        rest.items,
        vec![def("etl", 2, None)],
        "workflows.list after its own cursor"
    );
    Ok(())
}

/// `levels` arrays nested in each other around the number 1.
fn nested(levels: usize) -> serde_json::Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!([v]);
    }
    v
}

/// "JSON that nests arrays and objects more than
/// `runstore_core::text::MAX_JSON_DEPTH` levels is refused on every write
/// (`InvalidInput` naming the field), and nothing of it is stored; JSON at
/// the limit is stored and reads back equal." A deeper value could be
/// acknowledged and then never read back.
pub async fn hostile_deep_json_refused_on_every_write(f: &dyn StoreFactory) -> RuleResult {
    use runstore_core::text::MAX_JSON_DEPTH;
    let s = f.create().await?;
    let st = &s.stores;
    let deep = nested(MAX_JSON_DEPTH + 1);
    let at_limit = nested(MAX_JSON_DEPTH);
    // A map field counts as one level itself.
    let in_map = |v: serde_json::Value| {
        let mut m = runstore_core::JsonMap::new();
        m.insert("deep".into(), v);
        m
    };

    let mut body = def("etl", 1, None);
    body.body = deep.clone();
    check_invalid(st.workflows.store(body).await, "body", "store(deep body)")?;
    let mut ok_body = def("etl", 1, None);
    ok_body.body = at_limit.clone();
    st.workflows.store(ok_body.clone()).await?;
    ensure_eq!(
        st.workflows.get(&wf("etl"), v(1)).await?.body,
        at_limit,
        "a body at the depth limit reads back equal"
    );

    let mut r = run("deep", "etl", 1, 10);
    r.attributes = in_map(at_limit.clone());
    check_invalid(
        st.logs.create_run(r).await,
        "attributes",
        "create_run(deep attributes)",
    )?;
    ensure_err!(
        st.logs.get_run(&rid("deep")).await,
        ErrorKind::NotFound,
        "a refused run must not be stored"
    );
    let mut r = run("r", "etl", 1, 10);
    r.attributes = in_map(nested(MAX_JSON_DEPTH - 1));
    st.logs.create_run(r.clone()).await?;
    ensure!(
        st.logs.get_run(&rid("r")).await?.same_content(&r),
        "attributes at the depth limit read back equal"
    );

    check_invalid(
        st.logs
            .append_event(
                &rid("r"),
                NewEvent::new("x", deep.clone()).with_at(t(11, 0)),
            )
            .await,
        "payload",
        "append_event(deep payload)",
    )?;
    let a = st
        .logs
        .append_event(
            &rid("r"),
            NewEvent::new("x", at_limit.clone()).with_at(t(12, 0)),
        )
        .await?;
    ensure_eq!(a.seq, 1, "the refused event must not have taken number 1");
    let events = events_all(st.logs.as_ref(), &rid("r"), 10).await?;
    ensure_eq!(events.len(), 1, "events stored");
    ensure_eq!(
        events[0].payload,
        at_limit,
        "a payload at the limit reads back equal"
    );

    let mut p = pattern("p1", "etl", 20);
    p.data = deep;
    check_invalid(
        st.metrics.upsert_pattern(p).await,
        "data",
        "upsert_pattern(deep data)",
    )?;
    ensure_err!(
        st.metrics.get_pattern(&PatternId::new("p1")?).await,
        ErrorKind::NotFound,
        "a refused pattern must not be stored"
    );
    let mut p = pattern("p2", "etl", 20);
    p.data = at_limit.clone();
    st.metrics.upsert_pattern(p).await?;
    ensure_eq!(
        st.metrics.get_pattern(&PatternId::new("p2")?).await?.data,
        at_limit,
        "pattern data at the limit reads back equal"
    );
    // Reads of a page holding it still work.
    let page = st.logs.query_runs(RunQuery::default()).await?;
    ensure_eq!(page.items.len(), 1, "runs listed");
    Ok(())
}
