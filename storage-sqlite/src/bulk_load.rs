//! Bulk loads: the secondary indexes a large import can do without, dropped
//! when it starts and built again, each in one sorted pass, when it ends.
//!
//! Measured on a files -> SQLite migration of 1,000,000 runs (10 events and
//! one metric each): 154 s with every index kept, 101 s with these dropped,
//! plus 13 s to build them again. Each inserted row otherwise lands at a
//! random place in four run indexes and three metric indexes, and the pages
//! those inserts touch outgrow the page cache.
//!
//! What stays is what a rule or the load itself needs: primary keys, the
//! unique indexes (idempotency and external keys) and `runs_by_start`,
//! through which a migration finds the runs of a batch already stored.
//! Reads stay correct without the others, only slower; the summary's
//! `INDEXED BY` is left out while its index is missing
//! ([`indexed_by`]). A store opened while any is missing builds it before
//! the open returns ([`ensure`]), so a load cut short by a crash leaves no
//! store without its indexes.

use runstore_core::{BulkLoadOf, BulkLoadOptions, Result};
use rusqlite::{Connection, OptionalExtension};

use crate::error::Ctx;

/// A secondary index a bulk load drops, with the statement that builds it:
/// the same definition as the newest schema migration's (checked by a
/// test against a new database).
struct Deferrable {
    concern: BulkLoadOf,
    name: &'static str,
    create: &'static str,
}

const DEFERRABLE: &[Deferrable] = &[
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_workflow",
        create: "CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_version",
        create: "CREATE INDEX IF NOT EXISTS runs_by_version ON runs (workflow_id, workflow_version, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_status",
        create: "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, started_at DESC, id DESC)",
    },
    Deferrable {
        concern: BulkLoadOf::Logs,
        name: "runs_by_end",
        create: "CREATE INDEX IF NOT EXISTS runs_by_end ON runs (ended_at, status) WHERE ended_at IS NOT NULL",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_version",
        create: "CREATE INDEX IF NOT EXISTS metrics_by_version ON metrics (workflow_id, workflow_version, duration_micros)",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metrics_by_time",
        create: "CREATE INDEX IF NOT EXISTS metrics_by_time ON metrics (workflow_id, workflow_version, recorded_at)",
    },
    Deferrable {
        concern: BulkLoadOf::Metrics,
        name: "metric_values_by_version",
        create: "CREATE INDEX IF NOT EXISTS metric_values_by_version ON metric_values (workflow_id, workflow_version, name, value)",
    },
];

/// Whether index `name` exists (a bulk load may have dropped it).
pub(crate) fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up an index")?
        .is_some())
}

/// `INDEXED BY name` while the index exists, else nothing (a bulk load
/// dropped it, and `INDEXED BY` a missing index fails the statement). Read
/// in the transaction of the statement it goes into, so both see one schema.
pub(crate) fn indexed_by(conn: &Connection, name: &str) -> Result<String> {
    Ok(if exists(conn, name)? {
        format!("INDEXED BY {name}")
    } else {
        String::new()
    })
}

/// Starts a load of `concern`: drops its deferrable indexes, in one
/// transaction, if [`BulkLoadOptions::pays_off`] for the rows stored.
pub(crate) fn begin(
    conn: &mut Connection,
    concern: BulkLoadOf,
    options: BulkLoadOptions,
) -> Result<()> {
    let what = "starting a bulk load";
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .ctx(what)?;
    let stored: i64 = tx
        .query_row(
            &format!("SELECT count(*) FROM {}", concern.sized_by()),
            [],
            |r| r.get(0),
        )
        .ctx(what)?;
    if !options.pays_off(u64::try_from(stored).unwrap_or(0)) {
        return Ok(());
    }
    for d in DEFERRABLE.iter().filter(|d| d.concern == concern) {
        tx.execute_batch(&format!("DROP INDEX IF EXISTS {}", d.name))
            .ctx(what)?;
    }
    tx.commit().ctx(what)
}

/// Builds every missing deferrable index of `concern` (all of them with
/// `None`), one transaction each, so that the write lock is never held for
/// more than one index's build.
pub(crate) fn ensure(conn: &mut Connection, concern: Option<BulkLoadOf>) -> Result<()> {
    let mut missing = Vec::new();
    for d in DEFERRABLE
        .iter()
        .filter(|d| concern.is_none_or(|c| c == d.concern))
    {
        if !exists(conn, d.name)? {
            missing.push(d);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // The sort of a build is most of its cost, and SQLite sorts on helper
    // threads when allowed; the connection goes back to sorting alone.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    conn.pragma_update(None, "threads", threads as i64)
        .ctx("allowing sorter threads")?;
    let built = missing.iter().try_for_each(|d| {
        conn.execute_batch(d.create)
            .ctx(&format!("building the index {}", d.name))
    });
    let reset = conn
        .pragma_update(None, "threads", 0)
        .ctx("sorting alone again");
    built.and(reset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definitions(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| {
                let (n, s): (String, String) = r.unwrap();
                // The migrations' statements carry no IF NOT EXISTS and
                // may wrap lines; the definition is the same.
                let s = s.replace("IF NOT EXISTS ", "");
                (n, s.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .collect()
    }

    #[test]
    fn a_load_drops_then_builds_the_same_indexes_as_the_migrations() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let before = definitions(&conn);
        for d in DEFERRABLE {
            assert!(
                before.iter().any(|(n, _)| n == d.name),
                "{} is not an index of the schema",
                d.name
            );
        }
        for c in [BulkLoadOf::Logs, BulkLoadOf::Metrics] {
            begin(&mut conn, c, BulkLoadOptions::default()).unwrap();
        }
        let during = definitions(&conn);
        assert_eq!(during.len(), before.len() - DEFERRABLE.len());
        assert!(during.iter().any(|(n, _)| n == "runs_by_start"));
        assert_eq!(indexed_by(&conn, "metrics_by_version").unwrap(), "");
        ensure(&mut conn, Some(BulkLoadOf::Logs)).unwrap();
        assert_eq!(
            definitions(&conn).len(),
            before.len() - 3,
            "only the run indexes are built for the logs"
        );
        ensure(&mut conn, None).unwrap();
        assert_eq!(definitions(&conn), before);
        let threads: i64 = conn.query_row("PRAGMA threads", [], |r| r.get(0)).unwrap();
        assert_eq!(
            threads, 0,
            "the connection sorts alone again after the builds"
        );
        assert_eq!(
            indexed_by(&conn, "metrics_by_version").unwrap(),
            "INDEXED BY metrics_by_version"
        );
    }

    #[test]
    fn a_small_load_into_a_large_table_keeps_the_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, workflow_id, workflow_version, status, \"trigger\", started_at, attributes, summaries)
             VALUES ('a', 'w', 1, 'running', 'manual', 1, '{}', '{}'),
                    ('b', 'w', 1, 'running', 'manual', 2, '{}', '{}')",
        )
        .unwrap();
        let n = definitions(&conn).len();
        let two = BulkLoadOptions::default().with_expected_runs(2);
        begin(&mut conn, BulkLoadOf::Logs, two).unwrap();
        assert_eq!(
            definitions(&conn).len(),
            n,
            "2 runs into 2 are not worth a rebuild"
        );
        let three = BulkLoadOptions::default().with_expected_runs(3);
        begin(&mut conn, BulkLoadOf::Logs, three).unwrap();
        assert_eq!(definitions(&conn).len(), n - 4);
    }
}
