//! Walking a paged listing to its end, one cursor at a time.

use std::future::Future;

use runstore::{Cursor, Page, Result};
pub use runstore::{Cursors, Items};

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
