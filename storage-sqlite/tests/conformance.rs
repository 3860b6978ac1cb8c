//! The whole conformance suite on a database file per rule; one trial per
//! rule (`harness = false`).

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

mod common;

runstore_conformance::conformance_main!(common::SqliteFactory);
