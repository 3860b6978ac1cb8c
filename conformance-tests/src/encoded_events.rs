//! The bulk path with payloads as JSON text (docs/DESIGN.md section 4,
//! runs and events): `events_of_small_runs_encoded` answers what
//! `events_of_small_runs` answers, and `import_runs_encoded` stores what
//! `import_runs` stores, under the same rules, whatever text a payload is
//! written as.

use runstore_core::{
    EncodedEvent, EncodedRun, ErrorKind, Event, JsonText, LogRepository, NewEvent, RunWithEvents,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{rid, run, t};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err};

/// Payloads of every JSON shape: what text carries must read back as the
/// same values.
fn payloads() -> Vec<serde_json::Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-17),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.1),
        json!(1.5e-7),
        json!(6.02214076e23),
        json!(""),
        json!("quote \" backslash \\ newline \n tab \t"),
        json!("ünïcødé ✓ 😀"),
        json!([]),
        json!({}),
        json!({"zeta": 1, "alpha": [1, {"b": 2, "a": null}], "mid": {"x": "y"}}),
        json!([[[["deep"]]]]),
    ]
}

/// Run `id` with one event per payload of [`payloads`], from `first`.
fn run_with_payloads(id: &str, start: i64, first: usize) -> RunWithEvents {
    let r = run(id, "etl", 1, start);
    let all = payloads();
    let events = all
        .iter()
        .cycle()
        .skip(first)
        .take(all.len())
        .enumerate()
        .map(|(i, p)| {
            NewEvent::new("step", p.clone())
                .with_at(t(start + i as i64, 0))
                .into_event(r.id.clone(), i as u64 + 1)
        })
        .collect();
    RunWithEvents { run: r, events }
}

fn encoded(r: &RunWithEvents) -> Result<EncodedRun, RuleError> {
    Ok(EncodedRun::from_run(r.clone())?)
}

/// What `events_of_runs` gives of `r`'s run, as the run record with them.
async fn stored(logs: &dyn LogRepository, r: &RunWithEvents) -> Result<RunWithEvents, RuleError> {
    let events = logs.events_of_runs(std::slice::from_ref(&r.run.id)).await?;
    Ok(RunWithEvents {
        run: logs.get_run(&r.run.id).await?,
        events: events.into_iter().next().unwrap_or_default(),
    })
}

/// "`events_of_small_runs_encoded(ids, max)` gives the runs, events and
/// `None`s `events_of_small_runs(ids, max)` gives, each payload JSON text
/// that reads as the same value; its input is checked the same way."
pub async fn event_reads_encoded_equal_parsed_reads(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let n = payloads().len();
    let mut batch = vec![run_with_payloads("a", 10, 0), run_with_payloads("b", 20, 5)];
    // A run of fewer events, and one with none.
    let mut short = run_with_payloads("c", 30, 9);
    short.events.truncate(3);
    batch.push(short);
    batch.push(RunWithEvents {
        run: run("d", "etl", 1, 40),
        events: Vec::new(),
    });
    logs.import_runs(batch).await?;
    // Events appended one by one go the other write path of a backend.
    logs.create_run(run("e", "etl", 1, 50)).await?;
    for p in payloads() {
        logs.append_event(&rid("e"), NewEvent::new("log", p).with_at(t(50, 0)))
            .await?;
    }
    let ids = [
        rid("e"),
        rid("nope"),
        rid("a"),
        rid("c"),
        rid("d"),
        rid("b"),
    ];
    for max in [1usize, 3, 4, n, n + 1, 1000] {
        let parsed = logs.events_of_small_runs(&ids, max).await?;
        let text = logs.events_of_small_runs_encoded(&ids, max).await?;
        ensure_eq!(
            text.len(),
            ids.len(),
            "events_of_small_runs_encoded(max {max}): one answer per id"
        );
        for ((id, text), parsed) in ids.iter().zip(text).zip(&parsed) {
            let read: Option<Vec<Event>> = text
                .map(|events| {
                    events
                        .into_iter()
                        .map(EncodedEvent::into_event)
                        .collect::<runstore_core::Result<_>>()
                })
                .transpose()?;
            ensure_eq!(
                read.as_ref(),
                parsed.as_ref(),
                "events_of_small_runs_encoded(max {max}) of run {id}, read as values, against events_of_small_runs"
            );
        }
    }
    ensure_err!(
        logs.events_of_small_runs_encoded(&[rid("a"), rid("a")], 10)
            .await,
        ErrorKind::InvalidInput,
        "events_of_small_runs_encoded with an id twice"
    );
    ensure_err!(
        logs.events_of_small_runs_encoded(&[rid("a")], 0).await,
        ErrorKind::InvalidInput,
        "events_of_small_runs_encoded with max 0"
    );
    ensure!(
        logs.events_of_small_runs_encoded(&[], 10).await?.is_empty(),
        "events_of_small_runs_encoded of no id answers nothing"
    );
    Ok(())
}

/// "`import_runs_encoded` stores what `import_runs` of the same runs
/// stores: whatever the spacing and key order of a payload's text, its
/// value is what is read back and what an identical import is compared
/// with; a run stored differently is a conflict and nothing of the batch
/// is written."
pub async fn run_import_encoded_equals_import(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let a = run_with_payloads("a", 10, 0);
    let b = run_with_payloads("b", 20, 3);
    // Run `a` goes in with its payloads written by hand: spaces, keys out of
    // order.
    let mut a_text = encoded(&a)?;
    for (e, p) in a_text.events.iter_mut().zip(payloads()) {
        if p.is_object() && !p.as_object().is_some_and(|m| m.is_empty()) {
            e.payload = JsonText::new(
                r#" { "mid" : {"x":"y"}, "zeta": 1,
                    "alpha": [ 1, {"a": null, "b": 2} ] } "#,
            )?;
        }
    }
    ensure!(
        a_text.same_content(&a)?,
        "the hand-written payload reads as the fixture's"
    );
    let out = logs
        .import_runs_encoded(vec![a_text.clone(), encoded(&b)?])
        .await?;
    ensure_eq!(
        (out.inserted, out.unchanged),
        (2, 0),
        "import_runs_encoded of two new runs"
    );
    for r in [&a, &b] {
        let got = stored(logs, r).await?;
        ensure!(
            got.same_content(r),
            "run {} imported with import_runs_encoded reads back as imported: {got:?}",
            r.run.id
        );
    }
    // The same runs again, in either form, change nothing.
    let again = logs.import_runs_encoded(vec![a_text.clone()]).await?;
    ensure_eq!(
        (again.inserted, again.unchanged),
        (0, 1),
        "import_runs_encoded of a run stored identically"
    );
    let again = logs.import_runs(vec![a.clone(), b.clone()]).await?;
    ensure_eq!(
        (again.inserted, again.unchanged),
        (0, 2),
        "import_runs of runs stored by import_runs_encoded"
    );
    // And the other way round.
    let c = run_with_payloads("c", 30, 7);
    logs.import_runs(vec![c.clone()]).await?;
    let again = logs.import_runs_encoded(vec![encoded(&c)?]).await?;
    ensure_eq!(
        (again.inserted, again.unchanged),
        (0, 1),
        "import_runs_encoded of a run stored by import_runs"
    );
    // One payload of another value: a conflict, and the new run of the
    // batch is not written.
    let mut changed = encoded(&b)?;
    changed.events[2].payload = JsonText::new(r#"{"other": true}"#)?;
    let fresh = run_with_payloads("d", 40, 1);
    ensure_err!(
        logs.import_runs_encoded(vec![encoded(&fresh)?, changed])
            .await,
        ErrorKind::Conflict,
        "import_runs_encoded of a run whose stored payload differs"
    );
    ensure_err!(
        logs.get_run(&rid("d")).await,
        ErrorKind::NotFound,
        "the new run of a batch refused as a conflict"
    );
    ensure!(
        stored(logs, &b).await?.same_content(&b),
        "run b after the refused batch is as it was"
    );
    Ok(())
}

/// "`import_runs_encoded` refuses what `import_runs` refuses, checked on
/// the text: a payload with NUL in a string or key, or nested more than
/// 64 levels, is InvalidInput naming `payload`; so are the numbering and
/// key rules of a run; nothing of the batch is written."
pub async fn run_import_encoded_validates_payload_text(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let good = run_with_payloads("ok", 10, 0);
    let bad_text = [
        r#"{"note": "a\u0000b"}"#.to_string(),
        r#"{"a\u0000": 1}"#.to_string(),
        format!("{}1{}", "[".repeat(65), "]".repeat(65)),
    ];
    for text in &bad_text {
        let mut bad = encoded(&run_with_payloads("bad", 20, 0))?;
        bad.events[1].payload = JsonText::new(text.clone())?;
        let e = ensure_err!(
            logs.import_runs_encoded(vec![encoded(&good)?, bad]).await,
            ErrorKind::InvalidInput,
            "import_runs_encoded of payload {text:.40}"
        );
        ensure!(
            e.to_string().contains("payload"),
            "the error of payload {text:.40} names the field: {e}"
        );
    }
    let mut gap = encoded(&run_with_payloads("bad", 20, 0))?;
    gap.events[1].seq = 3;
    ensure_err!(
        logs.import_runs_encoded(vec![encoded(&good)?, gap]).await,
        ErrorKind::InvalidInput,
        "import_runs_encoded of a run whose events skip a number"
    );
    let mut twice = encoded(&run_with_payloads("bad", 20, 0))?;
    for e in &mut twice.events[..2] {
        e.idempotency_key = Some("same".into());
    }
    ensure_err!(
        logs.import_runs_encoded(vec![encoded(&good)?, twice]).await,
        ErrorKind::InvalidInput,
        "import_runs_encoded of a run using an idempotency key twice"
    );
    ensure_err!(
        logs.import_runs_encoded(vec![encoded(&good)?, encoded(&good)?])
            .await,
        ErrorKind::InvalidInput,
        "import_runs_encoded of a batch holding a run twice"
    );
    for id in ["ok", "bad"] {
        ensure_err!(
            logs.get_run(&rid(id)).await,
            ErrorKind::NotFound,
            "run {id} after every batch was refused"
        );
    }
    Ok(())
}
