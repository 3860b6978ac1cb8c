//! The whole conformance suite with artifacts on S3 (a local moto server or
//! `RUNSTORE_S3_URL`), one fresh prefix per rule; workflows, logs and
//! metrics on the memory reference backend.
//!
//! Without a server (and without `RUNSTORE_REQUIRE_S3=1`) every generated
//! test prints loudly that it did not run and returns: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use runstore_s3::testing::{self, S3Factory};

/// The factory, or `None` after printing loudly that there is no server
/// (which panics instead under `RUNSTORE_REQUIRE_S3=1`).
fn factory() -> Option<S3Factory> {
    testing::server_or_skip("conformance suite").map(|server| S3Factory { server })
}

mod conformance {
    use super::factory;
    runstore_conformance::conformance_tests!(match factory() {
        Some(f) => f,
        None => return,
    });
}
