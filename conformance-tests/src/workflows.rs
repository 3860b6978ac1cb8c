//! Rules for `WorkflowRepository` (docs/DESIGN.md section 4, "Workflows").

use std::collections::BTreeSet;

use runstore_core::{
    ErrorKind, Version, WorkflowDefinition, WorkflowId, WorkflowQuery, WorkflowRepository,
    canonical_json, content_hash,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{def, t, v, wf};
use crate::outcome::RuleResult;
use crate::{ensure, ensure_eq, ensure_err};

/// Reads every page of `list` with `limit`, checking that `next` is set
/// exactly when more items follow, and returns all items in order.
async fn list_all(
    repo: &dyn WorkflowRepository,
    id: Option<WorkflowId>,
    limit: usize,
) -> Result<Vec<WorkflowDefinition>, crate::RuleError> {
    let mut out = Vec::new();
    let mut cursor = None;
    let mut pages = 0usize;
    loop {
        let mut q = WorkflowQuery::default()
            .with_limit(limit)
            .with_cursor(cursor.clone());
        q.id = id.clone();
        let page = repo.list(q).await?;
        pages += 1;
        ensure!(
            page.items.len() <= limit,
            "list(limit {limit}) page {pages} returned {} items, more than the limit",
            page.items.len()
        );
        out.extend(page.items.iter().cloned());
        match page.next {
            Some(next) => {
                ensure!(
                    page.items.len() == limit,
                    "list(limit {limit}) page {pages} has `next` set but only {} items: \
                     `next` must be set exactly when more items follow, and a page that is \
                     not the last is full",
                    page.items.len()
                );
                cursor = Some(next);
            }
            None => return Ok(out),
        }
        ensure!(
            pages <= 1000,
            "list(limit {limit}) returned more than 1000 pages; the cursor does not advance"
        );
    }
}

/// "`store` of an absent `(id, version)` inserts it."
///
/// Stores a definition, checks `inserted == true`, that the returned record
/// equals what was given, and that `get` returns it with every field
/// (including `created_at` and the description) as written.
pub async fn workflow_store_inserts_absent_version(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    let d = def("etl", 1, None).with_description("first version\nwith two lines");
    let w = repo.store(d.clone()).await?;
    ensure!(
        w.inserted,
        "store(etl v1) into an empty store: expected inserted = true, got false"
    );
    ensure_eq!(w.record, d, "store(etl v1) must return the stored record");
    let got = repo.get(&wf("etl"), v(1)).await?;
    ensure_eq!(
        got,
        d,
        "get(etl, 1) after store must return the definition as written"
    );

    // A second version and another workflow are inserted too.
    let d2 = def("etl", 2, Some(1));
    ensure!(
        repo.store(d2.clone()).await?.inserted,
        "store(etl v2, parent 1): expected inserted = true"
    );
    let other = def("report", 1, None);
    ensure!(
        repo.store(other.clone()).await?.inserted,
        "store(report v1): expected inserted = true"
    );
    ensure_eq!(repo.get(&wf("etl"), v(2)).await?, d2, "get(etl, 2)");
    ensure_eq!(
        repo.get(&wf("report"), v(1)).await?,
        other,
        "get(report, 1)"
    );
    ensure_eq!(
        repo.get(&wf("etl"), v(1)).await?,
        d,
        "get(etl, 1) after more stores"
    );
    Ok(())
}

/// "The same version again with identical content is a no-op that succeeds
/// (migrations re-run)."
///
/// Storing the same content again, also with another `created_at` (which is
/// not content, see core/README.md), returns the stored record with
/// `inserted == false` and changes nothing.
pub async fn workflow_store_same_content_is_noop(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    let d = def("etl", 1, None).with_created_at(t(10, 123_456));
    repo.store(d.clone()).await?;

    let again = repo.store(d.clone()).await?;
    ensure!(
        !again.inserted,
        "store(etl v1) twice with identical content: expected inserted = false on the second call"
    );
    ensure_eq!(
        again.record,
        d,
        "the second store must return the stored record"
    );

    let later = d.clone().with_created_at(t(99_999, 1));
    let again = repo.store(later).await?;
    ensure!(
        !again.inserted,
        "store(etl v1) again with only another created_at: created_at is not content, expected a no-op (inserted = false)"
    );
    ensure_eq!(
        again.record.created_at,
        t(10, 123_456),
        "store(etl v1) again with another created_at must return the STORED record (original created_at)"
    );
    ensure_eq!(
        repo.get(&wf("etl"), v(1)).await?,
        d,
        "get(etl, 1) after no-op stores must still return the original record"
    );
    ensure_eq!(
        repo.list_versions(&wf("etl")).await?.len(),
        1,
        "list_versions(etl) after storing v1 three times"
    );
    Ok(())
}

/// "with other content it is `Conflict`: versions are immutable."
///
/// Changing the body, the description or the parent of a stored version is
/// `Conflict`, and the stored version is left unchanged.
pub async fn workflow_store_other_content_conflicts(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    repo.store(def("etl", 1, None)).await?;
    let d2 = def("etl", 2, None);
    repo.store(d2.clone()).await?;

    let mut body = d2.clone();
    body.body = json!({"steps": [{"name": "extract", "retries": 3}], "schedule": "@daily"});
    ensure_err!(
        repo.store(body).await,
        ErrorKind::Conflict,
        "store(etl v2) again with another body"
    );
    let desc = d2.clone().with_description("changed");
    ensure_err!(
        repo.store(desc).await,
        ErrorKind::Conflict,
        "store(etl v2) again with another description"
    );
    let parent = d2.clone().with_parent(v(1));
    ensure_err!(
        repo.store(parent).await,
        ErrorKind::Conflict,
        "store(etl v2) again with a parent (stored without one)"
    );
    ensure_eq!(
        repo.get(&wf("etl"), v(2)).await?,
        d2,
        "get(etl, 2) after refused conflicting stores must return the original"
    );
    ensure_eq!(
        repo.list_versions(&wf("etl")).await?.len(),
        2,
        "list_versions(etl) after refused conflicting stores"
    );
    Ok(())
}

/// "Lineage: a version may name a parent version of the same workflow, which
/// must exist when it is stored."
///
/// A missing parent is `NotFound`; a parent not lower than the version is
/// `InvalidInput` (core/README.md); in both cases nothing is stored. A
/// parent of the same number in another workflow does not count.
pub async fn workflow_parent_must_exist_and_be_lower(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    repo.store(def("etl", 1, None)).await?;
    repo.store(def("other", 2, None)).await?;

    ensure_err!(
        repo.store(def("etl", 3, Some(2))).await,
        ErrorKind::NotFound,
        "store(etl v3, parent 2) where etl v2 is not stored"
    );
    ensure_err!(
        repo.store(def("fresh", 3, Some(2))).await,
        ErrorKind::NotFound,
        "store(fresh v3, parent 2) where only `other` has a version 2"
    );
    ensure_err!(
        repo.get(&wf("etl"), v(3)).await,
        ErrorKind::NotFound,
        "get(etl, 3) after a refused store (missing parent) must find nothing"
    );
    ensure_err!(
        repo.store(def("etl", 4, Some(4))).await,
        ErrorKind::InvalidInput,
        "store(etl v4, parent 4): parent equal to version"
    );
    ensure_err!(
        repo.store(def("etl", 4, Some(7))).await,
        ErrorKind::InvalidInput,
        "store(etl v4, parent 7): parent higher than version"
    );
    // Validation comes before existence: parent 9 is neither lower nor stored.
    ensure_err!(
        repo.store(def("etl", 5, Some(9))).await,
        ErrorKind::InvalidInput,
        "store(etl v5, parent 9): invalid and missing parent, InvalidInput is checked first"
    );
    ensure_err!(
        repo.get(&wf("etl"), v(4)).await,
        ErrorKind::NotFound,
        "get(etl, 4) after refused stores (bad parent) must find nothing"
    );

    // A parent that exists is accepted, even when it is not the latest.
    let child = def("etl", 2, Some(1));
    ensure!(
        repo.store(child.clone()).await?.inserted,
        "store(etl v2, parent 1) with etl v1 stored"
    );
    let skip = def("etl", 5, Some(1));
    ensure!(
        repo.store(skip.clone()).await?.inserted,
        "store(etl v5, parent 1)"
    );
    ensure_eq!(
        repo.get(&wf("etl"), v(5)).await?.parent,
        Some(v(1)),
        "parent of etl v5 read back"
    );
    ensure_eq!(
        repo.list_versions(&wf("etl")).await?.len(),
        3,
        "etl must hold exactly v1, v2 and v5"
    );
    Ok(())
}

/// "`get` ... `NotFound`" (docs/DESIGN.md section 3: "the id, version, run or
/// artifact does not exist").
///
/// Getting an unknown workflow, or an unknown version of a known workflow,
/// is `NotFound`.
pub async fn workflow_get_missing_is_not_found(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    ensure_err!(
        repo.get(&wf("nothing"), v(1)).await,
        ErrorKind::NotFound,
        "get(nothing, 1) on an empty store"
    );
    repo.store(def("etl", 1, None)).await?;
    repo.store(def("etl", 2, Some(1))).await?;
    ensure_err!(
        repo.get(&wf("etl"), v(3)).await,
        ErrorKind::NotFound,
        "get(etl, 3) with only v1 and v2 stored"
    );
    ensure_err!(
        repo.get(&wf("etl"), Version::new(i32::MAX as u32)?).await,
        ErrorKind::NotFound,
        "get(etl, {}) (the highest version)",
        i32::MAX
    );
    // Ids are case-sensitive and compared exactly.
    ensure_err!(
        repo.get(&wf("ETL"), v(1)).await,
        ErrorKind::NotFound,
        "get(ETL, 1) with only `etl` stored: ids are case-sensitive"
    );
    ensure_err!(
        repo.get(&wf("etl-"), v(1)).await,
        ErrorKind::NotFound,
        "get(etl-, 1) with only `etl` stored"
    );
    ensure_err!(
        repo.get_latest(&wf("nothing")).await,
        ErrorKind::NotFound,
        "get_latest(nothing)"
    );
    Ok(())
}

/// "`get_latest` is the highest version stored."
///
/// Versions stored out of order (3, 1, 10, 2): the latest is 10 (numeric,
/// not text, order), and an unknown workflow is `NotFound`.
pub async fn workflow_get_latest_is_highest_version(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    for n in [3, 1, 10, 2] {
        repo.store(def("etl", n, None)).await?;
    }
    repo.store(def("etl-b", 11, None)).await?;
    repo.store(def("et", 12, None)).await?;
    let latest = repo.get_latest(&wf("etl")).await?;
    ensure_eq!(
        latest,
        def("etl", 10, None),
        "get_latest(etl) with versions 3, 1, 10, 2 stored (in that order) must be v10"
    );
    repo.store(def("etl", 9, Some(3))).await?;
    ensure_eq!(
        repo.get_latest(&wf("etl")).await?.version,
        v(10),
        "get_latest(etl) after storing the lower v9"
    );
    ensure_err!(
        repo.get_latest(&wf("unknown")).await,
        ErrorKind::NotFound,
        "get_latest(unknown)"
    );
    Ok(())
}

/// "`list(id)` is ascending by version."
///
/// `list_versions` returns every version of one workflow ascending
/// (numerically: 2 before 10), none of another workflow, and an empty list
/// for an unknown workflow.
pub async fn workflow_list_versions_ascending(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    ensure_eq!(
        repo.list_versions(&wf("etl")).await?,
        Vec::<WorkflowDefinition>::new(),
        "list_versions(etl) on an empty store"
    );
    for n in [10, 2, 1, 30, 3] {
        repo.store(def("etl", n, None)).await?;
    }
    repo.store(def("etl2", 4, None)).await?;
    repo.store(def("et", 5, None)).await?;
    let got: Vec<u32> = repo
        .list_versions(&wf("etl"))
        .await?
        .iter()
        .map(|d| d.version.get())
        .collect();
    ensure_eq!(
        got,
        vec![1, 2, 3, 10, 30],
        "list_versions(etl) must be ascending and hold only etl"
    );
    let full = repo.list_versions(&wf("etl")).await?;
    ensure_eq!(
        full[3],
        def("etl", 10, None),
        "list_versions(etl)[3] must be the full v10 record"
    );
    ensure_eq!(
        repo.list_versions(&wf("unknown")).await?,
        Vec::<WorkflowDefinition>::new(),
        "list_versions(unknown) must be empty, not an error"
    );
    Ok(())
}

/// "listing all workflows is ordered by `(id, version)` and paginated."
///
/// 23 definitions over several workflows (ids compared bytewise: `B` < `a`,
/// `a` < `a-b` < `a.b` < `a_b`; versions numerically). Paged with limits 1,
/// 2, 5, 23 and 100, every walk returns the same complete, duplicate-free
/// sequence; `next` is `None` exactly on the last page (a limit equal to the
/// count gives one page without `next`). The `id` filter lists one
/// workflow only, also paged.
pub async fn workflow_list_all_ordered_and_paged(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;
    ensure_eq!(
        list_all(repo.as_ref(), None, 10).await?.len(),
        0,
        "list() on an empty store"
    );
    let ids = ["a", "B", "a_b", "a.b", "a-b", "Z9", "0"];
    let mut expected: Vec<(String, u32)> = Vec::new();
    // Insert in an order that is neither id nor version order.
    for (i, id) in ids.iter().enumerate() {
        let versions: Vec<u32> = match i % 3 {
            0 => vec![10, 2, 1],
            1 => vec![3, 1, 2, 11],
            _ => vec![1, 100, 9],
        };
        for n in versions {
            repo.store(def(id, n, None)).await?;
            expected.push((id.to_string(), n));
        }
    }
    // Bytewise order of ids, numeric order of versions.
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let total = expected.len();

    for limit in [1, 2, 5, total, 100] {
        let got: Vec<(String, u32)> = list_all(repo.as_ref(), None, limit)
            .await?
            .into_iter()
            .map(|d| (d.id.into_string(), d.version.get()))
            .collect();
        ensure_eq!(
            got,
            expected,
            "list() walked with limit {limit} must give every definition once, ordered by (id bytewise, version)"
        );
    }
    let one = repo
        .list(WorkflowQuery::default().with_limit(total))
        .await?;
    ensure!(
        one.items.len() == total && one.next.is_none(),
        "list(limit {total}) with exactly {total} definitions stored: expected one full page and next = None, got {} items and next = {:?}",
        one.items.len(),
        one.next
    );
    let short = repo
        .list(WorkflowQuery::default().with_limit(total - 1))
        .await?;
    ensure!(
        short.next.is_some(),
        "list(limit {}) with {total} definitions stored: next must be set, one item follows",
        total - 1
    );
    let last = repo
        .list(
            WorkflowQuery::default()
                .with_limit(total)
                .with_cursor(short.next.clone()),
        )
        .await?;
    ensure!(
        last.items.len() == 1 && last.next.is_none(),
        "list after the cursor of a page of {}: expected the one last item and next = None, got {} items, next = {:?}",
        total - 1,
        last.items.len(),
        last.next
    );

    // The id filter, paged.
    for id in ["a", "a-b", "B"] {
        let want: Vec<(String, u32)> = expected.iter().filter(|(i, _)| i == id).cloned().collect();
        let got: Vec<(String, u32)> = list_all(repo.as_ref(), Some(wf(id)), 2)
            .await?
            .into_iter()
            .map(|d| (d.id.into_string(), d.version.get()))
            .collect();
        ensure_eq!(got, want, "list(id = {id}, limit 2), walked to the end");
    }
    ensure_eq!(
        list_all(repo.as_ref(), Some(wf("A")), 3).await?.len(),
        0,
        "list(id = A) where only `a` is stored: ids are case-sensitive"
    );
    // Items are whole records.
    let first = repo.list(WorkflowQuery::default().with_limit(1)).await?;
    ensure_eq!(
        first.items,
        vec![def("0", 1, None)],
        "list(limit 1) must start with the full record of (\"0\", 1)"
    );
    let distinct: BTreeSet<(String, u32)> = expected.iter().cloned().collect();
    ensure_eq!(distinct.len(), total, "test setup: distinct definitions");
    Ok(())
}

/// "Every definition has a content hash: SHA-256 of its canonical JSON (keys
/// sorted, no whitespace). Equal hash means equal definition, in every
/// backend."
///
/// The hash of a read-back definition equals the hash of the one written
/// (so bodies round-trip exactly: unicode, nesting, floats such as 0.1 and
/// 1e300, integers up to `u64::MAX` and down to `i64::MIN`); the order of
/// keys in the body text changes neither the hash nor identity (storing the
/// reordered text again is a no-op, not a conflict); any change of content
/// changes the hash; and the hash is the SHA-256 of the canonical JSON of
/// `{body, description, id, parent, version}` (a known-answer vector).
///
/// `-0.0` is deliberately left out: docs/DESIGN.md does not say whether it is
/// distinct from `0`, and PostgreSQL `jsonb` cannot keep it.
pub async fn workflow_content_hash_matches_content(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let repo = &s.stores.workflows;

    // Known answer: sha256 of
    // {"body":{"a":[1,"x"],"b":null},"description":"d","id":"kat","parent":null,"version":1}
    let kat = WorkflowDefinition::new(wf("kat"), v(1), json!({"b": null, "a": [1, "x"]}))
        .with_description("d")
        .with_created_at(t(0, 0));
    ensure_eq!(
        kat.content_hash().to_hex(),
        "31ead8c7402d7af92c27b4a900e0a365e03b18fbf4f4e2220e0cb077d7b13ef6",
        "content hash of the known-answer definition"
    );
    repo.store(kat.clone()).await?;
    ensure_eq!(
        repo.get(&wf("kat"), v(1)).await?.content_hash(),
        kat.content_hash(),
        "content hash of the known-answer definition read back"
    );

    let body_text = r#"{
        "zeta": "last", "alpha": 1,
        "unicode": "héllo wörld ✓ 日本語 🚀 \u00e9 e\u0301 \u202e rtl \ufeff bom",
        "escapes": "quote \" backslash \\ slash / tab \t newline \n del \u007f",
        "nested": {"b": [1, [2, [3, {"deep": {"deeper": [true, false, null]}}]]], "a": {}},
        "floats": [0.1, 1e300, -2.5e-8, 1.0, 3.141592653589793, 1.7976931348623157e308, 5e-324, 123.456],
        "ints": [18446744073709551615, -9223372036854775808, 9007199254740993, 0, -1],
        "empty": [], "emptyobj": {}, "s": "",
        "ключ": "значение", "🔑": "emoji key"
    }"#;
    let reordered_text = r#"{
        "🔑": "emoji key", "ключ": "значение",
        "s": "", "emptyobj": {}, "empty": [],
        "ints": [18446744073709551615, -9223372036854775808, 9007199254740993, 0, -1],
        "floats": [0.1, 1e300, -2.5e-8, 1.0, 3.141592653589793, 1.7976931348623157e308, 5e-324, 123.456],
        "nested": {"a": {}, "b": [1, [2, [3, {"deep": {"deeper": [true, false, null]}}]]]},
        "escapes": "quote \" backslash \\ slash / tab \t newline \n del \u007f",
        "unicode": "héllo wörld ✓ 日本語 🚀 \u00e9 e\u0301 \u202e rtl \ufeff bom",
        "alpha": 1, "zeta": "last"
    }"#;
    let body: serde_json::Value = serde_json::from_str(body_text)
        .map_err(|e| crate::RuleError::Failed(format!("test setup: body JSON: {e}")))?;
    let reordered: serde_json::Value = serde_json::from_str(reordered_text)
        .map_err(|e| crate::RuleError::Failed(format!("test setup: reordered JSON: {e}")))?;

    let d = WorkflowDefinition::new(wf("rich"), v(1), body.clone())
        .with_description("ünïcödé description ✓\nsecond line\ttab")
        .with_created_at(t(5, 5));
    let d_re = WorkflowDefinition::new(wf("rich"), v(1), reordered)
        .with_description("ünïcödé description ✓\nsecond line\ttab")
        .with_created_at(t(6, 6));
    ensure_eq!(
        d.content_hash(),
        d_re.content_hash(),
        "the same body with keys in another order must have the same content hash"
    );
    repo.store(d.clone()).await?;
    let again = repo.store(d_re).await?;
    ensure!(
        !again.inserted,
        "storing the same body with keys in another order must be a no-op (inserted = false), not a new record"
    );

    let back = repo.get(&wf("rich"), v(1)).await?;
    ensure_eq!(
        canonical_json(&back.body),
        canonical_json(&body),
        "body read back (canonical JSON) must equal the body written: unicode, escapes, floats and large integers round-trip exactly"
    );
    ensure_eq!(back.description, d.description, "description read back");
    ensure_eq!(
        back.content_hash(),
        d.content_hash(),
        "content hash of the definition read back must equal that of the definition written"
    );
    for listed in repo.list_versions(&wf("rich")).await? {
        ensure_eq!(
            listed.content_hash(),
            d.content_hash(),
            "content hash of the definition from list_versions"
        );
    }
    let latest = repo.get_latest(&wf("rich")).await?;
    ensure_eq!(
        latest.content_hash(),
        d.content_hash(),
        "content hash of the definition from get_latest"
    );

    // The hash is of exactly {body, description, id, parent, version}.
    let expected = content_hash(&json!({
        "body": body,
        "description": d.description,
        "id": "rich",
        "parent": null,
        "version": 1,
    }))?;
    ensure_eq!(
        back.content_hash(),
        expected,
        "content hash must be SHA-256 of the canonical JSON of {{body, description, id, parent, version}}"
    );

    // Any content change changes the hash; created_at does not.
    let base = def("h", 2, None);
    let changes: Vec<(&str, WorkflowDefinition)> = vec![
        ("description", base.clone().with_description("other")),
        ("parent", base.clone().with_parent(v(1))),
        ("body value", {
            let mut c = base.clone();
            c.body["schedule"] = json!("@hourly");
            c
        }),
        ("body number type 1 vs 1.0", {
            let mut c = base.clone();
            c.body["steps"][0]["retries"] = json!(2.0);
            c
        }),
        ("id", {
            let mut c = base.clone();
            c.id = wf("h2");
            c
        }),
        ("version", {
            let mut c = base.clone();
            c.version = v(3);
            c
        }),
    ];
    for (what, changed) in &changes {
        ensure!(
            changed.content_hash() != base.content_hash(),
            "changing the {what} of a definition must change its content hash"
        );
    }
    ensure_eq!(
        base.clone().with_created_at(t(777, 7)).content_hash(),
        base.content_hash(),
        "created_at is not content and must not change the hash"
    );
    Ok(())
}
