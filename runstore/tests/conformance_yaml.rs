//! The proof that backends swap by configuration alone: the whole
//! conformance suite, once per backend type, through a YAML file that
//! `Storage::open_file` reads. Nothing here names a backend type in Rust.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runstore::Storage;
use runstore_conformance::{Capabilities, Capability, StoreFactory, TestBinary, TestStores};

/// Keeps a test's folder and storage alive, and remembers its config file.
struct Guard {
    _dir: Arc<tempfile::TempDir>,
    config: PathBuf,
    _storage: Storage,
    _extra: Arc<dyn Any + Send + Sync>,
}

/// The option mappings of fresh remote stores a factory asked for.
#[derive(Default)]
// Read only by the YAML of the postgres and s3 factories.
#[cfg_attr(not(all(feature = "postgres", feature = "s3")), allow(dead_code))]
pub struct Remote {
    /// A fresh schema of the shared Postgres harness.
    pg: Option<String>,
    /// A fresh prefix on the shared S3 harness.
    s3: Option<String>,
}

/// Writes the YAML of a fresh store set into a folder, given the option
/// mappings of the fresh remote stores the factory asked for.
type YamlFn = fn(&Path, &Remote) -> String;

/// A [`StoreFactory`] whose `create` writes a YAML file into a temp folder
/// and opens `Storage` from it.
pub struct YamlFactory {
    name: &'static str,
    yaml: YamlFn,
    shared: bool,
    postgres: bool,
    s3: bool,
    tamper: bool,
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
            s3: false,
            tamper: false,
        }
    }

    /// Artifacts sit on a backend whose stored bytes the factory can change
    /// (file, SQLite or Postgres), so it declares `TamperArtifacts`.
    #[allow(dead_code)]
    pub fn with_tamper(mut self) -> Self {
        self.tamper = true;
        self
    }

    /// A factory whose YAML gets a fresh schema of the shared Postgres
    /// harness; the schema is dropped with the stores.
    #[allow(dead_code)]
    pub fn with_postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// A factory whose YAML gets a fresh prefix on the S3 harness's server.
    #[allow(dead_code)]
    pub fn with_s3(mut self) -> Self {
        self.s3 = true;
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
            c = c
                .with(Capability::PersistsAcrossReopen)
                .with(Capability::ConcurrentHandles);
        }
        if self.tamper {
            c = c.with(Capability::TamperArtifacts);
        }
        c
    }

    /// Changes the stored bytes of an artifact behind the store's back, on
    /// whichever backend the YAML put artifacts: the opened storage names it.
    async fn tamper_artifact(
        &self,
        stores: &TestStores,
        key: &runstore::ArtifactKey,
    ) -> runstore::Result<()> {
        let guard = stores
            .guard
            .downcast_ref::<Guard>()
            .ok_or_else(|| err("not a YAML store set"))?;
        let handle = guard
            ._storage
            .backends()
            .iter()
            .find(|b| b.concerns.contains(&runstore::Concern::Artifacts))
            .map(|b| &b.backend.handle)
            .ok_or_else(|| err("no backend holds the artifacts"))?;
        match runstore::Builtin::of(handle) {
            #[cfg(feature = "file")]
            runstore::Builtin::File(store) => runstore_file::testing::tamper(store.root(), key),
            #[cfg(feature = "sqlite")]
            runstore::Builtin::Sqlite(store) => {
                let (path, key) = (store.path().to_path_buf(), key.clone());
                tokio::task::spawn_blocking(move || runstore_sqlite::testing::tamper(&path, &key))
                    .await
                    .map_err(err)?
            }
            #[cfg(feature = "postgres")]
            runstore::Builtin::Postgres(store) => {
                runstore_postgres::testing::tamper(store.config(), key).await
            }
            #[cfg(feature = "s3")]
            runstore::Builtin::S3(store) => store.tamper(key).await,
            other => Err(err(format!("cannot tamper with {key} on {other:?}"))),
        }
    }

    async fn create(&self) -> runstore::Result<TestStores> {
        let dir = Arc::new(tempfile::tempdir().map_err(err)?);
        let (pg, extra) = if self.postgres {
            pg_options().await?
        } else {
            (None, nothing())
        };
        let s3 = if self.s3 { Some(s3_options()?) } else { None };
        let yaml = (self.yaml)(dir.path(), &Remote { pg, s3 });
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

/// Flips the first byte of an artifact kept by the file backend under `root`.
fn nothing() -> Arc<dyn Any + Send + Sync> {
    Arc::new(())
}

/// The options of a fresh prefix on the S3 harness's server.
#[cfg(feature = "s3")]
fn s3_options() -> runstore::Result<String> {
    let server = runstore_s3::testing::test_server().map_err(err)?;
    let c = runstore_s3::testing::test_config(&server);
    Ok(format!(
        "{{ type: s3, bucket: {}, prefix: {}, endpoint: \"{}\", region: us-east-1, access_key_id: {k}, secret_access_key: {k} }}",
        c.bucket,
        c.prefix,
        server.endpoint(),
        k = runstore_s3::testing::TEST_KEY,
    ))
}

#[cfg(not(feature = "s3"))]
fn s3_options() -> runstore::Result<String> {
    Err(err("the s3 feature is off"))
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

/// Whether the Postgres suites can run: without a server the harness prints
/// loudly that they did not run (or panics, under RUNSTORE_REQUIRE_PG=1),
/// and their rules are reported ignored.
#[cfg(feature = "postgres")]
fn pg_server() -> Result<(), runstore_conformance::Unavailable> {
    if runstore_postgres::testing::test_server_blocking().is_some() {
        return Ok(());
    }
    let why = runstore_postgres::testing::why_no_server().unwrap_or_else(|| "no server".into());
    runstore_postgres::testing::no_server("runstore facade conformance through YAML", &why);
    Err(runstore_conformance::Unavailable(format!(
        "no PostgreSQL server: {why}"
    )))
}

/// Whether the S3 suite can run, as [`pg_server`] (RUNSTORE_REQUIRE_S3=1).
#[cfg(feature = "s3")]
fn s3_server() -> Result<(), runstore_conformance::Unavailable> {
    match runstore_s3::testing::server_or_skip("runstore facade conformance through YAML (s3)") {
        Some(_) => Ok(()),
        None => Err(runstore_conformance::Unavailable("no S3 server".into())),
    }
}

/// One trial per rule and backend type, named `backend::rule`
/// (`harness = false`), so a rule skipped for a missing capability, or a
/// whole backend without its server, is reported ignored.
fn main() {
    let binary = TestBinary::from_args().suite_in("memory", || {
        Ok(YamlFactory::new("memory", memory::yaml, false))
    });
    #[cfg(feature = "file")]
    let binary = binary.suite_in("file", || {
        Ok(YamlFactory::new("file", file::yaml, true).with_tamper())
    });
    #[cfg(feature = "sqlite")]
    let binary = binary.suite_in("sqlite", || {
        Ok(YamlFactory::new("sqlite", sqlite::yaml, true).with_tamper())
    });
    #[cfg(feature = "postgres")]
    let binary = binary.suite_in("postgres", || {
        pg_server()?;
        Ok(YamlFactory::new("postgres", postgres::yaml, true)
            .with_postgres()
            .with_tamper())
    });
    #[cfg(all(feature = "postgres", feature = "file", feature = "sqlite"))]
    let binary = binary.suite_in("mixed", || {
        pg_server()?;
        Ok(YamlFactory::new("mixed", mixed::yaml, true)
            .with_postgres()
            .with_tamper())
    });
    #[cfg(all(not(feature = "postgres"), feature = "file", feature = "sqlite"))]
    let binary = binary.suite_in("mixed_without_postgres", || {
        Ok(
            YamlFactory::new("mixed (no postgres)", mixed_without_postgres::yaml, true)
                .with_tamper(),
        )
    });
    #[cfg(all(feature = "postgres", feature = "s3", feature = "file"))]
    let binary = binary.suite_in("production", || {
        s3_server()?;
        pg_server()?;
        Ok(
            YamlFactory::new("production (files, postgres, s3)", production::yaml, true)
                .with_postgres()
                .with_s3()
                .with_tamper(),
        )
    });
    binary.run()
}

mod memory {
    use super::*;

    pub fn yaml(_: &Path, _: &Remote) -> String {
        "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n".into()
    }
}

#[cfg(feature = "file")]
mod file {
    use super::*;

    // Relative paths, spelled differently: resolved against the folder of
    // the config file, and shared as one handle.
    pub fn yaml(_: &Path, _: &Remote) -> String {
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: file, path: data }\n  metrics: { type: file, path: ./data }\n  artifacts: { type: file, path: data/../data }\n".into()
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    pub fn yaml(_: &Path, _: &Remote) -> String {
        "storage:\n  workflows: { type: sqlite, path: runstore.db }\n  logs: { type: sqlite, path: ./runstore.db }\n  metrics: { type: sqlite, path: runstore.db }\n  artifacts: { type: sqlite, path: runstore.db }\n".into()
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    pub fn yaml(_: &Path, remote: &Remote) -> String {
        let pg = remote.pg.as_deref().unwrap_or("{ type: postgres }");
        format!("storage:\n  workflows: {pg}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {pg}\n")
    }
}

/// Workflows on files, logs on SQLite, metrics on Postgres, artifacts on
/// files: three backends of three kinds behind one `Storage`.
#[cfg(all(feature = "postgres", feature = "file", feature = "sqlite"))]
mod mixed {
    use super::*;

    pub fn yaml(_: &Path, remote: &Remote) -> String {
        let pg = remote.pg.as_deref().unwrap_or("{ type: postgres }");
        format!(
            "storage:\n  workflows: {{ type: file, path: data }}\n  logs: {{ type: sqlite, path: data/logs.db }}\n  metrics: {pg}\n  artifacts: {{ type: file, path: data }}\n"
        )
    }
}

/// Without the postgres feature, the mixed file puts metrics on a second
/// SQLite file: still three handles of two kinds.
#[cfg(all(not(feature = "postgres"), feature = "file", feature = "sqlite"))]
mod mixed_without_postgres {
    use super::*;

    pub fn yaml(_: &Path, _: &Remote) -> String {
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: sqlite, path: data/logs.db }\n  metrics: { type: sqlite, path: data/metrics.db }\n  artifacts: { type: file, path: data }\n".into()
    }
}

/// The production layout of a system that outgrew one machine: workflows
/// on files, logs and metrics on Postgres, artifacts on S3.
#[cfg(all(feature = "postgres", feature = "s3", feature = "file"))]
mod production {
    use super::*;

    pub fn yaml(_: &Path, remote: &Remote) -> String {
        let pg = remote.pg.as_deref().unwrap_or("{ type: postgres }");
        let s3 = remote.s3.as_deref().unwrap_or("{ type: s3 }");
        format!(
            "storage:\n  workflows: {{ type: file, path: data }}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {s3}\n"
        )
    }
}
