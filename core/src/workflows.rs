//! Workflow definitions: versioned, immutable, with lineage.
//! The trait [`WorkflowRepository`] and its data types.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::{Sha256Digest, canonical_hash, canonical_json};
use crate::error::{Error, Result};
use crate::id::{Version, WorkflowId};
use crate::page::{Cursor, Page};
use crate::text::{validate_json, validate_text};
use crate::timestamp::Timestamp;
use crate::written::Written;

/// One version of a workflow definition.
///
/// Its *content* is everything but `created_at`: id, version, parent,
/// description and body. Content is immutable once stored; its hash is
/// [`WorkflowDefinition::content_hash`].
///
/// ```
/// use runstore_core::{WorkflowDefinition, WorkflowId, Version};
/// use serde_json::json;
/// let v1 = WorkflowDefinition::new(WorkflowId::new("etl").unwrap(), Version::FIRST, json!({"steps": ["a"]}));
/// let v2 = WorkflowDefinition::new(v1.id.clone(), Version::new(2).unwrap(), json!({"steps": ["a", "b"]}))
///     .with_parent(Version::FIRST);
/// assert_ne!(v1.content_hash(), v2.content_hash());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDefinition {
    /// The workflow.
    pub id: WorkflowId,
    /// This version.
    pub version: Version,
    /// The version this one was derived from: lower than `version`, and
    /// stored before it.
    #[serde(default)]
    pub parent: Option<Version>,
    /// Free text for humans.
    #[serde(default)]
    pub description: String,
    /// The definition itself (steps, settings): any JSON.
    pub body: serde_json::Value,
    /// When this version was created. Kept as given; not part of the content.
    pub created_at: Timestamp,
}

/// The part of a definition that the content hash covers.
#[derive(Serialize)]
struct HashedContent<'a> {
    id: &'a WorkflowId,
    version: Version,
    parent: Option<Version>,
    description: &'a str,
    body: &'a serde_json::Value,
}

impl WorkflowDefinition {
    /// A definition with no parent, no description, created now.
    pub fn new(id: WorkflowId, version: Version, body: serde_json::Value) -> Self {
        WorkflowDefinition {
            id,
            version,
            parent: None,
            description: String::new(),
            body,
            created_at: Timestamp::now(),
        }
    }

    /// Sets the parent version.
    pub fn with_parent(mut self, parent: Version) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the creation time.
    pub fn with_created_at(mut self, at: Timestamp) -> Self {
        self.created_at = at;
        self
    }

    /// SHA-256 of the canonical JSON (keys sorted, no whitespace) of the
    /// content: `{"body":…,"description":…,"id":…,"parent":…,"version":…}`.
    /// Equal hash means equal content, in every backend.
    pub fn content_hash(&self) -> Sha256Digest {
        let content = HashedContent {
            id: &self.id,
            version: self.version,
            parent: self.parent,
            description: &self.description,
            body: &self.body,
        };
        // A struct of plain fields always converts to a JSON value.
        let value = serde_json::to_value(&content).unwrap_or_default();
        canonical_hash(&value)
    }

    /// Whether two definitions have the same content (ignores `created_at`).
    pub fn same_content(&self, other: &WorkflowDefinition) -> bool {
        self.id == other.id
            && self.version == other.version
            && self.parent == other.parent
            && self.description == other.description
            && canonical_json(&self.body) == canonical_json(&other.body)
    }

    /// Checks the rules a backend checks before storing: parent lower than
    /// version, description and body free of NUL.
    pub fn validate(&self) -> Result<()> {
        if let Some(parent) = self.parent
            && parent >= self.version
        {
            return Err(Error::invalid(
                "parent",
                format!(
                    "must be lower than version {} of workflow {}, got {parent}",
                    self.version, self.id
                ),
            ));
        }
        validate_text("description", &self.description)?;
        validate_json("body", &self.body)
    }
}

/// Which definitions [`WorkflowRepository::list`] returns: ordered by
/// `(id, version)` ascending, one page at a time.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkflowQuery {
    /// Only this workflow's versions.
    pub id: Option<WorkflowId>,
    /// Page size, 1 to [`crate::MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// Start after this position (from a previous page's `next`).
    pub cursor: Option<Cursor>,
}

paged_query!(WorkflowQuery { id: None });

impl WorkflowQuery {
    setters! {
        /// Only one workflow.
        with_id(id: WorkflowId) => id = Some(id);
    }
}

/// The key encoded in a [`WorkflowQuery`] cursor: the last `(id, version)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowCursor {
    /// Last id returned.
    pub id: WorkflowId,
    /// Last version returned.
    pub version: Version,
}

impl WorkflowCursor {
    /// The cursor key of a definition.
    pub fn of(def: &WorkflowDefinition) -> Self {
        WorkflowCursor {
            id: def.id.clone(),
            version: def.version,
        }
    }
}

/// Stores workflow definitions. See docs/DESIGN.md section 4, "Workflows".
#[async_trait]
pub trait WorkflowRepository: Send + Sync + Debug + 'static {
    /// Stores a version. Absent: inserted. Present with the same content: a
    /// no-op that returns the stored record (`inserted == false`). Present
    /// with other content: [`Error::Conflict`]. A `parent` that is not stored:
    /// [`Error::NotFound`]; one not lower than `version`:
    /// [`Error::InvalidInput`].
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>>;

    /// One version, or [`Error::NotFound`].
    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition>;

    /// The highest stored version, or [`Error::NotFound`].
    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition>;

    /// Every version of one workflow, ascending; empty if none.
    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>>;

    /// All definitions ordered by `(id, version)`, paged.
    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>>;

    /// Deletes one version. Absent: [`Error::NotFound`]; another stored
    /// version names it as parent: [`Error::Conflict`] (decided by
    /// [`crate::decide_workflow_delete`]). Runs of the version are not
    /// checked here: the facade refuses while they exist.
    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()>;
}
