//! [`Storage`]: one handle per concern, built from a [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runstore_core::{
    ArtifactStore, Error, LogRepository, MetricsRepository, Result, StoreSet, WorkflowRepository,
};

use crate::Backend;
use crate::outbox::Outbox;
use crate::registry::BackendRegistry;
use crate::{BackendConfig, Concern, Config};

/// One opened backend and the concerns it serves in this [`Storage`].
#[derive(Clone, Debug)]
pub struct OpenedBackend {
    /// Its `type` name.
    pub type_name: String,
    /// The concerns it serves, in configuration order.
    pub concerns: Vec<Concern>,
    /// The backend itself (with its concrete handle).
    pub backend: Backend,
}

/// The four stores of an application, each on the backend its configuration
/// chose. Cheap to clone (handles are `Arc`s).
#[derive(Clone, Debug)]
pub struct Storage {
    /// Workflow definitions.
    pub workflows: Arc<dyn WorkflowRepository>,
    /// Runs and events.
    pub logs: Arc<dyn LogRepository>,
    /// Metrics and patterns.
    pub metrics: Arc<dyn MetricsRepository>,
    /// Artifacts.
    pub artifacts: Arc<dyn ArtifactStore>,
    backends: Vec<OpenedBackend>,
    outboxes: Vec<Outbox>,
    config: Config,
}

impl Storage {
    /// Opens the embedded default ([`crate::DEFAULT_YAML`]): files and
    /// SQLite under `./runstore-data`.
    pub async fn open_default() -> Result<Storage> {
        Storage::open(&Config::default()).await
    }

    /// Opens the configuration file named by `RUNSTORE_CONFIG`, or the
    /// embedded default when it is not set: what the `runstore` command
    /// line does, for applications that follow the same convention.
    pub async fn open_from_env() -> Result<Storage> {
        match std::env::var_os("RUNSTORE_CONFIG") {
            Some(path) if !path.is_empty() => Storage::open_file(path).await,
            _ => Storage::open_default().await,
        }
    }

    /// Reads a YAML file and opens what it names.
    pub async fn open_file(path: impl AsRef<Path>) -> Result<Storage> {
        let path = path.as_ref().to_path_buf();
        // Reading and parsing is small blocking work; keep it off the executor.
        let config = tokio::task::spawn_blocking(move || Config::from_file(path))
            .await
            .map_err(|e| Error::backend("reading the configuration", Some(e.into())))??;
        Storage::open(&config).await
    }

    /// Opens `config` only if every store it names exists already (as a
    /// backend can tell without creating anything, see
    /// [`BackendFactory::exists`]); a missing one is [`Error::NotFound`]
    /// naming the concern and its configuration, and nothing is created.
    /// For sources that are read (migration, verification), where a typo
    /// must not become an empty store.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let yaml = format!(
    ///     "storage:\n  workflows: {{ type: file, path: {0} }}\n  logs: {{ type: file, path: {0} }}\n  metrics: {{ type: file, path: {0} }}\n  artifacts: {{ type: file, path: {0} }}\n",
    ///     dir.path().join("typo").display()
    /// );
    /// let config = runstore::Config::from_yaml_str(&yaml).unwrap();
    /// let err = runstore::Storage::open_existing(&config).await.unwrap_err();
    /// assert_eq!(err.kind(), runstore::ErrorKind::NotFound);
    /// assert!(!dir.path().join("typo").exists());
    /// # });
    /// ```
    pub async fn open_existing(config: &Config) -> Result<Storage> {
        let registry = crate::registry::global();
        refuse_missing(config, &registry)?;
        Storage::open_with(config, &registry).await
    }

    /// Opens `config` to read it only: every store must exist (as
    /// [`Storage::open_existing`]), each backend is asked to open read-only
    /// ([`BackendConfig::read_only`]: SQLite and PostgreSQL then create,
    /// migrate and repair nothing, and their connections cannot write), and
    /// every handle refuses writes with `InvalidInput` before they reach a
    /// backend ([`StoreSet::read_only`]). An outbox holding writes not yet
    /// in its store is [`Error::Conflict`]: what it holds would be missed
    /// by a reader; drain it first. For migration and verification sources.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use runstore::{LogRepository, Run, Version, WorkflowId};
    /// let dir = tempfile::tempdir().unwrap();
    /// let yaml = format!(
    ///     "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: sqlite, path: {0}/r.db }}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory }}\n",
    ///     dir.path().display()
    /// );
    /// let config = runstore::Config::from_yaml_str(&yaml).unwrap();
    /// drop(runstore::Storage::open(&config).await.unwrap()); // creates r.db
    /// let reader = runstore::Storage::open_read_only(&config).await.unwrap();
    /// let run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    /// let err = reader.logs.create_run(run).await.unwrap_err();
    /// assert_eq!(err.kind(), runstore::ErrorKind::InvalidInput);
    /// # });
    /// ```
    pub async fn open_read_only(config: &Config) -> Result<Storage> {
        let registry = crate::registry::global();
        refuse_missing(config, &registry)?;
        let mut config = config.clone();
        for concern in Concern::ALL {
            let bc = config.backend_mut(concern);
            bc.read_only = true;
            if let Some(dir) = bc.outbox_path().map_err(|e| bc.error(e))?
                && dir.exists()
            {
                let pending = Outbox::open(&dir)?.status().await?.total();
                if pending > 0 {
                    return Err(Error::conflict(format!(
                        "the outbox {} of the {concern} store holds {pending} writes not yet in the store; a read-only open would miss them: drain it first (runstore outbox drain)",
                        dir.display()
                    )));
                }
            }
            // Nothing to defer: a read-only storage takes no writes.
            bc.options.remove("outbox");
        }
        let storage = Storage::open_with(&config, &registry).await?;
        let view = storage.stores().read_only();
        Ok(Storage {
            workflows: view.workflows,
            logs: view.logs,
            metrics: view.metrics,
            artifacts: view.artifacts,
            ..storage
        })
    }

    /// Whether `self` and `other` share a store for some concern (the same
    /// file root, SQLite file, or Postgres URL and schema): migrating one
    /// onto the other would read and write the same data.
    pub fn shares_a_store_with(&self, other: &Storage) -> Option<Concern> {
        let registry = crate::registry::global();
        let key = |bc: &BackendConfig| {
            let factory = registry.factory(&bc.type_name).ok()?;
            let k = factory.share_key(&bc.for_backend()).ok().flatten()?;
            Some((bc.type_name.clone(), k))
        };
        let mine: Vec<_> = Concern::ALL
            .into_iter()
            .filter_map(|c| key(self.config.backend(c)))
            .collect();
        Concern::ALL
            .into_iter()
            .find(|&c| key(other.config.backend(c)).is_some_and(|k| mine.contains(&k)))
    }

    /// Parses a YAML string and opens what it names.
    pub async fn from_yaml_str(yaml: &str) -> Result<Storage> {
        Storage::open(&Config::from_yaml_str(yaml)?).await
    }

    /// Opens `config` with the process-wide registry.
    pub async fn open(config: &Config) -> Result<Storage> {
        Storage::open_with(config, &crate::registry::global()).await
    }

    /// Opens `config` with the types of `registry`. Concerns whose backends
    /// give the same share key (same SQLite file, same Postgres URL and
    /// schema, same file root) get one backend instance.
    pub async fn open_with(config: &Config, registry: &BackendRegistry) -> Result<Storage> {
        let mut backends: Vec<OpenedBackend> = Vec::new();
        let mut by_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut chosen = [0usize; 4];
        let mut outbox_dirs: BTreeMap<Concern, PathBuf> = BTreeMap::new();
        for concern in Concern::ALL {
            let full: &BackendConfig = config.backend(concern);
            if let Some(dir) = full.outbox_path().map_err(|e| full.error(e))? {
                outbox_dirs.insert(concern, dir);
            }
            let bc = full.for_backend();
            let bc: &BackendConfig = &bc;
            let factory = registry.factory(&bc.type_name).map_err(|e| bc.error(e))?;
            let key = factory.share_key(bc)?;
            let shared = key
                .as_ref()
                .and_then(|k| by_key.get(&(bc.type_name.clone(), k.clone())).copied());
            let index = match shared {
                Some(i) => i,
                None => {
                    let backend = factory.open(bc).await?;
                    tracing::debug!(
                        type_name = %bc.type_name,
                        concern = %concern,
                        config = %config.source,
                        "opened runstore backend"
                    );
                    backends.push(OpenedBackend {
                        type_name: bc.type_name.clone(),
                        concerns: Vec::new(),
                        backend,
                    });
                    let i = backends.len() - 1;
                    if let Some(k) = key {
                        by_key.insert((bc.type_name.clone(), k), i);
                    }
                    i
                }
            };
            if !backends[index].backend.offers(concern) {
                return Err(bc.error(format!(
                    "backend type `{}` does not store {concern}",
                    bc.type_name
                )));
            }
            backends[index].concerns.push(concern);
            chosen[concern as usize] = index;
        }
        let pick = |c: Concern| &backends[chosen[c as usize]].backend;
        let missing = |c: Concern| Error::backend(format!("no backend for {c}"), None);
        let mut logs = pick(Concern::Logs)
            .logs
            .clone()
            .ok_or_else(|| missing(Concern::Logs))?;
        let mut metrics = pick(Concern::Metrics)
            .metrics
            .clone()
            .ok_or_else(|| missing(Concern::Metrics))?;
        // Concerns naming one folder share one outbox.
        let mut outboxes: BTreeMap<PathBuf, Outbox> = BTreeMap::new();
        for (concern, dir) in outbox_dirs {
            let outbox = match outboxes.get(&dir) {
                Some(o) => o.clone(),
                None => {
                    let o = Outbox::open(&dir)?;
                    outboxes.insert(dir, o.clone());
                    o
                }
            };
            match concern {
                Concern::Logs => logs = outbox.wrap_logs(logs),
                _ => metrics = outbox.wrap_metrics(metrics),
            }
        }
        let outboxes: Vec<Outbox> = outboxes.into_values().collect();
        // A process that died with writes in the outbox: they drain now,
        // in the background, and whatever is deferred later drains too.
        for o in &outboxes {
            o.spawn_drain();
        }
        Ok(Storage {
            workflows: pick(Concern::Workflows)
                .workflows
                .clone()
                .ok_or_else(|| missing(Concern::Workflows))?,
            logs,
            metrics,
            artifacts: pick(Concern::Artifacts)
                .artifacts
                .clone()
                .ok_or_else(|| missing(Concern::Artifacts))?,
            backends,
            outboxes,
            config: config.clone(),
        })
    }

    /// A storage on stores opened by hand (a restore's staged copies),
    /// with no backends to list and no outbox.
    #[cfg(all(feature = "file", feature = "sqlite"))]
    pub(crate) fn from_store_set(set: StoreSet) -> Storage {
        Storage {
            workflows: set.workflows,
            logs: set.logs,
            metrics: set.metrics,
            artifacts: set.artifacts,
            backends: Vec::new(),
            outboxes: Vec::new(),
            config: Config::default(),
        }
    }

    /// The four handles as a [`StoreSet`].
    pub fn stores(&self) -> StoreSet {
        StoreSet {
            workflows: self.workflows.clone(),
            logs: self.logs.clone(),
            metrics: self.metrics.clone(),
            artifacts: self.artifacts.clone(),
        }
    }

    /// The opened backends, each once however many concerns share it.
    pub fn backends(&self) -> &[OpenedBackend] {
        &self.backends
    }

    /// The outboxes of the logs and metrics concerns that configure one
    /// (docs/DESIGN.md section 10), each once.
    pub fn outboxes(&self) -> &[Outbox] {
        &self.outboxes
    }

    /// The configuration this storage was opened from.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// [`Error::NotFound`] for the first store of `config` that its backend can
/// tell does not exist yet, without creating anything.
fn refuse_missing(config: &Config, registry: &BackendRegistry) -> Result<()> {
    for concern in Concern::ALL {
        let bc = config.backend(concern).for_backend();
        let factory = registry.factory(&bc.type_name).map_err(|e| bc.error(e))?;
        if factory.exists(&bc)? == Some(false) {
            return Err(Error::not_found(format!(
                "the {concern} store of {} ({}: {}); nothing was created there",
                config.source,
                bc.key(),
                bc.type_name
            )));
        }
    }
    Ok(())
}
