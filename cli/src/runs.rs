//! `runstore run show|list`: reading runs and their events (the commands
//! that write runs are in `writes.rs`, `run delete` in `lifecycle.rs`).

use std::process::ExitCode;

use runstore::{
    Error, EventQuery, MAX_PAGE_LIMIT, Result, RunFilter, RunId, RunQuery, RunStatus, Storage,
    Version, WorkflowId,
};
use serde_json::{Value, json};

use crate::args::parse_time;
use crate::output::Out;
use crate::paging::Cursors;

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
    pub oldest_first: bool,
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
        let mut query = RunQuery::new(filter.clone())
            .with_limit(left.min(MAX_PAGE_LIMIT))
            .with_cursor(cursor);
        if args.oldest_first {
            query = query.oldest_first();
        }
        let page = storage.logs.query_runs(query).await?;
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
