//! Versioned schema migrations, embedded in the crate and applied inside the
//! configured schema under an advisory lock, one transaction per step.

use runstore_core::{Error, Result, Sha256Digest};

use crate::error::Fail;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// 1, 2, 3 … in order.
    pub version: u32,
    /// A short name, stored with the step.
    pub name: &'static str,
    /// The SQL, with `{schema}` standing for the quoted schema name.
    pub sql: &'static str,
    /// What the step does in Rust after its SQL, in the same transaction.
    pub then: Then,
}

/// The Rust part of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing: the SQL is the whole step.
    Nothing,
    /// Fill the metrics summary tables from the metrics already stored
    /// (`summaries::build`).
    BuildSummaries,
}

/// Every step, in order. Append only: an applied step is never edited (its
/// checksum is checked on every connect).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
        then: Then::Nothing,
    },
    Migration {
        version: 2,
        name: "events_without_foreign_key",
        sql: include_str!("../migrations/0002_events_without_foreign_key.sql"),
        then: Then::Nothing,
    },
    Migration {
        version: 3,
        name: "retention",
        sql: include_str!("../migrations/0003_retention.sql"),
        then: Then::Nothing,
    },
    Migration {
        version: 4,
        name: "coordination",
        sql: include_str!("../migrations/0004_coordination.sql"),
        then: Then::Nothing,
    },
    Migration {
        version: 5,
        name: "summaries",
        sql: include_str!("../migrations/0005_summaries.sql"),
        then: Then::BuildSummaries,
    },
];

/// The schema version this build creates and understands.
pub const LATEST_SCHEMA_VERSION: u32 = 5;

impl Migration {
    /// SHA-256 of the step's SQL text as embedded (before the schema name
    /// is put in), so it is the same for every schema.
    fn checksum(&self) -> String {
        Sha256Digest::of(self.sql.as_bytes()).to_hex()
    }
}

/// The advisory lock key of a schema's migrations: stable across processes
/// and builds, distinct per schema.
pub(crate) fn lock_key(schema: &str) -> i64 {
    let d = Sha256Digest::of(format!("runstore-postgres migrations {schema}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    i64::from_be_bytes(b)
}

fn db(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Fail::Pg(e).into_error(what)
}

/// Applies every step up to `up_to` that is not applied yet, and returns
/// the schema version afterwards. Safe when several processes run it at
/// once: each step runs in its own transaction under
/// `pg_advisory_xact_lock`, and re-reads what is applied after taking it.
///
/// # Errors
/// [`Error::Backend`] if the schema is newer than this build knows;
/// [`Error::Corrupt`] if an applied step's checksum differs from the
/// embedded one; driver errors as mapped by [`crate::error`].
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::ClientWrapper,
    schema: &str,
    up_to: u32,
) -> Result<u32> {
    let q = crate::config::quote_ident(schema);
    let key = lock_key(schema);
    let what = format!("migrating schema {schema}");
    {
        let tx = client.transaction().await.map_err(db(&what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await
            .map_err(db(&what))?;
        let exists = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(db(&what))?
            .get::<_, bool>(0);
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {q}"))
                .await
                .map_err(db(&what))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 sha256     text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )"
        ))
        .await
        .map_err(db(&what))?;
        tx.commit().await.map_err(db(&what))?;
    }
    for step in MIGRATIONS.iter().filter(|m| m.version <= up_to) {
        let tx = client.transaction().await.map_err(db(&what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await
            .map_err(db(&what))?;
        let applied = check_applied(&tx, schema).await?;
        if applied.contains(&step.version) {
            tx.commit().await.map_err(db(&what))?;
            continue;
        }
        let step_what = format!("{what}: step {} ({})", step.version, step.name);
        tx.batch_execute(&step.sql.replace("{schema}", &q))
            .await
            .map_err(db(&step_what))?;
        match step.then {
            Then::Nothing => {}
            Then::BuildSummaries => crate::summaries::build(&tx, &q)
                .await
                .map_err(|f| f.into_error(&step_what))?,
        }
        tx.execute(
            &format!(
                "INSERT INTO {q}.schema_migrations (version, name, sha256) VALUES ($1, $2, $3)"
            ),
            &[&(step.version as i32), &step.name, &step.checksum()],
        )
        .await
        .map_err(db(&step_what))?;
        tx.commit().await.map_err(db(&step_what))?;
        tracing::info!(
            schema,
            version = step.version,
            name = step.name,
            "applied migration"
        );
    }
    let tx = client.transaction().await.map_err(db(&what))?;
    let applied = check_applied(&tx, schema).await?;
    tx.commit().await.map_err(db(&what))?;
    Ok(applied.iter().copied().max().unwrap_or(0))
}

/// Reads the applied steps, refusing a schema newer than this build and a
/// step whose stored checksum differs from the embedded one.
async fn check_applied(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<Vec<u32>> {
    let q = crate::config::quote_ident(schema);
    let what = format!("reading the migrations of schema {schema}");
    let rows = tx
        .query(
            &format!("SELECT version, name, sha256 FROM {q}.schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .map_err(db(&what))?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        let sha: String = row.get(2);
        let version = u32::try_from(version).map_err(|_| {
            Error::corrupt(
                format!("{schema}.schema_migrations"),
                format!("version {version} is not a schema version"),
            )
        })?;
        match MIGRATIONS.iter().find(|m| m.version == version) {
            None => {
                return Err(Error::backend(
                    format!(
                        "schema {schema} is at version {version} ({name}), newer than version \
                         {LATEST_SCHEMA_VERSION} that this runstore-postgres knows; upgrade runstore \
                         or use another schema"
                    ),
                    None,
                ));
            }
            Some(m) if m.checksum() != sha => {
                return Err(Error::corrupt(
                    format!("{schema}.schema_migrations version {version}"),
                    format!(
                        "step {version} ({name}) was applied with sha256 {sha}, but this build's \
                         step has sha256 {}; the schema was changed by another build",
                        m.checksum()
                    ),
                ));
            }
            Some(_) => versions.push(version),
        }
    }
    Ok(versions)
}

/// The highest applied step of the schema (0 if none).
pub(crate) async fn current_version(client: &tokio_postgres::Client, schema: &str) -> Result<u32> {
    let q = crate::config::quote_ident(schema);
    let row = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {q}.schema_migrations"),
            &[],
        )
        .await
        .map_err(db("reading the schema version"))?;
    let v: i32 = row.get(0);
    u32::try_from(v).map_err(|_| {
        Error::corrupt(
            format!("{schema}.schema_migrations"),
            format!("version {v} is not a schema version"),
        )
    })
}
