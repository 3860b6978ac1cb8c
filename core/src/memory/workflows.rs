use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{lock, page_after};
use crate::error::{Error, Result};
use crate::id::{Version, WorkflowId};
use crate::page::Page;
use crate::workflows::{WorkflowCursor, WorkflowDefinition, WorkflowQuery, WorkflowRepository};
use crate::written::Written;

/// In-memory [`WorkflowRepository`].
#[derive(Debug, Default)]
pub struct MemoryWorkflows {
    defs: Mutex<BTreeMap<(WorkflowId, Version), WorkflowDefinition>>,
}

#[async_trait]
impl WorkflowRepository for MemoryWorkflows {
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        def.validate()?;
        let mut defs = lock(&self.defs);
        if let Some(stored) = defs.get(&(def.id.clone(), def.version)) {
            if stored.same_content(&def) {
                return Ok(Written::unchanged(stored.clone()));
            }
            return Err(Error::conflict(format!(
                "workflow {} version {} is stored with content hash {}; versions are immutable (offered {})",
                def.id,
                def.version,
                stored.content_hash(),
                def.content_hash()
            )));
        }
        if let Some(parent) = def.parent
            && !defs.contains_key(&(def.id.clone(), parent))
        {
            return Err(Error::not_found(format!(
                "parent version {parent} of workflow {} (needed by version {})",
                def.id, def.version
            )));
        }
        defs.insert((def.id.clone(), def.version), def.clone());
        Ok(Written::inserted(def))
    }

    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
        lock(&self.defs)
            .get(&(id.clone(), version))
            .cloned()
            .ok_or_else(|| Error::not_found(format!("workflow {id} version {version}")))
    }

    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        lock(&self.defs)
            .range((id.clone(), Version::FIRST)..)
            .take_while(|((i, _), _)| i == id)
            .last()
            .map(|(_, d)| d.clone())
            .ok_or_else(|| Error::not_found(format!("workflow {id}")))
    }

    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        Ok(lock(&self.defs)
            .range((id.clone(), Version::FIRST)..)
            .take_while(|((i, _), _)| i == id)
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let defs = lock(&self.defs);
        page_after(
            defs.values()
                .filter(|d| query.id.as_ref().is_none_or(|i| *i == d.id))
                .cloned(),
            query.limit,
            query.cursor.as_ref(),
            WorkflowCursor::of,
        )
    }

    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
        let mut defs = lock(&self.defs);
        let stored = defs.contains_key(&(id.clone(), version));
        let child = defs
            .range((id.clone(), Version::FIRST)..)
            .take_while(|((i, _), _)| i == id)
            .find(|(_, d)| d.parent == Some(version))
            .map(|((_, v), _)| *v);
        crate::lifecycle::decide_workflow_delete(id, version, stored, child)?;
        defs.remove(&(id.clone(), version));
        Ok(())
    }
}
