//! [`BackendFactory`]: how a `type` is checked and opened, and the
//! [`Backend`] it opens.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::config::{BackendConfig, Concern};
use crate::{
    ArtifactStore, LogRepository, MetricsRepository, Result, StoreSet, WorkflowRepository,
};

/// How a `type` is checked and opened. A backend crate implements it next
/// to its configuration type; the facade registers it under a type name.
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
    /// server; the default). The facade's `Storage::open_existing` refuses
    /// a missing store instead of creating an empty one.
    fn exists(&self, config: &BackendConfig) -> Result<Option<bool>> {
        let _ = config;
        Ok(None)
    }
}

/// The concrete store behind an opened [`Backend`], for commands only its
/// own backend has (check, backup, restore): downcast it to the backend
/// crate's store type.
///
/// ```
/// use runstore_core::backend::BackendHandle;
/// let handle = BackendHandle::new(String::from("a store"));
/// assert_eq!(handle.downcast_ref::<String>().map(String::as_str), Some("a store"));
/// assert!(handle.downcast_ref::<u32>().is_none());
/// ```
#[derive(Clone)]
pub struct BackendHandle {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl BackendHandle {
    /// Wraps a backend's store.
    pub fn new<T: Any + Send + Sync>(store: T) -> Self {
        BackendHandle {
            value: Arc::new(store),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The store, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// Whether the store is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.value.is::<T>()
    }

    /// The Rust type name of the store, for messages.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name)
    }
}

/// An opened backend: the concerns it can hold and its concrete handle.
#[derive(Clone)]
#[non_exhaustive]
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
    /// A backend that offers no concern yet, with `handle` as its concrete
    /// handle: set the concerns it holds.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runstore_core::backend::{Backend, Concern};
    /// use runstore_core::memory::MemoryLogs;
    /// let mut logs_only = Backend::new("my-log-store");
    /// logs_only.logs = Some(Arc::new(MemoryLogs::default()));
    /// assert!(logs_only.offers(Concern::Logs) && !logs_only.offers(Concern::Artifacts));
    /// ```
    pub fn new<H: Any + Send + Sync>(handle: H) -> Backend {
        Backend {
            workflows: None,
            logs: None,
            metrics: None,
            artifacts: None,
            handle: BackendHandle::new(handle),
        }
    }

    /// A backend that holds all four concerns through one cloneable store,
    /// which is also its handle.
    pub fn all<S>(store: S) -> Backend
    where
        S: WorkflowRepository + LogRepository + MetricsRepository + ArtifactStore + Clone,
    {
        Backend {
            workflows: Some(Arc::new(store.clone())),
            logs: Some(Arc::new(store.clone())),
            metrics: Some(Arc::new(store.clone())),
            artifacts: Some(Arc::new(store.clone())),
            handle: BackendHandle::new(store),
        }
    }

    /// A backend that holds all four concerns through `set`, with `handle`
    /// as its concrete handle.
    pub fn from_store_set<H: Any + Send + Sync>(set: StoreSet, handle: H) -> Backend {
        Backend {
            workflows: Some(set.workflows),
            logs: Some(set.logs),
            metrics: Some(set.metrics),
            artifacts: Some(set.artifacts),
            handle: BackendHandle::new(handle),
        }
    }

    /// A backend that holds artifacts only.
    pub fn artifacts_only<S: ArtifactStore + Clone>(store: S) -> Backend {
        Backend {
            workflows: None,
            logs: None,
            metrics: None,
            artifacts: Some(Arc::new(store.clone())),
            handle: BackendHandle::new(store),
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
