//! Restoring a schema: a copy is built in a staged schema beside this
//! store's, then put in its place in one transaction, the replaced schema
//! kept under another name.

use runstore_core::{Error, Result};

use crate::PostgresStore;
use crate::config::{quote_ident, validate_schema};

impl PostgresStore {
    /// Whether a schema called `name` exists in this store's database.
    pub async fn schema_exists(&self, name: &str) -> Result<bool> {
        validate_schema(name)?;
        self.bounded("looking up a schema", async {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
                .await?;
            Ok(row.is_some())
        })
        .await
    }

    /// Drops the schema `name` and everything in it, if it exists: what a
    /// restore that did not finish left staged. Refuses this store's own
    /// schema.
    pub async fn drop_other_schema(&self, name: &str) -> Result<()> {
        validate_schema(name)?;
        if name == self.inner.config.schema {
            return Err(Error::invalid(
                "schema",
                format!("refusing to drop {name}: it is the schema this store uses"),
            ));
        }
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(name));
        self.bounded("dropping a staged schema", async {
            let client = self.client().await?;
            client.batch_execute(&sql).await?;
            Ok(())
        })
        .await
    }

    /// In one transaction: this store's schema is renamed to `aside` (when
    /// it exists) and `staged` is renamed to this store's schema. Either
    /// both happen or neither. Does nothing when `staged` does not exist
    /// (the swap already happened), so it can be run again after a crash.
    pub async fn swap_schema_in(&self, staged: &str, aside: &str) -> Result<()> {
        validate_schema(staged)?;
        validate_schema(aside)?;
        let current = self.inner.config.schema.clone();
        let current_q = quote_ident(&current);
        let staged_q = quote_ident(staged);
        let aside_q = quote_ident(aside);
        self.bounded("putting the restored schema in place", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let exists = |name: String| {
                let tx = &tx;
                async move {
                    tx.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
                        .await
                        .map(|r| r.is_some())
                }
            };
            if !exists(staged.to_string()).await? {
                return Ok(());
            }
            if exists(current.clone()).await? {
                tx.batch_execute(&format!("ALTER SCHEMA {current_q} RENAME TO {aside_q}"))
                    .await?;
            }
            tx.batch_execute(&format!("ALTER SCHEMA {staged_q} RENAME TO {current_q}"))
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
