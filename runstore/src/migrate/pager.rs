//! Lazily paged reads of every concern, one page in memory at a time, and a
//! merge-join of two such streams in the same key order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use runstore_core::{
    ArtifactInfo, ArtifactQuery, Cursor, Error, Event, EventQuery, ExecutionMetric, LogRepository,
    MetricQuery, Pattern, PatternQuery, Result, Run, RunFilter, RunId, RunQuery, StoreSet,
    Timestamp, WorkflowDefinition, WorkflowQuery,
};

type PageFuture<T> = Pin<Box<dyn Future<Output = Result<runstore_core::Page<T>>> + Send>>;
type Fetch<T> = Box<dyn FnMut(Option<Cursor>) -> PageFuture<T> + Send>;
type Keep<T> = Box<dyn Fn(&T) -> bool + Send>;

/// A stream of records read page by page through a trait's keyset paging.
pub(crate) struct Pager<T> {
    fetch: Fetch<T>,
    buf: VecDeque<T>,
    next: Option<Cursor>,
    started: bool,
    what: String,
    /// Records that fail it are passed over (a pass [`since`](super::MigrateOptions::since)).
    keep: Option<Keep<T>>,
}

impl<T: Send + 'static> Pager<T> {
    fn new(what: impl Into<String>, fetch: Fetch<T>) -> Self {
        Pager {
            fetch,
            buf: VecDeque::new(),
            next: None,
            started: false,
            what: what.into(),
            keep: None,
        }
    }

    /// With `since`, passes over the records whose own time (`time`) is
    /// before it: a pass since a watermark.
    pub(crate) fn since(self, since: Option<Timestamp>, time: fn(&T) -> Timestamp) -> Self {
        match since {
            Some(t) => self.keep(move |x| time(x) >= t),
            None => self,
        }
    }

    /// Passes over the records for which `keep` is false. The order of the
    /// rest is the listing's, so a merge-join of two kept streams holds.
    pub(crate) fn keep(mut self, keep: impl Fn(&T) -> bool + Send + 'static) -> Self {
        self.keep = Some(Box::new(keep));
        self
    }

    async fn fill(&mut self) -> Result<()> {
        // Loop: a backend may legally return an empty page with a cursor.
        while self.buf.is_empty() && (!self.started || self.next.is_some()) {
            let cursor = self.next.take();
            self.started = true;
            let page = (self.fetch)(cursor).await?;
            match &self.keep {
                Some(keep) => self.buf.extend(page.items.into_iter().filter(|x| keep(x))),
                None => self.buf.extend(page.items),
            }
            self.next = page.next;
        }
        Ok(())
    }

    /// The next record without taking it.
    pub(crate) async fn peek(&mut self) -> Result<Option<&T>> {
        self.fill().await?;
        Ok(self.buf.front())
    }

    /// Takes the next record.
    pub(crate) async fn next(&mut self) -> Result<Option<T>> {
        self.fill().await?;
        Ok(self.buf.pop_front())
    }

    /// What is being read, for error messages.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }
}

pub(crate) fn workflows(stores: &StoreSet, limit: usize) -> Pager<WorkflowDefinition> {
    let repo = stores.workflows.clone();
    Pager::new(
        "workflows",
        Box::new(move |cursor| {
            let repo = repo.clone();
            Box::pin(async move {
                repo.list(
                    WorkflowQuery::default()
                        .with_limit(limit)
                        .with_cursor(cursor),
                )
                .await
            })
        }),
    )
}

pub(crate) fn runs(stores: &StoreSet, limit: usize) -> Pager<Run> {
    runs_where(stores, RunFilter::default(), limit)
}

/// The runs that pass `filter`, oldest start first: a destination that
/// numbers or orders runs by time (time-ordered ids, start-time indexes)
/// then appends to its indexes instead of splitting their first pages.
pub(crate) fn runs_where(stores: &StoreSet, filter: RunFilter, limit: usize) -> Pager<Run> {
    let repo = stores.logs.clone();
    Pager::new(
        "runs",
        Box::new(move |cursor| {
            let repo = repo.clone();
            let mut query = RunQuery::default()
                .oldest_first()
                .with_limit(limit)
                .with_cursor(cursor);
            query.filter = filter.clone();
            Box::pin(async move { repo.query_runs(query).await })
        }),
    )
}

pub(crate) fn events(repo: &Arc<dyn LogRepository>, run_id: &RunId, limit: usize) -> Pager<Event> {
    let repo = repo.clone();
    let id = run_id.clone();
    Pager::new(
        format!("events of run {run_id}"),
        Box::new(move |cursor| {
            let repo = repo.clone();
            let id = id.clone();
            Box::pin(async move {
                repo.list_events(
                    &id,
                    EventQuery::default().with_limit(limit).with_cursor(cursor),
                )
                .await
            })
        }),
    )
}

pub(crate) fn metrics(stores: &StoreSet, limit: usize) -> Pager<ExecutionMetric> {
    let repo = stores.metrics.clone();
    Pager::new(
        "metrics",
        Box::new(move |cursor| {
            let repo = repo.clone();
            Box::pin(async move {
                repo.list(MetricQuery::default().with_limit(limit).with_cursor(cursor))
                    .await
            })
        }),
    )
}

pub(crate) fn patterns(stores: &StoreSet, limit: usize) -> Pager<Pattern> {
    let repo = stores.metrics.clone();
    Pager::new(
        "patterns",
        Box::new(move |cursor| {
            let repo = repo.clone();
            Box::pin(async move {
                repo.list_patterns(
                    PatternQuery::default()
                        .with_limit(limit)
                        .with_cursor(cursor),
                )
                .await
            })
        }),
    )
}

pub(crate) fn artifacts(stores: &StoreSet, limit: usize) -> Pager<ArtifactInfo> {
    let repo = stores.artifacts.clone();
    Pager::new(
        "artifacts",
        Box::new(move |cursor| {
            let repo = repo.clone();
            Box::pin(async move {
                repo.list(
                    ArtifactQuery::default()
                        .with_limit(limit)
                        .with_cursor(cursor),
                )
                .await
            })
        }),
    )
}

/// One step of a merge-join.
pub(crate) enum Pair<T> {
    /// Only the first stream has this key.
    OnlyA(T),
    /// Only the second stream has this key.
    OnlyB(T),
    /// Both have it.
    Both(T, T),
}

/// Walks two pagers sorted by the same strictly increasing `key`, pairing
/// records of equal keys. Remembers the last key of each side to refuse a
/// stream that is out of order (a merge-join over it would be wrong).
pub(crate) struct MergeJoin<T, K> {
    a: Pager<T>,
    b: Pager<T>,
    key: fn(&T) -> K,
    last_a: Option<K>,
    last_b: Option<K>,
}

impl<T: Send + 'static, K: Ord + Clone + std::fmt::Debug> MergeJoin<T, K> {
    pub(crate) fn new(a: Pager<T>, b: Pager<T>, key: fn(&T) -> K) -> Self {
        MergeJoin {
            a,
            b,
            key,
            last_a: None,
            last_b: None,
        }
    }

    fn check_order(last: &mut Option<K>, key: &K, what: &str, side: &str) -> Result<()> {
        if let Some(prev) = last.as_ref()
            && prev >= key
        {
            return Err(Error::corrupt(
                format!("{what} of side {side}"),
                format!("listed out of order: {key:?} after {prev:?}"),
            ));
        }
        *last = Some(key.clone());
        Ok(())
    }

    /// The next pair, or `None` when both streams are done.
    pub(crate) async fn next(&mut self) -> Result<Option<Pair<T>>> {
        let ka = self.a.peek().await?.map(self.key);
        let kb = self.b.peek().await?.map(self.key);
        let take_a = match (&ka, &kb) {
            (None, None) => return Ok(None),
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => Some(true),
                std::cmp::Ordering::Greater => Some(false),
                std::cmp::Ordering::Equal => None,
            },
        };
        let mut take = |side_a: bool| -> Result<()> {
            if side_a {
                let k = ka
                    .as_ref()
                    .ok_or_else(|| Error::backend("merge-join: side a ended", None))?;
                Self::check_order(&mut self.last_a, k, self.a.what(), "a")
            } else {
                let k = kb
                    .as_ref()
                    .ok_or_else(|| Error::backend("merge-join: side b ended", None))?;
                Self::check_order(&mut self.last_b, k, self.b.what(), "b")
            }
        };
        match take_a {
            Some(true) => {
                take(true)?;
                Ok(self.a.next().await?.map(Pair::OnlyA))
            }
            Some(false) => {
                take(false)?;
                Ok(self.b.next().await?.map(Pair::OnlyB))
            }
            None => {
                take(true)?;
                take(false)?;
                let a = self.a.next().await?;
                let b = self.b.next().await?;
                match (a, b) {
                    (Some(a), Some(b)) => Ok(Some(Pair::Both(a, b))),
                    _ => Err(Error::backend("merge-join: a peeked record vanished", None)),
                }
            }
        }
    }
}
