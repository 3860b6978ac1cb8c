//! Leases and the delivery ledger in a file root (docs/DESIGN.md section
//! 11; FORMAT.md, `coord/`). Every write holds the exclusive `coord.lock`,
//! so processes sharing the root decide one after another; files are
//! replaced atomically (temp file, fsync, rename, fsync of the folder), so
//! a crash leaves the old or the new state, never half of one. Expiry is
//! judged by this machine's clock.

use std::collections::BTreeMap;

use runstore_core::{
    Delivery, Error, Lease, LeaseCursor, LeaseQuery, LeaseRequest, Page, Result, Sha256Hasher,
    Timestamp, Written, decide_lease_acquire, decide_lease_release, text::validate_label,
    validate_delivery_id, validate_limit,
};

use crate::fsutil::{self, LockGuard};
use crate::{FileStore, Inner};

const LOCK: &str = "coord.lock";
const LEASES: &str = "leases.json";

fn lock(inner: &Inner, exclusive: bool) -> Result<LockGuard> {
    fsutil::take_lock(&inner.root, LOCK, exclusive)
}

/// Every lease ever acquired, by name (empty when the file is missing).
fn read_leases(inner: &Inner) -> Result<BTreeMap<String, Lease>> {
    let (path, meta) = inner.root.file(&["coord", LEASES])?;
    if meta.is_none() {
        return Ok(BTreeMap::new());
    }
    let bytes = std::fs::read(&path).map_err(|e| fsutil::io_err("reading", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(
            path.display().to_string(),
            format!("unreadable leases: {e}"),
        )
    })
}

fn write_leases(inner: &Inner, leases: &BTreeMap<String, Lease>) -> Result<()> {
    let dir = inner.root.dir(&["coord"])?;
    let bytes = serde_json::to_vec_pretty(leases)
        .map_err(|e| Error::backend("encoding leases", Some(Box::new(e))))?;
    fsutil::write_atomic(&dir, LEASES, &bytes, inner.durability)
}

/// Reads the lease of `name` under the exclusive lock, decides, and writes
/// the result back.
fn decide_and_store(
    inner: &Inner,
    name: &str,
    decide: impl FnOnce(Option<&Lease>, Timestamp) -> Result<Lease>,
) -> Result<Lease> {
    let _guard = lock(inner, true)?;
    let mut leases = read_leases(inner)?;
    let next = decide(leases.get(name), Timestamp::now())?;
    leases.insert(next.name.clone(), next.clone());
    write_leases(inner, &leases)?;
    Ok(next)
}

pub(crate) async fn acquire_lease(store: &FileStore, request: LeaseRequest) -> Result<Lease> {
    request.validate()?;
    store
        .inner
        .blocking(move |inner| {
            decide_and_store(inner, &request.name.clone(), |current, now| {
                decide_lease_acquire(current, &request, now)
            })
        })
        .await
}

pub(crate) async fn release_lease(store: &FileStore, name: &str, token: u64) -> Result<()> {
    validate_label("lease name", name)?;
    let name = name.to_owned();
    store
        .inner
        .blocking(move |inner| {
            decide_and_store(inner, &name, |current, now| {
                decide_lease_release(current, &name, token, now)
            })
            .map(drop)
        })
        .await
}

pub(crate) async fn list_leases(store: &FileStore, query: LeaseQuery) -> Result<Page<Lease>> {
    let limit = validate_limit(query.limit)?;
    let after: Option<LeaseCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
    store
        .inner
        .blocking(move |inner| {
            let leases = {
                let _guard = lock(inner, false)?;
                read_leases(inner)?
            };
            let now = Timestamp::now();
            let items: Vec<Lease> = leases
                .into_values()
                .filter(|l| after.as_ref().is_none_or(|a| l.name > a.name))
                .filter(|l| query.matches(l, now))
                .take(limit + 1)
                .collect();
            Ok(Page::from_overfetch(items, limit, LeaseCursor::of))
        })
        .await
}

/// `coord/deliveries/<2 hex>/<sha256 of the id>.json`: the id itself may
/// hold any character of a label, so it never becomes a file name.
fn delivery_file(id: &str) -> (String, String) {
    let mut h = Sha256Hasher::new();
    h.update(id.as_bytes());
    let hex = h.finish().to_hex();
    (hex[..2].to_string(), format!("{hex}.json"))
}

fn read_delivery(path: &std::path::Path) -> Result<Delivery> {
    let bytes = std::fs::read(path).map_err(|e| fsutil::io_err("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(
            path.display().to_string(),
            format!("unreadable delivery: {e}"),
        )
    })
}

pub(crate) async fn record_delivery(store: &FileStore, id: &str) -> Result<Written<Delivery>> {
    validate_delivery_id(id)?;
    let id = id.to_owned();
    store
        .inner
        .blocking(move |inner| {
            let (fan, name) = delivery_file(&id);
            let _guard = lock(inner, true)?;
            let (path, meta) = inner.root.file(&["coord", "deliveries", &fan, &name])?;
            if meta.is_some() {
                let stored = read_delivery(&path)?;
                if stored.id != id {
                    return Err(Error::corrupt(
                        path.display().to_string(),
                        format!("holds delivery {:?}, not {id:?}", stored.id),
                    ));
                }
                return Ok(Written::unchanged(stored));
            }
            let delivery = Delivery {
                id,
                recorded_at: Timestamp::now(),
            };
            let dir = inner.root.dir(&["coord", "deliveries", &fan])?;
            let bytes = serde_json::to_vec(&delivery)
                .map_err(|e| Error::backend("encoding a delivery", Some(Box::new(e))))?;
            fsutil::write_atomic(&dir, &name, &bytes, inner.durability)?;
            Ok(Written::inserted(delivery))
        })
        .await
}

pub(crate) async fn prune_deliveries(store: &FileStore, recorded_before: Timestamp) -> Result<u64> {
    store
        .inner
        .blocking(move |inner| {
            let _guard = lock(inner, true)?;
            let root = inner.root.path(&["coord", "deliveries"])?;
            let mut pruned = 0;
            for (fan, ft) in fsutil::list_dir(&root)? {
                if !ft.is_dir() {
                    continue;
                }
                let dir = inner.root.path(&["coord", "deliveries", &fan])?;
                for (name, ft) in fsutil::list_dir(&dir)? {
                    if !ft.is_file() || !name.ends_with(".json") {
                        continue;
                    }
                    let path = dir.join(&name);
                    if read_delivery(&path)?.recorded_at < recorded_before
                        && fsutil::remove_file(&path, inner.durability)?
                    {
                        pruned += 1;
                    }
                }
            }
            Ok(pruned)
        })
        .await
}
