//! The reference in-memory backend: correct, simple, and the model every
//! other backend is compared against by the conformance suite.
//!
//! Nothing persists; each handle holds its own data. Each concern sits
//! behind one mutex, so every operation is atomic.
//!
//! ```
//! # tokio_test_block_on(async {
//! use runstore_core::{memory, WorkflowDefinition, WorkflowId, Version};
//! let stores = memory::store_set();
//! let def = WorkflowDefinition::new(WorkflowId::new("etl").unwrap(), Version::FIRST, serde_json::json!({}));
//! assert!(stores.workflows.store(def).await.unwrap().inserted);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod artifacts;
mod logs;
mod metrics;
mod registration;
mod workflows;

use std::sync::Arc;

pub use artifacts::MemoryArtifacts;
pub use logs::{ManualClock, MemoryLogs};
pub use metrics::MemoryMetrics;
pub use registration::{InMemory, MemoryBackend, TYPE_NAME};
pub use workflows::MemoryWorkflows;

use crate::error::Result;
use crate::page::{Cursor, Page, validate_limit};
use crate::stores::StoreSet;

/// A fresh, empty in-memory [`StoreSet`].
pub fn store_set() -> StoreSet {
    StoreSet {
        workflows: Arc::new(MemoryWorkflows::default()),
        logs: Arc::new(MemoryLogs::default()),
        metrics: Arc::new(MemoryMetrics::default()),
        artifacts: Arc::new(MemoryArtifacts::default()),
    }
}

/// A fresh, empty in-memory [`StoreSet`] whose leases and deliveries
/// follow `clock`.
pub fn store_set_with_clock(clock: ManualClock) -> StoreSet {
    StoreSet {
        logs: Arc::new(MemoryLogs::with_clock(clock)),
        ..store_set()
    }
}

/// Pages `items` (already filtered and in query order, where `key_of` is
/// increasing along that order) after `cursor`.
pub(crate) fn page_after<T: Clone, K>(
    items: impl Iterator<Item = T>,
    limit: usize,
    cursor: Option<&Cursor>,
    key_of: impl Fn(&T) -> K,
) -> Result<Page<T>>
where
    K: serde::Serialize + serde::de::DeserializeOwned + Ord,
{
    let limit = validate_limit(limit)?;
    let after: Option<K> = cursor.map(|c| c.decode()).transpose()?;
    let rest: Vec<T> = items
        .filter(|item| after.as_ref().is_none_or(|a| key_of(item) > *a))
        .take(limit + 1)
        .collect();
    Ok(Page::from_overfetch(rest, limit, key_of))
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it
/// (every operation leaves the state consistent before it can panic).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
