//! Leases and the delivery ledger on PostgreSQL (docs/DESIGN.md section
//! 11). A lease is decided in one transaction holding its row lock (a
//! racing first insert of a name fails on the primary key and the attempt
//! starts again). Expiry and delivery times are judged by the server's
//! clock, `clock_timestamp()`, so workers on machines whose clocks drift
//! apart still agree.

use runstore_core::{
    Delivery, Lease, LeaseCursor, LeaseQuery, LeaseRequest, Page, Result, Timestamp, Written,
    decide_lease_acquire, decide_lease_release, text::validate_label, validate_delivery_id,
    validate_limit,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::client::with_tx;
use crate::error::Fail;
use crate::filter::{Where, overfetch_limit};
use crate::rows::{i64_of, stored, ts};

const LEASE_COLUMNS: &str = "name, holder, token, acquired_at, expires_at";

/// The server's clock in microseconds since the epoch.
const SERVER_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

fn lease_of(row: &Row) -> Result<Lease> {
    let name: String = row.get(0);
    let loc = || format!("leases {name}");
    let token: i64 = row.get(2);
    Ok(Lease {
        holder: row.get(1),
        token: stored(
            u64::try_from(token).map_err(|_| runstore_core::Error::invalid("token", "negative")),
            loc,
        )?,
        acquired_at: ts(loc, row.get(3))?,
        expires_at: ts(loc, row.get(4))?,
        name,
    })
}

async fn server_now(tx: &tokio_postgres::Transaction<'_>) -> std::result::Result<Timestamp, Fail> {
    let row = tx.query_one(&format!("SELECT {SERVER_NOW}"), &[]).await?;
    Ok(ts(|| "the server clock".to_string(), row.get(0))?)
}

/// Reads a lease under its row lock, decides with `decide`, and writes
/// the result back (inserting the first row of a name).
async fn decide_and_store(
    store: &PostgresStore,
    what: &str,
    name: &str,
    decide: impl Fn(Option<&Lease>, Timestamp) -> Result<Lease>,
) -> Result<Lease> {
    let decide = &decide;
    with_tx!(store, what, |tx| {
        let select = tx
            .prepare_cached(&store.sql(&format!(
                "SELECT {LEASE_COLUMNS} FROM {{s}}.leases WHERE name = $1 FOR UPDATE"
            )))
            .await?;
        let current = match tx.query_opt(&select, &[&name]).await? {
            Some(row) => Some(lease_of(&row)?),
            None => None,
        };
        let now = server_now(&tx).await?;
        let next = decide(current.as_ref(), now)?;
        let sql = if current.is_some() {
            "UPDATE {s}.leases SET holder = $2, token = $3, acquired_at = $4, expires_at = $5 WHERE name = $1"
        } else {
            "INSERT INTO {s}.leases (name, holder, token, acquired_at, expires_at) VALUES ($1, $2, $3, $4, $5)"
        };
        let st = tx.prepare_cached(&store.sql(sql)).await?;
        tx.execute(
            &st,
            &[
                &next.name,
                &next.holder,
                &i64_of(next.token),
                &next.acquired_at.as_micros(),
                &next.expires_at.as_micros(),
            ],
        )
        .await?;
        Ok::<_, Fail>(next)
    })
}

pub(crate) async fn acquire_lease(store: &PostgresStore, request: LeaseRequest) -> Result<Lease> {
    request.validate()?;
    let what = format!("acquiring lease {}", request.name);
    decide_and_store(store, &what, &request.name, |current, now| {
        decide_lease_acquire(current, &request, now)
    })
    .await
}

pub(crate) async fn release_lease(store: &PostgresStore, name: &str, token: u64) -> Result<()> {
    validate_label("lease name", name)?;
    let what = format!("releasing lease {name}");
    decide_and_store(store, &what, name, |current, now| {
        decide_lease_release(current, name, token, now)
    })
    .await
    .map(drop)
}

pub(crate) async fn list_leases(store: &PostgresStore, query: LeaseQuery) -> Result<Page<Lease>> {
    let limit = validate_limit(query.limit)?;
    let after: Option<LeaseCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
    let mut w = Where::default();
    if !query.include_expired {
        w.and(&format!("expires_at > {SERVER_NOW}"), Vec::new());
    }
    if let Some(a) = after {
        w.and1("name > ?", Box::new(a.name));
    }
    let sql = format!(
        "SELECT {LEASE_COLUMNS} FROM {{s}}.leases {} ORDER BY name {}",
        w.sql(),
        overfetch_limit(limit)
    );
    let params: Vec<&(dyn ToSql + Sync)> = w.params();
    let rows = store.query_all("listing leases", &sql, &params).await?;
    let items = rows.iter().map(lease_of).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, limit, LeaseCursor::of))
}

pub(crate) async fn record_delivery(store: &PostgresStore, id: &str) -> Result<Written<Delivery>> {
    validate_delivery_id(id)?;
    let what = format!("recording delivery {id}");
    store
        .retrying(&what, || async {
            let client = store.client().await?;
            let insert = client
                .prepare_cached(&store.sql(&format!(
                    "INSERT INTO {{s}}.deliveries (id, recorded_at) VALUES ($1, {SERVER_NOW})
                     ON CONFLICT (id) DO NOTHING RETURNING recorded_at"
                )))
                .await?;
            let loc = || format!("deliveries {id}");
            if let Some(row) = client.query_opt(&insert, &[&id]).await? {
                return Ok(Written::inserted(Delivery {
                    id: id.to_owned(),
                    recorded_at: ts(loc, row.get(0))?,
                }));
            }
            let select = client
                .prepare_cached(&store.sql("SELECT recorded_at FROM {s}.deliveries WHERE id = $1"))
                .await?;
            match client.query_opt(&select, &[&id]).await? {
                Some(row) => Ok(Written::unchanged(Delivery {
                    id: id.to_owned(),
                    recorded_at: ts(loc, row.get(0))?,
                })),
                // Pruned between the two statements: record it again.
                None => Err(Fail::Retry(format!("delivery {id} vanished"))),
            }
        })
        .await
}

pub(crate) async fn prune_deliveries(
    store: &PostgresStore,
    recorded_before: Timestamp,
) -> Result<u64> {
    store
        .execute(
            "pruning deliveries",
            "DELETE FROM {s}.deliveries WHERE recorded_at < $1",
            &[&recorded_before.as_micros()],
        )
        .await
}
