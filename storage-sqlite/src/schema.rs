//! Embedded, versioned schema migrations, applied on open.
//!
//! Each step runs in its own `BEGIN IMMEDIATE` transaction, which takes the
//! database's write lock first: two processes opening a new file at once
//! queue behind each other, and the second finds the step already applied.
//! Applied steps are checked against their SHA-256, so an edited migration
//! is caught rather than silently skipped.

use runstore_core::{Error, Result, Sha256Digest, Timestamp};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::error::Ctx;

/// One schema step.
pub(crate) struct Migration {
    /// Its version, 1, 2, 3 … without gaps.
    pub version: u32,
    /// A short name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
    /// What runs after the SQL, in its transaction: data the SQL cannot
    /// compute (the summary counters, computed by core's rules).
    pub then: Option<fn(&Connection) -> Result<()>>,
}

/// Every step this code knows, in order. A step that drops or redefines an
/// index a bulk load may have dropped (`bulk_load::DEFERRABLE`) must say
/// `IF EXISTS`, and that list must then follow it: a store can be upgraded
/// in the middle of a load cut short.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
        then: None,
    },
    Migration {
        version: 2,
        name: "retention",
        sql: include_str!("../migrations/0002_retention.sql"),
        then: None,
    },
    Migration {
        version: 3,
        name: "coordination",
        sql: include_str!("../migrations/0003_coordination.sql"),
        then: None,
    },
    Migration {
        version: 4,
        name: "summaries",
        sql: include_str!("../migrations/0004_summaries.sql"),
        then: Some(crate::summaries::rebuild),
    },
];

/// The newest schema version this code knows.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn checksum(m: &Migration) -> String {
    Sha256Digest::of(m.sql.as_bytes()).to_hex()
}

fn has_migrations_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The highest applied version, 0 for a fresh file. Only reads.
pub(crate) fn current_version(conn: &Connection) -> Result<u32> {
    if !has_migrations_table(conn).ctx("reading the schema version")? {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .ctx("reading the schema version")?;
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| {
        Error::corrupt(
            "schema_migrations",
            format!("schema version {v} is not a valid version number"),
        )
    })
}

/// Refuses a file whose schema is newer than this code knows. Only reads,
/// so the refused file is left exactly as it was.
pub(crate) fn refuse_newer(conn: &Connection, what: &str) -> Result<u32> {
    let v = current_version(conn)?;
    if v > latest_version() {
        return Err(Error::backend(
            format!(
                "{what} has schema version {v}, newer than the {} this runstore-sqlite knows; \
                 upgrade runstore to open it (the file was not changed)",
                latest_version()
            ),
            None,
        ));
    }
    Ok(v)
}

/// Brings the schema to the latest version, one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a migration transaction")?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER NOT NULL PRIMARY KEY,
                name       TEXT    NOT NULL,
                sha256     TEXT    NOT NULL,
                applied_at INTEGER NOT NULL
            )",
        )
        .ctx("creating schema_migrations")?;
        // Read again under the write lock: another process may have migrated
        // since we looked.
        let current = refuse_newer(&tx, "the database")?;
        verify_applied(&tx)?;
        let Some(step) = MIGRATIONS.iter().find(|m| m.version == current + 1) else {
            tx.commit().ctx("finishing the schema check")?;
            return Ok(current);
        };
        tx.execute_batch(step.sql).ctx(&format!(
            "applying schema migration {} ({})",
            step.version, step.name
        ))?;
        if let Some(then) = step.then {
            then(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![step.version, step.name, checksum(step), Timestamp::now().as_micros()],
        )
        .ctx("recording a schema migration")?;
        tx.commit()
            .ctx(&format!("committing schema migration {}", step.version))?;
        tracing::info!(
            version = step.version,
            name = step.name,
            "applied sqlite schema migration"
        );
    }
}

/// Checks every applied step against the embedded one.
fn verify_applied(conn: &Connection) -> Result<()> {
    let mut stmt = conn
        .prepare("SELECT version, name, sha256 FROM schema_migrations ORDER BY version")
        .ctx("reading applied migrations")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .ctx("reading applied migrations")?;
    for (i, row) in rows.enumerate() {
        let (version, name, sha) = row.ctx("reading applied migrations")?;
        let expected_version = i as i64 + 1;
        if version != expected_version {
            return Err(Error::corrupt(
                "schema_migrations",
                format!(
                    "applied versions have a gap: expected {expected_version}, found {version}"
                ),
            ));
        }
        let Some(step) = MIGRATIONS.iter().find(|m| i64::from(m.version) == version) else {
            continue; // newer than this code: refused by refuse_newer
        };
        let want = checksum(step);
        if sha != want {
            return Err(Error::corrupt(
                "schema_migrations",
                format!(
                    "migration {version} ({name}) was applied with sha256 {sha}, but this code's \
                     migration {version} ({}) has sha256 {want}",
                    step.name
                ),
            ));
        }
    }
    Ok(())
}
