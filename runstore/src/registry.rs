//! The backend registry: which `type` names a configuration may use, and how
//! each one is checked and opened. Built-in types are registered when their
//! cargo feature is on; a crate outside the workspace adds its own with
//! [`register_backend`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use async_trait::async_trait;
use runstore_core::{
    ArtifactStore, Error, LogRepository, MetricsRepository, Result, WorkflowRepository,
};

use crate::config::{BackendConfig, Concern};

/// The built-in type names and the cargo feature of `runstore` that enables
/// each one.
pub const BUILTIN_TYPES: &[(&str, Option<&str>)] = &[
    ("file", Some("file")),
    ("memory", None),
    ("postgres", Some("postgres")),
    ("s3", Some("s3")),
    ("sqlite", Some("sqlite")),
];

/// How a `type` is checked and opened. Implement it in a backend crate and
/// register it with [`register_backend`].
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// Checks the options when the configuration is parsed, so that a bad
    /// option is reported with its line and column. Return a message naming
    /// the option at fault. The default accepts anything.
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Concerns whose configurations give the same key share one opened
    /// backend (e.g. the canonical path of a database file). `None` (the
    /// default) opens a backend per concern.
    fn share_key(&self, config: &BackendConfig) -> Result<Option<String>> {
        let _ = config;
        Ok(None)
    }

    /// Opens the backend.
    async fn open(&self, config: &BackendConfig) -> Result<Backend>;

    /// Whether the store `config` names exists already, found without
    /// creating anything: `Some(false)` for a missing file or folder,
    /// `None` when the backend cannot tell without connecting (a database
    /// server; the default). [`crate::Storage::open_existing`] refuses a
    /// missing store instead of creating an empty one.
    fn exists(&self, config: &BackendConfig) -> Result<Option<bool>> {
        let _ = config;
        Ok(None)
    }
}

/// The concrete handle of an opened backend, for backend-specific commands
/// (check, backup, restore).
#[derive(Clone)]
#[non_exhaustive]
pub enum BackendHandle {
    /// The in-memory reference backend.
    Memory,
    /// The file backend.
    #[cfg(feature = "file")]
    File(runstore_file::FileStore),
    /// The SQLite backend.
    #[cfg(feature = "sqlite")]
    Sqlite(runstore_sqlite::SqliteStore),
    /// The PostgreSQL backend.
    #[cfg(feature = "postgres")]
    Postgres(runstore_postgres::PostgresStore),
    /// The S3 artifact store.
    #[cfg(feature = "s3")]
    S3(runstore_s3::S3Store),
    /// A backend registered from outside; downcast to its own type.
    Custom(Arc<dyn Any + Send + Sync>),
}

impl fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendHandle::Memory => "Memory",
            #[cfg(feature = "file")]
            BackendHandle::File(_) => "File",
            #[cfg(feature = "sqlite")]
            BackendHandle::Sqlite(_) => "Sqlite",
            #[cfg(feature = "postgres")]
            BackendHandle::Postgres(_) => "Postgres",
            #[cfg(feature = "s3")]
            BackendHandle::S3(_) => "S3",
            BackendHandle::Custom(_) => "Custom",
        })
    }
}

/// An opened backend: the concerns it can hold and its concrete handle.
#[derive(Clone)]
pub struct Backend {
    /// Its workflow store, if it offers one.
    pub workflows: Option<Arc<dyn WorkflowRepository>>,
    /// Its log store, if it offers one.
    pub logs: Option<Arc<dyn LogRepository>>,
    /// Its metrics store, if it offers one.
    pub metrics: Option<Arc<dyn MetricsRepository>>,
    /// Its artifact store, if it offers one.
    pub artifacts: Option<Arc<dyn ArtifactStore>>,
    /// The concrete handle.
    pub handle: BackendHandle,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("handle", &self.handle)
            .field("workflows", &self.workflows.is_some())
            .field("logs", &self.logs.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("artifacts", &self.artifacts.is_some())
            .finish()
    }
}

impl Backend {
    /// A backend that holds all four concerns through one cloneable store.
    pub fn all<S>(store: S, handle: BackendHandle) -> Backend
    where
        S: WorkflowRepository + LogRepository + MetricsRepository + ArtifactStore + Clone,
    {
        Backend {
            workflows: Some(Arc::new(store.clone())),
            logs: Some(Arc::new(store.clone())),
            metrics: Some(Arc::new(store.clone())),
            artifacts: Some(Arc::new(store)),
            handle,
        }
    }

    /// Whether it offers `concern`.
    pub fn offers(&self, concern: Concern) -> bool {
        match concern {
            Concern::Workflows => self.workflows.is_some(),
            Concern::Logs => self.logs.is_some(),
            Concern::Metrics => self.metrics.is_some(),
            Concern::Artifacts => self.artifacts.is_some(),
        }
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
        r.factories
            .insert("memory".into(), Arc::new(crate::builtin::MemoryFactory));
        #[cfg(feature = "file")]
        r.factories
            .insert("file".into(), Arc::new(crate::builtin::FileFactory));
        #[cfg(feature = "sqlite")]
        r.factories
            .insert("sqlite".into(), Arc::new(crate::builtin::SqliteFactory));
        #[cfg(feature = "postgres")]
        r.factories
            .insert("postgres".into(), Arc::new(crate::builtin::PostgresFactory));
        #[cfg(feature = "s3")]
        r.factories
            .insert("s3".into(), Arc::new(crate::builtin::S3Factory));
        r
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
/// read afterwards can name it in `type:`.
///
/// ```
/// use runstore::{Backend, BackendConfig, BackendFactory, BackendHandle, Result};
///
/// struct InMemory;
/// #[runstore::async_trait]
/// impl BackendFactory for InMemory {
///     async fn open(&self, _config: &BackendConfig) -> Result<Backend> {
///         let s = runstore::memory::store_set();
///         Ok(Backend { workflows: Some(s.workflows), logs: Some(s.logs), metrics: Some(s.metrics),
///                      artifacts: Some(s.artifacts), handle: BackendHandle::Memory })
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
