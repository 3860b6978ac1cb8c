//! The whole suite against the reference in-memory backend.

use runstore_conformance::MemoryFactory;

runstore_conformance::conformance_tests!(MemoryFactory);
