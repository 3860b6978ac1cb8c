//! Hostile but valid values, stored and read back byte for byte.

use std::collections::BTreeSet;

use runstore_core::{
    ArtifactKey, ArtifactPath, ArtifactQuery, ArtifactStoreExt, ErrorKind, LogRepositoryExt,
    NewEvent, PutOptions, RunFilter, RunStatus,
};
use serde_json::json;

use super::{Kept, hostile_strings, id_ok, json_ok, keep_each, label_ok, path_ok, shown, text_ok};
use crate::factory::StoreFactory;
use crate::fixtures::{def, event, metric, pattern, phase, rid, run, t, v, wf};
use crate::outcome::RuleResult;
use crate::runs::{events_all, query_all};
use crate::{ensure, ensure_eq, ensure_err};

/// The event appended to run `holder` for the `i`-th valid label `s`: `s`
/// as its kind, idempotency key, and inside its payload as key and value.
fn label_event(i: usize, s: &str) -> NewEvent {
    NewEvent::new(s, json!({"s": s, s: [s, i]}))
        .with_at(t(20, i as i64))
        .with_idempotency_key(s)
}

/// Each valid string written where it may go and read back, in this order
/// (later passes rely on what earlier ones stored): labels as event kinds,
/// keys and payloads, then the keys again, then as triggers, then as
/// trigger filters; identifiers as workflow, run, phase, path and pattern
/// ids; text as workflow descriptions and bodies and pattern descriptions.
const PASSES: &[Kept] = &[
    Kept {
        valid: label_ok,
        check: |st, i, s| {
            Box::pin(async move {
                let got = st
                    .logs
                    .append_event(&rid("holder"), label_event(i, s))
                    .await?;
                ensure_eq!(
                    got.seq,
                    i as u64 + 1,
                    "append_event(kind = key = {})",
                    shown(s)
                );
                Ok(())
            })
        },
    },
    Kept {
        valid: label_ok,
        check: |st, i, s| {
            Box::pin(async move {
                let again = st
                    .logs
                    .append_event(&rid("holder"), event("again", 30).with_idempotency_key(s))
                    .await?;
                ensure!(
                    again.duplicate && again.seq == i as u64 + 1,
                    "append_event(key = {}) again must find exactly that key (seq {}), got {again:?}",
                    shown(s),
                    i + 1
                );
                Ok(())
            })
        },
    },
    Kept {
        valid: label_ok,
        check: |st, i, s| {
            Box::pin(async move {
                let mut r = run(&format!("trig-{i:03}"), "etl", 2, 100 + i as i64);
                r.trigger = s.to_string();
                st.logs.create_run(r.clone()).await?;
                ensure_eq!(
                    st.logs.get_run(&r.id).await?,
                    r,
                    "run with trigger {} read back",
                    shown(s)
                );
                Ok(())
            })
        },
    },
    Kept {
        valid: label_ok,
        check: |st, i, s| {
            Box::pin(async move {
                let filter = RunFilter::default().trigger(s);
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
                Ok(())
            })
        },
    },
    Kept {
        valid: id_ok,
        check: |st, i, id| {
            Box::pin(async move {
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
                let key = ArtifactKey::new(rid(id), phase(id), ArtifactPath::new(id)?);
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
                Ok(())
            })
        },
    },
    Kept {
        valid: text_ok,
        check: |st, i, s| {
            Box::pin(async move {
                let mut d = def("texts", i as u32 + 1, None).with_description(s);
                d.body = json!({"value": s, s: {"nested": [s]}});
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
                Ok(())
            })
        },
    },
];

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
    let labels: Vec<&String> = corpus.iter().filter(|s| label_ok(s)).collect();
    ensure!(
        labels.len() >= 20,
        "test setup: too few valid labels in the corpus"
    );
    ensure!(
        corpus.iter().filter(|s| id_ok(s)).count() >= 4,
        "test setup: too few valid identifiers in the corpus"
    );

    // JSON: every string as an attribute key and value of one run, which
    // also holds the events of the label passes.
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

    keep_each(st, PASSES, &corpus).await?;

    let sent: Vec<_> = labels
        .iter()
        .enumerate()
        .map(|(i, s)| label_event(i, s).into_event(rid("holder"), i as u64 + 1))
        .collect();
    ensure_eq!(
        events_all(st.logs.as_ref(), &rid("holder"), 7).await?,
        sent,
        "events with hostile kinds, keys and payloads read back verbatim"
    );
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

    // Identifiers differing only in case are different identifiers.
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
    let mut want = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = ArtifactKey::new(rid("holder"), phase("out"), ArtifactPath::new(p.as_str())?);
        let label = labels[i % labels.len()];
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
