//! Running rules: one, all, or one per `#[test]`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// How long one rule may take before it counts as failed (a hung backend).
pub const RULE_TIMEOUT: Duration = Duration::from_secs(300);

/// The future a rule returns.
pub type RuleFuture<'a> = Pin<Box<dyn Future<Output = RuleResult> + Send + 'a>>;

/// One rule of the suite.
#[derive(Clone, Copy)]
pub struct Rule {
    /// The function's name, e.g. `run_status_moves_forward_only`.
    pub name: &'static str,
    /// The module, e.g. `runs`.
    pub concern: &'static str,
    /// Runs it.
    pub run: for<'a> fn(&'a dyn StoreFactory) -> RuleFuture<'a>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.concern, self.name)
    }
}

/// Every rule.
pub fn all_rules() -> &'static [Rule] {
    crate::ALL_RULES
}

/// What became of one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The backend keeps the rule.
    Passed,
    /// The backend lacks the capability the rule needs.
    Skipped(crate::Capability),
    /// The backend breaks the rule.
    Failed(String),
}

/// Runs one rule by name.
pub async fn run_rule(factory: &dyn StoreFactory, name: &str) -> Outcome {
    let Some(rule) = all_rules().iter().find(|r| r.name == name) else {
        return Outcome::Failed(format!("no rule named {name}"));
    };
    match tokio::time::timeout(RULE_TIMEOUT, (rule.run)(factory)).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(RuleError::Skipped(c))) => Outcome::Skipped(c),
        Ok(Err(RuleError::Failed(m))) => Outcome::Failed(bounded(m)),
        Err(_) => Outcome::Failed(format!("did not finish within {RULE_TIMEOUT:?}")),
    }
}

/// Most characters of a failure message kept in full.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// A failure message cut to [`MAX_MESSAGE_CHARS`] (a rule comparing a
/// 10,000-byte artifact must not print it as 40 KB of decimals), saying
/// how much was left out.
pub fn bounded(message: String) -> String {
    let total = message.chars().count();
    if total <= MAX_MESSAGE_CHARS {
        return message;
    }
    let head: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!(
        "{head}… ({} more characters left out)",
        total - MAX_MESSAGE_CHARS
    )
}

/// The outcome of every rule for one backend.
#[derive(Debug, Clone)]
pub struct Report {
    /// The factory's name.
    pub backend: String,
    /// `(rule name, outcome)` in suite order.
    pub outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Names of the failed rules.
    pub fn failed(&self) -> Vec<&'static str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Names of the skipped rules.
    pub fn skipped(&self) -> Vec<&'static str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Skipped(_)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Panics with every failure if any rule failed.
    pub fn assert_passed(&self) {
        let failures: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|(n, o)| match o {
                Outcome::Failed(m) => Some(format!("{n}: {m}")),
                _ => None,
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} broke {} rule(s):\n{}",
            self.backend,
            failures.len(),
            failures.join("\n")
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passed = self
            .outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Passed)
            .count();
        writeln!(
            f,
            "conformance of {}: {passed} passed, {} failed, {} skipped",
            self.backend,
            self.failed().len(),
            self.skipped().len()
        )?;
        for (name, o) in &self.outcomes {
            match o {
                Outcome::Passed => {}
                Outcome::Skipped(c) => writeln!(f, "  skipped {name}: lacks {c}")?,
                Outcome::Failed(m) => writeln!(f, "  FAILED {name}: {m}")?,
            }
        }
        Ok(())
    }
}

/// Runs every rule, one after the other, each on a fresh store set.
pub async fn run_all(factory: &dyn StoreFactory) -> Report {
    let mut outcomes = Vec::new();
    for rule in all_rules() {
        outcomes.push((rule.name, run_rule(factory, rule.name).await));
    }
    Report {
        backend: factory.name(),
        outcomes,
    }
}

/// Runs one rule on a new multi-threaded runtime and panics if it fails;
/// prints, and passes, if it is skipped. The body of each test that
/// [`crate::conformance_tests!`] generates.
pub fn run_rule_blocking(factory: impl StoreFactory, name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime for the conformance suite");
    let backend = factory.name();
    match rt.block_on(run_rule(&factory, name)) {
        Outcome::Passed => {}
        Outcome::Skipped(c) => {
            eprintln!("SKIPPED {name} on {backend}: the backend lacks capability {c}")
        }
        Outcome::Failed(m) => panic!("{backend} breaks rule {name}:\n{m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_are_bounded() {
        let short = "left: 1\nright: 2".to_string();
        assert_eq!(bounded(short.clone()), short);
        let huge = "[1, 2, 3] ".repeat(3_000);
        let cut = bounded(huge.clone());
        assert!(
            cut.chars().count() < MAX_MESSAGE_CHARS + 60,
            "{}",
            cut.len()
        );
        assert!(cut.starts_with(&huge[..100]));
        assert!(cut.ends_with(&format!(
            "({} more characters left out)",
            30_000 - MAX_MESSAGE_CHARS
        )));
        // Cut on a character, never inside one.
        let wide = "é".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(bounded(wide).ends_with("(1 more characters left out)"));
    }
}
