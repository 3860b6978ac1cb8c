//! JSON nested deeper than core allows, on every write that takes JSON.

use runstore_core::{ErrorKind, NewEvent, PatternId, RunQuery};
use serde_json::json;

use super::check_invalid;
use crate::factory::StoreFactory;
use crate::fixtures::{def, pattern, rid, run, t, v, wf};
use crate::outcome::RuleResult;
use crate::runs::events_all;
use crate::{ensure, ensure_eq, ensure_err};

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
