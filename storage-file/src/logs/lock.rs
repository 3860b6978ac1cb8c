//! The logs lock (`locks/logs.lock`): shared by reads, exclusive for
//! writes of runs and events, and released before group-commit fsyncs.

use runstore_core::Result;

use crate::Inner;
use crate::fsutil::{self, LockGuard, SyncTicket};

/// The lock file of the logs concern, under `locks/`.
pub(crate) const LOCK: &str = "logs.lock";

/// Holds the logs lock until [`finish`] releases it.
pub(crate) struct Locked {
    _guard: LockGuard,
}

/// Takes the logs lock: shared to read, exclusive to write.
pub(crate) fn lock(inner: &Inner, exclusive: bool) -> Result<Locked> {
    Ok(Locked {
        _guard: fsutil::take_lock(&inner.root, LOCK, exclusive)?,
    })
}

/// Releases the lock, then syncs the group-commit appends made under it,
/// so waiting for the disk never blocks other writers; returns `value`.
pub(crate) fn finish<T>(
    inner: &Inner,
    locked: Locked,
    value: T,
    tickets: Vec<SyncTicket>,
) -> Result<T> {
    drop(locked);
    for t in tickets {
        inner.syncer.sync(t)?;
    }
    Ok(value)
}
