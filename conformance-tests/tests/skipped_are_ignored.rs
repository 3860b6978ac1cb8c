//! Proof that the trials of `conformance_main!` report a rule skipped for a
//! missing capability as ignored, not as passed: the memory factory's
//! trials run through libtest-mimic with arguments built here; and that a
//! backend whose trials are all filtered out (or only listed) is never made.

use std::sync::Arc;

use runstore_conformance::libtest_mimic::{self, Arguments};
use runstore_conformance::{
    MemoryFactory, StoreFactory, TestBinary, Unavailable, all_rules, trials, trials_in,
};

/// The rules the memory factory lacks a capability for in a binary without
/// the counting allocator: no second handle, and no measured heap.
const SKIPPED_ON_MEMORY: [&str; 4] = [
    "run_shared_storage_appends_from_two_handles",
    "run_shared_storage_survives_reopen",
    "artifact_large_streams_in_bounded_memory",
    "bulk_load_unended_is_whole_after_reopen",
];

fn args() -> Arguments {
    Arguments {
        test_threads: Some(2),
        quiet: true,
        ..Arguments::default()
    }
}

#[test]
fn memory_trials_ignore_exactly_the_rules_it_lacks_capabilities_for() {
    let factory: Arc<dyn StoreFactory> = Arc::new(MemoryFactory);
    let conclusion = libtest_mimic::run(&args(), trials(Ok(factory)));
    assert_eq!(conclusion.num_failed, 0, "{conclusion:?}");
    assert_eq!(
        conclusion.num_ignored,
        SKIPPED_ON_MEMORY.len() as u64,
        "{conclusion:?}"
    );
    assert_eq!(
        conclusion.num_passed + conclusion.num_ignored,
        all_rules().len() as u64
    );
}

#[test]
fn the_skipped_rules_are_the_ones_ignored() {
    // A filter per rule: each of these alone is ignored, not passed.
    for name in SKIPPED_ON_MEMORY {
        let args = Arguments {
            filter: Some(name.into()),
            exact: true,
            ..args()
        };
        let factory: Arc<dyn StoreFactory> = Arc::new(MemoryFactory);
        let c = libtest_mimic::run(&args, trials(Ok(factory)));
        assert_eq!(
            (c.num_ignored, c.num_passed, c.num_failed),
            (1, 0, 0),
            "{name}"
        );
    }
}

#[test]
fn an_unavailable_backend_ignores_every_rule() {
    let c = libtest_mimic::run(&args(), trials(Err(Unavailable("no server".into()))));
    assert_eq!(c.num_ignored, all_rules().len() as u64);
    assert_eq!(c.num_passed + c.num_failed, 0);
}

#[test]
fn trial_names_are_the_rule_names() {
    let names: Vec<String> = trials(Err(Unavailable("listing".into())))
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let rules: Vec<&str> = all_rules().iter().map(|r| r.name).collect();
    assert_eq!(names, rules);
}

#[test]
fn grouped_trial_names_carry_the_group() {
    let names: Vec<String> = trials_in("file", Err(Unavailable("listing".into())))
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let rules: Vec<String> = all_rules()
        .iter()
        .map(|r| format!("file::{}", r.name))
        .collect();
    assert_eq!(names, rules);
}

#[test]
fn a_backend_none_of_whose_rules_run_is_never_made() {
    let never = || -> Result<MemoryFactory, Unavailable> {
        panic!("the factory of a group whose trials are all filtered out was called")
    };
    let listing = Arguments {
        list: true,
        ..args()
    };
    let _ = TestBinary::with_args(listing).suite(never);
    let elsewhere = Arguments {
        filter: Some("memory::".into()),
        ..args()
    };
    let _ = TestBinary::with_args(elsewhere)
        .suite_in("memory", || Ok(MemoryFactory))
        .suite_in("postgres", never);
}
