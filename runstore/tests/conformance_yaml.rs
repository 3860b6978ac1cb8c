//! The proof that backends swap by configuration alone: the whole
//! conformance suite, once per backend type, through a YAML file that
//! `Storage::open_file` reads. Nothing here names a backend type in Rust.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runstore::Storage;
use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};

/// Keeps a test's folder and storage alive, and remembers its config file.
struct Guard {
    _dir: Arc<tempfile::TempDir>,
    config: PathBuf,
    _storage: Storage,
    _extra: Arc<dyn Any + Send + Sync>,
}

/// Writes the YAML of a fresh store set into a folder, given the options
/// mapping of a fresh Postgres schema when the factory asks for one.
type YamlFn = fn(&Path, Option<&str>) -> String;

/// A [`StoreFactory`] whose `create` writes a YAML file into a temp folder
/// and opens `Storage` from it.
pub struct YamlFactory {
    name: &'static str,
    yaml: YamlFn,
    shared: bool,
    postgres: bool,
    file_artifacts: bool,
}

impl YamlFactory {
    /// A factory named `name` writing the YAML that `yaml` makes;
    /// `shared`: reopening the file gives the same data.
    #[allow(dead_code)]
    pub fn new(name: &'static str, yaml: YamlFn, shared: bool) -> Self {
        YamlFactory {
            name,
            yaml,
            shared,
            postgres: false,
            file_artifacts: false,
        }
    }

    /// Artifacts sit on the file backend, so the factory can tamper with them.
    #[allow(dead_code)]
    pub fn with_file_artifacts(mut self) -> Self {
        self.file_artifacts = true;
        self
    }

    /// A factory whose YAML gets a fresh schema of the shared Postgres
    /// harness; the schema is dropped with the stores.
    #[allow(dead_code)]
    pub fn with_postgres(mut self) -> Self {
        self.postgres = true;
        self
    }
}

fn err(e: impl std::fmt::Display) -> runstore::Error {
    runstore::Error::backend(e.to_string(), None)
}

#[runstore::async_trait]
impl StoreFactory for YamlFactory {
    fn name(&self) -> String {
        format!("{} (through YAML)", self.name)
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::none();
        if self.shared {
            c = c.with(Capability::SharedStorage);
        }
        if self.file_artifacts {
            c = c.with(Capability::TamperArtifacts);
        }
        c
    }

    /// Flips the first byte of an artifact kept by the file backend, found
    /// through the opened storage and the layout of storage-file's FORMAT.md:
    /// `artifacts/<run>/phases/<phase>/(d/<dir>/)*f/<name>`.
    async fn tamper_artifact(
        &self,
        stores: &TestStores,
        key: &runstore::ArtifactKey,
    ) -> runstore::Result<()> {
        let guard = stores
            .guard
            .downcast_ref::<Guard>()
            .ok_or_else(|| err("not a YAML store set"))?;
        let root: PathBuf = guard
            ._storage
            .backends()
            .iter()
            .filter(|b| b.concerns.contains(&runstore::Concern::Artifacts))
            .find_map(|b| match &b.backend.handle {
                #[cfg(feature = "file")]
                runstore::BackendHandle::File(store) => Some(store.root().to_path_buf()),
                _ => None,
            })
            .ok_or_else(|| err("artifacts are not on the file backend"))?;
        let mut path = root.join("artifacts");
        path.push(key.run_id.as_str());
        path.push("phases");
        path.push(key.phase.as_str());
        let segments: Vec<&str> = key.path.segments().collect();
        if let Some((last, dirs)) = segments.split_last() {
            for d in dirs {
                path.push("d");
                path.push(d);
            }
            path.push("f");
            path.push(last);
        }
        let mut bytes = std::fs::read(&path).map_err(err)?;
        match bytes.first_mut() {
            Some(b) => *b ^= 0xff,
            None => bytes.push(0),
        }
        std::fs::write(&path, bytes).map_err(err)
    }

    async fn create(&self) -> runstore::Result<TestStores> {
        let dir = Arc::new(tempfile::tempdir().map_err(err)?);
        let (pg, extra) = if self.postgres {
            pg_options().await?
        } else {
            (None, nothing())
        };
        let yaml = (self.yaml)(dir.path(), pg.as_deref());
        let config = dir.path().join("runstore.yaml");
        std::fs::write(&config, yaml).map_err(err)?;
        let storage = Storage::open_file(&config).await?;
        let stores = storage.stores();
        Ok(TestStores::with_guard(
            stores,
            Arc::new(Guard {
                _dir: dir,
                config,
                _storage: storage,
                _extra: extra,
            }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> runstore::Result<TestStores> {
        let guard = stores
            .guard
            .downcast_ref::<Guard>()
            .ok_or_else(|| err("not a YAML store set"))?;
        let storage = Storage::open_file(&guard.config).await?;
        Ok(TestStores::with_guard(
            storage.stores(),
            Arc::new(Guard {
                _dir: guard._dir.clone(),
                config: guard.config.clone(),
                _storage: storage,
                _extra: guard._extra.clone(),
            }),
        ))
    }
}

fn nothing() -> Arc<dyn Any + Send + Sync> {
    Arc::new(())
}

#[cfg(feature = "postgres")]
async fn pg_options() -> runstore::Result<(Option<String>, Arc<dyn Any + Send + Sync>)> {
    use runstore_postgres::testing::{TestSchema, test_config};
    let config = test_config()
        .await
        .ok_or_else(|| err("no PostgreSQL test server"))?;
    // JSON strings are valid YAML double-quoted scalars.
    let url = serde_json::to_string(&config.url).map_err(err)?;
    let options = format!(
        "{{ type: postgres, url: {url}, schema: {}, pool_size: 4 }}",
        config.schema
    );
    Ok((Some(options), Arc::new(TestSchema::new(config))))
}

#[cfg(not(feature = "postgres"))]
async fn pg_options() -> runstore::Result<(Option<String>, Arc<dyn Any + Send + Sync>)> {
    Err(err("the postgres feature is off"))
}

/// The factory expression of the Postgres suites: without a server the test
/// returns early after the harness printed loudly that it did not run (or
/// panicked, under RUNSTORE_REQUIRE_PG=1).
#[cfg(feature = "postgres")]
macro_rules! with_pg_server {
    ($factory:expr) => {{
        if runstore_postgres::testing::test_server_blocking().is_none() {
            runstore_postgres::testing::no_server(
                "runstore facade conformance through YAML",
                &runstore_postgres::testing::why_no_server().unwrap_or_else(|| "no server".into()),
            );
            return;
        }
        $factory
    }};
}

mod memory {
    use super::*;

    fn yaml(_: &Path, _: Option<&str>) -> String {
        "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n".into()
    }

    runstore_conformance::conformance_tests!(YamlFactory::new("memory", yaml, false));
}

#[cfg(feature = "file")]
mod file {
    use super::*;

    // Relative paths, spelled differently: resolved against the folder of
    // the config file, and shared as one handle.
    fn yaml(_: &Path, _: Option<&str>) -> String {
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: file, path: data }\n  metrics: { type: file, path: ./data }\n  artifacts: { type: file, path: data/../data }\n".into()
    }

    runstore_conformance::conformance_tests!(
        YamlFactory::new("file", yaml, true).with_file_artifacts()
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    fn yaml(_: &Path, _: Option<&str>) -> String {
        "storage:\n  workflows: { type: sqlite, path: runstore.db }\n  logs: { type: sqlite, path: ./runstore.db }\n  metrics: { type: sqlite, path: runstore.db }\n  artifacts: { type: sqlite, path: runstore.db }\n".into()
    }

    runstore_conformance::conformance_tests!(YamlFactory::new("sqlite", yaml, true));
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    fn yaml(_: &Path, pg: Option<&str>) -> String {
        let pg = pg.unwrap_or("{ type: postgres }");
        format!("storage:\n  workflows: {pg}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {pg}\n")
    }

    runstore_conformance::conformance_tests!(with_pg_server!(
        YamlFactory::new("postgres", yaml, true).with_postgres()
    ));
}

/// Workflows on files, logs on SQLite, metrics on Postgres, artifacts on
/// files: three backends of three kinds behind one `Storage`.
#[cfg(all(feature = "postgres", feature = "file", feature = "sqlite"))]
mod mixed {
    use super::*;

    fn yaml(_: &Path, pg: Option<&str>) -> String {
        let pg = pg.unwrap_or("{ type: postgres }");
        format!(
            "storage:\n  workflows: {{ type: file, path: data }}\n  logs: {{ type: sqlite, path: data/logs.db }}\n  metrics: {pg}\n  artifacts: {{ type: file, path: data }}\n"
        )
    }

    runstore_conformance::conformance_tests!(with_pg_server!(
        YamlFactory::new("mixed", yaml, true)
            .with_postgres()
            .with_file_artifacts()
    ));
}

/// Without the postgres feature, the mixed file puts metrics on a second
/// SQLite file: still three handles of two kinds.
#[cfg(all(not(feature = "postgres"), feature = "file", feature = "sqlite"))]
mod mixed_without_postgres {
    use super::*;

    fn yaml(_: &Path, _: Option<&str>) -> String {
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: sqlite, path: data/logs.db }\n  metrics: { type: sqlite, path: data/metrics.db }\n  artifacts: { type: file, path: data }\n".into()
    }

    runstore_conformance::conformance_tests!(
        YamlFactory::new("mixed (no postgres)", yaml, true).with_file_artifacts()
    );
}
