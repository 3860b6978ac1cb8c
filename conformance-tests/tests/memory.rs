//! The whole suite against the reference in-memory backend, one trial per
//! rule (`harness = false`): the rules it lacks a capability for show as
//! ignored.

runstore_conformance::conformance_main!(runstore_conformance::MemoryFactory);
