//! [`WorkflowRepository`] on SQLite.

use async_trait::async_trait;
use runstore_core::{
    Error, Page, Result, Version, WorkflowCursor, WorkflowDefinition, WorkflowId, WorkflowQuery,
    WorkflowRepository, Written, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};

const COLUMNS: &str = "id, version, parent, description, body, created_at";

/// Raw columns of one workflow row, converted outside the row callback.
type RawDef = (String, i64, Option<i64>, String, String, i64);

fn convert(
    (id, version, parent, description, body, created_at): RawDef,
) -> Result<WorkflowDefinition> {
    let loc = format!("workflows row {id} version {version}");
    Ok(WorkflowDefinition {
        id: rows::parsed(&loc, id, WorkflowId::new)?,
        version: rows::version(&loc, version)?,
        parent: parent.map(|p| rows::version(&loc, p)).transpose()?,
        description,
        body: rows::from_json(&loc, &body)?,
        created_at: rows::ts(&loc, created_at)?,
    })
}

fn get_one(
    conn: &Connection,
    id: &WorkflowId,
    version: Version,
) -> Result<Option<WorkflowDefinition>> {
    // A key lookup: one row at most.
    Ok(query_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1 AND version = ?2"),
        params![id.as_str(), version.get()],
        convert,
        "reading a workflow",
    )?
    .pop())
}

#[async_trait]
impl WorkflowRepository for SqliteStore {
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        def.validate()?;
        let body = rows::to_json("body", &def.body)?;
        self.write_tx("storing a workflow", move |tx| {
            if let Some(stored) = get_one(tx, &def.id, def.version)? {
                if stored.same_content(&def) {
                    return Ok(Written::unchanged(stored));
                }
                return Err(Error::conflict(format!(
                    "workflow {} version {} is stored with content hash {}; versions are immutable (offered {})",
                    def.id,
                    def.version,
                    stored.content_hash(),
                    def.content_hash()
                )));
            }
            if let Some(parent) = def.parent {
                let found: Option<i64> = tx
                    .prepare_cached("SELECT 1 FROM workflows WHERE id = ?1 AND version = ?2")
                    .and_then(|mut s| s.query_row(params![def.id.as_str(), parent.get()], |r| r.get(0)).optional())
                    .ctx("checking a parent workflow version")?;
                if found.is_none() {
                    return Err(Error::not_found(format!(
                        "parent version {parent} of workflow {} (needed by version {})",
                        def.id, def.version
                    )));
                }
            }
            tx.prepare_cached(
                "INSERT INTO workflows (id, version, parent, description, body, content_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    def.id.as_str(),
                    def.version.get(),
                    def.parent.map(Version::get),
                    def.description,
                    body,
                    def.content_hash().to_hex(),
                    def.created_at.as_micros()
                ])
            })
            .ctx("inserting a workflow")?;
            Ok(Written::inserted(def))
        })
        .await
    }

    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
        let id = id.clone();
        self.read(move |conn| {
            get_one(conn, &id, version)?
                .ok_or_else(|| Error::not_found(format!("workflow {id} version {version}")))
        })
        .await
    }

    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        let id = id.clone();
        self.read(move |conn| {
            query_rows(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM workflows WHERE id = ?1 ORDER BY version DESC LIMIT 1"
                ),
                [id.as_str()],
                convert,
                "reading a workflow",
            )?
            .pop()
            .ok_or_else(|| Error::not_found(format!("workflow {id}")))
        })
        .await
    }

    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        let id = id.clone();
        self.read(move |conn| {
            query_rows(
                conn,
                &format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1 ORDER BY version"),
                [id.as_str()],
                convert,
                "listing workflows",
            )
        })
        .await
    }

    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<WorkflowCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut select = Select::from(COLUMNS, "workflows");
        select.and_eq_opt("id", query.id.map(|id| Value::Text(id.into_string())));
        let cursor = after.map(|c| {
            vec![
                Value::Text(c.id.into_string()),
                Value::Integer(i64::from(c.version.get())),
            ]
        });
        let select = select.page(Order::Asc, &["id", "version"], cursor, Some(limit + 1));
        let items = self
            .read(move |conn| select.rows(conn, convert, "listing workflows"))
            .await?;
        Ok(Page::from_overfetch(items, limit, WorkflowCursor::of))
    }

    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
        let id = id.clone();
        self.write_tx("deleting a workflow version", move |tx| {
            crate::lifecycle::delete_workflow(tx, &id, version)
        })
        .await
    }
}
