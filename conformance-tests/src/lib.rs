#![doc = include_str!("../README.md")]

pub mod artifacts;
pub mod bulk_load;
pub mod coordination;
pub mod encoded_events;
pub mod event_reads;
pub mod factory;
pub mod fixtures;
pub mod hostile;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod outcome;
pub mod read_only;
pub mod runner;
pub mod runs;
pub mod workflows;

pub use factory::{Capabilities, Capability, MemoryFactory, StoreFactory, TestStores};
/// The test harness [`conformance_main!`] runs the rules with, for a binary
/// that builds its own list of [`trials`].
pub use libtest_mimic;
pub use outcome::{RuleError, RuleResult};
/// The counting allocator the memory rules read: a test binary that sets
/// `#[global_allocator] static A: runstore_conformance::PeakAlloc =
/// runstore_conformance::PeakAlloc;` has them checked; without it they are
/// skipped ([`Capability::MeasuredMemory`]).
pub use peak_alloc::PeakAlloc;
pub use runner::{
    Outcome, Report, Rule, TestBinary, Unavailable, all_rules, run_all, run_as_test_binary,
    run_rule, run_rule_blocking, trial_result, trials, trials_in,
};

/// The one list of rules. Every rule is a `pub async fn(&dyn StoreFactory)
/// -> RuleResult` in the module of its concern; its name is unique across
/// the suite and becomes the name of the generated test.
///
/// It calls `$callback!{ (args) module::rule, … }`; [`conformance_tests!`]
/// and [`all_rules`] are both made from it, so they cannot drift apart.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_rule {
    ($callback:ident ! ( $($args:tt)* )) => {
        $crate::$callback! { ( $($args)* )
            // Workflows
            workflows::workflow_store_inserts_absent_version,
            workflows::workflow_store_same_content_is_noop,
            workflows::workflow_store_other_content_conflicts,
            workflows::workflow_parent_must_exist_and_be_lower,
            workflows::workflow_get_missing_is_not_found,
            workflows::workflow_get_latest_is_highest_version,
            workflows::workflow_list_versions_ascending,
            workflows::workflow_list_all_ordered_and_paged,
            workflows::workflow_content_hash_matches_content,
            // Runs and events
            runs::run_create_and_get_round_trip,
            runs::run_create_is_idempotent_and_conflicts_on_difference,
            runs::run_status_moves_forward_only,
            runs::run_terminal_status_and_end_time_set_once,
            runs::run_end_time_not_before_start,
            runs::run_timestamps_keep_microseconds,
            runs::event_numbering_starts_at_one_without_gaps,
            runs::event_idempotency_key_returns_original_seq,
            runs::event_batch_append_is_ordered_and_atomic,
            runs::event_append_to_missing_run_is_not_found,
            runs::event_list_paged_in_sequence_order,
            runs::event_concurrent_appends_number_without_gaps,
            runs::run_import_is_idempotent,
            runs::run_import_conflict_writes_nothing,
            runs::run_import_validates_numbering_and_keys,
            runs::run_import_continues_numbering_and_keys,
            runs::run_query_filters,
            runs::run_query_orders_by_start_then_id_descending,
            runs::run_query_oldest_first,
            runs::run_query_cursor_stable_under_inserts,
            runs::run_get_recent_returns_newest_first,
            runs::run_count_matches_query,
            runs::run_delete_removes_record_and_events,
            runs::run_shared_storage_appends_from_two_handles,
            runs::run_shared_storage_survives_reopen,
            // Metrics and patterns
            metrics::metric_record_round_trip,
            metrics::metric_record_is_idempotent_and_never_counts_twice,
            metrics::metric_record_many_is_all_or_nothing,
            metrics::metric_list_paged_by_run_id,
            metrics::metric_delete,
            metrics::metric_reads_of_several_runs_at_once,
            metrics::metric_summary_counts_and_rates,
            metrics::metric_summary_percentiles_by_nearest_rank,
            metrics::metric_summary_matches_reference,
            metrics::metric_summary_of_unknown_workflow_is_empty,
            metrics::metric_summary_sum_beyond_f64_is_infinite_not_an_error,
            metrics::metric_summary_is_kept_through_every_write,
            metrics::pattern_upsert_by_id,
            metrics::pattern_list_newest_first_and_paged,
            // Artifacts and bundles
            artifacts::artifact_put_records_hash_size_type_creator_time,
            artifacts::artifact_put_same_bytes_is_noop,
            artifacts::artifact_put_other_bytes_is_immutable,
            artifacts::artifact_overwrite_token_is_compare_and_swap,
            artifacts::artifact_read_returns_exact_bytes,
            artifacts::artifact_read_detects_tampering,
            artifacts::artifact_large_streams_round_trip,
            artifacts::artifact_large_streams_in_bounded_memory,
            artifacts::artifact_read_of_a_replaced_artifact_is_whole_or_unavailable,
            artifacts::artifact_list_by_run_and_phase_ordered,
            artifacts::artifact_delete,
            artifacts::bundle_is_deterministic_with_manifest,
            artifacts::bundle_missing_member_writes_nothing,
            // Hostile input
            hostile::hostile_identifiers_rejected_naming_field,
            hostile::hostile_text_rejected_by_backend,
            hostile::hostile_but_valid_values_stored_verbatim,
            hostile::hostile_cursors_and_limits_rejected,
            hostile::hostile_deep_json_refused_on_every_write,
            // Model-based properties
            model::model_based_random_operations_match_reference,
            // Event reads: by kind, newest first
            event_reads::event_list_filters_by_kind,
            event_reads::event_list_newest_first,
            event_reads::event_list_filter_input_checked,
            event_reads::event_reads_of_several_runs_at_once,
            event_reads::event_reads_of_small_runs_tell_large_ones_apart,
            encoded_events::event_reads_encoded_equal_parsed_reads,
            encoded_events::run_import_encoded_equals_import,
            encoded_events::run_import_encoded_validates_payload_text,
            // Lifecycle: deletes and selection for retention
            lifecycle::lifecycle_delete_runs_cascades_events,
            lifecycle::lifecycle_delete_batch_validated,
            lifecycle::lifecycle_metrics_delete_many,
            lifecycle::lifecycle_artifacts_delete_of_one_run,
            lifecycle::lifecycle_batched_counts_and_artifact_deletes,
            lifecycle::lifecycle_workflow_delete_with_children,
            lifecycle::lifecycle_runs_filter_by_end_time,
            // Coordination: leases, external keys, deliveries
            coordination::coordination_lease_acquire_renew_conflict,
            coordination::coordination_lease_release_needs_current_token,
            coordination::coordination_lease_expires_and_token_grows,
            coordination::coordination_lease_one_winner_and_tokens_persist,
            coordination::coordination_external_key_create_is_idempotent,
            coordination::coordination_external_key_import_and_delete,
            coordination::coordination_delivery_recorded_once,
            // Bulk loads
            bulk_load::bulk_load_changes_no_answer,
            bulk_load::bulk_load_unended_is_whole_after_reopen,
        }
    };
}

/// Expands to `fn main()` of a test binary with `harness = false` that runs
/// every rule as one trial named after it, each against a fresh backend from
/// the factory: a pass passes, a failure fails with the rule's message, a
/// rule skipped for a missing capability is reported `ignored` with the
/// reason. See [`run_as_test_binary`].
///
/// - `conformance_main!(factory)`: `factory` gives an `impl StoreFactory`.
/// - `conformance_main!(if_available: factory)`: `factory` gives a
///   `Result<impl StoreFactory, Unavailable>`; with `Err` every rule is
///   reported ignored with its reason (e.g. no database server).
///
/// The expression is evaluated once, when the tests run (not for `--list`).
///
/// ```rust,no_run
/// // tests/conformance.rs, with `[[test]] name = "conformance"`,
/// // `harness = false` in Cargo.toml.
/// runstore_conformance::conformance_main!(runstore_conformance::MemoryFactory);
/// ```
#[macro_export]
macro_rules! conformance_main {
    (if_available: $factory:expr) => {
        fn main() {
            $crate::run_as_test_binary(|| $factory)
        }
    };
    ($factory:expr) => {
        fn main() {
            $crate::run_as_test_binary(|| {
                ::std::result::Result::<_, $crate::Unavailable>::Ok($factory)
            })
        }
    };
}

/// Expands to one `#[test]` per rule, each running that rule against a
/// fresh backend from `$factory` (an expression evaluated once per test
/// that gives an `impl StoreFactory`). A failure names its rule; a rule
/// skipped for a missing capability prints why and shows as `ok`, since the
/// default test harness cannot mark a test ignored at run time. Prefer
/// [`conformance_main!`], which reports it as `ignored`.
///
/// ```rust
/// mod conformance {
///     // A backend crate gives its own factory here.
///     use runstore_conformance::MemoryFactory;
///     runstore_conformance::conformance_tests!(MemoryFactory);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__for_each_rule! { __conformance_test_fns!($factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($factory:expr) $($group:ident :: $rule:ident),* $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::run_rule_blocking($factory, stringify!($rule));
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __rule_table {
    (() $($group:ident :: $rule:ident),* $(,)?) => {
        /// Every rule of the suite, in the order of docs/DESIGN.md section 4.
        pub static ALL_RULES: &[$crate::Rule] = &[
            $(
                $crate::Rule {
                    name: stringify!($rule),
                    concern: stringify!($group),
                    run: |f| Box::pin($crate::$group::$rule(f)),
                },
            )*
        ];
    };
}

__for_each_rule! { __rule_table!() }
