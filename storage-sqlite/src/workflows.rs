//! [`WorkflowRepository`] on SQLite.

use async_trait::async_trait;
use runstore_core::{
    Error, Page, Result, Version, WorkflowCursor, WorkflowDefinition, WorkflowId, WorkflowQuery,
    WorkflowRepository, Written, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::SqliteStore;
use crate::error::Ctx;
use crate::rows;

const COLUMNS: &str = "id, version, parent, description, body, created_at";

/// Raw columns of one workflow row, converted outside the row callback.
type RawDef = (String, i64, Option<i64>, String, String, i64);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawDef> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

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
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflows WHERE id = ?1 AND version = ?2"
    ))
    .and_then(|mut s| {
        s.query_row(params![id.as_str(), version.get()], raw)
            .optional()
    })
    .ctx("reading a workflow")?
    .map(convert)
    .transpose()
}

fn collect(conn: &Connection, sql: &str, args: Vec<Value>) -> Result<Vec<WorkflowDefinition>> {
    let mut stmt = conn.prepare_cached(sql).ctx("listing workflows")?;
    let raws = stmt
        .query_map(params_from_iter(args), raw)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .ctx("listing workflows")?;
    raws.into_iter().map(convert).collect()
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
            collect(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM workflows WHERE id = ?1 ORDER BY version DESC LIMIT 1"
                ),
                vec![Value::Text(id.as_str().into())],
            )?
            .pop()
            .ok_or_else(|| Error::not_found(format!("workflow {id}")))
        })
        .await
    }

    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        let id = id.clone();
        self.read(move |conn| {
            collect(
                conn,
                &format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1 ORDER BY version"),
                vec![Value::Text(id.into_string())],
            )
        })
        .await
    }

    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<WorkflowCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut sql = format!("SELECT {COLUMNS} FROM workflows WHERE 1");
        let mut args = Vec::new();
        if let Some(id) = &query.id {
            args.push(Value::Text(id.as_str().into()));
            sql.push_str(&format!(" AND id = ?{}", args.len()));
        }
        if let Some(c) = &after {
            args.push(Value::Text(c.id.as_str().into()));
            args.push(Value::Integer(i64::from(c.version.get())));
            sql.push_str(&format!(
                " AND (id, version) > (?{}, ?{})",
                args.len() - 1,
                args.len()
            ));
        }
        args.push(Value::Integer(limit as i64 + 1));
        sql.push_str(&format!(" ORDER BY id, version LIMIT ?{}", args.len()));
        let items = self.read(move |conn| collect(conn, &sql, args)).await?;
        Ok(Page::from_overfetch(items, limit, WorkflowCursor::of))
    }
}
