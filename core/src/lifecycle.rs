//! Deleting records: what a batched delete returns and the decisions every
//! backend shares (docs/DESIGN.md section 8).

use std::collections::HashSet;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{Version, WorkflowId};
use crate::page::MAX_PAGE_LIMIT;

/// The most ids one batched delete takes: the page limit, so a prune that
/// deletes one selected page per call stays within it.
pub const MAX_DELETE_BATCH: usize = MAX_PAGE_LIMIT;

/// What a batched delete did, per id: deleted now, or already absent. A
/// prune treats both as done (a run deleted by an earlier, interrupted
/// prune is absent now).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deleted<K> {
    /// The ids that were stored and are deleted, in request order.
    pub deleted: Vec<K>,
    /// The ids that were not stored, in request order.
    pub absent: Vec<K>,
}

impl<K> Default for Deleted<K> {
    fn default() -> Self {
        Deleted {
            deleted: Vec::new(),
            absent: Vec::new(),
        }
    }
}

impl<K: Clone> Deleted<K> {
    /// Splits `ids` (in request order) by whether `was_stored` says each
    /// was stored.
    pub fn split(ids: &[K], mut was_stored: impl FnMut(&K) -> bool) -> Self {
        let mut out = Deleted::default();
        for id in ids {
            if was_stored(id) {
                out.deleted.push(id.clone());
            } else {
                out.absent.push(id.clone());
            }
        }
        out
    }
}

/// What [`crate::ArtifactStore::delete_run_artifacts`] removed: how many
/// artifacts and how many bytes of content. Zero when the run had none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArtifactsDeleted {
    /// Artifacts deleted.
    pub count: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl ArtifactsDeleted {
    /// Counts one artifact of `size` bytes.
    pub fn add(&mut self, size: u64) {
        self.count += 1;
        self.bytes += size;
    }
}

/// Checks a batch of ids to delete: at most [`MAX_DELETE_BATCH`], each once.
/// `field` names the argument in the error. Every backend calls this first,
/// so an oversized or repeated batch is `InvalidInput` everywhere.
pub fn validate_delete_batch<K: Eq + Hash + std::fmt::Display>(
    field: &str,
    ids: &[K],
) -> Result<()> {
    if ids.len() > MAX_DELETE_BATCH {
        return Err(Error::invalid(
            field,
            format!(
                "at most {MAX_DELETE_BATCH} ids per batch, got {}",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id) {
            return Err(Error::invalid(
                field,
                format!("{id} appears twice in one batch"),
            ));
        }
    }
    Ok(())
}

/// The decision of [`crate::WorkflowRepository::delete`], made once here:
/// `stored` says whether `(id, version)` is stored, `child` is a stored
/// version of the same workflow naming it as parent (any one). Absent:
/// `NotFound`; named as parent: `Conflict`; otherwise the backend deletes.
pub fn decide_workflow_delete(
    id: &WorkflowId,
    version: Version,
    stored: bool,
    child: Option<Version>,
) -> Result<()> {
    if !stored {
        return Err(Error::not_found(format!("workflow {id} version {version}")));
    }
    if let Some(child) = child {
        return Err(Error::conflict(format!(
            "workflow {id} version {version} is the parent of stored version {child}; delete that version first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rules() {
        assert!(validate_delete_batch::<u32>("ids", &[1, 2]).is_ok());
        let e = validate_delete_batch("ids", &[1, 2, 1]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        let big: Vec<u32> = (0..=MAX_DELETE_BATCH as u32).collect();
        assert!(validate_delete_batch("ids", &big).is_err());
    }

    #[test]
    fn split_keeps_order() {
        let d = Deleted::split(&[1, 2, 3, 4], |i| i % 2 == 0);
        assert_eq!(d.deleted, vec![2, 4]);
        assert_eq!(d.absent, vec![1, 3]);
    }

    #[test]
    fn workflow_delete_decision() {
        let id = WorkflowId::new("etl").unwrap();
        let v1 = Version::FIRST;
        let v2 = Version::new(2).unwrap();
        assert_eq!(
            decide_workflow_delete(&id, v1, false, None)
                .unwrap_err()
                .kind(),
            crate::ErrorKind::NotFound
        );
        assert_eq!(
            decide_workflow_delete(&id, v1, true, Some(v2))
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Conflict
        );
        assert!(decide_workflow_delete(&id, v1, true, None).is_ok());
    }
}
