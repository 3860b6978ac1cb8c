//! The whole conformance suite with artifacts on S3 (a local moto server or
//! `RUNSTORE_S3_URL`), one fresh prefix per rule; workflows, logs and
//! metrics on the memory reference backend. One trial per rule
//! (`harness = false`).
//!
//! Without a server every rule is reported ignored, after the harness
//! printed loudly that the suite did not run; with `RUNSTORE_REQUIRE_S3=1`
//! a missing server fails the binary instead: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use runstore_conformance::Unavailable;
use runstore_s3::testing::{self, S3Factory};

/// The factory, or why there is none after printing loudly that there is
/// no server (which panics instead under `RUNSTORE_REQUIRE_S3=1`).
fn factory() -> Result<S3Factory, Unavailable> {
    match testing::test_server() {
        Ok(server) => Ok(S3Factory { server }),
        Err(why) => {
            testing::no_server("conformance suite", &why);
            Err(Unavailable(format!("no S3 server: {why}")))
        }
    }
}

runstore_conformance::conformance_main!(if_available: factory());
