//! The migration workload end to end at tiny scale: seeding, one child
//! process per hop, and both rows filled with a figure and a peak.

use std::process::Command;

use runstore_postgres::testing::{no_server, test_config, why_no_server};

#[tokio::test]
async fn both_migration_hops_are_measured_in_child_processes() {
    // The second hop writes to PostgreSQL.
    if test_config().await.is_none() {
        let why = why_no_server().unwrap_or_else(|| "no server".into());
        no_server("both_migration_hops_are_measured_in_child_processes", &why);
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_runstore-benches"))
        .args([
            "--scale",
            "tiny",
            "--backends",
            "file,sqlite,postgres",
            "--only",
            "migration",
            "--migrate-runs",
            "30",
            "--quiet",
        ])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("migration (30 runs"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // operation | backend | median | unit | peak RSS | raw | ratio | ...
        assert_eq!(cells[3], "rec/s", "{row}");
        assert!(
            cells[2].chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{row}"
        );
        assert!(cells[4].ends_with("MiB"), "{row}");
        assert!(cells[6].ends_with('x'), "{row}");
    }
    // The first hop ran once more from a source evicted from the page
    // cache, and its note says how fast (Linux only: elsewhere it says why
    // not).
    let evicted = stdout
        .lines()
        .find(|l| l.starts_with("- migration (30 runs") && l.contains("-> sqlite"))
        .unwrap_or_else(|| panic!("no note for the first hop:\n{stdout}"));
    if cfg!(target_os = "linux") {
        assert!(
            evicted.contains("evicted from the page cache first")
                && evicted.contains("x the median raw"),
            "{evicted}"
        );
    } else {
        assert!(evicted.contains("not measured"), "{evicted}");
    }
    // Only some workloads ran: the published table is left alone.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("saved"));
}
