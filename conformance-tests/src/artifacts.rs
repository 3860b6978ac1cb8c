//! Rules for `ArtifactStore` (DESIGN.md section 4, "Artifacts").

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn artifact_put_records_hash_size_type_creator_time(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_put_records_hash_size_type_creator_time".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_put_same_bytes_is_noop(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_put_same_bytes_is_noop".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_put_other_bytes_is_immutable(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_put_other_bytes_is_immutable".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_overwrite_token_is_compare_and_swap(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_overwrite_token_is_compare_and_swap".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_read_returns_exact_bytes(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_read_returns_exact_bytes".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_read_detects_tampering(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_read_detects_tampering".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_large_streams_round_trip(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_large_streams_round_trip".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_list_by_run_and_phase_ordered(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_list_by_run_and_phase_ordered".into()))
}

/// NOT WRITTEN YET.
pub async fn artifact_delete(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: artifact_delete".into()))
}

/// NOT WRITTEN YET.
pub async fn bundle_is_deterministic_with_manifest(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: bundle_is_deterministic_with_manifest".into()))
}

/// NOT WRITTEN YET.
pub async fn bundle_missing_member_writes_nothing(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: bundle_missing_member_writes_nothing".into()))
}
