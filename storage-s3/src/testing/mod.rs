//! The test harness shared by every S3 test in the workspace (feature
//! `testing`).
//!
//! Where the server comes from, in order:
//! 1. `RUNSTORE_S3_URL` (an S3-compatible endpoint; credentials from
//!    `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, bucket from
//!    `RUNSTORE_S3_BUCKET`, default `runstore-test`, which must exist or be
//!    creatable);
//! 2. a moto server (`moto_server`, from PyPI's `moto[server]`) started on
//!    a free loopback port, once per test process, and stopped by a
//!    watchdog when the process exits.
//!
//! Each test gets its own prefix ([`test_config`]) in one bucket, so tests
//! run in parallel. Without a server, [`no_server`] prints loudly that the
//! tests did not run; with `RUNSTORE_REQUIRE_S3=1` (as in CI) it panics
//! instead, so CI cannot pass by skipping.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::S3Config;

mod factory;
pub use factory::S3Factory;

/// The access key and secret the harness signs with on its own server
/// (moto accepts any).
pub const TEST_KEY: &str = "runstore-test";

/// The bucket the harness uses when `RUNSTORE_S3_BUCKET` is not set.
pub const DEFAULT_BUCKET: &str = "runstore-test";

/// An S3-compatible server the tests may use.
#[derive(Clone, Debug)]
pub struct TestServer {
    endpoint: String,
    bucket: String,
    origin: &'static str,
}

impl TestServer {
    /// The endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    /// The bucket the tests write into.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// `RUNSTORE_S3_URL` or `moto server`.
    pub fn origin(&self) -> &'static str {
        self.origin
    }
}

/// Whether a missing server must fail the tests (`RUNSTORE_REQUIRE_S3=1`).
pub fn require_s3() -> bool {
    std::env::var("RUNSTORE_REQUIRE_S3")
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// What to do when a test cannot get a server: panic under
/// `RUNSTORE_REQUIRE_S3=1`, else print loudly that `test` did not run.
pub fn no_server(test: &str, why: &str) {
    let msg = format!(
        "S3 TESTS DID NOT RUN ({test}): {why}. Install the local server with \
         `pip install \"moto[server]\"` or set RUNSTORE_S3_URL."
    );
    if require_s3() {
        panic!("{msg} (RUNSTORE_REQUIRE_S3=1 makes this a failure)");
    }
    eprintln!("\n!!! {msg}\n");
}

/// The server for this process, started on first use; `Err` says why there
/// is none.
pub fn test_server() -> Result<TestServer, String> {
    static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();
    SERVER.get_or_init(find_server).clone()
}

/// A config on the test server with a prefix no other test uses.
pub fn test_config(server: &TestServer) -> S3Config {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    S3Config::new(server.bucket())
        .with_endpoint(server.endpoint())
        .with_region("us-east-1")
        .with_credentials(TEST_KEY, TEST_KEY)
        .with_prefix(format!(
            "t{}-{}-{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        ))
}

/// The server, or `None` after [`no_server`] (which panics under
/// `RUNSTORE_REQUIRE_S3=1`).
pub fn server_or_skip(test: &str) -> Option<TestServer> {
    match test_server() {
        Ok(s) => Some(s),
        Err(why) => {
            no_server(test, &why);
            None
        }
    }
}

fn find_server() -> Result<TestServer, String> {
    let bucket = std::env::var("RUNSTORE_S3_BUCKET").unwrap_or_else(|_| DEFAULT_BUCKET.into());
    if let Ok(url) = std::env::var("RUNSTORE_S3_URL") {
        let url = url.trim_end_matches('/').to_string();
        // A real server may already have the bucket, or refuse unsigned
        // requests; the first open says which.
        let _ = create_bucket(&url, &bucket);
        return Ok(TestServer {
            endpoint: url,
            bucket,
            origin: "RUNSTORE_S3_URL",
        });
    }
    let endpoint = start_moto()?;
    create_bucket(&endpoint, &bucket)?;
    Ok(TestServer {
        endpoint,
        bucket,
        origin: "moto server",
    })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Starts `moto_server` (or `python3 -m moto.server`) and waits until it
/// answers.
fn start_moto() -> Result<String, String> {
    let port = free_port()?;
    let port_s = port.to_string();
    let args = ["-H", "127.0.0.1", "-p", port_s.as_str()];
    let child = Command::new("moto_server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new("python3")
                .args(["-m", "moto.server"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .map_err(|e| format!("cannot start moto_server: {e}"))?;
    let pid = child.id();
    // Stops the server when this process is gone, however it ends.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null",
            me = std::process::id()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut child = child;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "moto_server exited at start ({status}); is moto[server] installed?"
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("moto_server did not answer within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `PUT /bucket` without signature (moto accepts it); an existing bucket is
/// fine.
fn create_bucket(endpoint: &str, bucket: &str) -> Result<(), String> {
    let hostport = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("cannot create bucket {bucket} on {endpoint}: not http"))?;
    let mut stream =
        TcpStream::connect(hostport).map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("creating bucket {bucket}: {e}"))?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if status == "200" || response.contains("BucketAlreadyOwnedByYou") {
        Ok(())
    } else {
        Err(format!(
            "creating bucket {bucket} on {endpoint} answered {}",
            response.lines().next().unwrap_or("nothing")
        ))
    }
}
