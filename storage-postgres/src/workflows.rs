//! [`WorkflowRepository`] on PostgreSQL.

use async_trait::async_trait;
use runstore_core::{
    Error, Page, Result, Version, WorkflowCursor, WorkflowDefinition, WorkflowId, WorkflowQuery,
    WorkflowRepository, Written, validate_limit,
};
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::error::Fail;
use crate::rows::{from_json, json_text, stored, ts, v32, version};

const COLUMNS: &str = "id, version, parent, description, body, created_at";

fn def_of(row: &Row) -> Result<WorkflowDefinition> {
    let id: String = row.get(0);
    let v: i32 = row.get(1);
    let loc = || format!("workflows ({id}, {v})");
    let parent: Option<i32> = row.get(2);
    Ok(WorkflowDefinition {
        id: stored(WorkflowId::new(id.clone()), loc)?,
        version: version(loc, v)?,
        parent: parent.map(|p| version(loc, p)).transpose()?,
        description: row.get(3),
        body: from_json(loc, row.get::<_, &str>(4))?,
        created_at: ts(loc, row.get(5))?,
    })
}

#[async_trait]
impl WorkflowRepository for PostgresStore {
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        def.validate()?;
        let body = json_text("body", &def.body)?;
        let hash = def.content_hash().to_hex();
        let what = format!("storing workflow {} version {}", def.id, def.version);
        let (this, def, body, hash) = (self, &def, &body, &hash);
        self.retrying(&what, move || async move {
            let client = this.client().await?;
            let select = client
                .prepare_cached(&this.sql(&format!(
                    "SELECT {COLUMNS} FROM {{s}}.workflows WHERE id = $1 AND version = $2"
                )))
                .await?;
            if let Some(row) = client
                .query_opt(&select, &[&def.id.as_str(), &v32(def.version)])
                .await?
            {
                let existing = def_of(&row)?;
                if existing.same_content(def) {
                    return Ok(Written::unchanged(existing));
                }
                return Err(Fail::Core(Error::conflict(format!(
                    "workflow {} version {} is stored with content hash {}; versions are immutable (offered {})",
                    def.id,
                    def.version,
                    existing.content_hash(),
                    hash
                ))));
            }
            if let Some(parent) = def.parent {
                let exists = client
                    .prepare_cached(&this.sql(
                        "SELECT 1 FROM {s}.workflows WHERE id = $1 AND version = $2",
                    ))
                    .await?;
                if client
                    .query_opt(&exists, &[&def.id.as_str(), &v32(parent)])
                    .await?
                    .is_none()
                {
                    return Err(Fail::Core(Error::not_found(format!(
                        "parent version {parent} of workflow {} (needed by version {})",
                        def.id, def.version
                    ))));
                }
            }
            // A racing writer of the same version makes this a unique
            // violation: the retry re-reads its row and compares.
            let insert = client
                .prepare_cached(&this.sql(
                    "INSERT INTO {s}.workflows (id, version, parent, description, body, content_hash, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ))
                .await?;
            client
                .execute(
                    &insert,
                    &[
                        &def.id.as_str(),
                        &v32(def.version),
                        &def.parent.map(v32),
                        &def.description,
                        body,
                        hash,
                        &def.created_at.as_micros(),
                    ],
                )
                .await?;
            Ok(Written::inserted(def.clone()))
        })
        .await
    }

    async fn get(&self, id: &WorkflowId, v: Version) -> Result<WorkflowDefinition> {
        self.find(
            &format!("reading workflow {id} version {v}"),
            &format!("SELECT {COLUMNS} FROM {{s}}.workflows WHERE id = $1 AND version = $2"),
            &[&id.as_str(), &v32(v)],
            def_of,
            || format!("workflow {id} version {v}"),
        )
        .await
    }

    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        self.find(
            &format!("reading the latest version of workflow {id}"),
            &format!(
                "SELECT {COLUMNS} FROM {{s}}.workflows WHERE id = $1 ORDER BY version DESC LIMIT 1"
            ),
            &[&id.as_str()],
            def_of,
            || format!("workflow {id}"),
        )
        .await
    }

    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        self.query_all(
            &format!("listing the versions of workflow {id}"),
            &format!("SELECT {COLUMNS} FROM {{s}}.workflows WHERE id = $1 ORDER BY version"),
            &[&id.as_str()],
        )
        .await?
        .iter()
        .map(def_of)
        .collect()
    }

    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<WorkflowCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let rows = self
            .query_all(
                "listing workflows",
                &format!(
                    "SELECT {COLUMNS} FROM {{s}}.workflows
                     WHERE ($1::text IS NULL OR id = $1)
                       AND ($2::text IS NULL OR (id, version) > ($2, $3))
                     ORDER BY id, version LIMIT $4"
                ),
                &[
                    &query.id.as_ref().map(|i| i.as_str()),
                    &after.as_ref().map(|a| a.id.as_str()),
                    &after.as_ref().map_or(0, |a| v32(a.version)),
                    &((limit + 1) as i64),
                ],
            )
            .await?;
        let items = rows.iter().map(def_of).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, WorkflowCursor::of))
    }

    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
        self.lifecycle_delete_workflow(id, version).await
    }
}
