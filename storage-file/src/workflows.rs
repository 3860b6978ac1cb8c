//! Workflow definitions: `workflows/<id>/<version>.yaml`, one immutable
//! file per version, written atomically under the workflows lock.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use runstore_core::{
    Error, Page, Result, Timestamp, Version, WorkflowCursor, WorkflowDefinition, WorkflowId,
    WorkflowQuery, WorkflowRepository, Written, validate_limit,
};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::{FileStore, FindingKind, Inner};

pub(crate) const LOCK: &str = "workflows.lock";

/// The YAML document of one version.
#[derive(Serialize, Deserialize)]
struct WorkflowFile {
    id: WorkflowId,
    version: Version,
    #[serde(default)]
    parent: Option<Version>,
    #[serde(default)]
    description: String,
    created_at: Timestamp,
    body: serde_json::Value,
    /// The body as canonical JSON, present only when YAML alone does not
    /// give it back exactly; then it is authoritative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_json: Option<String>,
    /// The description as a JSON string, under the same rule as `body_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description_json: Option<String>,
    /// The content hash when stored: a version is immutable, so a file
    /// edited by hand since no longer matches it and reads as `Corrupt`.
    /// Absent in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_sha256: Option<runstore_core::Sha256Digest>,
}

impl WorkflowFile {
    fn into_def(self) -> std::result::Result<WorkflowDefinition, String> {
        let body = match self.body_json {
            Some(j) => serde_json::from_str(&j).map_err(|e| format!("body_json: {e}"))?,
            None => self.body,
        };
        let description = match self.description_json {
            Some(j) => serde_json::from_str(&j).map_err(|e| format!("description_json: {e}"))?,
            None => self.description,
        };
        let def = WorkflowDefinition {
            id: self.id,
            version: self.version,
            parent: self.parent,
            description,
            body,
            created_at: self.created_at,
        };
        if let Some(recorded) = self.content_sha256 {
            let now = def.content_hash();
            if now != recorded {
                return Err(format!(
                    "the content changed after it was stored (sha256 {recorded} recorded, {now} now); a stored version is immutable: store the change as a new version"
                ));
            }
        }
        Ok(def)
    }
}

fn file_name(version: Version) -> String {
    format!("{}.yaml", version.get())
}

fn version_of(name: &str) -> Option<Version> {
    let digits = name.strip_suffix(".yaml")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Version::new(digits.parse().ok()?).ok()
}

pub(crate) fn version_path(inner: &Inner, id: &WorkflowId, version: Version) -> Result<PathBuf> {
    inner
        .root
        .path(&["workflows", id.as_str(), &file_name(version)])
}

/// Encodes a definition as YAML, adding `body_json` if YAML does not
/// round-trip the body exactly.
pub(crate) fn encode(def: &WorkflowDefinition) -> Result<String> {
    let yaml_err =
        |e: serde_yaml::Error| Error::backend("writing a workflow as YAML", Some(e.into()));
    let mut file = WorkflowFile {
        id: def.id.clone(),
        version: def.version,
        parent: def.parent,
        description: def.description.clone(),
        created_at: def.created_at,
        body: def.body.clone(),
        body_json: None,
        description_json: None,
        content_sha256: Some(def.content_hash()),
    };
    let text = serde_yaml::to_string(&file).map_err(yaml_err)?;
    if decode(&text).is_ok_and(|back| back.same_content(def) && back.created_at == def.created_at) {
        return Ok(text);
    }
    file.body_json = Some(runstore_core::canonical_json(&def.body));
    file.description_json = Some(serde_json::Value::String(def.description.clone()).to_string());
    let text = serde_yaml::to_string(&file).map_err(yaml_err)?;
    match decode(&text) {
        Ok(back) if back.same_content(def) && back.created_at == def.created_at => Ok(text),
        _ => Err(Error::backend(
            format!(
                "workflow {} version {} does not read back identically from YAML",
                def.id, def.version
            ),
            None,
        )),
    }
}

pub(crate) fn decode(text: &str) -> std::result::Result<WorkflowDefinition, String> {
    let file: WorkflowFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    file.into_def()
}

/// Reads one version file; `None` if absent, `Corrupt` if unreadable or if
/// it names another id or version than its path.
pub(crate) fn read_version(
    path: &Path,
    id: &WorkflowId,
    version: Version,
) -> Result<Option<WorkflowDefinition>> {
    let Some(mut f) = fsutil::open_read(path)? else {
        return Ok(None);
    };
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| fsutil::io_err("reading", path, e))?;
    let def = decode(&text).map_err(|e| Error::corrupt(path.display().to_string(), e))?;
    if def.id != *id || def.version != version {
        return Err(Error::corrupt(
            path.display().to_string(),
            format!("holds workflow {} version {}", def.id, def.version),
        ));
    }
    Ok(Some(def))
}

/// Stored versions of a workflow, ascending (from file names only).
pub(crate) fn versions(inner: &Inner, id: &WorkflowId) -> Result<Vec<Version>> {
    let dir = inner.root.path(&["workflows", id.as_str()])?;
    let mut out: Vec<Version> = fsutil::list_dir(&dir)?
        .into_iter()
        .filter(|(_, ft)| ft.is_file())
        .filter_map(|(n, _)| version_of(&n))
        .collect();
    out.sort();
    Ok(out)
}

/// Stored workflow ids, bytewise ascending.
pub(crate) fn ids(inner: &Inner) -> Result<Vec<WorkflowId>> {
    let dir = inner.root.path(&["workflows"])?;
    Ok(fsutil::list_dir(&dir)?
        .into_iter()
        .filter(|(_, ft)| ft.is_dir())
        .filter_map(|(n, _)| WorkflowId::new(n).ok())
        .collect())
}

/// Reads a version for a listing: a corrupt file is skipped and reported.
fn read_listed(inner: &Inner, id: &WorkflowId, v: Version) -> Result<Option<WorkflowDefinition>> {
    let path = version_path(inner, id, v)?;
    match read_version(&path, id, v) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == runstore_core::ErrorKind::Corrupt => {
            inner.report(
                FindingKind::CorruptFile,
                &path,
                0,
                format!("skipped: {e}"),
                false,
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl WorkflowRepository for FileStore {
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        def.validate()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, true)?;
                let path = version_path(inner, &def.id, def.version)?;
                if let Some(stored) = read_version(&path, &def.id, def.version)? {
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
                if let Some(parent) = def.parent
                    && !fsutil::regular_file_exists(&version_path(inner, &def.id, parent)?)?
                {
                    return Err(Error::not_found(format!(
                        "parent version {parent} of workflow {} (needed by version {})",
                        def.id, def.version
                    )));
                }
                let text = encode(&def)?;
                let dir = inner.root.dir(&["workflows", def.id.as_str()])?;
                fsutil::write_atomic(&dir, &file_name(def.version), text.as_bytes(), inner.durability)?;
                Ok(Written::inserted(def))
            })
            .await
    }

    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                read_version(&version_path(inner, &id, version)?, &id, version)?
                    .ok_or_else(|| Error::not_found(format!("workflow {id} version {version}")))
            })
            .await
    }

    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let latest = versions(inner, &id)?
                    .last()
                    .copied()
                    .ok_or_else(|| Error::not_found(format!("workflow {id}")))?;
                read_version(&version_path(inner, &id, latest)?, &id, latest)?
                    .ok_or_else(|| Error::not_found(format!("workflow {id}")))
            })
            .await
    }

    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let mut out = Vec::new();
                for v in versions(inner, &id)? {
                    out.extend(read_listed(inner, &id, v)?);
                }
                Ok(out)
            })
            .await
    }

    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<WorkflowCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let all_ids = match &query.id {
                    Some(id) => vec![id.clone()],
                    None => ids(inner)?,
                };
                let mut items = Vec::new();
                'outer: for id in all_ids {
                    if after.as_ref().is_some_and(|a| id < a.id) {
                        continue;
                    }
                    for v in versions(inner, &id)? {
                        let key = WorkflowCursor {
                            id: id.clone(),
                            version: v,
                        };
                        if after.as_ref().is_some_and(|a| key <= *a) {
                            continue;
                        }
                        if let Some(d) = read_listed(inner, &id, v)? {
                            items.push(d);
                            if items.len() > limit {
                                break 'outer;
                            }
                        }
                    }
                }
                Ok(Page::from_overfetch(items, limit, WorkflowCursor::of))
            })
            .await
    }

    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| crate::lifecycle::delete_workflow(inner, &id, version))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_copies_are_authoritative_when_present() {
        let text = "id: w\nversion: 2\nparent: 1\ndescription: approx\ncreated_at: 2026-01-02T03:04:05.000001Z\nbody: 1.0\nbody_json: '{\"n\":100000000000000000000000}'\ndescription_json: '\"exact\"'\n";
        let def = decode(text).unwrap();
        assert_eq!(def.description, "exact");
        assert_eq!(runstore_core::canonical_json(&def.body), r#"{"n":1e+23}"#);
        assert_eq!(def.parent, Some(Version::FIRST));
        // Without them the YAML fields are read.
        let plain = decode(
            "id: w\nversion: 1\ncreated_at: 2026-01-02T03:04:05.000001Z\nbody: {a: [1, x]}\n",
        )
        .unwrap();
        assert_eq!(plain.body, json!({"a": [1, "x"]}));
        assert!(
            decode("id: ../w\nversion: 1\ncreated_at: 2026-01-02T03:04:05Z\nbody: 1\n").is_err()
        );
    }

    #[test]
    fn encode_reads_back_identically() {
        for body in [
            json!(1e300),
            json!(5e-324),
            json!(-0.0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!({"1": ".nan", "true": null}),
        ] {
            let def = WorkflowDefinition::new(
                WorkflowId::new("w").unwrap(),
                Version::FIRST,
                body.clone(),
            );
            let back = decode(&encode(&def).unwrap()).unwrap();
            assert!(back.same_content(&def), "{body}");
        }
    }
}
