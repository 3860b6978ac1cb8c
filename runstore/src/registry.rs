//! The backend registry: which `type` names a configuration may use, and the
//! [`BackendFactory`] that checks and opens each one. Each backend crate
//! owns its factory (`runstore_file::FileBackend`, …); the built-in ones are
//! registered here when their cargo feature is on, and a crate outside the
//! workspace adds its own with [`register_backend`]. The trait lives in
//! `runstore_core::backend`, so such a crate depends on core alone.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use runstore_core::backend::{BackendConfig, BackendFactory, BackendHandle};
use runstore_core::{Error, Result};

/// The built-in type names and the cargo feature of `runstore` that enables
/// each one.
pub const BUILTIN_TYPES: &[(&str, Option<&str>)] = &[
    ("file", Some("file")),
    ("memory", None),
    ("postgres", Some("postgres")),
    ("s3", Some("s3")),
    ("sqlite", Some("sqlite")),
];

/// An opened backend's handle as one of the built-in stores, for the
/// commands only a built-in backend has (check, backup, restore, tamper
/// in tests). Made by downcasting [`BackendHandle`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Builtin<'a> {
    /// The in-memory reference backend.
    Memory,
    /// The file backend.
    #[cfg(feature = "file")]
    File(&'a runstore_file::FileStore),
    /// The SQLite backend.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a runstore_sqlite::SqliteStore),
    /// The PostgreSQL backend.
    #[cfg(feature = "postgres")]
    Postgres(&'a runstore_postgres::PostgresStore),
    /// The S3 artifact store.
    #[cfg(feature = "s3")]
    S3(&'a runstore_s3::S3Store),
    /// A backend registered from outside; downcast the handle to its type.
    Other(&'a BackendHandle),
}

impl<'a> Builtin<'a> {
    /// Which built-in store `handle` holds, if any.
    pub fn of(handle: &'a BackendHandle) -> Builtin<'a> {
        if handle.is::<runstore_core::memory::InMemory>() {
            return Builtin::Memory;
        }
        #[cfg(feature = "file")]
        if let Some(s) = handle.downcast_ref() {
            return Builtin::File(s);
        }
        #[cfg(feature = "sqlite")]
        if let Some(s) = handle.downcast_ref() {
            return Builtin::Sqlite(s);
        }
        #[cfg(feature = "postgres")]
        if let Some(s) = handle.downcast_ref() {
            return Builtin::Postgres(s);
        }
        #[cfg(feature = "s3")]
        if let Some(s) = handle.downcast_ref() {
            return Builtin::S3(s);
        }
        Builtin::Other(handle)
    }
}

/// The set of `type` names a configuration may use.
#[derive(Clone)]
pub struct BackendRegistry {
    factories: BTreeMap<String, Arc<dyn BackendFactory>>,
}

impl fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendRegistry")
            .field("types", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for BackendRegistry {
    /// The built-in types whose feature is on.
    fn default() -> Self {
        BackendRegistry::with_builtins()
    }
}

impl BackendRegistry {
    /// No types at all.
    pub fn empty() -> Self {
        BackendRegistry {
            factories: BTreeMap::new(),
        }
    }

    /// The built-in types whose cargo feature is on.
    pub fn with_builtins() -> Self {
        let mut r = BackendRegistry::empty();
        r.insert(
            runstore_core::memory::TYPE_NAME,
            runstore_core::memory::MemoryBackend,
        );
        #[cfg(feature = "file")]
        r.insert(runstore_file::TYPE_NAME, runstore_file::FileBackend);
        #[cfg(feature = "sqlite")]
        r.insert(runstore_sqlite::TYPE_NAME, runstore_sqlite::SqliteBackend);
        #[cfg(feature = "postgres")]
        r.insert(
            runstore_postgres::TYPE_NAME,
            runstore_postgres::PostgresBackend,
        );
        #[cfg(feature = "s3")]
        r.insert(runstore_s3::TYPE_NAME, runstore_s3::S3Backend);
        r
    }

    fn insert(&mut self, type_name: &str, factory: impl BackendFactory) {
        self.factories
            .insert(type_name.to_string(), Arc::new(factory));
    }

    /// Adds (or replaces) a type. Built-in names cannot be replaced; a name
    /// is 1 to 64 bytes of `[a-z0-9_-]`.
    pub fn register(&mut self, type_name: &str, factory: impl BackendFactory) -> Result<()> {
        let valid = !type_name.is_empty()
            && type_name.len() <= 64
            && type_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::invalid(
                "type_name",
                format!(
                    "a backend type name is 1 to 64 bytes of [a-z0-9_-], got {}",
                    runstore_core::text::shown(type_name)
                ),
            ));
        }
        if BUILTIN_TYPES.iter().any(|(n, _)| *n == type_name) {
            return Err(Error::conflict(format!(
                "backend type `{type_name}` is built in and cannot be replaced"
            )));
        }
        self.factories
            .insert(type_name.to_string(), Arc::new(factory));
        Ok(())
    }

    /// The usable type names, sorted.
    pub fn known_types(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// The factory of a type, or the error a configuration gets for it: an
    /// unknown type lists the known ones; a built-in type whose feature is
    /// off names the feature.
    pub fn factory(&self, type_name: &str) -> std::result::Result<Arc<dyn BackendFactory>, String> {
        if let Some(f) = self.factories.get(type_name) {
            return Ok(f.clone());
        }
        if let Some((_, Some(feature))) = BUILTIN_TYPES.iter().find(|(n, _)| *n == type_name) {
            return Err(format!(
                "type `{type_name}` is built in, but this program was compiled without the \
                 cargo feature `{feature}` of the runstore crate; enable it \
                 (runstore = {{ version = \"...\", features = [\"{feature}\"] }})"
            ));
        }
        Err(format!(
            "unknown type `{}`; known types: {}",
            type_name.escape_debug(),
            self.known_types().join(", ")
        ))
    }

    /// Checks one backend configuration (type known, options valid).
    pub fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        self.factory(&config.type_name)?.validate(config)
    }
}

static GLOBAL: LazyLock<RwLock<BackendRegistry>> =
    LazyLock::new(|| RwLock::new(BackendRegistry::with_builtins()));

/// A copy of the process-wide registry used by [`crate::Config::from_file`],
/// [`crate::Storage::open_file`] and friends.
pub fn global() -> BackendRegistry {
    GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Adds a backend type to the process-wide registry, so that configurations
/// read afterwards can name it in `type:`. The factory is implemented in the
/// backend's own crate against `runstore_core::backend` (see that module
/// for a whole example); only this call needs the facade.
///
/// ```
/// use runstore::backend::{Backend, BackendConfig, BackendFactory};
/// use runstore::Result;
///
/// struct InMemory;
/// #[runstore::async_trait]
/// impl BackendFactory for InMemory {
///     async fn open(&self, _config: &BackendConfig) -> Result<Backend> {
///         Ok(Backend::from_store_set(runstore::memory::store_set(), runstore::memory::InMemory))
///     }
/// }
/// runstore::register_backend("my-mem", InMemory).unwrap();
/// let yaml = "storage:\n  workflows: { type: my-mem }\n  logs: { type: my-mem }\n  metrics: { type: my-mem }\n  artifacts: { type: my-mem }\n";
/// let config = runstore::Config::from_yaml_str(yaml).unwrap();
/// assert_eq!(config.logs.type_name, "my-mem");
/// ```
pub fn register_backend(type_name: &str, factory: impl BackendFactory) -> Result<()> {
    GLOBAL
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .register(type_name, factory)
}
