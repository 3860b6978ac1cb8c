//! Labels, free text, JSON and numbers the backend itself must refuse.

use runstore_core::{
    ArtifactQuery, ArtifactStoreExt, MetricQuery, NewEvent, PatternQuery, PutOptions, RunFilter,
    RunQuery, RunStatus, RunUpdate, RunWithEvents, WorkflowQuery,
};
use serde_json::{Value, json};

use super::{Refused, answer, hostile_strings, label_ok, refuse_each, shown, text_ok};
use crate::factory::StoreFactory;
use crate::fixtures::{akey, def, event, metric, pattern, rid, run, t};
use crate::outcome::RuleResult;
use crate::runs::{events_all, query_all};
use crate::{ensure, ensure_eq};

/// Where a string that is not a valid label goes: event kinds and keys,
/// triggers (in a run, an import and a query filter), content types,
/// creators, pattern kinds, metric value and counter names.
const LABELS: &[Refused<String>] = &[
    Refused {
        field: "kind",
        what: "append_event(kind = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let e = NewEvent::new(bad, json!({})).with_at(t(1, 0));
                answer(st.logs.append_event(&rid("r"), e).await)
            })
        },
    },
    Refused {
        field: "idempotency_key",
        what: "append_event(idempotency_key = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let e = event("ok", 1).with_idempotency_key(bad);
                answer(st.logs.append_event(&rid("r"), e).await)
            })
        },
    },
    Refused {
        field: "kind",
        what: "append_events([ok, kind = {}])",
        call: |st, _, bad| {
            Box::pin(async move {
                let events = vec![
                    event("ok", 1),
                    NewEvent::new(bad, json!(1)).with_at(t(2, 0)),
                ];
                answer(st.logs.append_events(&rid("r"), events).await)
            })
        },
    },
    Refused {
        field: "kind",
        what: "append_event(missing run, kind = {}): input is checked before existence",
        call: |st, _, bad| {
            Box::pin(async move {
                let e = NewEvent::new(bad, json!({})).with_at(t(1, 0));
                answer(st.logs.append_event(&rid("missing"), e).await)
            })
        },
    },
    Refused {
        field: "trigger",
        what: "create_run(trigger = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut r = run(&format!("bad-trigger-{i}"), "etl", 1, 20);
                r.trigger = bad;
                answer(st.logs.create_run(r).await)
            })
        },
    },
    Refused {
        field: "trigger",
        what: "import_runs(run with trigger = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut r = run(&format!("bad-trigger-{i}"), "etl", 1, 20);
                r.trigger = bad;
                let runs = vec![RunWithEvents {
                    run: r,
                    events: Vec::new(),
                }];
                answer(st.logs.import_runs(runs).await)
            })
        },
    },
    Refused {
        field: "kind",
        what: "import_runs(event kind = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let id = format!("bad-kind-{i}");
                let imported = RunWithEvents {
                    run: run(&id, "etl", 1, 20),
                    events: vec![
                        NewEvent::new(bad, json!({}))
                            .with_at(t(21, 0))
                            .into_event(rid(&id), 1),
                    ],
                };
                answer(st.logs.import_runs(vec![imported]).await)
            })
        },
    },
    Refused {
        field: "trigger",
        what: "query_runs(trigger = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let q = RunQuery::new(RunFilter::default().trigger(bad));
                answer(st.logs.query_runs(q).await)
            })
        },
    },
    Refused {
        field: "trigger",
        what: "count_runs(trigger = {})",
        call: |st, _, bad| {
            Box::pin(
                async move { answer(st.logs.count_runs(RunFilter::default().trigger(bad)).await) },
            )
        },
    },
    Refused {
        field: "content_type",
        what: "put(content_type = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let key = akey("r", "p", &format!("bad-{i}"));
                let options = PutOptions::default().content_type(bad);
                answer(st.artifacts.put_bytes(&key, b"x".to_vec(), options).await)
            })
        },
    },
    Refused {
        field: "created_by",
        what: "put(created_by = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let key = akey("r", "p", &format!("bad-{i}"));
                let options = PutOptions::default().created_by(bad);
                answer(st.artifacts.put_bytes(&key, b"x".to_vec(), options).await)
            })
        },
    },
    Refused {
        field: "kind",
        what: "upsert_pattern(kind = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut p = pattern(&format!("bad-{i}"), "etl", 1);
                p.kind = bad;
                answer(st.metrics.upsert_pattern(p).await)
            })
        },
    },
    Refused {
        field: "value name",
        what: "record(value name = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut m = metric(&format!("bad-value-{i}"), "etl", 1, RunStatus::Succeeded, 5);
                m.values.insert(bad, 1.0);
                answer(st.metrics.record(m).await)
            })
        },
    },
    Refused {
        field: "value name",
        what: "record_many([fine, value name = {}])",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut m = metric(&format!("bad-value-{i}"), "etl", 1, RunStatus::Succeeded, 5);
                m.values.insert(bad, 1.0);
                let fine = metric("fine", "etl", 1, RunStatus::Failed, 3);
                answer(st.metrics.record_many(vec![fine, m]).await)
            })
        },
    },
    Refused {
        field: "counter name",
        what: "record(counter name = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut m = metric(
                    &format!("bad-counter-{i}"),
                    "etl",
                    1,
                    RunStatus::Succeeded,
                    5,
                );
                m.counters.insert(bad, 1);
                answer(st.metrics.record(m).await)
            })
        },
    },
];

/// Where a string that is not valid free text goes: descriptions.
const TEXTS: &[Refused<String>] = &[
    Refused {
        field: "description",
        what: "store(workflow description = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let d = def("etl", 2 + i as u32, None).with_description(bad);
                answer(st.workflows.store(d).await)
            })
        },
    },
    Refused {
        field: "description",
        what: "upsert_pattern(description = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut p = pattern(&format!("bad-desc-{i}"), "etl", 1);
                p.description = bad;
                answer(st.metrics.upsert_pattern(p).await)
            })
        },
    },
];

/// The JSON fields a value with NUL goes into: run attributes and
/// summaries (on create and on update, also of a missing run), event
/// payloads, workflow bodies, pattern data.
const JSON_WITH_NUL: &[Refused<Value>] = &[
    Refused {
        field: "attributes",
        what: "create_run(attributes = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut r = run(&format!("nul-attr-{i}"), "etl", 1, 30);
                r.attributes = bad.as_object().cloned().unwrap_or_default();
                answer(st.logs.create_run(r).await)
            })
        },
    },
    Refused {
        field: "summaries",
        what: "create_run(summaries = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut r = run(&format!("nul-sum-{i}"), "etl", 1, 30);
                r.summaries = bad.as_object().cloned().unwrap_or_default();
                answer(st.logs.create_run(r).await)
            })
        },
    },
    Refused {
        field: "summaries",
        what: "update_status(r, running, summaries = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let summaries = bad.as_object().cloned().unwrap_or_default();
                let update = RunUpdate::running().with_summaries(summaries);
                answer(st.logs.update_status(&rid("r"), update).await)
            })
        },
    },
    Refused {
        field: "summaries",
        what: "update_status(missing run, summaries = {}): input is checked before existence",
        call: |st, _, bad| {
            Box::pin(async move {
                let summaries = bad.as_object().cloned().unwrap_or_default();
                let update = RunUpdate::running().with_summaries(summaries);
                answer(st.logs.update_status(&rid("missing"), update).await)
            })
        },
    },
    Refused {
        field: "payload",
        what: "append_event(payload = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let e = NewEvent::new("ok", bad).with_at(t(1, 0));
                answer(st.logs.append_event(&rid("r"), e).await)
            })
        },
    },
    Refused {
        field: "body",
        what: "store(workflow body = {})",
        call: |st, _, bad| {
            Box::pin(async move {
                let mut d = def("nul-body", 1, None);
                d.body = bad;
                answer(st.workflows.store(d).await)
            })
        },
    },
    Refused {
        field: "data",
        what: "upsert_pattern(data = {})",
        call: |st, i, bad| {
            Box::pin(async move {
                let mut p = pattern(&format!("nul-data-{i}"), "etl", 1);
                p.data = bad;
                answer(st.metrics.upsert_pattern(p).await)
            })
        },
    },
];

/// A non-finite metric value.
const METRIC_VALUE: &[Refused<f64>] = &[Refused {
    field: "values",
    what: "record(value cost = {})",
    call: |st, i, x| {
        Box::pin(async move {
            let mut m = metric(&format!("nonfinite-{i}"), "etl", 1, RunStatus::Succeeded, 5);
            m.values.insert("cost".into(), x);
            answer(st.metrics.record(m).await)
        })
    },
}];

/// A confidence outside `[0, 1]`.
const CONFIDENCE: &[Refused<f64>] = &[Refused {
    field: "confidence",
    what: "upsert_pattern(confidence = {})",
    call: |st, i, c| {
        Box::pin(async move {
            let mut p = pattern(&format!("confidence-{i}"), "etl", 1);
            p.confidence = c;
            answer(st.metrics.upsert_pattern(p).await)
        })
    },
}];

/// A metric of a run that has not finished.
const METRIC_STATUS: &[Refused<RunStatus>] = &[Refused {
    field: "status",
    what: "record(metric of a {} run)",
    call: |st, _, status| {
        Box::pin(async move {
            let m = metric(&format!("unfinished-{status}"), "etl", 1, status, 5);
            answer(st.metrics.record(m).await)
        })
    },
}];

/// A duration beyond what a signed 64-bit column holds.
const DURATION: &[Refused<u64>] = &[Refused {
    field: "duration_micros",
    what: "record(duration_micros = {})",
    call: |st, _, micros| {
        Box::pin(async move {
            let mut m = metric("too-long", "etl", 1, RunStatus::Succeeded, 5);
            m.duration_micros = micros;
            answer(st.metrics.record(m).await)
        })
    },
}];

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
    refuse_each(st, LABELS, &bad_labels, |s| shown(s)).await?;

    let bad_text: Vec<String> = hostile_strings()
        .into_iter()
        .filter(|s| !text_ok(s))
        .collect();
    ensure!(
        !bad_text.is_empty(),
        "test setup: no invalid text in the corpus"
    );
    refuse_each(st, TEXTS, &bad_text, |s| shown(s)).await?;

    // NUL inside JSON, as a value and as a key, deep down.
    let nul_values = [
        json!({"a": "x\u{0}y"}),
        json!({"a\u{0}": 1}),
        json!({"a": [1, {"b": ["\u{0}"]}]}),
    ];
    refuse_each(st, JSON_WITH_NUL, &nul_values, |v| {
        format!("JSON {}", serde_json::to_string(v).unwrap_or_default())
    })
    .await?;

    // Numbers.
    let non_finite = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    refuse_each(st, METRIC_VALUE, &non_finite, |x| x.to_string()).await?;
    let confidences = [1.000_000_1, -0.1, f64::NAN, f64::INFINITY, 2.0];
    refuse_each(st, CONFIDENCE, &confidences, |c| c.to_string()).await?;
    let unfinished = [RunStatus::Pending, RunStatus::Running];
    refuse_each(st, METRIC_STATUS, &unfinished, |s| s.to_string()).await?;
    refuse_each(st, DURATION, &[i64::MAX as u64 + 1], |_| {
        "i64::MAX + 1".to_string()
    })
    .await?;

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
