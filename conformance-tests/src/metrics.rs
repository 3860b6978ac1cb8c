//! Rules for `MetricsRepository` (DESIGN.md section 4, "Metrics").

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn metric_record_round_trip(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_record_round_trip".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_record_is_idempotent_and_never_counts_twice(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_record_is_idempotent_and_never_counts_twice".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_record_many_is_all_or_nothing(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_record_many_is_all_or_nothing".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_list_paged_by_run_id(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_list_paged_by_run_id".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_delete(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_delete".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_summary_counts_and_rates(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_summary_counts_and_rates".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_summary_percentiles_by_nearest_rank(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_summary_percentiles_by_nearest_rank".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_summary_matches_reference(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_summary_matches_reference".into()))
}

/// NOT WRITTEN YET.
pub async fn metric_summary_of_unknown_workflow_is_empty(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: metric_summary_of_unknown_workflow_is_empty".into()))
}

/// NOT WRITTEN YET.
pub async fn pattern_upsert_by_id(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: pattern_upsert_by_id".into()))
}

/// NOT WRITTEN YET.
pub async fn pattern_list_newest_first_and_paged(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: pattern_list_newest_first_and_paged".into()))
}
