//! The memory rule catches a backend that holds a whole artifact: the
//! reference backend keeps artifacts in memory by design, so with the heap
//! counted it must fail `artifact_large_streams_in_bounded_memory`.

/// Counts the heap, so the memory rule runs.
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use runstore_conformance::{MemoryFactory, Outcome, run_rule};

#[tokio::test]
async fn a_backend_holding_a_whole_artifact_fails_the_memory_rule() {
    match run_rule(&MemoryFactory, "artifact_large_streams_in_bounded_memory").await {
        Outcome::Failed(m) => {
            assert!(m.contains("a put of 64 MiB added"), "{m}");
            assert!(m.contains("must be streamed"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
