//! Writes the schema fixture of the current version: `cargo run -p
//! runstore-sqlite --example make_fixture -- storage-sqlite/tests/fixtures/v1.db`.
//! Run it once per shipped schema version and keep the file: the migration
//! test opens every fixture and checks its content.

#[path = "../tests/common/v1_data.rs"]
mod v1_data;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dest = std::env::args().nth(1).expect("usage: make_fixture <path>");
    let _ = std::fs::remove_file(&dest);
    let store = runstore_sqlite::SqliteStore::open(runstore_sqlite::SqliteConfig::new(&dest))
        .await
        .expect("opening the fixture");
    v1_data::write_all(&store).await;
    println!(
        "schema version {}",
        store.schema_version().await.expect("version")
    );
    // Closing the last connection checkpoints the WAL into the file.
    drop(store);
}
