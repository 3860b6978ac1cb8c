//! The test harness shared by every PostgreSQL test in the workspace
//! (feature `testing`).
//!
//! Where the server comes from, in order:
//! 1. `RUNSTORE_PG_URL`, if set (it must answer);
//! 2. `postgres://postgres@127.0.0.1:5432/test`, if it answers (not tried
//!    with `RUNSTORE_PG_SKIP_LOCAL=1`, to exercise the next step);
//! 3. a throwaway cluster made with the system's `initdb` / `pg_ctl`
//!    (highest version under `/usr/lib/postgresql/*/bin`, or on `PATH`) in a
//!    temp folder on a free port, as the `postgres` user when running as
//!    root; started once per test process and stopped by a watchdog when
//!    the process exits.
//!
//! Each test gets its own schema ([`test_config`]), so tests run in
//! parallel. If no server can be had, [`no_server`] prints loudly that the
//! tests did not run and how to get a server; with `RUNSTORE_REQUIRE_PG=1`
//! it panics instead, so CI cannot pass by skipping.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::{PostgresConfig, PostgresStore};

mod factory;
pub use factory::{PgFactory, tamper};

/// The server on 127.0.0.1:5432 tried when `RUNSTORE_PG_URL` is not set.
pub const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL server the tests may use.
#[derive(Clone, Debug)]
pub struct TestServer {
    url: String,
    origin: &'static str,
}

impl TestServer {
    /// Base URL of the server (no password is ever needed by the harness's
    /// own servers; one from `RUNSTORE_PG_URL` may carry one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it came from: `RUNSTORE_PG_URL`, `127.0.0.1:5432` or
    /// `throwaway cluster`.
    pub fn origin(&self) -> &'static str {
        self.origin
    }
}

/// Whether a missing server must fail the tests (`RUNSTORE_REQUIRE_PG=1`).
pub fn require_pg() -> bool {
    std::env::var("RUNSTORE_REQUIRE_PG")
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// What to do when a test cannot get a server: panic under
/// `RUNSTORE_REQUIRE_PG=1`, else print loudly that `test` did not run.
pub fn no_server(test: &str, why: &str) {
    let msg = format!(
        "PostgreSQL tests did NOT run ({test}): {why}.\n\
         Get a server by one of: set RUNSTORE_PG_URL=postgres://user@host:port/db; run one on \
         127.0.0.1:5432 with trust auth for user postgres and a database `test`; or install the \
         PostgreSQL server package (initdb/pg_ctl) so the harness can start a throwaway cluster.\n\
         Set RUNSTORE_REQUIRE_PG=1 to make this a failure."
    );
    if require_pg() {
        panic!("RUNSTORE_REQUIRE_PG=1 but {msg}");
    }
    // Written to the stderr handle itself, not through eprintln!, so the
    // test harness's output capture does not hide it for passing tests.
    use std::io::Write;
    static BANNER: std::sync::Once = std::sync::Once::new();
    let mut err = std::io::stderr().lock();
    BANNER.call_once(|| {
        let bar = "!".repeat(78);
        let _ = writeln!(err, "\n{bar}\n!!! {msg}\n{bar}\n");
    });
    let _ = writeln!(err, "!!! PostgreSQL test did NOT run: {test}");
}

static SERVER: OnceCell<Result<TestServer, String>> = OnceCell::const_new();

/// The server for this test process, found (or started) once.
pub async fn test_server() -> Option<TestServer> {
    let found = SERVER
        .get_or_init(|| async {
            let found = find_server().await;
            if let Ok(s) = &found {
                eprintln!(
                    "runstore-postgres tests: using {} ({})",
                    crate::config::redact_url(&s.url),
                    s.origin
                );
            }
            found
        })
        .await;
    match found {
        Ok(s) => Some(s.clone()),
        Err(_) => None,
    }
}

/// Why [`test_server`] found none (`None` if it found one or has not run).
pub fn why_no_server() -> Option<String> {
    SERVER.get().and_then(|r| r.as_ref().err().cloned())
}

/// [`test_server`] from synchronous code (outside any runtime), e.g. the
/// factory of `conformance_main!`, which is called in the test binary's `main`.
pub fn test_server_blocking() -> Option<TestServer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a runtime to find a PostgreSQL test server");
    rt.block_on(test_server())
}

/// The server, or `None` after [`no_server`] (which panics under
/// `RUNSTORE_REQUIRE_PG=1`).
pub async fn server_or_skip(test: &str) -> Option<TestServer> {
    let s = test_server().await;
    if s.is_none() {
        no_server(test, &why_no_server().unwrap_or_else(|| "no server".into()));
    }
    s
}

async fn find_server() -> Result<TestServer, String> {
    if let Ok(url) = std::env::var("RUNSTORE_PG_URL")
        && !url.trim().is_empty()
    {
        let shown = crate::config::redact_url(&url);
        return match probe(&url).await {
            Ok(()) => Ok(TestServer {
                url,
                origin: "RUNSTORE_PG_URL",
            }),
            Err(e) => Err(format!("RUNSTORE_PG_URL={shown} does not answer: {e}")),
        };
    }
    let skip_local = std::env::var("RUNSTORE_PG_SKIP_LOCAL").is_ok_and(|v| v.trim() == "1");
    let local = if skip_local {
        Err("skipped: RUNSTORE_PG_SKIP_LOCAL=1".to_string())
    } else {
        probe(LOCAL_URL).await
    };
    let local_err = match local {
        Ok(()) => {
            return Ok(TestServer {
                url: LOCAL_URL.to_string(),
                origin: "127.0.0.1:5432",
            });
        }
        Err(e) => e,
    };
    let started = tokio::task::spawn_blocking(Cluster::start_new)
        .await
        .map_err(|e| format!("starting a throwaway cluster panicked: {e}"))?;
    match started {
        Ok(cluster) => {
            let url = cluster.url();
            probe(&url)
                .await
                .map_err(|e| format!("the throwaway cluster does not answer: {e}"))?;
            // Lives as long as the process; the watchdog stops it then.
            std::mem::forget(cluster);
            Ok(TestServer {
                url,
                origin: "throwaway cluster",
            })
        }
        Err(e) => Err(format!(
            "{LOCAL_URL} does not answer ({local_err}), and no throwaway cluster could be started ({e})"
        )),
    }
}

/// Connects once and runs `SELECT 1`, within a few seconds.
async fn probe(url: &str) -> Result<(), String> {
    let attempt = async {
        let client = raw_client(url).await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// A plain tokio-postgres client on `url` (its connection runs on the
/// current runtime), for tests that go behind the store's back.
pub async fn raw_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

static SCHEMA_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A schema name no other test (in this or another process) uses.
pub fn unique_schema() -> String {
    let n = SCHEMA_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("rs_test_{}_{n}_{nanos}", std::process::id())
}

/// A config on the test server with a fresh schema, or `None` if there is
/// no server (see [`require_pg`]). Drop the schema afterwards with
/// [`drop_schema`] or keep a [`TestSchema`] guard.
pub async fn test_config() -> Option<PostgresConfig> {
    let server = test_server().await?;
    Some(PostgresConfig::new(server.url()).with_schema(unique_schema()))
}

/// Drops the config's schema and everything in it.
pub async fn drop_schema(config: &PostgresConfig) -> Result<(), String> {
    crate::config::validate_schema(&config.schema).map_err(|e| e.to_string())?;
    let client = raw_client(&config.url).await.map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            crate::config::quote_ident(&config.schema)
        ))
        .await
        .map_err(|e| e.to_string())
}

/// Drops its schema when dropped (on a helper thread with its own runtime,
/// so it works inside and outside async code).
#[derive(Debug)]
pub struct TestSchema {
    config: PostgresConfig,
}

impl TestSchema {
    /// Guards the schema of `config`.
    pub fn new(config: PostgresConfig) -> Self {
        TestSchema { config }
    }

    /// The guarded config.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt
                && let Err(e) = rt.block_on(drop_schema(&config))
            {
                eprintln!("could not drop test schema {}: {e}", config.schema);
            }
        });
        let _ = cleanup.join();
    }
}

/// Connects, migrating the schema only up to `version` (tests of upgrades
/// from older schema versions).
pub async fn connect_at_version(
    config: PostgresConfig,
    version: u32,
) -> runstore_core::Result<PostgresStore> {
    PostgresStore::connect_up_to(config, version).await
}

/// A throwaway PostgreSQL cluster in a temp folder, from the system's
/// binaries. Dropping it stops it and removes the folder; a watchdog
/// process does the same if the test process dies first.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Keep `fsync` and `synchronous_commit` on, so an immediate shutdown
    /// loses no committed transaction (off by default: faster tests).
    durable: bool,
}

impl Cluster {
    /// Makes and starts a cluster on a free port.
    ///
    /// # Errors
    /// A message saying what is missing or what failed.
    pub fn start_new() -> Result<Cluster, String> {
        Self::start_new_with(false)
    }

    /// Like [`Cluster::start_new`], with `fsync` and `synchronous_commit`
    /// on: for tests that stop the server with `immediate` and count on
    /// every acknowledged commit surviving.
    ///
    /// # Errors
    /// A message saying what is missing or what failed.
    pub fn start_new_durable() -> Result<Cluster, String> {
        Self::start_new_with(true)
    }

    fn start_new_with(durable: bool) -> Result<Cluster, String> {
        let bin = find_bin_dir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) found")?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("runstore-pg-")
            .tempdir()
            .map_err(|e| format!("making a temp folder: {e}"))?
            .keep();
        let port = free_port()?;
        let cluster = Cluster {
            dir,
            bin,
            port,
            as_postgres,
            durable,
        };
        cluster.spawn_watchdog();
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&cluster.dir))?;
        }
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        cluster.start()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let fast = if self.durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{fast}",
            self.port,
            self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) -> Result<(), String> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Stops the server the hard way (`immediate`: no checkpoint, every
    /// process killed; the next start recovers from the WAL).
    pub fn stop_immediate(&self) -> Result<(), String> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// The cluster's folder (data directory in `data/`, log in `log`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Appends settings to the cluster's `postgresql.conf` (taking effect
    /// at the next start), and gives the server user ownership of the
    /// folder again, so files a test wrote there (certificates) are
    /// readable by it.
    pub fn configure(&self, settings: &str) -> Result<(), String> {
        use std::io::Write;
        let conf = self.data().join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| format!("opening {}: {e}", conf.display()))?;
        writeln!(f, "\n{settings}").map_err(|e| format!("writing {}: {e}", conf.display()))?;
        if self.as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&self.dir))?;
        }
        Ok(())
    }

    /// The process id of the cluster's postmaster, while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The postmaster and every process it started (its backends), so a
    /// test can freeze them all with SIGSTOP and thaw them with SIGCONT.
    pub fn server_pids(&self) -> Vec<u32> {
        let Some(pm) = self.postmaster_pid() else {
            return Vec::new();
        };
        let mut pids = vec![pm];
        if let Ok(out) = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &pm.to_string()])
            .output()
        {
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server binaries, as `postgres` when we are root.
    fn pg(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args);
        run(&mut cmd)
    }

    /// A detached shell that waits for this process to exit, then stops the
    /// server and removes the folder.
    fn spawn_watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.as_postgres {
            format!(
                "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data().display()
            )
        } else {
            format!(
                "'{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data().display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The highest-versioned `/usr/lib/postgresql/*/bin` with `initdb`, else
/// the folder of an `initdb` on `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
