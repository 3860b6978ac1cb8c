//! `runstore demo`: what an application does with runstore, end to end, on
//! whatever storage is configured.

use std::collections::BTreeMap;
use std::process::ExitCode;

use runstore::{
    ArtifactKey, ArtifactPath, ArtifactStoreExt, BundleRequest, Error, ExecutionMetric, JsonMap,
    LogRepositoryExt, NewEvent, Pattern, PatternId, Phase, PutOptions, Result, Run, RunFilter,
    RunStatus, RunUpdate, Storage, SummaryQuery, Timestamp, Version, WorkflowDefinition,
    WorkflowId,
};
use serde_json::json;

use crate::output::Out;

/// The demo's workflow.
pub const DEMO_WORKFLOW: &str = "demo-pipeline";

/// Fixed so that storing the versions again is a no-op.
fn demo_created_at() -> Result<Timestamp> {
    "2026-01-01T00:00:00Z".parse()
}

fn definitions() -> Result<(WorkflowDefinition, WorkflowDefinition)> {
    let id = WorkflowId::new(DEMO_WORKFLOW)?;
    let at = demo_created_at()?;
    let v1 = WorkflowDefinition::new(
        id.clone(),
        Version::FIRST,
        json!({"steps": [
            {"name": "fetch", "uses": "http.get"},
            {"name": "transform", "uses": "python", "script": "transform.py"},
            {"name": "load", "uses": "sql.insert"},
        ]}),
    )
    .with_description("Fetch, transform and load a daily report")
    .with_created_at(at);
    let v2 = WorkflowDefinition::new(
        id,
        Version::new(2)?,
        json!({"steps": [
            {"name": "fetch", "uses": "http.get"},
            {"name": "validate", "uses": "schema.check"},
            {"name": "transform", "uses": "python", "script": "transform.py"},
            {"name": "load", "uses": "sql.insert"},
        ]}),
    )
    .with_parent(Version::FIRST)
    .with_description("Adds a validation step")
    .with_created_at(at);
    Ok((v1, v2))
}

fn step_names(def: &WorkflowDefinition) -> Vec<String> {
    def.body["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One simulated run: events per step, a status, a metric and artifacts.
async fn one_run(
    storage: &Storage,
    def: &WorkflowDefinition,
    index: u32,
    fail: bool,
) -> Result<(Run, Vec<ArtifactKey>)> {
    let mut run = Run::new(def.id.clone(), def.version);
    run.trigger = if index.is_multiple_of(2) {
        "schedule"
    } else {
        "manual"
    }
    .into();
    run.attributes.insert("demo_index".into(), json!(index));
    let run = storage.logs.create_run(run).await?.record;
    storage
        .logs
        .update_status(&run.id, RunUpdate::running())
        .await?;

    // A webhook delivered twice: the idempotency key stores it once.
    let hook = NewEvent::new("webhook.received", json!({"source": "demo"}))
        .with_idempotency_key(format!("hook-{}", run.id));
    storage.logs.append_event(&run.id, hook.clone()).await?;
    let again = storage.logs.append_event(&run.id, hook).await?;
    if !again.duplicate {
        return Err(Error::backend(
            "the log store stored a repeated idempotency key twice",
            None,
        ));
    }

    let steps = step_names(def);
    let mut duration = 0u64;
    let mut rows = 0u64;
    let mut failed_at = None;
    for (i, step) in steps.iter().enumerate() {
        // Deterministic pseudo-durations so the summary has a spread.
        let micros = 20_000 + u64::from(index) * 7_000 + i as u64 * 13_000;
        duration += micros;
        let mut batch = vec![NewEvent::new("step.started", json!({"step": step}))];
        if fail && step == "validate" {
            batch.push(NewEvent::new(
                "step.failed",
                json!({"step": step, "error": "schema mismatch in column `amount`"}),
            ));
            storage.logs.append_events(&run.id, batch).await?;
            failed_at = Some(step.clone());
            break;
        }
        if step == "transform" {
            rows = 100 + u64::from(index) * 25;
        }
        batch.push(NewEvent::new(
            "step.finished",
            json!({"step": step, "duration_micros": micros}),
        ));
        storage.logs.append_events(&run.id, batch).await?;
    }

    let status = if failed_at.is_some() {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    let mut summaries = JsonMap::new();
    summaries.insert("rows".into(), json!(rows));
    if let Some(step) = &failed_at {
        summaries.insert("failed_step".into(), json!(step));
    }
    let run = storage
        .logs
        .update_status(
            &run.id,
            RunUpdate::finished(status, Timestamp::now()).with_summaries(summaries),
        )
        .await?;

    let mut counters = BTreeMap::new();
    counters.insert("steps".to_string(), steps.len() as i64);
    let mut values = BTreeMap::new();
    values.insert("rows".to_string(), rows as f64);
    values.insert("cost_usd".to_string(), 0.01 * f64::from(index + 1));
    storage
        .metrics
        .record(ExecutionMetric {
            run_id: run.id.clone(),
            workflow_id: def.id.clone(),
            workflow_version: def.version,
            status,
            duration_micros: duration,
            recorded_at: Timestamp::now(),
            counters,
            values,
        })
        .await?;

    let mut keys = Vec::new();
    let csv: String = std::iter::once("id,amount\n".to_string())
        .chain((0..rows.min(50)).map(|r| format!("{r},{}\n", r * 3 + u64::from(index))))
        .collect();
    let key = ArtifactKey::new(
        run.id.clone(),
        Phase::new("transform")?,
        ArtifactPath::new("output/rows.csv")?,
    );
    if failed_at.is_none() {
        storage
            .artifacts
            .put_bytes(
                &key,
                csv.into_bytes(),
                PutOptions::default()
                    .content_type("text/csv")
                    .created_by("demo"),
            )
            .await?;
        keys.push(key);
    }
    let report = json!({"run": run.id, "status": status, "rows": rows, "failed_step": failed_at});
    let key = ArtifactKey::new(
        run.id.clone(),
        Phase::new("report")?,
        ArtifactPath::new("summary.json")?,
    );
    let bytes = serde_json::to_vec_pretty(&report)
        .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
    storage
        .artifacts
        .put_bytes(
            &key,
            bytes,
            PutOptions::default()
                .content_type("application/json")
                .created_by("demo"),
        )
        .await?;
    keys.push(key);
    Ok((run, keys))
}

/// `runstore demo`.
pub async fn demo(storage: &Storage, runs: u32, out: &Out) -> Result<ExitCode> {
    if runs == 0 || runs > 1000 {
        return Err(Error::invalid(
            "runs",
            format!("must be 1 to 1000, got {runs}"),
        ));
    }
    let (v1, v2) = definitions()?;
    let w1 = storage.workflows.store(v1.clone()).await?;
    let w2 = storage.workflows.store(v2.clone()).await?;
    out.note(&format!(
        "workflow {DEMO_WORKFLOW}: v1 {}, v2 {} (parent v1)",
        if w1.inserted {
            "stored"
        } else {
            "already stored"
        },
        if w2.inserted {
            "stored"
        } else {
            "already stored"
        },
    ));

    let mut made = Vec::new();
    let mut bundle_source = None;
    for i in 0..runs {
        let def = if i < runs / 3 { &v1 } else { &v2 };
        // Every fourth run on v2 fails its validation step.
        let fail = def.version == v2.version && i % 4 == 3;
        let (run, keys) = one_run(storage, def, i, fail).await?;
        out.note(&format!(
            "run {} on v{}: {}",
            run.id, run.workflow_version, run.status
        ));
        if run.status == RunStatus::Succeeded {
            bundle_source = Some((run.id.clone(), keys));
        }
        made.push(run);
    }

    let bundle = match bundle_source {
        Some((run_id, keys)) => {
            let members = keys.into_iter().map(|k| (k.phase, k.path)).collect();
            let request = BundleRequest::new(
                run_id,
                Phase::new("bundle")?,
                ArtifactPath::new("run.zip")?,
                members,
            )
            .with_options(PutOptions::default().created_by("demo"));
            let info = storage.artifacts.bundle(request).await?.record;
            out.note(&format!(
                "bundled {} ({} bytes, sha256 {})",
                info.key, info.size, info.sha256
            ));
            Some(info)
        }
        None => None,
    };

    let failed: Vec<_> = made
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .map(|r| r.id.clone())
        .collect();
    if !failed.is_empty() {
        let total = made
            .iter()
            .filter(|r| r.workflow_version == v2.version)
            .count()
            .max(1);
        storage
            .metrics
            .upsert_pattern(Pattern {
                id: PatternId::new(format!("{DEMO_WORKFLOW}.validate-failures"))?,
                workflow_id: v2.id.clone(),
                kind: "flaky_step".into(),
                description: "The validate step fails on some inputs".into(),
                data: json!({"step": "validate"}),
                confidence: (failed.len() as f64 / total as f64).min(1.0),
                evidence: failed.clone(),
                detected_at: Timestamp::now(),
            })
            .await?;
    }

    let id = v1.id.clone();
    let recent = storage.logs.get_recent(&id, None, 5).await?;
    let total_runs = storage
        .logs
        .count_runs(RunFilter::default().workflow(id.clone()))
        .await?;
    let summary = storage
        .metrics
        .summary(&id, SummaryQuery::default())
        .await?;
    let summary_v2 = storage
        .metrics
        .summary(&id, SummaryQuery::version(v2.version))
        .await?;

    let value = json!({
        "workflow": {"id": id, "versions": [
            {"version": 1, "inserted": w1.inserted, "content_hash": v1.content_hash().to_string()},
            {"version": 2, "parent": 1, "inserted": w2.inserted, "content_hash": v2.content_hash().to_string()},
        ]},
        "runs": made,
        "bundle": bundle,
        "recent": recent,
        "total_runs": total_runs,
        "summary": summary,
        "summary_v2": summary_v2,
    });
    out.result(&value, || {
        let mut s = String::from("\nrecent runs:\n");
        for r in &recent {
            s.push_str(&format!(
                "  {}  v{}  {:<9}  {}\n",
                r.id,
                r.workflow_version,
                r.status.as_str(),
                r.started_at
            ));
        }
        s.push_str(&format!("\n{total_runs} runs of {id} stored in all\n"));
        s.push_str(&crate::metrics::summary_text(&summary));
        s.push('\n');
        s.push_str(&crate::metrics::summary_text(&summary_v2));
        s.push_str(&format!("\n{}", where_and_next(storage, &id)));
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Where the demo's data went and what to try next.
fn where_and_next(storage: &Storage, id: &runstore::WorkflowId) -> String {
    let mut s = String::from("stored in:\n");
    for b in storage.backends() {
        let concerns: Vec<&str> = b.concerns.iter().map(|c| c.as_str()).collect();
        let at = b
            .concerns
            .first()
            .and_then(|c| {
                storage
                    .config()
                    .backend(*c)
                    .str_option("path")
                    .map(str::to_string)
            })
            .map(|p| format!(" at {p}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {} ({}){at}\n",
            b.type_name,
            concerns.join(", ")
        ));
    }
    s.push_str(&format!(
        "try next:\n  runstore run list --workflow {id}\n  runstore run show <run id> --last 5\n  runstore metrics summary {id}\n  runstore check\n"
    ));
    s
}
