//! Keyset paging: [`Cursor`], [`Page`] and the limits every query shares.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Items per page when a query does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Most items a page may hold.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Checks `1 <= limit <= MAX_PAGE_LIMIT`.
pub fn validate_limit(limit: usize) -> Result<usize> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_LIMIT}, got {limit}"),
        ));
    }
    Ok(limit)
}

/// An opaque position in a result set: it names the last item of a page, so
/// the next page starts right after it however many items arrive meanwhile
/// (keyset paging, not offsets).
///
/// Cursors are made by backends with [`Cursor::encode`] from a key type of
/// the query (e.g. [`crate::RunCursor`]), so a cursor from one backend is
/// also understood by another. Callers treat them as opaque strings.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Encodes a key as an opaque cursor.
    pub fn encode<K: Serialize>(key: &K) -> Cursor {
        // Serializing the plain key structs of this crate cannot fail.
        let json = serde_json::to_vec(key).unwrap_or_default();
        Cursor(hex::encode(json))
    }

    /// Decodes the key of a cursor made by [`Cursor::encode`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `cursor` when it was not made for this query.
    /// Every cursor key of this crate refuses unknown fields, so a cursor of
    /// one query kind never decodes as another whose fields it overlaps.
    pub fn decode<K: DeserializeOwned>(&self) -> Result<K> {
        let bad = || {
            Error::invalid(
                "cursor",
                format!(
                    "{} is not a cursor of this query",
                    crate::text::shown(&self.0)
                ),
            )
        };
        let bytes = hex::decode(&self.0).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }

    /// Wraps a cursor string received from a caller (e.g. from a CLI flag).
    pub fn from_string(s: impl Into<String>) -> Cursor {
        Cursor(s.into())
    }

    /// The cursor text, to hand to a caller.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of results. `next` is `Some` exactly when more items follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the query's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` items fetched in order: keeps
    /// `limit` of them and, if there was one more, sets `next` from the key of
    /// the last item kept. Backends fetch one extra row to know.
    pub fn from_overfetch<K: Serialize>(
        mut items: Vec<T>,
        limit: usize,
        key_of: impl Fn(&T) -> K,
    ) -> Page<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|last| Cursor::encode(&key_of(last)))
        } else {
            None
        };
        Page { items, next }
    }

    /// Builds a page of the items that come strictly after `before` in
    /// descending key order (newest first): keeps the items whose key is
    /// less than `before` (all without a cursor), sorts them by key
    /// descending, and pages them with [`Page::from_overfetch`]. For
    /// in-memory tables listed in reverse key order, like runs and patterns.
    ///
    /// ```
    /// use runstore_core::Page;
    /// let items = [3, 1, 4, 5, 2];
    /// let first = Page::descending_before(&items, 2, None, |x| *x);
    /// assert_eq!(first.items, vec![5, 4]);
    /// let cursor: i32 = first.next.unwrap().decode().unwrap();
    /// let second = Page::descending_before(&items, 2, Some(&cursor), |x| *x);
    /// assert_eq!(second.items, vec![3, 2]);
    /// let last = Page::descending_before(&items, 2, Some(&2), |x| *x);
    /// assert_eq!((last.items, last.next), (vec![1], None));
    /// ```
    pub fn descending_before<'a, K>(
        items: impl IntoIterator<Item = &'a T>,
        limit: usize,
        before: Option<&K>,
        key_of: impl Fn(&T) -> K,
    ) -> Page<T>
    where
        T: Clone + 'a,
        K: Serialize + Ord,
    {
        let mut matching: Vec<&T> = items
            .into_iter()
            .filter(|item| before.is_none_or(|b| key_of(item) < *b))
            .collect();
        matching.sort_by_key(|item| std::cmp::Reverse(key_of(item)));
        matching.truncate(limit.saturating_add(1));
        Page::from_overfetch(matching.into_iter().cloned().collect(), limit, key_of)
    }

    /// An empty last page.
    pub fn empty() -> Page<T> {
        Page {
            items: Vec::new(),
            next: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        let c = Cursor::encode(&(5u64, "x".to_string()));
        assert_eq!(c.decode::<(u64, String)>().unwrap(), (5, "x".to_string()));
        for bad in ["", "zz", "'; DROP TABLE runs; --", "00"] {
            let err = Cursor::from_string(bad)
                .decode::<(u64, String)>()
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        }
        assert!(validate_limit(0).is_err());
        assert!(validate_limit(MAX_PAGE_LIMIT + 1).is_err());
    }

    /// Decodes `cursor` as a `K`, keeping only whether it worked.
    fn decodes_as<K: DeserializeOwned>(cursor: &Cursor) -> Result<()> {
        cursor.decode::<K>().map(drop)
    }

    #[test]
    fn a_cursor_of_one_query_kind_never_decodes_as_another() {
        use crate::{
            ArtifactCursor, ArtifactKey, EventCursor, MetricCursor, PatternCursor, PatternId,
            RunCursor, RunId, Timestamp, Version, WorkflowCursor, WorkflowId,
        };
        let run = RunId::new("r1").unwrap();
        let at = Timestamp::from_micros(1_000_000).unwrap();
        // Keys sharing field names and values where the types allow, so
        // only the unknown-field rule can tell them apart.
        let samples: Vec<(&str, Cursor)> = vec![
            (
                "run",
                Cursor::encode(&RunCursor {
                    started_at: at,
                    id: run.clone(),
                }),
            ),
            ("event", Cursor::encode(&EventCursor { seq: 1 })),
            (
                "metric",
                Cursor::encode(&MetricCursor {
                    run_id: run.clone(),
                }),
            ),
            (
                "pattern",
                Cursor::encode(&PatternCursor {
                    detected_at: at,
                    id: PatternId::new("r1").unwrap(),
                }),
            ),
            (
                "workflow",
                Cursor::encode(&WorkflowCursor {
                    id: WorkflowId::new("r1").unwrap(),
                    version: Version::FIRST,
                }),
            ),
            (
                "artifact",
                Cursor::encode(&ArtifactKey::parse("r1", "train", "a.txt").unwrap()),
            ),
            (
                "event with an extra field",
                Cursor::encode(&serde_json::json!({"seq": 1, "run_id": "r1"})),
            ),
        ];
        type Decoder = fn(&Cursor) -> Result<()>;
        let kinds: [(&str, Decoder); 6] = [
            ("run", decodes_as::<RunCursor>),
            ("event", decodes_as::<EventCursor>),
            ("metric", decodes_as::<MetricCursor>),
            ("pattern", decodes_as::<PatternCursor>),
            ("workflow", decodes_as::<WorkflowCursor>),
            ("artifact", decodes_as::<ArtifactCursor>),
        ];
        for (made_by, cursor) in &samples {
            for (kind, decode) in kinds {
                let got = decode(cursor);
                if made_by == &kind {
                    assert!(got.is_ok(), "a {kind} cursor must decode as one: {got:?}");
                    continue;
                }
                match got {
                    Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "cursor"),
                    other => panic!("a {made_by} cursor given to a {kind} query: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn overfetch_sets_next_only_when_more() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, |x| *x);
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next.unwrap().decode::<i32>().unwrap(), 2);
        let p = Page::from_overfetch(vec![1, 2], 2, |x| *x);
        assert!(p.next.is_none());
    }
}

/// The cursors of a listing read page by page:
/// `while let Some(cursor) = pages.next() { ...; pages.after(page.next) }`.
#[derive(Debug)]
pub struct Cursors {
    next: Option<Option<Cursor>>,
}

impl Default for Cursors {
    /// Before the first page.
    fn default() -> Self {
        Cursors { next: Some(None) }
    }
}

impl Cursors {
    /// Starting after `cursor` (a `--cursor` given on the command line).
    pub fn after_cursor(cursor: Cursor) -> Self {
        Cursors {
            next: Some(Some(cursor)),
        }
    }

    /// The cursor to read the next page with (`Some(None)`: the first page),
    /// or `None` once the last page was read.
    // Not an `Iterator`: the loop must call `after` between two calls,
    // which a `for` loop's borrow would not allow.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Option<Cursor>> {
        self.next.take()
    }

    /// Records the `next` of the page just read: the listing goes on after
    /// it, or ends.
    pub fn after(&mut self, next: Option<Cursor>) {
        self.next = next.map(Some);
    }
}

/// The items of a paged listing one at a time, the next page fetched when
/// the last one is used up, so a loop over a whole listing reads like a
/// loop over a list and holds one page at a time:
/// `while let Some(run) = runs.next(|c| logs.query_runs(q.clone().with_cursor(c))).await? { … }`.
pub struct Items<T> {
    pages: Cursors,
    buffered: std::collections::VecDeque<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items {
            pages: Cursors::default(),
            buffered: Default::default(),
        }
    }
}

impl<T> Items<T> {
    /// The next item; `fetch` reads the page at a cursor when one is needed.
    pub async fn next<F, Fut>(&mut self, mut fetch: F) -> Result<Option<T>>
    where
        F: FnMut(Option<Cursor>) -> Fut,
        Fut: std::future::Future<Output = Result<Page<T>>>,
    {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                return Ok(Some(item));
            }
            let Some(cursor) = self.pages.next() else {
                return Ok(None);
            };
            let page = fetch(cursor).await?;
            self.pages.after(page.next);
            self.buffered.extend(page.items);
        }
    }
}
