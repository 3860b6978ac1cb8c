// The README's example opens files and SQLite; without those features it
// would not compile as a doctest.
#![cfg_attr(all(feature = "file", feature = "sqlite"), doc = include_str!("../README.md"))]
#![cfg_attr(
    not(all(feature = "file", feature = "sqlite")),
    doc = "runstore: the facade crate (see README.md; built here without the `file` or `sqlite` feature)."
)]

#[cfg(all(feature = "file", feature = "sqlite"))]
pub mod backup;
pub mod config;
pub mod dump;
mod fsutil;
pub mod migrate;
pub mod outbox;
#[cfg(all(feature = "file", feature = "sqlite"))]
pub mod recover;
pub mod registry;
pub mod retention;
mod storage;

/// The whole public API of `runstore-core`, so that applications depend on
/// `runstore` only.
pub use runstore_core::*;

pub use config::{Config, DEFAULT_YAML};
pub use registry::{BUILTIN_TYPES, BackendRegistry, Builtin, register_backend};
pub use runstore_core::backend::{Backend, BackendConfig, BackendFactory, BackendHandle, Concern};
pub use storage::{OpenedBackend, Storage};

/// The YAML crate the configuration is read with (`yaml_serde`, the
/// maintained fork of `serde_yaml`): its `Mapping` and `Value` appear in
/// [`BackendConfig::options`].
pub use serde_yaml as yaml;

/// The file backend crate, when the `file` feature is on.
#[cfg(feature = "file")]
pub use runstore_file as file;
/// The PostgreSQL backend crate, when the `postgres` feature is on.
#[cfg(feature = "postgres")]
pub use runstore_postgres as postgres;
/// The S3 artifact store crate, when the `s3` feature is on.
#[cfg(feature = "s3")]
pub use runstore_s3 as s3;
/// The SQLite backend crate, when the `sqlite` feature is on.
#[cfg(feature = "sqlite")]
pub use runstore_sqlite as sqlite;
