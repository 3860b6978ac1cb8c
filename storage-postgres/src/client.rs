//! Running database steps: a pooled connection under the operation
//! timeout ([`PostgresStore::bounded`]), attempts started again after a
//! serialization failure, deadlock or racing insert
//! ([`PostgresStore::retrying`]), and the shapes every repository uses on
//! top of them: one cached statement ([`PostgresStore::query_opt`],
//! [`PostgresStore::query_all`], [`PostgresStore::execute`]) and one
//! retried transaction ([`with_tx!`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use runstore_core::{Error, Result};
use tokio::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Transaction};

use crate::PostgresStore;
use crate::error::Fail;

/// How often an operation is attempted again after a serialization
/// failure, deadlock or racing insert before it gives up (`Unavailable`,
/// or `Conflict` for a unique violation that keeps coming back).
const MAX_ATTEMPTS: u32 = 20;

/// Runs `$body` in a transaction on a pooled connection, as one attempt of
/// [`PostgresStore::retrying`] on `$store` (started again after a
/// serialization failure, deadlock or racing insert). `$body` is a block
/// of type `Result<T, Fail>` using the transaction `$tx`; the transaction
/// commits when it is `Ok` and rolls back (is dropped) when it fails.
///
/// A macro rather than a method taking a closure: a closure borrowing the
/// transaction it is given makes the futures of the `async_trait` methods
/// fail their `Send` check.
macro_rules! with_tx {
    ($store:expr, $what:expr, |$tx:ident| $body:block) => {{
        let store: &$crate::PostgresStore = $store;
        store
            .retrying($what, || async {
                let mut client = store.client().await?;
                let result: std::result::Result<_, $crate::error::Fail> = async {
                    let $tx = client.transaction().await?;
                    let out = $body?;
                    $tx.commit().await?;
                    Ok(out)
                }
                .await;
                if let Err(f) = &result
                    && f.may_break_the_connection()
                {
                    client.discard();
                }
                result
            })
            .await
    }};
}
pub(crate) use with_tx;

/// What a store remembers of one kind of optimistic bulk write
/// (`import_runs`, `record_many`) between calls: whether the next call
/// starts by looking for stored records. A call that found some (a
/// repeated migration pass) leaves the next one careful, so a pass over
/// stored records costs one failed `COPY` (one unique-violation error in
/// the server's log), not one per batch; a careful call that found none
/// (new records again) lets the next one be optimistic. Only a hint:
/// both ways store the same.
#[derive(Debug, Default)]
pub(crate) struct CarefulHint {
    careful: AtomicBool,
    /// Optimistic attempts that failed, for the tests.
    misses: AtomicU64,
}

impl CarefulHint {
    /// How many optimistic attempts have failed.
    #[cfg(test)]
    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Whether the attempts of one optimistic bulk write look for stored
/// records first: from the store's [`CarefulHint`], and after an attempt
/// fails (a record already stored makes the write a unique violation,
/// which is retried) every later one does.
pub(crate) struct Careful<'a> {
    check: AtomicBool,
    hint: &'a CarefulHint,
}

impl<'a> Careful<'a> {
    /// A write that starts as `hint` says.
    pub(crate) fn new(hint: &'a CarefulHint) -> Self {
        Careful {
            check: AtomicBool::new(hint.careful.load(Ordering::Relaxed)),
            hint,
        }
    }

    /// Runs one attempt, `check` telling it whether to look first.
    pub(crate) async fn attempt<T, Fut>(
        &self,
        attempt: impl FnOnce(bool) -> Fut,
    ) -> std::result::Result<T, Fail>
    where
        Fut: Future<Output = std::result::Result<T, Fail>>,
    {
        let check = self.check.load(Ordering::Relaxed);
        let r = attempt(check).await;
        if r.is_err() {
            self.check.store(true, Ordering::Relaxed);
            self.hint.careful.store(true, Ordering::Relaxed);
            if !check {
                self.hint.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// After the write succeeded: the store's next one starts careful
    /// only if this one `found` records already stored.
    pub(crate) fn settle(&self, found: bool) {
        self.hint.careful.store(found, Ordering::Relaxed);
    }
}

/// Statement parameters as the driver takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

tokio::task_local! {
    /// When the current operation runs out of time.
    static DEADLINE: Instant;
}

impl PostgresStore {
    /// A pooled connection, discarded instead of reused if the operation
    /// holding it runs out of time (see [`Conn`]).
    pub(crate) async fn client(&self) -> std::result::Result<Conn, Fail> {
        let obj = self.inner.pool.get().await?;
        Ok(Conn {
            obj: Some(obj),
            deadline: DEADLINE.try_with(|d| *d).ok(),
        })
    }

    /// Runs one database step within the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, Fail>>,
    ) -> Result<T> {
        self.bounded_by(what, self.inner.config.operation_timeout, fut)
            .await
    }

    /// [`PostgresStore::bounded`] with another limit: schema migrations,
    /// which may rebuild indexes of a large database, get
    /// `migration_timeout`.
    pub(crate) async fn bounded_by<T>(
        &self,
        what: &str,
        limit: std::time::Duration,
        fut: impl Future<Output = std::result::Result<T, Fail>>,
    ) -> Result<T> {
        let deadline = Instant::now() + limit;
        match DEADLINE
            .scope(deadline, tokio::time::timeout_at(deadline, fut))
            .await
        {
            Ok(r) => r.map_err(|f| {
                let e = f.into_error(what);
                if self.inner.config.read_only && refused_as_read_only(&e) {
                    // On a store opened read-only this is the caller's
                    // write, not a replica after failover: final, not
                    // retryable.
                    return Error::invalid(
                        "store",
                        format!(
                            "{what}: the PostgreSQL store {} was opened read-only; it takes no writes",
                            self.inner.config
                        ),
                    );
                }
                e
            }),
            Err(_) => Err(timed_out(what, limit)),
        }
    }

    /// Runs `attempt` within the operation timeout, again after a
    /// serialization failure, deadlock or racing insert (each attempt
    /// re-reads what the other writer stored).
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Fail>>,
    {
        self.bounded(what, async {
            let mut tries = 0;
            loop {
                tries += 1;
                match attempt().await {
                    Err(f) if f.is_retry() && tries < MAX_ATTEMPTS => {
                        // Jitter-free short backoff: contention is per row
                        // and clears as soon as the winner commits.
                        tokio::time::sleep(Duration::from_millis(u64::from(tries.min(10)))).await;
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// The first row of one statement (`{s}` is the schema), prepared once
    /// per connection, within the operation timeout.
    pub(crate) async fn query_opt(
        &self,
        what: &str,
        template: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>> {
        Ok(self
            .query_all(what, template, params)
            .await?
            .into_iter()
            .next())
    }

    /// The record one statement finds, read with `of`; `NotFound` naming
    /// `missing` when there is none.
    pub(crate) async fn find<T>(
        &self,
        what: &str,
        template: &str,
        params: Params<'_>,
        of: impl FnOnce(&Row) -> Result<T>,
        missing: impl FnOnce() -> String,
    ) -> Result<T> {
        match self.query_opt(what, template, params).await? {
            Some(row) => of(&row),
            None => Err(Error::not_found(missing())),
        }
    }

    /// Every row of one statement (`{s}` is the schema), prepared once per
    /// connection, within the operation timeout.
    pub(crate) async fn query_all(
        &self,
        what: &str,
        template: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>> {
        self.bounded(what, async {
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql(template)).await?;
            Ok(client.query(&st, params).await?)
        })
        .await
    }

    /// The number of rows one statement changed, as
    /// [`PostgresStore::query_opt`].
    pub(crate) async fn execute(
        &self,
        what: &str,
        template: &str,
        params: Params<'_>,
    ) -> Result<u64> {
        self.bounded(what, async {
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql(template)).await?;
            Ok(client.execute(&st, params).await?)
        })
        .await
    }
}

/// Whether the server refused `e`'s statement because the transaction is
/// read-only (SQLSTATE 25006), wherever in the error's chain the driver's
/// error sits.
fn refused_as_read_only(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>()
            && pg.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Starts a binary `COPY … FROM STDIN` of rows of `types` in `tx`; the
/// caller pins the writer, writes its rows and calls `finish`.
pub(crate) async fn copy_writer(
    tx: &Transaction<'_>,
    sql: &str,
    types: &[Type],
) -> std::result::Result<BinaryCopyInWriter, Fail> {
    let sink = tx.copy_in(sql).await?;
    Ok(BinaryCopyInWriter::new(sink, types))
}

/// A pooled connection. Dropped after its operation's deadline (the
/// operation timed out, possibly mid-statement on a hung server or a
/// half-open socket), it is taken out of the pool and closed rather than
/// handed to the next caller.
pub(crate) struct Conn {
    obj: Option<deadpool_postgres::Object>,
    deadline: Option<Instant>,
}

impl std::ops::Deref for Conn {
    type Target = deadpool_postgres::Object;
    fn deref(&self) -> &Self::Target {
        // Present until drop.
        self.obj
            .as_ref()
            .expect("connection used after drop or discard")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.obj
            .as_mut()
            .expect("connection used after drop or discard")
    }
}

impl Conn {
    /// Closes the connection instead of handing it back to the pool: after
    /// a driver error mid-transaction (a `COPY` the server refused, say) it
    /// may be left unusable, and the next caller would get its error.
    pub(crate) fn discard(&mut self) {
        if let Some(obj) = self.obj.take() {
            drop(deadpool_postgres::Object::take(obj));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let (Some(obj), Some(deadline)) = (self.obj.take(), self.deadline)
            && Instant::now() >= deadline
        {
            drop(deadpool_postgres::Object::take(obj));
        }
    }
}

fn timed_out(what: &str, limit: Duration) -> Error {
    Error::unavailable(
        format!("{what}: PostgreSQL did not answer within the operation timeout of {limit:?}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use runstore_core::{
        ExecutionMetric, LogRepository, MetricsRepository, Run, RunId, RunStatus, RunWithEvents,
        Timestamp, Version, WorkflowId,
    };

    use crate::PostgresStore;
    use crate::testing::{self, TestSchema};

    fn runs(ids: std::ops::Range<u32>) -> Vec<RunWithEvents> {
        ids.map(|i| {
            let mut run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
            run.id = RunId::new(format!("run-{i:04}")).unwrap();
            run.started_at = Timestamp::from_micros(i64::from(i) * 1_000_000).unwrap();
            RunWithEvents {
                run,
                events: Vec::new(),
            }
        })
        .collect()
    }

    fn metrics(ids: std::ops::Range<u32>) -> Vec<ExecutionMetric> {
        ids.map(|i| ExecutionMetric {
            run_id: RunId::new(format!("run-{i:04}")).unwrap(),
            workflow_id: WorkflowId::new("etl").unwrap(),
            workflow_version: Version::FIRST,
            status: RunStatus::Succeeded,
            duration_micros: u64::from(i) + 1,
            recorded_at: Timestamp::from_micros(i64::from(i)).unwrap(),
            counters: BTreeMap::new(),
            values: BTreeMap::new(),
        })
        .collect()
    }

    /// A repeated pass over stored records fails one optimistic `COPY`,
    /// not one per batch; new records after a clean look go optimistic
    /// again; what is stored is the same either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_writes_remember_between_calls_whether_to_look_first() {
        let test = "client::bulk_writes_remember_between_calls_whether_to_look_first";
        if testing::server_or_skip(test).await.is_none() {
            return;
        }
        let config = testing::test_config().await.expect("a test server");
        let _guard = TestSchema::new(config.clone());
        let store = PostgresStore::open(config).await.unwrap();
        let hints = [&store.inner.import_hint, &store.inner.record_hint];

        // Runs and metrics of `ids`, each in one bulk write: (inserted,
        // unchanged), the same for both.
        let both = async |ids: std::ops::Range<u32>| {
            let r = store.import_runs(runs(ids.clone())).await.unwrap();
            let m = store.record_many(metrics(ids)).await.unwrap();
            assert_eq!((r.inserted, r.unchanged), (m.inserted, m.unchanged));
            (r.inserted, r.unchanged)
        };

        // New records: optimistic, nothing fails.
        for b in 0..3 {
            assert_eq!(both(b * 10..b * 10 + 10).await, (10, 0));
        }
        assert_eq!(hints.map(|h| h.misses()), [0, 0]);

        // A second pass over the same records: one miss each, then careful.
        for b in 0..3 {
            assert_eq!(both(b * 10..b * 10 + 10).await, (0, 10));
        }
        assert_eq!(hints.map(|h| h.misses()), [1, 1]);

        // New records again: the first call looks and finds none, so the
        // ones after it are optimistic; a half-stored batch is one miss.
        for b in 3..6 {
            assert_eq!(both(b * 10..b * 10 + 10).await, (10, 0));
        }
        assert_eq!(hints.map(|h| h.misses()), [1, 1]);
        assert_eq!(both(55..65).await, (5, 5));
        assert_eq!(hints.map(|h| h.misses()), [2, 2]);
        assert_eq!(
            store
                .count_runs(runstore_core::RunFilter::default())
                .await
                .unwrap(),
            65
        );
    }
}
