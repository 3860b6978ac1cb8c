//! The whole conformance suite against PostgreSQL, one fresh schema per rule.
//!
//! Without a server (and without `RUNSTORE_REQUIRE_PG=1`) every generated
//! test prints loudly that it did not run and returns: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use runstore_postgres::testing::{self, PgFactory};

/// The factory, or `None` after printing loudly that there is no server
/// (which panics instead under `RUNSTORE_REQUIRE_PG=1`).
fn factory() -> Option<PgFactory> {
    match testing::test_server_blocking() {
        Some(server) => Some(PgFactory {
            url: server.url().to_string(),
        }),
        None => {
            testing::no_server(
                "conformance suite",
                &testing::why_no_server().unwrap_or_else(|| "no server".into()),
            );
            None
        }
    }
}

mod conformance {
    use super::factory;
    // Each generated test returns early (after the loud message) when there
    // is no server and RUNSTORE_REQUIRE_PG is not set.
    runstore_conformance::conformance_tests!(match factory() {
        Some(f) => f,
        None => return,
    });
}
