//! Coordination between workers that share one store (docs/DESIGN.md
//! section 11): leases with fencing tokens, external run keys and a
//! delivery ledger. They belong to the logs concern, so they are methods of
//! [`crate::LogRepository`]; the rules are decided here, once, and every
//! backend calls these functions under its lock or transaction.
//!
//! ```
//! use std::time::Duration;
//! use runstore_core::{LeaseRequest, Timestamp, decide_lease_acquire};
//! let now = Timestamp::from_micros(1_000_000).unwrap();
//! let req = LeaseRequest::new("nightly-report", "worker-1", Duration::from_secs(30));
//! let first = decide_lease_acquire(None, &req, now).unwrap();
//! assert_eq!(first.token, 1);
//! // Another holder is refused while the lease is active …
//! let other = LeaseRequest::new("nightly-report", "worker-2", Duration::from_secs(30));
//! assert!(decide_lease_acquire(Some(&first), &other, now).is_err());
//! // … and gets a greater token once it expired.
//! let later = first.expires_at.saturating_add_micros(1);
//! assert_eq!(decide_lease_acquire(Some(&first), &other, later).unwrap().token, 2);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::WorkflowId;
use crate::logs::Run;
use crate::page::Cursor;
use crate::text::{shown, validate_label};
use crate::timestamp::Timestamp;
use crate::written::Written;

/// The longest time to live a lease may ask for.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// A request to acquire (or, by its current holder, renew) a named lease.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRequest {
    /// The lease, e.g. `scheduler` or `run:0190…`. A label.
    pub name: String,
    /// Who asks, unique per worker (e.g. host and process id). A label.
    pub holder: String,
    /// How long the lease lasts from now; 1 ms to [`MAX_LEASE_TTL`].
    pub ttl: Duration,
}

impl LeaseRequest {
    /// `holder` asks for `name` for `ttl`.
    pub fn new(name: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        LeaseRequest {
            name: name.into(),
            holder: holder.into(),
            ttl,
        }
    }

    /// Name and holder are labels; the time to live is 1 ms to a year.
    pub fn validate(&self) -> Result<()> {
        validate_label("lease name", &self.name)?;
        validate_label("holder", &self.holder)?;
        if self.ttl < Duration::from_millis(1) || self.ttl > MAX_LEASE_TTL {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "must be between 1 ms and 366 days; got {} ms",
                    self.ttl.as_millis()
                ),
            ));
        }
        Ok(())
    }

    fn ttl_micros(&self) -> i64 {
        // At most 366 days after validate: fits easily.
        i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A lease as stored: its last holder and token. It is held while
/// `now < expires_at` by the store's clock; a released lease keeps its
/// token (so the next one is greater) with `expires_at` set to the release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease.
    pub name: String,
    /// Its last holder.
    pub holder: String,
    /// The fencing token of the last acquisition: strictly greater than any
    /// earlier token of this name. Send it with writes the lease guards, so
    /// a stale holder's writes can be refused.
    pub token: u64,
    /// When the holder acquired it (renewals keep it).
    pub acquired_at: Timestamp,
    /// When it stops being held unless renewed.
    pub expires_at: Timestamp,
}

impl Lease {
    /// Whether it is held at `now`.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// The one rule of an acquisition, given the stored lease of that name (if
/// any) and the store's clock: an active lease of the same holder is renewed
/// (same token, new expiry); an active lease of another holder is
/// [`Error::Conflict`] naming holder and expiry; a free one (never taken,
/// expired or released) is taken with the next token.
pub fn decide_lease_acquire(
    stored: Option<&Lease>,
    request: &LeaseRequest,
    now: Timestamp,
) -> Result<Lease> {
    request.validate()?;
    let expires_at = now.saturating_add_micros(request.ttl_micros());
    match stored {
        Some(l) if l.is_active_at(now) && l.holder == request.holder => Ok(Lease {
            expires_at,
            ..l.clone()
        }),
        Some(l) if l.is_active_at(now) => Err(Error::conflict(format!(
            "lease {} is held by {} until {} (token {})",
            shown(&l.name),
            shown(&l.holder),
            l.expires_at,
            l.token
        ))),
        _ => Ok(Lease {
            name: request.name.clone(),
            holder: request.holder.clone(),
            token: stored.map_or(0, |l| l.token) + 1,
            acquired_at: now,
            expires_at,
        }),
    }
}

/// The one rule of a release: only the current token of an active lease
/// releases it ([`Error::Conflict`] otherwise, [`Error::NotFound`] for a
/// name never acquired). Returns the lease as it must be stored: same token,
/// expiring now.
pub fn decide_lease_release(
    stored: Option<&Lease>,
    name: &str,
    token: u64,
    now: Timestamp,
) -> Result<Lease> {
    validate_label("lease name", name)?;
    let Some(l) = stored else {
        return Err(Error::not_found(format!("lease {}", shown(name))));
    };
    if l.token != token {
        return Err(Error::conflict(format!(
            "token {token} no longer holds lease {}: {} took it with token {}",
            shown(name),
            shown(&l.holder),
            l.token
        )));
    }
    if !l.is_active_at(now) {
        return Err(Error::conflict(format!(
            "lease {} with token {token} expired at {}; it was no longer held",
            shown(name),
            l.expires_at
        )));
    }
    Ok(Lease {
        expires_at: now,
        ..l.clone()
    })
}

/// A page of leases, ordered by name.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LeaseQuery {
    /// Also expired and released leases (their last holder and token).
    pub include_expired: bool,
    /// Page size, 1 to [`crate::MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
}

paged_query!(LeaseQuery {
    include_expired: false
});

impl LeaseQuery {
    /// Also expired and released leases.
    pub fn with_expired(mut self) -> Self {
        self.include_expired = true;
        self
    }

    /// Whether `lease` is listed at `now`.
    pub fn matches(&self, lease: &Lease, now: Timestamp) -> bool {
        self.include_expired || lease.is_active_at(now)
    }
}

/// The key in a [`LeaseQuery`] cursor: the last lease's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseCursor {
    /// Last name returned.
    pub name: String,
}

impl LeaseCursor {
    /// The cursor key of a lease.
    pub fn of(lease: &Lease) -> Self {
        LeaseCursor {
            name: lease.name.clone(),
        }
    }
}

/// A recorded delivery id (a webhook or message id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The id. A label.
    pub id: String,
    /// When it was first recorded, by the store's clock.
    pub recorded_at: Timestamp,
}

/// Checks a delivery id (a label).
pub fn validate_delivery_id(id: &str) -> Result<()> {
    validate_label("delivery id", id)
}

/// Checks an external run key (a label).
pub fn validate_external_key(key: &str) -> Result<()> {
    validate_label("external_key", key)
}

/// The one rule of `create_run` (docs/DESIGN.md sections 4 and 11), given
/// the run stored under the new run's id and the run stored under its
/// workflow and external key: the same id with the same content is a no-op,
/// with other content [`Error::Conflict`]; an external key already taken by
/// another run returns that run (an idempotent create); otherwise insert.
pub fn decide_run_create(
    run: Run,
    by_id: Option<&Run>,
    by_key: Option<&Run>,
) -> Result<Written<Run>> {
    if let Some(stored) = by_id {
        return if stored.same_content(&run) {
            Ok(Written::unchanged(stored.clone()))
        } else {
            Err(crate::logs::run_conflict(&run.id))
        };
    }
    match by_key {
        Some(stored) => Ok(Written::unchanged(stored.clone())),
        None => Ok(Written::inserted(run)),
    }
}

/// The conflict of an import whose run carries an external key that
/// another run of its workflow holds.
pub fn external_key_conflict(run: &Run, holder: &crate::id::RunId) -> Error {
    Error::conflict(format!(
        "run {}: external key {} of workflow {} belongs to run {holder}",
        run.id,
        shown(run.external_key.as_deref().unwrap_or_default()),
        run.workflow_id
    ))
}

/// Checks that no two runs of an import batch share a workflow and an
/// external key ([`Error::InvalidInput`]).
pub fn validate_batch_keys<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for run in runs {
        if let Some(pair) = external_key_of(run)
            && let Some(first) = seen.insert(pair, &run.id)
        {
            return Err(Error::invalid(
                "runs",
                format!(
                    "runs {first} and {} of one import batch share external key {} of workflow {}",
                    run.id,
                    shown(pair.1),
                    pair.0
                ),
            ));
        }
    }
    Ok(())
}

/// The error of an external key no run of `workflow` holds.
pub fn key_not_found(workflow: &WorkflowId, key: &str) -> Error {
    Error::not_found(format!(
        "run with external key {} of workflow {workflow}",
        shown(key)
    ))
}

/// The `(workflow, key)` pair of a run with an external key.
pub fn external_key_of(run: &Run) -> Option<(&WorkflowId, &str)> {
    run.external_key.as_deref().map(|k| (&run.workflow_id, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000).unwrap()
    }

    #[test]
    fn renew_keeps_token_and_release_needs_it() {
        let a = LeaseRequest::new("l", "a", Duration::from_secs(10));
        let first = decide_lease_acquire(None, &a, at(0)).unwrap();
        let renewed = decide_lease_acquire(Some(&first), &a, at(5)).unwrap();
        assert_eq!(renewed.token, first.token);
        assert_eq!(renewed.expires_at, at(15));
        assert_eq!(renewed.acquired_at, at(0));
        assert!(decide_lease_release(Some(&renewed), "l", 2, at(6)).is_err());
        let released = decide_lease_release(Some(&renewed), "l", 1, at(6)).unwrap();
        assert!(!released.is_active_at(at(6)));
        // After release, even the same holder gets a new token.
        assert_eq!(
            decide_lease_acquire(Some(&released), &a, at(6))
                .unwrap()
                .token,
            2
        );
        // An expired lease cannot be released.
        assert!(decide_lease_release(Some(&renewed), "l", 1, at(15)).is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert!(
            LeaseRequest::new("l", "a", Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            LeaseRequest::new("l", "a", MAX_LEASE_TTL + Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(
            LeaseRequest::new("l", "", Duration::from_secs(1))
                .validate()
                .is_err()
        );
    }
}
