//! Retention policies (docs/DESIGN.md section 8): which finished runs to
//! keep and which to prune, decided in one pure function,
//! [`RetentionPolicy::decide`], that every prune calls.
//!
//! ```
//! use runstore_core::retention::{RetentionPolicy, RetentionDuration};
//! let policy: RetentionPolicy = serde_json::from_value(serde_json::json!({
//!     "artifacts": "delete",
//!     "rules": [
//!         {"outcome": "failed", "max_age": "90d"},
//!         {"outcome": "any", "max_age": "30d", "keep_last": 100}
//!     ]
//! })).unwrap();
//! assert_eq!(policy.rules.len(), 2);
//! assert_eq!("12h".parse::<RetentionDuration>().unwrap().as_secs(), 12 * 3600);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::WorkflowId;
use crate::logs::{Run, RunStatus};
use crate::timestamp::Timestamp;

/// A duration written `30d`, `12h`, `15m` or `90s` (a positive whole
/// number and one unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetentionDuration {
    secs: u64,
    unit: char,
}

impl RetentionDuration {
    /// The longest duration accepted: 100 years, so that `now - max_age`
    /// never leaves the range of [`Timestamp`].
    pub const MAX_SECS: u64 = 100 * 366 * 86_400;

    /// A duration of whole seconds (shown as `Ns`); InvalidInput when zero
    /// or longer than [`Self::MAX_SECS`].
    pub fn from_secs(secs: u64) -> Result<Self> {
        Self::checked(secs, 's', &format!("{secs}s"))
    }

    fn checked(secs: u64, unit: char, text: &str) -> Result<Self> {
        if secs == 0 || secs > Self::MAX_SECS {
            return Err(Error::invalid(
                "duration",
                format!("must be positive and at most 100 years, got {text}"),
            ));
        }
        Ok(RetentionDuration { secs, unit })
    }

    /// Length in seconds.
    pub fn as_secs(self) -> u64 {
        self.secs
    }

    /// As a std duration.
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }
}

impl FromStr for RetentionDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "duration",
                format!(
                    "expected a whole number and a unit d, h, m or s (e.g. 30d, 12h, 15m, 90s), got {}",
                    crate::text::shown(s)
                ),
            )
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let per = match unit {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let secs = n.checked_mul(per).ok_or_else(bad)?;
        Self::checked(secs, unit, s)
    }
}

impl fmt::Display for RetentionDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.unit {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            _ => 1,
        };
        write!(f, "{}{}", self.secs / per, self.unit)
    }
}

impl Serialize for RetentionDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetentionDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.to_string()))
    }
}

/// Which outcomes a rule selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeSelector {
    /// Succeeded runs.
    Succeeded,
    /// Failed runs.
    Failed,
    /// Cancelled runs.
    Cancelled,
    /// Any terminal outcome.
    #[default]
    Any,
}

impl OutcomeSelector {
    /// Whether a run of `status` is selected (never a pending or running one).
    pub fn selects(self, status: RunStatus) -> bool {
        match self {
            OutcomeSelector::Succeeded => status == RunStatus::Succeeded,
            OutcomeSelector::Failed => status == RunStatus::Failed,
            OutcomeSelector::Cancelled => status == RunStatus::Cancelled,
            OutcomeSelector::Any => status.is_terminal(),
        }
    }
}

/// One rule: selects runs by workflow (all when absent) and outcome, and
/// keeps them by age (`max_age`, from the run's end time) and/or by count
/// (`keep_last`: the N newest per workflow, newest by start as runs are
/// listed). A run either keeps is kept. A rule needs at least one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
#[non_exhaustive]
pub struct RetentionRule {
    /// Only this workflow; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowId>,
    /// Which outcomes.
    #[serde(default)]
    pub outcome: OutcomeSelector,
    /// Keep runs that ended less than this long ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<RetentionDuration>,
    /// Keep the N newest selected runs of each workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    workflow: Option<WorkflowId>,
    #[serde(default)]
    outcome: OutcomeSelector,
    #[serde(default)]
    max_age: Option<RetentionDuration>,
    #[serde(default)]
    keep_last: Option<u64>,
}

impl TryFrom<RawRule> for RetentionRule {
    type Error = String;
    fn try_from(r: RawRule) -> std::result::Result<Self, String> {
        let rule = RetentionRule {
            workflow: r.workflow,
            outcome: r.outcome,
            max_age: r.max_age,
            keep_last: r.keep_last,
        };
        rule.validate().map_err(|e| e.to_string())?;
        Ok(rule)
    }
}

impl RetentionRule {
    /// A rule of `outcome` over every workflow, keeping nothing yet (set
    /// `max_age` or `keep_last`).
    pub fn new(outcome: OutcomeSelector) -> Self {
        RetentionRule {
            workflow: None,
            outcome,
            max_age: None,
            keep_last: None,
        }
    }

    setters! {
        /// Only one workflow.
        with_workflow(id: WorkflowId) => workflow = Some(id);
        /// Keeps runs younger than `age`.
        with_max_age(age: RetentionDuration) => max_age = Some(age);
        /// Keeps the `n` newest per workflow.
        with_keep_last(n: u64) => keep_last = Some(n);
    }

    /// A rule must keep by age or count; without either it would prune
    /// everything it selects, which is never what was meant.
    pub fn validate(&self) -> Result<()> {
        if self.max_age.is_none() && self.keep_last.is_none() {
            return Err(Error::invalid(
                "rules",
                "a rule needs max_age, keep_last or both",
            ));
        }
        Ok(())
    }

    /// Whether the rule selects `run` (terminal, its outcome, its workflow).
    pub fn selects(&self, run: &Run) -> bool {
        self.outcome.selects(run.status)
            && self.workflow.as_ref().is_none_or(|w| *w == run.workflow_id)
    }

    /// Whether the rule keeps a run it selects, `rank` being the run's
    /// 0-based position among the runs this rule selects in its workflow,
    /// newest first.
    fn keeps(&self, run: &Run, rank: u64, now: Timestamp) -> bool {
        let young = self.max_age.is_some_and(|age| {
            let cutoff = now.saturating_add_micros(-((age.as_secs() as i64) * 1_000_000));
            run.ended_at.is_none_or(|end| end > cutoff)
        });
        let recent = self.keep_last.is_some_and(|n| rank < n);
        young || recent
    }
}

/// Whether a pruning deletes the artifacts of the runs it prunes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactRetention {
    /// Artifacts go with their run.
    #[default]
    Delete,
    /// Artifacts stay.
    Keep,
}

/// A retention policy: rules, and what happens to artifacts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Delete (default) or keep the artifacts of pruned runs.
    #[serde(default)]
    pub artifacts: ArtifactRetention,
    /// The rules; a run no rule selects is kept.
    #[serde(default)]
    pub rules: Vec<RetentionRule>,
    /// Delivery ids (docs/DESIGN.md section 11) recorded longer ago than
    /// this are forgotten; kept forever when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<RetentionDuration>,
}

/// What [`RetentionPolicy::decide`] says of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Kept.
    Keep,
    /// Pruned; every selecting rule lets it go, and the first of them (its
    /// index in [`RetentionPolicy::rules`]) is the one reported.
    Prune {
        /// Index of the reporting rule.
        rule: usize,
    },
}

impl RetentionPolicy {
    /// A policy of `rules`, deleting artifacts.
    pub fn new(rules: Vec<RetentionRule>) -> Self {
        RetentionPolicy {
            artifacts: ArtifactRetention::Delete,
            rules,
            deliveries: None,
        }
    }

    setters! {
        /// Sets what happens to artifacts.
        with_artifacts(artifacts: ArtifactRetention) => artifacts = artifacts;
        /// Forgets delivery ids older than `age`.
        with_delivery_age(age: RetentionDuration) => deliveries = Some(age);
    }

    /// Checks every rule.
    pub fn validate(&self) -> Result<()> {
        self.rules.iter().try_for_each(RetentionRule::validate)
    }

    /// The one decision of retention. `ranks[i]` is the run's 0-based
    /// position among the runs rule `i` selects in the run's workflow,
    /// newest first (ignored for rules that do not select it). Pending and
    /// running runs are always kept; a run no rule selects is kept; a run
    /// is pruned only if every rule that selects it lets it go (the most
    /// conservative rule wins).
    pub fn decide(&self, run: &Run, ranks: &[u64], now: Timestamp) -> Decision {
        if !run.status.is_terminal() {
            return Decision::Keep;
        }
        let mut first = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.selects(run) {
                continue;
            }
            let rank = ranks.get(i).copied().unwrap_or(0);
            if rule.keeps(run, rank, now) {
                return Decision::Keep;
            }
            first.get_or_insert(i);
        }
        match first {
            Some(rule) => Decision::Prune { rule },
            None => Decision::Keep,
        }
    }

    /// The ranks for [`Self::decide`] while walking runs newest first:
    /// a counter per rule and workflow. Memory grows with rules times
    /// workflows, not with runs.
    pub fn ranker(&self) -> Ranker<'_> {
        Ranker {
            policy: self,
            seen: std::collections::HashMap::new(),
        }
    }
}

/// Counts, per rule and workflow, the selected runs seen so far in a walk
/// newest first (by `(started_at, id)` descending, the order of
/// [`crate::LogRepository::query_runs`]).
#[derive(Debug)]
pub struct Ranker<'a> {
    policy: &'a RetentionPolicy,
    seen: std::collections::HashMap<(usize, WorkflowId), u64>,
}

impl Ranker<'_> {
    /// The decision for the next run of the walk (runs must come newest
    /// first); counts it for later runs.
    pub fn next(&mut self, run: &Run, now: Timestamp) -> Decision {
        let mut ranks = vec![0; self.policy.rules.len()];
        for (i, rule) in self.policy.rules.iter().enumerate() {
            if rule.selects(run) {
                let n = self.seen.entry((i, run.workflow_id.clone())).or_insert(0);
                ranks[i] = *n;
                *n += 1;
            }
        }
        self.policy.decide(run, &ranks, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{RunId, Version};

    fn d(s: &str) -> RetentionDuration {
        s.parse().unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(d("30d").as_secs(), 30 * 86_400);
        assert_eq!(d("12h").as_secs(), 12 * 3_600);
        assert_eq!(d("15m").as_secs(), 900);
        assert_eq!(d("90s").as_secs(), 90);
        assert_eq!(d("90s").to_string(), "90s");
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1w",
            "1.5h",
            " 1h",
            "99999999999999999999d",
            "40000d",
        ] {
            let e = bad.parse::<RetentionDuration>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    fn finished(id: &str, status: RunStatus, start: i64, end: i64) -> Run {
        let mut r = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
        r.id = RunId::new(id).unwrap();
        r.status = status;
        r.started_at = Timestamp::from_micros(start * 1_000_000).unwrap();
        r.ended_at = Some(Timestamp::from_micros(end * 1_000_000).unwrap());
        r
    }

    #[test]
    fn most_conservative_rule_wins_and_unfinished_runs_stay() {
        let policy = RetentionPolicy::new(vec![
            RetentionRule::new(OutcomeSelector::Failed).with_max_age(d("90s")),
            RetentionRule::new(OutcomeSelector::Any).with_max_age(d("30s")),
        ]);
        let now = Timestamp::from_micros(1_000 * 1_000_000).unwrap();
        // Failed 60 s ago: the failed rule keeps it although "any" would not.
        let f = finished("f", RunStatus::Failed, 900, 940);
        assert_eq!(policy.decide(&f, &[0, 0], now), Decision::Keep);
        // Succeeded 60 s ago: only "any" selects it, and lets it go.
        let s = finished("s", RunStatus::Succeeded, 900, 940);
        assert_eq!(policy.decide(&s, &[0, 0], now), Decision::Prune { rule: 1 });
        let mut running = s.clone();
        running.status = RunStatus::Running;
        running.ended_at = None;
        assert_eq!(policy.decide(&running, &[0, 0], now), Decision::Keep);
        assert_eq!(
            RetentionPolicy::default().decide(&s, &[], now),
            Decision::Keep
        );
    }

    #[test]
    fn keep_last_counts_per_rule_and_workflow() {
        let policy = RetentionPolicy::new(vec![
            RetentionRule::new(OutcomeSelector::Any).with_keep_last(2),
        ]);
        let now = Timestamp::from_micros(10_000 * 1_000_000).unwrap();
        let mut ranker = policy.ranker();
        let got: Vec<Decision> = (0..4)
            .rev()
            .map(|i| {
                ranker.next(
                    &finished(&format!("r{i}"), RunStatus::Succeeded, i, i + 1),
                    now,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                Decision::Keep,
                Decision::Keep,
                Decision::Prune { rule: 0 },
                Decision::Prune { rule: 0 }
            ]
        );
    }

    #[test]
    fn rule_without_keep_is_refused() {
        let e = serde_json::from_value::<RetentionPolicy>(serde_json::json!({
            "rules": [{"outcome": "failed"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("max_age, keep_last"), "{e}");
        let e = serde_json::from_value::<RetentionPolicy>(serde_json::json!({
            "rules": [{"outcome": "failed", "max_age": "3w"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("30d"), "{e}");
    }
}
