//! Walking a paged listing to its end, one cursor at a time.

use std::future::Future;

use runstore::{Cursor, Page, Result};

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
        Fut: Future<Output = Result<Page<T>>>,
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

/// Reads every page `fetch` gives (it gets each page's cursor) and returns
/// the number of items and the sum of `weigh` over them.
pub async fn tally<T, F, Fut>(mut fetch: F, mut weigh: impl FnMut(&T) -> u64) -> Result<(u64, u64)>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let (mut count, mut sum) = (0u64, 0u64);
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = fetch(cursor).await?;
        count += page.items.len() as u64;
        sum += page.items.iter().map(&mut weigh).sum::<u64>();
        pages.after(page.next);
    }
    Ok((count, sum))
}

/// Parses a page size (`--batch-size`, `--limit`, `--last`): 1 to the page
/// limit of the traits, so `0` and `abc` are both usage errors (exit 2)
/// rather than a failure half way.
pub fn parse_page_size(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n == 0 || n > runstore::MAX_PAGE_LIMIT {
        return Err(format!(
            "must be between 1 and {}, got {n}",
            runstore::MAX_PAGE_LIMIT
        ));
    }
    Ok(n)
}
