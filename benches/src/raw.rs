//! The raw baselines: the library under each backend doing the same work
//! with nothing on top (no validation, no JSON records, no locks): plain
//! `write` + `fdatasync`, rusqlite prepared statements, tokio-postgres
//! statements and binary `COPY`. Each returns what it measured.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use runstore_core::{ExecutionMetric, RunWithEvents};
use rusqlite::{Connection, params};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::BenchResult;
use crate::data::{self, FilterSpec};

/// One NDJSON line like an event record.
fn event_line(run: &str, seq: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "run_id": run, "seq": seq, "kind": "step",
        "at": data::started_of(0) + seq as i64, "payload": data::payload(seq)
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// `n` times: append one line to a file and `fdatasync` it. Ops/s.
pub fn fdatasync_single(dir: &Path, n: usize) -> BenchResult<f64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw-single.ndjson"))?;
    let start = Instant::now();
    for i in 0..n {
        f.write_all(&event_line("raw", i as u64 + 1))?;
        f.sync_data()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `batches` times: append `batch` lines, then one `fdatasync`. Lines/s.
pub fn fdatasync_batched(dir: &Path, batches: usize, batch: usize) -> BenchResult<f64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw-batched.ndjson"))?;
    let start = Instant::now();
    let mut seq = 0;
    for _ in 0..batches {
        let mut buf = Vec::new();
        for _ in 0..batch {
            seq += 1;
            buf.extend_from_slice(&event_line("raw", seq));
        }
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// Writes runs and events as NDJSON, one `fdatasync` per 1,000 runs.
/// Records (runs + events) per second.
pub fn file_bulk(dir: &Path, runs: &[RunWithEvents]) -> BenchResult<f64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw-bulk.ndjson"))?;
    let start = Instant::now();
    let mut records = 0;
    for chunk in runs.chunks(1000) {
        let mut buf = Vec::new();
        for r in chunk {
            serde_json::to_writer(&mut buf, &r.run)?;
            buf.push(b'\n');
            for e in &r.events {
                serde_json::to_writer(&mut buf, e)?;
                buf.push(b'\n');
            }
            records += 1 + r.events.len();
        }
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// SHA-256 of at least 256 MiB (the 1 MiB pattern, repeated) in MiB/s: the
/// rate every artifact write and verified read is bounded by.
pub fn sha256_rate(size: u64) -> f64 {
    let chunk = crate::artifacts::pattern(1 << 20);
    let total = size.max(256 << 20);
    let start = Instant::now();
    let mut h = runstore_core::Sha256Hasher::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    std::hint::black_box(h.finish());
    mib(total) / start.elapsed().as_secs_f64()
}

/// Writes `size` bytes of `chunk` repeated to a new file at `path`, in
/// chunk-sized writes, and `fsync`s it.
fn write_synced(path: &Path, chunk: &[u8], size: u64) -> BenchResult<()> {
    let mut f = std::fs::File::create(path)?;
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// What a crash-safe file write costs without runstore: a temp file, its
/// bytes in 1 MiB chunks, `fsync`, rename into place, `fsync` of the
/// folder. MiB/s.
pub fn file_artifact_placed(dir: &Path, size: u64) -> BenchResult<f64> {
    let chunk = crate::artifacts::pattern(1 << 20);
    let tmp = dir.join("raw-artifact.tmp");
    let dest = dir.join("raw-artifact-placed.bin");
    let start = Instant::now();
    write_synced(&tmp, &chunk, size)?;
    std::fs::rename(&tmp, &dest)?;
    std::fs::File::open(dir)?.sync_all()?;
    let rate = mib(size) / start.elapsed().as_secs_f64();
    std::fs::remove_file(&dest)?;
    Ok(rate)
}

/// An object written through `object_store` (multipart in 5 MiB parts, 4
/// in flight, as the S3 backend does) and read back to a sink, without
/// hashing: (write MiB/s, read MiB/s).
pub async fn s3_artifact(size: u64) -> BenchResult<(f64, f64)> {
    use futures_util::StreamExt;
    use object_store::ObjectStoreExt;
    use tokio::io::AsyncWriteExt;
    let server = runstore_s3::testing::test_server().map_err(|e| format!("no S3 server: {e}"))?;
    let config = runstore_s3::testing::test_config(&server);
    let store: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(runstore_s3::testing::TEST_KEY)
            .with_secret_access_key(runstore_s3::testing::TEST_KEY)
            .build()?,
    );
    let path = object_store::path::Path::parse(format!("{}/raw.bin", config.prefix))?;
    let chunk = crate::artifacts::pattern(1 << 20);
    let start = Instant::now();
    let mut w =
        object_store::buffered::BufWriter::with_capacity(store.clone(), path.clone(), 5 << 20)
            .with_max_concurrency(4);
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    w.shutdown().await?;
    let write = mib(size) / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut stream = store.get(&path).await?.into_stream();
    let mut total = 0u64;
    while let Some(b) = stream.next().await {
        total += b?.len() as u64;
    }
    if total != size {
        return Err(format!("read {total} bytes back, wrote {size}").into());
    }
    let read = mib(size) / start.elapsed().as_secs_f64();
    store.delete(&path).await?;
    Ok((write, read))
}

/// Writes `size` bytes in 1 MiB chunks and `fsync`s, then reads them back.
/// (write MiB/s, read MiB/s).
pub fn file_artifact(dir: &Path, size: u64) -> BenchResult<(f64, f64)> {
    use std::io::Read;
    let path = dir.join("raw-artifact.bin");
    let chunk = crate::artifacts::pattern(1 << 20);
    let start = Instant::now();
    write_synced(&path, &chunk, size)?;
    let write = mib(size) / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut f = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if total != size {
        return Err(format!("read {total} bytes back, wrote {size}").into());
    }
    let read = mib(size) / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok((write, read))
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------- SQLite

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, workflow_version INTEGER NOT NULL,
  status TEXT NOT NULL, trigger TEXT NOT NULL, started_at INTEGER NOT NULL,
  ended_at INTEGER, attributes TEXT NOT NULL, summaries TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_recent ON runs (workflow_id, started_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL,
  payload TEXT NOT NULL, idempotency_key TEXT, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, workflow_version INTEGER NOT NULL,
  status TEXT NOT NULL, duration_micros INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
  counters TEXT NOT NULL, vals TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_wf ON metrics (workflow_id, workflow_version);
";

/// Opens a raw SQLite database in WAL mode with `synchronous` (`NORMAL` or
/// `FULL`) and the raw tables.
pub fn sqlite_open(path: &Path, synchronous: &str) -> BenchResult<Connection> {
    let conn = Connection::open(path)?;
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    conn.execute_batch(SQLITE_SCHEMA)?;
    Ok(conn)
}

const SQLITE_INSERT_EVENT: &str =
    "INSERT INTO events (run_id, seq, kind, at, payload) VALUES (?1, ?2, 'step', ?3, ?4)";

/// `n` prepared inserts, each its own (autocommit) transaction. Ops/s.
pub fn sqlite_autocommit(conn: &Connection, run: &str, n: usize) -> BenchResult<f64> {
    let mut stmt = conn.prepare_cached(SQLITE_INSERT_EVENT)?;
    let start = Instant::now();
    for seq in 1..=n as i64 {
        let p = data::payload(seq as u64).to_string();
        stmt.execute(params![run, seq, data::started_of(0) + seq, p])?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `batches` transactions of `batch` prepared inserts. Rows/s.
pub fn sqlite_transactions(
    conn: &mut Connection,
    run: &str,
    batches: usize,
    batch: usize,
) -> BenchResult<f64> {
    let start = Instant::now();
    let mut seq = 0i64;
    for _ in 0..batches {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(SQLITE_INSERT_EVENT)?;
            for _ in 0..batch {
                seq += 1;
                let p = data::payload(seq as u64).to_string();
                stmt.execute(params![run, seq, data::started_of(0) + seq, p])?;
            }
        }
        tx.commit()?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// 8 threads, each with its own connection, `n / 8` autocommit inserts each.
/// Ops/s in all.
pub fn sqlite_concurrent(path: &Path, synchronous: &str, tag: &str, n: usize) -> BenchResult<f64> {
    let per = n / 8;
    let conns: Vec<Connection> = (0..8)
        .map(|_| sqlite_open(path, synchronous))
        .collect::<BenchResult<_>>()?;
    let start = Instant::now();
    let results: Vec<BenchResult<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(w, conn)| {
                s.spawn(move || {
                    sqlite_autocommit(&conn, &format!("{tag}-{w}"), per).map_err(|e| {
                        let e: crate::BenchError = e.to_string().into();
                        e
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok((per * 8) as f64 / start.elapsed().as_secs_f64())
}

fn sqlite_insert_runs(
    tx: &rusqlite::Transaction<'_>,
    runs: &[RunWithEvents],
) -> BenchResult<usize> {
    let mut run_stmt = tx.prepare_cached(
        "INSERT INTO runs (id, workflow_id, workflow_version, status, trigger, started_at, ended_at, attributes, summaries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut ev_stmt = tx.prepare_cached(
        "INSERT INTO events (run_id, seq, kind, at, payload, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut records = 0;
    for r in runs {
        let run = &r.run;
        run_stmt.execute(params![
            run.id.as_str(),
            run.workflow_id.as_str(),
            run.workflow_version.get(),
            run.status.as_str(),
            run.trigger,
            run.started_at.as_micros(),
            run.ended_at.map(|t| t.as_micros()),
            serde_json::Value::Object(run.attributes.clone()).to_string(),
            serde_json::Value::Object(run.summaries.clone()).to_string(),
        ])?;
        for e in &r.events {
            ev_stmt.execute(params![
                e.run_id.as_str(),
                e.seq as i64,
                e.kind,
                e.at.as_micros(),
                e.payload.to_string(),
                e.idempotency_key
            ])?;
        }
        records += 1 + r.events.len();
    }
    Ok(records)
}

/// Inserts runs and events, one transaction per 1,000 runs. Records/s.
pub fn sqlite_bulk(conn: &mut Connection, runs: &[RunWithEvents]) -> BenchResult<f64> {
    let start = Instant::now();
    let mut records = 0;
    for chunk in runs.chunks(1000) {
        let tx = conn.transaction()?;
        records += sqlite_insert_runs(&tx, chunk)?;
        tx.commit()?;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// Loads runs `0..rows` of `tag` (no events), in transactions of 10,000.
pub fn sqlite_load_runs(conn: &mut Connection, tag: &str, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 10_000).min(rows);
        let batch: Vec<RunWithEvents> =
            (i..end).map(|k| data::run_with_events(tag, k, 0)).collect();
        let tx = conn.transaction()?;
        sqlite_insert_runs(&tx, &batch)?;
        tx.commit()?;
        i = end;
    }
    Ok(())
}

type RawRun = (
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
);

fn sqlite_raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

const RUN_COLUMNS: &str = "id, workflow_id, workflow_version, status, trigger, started_at, ended_at, attributes, summaries";

/// The indexed `get_recent(50)` query, `reps` times. Milliseconds each.
pub fn sqlite_recent(conn: &Connection, reps: usize) -> BenchResult<Vec<f64>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?1 ORDER BY started_at DESC, id DESC LIMIT 50"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let rows: Vec<RawRun> = stmt
            .query_map([data::QUERY_WORKFLOW], sqlite_raw_run)?
            .collect::<rusqlite::Result<_>>()?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if rows.len() != 50 {
            return Err(format!("raw get_recent returned {} rows", rows.len()).into());
        }
    }
    Ok(out)
}

/// The filtered query, `reps` times. Milliseconds each.
pub fn sqlite_filtered(conn: &Connection, spec: &FilterSpec, reps: usize) -> BenchResult<Vec<f64>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?1 AND status IN (?2) AND trigger = ?3
         AND started_at >= ?4 AND started_at < ?5 ORDER BY started_at DESC, id DESC LIMIT 50"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let rows: Vec<RawRun> = stmt
            .query_map(
                params![
                    spec.workflow,
                    spec.status.as_str(),
                    spec.trigger,
                    spec.from,
                    spec.before
                ],
                sqlite_raw_run,
            )?
            .collect::<rusqlite::Result<_>>()?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if rows.is_empty() {
            return Err("raw filtered query returned nothing".into());
        }
    }
    Ok(out)
}

/// Loads metrics `0..rows`, in transactions of 10,000.
pub fn sqlite_load_metrics(conn: &mut Connection, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 10_000).min(rows);
        let metrics: Vec<_> = (i..end).map(data::metric).collect();
        let tx = conn.transaction()?;
        sqlite_insert_metrics(&tx, &metrics)?;
        tx.commit()?;
        i = end;
    }
    Ok(())
}

fn sqlite_insert_metrics(
    tx: &rusqlite::Transaction<'_>,
    metrics: &[ExecutionMetric],
) -> BenchResult<usize> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO metrics (run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, vals)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for m in metrics {
        stmt.execute(params![
            m.run_id.as_str(),
            m.workflow_id.as_str(),
            m.workflow_version.get(),
            m.status.as_str(),
            m.duration_micros as i64,
            m.recorded_at.as_micros(),
            serde_json::to_string(&m.counters)?,
            serde_json::to_string(&m.values)?,
        ])?;
    }
    Ok(metrics.len())
}

/// The records of chunk `i..end` of a migration-sized load: runs of 10
/// events and one metric each, as the migration workload's source holds.
fn sized_chunk(tag: &str, i: usize, end: usize) -> (Vec<RunWithEvents>, Vec<ExecutionMetric>) {
    (
        (i..end)
            .map(|k| data::run_with_events(tag, k, 10))
            .collect(),
        (i..end).map(data::metric).collect(),
    )
}

/// The raw bulk insert at a migration's size: `runs` runs of 10 events
/// and a metric each (the records a migration hop copies), one transaction
/// per 1,000 runs. Each chunk is generated off the clock, so memory stays
/// at one chunk and the figure is the inserts alone. Records/s.
pub fn sqlite_bulk_sized(conn: &mut Connection, tag: &str, runs: usize) -> BenchResult<f64> {
    let (mut records, mut busy) = (0, std::time::Duration::ZERO);
    let mut i = 0;
    while i < runs {
        let end = (i + 1000).min(runs);
        let (chunk, metrics) = sized_chunk(tag, i, end);
        let start = Instant::now();
        let tx = conn.transaction()?;
        records += sqlite_insert_runs(&tx, &chunk)?;
        records += sqlite_insert_metrics(&tx, &metrics)?;
        tx.commit()?;
        busy += start.elapsed();
        i = end;
    }
    Ok(records as f64 / busy.as_secs_f64())
}

/// The raw part of a summary: counts by status and duration min/max/mean
/// in one aggregate (no percentiles, no named values). Milliseconds each.
pub fn sqlite_summary(conn: &Connection, reps: usize) -> BenchResult<Vec<f64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*), sum(status = 'succeeded'), sum(status = 'failed'), min(duration_micros),
                max(duration_micros), avg(duration_micros), min(recorded_at), max(recorded_at)
         FROM metrics WHERE workflow_id = ?1",
    )?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let n: i64 = stmt.query_row([data::SUMMARY_WORKFLOW], |r| r.get(0))?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if n == 0 {
            return Err("raw summary saw no metrics".into());
        }
    }
    Ok(out)
}

// -------------------------------------------------------------- Postgres

const PG_SCHEMA: &str = "
CREATE TABLE runs (
  id TEXT COLLATE \"C\" PRIMARY KEY, workflow_id TEXT COLLATE \"C\" NOT NULL,
  workflow_version INT NOT NULL, status TEXT NOT NULL, trigger TEXT NOT NULL,
  started_at BIGINT NOT NULL, ended_at BIGINT, attributes JSONB NOT NULL, summaries JSONB NOT NULL);
CREATE INDEX runs_recent ON runs (workflow_id, started_at DESC, id DESC);
CREATE TABLE events (
  run_id TEXT COLLATE \"C\" NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL,
  payload JSONB NOT NULL, idempotency_key TEXT, PRIMARY KEY (run_id, seq));
CREATE TABLE metrics (
  run_id TEXT COLLATE \"C\" PRIMARY KEY, workflow_id TEXT COLLATE \"C\" NOT NULL,
  workflow_version INT NOT NULL, status TEXT NOT NULL, duration_micros BIGINT NOT NULL,
  recorded_at BIGINT NOT NULL, counters JSONB NOT NULL, vals JSONB NOT NULL);
CREATE INDEX metrics_wf ON metrics (workflow_id, workflow_version);
";

/// A raw client on `url` whose `search_path` is a fresh schema `schema`
/// holding the raw tables.
pub async fn pg_connect(url: &str, schema: &str) -> BenchResult<Client> {
    let client = runstore_postgres::testing::raw_client(url).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema};"
        ))
        .await?;
    Ok(client)
}

/// Creates the raw tables (once per schema).
pub async fn pg_create_tables(client: &Client) -> BenchResult<()> {
    client.batch_execute(PG_SCHEMA).await?;
    Ok(())
}

/// Drops a raw schema.
pub async fn pg_drop(client: &Client, schema: &str) -> BenchResult<()> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    Ok(())
}

const PG_INSERT_EVENT: &str =
    "INSERT INTO events (run_id, seq, kind, at, payload) VALUES ($1, $2, 'step', $3, $4)";

/// `n` prepared inserts in autocommit. Ops/s.
pub async fn pg_autocommit(client: &Client, run: &str, n: usize) -> BenchResult<f64> {
    let stmt = client.prepare(PG_INSERT_EVENT).await?;
    let start = Instant::now();
    for seq in 1..=n as i64 {
        let p = data::payload(seq as u64);
        client
            .execute(&stmt, &[&run, &seq, &(data::started_of(0) + seq), &p])
            .await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `batches` transactions of `batch` prepared inserts. Rows/s.
pub async fn pg_transactions(
    client: &mut Client,
    run: &str,
    batches: usize,
    batch: usize,
) -> BenchResult<f64> {
    let stmt = client.prepare(PG_INSERT_EVENT).await?;
    let start = Instant::now();
    let mut seq = 0i64;
    for _ in 0..batches {
        let tx = client.transaction().await?;
        for _ in 0..batch {
            seq += 1;
            let p = data::payload(seq as u64);
            tx.execute(&stmt, &[&run, &seq, &(data::started_of(0) + seq), &p])
                .await?;
        }
        tx.commit().await?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// 8 clients, `n / 8` autocommit inserts each, concurrently. Ops/s.
pub async fn pg_concurrent(url: &str, schema: &str, n: usize) -> BenchResult<f64> {
    let per = n / 8;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(pg_connect(url, schema).await?);
    }
    let start = Instant::now();
    let tasks = clients.into_iter().enumerate().map(|(w, c)| {
        tokio::spawn(async move {
            pg_autocommit(&c, &format!("raw-conc-{w}"), per)
                .await
                .map_err(|e| e.to_string())
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t?.map_err(crate::BenchError::from)?;
    }
    Ok((per * 8) as f64 / start.elapsed().as_secs_f64())
}

async fn pg_copy_runs(client: &Client, runs: &[RunWithEvents]) -> BenchResult<usize> {
    let sink = client
        .copy_in("COPY runs (id, workflow_id, workflow_version, status, trigger, started_at, ended_at, attributes, summaries) FROM STDIN BINARY")
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::JSONB,
        Type::JSONB,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in runs {
        let run = &r.run;
        let version = run.workflow_version.get() as i32;
        let ended = run.ended_at.map(|t| t.as_micros());
        let attrs = serde_json::Value::Object(run.attributes.clone());
        let sums = serde_json::Value::Object(run.summaries.clone());
        let row: [&(dyn ToSql + Sync); 9] = [
            &run.id.as_str(),
            &run.workflow_id.as_str(),
            &version,
            &run.status.as_str(),
            &run.trigger,
            &run.started_at.as_micros(),
            &ended,
            &attrs,
            &sums,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    let mut records = runs.len();
    if runs.iter().any(|r| !r.events.is_empty()) {
        let sink = client
            .copy_in(
                "COPY events (run_id, seq, kind, at, payload, idempotency_key) FROM STDIN BINARY",
            )
            .await?;
        let types = [
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::JSONB,
            Type::TEXT,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for e in runs.iter().flat_map(|r| &r.events) {
            let seq = e.seq as i64;
            let row: [&(dyn ToSql + Sync); 6] = [
                &e.run_id.as_str(),
                &seq,
                &e.kind,
                &e.at.as_micros(),
                &e.payload,
                &e.idempotency_key,
            ];
            writer.as_mut().write(&row).await?;
            records += 1;
        }
        writer.finish().await?;
    }
    Ok(records)
}

/// Binary `COPY` of runs and events, one transaction per 1,000 runs.
/// Records/s.
pub async fn pg_copy_bulk(client: &Client, runs: &[RunWithEvents]) -> BenchResult<f64> {
    let start = Instant::now();
    let mut records = 0;
    for chunk in runs.chunks(1000) {
        // A transaction per chunk, like the backend's batch.
        records += pg_copy_in_tx(client, pg_copy_runs(client, chunk)).await?;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// Runs `copy` in a transaction of its own, rolled back if it fails.
/// `COPY` is not reachable through `Transaction`, so BEGIN/COMMIT by hand.
async fn pg_copy_in_tx(
    client: &Client,
    copy: impl std::future::Future<Output = BenchResult<usize>>,
) -> BenchResult<usize> {
    client.batch_execute("BEGIN").await?;
    match copy.await {
        Ok(n) => {
            client.batch_execute("COMMIT").await?;
            Ok(n)
        }
        Err(e) => {
            client.batch_execute("ROLLBACK").await?;
            Err(e)
        }
    }
}

/// Loads runs `0..rows` of `tag` (no events) by `COPY`, then `ANALYZE`.
pub async fn pg_load_runs(client: &Client, tag: &str, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 50_000).min(rows);
        let batch: Vec<RunWithEvents> =
            (i..end).map(|k| data::run_with_events(tag, k, 0)).collect();
        pg_copy_runs(client, &batch).await?;
        i = end;
    }
    client.batch_execute("ANALYZE runs").await?;
    Ok(())
}

fn pg_check_rows(rows: &[tokio_postgres::Row]) -> BenchResult<()> {
    // Decode every column as the application would.
    for r in rows {
        let _: (
            &str,
            &str,
            i32,
            &str,
            &str,
            i64,
            Option<i64>,
            serde_json::Value,
            serde_json::Value,
        ) = (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
            r.try_get(8)?,
        );
    }
    Ok(())
}

/// The indexed `get_recent(50)` query, `reps` times. Milliseconds each.
pub async fn pg_recent(client: &Client, reps: usize) -> BenchResult<Vec<f64>> {
    let stmt = client
        .prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = $1 ORDER BY started_at DESC, id DESC LIMIT 50"
        ))
        .await?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let rows = client.query(&stmt, &[&data::QUERY_WORKFLOW]).await?;
        pg_check_rows(&rows)?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if rows.len() != 50 {
            return Err(format!("raw get_recent returned {} rows", rows.len()).into());
        }
    }
    Ok(out)
}

/// The filtered query, `reps` times. Milliseconds each.
pub async fn pg_filtered(client: &Client, spec: &FilterSpec, reps: usize) -> BenchResult<Vec<f64>> {
    let stmt = client
        .prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = $1 AND status = ANY($2) AND trigger = $3
             AND started_at >= $4 AND started_at < $5 ORDER BY started_at DESC, id DESC LIMIT 50"
        ))
        .await?;
    let statuses = vec![spec.status.as_str()];
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let rows = client
            .query(
                &stmt,
                &[
                    &spec.workflow,
                    &statuses,
                    &spec.trigger,
                    &spec.from,
                    &spec.before,
                ],
            )
            .await?;
        pg_check_rows(&rows)?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        if rows.is_empty() {
            return Err("raw filtered query returned nothing".into());
        }
    }
    Ok(out)
}

/// Loads metrics `0..rows` by `COPY`, then `ANALYZE`.
pub async fn pg_load_metrics(client: &Client, rows: usize) -> BenchResult<()> {
    let mut i = 0;
    while i < rows {
        let end = (i + 50_000).min(rows);
        let metrics: Vec<_> = (i..end).map(data::metric).collect();
        pg_copy_metrics(client, &metrics).await?;
        i = end;
    }
    client.batch_execute("ANALYZE metrics").await?;
    Ok(())
}

async fn pg_copy_metrics(client: &Client, metrics: &[ExecutionMetric]) -> BenchResult<usize> {
    let sink = client
        .copy_in("COPY metrics (run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, vals) FROM STDIN BINARY")
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::JSONB,
        Type::JSONB,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for m in metrics {
        let version = m.workflow_version.get() as i32;
        let duration = m.duration_micros as i64;
        let counters = serde_json::to_value(&m.counters)?;
        let vals = serde_json::to_value(&m.values)?;
        let row: [&(dyn ToSql + Sync); 8] = [
            &m.run_id.as_str(),
            &m.workflow_id.as_str(),
            &version,
            &m.status.as_str(),
            &duration,
            &m.recorded_at.as_micros(),
            &counters,
            &vals,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(metrics.len())
}

/// [`sqlite_bulk_sized`] by binary `COPY`: `runs` runs of 10 events and a
/// metric each, one transaction per 1,000 runs, each chunk generated off
/// the clock. Records/s.
pub async fn pg_copy_bulk_sized(client: &Client, tag: &str, runs: usize) -> BenchResult<f64> {
    let (mut records, mut busy) = (0, std::time::Duration::ZERO);
    let mut i = 0;
    while i < runs {
        let end = (i + 1000).min(runs);
        let (chunk, metrics) = sized_chunk(tag, i, end);
        let start = Instant::now();
        let copy = async {
            Ok(pg_copy_runs(client, &chunk).await? + pg_copy_metrics(client, &metrics).await?)
        };
        records += pg_copy_in_tx(client, copy).await?;
        busy += start.elapsed();
        i = end;
    }
    Ok(records as f64 / busy.as_secs_f64())
}

/// The raw part of a summary (see [`sqlite_summary`]). Milliseconds each.
pub async fn pg_summary(client: &Client, reps: usize) -> BenchResult<Vec<f64>> {
    let stmt = client
        .prepare(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'),
                    count(*) FILTER (WHERE status = 'failed'), min(duration_micros),
                    max(duration_micros), avg(duration_micros), min(recorded_at), max(recorded_at)
             FROM metrics WHERE workflow_id = $1",
        )
        .await?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let row = client.query_one(&stmt, &[&data::SUMMARY_WORKFLOW]).await?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        let n: i64 = row.try_get(0)?;
        if n == 0 {
            return Err("raw summary saw no metrics".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_baselines_do_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = sqlite_open(&dir.path().join("raw.db"), "NORMAL").unwrap();
        assert!(sqlite_autocommit(&conn, "a", 5).unwrap() > 0.0);
        assert!(sqlite_transactions(&mut conn, "b", 2, 5).unwrap() > 0.0);
        let runs: Vec<_> = (0..10)
            .map(|i| data::run_with_events("bulk", i, 3))
            .collect();
        assert!(sqlite_bulk(&mut conn, &runs).unwrap() > 0.0);
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 5 + 10 + 30);
        sqlite_load_runs(&mut conn, "q", 2000).unwrap();
        assert_eq!(sqlite_recent(&conn, 2).unwrap().len(), 2);
        assert_eq!(
            sqlite_filtered(&conn, &data::filter_spec(2000), 2)
                .unwrap()
                .len(),
            2
        );
        sqlite_load_metrics(&mut conn, 100).unwrap();
        assert_eq!(sqlite_summary(&conn, 3).unwrap().len(), 3);
        assert!(sqlite_concurrent(&dir.path().join("raw.db"), "NORMAL", "c", 16).unwrap() > 0.0);
    }

    #[test]
    fn file_baselines_write_what_they_claim() {
        let dir = tempfile::tempdir().unwrap();
        assert!(fdatasync_single(dir.path(), 3).unwrap() > 0.0);
        assert!(fdatasync_batched(dir.path(), 2, 4).unwrap() > 0.0);
        let lines = std::fs::read_to_string(dir.path().join("raw-batched.ndjson")).unwrap();
        assert_eq!(lines.lines().count(), 8);
        let (w, r) = file_artifact(dir.path(), 3 << 20).unwrap();
        assert!(w > 0.0 && r > 0.0);
    }
}
