//! The whole conformance suite against PostgreSQL, one fresh schema per
//! rule; one trial per rule (`harness = false`).
//!
//! Without a server every rule is reported ignored, after the harness
//! printed loudly that the suite did not run; with `RUNSTORE_REQUIRE_PG=1`
//! a missing server fails the binary instead: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use runstore_conformance::Unavailable;
use runstore_postgres::testing::{self, PgFactory};

/// The factory, or why there is none after printing loudly that there is
/// no server (which panics instead under `RUNSTORE_REQUIRE_PG=1`).
fn factory() -> Result<PgFactory, Unavailable> {
    match testing::test_server_blocking() {
        Some(server) => Ok(PgFactory {
            url: server.url().to_string(),
        }),
        None => {
            let why = testing::why_no_server().unwrap_or_else(|| "no server".into());
            testing::no_server("conformance suite", &why);
            Err(Unavailable(format!("no PostgreSQL server: {why}")))
        }
    }
}

runstore_conformance::conformance_main!(if_available: factory());
