//! Rules for `WorkflowRepository` (DESIGN.md section 4, "Workflows").

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn workflow_store_inserts_absent_version(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_store_inserts_absent_version".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_store_same_content_is_noop(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_store_same_content_is_noop".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_store_other_content_conflicts(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_store_other_content_conflicts".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_parent_must_exist_and_be_lower(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_parent_must_exist_and_be_lower".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_get_missing_is_not_found(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_get_missing_is_not_found".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_get_latest_is_highest_version(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_get_latest_is_highest_version".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_list_versions_ascending(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_list_versions_ascending".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_list_all_ordered_and_paged(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_list_all_ordered_and_paged".into()))
}

/// NOT WRITTEN YET.
pub async fn workflow_content_hash_matches_content(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: workflow_content_hash_matches_content".into()))
}
