//! The commands other than export/import and demo.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use runstore::{
    ArtifactInfo, ArtifactKey, ArtifactPath, ArtifactQuery, BundleRequest, Concern, Config, Error,
    EventQuery, MAX_PAGE_LIMIT, MetricQuery, PatternQuery, Phase, PutOptions, Result, RunFilter,
    RunId, RunQuery, RunStatus, Sha256Digest, Storage, SummaryQuery, Timestamp, Version,
    WorkflowDefinition, WorkflowId, WorkflowQuery,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::output::Out;
use crate::paging::{Cursors, tally};

/// Who the CLI says wrote an artifact.
pub const CLI_CREATOR: &str = "runstore-cli";

fn version_arg(v: Option<u32>) -> Result<Option<Version>> {
    v.map(Version::new).transpose()
}

/// `phase/path` as used by `artifact bundle`: the first segment is the phase.
pub fn split_phase_path(text: &str) -> Result<(Phase, ArtifactPath)> {
    let Some((phase, path)) = text.split_once('/') else {
        return Err(Error::invalid(
            "artifact",
            format!(
                "{} must be written phase/path, e.g. build/out/report.txt",
                runstore::text::shown(text)
            ),
        ));
    };
    Ok((Phase::new(phase)?, ArtifactPath::new(path)?))
}

/// Describes each concern's backend, with URLs redacted.
fn describe(config: &Config) -> Value {
    let mut concerns = serde_json::Map::new();
    for c in Concern::ALL {
        let b = config.backend(c);
        let mut o = serde_json::Map::new();
        o.insert("type".into(), json!(b.type_name));
        for (k, v) in &b.options {
            let key = k.as_str().unwrap_or("?").to_string();
            let value = match v {
                runstore::yaml::Value::String(s) => {
                    let s = if key == "path" {
                        let p = b.resolve_path(s);
                        std::path::absolute(&p).unwrap_or(p).display().to_string()
                    } else {
                        runstore::config::redact_url(s)
                    };
                    json!(s)
                }
                other => serde_json::to_value(other).unwrap_or(Value::Null),
            };
            o.insert(key, value);
        }
        concerns.insert(c.as_str().into(), Value::Object(o));
    }
    Value::Object(concerns)
}

/// `runstore init`.
pub async fn init(storage: &Storage, out: &Out) -> Result<ExitCode> {
    let config = storage.config();
    let value = json!({
        "initialized": true,
        "config": config.source,
        "backends": storage.backends().len(),
        "concerns": describe(config),
    });
    out.result(&value, || {
        let mut s = format!("runstore is ready ({})\n", config.source);
        if let Some(map) = value["concerns"].as_object() {
            for (name, v) in map {
                s.push_str(&format!("  {name:<10} {v}\n"));
            }
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Counts of every concern, read page by page.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub workflows: u64,
    pub workflow_versions: u64,
    pub runs: u64,
    pub runs_by_status: BTreeMap<String, u64>,
    pub metrics: u64,
    pub patterns: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
}

/// Items a page when counting for `stats`.
const STATS_PAGE: usize = 1000;

pub async fn collect_stats(storage: &Storage) -> Result<Stats> {
    let mut s = Stats::default();
    // Listed by (id, version): a workflow starts where the id changes.
    let mut last_id: Option<WorkflowId> = None;
    (s.workflow_versions, s.workflows) = tally(
        |c| {
            storage.workflows.list(
                WorkflowQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |d| {
            let first = last_id.as_ref() != Some(&d.id);
            last_id = Some(d.id.clone());
            u64::from(first)
        },
    )
    .await?;
    s.runs = storage.logs.count_runs(RunFilter::default()).await?;
    for st in RunStatus::ALL {
        let n = storage
            .logs
            .count_runs(RunFilter::default().statuses([st]))
            .await?;
        s.runs_by_status.insert(st.as_str().to_string(), n);
    }
    (s.metrics, _) = tally(
        |c| {
            storage
                .metrics
                .list(MetricQuery::default().with_limit(STATS_PAGE).with_cursor(c))
        },
        |_| 0,
    )
    .await?;
    (s.patterns, _) = tally(
        |c| {
            storage.metrics.list_patterns(
                PatternQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |_| 0,
    )
    .await?;
    (s.artifacts, s.artifact_bytes) = tally(
        |c| {
            storage.artifacts.list(
                ArtifactQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |i| i.size,
    )
    .await?;
    Ok(s)
}

/// `runstore stats`.
pub async fn stats(storage: &Storage, out: &Out) -> Result<ExitCode> {
    let s = collect_stats(storage).await?;
    out.result(&s, || {
        let by_status: Vec<String> = s
            .runs_by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "workflows  {} ({} versions)\nruns       {}{}\nmetrics    {}\npatterns   {}\nartifacts  {} ({} bytes)",
            s.workflows,
            s.workflow_versions,
            s.runs,
            if by_status.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_status.join(", "))
            },
            s.metrics,
            s.patterns,
            s.artifacts,
            s.artifact_bytes
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore check`: every backend's own check, then every artifact read
/// back against its hash. Exit code 1 if anything is wrong.
pub async fn check(storage: &Storage, repair: bool, out: &Out) -> Result<ExitCode> {
    let mut ok = true;
    let mut backends = Vec::new();
    for opened in storage.backends() {
        let concerns: Vec<&str> = opened.concerns.iter().map(|c| c.as_str()).collect();
        // One backend that cannot be checked (a damaged page, a link) is a
        // finding; the others are still checked.
        let (mut report, problems) =
            match crate::backend_ops::check_backend(&opened.backend.handle, repair).await {
                Ok(r) => r,
                Err(e) => (
                    serde_json::Map::new(),
                    vec![format!("the check stopped: {e}")],
                ),
            };
        ok &= problems.is_empty();
        report.insert("type".into(), json!(opened.type_name));
        report.insert("concerns".into(), json!(concerns));
        report.insert("ok".into(), json!(problems.is_empty()));
        report.insert("problems".into(), json!(problems));
        backends.push(Value::Object(report));
    }

    // Artifact hashes: read every artifact through the verifying reader.
    let mut checked = 0u64;
    let mut corrupt = Vec::new();
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = match storage
            .artifacts
            .list(ArtifactQuery::default().with_limit(500).with_cursor(cursor))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                corrupt.push(json!({"key": null, "kind": crate::output::kind_name(e.kind()), "message": format!("listing artifacts stopped: {e}")}));
                break;
            }
        };
        for info in &page.items {
            checked += 1;
            if let Err(e) = verify_artifact(storage, &info.key).await {
                corrupt.push(json!({"key": info.key.to_string(), "kind": crate::output::kind_name(e.kind()), "message": e.to_string()}));
            }
        }
        pages.after(page.next);
    }
    ok &= corrupt.is_empty();
    let references = match crate::references::check(storage).await {
        Ok(r) => json!(r),
        Err(e) => {
            ok = false;
            json!({"error": e.to_string()})
        }
    };
    let value = json!({
        "ok": ok,
        "backends": backends,
        "artifacts": {"checked": checked, "corrupt": corrupt},
        "references": references,
    });
    out.result(&value, || {
        let mut s = String::new();
        for b in &backends {
            s.push_str(&format!(
                "{} ({}): {}\n",
                b["type"].as_str().unwrap_or("?"),
                b["concerns"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                if b["ok"] == json!(true) {
                    "ok"
                } else {
                    "PROBLEMS"
                }
            ));
            if let Some(problems) = b["problems"].as_array() {
                for p in problems {
                    s.push_str(&format!("  - {}\n", p.as_str().unwrap_or("?")));
                }
            }
            let repaired = b["findings"].as_array().into_iter().flatten();
            for f in repaired.filter(|f| f["repaired"] == json!(true)) {
                let location = f["location"].as_str().unwrap_or("?");
                s.push_str(&format!(
                    "  repaired: {} at {location}: {}\n",
                    f["kind"].as_str().unwrap_or("?"),
                    f["detail"].as_str().unwrap_or("?")
                ));
                if f["kind"] == json!("CorruptLine") && location.contains("/events/") {
                    s.push_str(
                        "    the run's event numbering has a hole there now: copy it with `migrate --skip-corrupt` or `export`/`import --skip-corrupt`, which put a runstore.lost tombstone in it\n",
                    );
                }
            }
        }
        s.push_str(&format!(
            "artifacts: {checked} checked, {} corrupt\n",
            corrupt.len()
        ));
        for c in &corrupt {
            s.push_str(&format!("  - {}\n", c["message"].as_str().unwrap_or("?")));
        }
        if let Some(e) = references["error"].as_str() {
            s.push_str(&format!("references: the check stopped: {e}\n"));
        } else if let Some(list) = references["unresolved"].as_array() {
            s.push_str(&format!(
                "references: {} checked, {} unresolved (warnings: writes do not enforce references between concerns)\n",
                references["checked"], list.len()
            ));
            for u in list {
                s.push_str(&format!(
                    "  - {} names {}, which is not stored\n",
                    u["from"].as_str().unwrap_or("?"),
                    u["to"].as_str().unwrap_or("?")
                ));
            }
        }
        let repaired = s.contains("  repaired: ");
        s.push_str(match (ok, repaired) {
            (true, false) => "all good",
            (true, true) => "all good after the repairs above",
            (false, _) => "problems found",
        });
        s
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn verify_artifact(storage: &Storage, key: &ArtifactKey) -> Result<u64> {
    let mut reader = storage.artifacts.get(key).await?;
    tokio::io::copy(&mut reader.body, &mut tokio::io::sink())
        .await
        .map_err(|e| Error::io(format!("reading artifact {key}"), e))
}

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

fn run_line(run: &runstore::Run) -> String {
    format!(
        "{}  {} v{}  {:<9}  {}{}",
        run.id,
        run.workflow_id,
        run.workflow_version,
        run.status.as_str(),
        run.started_at,
        run.ended_at.map(|e| format!(" -> {e}")).unwrap_or_default()
    )
}

/// Which run `run show` shows.
#[derive(Debug)]
pub enum RunRef {
    /// By id (or its first characters).
    Id(String),
    /// By workflow and external key.
    Key { workflow: String, key: String },
}

/// `runstore run show ID` or `runstore run show --workflow W --key K`.
pub async fn run_show(
    storage: &Storage,
    which: RunRef,
    kind: Option<String>,
    last: Option<usize>,
    out: &Out,
) -> Result<ExitCode> {
    let run = match which {
        RunRef::Id(id) => {
            let id = resolve_run(storage, &id).await?;
            storage.logs.get_run(&id).await?
        }
        RunRef::Key { workflow, key } => {
            storage
                .logs
                .get_run_by_key(&WorkflowId::new(workflow)?, &key)
                .await?
        }
    };
    let id = run.id.clone();
    let mut query = EventQuery::default().with_limit(MAX_PAGE_LIMIT);
    if let Some(k) = kind {
        query = query.of_kind(k);
    }
    let events = match last {
        // One page, newest first, shown oldest first.
        Some(n) => {
            let mut page = storage
                .logs
                .list_events(&id, query.newest_first().with_limit(n))
                .await?
                .items;
            page.reverse();
            page
        }
        None => {
            let mut all = Vec::new();
            let mut pages = Cursors::default();
            while let Some(cursor) = pages.next() {
                let page = storage
                    .logs
                    .list_events(&id, query.clone().with_cursor(cursor))
                    .await?;
                all.extend(page.items);
                pages.after(page.next);
            }
            all
        }
    };
    let value = json!({"run": run, "events": events});
    out.result(&value, || {
        let mut s = run_line(&run);
        s.push('\n');
        s.push_str(&format!("trigger: {}\n", run.trigger));
        if let Some(key) = &run.external_key {
            s.push_str(&format!("external key: {key}\n"));
        }
        if !run.attributes.is_empty() {
            s.push_str(&format!(
                "attributes: {}\n",
                Value::Object(run.attributes.clone())
            ));
        }
        if !run.summaries.is_empty() {
            s.push_str(&format!(
                "summaries: {}\n",
                Value::Object(run.summaries.clone())
            ));
        }
        for e in &events {
            s.push_str(&format!(
                "  #{:<4} {}  {}  {}\n",
                e.seq, e.at, e.kind, e.payload
            ));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Filters of `runstore run list`.
#[derive(Debug)]
pub struct RunListArgs {
    pub workflow: Option<String>,
    pub version: Option<u32>,
    pub status: Vec<String>,
    pub trigger: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A time on the command line: RFC 3339, a date (`2026-11-30`, midnight
/// UTC), or an age before now (`90s`, `15m`, `12h`, `2d`).
pub fn parse_time(field: &str, s: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        let digits = &s[..s.len() - 1];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = digits
                .parse()
                .map_err(|_| Error::invalid(field, format!("{s} is too large")))?;
            let secs = match unit {
                's' => n,
                'm' => n.saturating_mul(60),
                'h' => n.saturating_mul(3600),
                _ => n.saturating_mul(86_400),
            };
            let micros = Timestamp::now()
                .as_micros()
                .saturating_sub(secs.saturating_mul(1_000_000));
            return Timestamp::from_micros(micros);
        }
    }
    if s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        return format!("{s}T00:00:00Z")
            .parse::<Timestamp>()
            .map_err(|_| Error::invalid(field, format!("{s} is not a date (YYYY-MM-DD)")));
    }
    s.parse::<Timestamp>().map_err(|e| {
        Error::invalid(
            field,
            format!("{s}: use RFC 3339 (2026-11-30T12:00:00Z), a date (2026-11-30) or an age (90s, 15m, 12h, 2d): {e}"),
        )
    })
}

/// A run id as given, or the one stored run whose id starts with it (at
/// least 4 characters). Scans the runs when the exact id is not stored:
/// a convenience for people typing ids, not for scripts.
pub async fn resolve_run(storage: &Storage, given: &str) -> Result<RunId> {
    let exact = RunId::new(given)?;
    match storage.logs.get_run(&exact).await {
        Ok(_) => return Ok(exact),
        Err(e) if e.kind() != runstore::ErrorKind::NotFound || given.len() < 4 => return Err(e),
        Err(_) => {}
    }
    let mut found: Vec<RunId> = Vec::new();
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = storage
            .logs
            .query_runs(
                RunQuery::default()
                    .with_limit(MAX_PAGE_LIMIT)
                    .with_cursor(cursor),
            )
            .await?;
        found.extend(
            page.items
                .into_iter()
                .filter(|r| r.id.as_str().starts_with(given))
                .map(|r| r.id),
        );
        if found.len() > 1 {
            return Err(Error::invalid(
                "run",
                format!(
                    "{given} is the start of several run ids ({}, {}, ...); give more of it",
                    found[0], found[1]
                ),
            ));
        }
        pages.after(page.next);
    }
    found
        .pop()
        .ok_or_else(|| Error::not_found(format!("run {given} (no run id starts with it either)")))
}

/// `runstore run list`.
pub async fn run_list(storage: &Storage, args: RunListArgs, out: &Out) -> Result<ExitCode> {
    let mut filter = RunFilter::default();
    if let Some(w) = &args.workflow {
        filter = filter.workflow(WorkflowId::new(w.as_str())?);
    }
    let statuses = args
        .status
        .iter()
        .map(|s| s.trim().parse::<RunStatus>())
        .collect::<Result<Vec<_>>>()?;
    filter = filter.statuses(statuses);
    if let Some(v) = args.version {
        filter = filter.version(Version::new(v)?);
    }
    if let Some(t) = args.trigger {
        filter = filter.trigger(t);
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time("until", s))
        .transpose()?;
    filter = filter.started_between(since, until);
    if args.limit == 0 {
        return Err(Error::invalid("limit", "must be at least 1"));
    }
    let mut list = out.list()?;
    let mut left = args.limit;
    let mut pages = match args.cursor {
        Some(c) => Cursors::after_cursor(runstore::Cursor::from_string(c)),
        None => Cursors::default(),
    };
    while left > 0
        && let Some(cursor) = pages.next()
    {
        let page = storage
            .logs
            .query_runs(
                RunQuery::new(filter.clone())
                    .with_limit(left.min(MAX_PAGE_LIMIT))
                    .with_cursor(cursor),
            )
            .await?;
        left -= page.items.len().min(left);
        for run in &page.items {
            list.item(run, || run_line(run))?;
        }
        if left == 0
            && let Some(next) = &page.next
        {
            // More than --limit: where the next listing starts.
            eprintln!("more runs: --cursor {}", next.as_str());
        }
        pages.after(page.next);
    }
    list.finish("no runs")?;
    Ok(ExitCode::SUCCESS)
}

fn info_line(info: &ArtifactInfo) -> String {
    format!(
        "{}/{}  {} bytes  {}  sha256 {}",
        info.key.phase, info.key.path, info.size, info.content_type, info.sha256
    )
}

/// `runstore artifact put RUN PHASE PATH FILE`.
pub async fn artifact_put(
    storage: &Storage,
    (run, phase, path): (&str, &str, &str),
    file: &Path,
    content_type: Option<String>,
    overwrite_token: Option<String>,
    out: &Out,
) -> Result<ExitCode> {
    let key = ArtifactKey::parse(run, phase, path)?;
    let mut options = PutOptions::default().created_by(CLI_CREATOR);
    if let Some(t) = content_type {
        options = options.content_type(t);
    }
    if let Some(t) = overwrite_token {
        options = options.overwrite_token(t.parse::<Sha256Digest>()?);
    }
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::invalid("file", format!("cannot open {}: {e}", file.display())))?;
    let written = storage.artifacts.put(&key, Box::new(f), options).await?;
    report_written(out, &written, "")
}

/// Prints a written artifact (JSON: `inserted` and the record; for humans:
/// stored or unchanged, then `noun` and the record) and succeeds.
fn report_written(
    out: &Out,
    written: &runstore::Written<runstore::ArtifactInfo>,
    noun: &str,
) -> Result<ExitCode> {
    let value = json!({"inserted": written.inserted, "artifact": written.record});
    out.result(&value, || {
        let verb = if written.inserted {
            "stored"
        } else {
            "unchanged:"
        };
        format!("{verb} {noun}{}", info_line(&written.record))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact get RUN PHASE PATH [--out FILE]`.
pub async fn artifact_get(
    storage: &Storage,
    (run, phase, path): (&str, &str, &str),
    file: Option<&Path>,
    out: &Out,
) -> Result<ExitCode> {
    let key = ArtifactKey::parse(run, phase, path)?;
    let Some(file) = file else {
        if out.json {
            return Err(Error::invalid(
                "out",
                "with --json the bytes cannot go to stdout; give --out FILE",
            ));
        }
        let mut reader = storage.artifacts.get(&key).await?;
        // Spooled to an unnamed temp file and verified first: not one byte
        // of an artifact that fails its hash reaches stdout.
        let spool = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        let mut spool = tokio::fs::File::from_std(spool);
        tokio::io::copy(&mut reader.body, &mut spool)
            .await
            .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
        use tokio::io::AsyncSeekExt;
        spool
            .rewind()
            .await
            .map_err(|e| Error::io("rewinding the temp file", e))?;
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut spool, &mut stdout)
            .await
            .map_err(|e| Error::io("writing to stdout", e))?;
        stdout
            .flush()
            .await
            .map_err(|e| Error::io("writing to stdout", e))?;
        return Ok(ExitCode::SUCCESS);
    };
    // Written beside the target, renamed only once the hash is verified, so
    // a corrupt artifact never leaves a plausible file behind.
    let mut reader = storage.artifacts.get(&key).await?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    let part = file.with_file_name(format!(".{name}.part"));
    let result = async {
        let mut f = tokio::fs::File::create(&part)
            .await
            .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
        let n = tokio::io::copy(&mut reader.body, &mut f)
            .await
            .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
        f.sync_all()
            .await
            .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
        tokio::fs::rename(&part, file)
            .await
            .map_err(|e| Error::io(format!("renaming to {}", file.display()), e))?;
        Ok::<u64, Error>(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    let n = result?;
    let value =
        json!({"artifact": reader.info, "written_to": file.display().to_string(), "bytes": n});
    out.result(&value, || format!("wrote {n} bytes to {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact list RUN [--phase P]`.
pub async fn artifact_list(
    storage: &Storage,
    run: &str,
    phase: Option<&str>,
    out: &Out,
) -> Result<ExitCode> {
    let mut query = ArtifactQuery::run(RunId::new(run)?).with_limit(500);
    if let Some(p) = phase {
        query = query.with_phase(Phase::new(p)?);
    }
    let mut list = out.list()?;
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = storage
            .artifacts
            .list(query.clone().with_cursor(cursor))
            .await?;
        for info in &page.items {
            list.item(info, || info_line(info))?;
        }
        pages.after(page.next);
    }
    list.finish("no artifacts")?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact bundle RUN PATH MEMBER...`.
pub async fn artifact_bundle(
    storage: &Storage,
    run: &str,
    path: &str,
    members: &[String],
    out: &Out,
) -> Result<ExitCode> {
    let run_id = RunId::new(run)?;
    let (phase, path) = split_phase_path(path)?;
    let members = members
        .iter()
        .map(|m| split_phase_path(m))
        .collect::<Result<Vec<_>>>()?;
    let request = BundleRequest::new(run_id, phase, path, members)
        .with_options(PutOptions::default().created_by(CLI_CREATOR));
    let written = storage.artifacts.bundle(request).await?;
    report_written(out, &written, "bundle ")
}

/// A number for humans: at most six decimals, no trailing zeros.
fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// A summary for humans.
pub fn summary_text(s: &runstore::MetricsSummary) -> String {
    let mut t = format!(
        "{}{}: {} executions ({} succeeded, {} failed, {} cancelled)",
        s.workflow_id,
        s.workflow_version
            .map(|v| format!(" v{v}"))
            .unwrap_or_default(),
        s.executions,
        s.succeeded,
        s.failed,
        s.cancelled
    );
    if let Some(r) = s.success_rate {
        t.push_str(&format!(", success rate {:.1}%", r * 100.0));
    }
    if let Some(d) = &s.duration {
        t.push_str(&format!(
            "\n  duration ms: min {:.1}, p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}, mean {:.1}",
            d.min as f64 / 1000.0,
            d.p50 as f64 / 1000.0,
            d.p95 as f64 / 1000.0,
            d.p99 as f64 / 1000.0,
            d.max as f64 / 1000.0,
            d.mean / 1000.0
        ));
    }
    for (name, v) in &s.values {
        t.push_str(&format!(
            "\n  {name}: count {}, sum {}, min {}, max {}, mean {}",
            v.count,
            num(v.sum),
            num(v.min),
            num(v.max),
            num(v.mean)
        ));
    }
    t
}

/// `runstore metrics summary WORKFLOW [--version N]`.
pub async fn metrics_summary(
    storage: &Storage,
    workflow: &str,
    version: Option<u32>,
    out: &Out,
) -> Result<ExitCode> {
    let id = WorkflowId::new(workflow)?;
    let query = match version_arg(version)? {
        Some(v) => SummaryQuery::version(v),
        None => SummaryQuery::default(),
    };
    let s = storage.metrics.summary(&id, query).await?;
    if s.executions == 0 {
        // An empty summary reads like a workflow that never ran; say which
        // it is, so a typo in the id is noticed.
        let known = !storage.workflows.list_versions(&id).await?.is_empty();
        out.note(&if known {
            format!("workflow {id} has no recorded metrics yet")
        } else {
            format!("no workflow {id} is stored, and no metrics name it (check the id)")
        });
    }
    out.result(&s, || summary_text(&s))?;
    Ok(ExitCode::SUCCESS)
}
