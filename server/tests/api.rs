//! The API through a real HTTP client against a server on a free port, on
//! the embedded default layout (files and SQLite) and on PostgreSQL: the
//! library's behaviour (idempotent appends, forward-only status, the
//! artifact overwrite guard) seen through HTTP, and hostile requests
//! refused with nothing written.

use std::net::SocketAddr;

use reqwest::StatusCode;
use runstore::{Config, Storage};
use runstore_server::{ServeOptions, router, serve};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token";

/// A server on a free port of 127.0.0.1; stopped when dropped.
struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(storage: Storage, options: ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = router(storage, options).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        stop: Some(tx),
    }
}

/// `PUT path` with a small body over a plain socket, the path sent exactly
/// as given; the status code.
async fn raw_put(base: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"))
}

fn default_layout(dir: &std::path::Path) -> Config {
    let d = dir.display();
    Config::from_yaml_str(&format!(
        "storage:\n  workflows: {{ type: file, path: {d}/data }}\n  logs: {{ type: sqlite, path: {d}/data/runstore.db }}\n  metrics: {{ type: sqlite, path: {d}/data/runstore.db }}\n  artifacts: {{ type: file, path: {d}/data }}\n"
    ))
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = rb.bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }

    async fn put_bytes(
        &self,
        path: &str,
        bytes: &'static [u8],
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .put(self.url(path))
            .header("content-type", "text/plain")
            .body(bytes);
        if let Some(t) = token {
            rb = rb.header("x-runstore-overwrite-token", t);
        }
        self.send(rb).await
    }
}

/// Everything the API does, on one storage.
async fn the_api_behaves_like_the_library(storage: Storage) {
    let server = start(storage, ServeOptions::default().token(TOKEN)).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };

    assert_eq!(c.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(c.get("/readyz").await.0, StatusCode::OK);

    // Workflows: stored once, the same again is 200, other content 409.
    let def = json!({"id": "etl", "version": 1, "body": {"steps": ["extract"]}, "created_at": "2026-12-01T00:00:00Z"});
    let (st, v) = c
        .put_json("/v1/workflows/etl/versions/1", def.clone())
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        c.put_json("/v1/workflows/etl/versions/1", def.clone())
            .await
            .0,
        StatusCode::OK
    );
    let mut other = def.clone();
    other["body"] = json!({"steps": []});
    let (st, v) = c.put_json("/v1/workflows/etl/versions/1", other).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["kind"], json!("conflict"));
    assert_eq!(v["error"]["retryable"], json!(false));
    let (st, v) = c.get("/v1/workflows/etl/versions/1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["body"], json!({"steps": ["extract"]}));

    // Runs: created, moved forward, never back.
    let (st, v) = c
        .post(
            "/v1/runs",
            json!({"id": "r1", "workflow_id": "etl", "workflow_version": 1, "trigger": "api"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["record"]["status"], json!("pending"));
    let (st, _) = c
        .post("/v1/runs/r1/status", json!({"status": "running"}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = c
        .post(
            "/v1/runs/r1/status",
            json!({"status": "failed", "summaries": {"why": "boom"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = c
        .post("/v1/runs/r1/status", json!({"status": "running"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Events: numbered 1..n; a repeated idempotency key stores nothing.
    let (st, v) = c
        .post("/v1/runs/r1/events", json!([{"kind": "step", "payload": {"i": 1}}, {"kind": "error", "payload": {"msg": "boom"}, "idempotency_key": "k"}]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[1]["seq"], json!(2));
    let (_, v) = c
        .post(
            "/v1/runs/r1/events",
            json!({"kind": "error", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(v[0]["seq"], json!(2));
    assert_eq!(v[0]["duplicate"], json!(true));
    let (st, v) = c.get("/v1/runs/r1/events?limit=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let next = v["next"].as_str().unwrap().to_string();
    let (_, v) = c.get(&format!("/v1/runs/r1/events?cursor={next}")).await;
    assert_eq!(v["items"][0]["seq"], json!(2));
    assert_eq!(v["next"], Value::Null);

    // Listing runs with a filter, and a bad status named.
    let (_, v) = c.get("/v1/runs?workflow=etl&status=failed").await;
    assert_eq!(v["items"][0]["id"], json!("r1"));
    let (st, v) = c.get("/v1/runs?status=exploded").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("exploded"));
    let (st, v) = c.get("/v1/runs?colour=red").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Newest first unless asked: a second, later run comes first, and
    // last with order=asc.
    let (st, v) = c
        .post(
            "/v1/runs",
            json!({"id": "r2", "workflow_id": "etl", "workflow_version": 1, "trigger": "api", "started_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let order = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = c.get("/v1/runs?workflow=etl").await;
    assert_eq!(order(&v), ["r2", "r1"]);
    let (_, v) = c.get("/v1/runs?workflow=etl&order=asc").await;
    assert_eq!(order(&v), ["r1", "r2"]);
    let (st, v) = c.get("/v1/runs?order=sideways").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("sideways"));

    // Metrics and the summary.
    let m = json!({"run_id": "r1", "workflow_id": "etl", "workflow_version": 1, "status": "failed", "duration_micros": 1500000, "recorded_at": "2026-12-01T00:00:02Z"});
    assert_eq!(
        c.post("/v1/metrics", m.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(c.post("/v1/metrics", m).await.0, StatusCode::OK);
    let (_, v) = c.get("/v1/workflows/etl/summary").await;
    assert_eq!(v["executions"], json!(1));
    assert_eq!(v["failed"], json!(1));

    // Artifacts: streamed in and out, the overwrite guard.
    let (st, v) = c
        .put_bytes("/v1/artifacts/r1/build/out/report.txt", b"hello", None)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let sha = v["record"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        c.put_bytes("/v1/artifacts/r1/build/out/report.txt", b"hello", None)
            .await
            .0,
        StatusCode::OK
    );
    let (st, v) = c
        .put_bytes("/v1/artifacts/r1/build/out/report.txt", b"other", None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["kind"], json!("immutable"));
    let (st, v) = c
        .put_bytes(
            "/v1/artifacts/r1/build/out/report.txt",
            b"other",
            Some(&sha),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let r = c
        .http
        .get(c.url("/v1/artifacts/r1/build/out/report.txt"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-runstore-sha256"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"other");
    let (_, v) = c.get("/v1/runs/r1/artifacts").await;
    assert_eq!(v["items"][0]["key"]["path"], json!("out/report.txt"), "{v}");

    // The web page shows the run and its last event.
    let (st, page) = c.get("/runs/r1").await;
    assert_eq!(st, StatusCode::OK);
    let page = page.as_str().unwrap().to_string();
    assert!(
        page.contains("event-2") && page.contains("failing"),
        "{page}"
    );
    let (st, _) = c.get("/workflows/etl").await;
    assert_eq!(st, StatusCode::OK);
    let (st, index) = c.get("/?status=failed").await;
    assert_eq!(st, StatusCode::OK);
    assert!(index.as_str().unwrap().contains("/runs/r1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&default_layout(dir.path())).await.unwrap();
    the_api_behaves_like_the_library(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_on_postgres() {
    use runstore_postgres::testing::{TestSchema, no_server, test_config, why_no_server};
    let Some(config) = test_config().await else {
        no_server("the_api_on_postgres", &why_no_server().unwrap_or_default());
        return;
    };
    let url = serde_json::to_string(&config.url).unwrap();
    let pg = format!(
        "{{ type: postgres, url: {url}, schema: {}, pool_size: 2 }}",
        config.schema
    );
    let _guard = TestSchema::new(config);
    let yaml =
        format!("storage:\n  workflows: {pg}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {pg}\n");
    let storage = Storage::from_yaml_str(&yaml).await.unwrap();
    the_api_behaves_like_the_library(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&default_layout(dir.path())).await.unwrap();
    let options = ServeOptions::default()
        .token(TOKEN)
        .max_json_bytes(4096)
        .max_artifact_bytes(1000);
    let server = start(storage.clone(), options).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let run = json!({"id": "r1", "workflow_id": "etl", "workflow_version": 1});

    // No token, a wrong token: 401, nothing created; reads need it too.
    let r = http.post(url("/v1/runs")).json(&run).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http
        .post(url("/v1/runs"))
        .bearer_auth("guess")
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], json!("unauthorized"));
    assert!(!body.to_string().contains(TOKEN));
    assert_eq!(
        http.get(url("/v1/runs")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http.get(url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert!(storage.logs.get_run(&"r1".parse().unwrap()).await.is_err());

    let ok = |rb: reqwest::RequestBuilder| rb.bearer_auth(TOKEN).send();
    ok(http.post(url("/v1/runs")).json(&run)).await.unwrap();

    // Path traversal in an artifact path, sent as written (an HTTP client
    // would normalise `..` away): refused by the key's validation.
    for bad in [
        "/v1/artifacts/r1/build/..%2F..%2Fetc%2Fpasswd",
        "/v1/artifacts/r1/build/a/%2E%2E/b",
        "/v1/artifacts/r1/build/a/../../../b",
        "/v1/artifacts/r1/..%2Fbuild/x",
        "/v1/artifacts/r1/build/a//b",
        "/v1/artifacts/r1/build/a%00b",
    ] {
        let status = raw_put(&server.base, bad, "x").await;
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }
    // An upload over the limit: 413, nothing stored.
    let big = vec![7u8; 5000];
    let r = ok(http.put(url("/v1/artifacts/r1/build/big.bin")).body(big))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length, it is still cut off.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![1u8; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = ok(http
        .put(url("/v1/artifacts/r1/build/streamed.bin"))
        .body(body))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let listed = storage
        .artifacts
        .list(runstore::ArtifactQuery::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "{listed:?}");

    // A JSON body over the limit, and JSON nested too deep.
    let huge = json!({"kind": "x", "payload": "y".repeat(10_000)});
    let r = ok(http.post(url("/v1/runs/r1/events")).json(&huge))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let r = ok(http
        .post(url("/v1/runs/r1/events"))
        .json(&json!({"kind": "x", "payload": deep})))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Bad ids.
    let r = ok(http.get(url("/v1/runs/..%2Fx"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = ok(http.post(url("/v1/runs")).body("{not json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let events = storage
        .logs
        .list_events(&"r1".parse().unwrap(), Default::default())
        .await
        .unwrap();
    assert!(events.items.is_empty(), "nothing was appended");

    // Oversized headers.
    let r = ok(http
        .get(url("/v1/runs"))
        .header("x-padding", "p".repeat(20_000)))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::from_u16(431).unwrap());

    // Open reads: reads pass without a token, writes still need it.
    let server2 = start(
        storage.clone(),
        ServeOptions::default().token(TOKEN).open_reads(true),
    )
    .await;
    let r = http
        .get(format!("{}/v1/runs", server2.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{}/v1/runs", server2.base))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // No token: only loopback.
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    assert!(ServeOptions::default().check_listen(&any).is_err());
    assert!(
        ServeOptions::default()
            .token(TOKEN)
            .check_listen(&any)
            .is_ok()
    );
    let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(ServeOptions::default().check_listen(&lo).is_ok());
}

#[tokio::test]
async fn the_openapi_description_lists_every_route() {
    let spec: Value = serde_json::from_str(runstore_server::OPENAPI).unwrap();
    assert_eq!(spec["openapi"], json!("3.0.3"));
    let mut described: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            described.push((method.clone(), path.clone()));
        }
    }
    described.sort();
    let mut routes: Vec<(String, String)> = runstore_server::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(described, routes);

    // And the server serves it.
    let storage = Storage::from_yaml_str(
        "storage: { workflows: { type: memory }, logs: { type: memory }, metrics: { type: memory }, artifacts: { type: memory } }",
    )
    .await
    .unwrap();
    let server = start(storage, ServeOptions::default()).await;
    let served: Value = reqwest::get(format!("{}/v1/openapi.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, spec);
}

#[tokio::test]
async fn without_a_token_only_loopback_hosts_and_pages_are_served() {
    let storage = Storage::from_yaml_str(
        "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n",
    )
    .await
    .unwrap();
    let server = start(storage.clone(), ServeOptions::default()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/runs", server.base);
    let run = json!({"id": "r1", "workflow_id": "etl", "workflow_version": 1});
    let port = server.base.rsplit(':').next().unwrap().to_string();

    // A name rebound to 127.0.0.1 by another site's DNS: refused, reads too.
    for (method, host) in [
        (reqwest::Method::GET, "evil.example"),
        (reqwest::Method::POST, "evil.example:80"),
    ] {
        let r = http
            .request(method, &url)
            .header("host", host)
            .json(&run)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
        let body: Value = r.json().await.unwrap();
        assert!(body.to_string().contains("loopback"), "{body}");
    }
    // Another site's page posting here: refused, nothing written.
    let r = http
        .post(&url)
        .header("origin", "https://evil.example")
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        storage
            .logs
            .get_run(&"r1".parse().unwrap())
            .await
            .unwrap_err()
            .kind(),
        runstore::ErrorKind::NotFound
    );
    // A loopback page, and a client that is not a browser (no Origin).
    let r = http
        .post(&url)
        .header("origin", format!("http://localhost:{port}"))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
