#![doc = include_str!("../README.md")]

pub mod artifacts;
pub mod chart;
pub mod child;
pub mod data;
pub mod machine;
pub mod migration;
pub mod open_root;
pub mod outbox;
pub mod prune;
pub mod raw;
pub mod report;
pub mod scale;
pub mod stores;
pub mod workloads;

/// Errors of the harness: a runstore error, a driver error or an I/O error,
/// all shown as text in the table's notes.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Result of a harness step.
pub type BenchResult<T> = std::result::Result<T, BenchError>;
