//! Running database steps: a pooled connection under the operation
//! timeout ([`PostgresStore::bounded`]), attempts started again after a
//! serialization failure, deadlock or racing insert
//! ([`PostgresStore::retrying`]), and the shapes every repository uses on
//! top of them: one cached statement ([`PostgresStore::query_opt`],
//! [`PostgresStore::query_all`], [`PostgresStore::execute`]) and one
//! retried transaction ([`with_tx!`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Whether the attempts of an optimistic bulk write look for stored
/// records first: none does until one fails (a record already stored makes
/// the write a unique violation, which is retried), then every later one.
#[derive(Default)]
pub(crate) struct Careful(AtomicBool);

impl Careful {
    /// Runs one attempt, `check` telling it whether to look first.
    pub(crate) async fn attempt<T, Fut>(
        &self,
        attempt: impl FnOnce(bool) -> Fut,
    ) -> std::result::Result<T, Fail>
    where
        Fut: Future<Output = std::result::Result<T, Fail>>,
    {
        let r = attempt(self.0.load(Ordering::Relaxed)).await;
        if r.is_err() {
            self.0.store(true, Ordering::Relaxed);
        }
        r
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
