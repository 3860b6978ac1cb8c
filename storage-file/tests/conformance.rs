//! The whole conformance suite on the file backend, default durability,
//! with the factory of `runstore_file::testing`; one trial per rule
//! (`harness = false`).

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

runstore_conformance::conformance_main!(runstore_file::testing::FileFactory);
