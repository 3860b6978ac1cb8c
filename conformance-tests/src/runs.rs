//! Rules for `LogRepository` (DESIGN.md section 4, "Runs and events").

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn run_create_and_get_round_trip(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_create_and_get_round_trip".into()))
}

/// NOT WRITTEN YET.
pub async fn run_create_is_idempotent_and_conflicts_on_difference(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_create_is_idempotent_and_conflicts_on_difference".into()))
}

/// NOT WRITTEN YET.
pub async fn run_status_moves_forward_only(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_status_moves_forward_only".into()))
}

/// NOT WRITTEN YET.
pub async fn run_terminal_status_and_end_time_set_once(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_terminal_status_and_end_time_set_once".into()))
}

/// NOT WRITTEN YET.
pub async fn run_end_time_not_before_start(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_end_time_not_before_start".into()))
}

/// NOT WRITTEN YET.
pub async fn run_timestamps_keep_microseconds(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_timestamps_keep_microseconds".into()))
}

/// NOT WRITTEN YET.
pub async fn event_numbering_starts_at_one_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_numbering_starts_at_one_without_gaps".into()))
}

/// NOT WRITTEN YET.
pub async fn event_idempotency_key_returns_original_seq(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_idempotency_key_returns_original_seq".into()))
}

/// NOT WRITTEN YET.
pub async fn event_batch_append_is_ordered_and_atomic(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_batch_append_is_ordered_and_atomic".into()))
}

/// NOT WRITTEN YET.
pub async fn event_append_to_missing_run_is_not_found(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_append_to_missing_run_is_not_found".into()))
}

/// NOT WRITTEN YET.
pub async fn event_list_paged_in_sequence_order(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_list_paged_in_sequence_order".into()))
}

/// NOT WRITTEN YET.
pub async fn event_concurrent_appends_number_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: event_concurrent_appends_number_without_gaps".into()))
}

/// NOT WRITTEN YET.
pub async fn run_import_is_idempotent(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_import_is_idempotent".into()))
}

/// NOT WRITTEN YET.
pub async fn run_import_conflict_writes_nothing(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_import_conflict_writes_nothing".into()))
}

/// NOT WRITTEN YET.
pub async fn run_import_validates_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_import_validates_numbering_and_keys".into()))
}

/// NOT WRITTEN YET.
pub async fn run_import_continues_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_import_continues_numbering_and_keys".into()))
}

/// NOT WRITTEN YET.
pub async fn run_query_filters(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_query_filters".into()))
}

/// NOT WRITTEN YET.
pub async fn run_query_orders_by_start_then_id_descending(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_query_orders_by_start_then_id_descending".into()))
}

/// NOT WRITTEN YET.
pub async fn run_query_cursor_stable_under_inserts(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_query_cursor_stable_under_inserts".into()))
}

/// NOT WRITTEN YET.
pub async fn run_get_recent_returns_newest_first(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_get_recent_returns_newest_first".into()))
}

/// NOT WRITTEN YET.
pub async fn run_count_matches_query(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_count_matches_query".into()))
}

/// NOT WRITTEN YET.
pub async fn run_delete_removes_record_and_events(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_delete_removes_record_and_events".into()))
}

/// NOT WRITTEN YET.
pub async fn run_shared_storage_appends_from_two_handles(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_shared_storage_appends_from_two_handles".into()))
}

/// NOT WRITTEN YET.
pub async fn run_shared_storage_survives_reopen(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: run_shared_storage_survives_reopen".into()))
}
