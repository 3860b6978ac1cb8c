//! The whole conformance suite on a database file per rule.

mod common;

runstore_conformance::conformance_tests!(common::SqliteFactory);
