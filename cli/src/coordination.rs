//! `runstore lease …` and `runstore delivery …`: the coordination records
//! of docs/DESIGN.md section 11 from the command line, for shell workers and
//! for looking at who holds what.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use runstore::retention::RetentionDuration;
use runstore::{Cursor, Lease, LeaseQuery, LeaseRequest, Result, Storage, Timestamp};
use serde_json::json;

use crate::output::Out;
use crate::paging::{self, Cursors};

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Lists the leases held now (with --all also expired and released
    /// ones, with their last holder and token), by name.
    List {
        /// Also leases no longer held.
        #[arg(long)]
        all: bool,
        /// Continue after the cursor a previous listing printed.
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// At most this many leases (1 to 10,000).
        #[arg(long, value_name = "N", default_value = "100", value_parser = paging::parse_page_size)]
        limit: usize,
    },
    /// Acquires a lease for HOLDER, or renews it if HOLDER holds it; exits
    /// 1 with a conflict naming the holder while another one holds it.
    Acquire(AcquireArgs),
    /// Releases a lease held with TOKEN.
    Release {
        /// The lease.
        name: String,
        /// The fencing token its acquisition printed.
        #[arg(long)]
        token: u64,
    },
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// The lease.
    name: String,
    /// Who asks (unique per worker).
    #[arg(long)]
    holder: String,
    /// How long it lasts unless renewed: 90s, 15m, 12h, 2d.
    #[arg(long, default_value = "60s")]
    ttl: RetentionDuration,
}

#[derive(Debug, Subcommand)]
pub enum DeliveryCmd {
    /// Records a delivery id (a webhook or message id) and says whether it
    /// was new; exactly one caller ever hears "new" for an id.
    Record {
        /// The delivery id.
        id: String,
    },
    /// Forgets delivery ids recorded longer ago than AGE.
    Prune {
        /// 90s, 15m, 12h, 30d.
        #[arg(long, value_name = "AGE")]
        older_than: RetentionDuration,
    },
}

fn lease_line(l: &Lease, now: Timestamp) -> String {
    let state = if l.is_active_at(now) {
        format!("held until {}", l.expires_at)
    } else {
        format!("free since {}", l.expires_at)
    };
    format!("{}  {}  token {}  {state}", l.name, l.holder, l.token)
}

pub async fn lease(storage: &Storage, cmd: LeaseCmd, out: &Out) -> Result<ExitCode> {
    let logs = &storage.logs;
    match cmd {
        LeaseCmd::List { all, cursor, limit } => {
            let mut query = LeaseQuery::default();
            if all {
                query = query.with_expired();
            }
            let mut list = out.list()?;
            let mut left = limit;
            let mut pages = match cursor {
                Some(c) => Cursors::after_cursor(Cursor::from_string(c)),
                None => Cursors::default(),
            };
            while left > 0
                && let Some(cursor) = pages.next()
            {
                let page = logs
                    .list_leases(
                        query
                            .clone()
                            .with_limit(left.min(runstore::MAX_PAGE_LIMIT))
                            .with_cursor(cursor),
                    )
                    .await?;
                left -= page.items.len().min(left);
                // This machine's clock, for display only: the store judged
                // which leases are held.
                let now = Timestamp::now();
                for l in &page.items {
                    list.item(l, || lease_line(l, now))?;
                }
                if left == 0
                    && let Some(next) = &page.next
                {
                    eprintln!("more leases: --cursor {}", next.as_str());
                }
                pages.after(page.next);
            }
            list.finish(if all { "no leases" } else { "no lease is held" })?;
        }
        LeaseCmd::Acquire(a) => {
            let lease = logs
                .acquire_lease(LeaseRequest::new(a.name, a.holder, a.ttl.as_std()))
                .await?;
            out.result(&lease, || lease_line(&lease, Timestamp::now()))?;
        }
        LeaseCmd::Release { name, token } => {
            logs.release_lease(&name, token).await?;
            out.result(&json!({"released": name, "token": token}), || {
                format!("released {name} (token {token})")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delivery(storage: &Storage, cmd: DeliveryCmd, out: &Out) -> Result<ExitCode> {
    match cmd {
        DeliveryCmd::Record { id } => {
            let w = storage.logs.record_delivery(&id).await?;
            let value = json!({"delivery": w.record, "new": w.inserted});
            out.result(&value, || {
                if w.inserted {
                    format!("{id}: new")
                } else {
                    format!("{id}: seen before, at {}", w.record.recorded_at)
                }
            })?;
        }
        DeliveryCmd::Prune { older_than } => {
            let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX / 2);
            let before = Timestamp::now().saturating_add_micros(-secs.saturating_mul(1_000_000));
            let n = storage.logs.prune_deliveries(before).await?;
            out.result(&json!({"pruned": n, "recorded_before": before}), || {
                format!("forgot {n} delivery ids recorded before {before}")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
