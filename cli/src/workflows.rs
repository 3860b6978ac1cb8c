//! `runstore workflow put|get|list`: storing and reading workflow
//! definitions (`workflow delete` is in `lifecycle.rs`).

use std::path::Path;
use std::process::ExitCode;

use runstore::{
    Error, Result, Storage, Timestamp, Version, WorkflowDefinition, WorkflowId, WorkflowQuery,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::version_arg;
use crate::output::Out;
use crate::paging::Cursors;

/// The YAML or JSON shape of `workflow put`: a [`WorkflowDefinition`] whose
/// `created_at` may be left out (then: now).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowInput {
    id: WorkflowId,
    version: Version,
    #[serde(default)]
    parent: Option<Version>,
    #[serde(default)]
    description: String,
    body: Value,
    #[serde(default)]
    created_at: Option<Timestamp>,
}

fn read_workflow_file(file: &Path) -> Result<WorkflowDefinition> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::invalid("file", format!("cannot read {}: {e}", file.display())))?;
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let input: WorkflowInput = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid("workflow", format!("{}: {e}", file.display())))?
    } else {
        runstore::yaml::from_str(&text)
            .map_err(|e| Error::invalid("workflow", format!("{}: {e}", file.display())))?
    };
    let mut def = WorkflowDefinition::new(input.id, input.version, input.body)
        .with_description(input.description);
    if let Some(p) = input.parent {
        def = def.with_parent(p);
    }
    if let Some(t) = input.created_at {
        def = def.with_created_at(t);
    }
    Ok(def)
}

fn workflow_json(def: &WorkflowDefinition) -> Value {
    let mut v = serde_json::to_value(def).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("content_hash".into(), json!(def.content_hash().to_string()));
    }
    v
}

fn workflow_line(def: &WorkflowDefinition) -> String {
    format!(
        "{} v{}{}  {}  {}",
        def.id,
        def.version,
        def.parent
            .map(|p| format!(" (from v{p})"))
            .unwrap_or_default(),
        def.created_at,
        def.description
    )
}

/// `runstore workflow put FILE`.
pub async fn workflow_put(storage: &Storage, file: &Path, out: &Out) -> Result<ExitCode> {
    let def = read_workflow_file(file)?;
    let written = storage.workflows.store(def).await?;
    let value = json!({"inserted": written.inserted, "workflow": workflow_json(&written.record)});
    out.result(&value, || {
        format!(
            "{} workflow {} version {} (sha256 {})",
            if written.inserted {
                "stored"
            } else {
                "unchanged:"
            },
            written.record.id,
            written.record.version,
            written.record.content_hash()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore workflow get ID [--version N]`.
pub async fn workflow_get(
    storage: &Storage,
    id: &str,
    version: Option<u32>,
    out: &Out,
) -> Result<ExitCode> {
    let id = WorkflowId::new(id)?;
    let def = match version_arg(version)? {
        Some(v) => storage.workflows.get(&id, v).await?,
        None => storage.workflows.get_latest(&id).await?,
    };
    let value = workflow_json(&def);
    out.result(&value, || {
        let body = serde_json::to_string_pretty(&def.body).unwrap_or_default();
        format!(
            "{}\nsha256 {}\n{}",
            workflow_line(&def),
            def.content_hash(),
            body
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore workflow list [ID]`.
pub async fn workflow_list(storage: &Storage, id: Option<&str>, out: &Out) -> Result<ExitCode> {
    let mut list = out.list()?;
    let mut query = WorkflowQuery::default().with_limit(500);
    if let Some(id) = id {
        query = query.with_id(WorkflowId::new(id)?);
    }
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = storage
            .workflows
            .list(query.clone().with_cursor(cursor))
            .await?;
        for def in &page.items {
            list.item(&workflow_json(def), || workflow_line(def))?;
        }
        pages.after(page.next);
    }
    list.finish("no workflows")?;
    Ok(ExitCode::SUCCESS)
}
