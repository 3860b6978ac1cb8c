//! Leases and the delivery ledger on SQLite (docs/DESIGN.md section 11).
//! Each write is one `BEGIN IMMEDIATE` transaction, so the read of the
//! stored lease and the write of the decided one never interleave with
//! another process. Expiry is judged by this machine's clock, read inside
//! the transaction.

use runstore_core::{
    Delivery, Lease, LeaseCursor, LeaseQuery, LeaseRequest, Page, Result, Timestamp, Written,
    decide_lease_acquire, decide_lease_release, validate_delivery_id, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};
use crate::{SqliteStore, changed_one};

const LEASE_COLUMNS: &str = "name, holder, token, acquired_at, expires_at";

type RawLease = (String, String, i64, i64, i64);

fn convert_lease((name, holder, token, acquired, expires): RawLease) -> Result<Lease> {
    let loc = format!("leases row {name}");
    Ok(Lease {
        token: rows::unsigned(&loc, token)?,
        acquired_at: rows::ts(&loc, acquired)?,
        expires_at: rows::ts(&loc, expires)?,
        name,
        holder,
    })
}

fn load_lease(conn: &Connection, name: &str) -> Result<Option<Lease>> {
    Ok(query_rows(
        conn,
        &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE name = ?1"),
        [name],
        convert_lease,
        "reading a lease",
    )?
    .pop())
}

fn store_lease(conn: &Connection, lease: &Lease) -> Result<()> {
    let token = rows::signed("token", lease.token)?;
    conn.prepare_cached(
        "INSERT INTO leases (name, holder, token, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
             acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            lease.name,
            lease.holder,
            token,
            lease.acquired_at.as_micros(),
            lease.expires_at.as_micros()
        ])
    })
    .ctx("writing a lease")?;
    Ok(())
}

pub(crate) async fn acquire_lease(store: &SqliteStore, request: LeaseRequest) -> Result<Lease> {
    request.validate()?;
    store
        .write_tx("acquiring a lease", move |tx| {
            let stored = load_lease(tx, &request.name)?;
            let lease = decide_lease_acquire(stored.as_ref(), &request, Timestamp::now())?;
            store_lease(tx, &lease)?;
            Ok(lease)
        })
        .await
}

pub(crate) async fn release_lease(store: &SqliteStore, name: &str, token: u64) -> Result<()> {
    runstore_core::text::validate_label("lease name", name)?;
    let name = name.to_owned();
    store
        .write_tx("releasing a lease", move |tx| {
            let stored = load_lease(tx, &name)?;
            let lease = decide_lease_release(stored.as_ref(), &name, token, Timestamp::now())?;
            store_lease(tx, &lease)
        })
        .await
}

pub(crate) async fn list_leases(store: &SqliteStore, query: LeaseQuery) -> Result<Page<Lease>> {
    let limit = validate_limit(query.limit)?;
    let after: Option<LeaseCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
    let mut select = Select::from(LEASE_COLUMNS, "leases");
    if !query.include_expired {
        select.and(
            "expires_at",
            ">",
            Value::Integer(Timestamp::now().as_micros()),
        );
    }
    let select = select.page(
        Order::Asc,
        &["name"],
        after.map(|a| vec![Value::Text(a.name)]),
        Some(limit + 1),
    );
    let items = store
        .read(move |conn| select.rows(conn, convert_lease, "listing leases"))
        .await?;
    Ok(Page::from_overfetch(items, limit, LeaseCursor::of))
}

pub(crate) async fn record_delivery(store: &SqliteStore, id: &str) -> Result<Written<Delivery>> {
    validate_delivery_id(id)?;
    let id = id.to_owned();
    store
        .write_tx("recording a delivery", move |tx| {
            let now = Timestamp::now();
            if changed_one(
                tx,
                "INSERT INTO deliveries (id, recorded_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                params![id, now.as_micros()],
                "recording a delivery",
            )? {
                return Ok(Written::inserted(Delivery {
                    id,
                    recorded_at: now,
                }));
            }
            let stored: i64 = tx
                .prepare_cached("SELECT recorded_at FROM deliveries WHERE id = ?1")
                .and_then(|mut s| s.query_row([&id], |r| r.get(0)))
                .ctx("reading a delivery")?;
            let recorded_at = rows::ts(&format!("deliveries row {id}"), stored)?;
            Ok(Written::unchanged(Delivery { id, recorded_at }))
        })
        .await
}

pub(crate) async fn prune_deliveries(
    store: &SqliteStore,
    recorded_before: Timestamp,
) -> Result<u64> {
    store
        .write_tx("pruning deliveries", move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM deliveries WHERE recorded_at < ?1")
                .and_then(|mut s| s.execute([recorded_before.as_micros()]))
                .ctx("pruning deliveries")?;
            Ok(n as u64)
        })
        .await
}
