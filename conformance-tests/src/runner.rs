//! Running rules: one, all, one per `#[test]`, or one per trial of a test
//! binary of its own ([`run_as_test_binary`], what
//! [`crate::conformance_main!`] expands to).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

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

/// The runtime one rule runs on: multi-threaded, so the concurrency rules
/// really run their tasks at once.
fn rule_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime for the conformance suite")
}

/// Runs one rule on a new multi-threaded runtime and panics if it fails;
/// prints, and passes, if it is skipped. The body of each test that
/// [`crate::conformance_tests!`] generates: the default test harness has no
/// way to mark a test ignored once it runs, so there a skipped rule shows as
/// `ok`. [`crate::conformance_main!`] reports it as `ignored` instead.
pub fn run_rule_blocking(factory: impl StoreFactory, name: &str) {
    let rt = rule_runtime();
    let backend = factory.name();
    match rt.block_on(run_rule(&factory, name)) {
        Outcome::Passed => {}
        Outcome::Skipped(c) => {
            eprintln!("SKIPPED {name} on {backend}: the backend lacks capability {c}")
        }
        Outcome::Failed(m) => panic!("{backend} breaks rule {name}:\n{m}"),
    }
}

/// Why the suite cannot run on a backend here, e.g. no database server is
/// reachable: every rule is then reported as ignored with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a test harness reports for a rule's `outcome` on `backend`: a pass
/// passes, a rule skipped for a missing capability is ignored with the
/// reason, a failure fails with the rule's message.
pub fn trial_result(backend: &str, name: &str, outcome: Outcome) -> Result<Completion, Failed> {
    match outcome {
        Outcome::Passed => Ok(Completion::Completed),
        Outcome::Skipped(c) => Ok(Completion::ignored_with(format!(
            "{backend} lacks capability {c}"
        ))),
        Outcome::Failed(m) => Err(Failed::from(format!("{backend} breaks rule {name}:\n{m}"))),
    }
}

/// One libtest-mimic trial per rule, named after the rule (so a name given
/// on the command line filters as with `#[test]` functions). Each runs its
/// rule on a fresh runtime with `factory`; if `factory` is
/// [`Unavailable`], each is ignored with its reason.
pub fn trials(factory: Result<Arc<dyn StoreFactory>, Unavailable>) -> Vec<Trial> {
    named_trials(None, factory)
}

/// [`trials`] named `group::rule`, for one binary that runs the suite on
/// several backends (e.g. `file::run_query_filters`).
pub fn trials_in(group: &str, factory: Result<Arc<dyn StoreFactory>, Unavailable>) -> Vec<Trial> {
    named_trials(Some(group), factory)
}

fn trial_name(group: Option<&str>, rule: &str) -> String {
    match group {
        Some(g) => format!("{g}::{rule}"),
        None => rule.to_string(),
    }
}

fn named_trials(
    group: Option<&str>,
    factory: Result<Arc<dyn StoreFactory>, Unavailable>,
) -> Vec<Trial> {
    all_rules()
        .iter()
        .map(|rule| {
            let factory = factory.clone();
            let name = rule.name;
            Trial::ignorable_test(trial_name(group, name), move || match factory {
                Ok(f) => {
                    let outcome = rule_runtime().block_on(run_rule(f.as_ref(), name));
                    trial_result(&f.name(), name, outcome)
                }
                Err(why) => Ok(Completion::ignored_with(why)),
            })
        })
        .collect()
}

/// A conformance test binary (`harness = false`): the usual test arguments
/// (a name filter, `--list`, `--test-threads`, …) and the trials of one or
/// more backends, run by libtest-mimic. [`crate::conformance_main!`] builds
/// one for a single backend; a binary testing several adds each with
/// [`TestBinary::suite_in`].
pub struct TestBinary {
    args: Arguments,
    trials: Vec<Trial>,
}

impl TestBinary {
    /// A binary with the arguments it was started with, and no trials yet.
    pub fn from_args() -> Self {
        Self::with_args(Arguments::from_args())
    }

    /// A binary with the given arguments, and no trials yet.
    pub fn with_args(args: Arguments) -> Self {
        TestBinary {
            args,
            trials: Vec::new(),
        }
    }

    /// Adds every rule on the backend of `factory`, as trials named after
    /// the rules (see [`trials`]).
    pub fn suite<F: StoreFactory>(self, factory: impl FnOnce() -> Result<F, Unavailable>) -> Self {
        self.add(None, factory)
    }

    /// Adds every rule on the backend of `factory`, as trials named
    /// `group::rule` (see [`trials_in`]).
    pub fn suite_in<F: StoreFactory>(
        self,
        group: &str,
        factory: impl FnOnce() -> Result<F, Unavailable>,
    ) -> Self {
        self.add(Some(group), factory)
    }

    /// `factory` is called only if one of the group's trials will run, so
    /// `--list` or a filter naming other tests starts no server for it.
    fn add<F: StoreFactory>(
        mut self,
        group: Option<&str>,
        factory: impl FnOnce() -> Result<F, Unavailable>,
    ) -> Self {
        let runs = !self.args.list
            && all_rules().iter().any(|rule| {
                let probe = Trial::test(trial_name(group, rule.name), || Ok(()));
                !self.args.is_filtered_out(&probe)
            });
        let factory = if runs {
            factory().map(|f| Arc::new(f) as Arc<dyn StoreFactory>)
        } else {
            Err(Unavailable("not run".into()))
        };
        self.trials.extend(named_trials(group, factory));
        self
    }

    /// Runs the trials and exits with the harness's status.
    pub fn run(self) -> ! {
        libtest_mimic::run(&self.args, self.trials).exit()
    }
}

/// The `main` of a conformance test binary for one backend, what
/// [`crate::conformance_main!`] expands to: every rule as a trial of
/// [`trials`], run with the binary's arguments.
///
/// `factory` is called once, and not at all when no rule will run (for
/// `--list`), so listing tests starts no server. An [`Unavailable`] from it
/// reports every rule ignored; a factory that must not be skipped (e.g. a
/// CI variable demanding a server) panics instead, which fails the binary.
pub fn run_as_test_binary<F: StoreFactory>(factory: impl FnOnce() -> Result<F, Unavailable>) -> ! {
    TestBinary::from_args().suite(factory).run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Capability;

    #[test]
    fn outcomes_become_trial_results() {
        assert!(matches!(
            trial_result("mem", "r", Outcome::Passed),
            Ok(Completion::Completed)
        ));
        match trial_result("mem", "r", Outcome::Skipped(Capability::MeasuredMemory)) {
            Ok(Completion::Ignored { reason }) => {
                assert_eq!(
                    reason.as_deref(),
                    Some("mem lacks capability MeasuredMemory")
                )
            }
            _ => panic!("a skipped rule must be ignored"),
        }
        match trial_result("mem", "r", Outcome::Failed("left: 1".into())) {
            Err(f) => assert_eq!(f.message(), Some("mem breaks rule r:\nleft: 1")),
            Ok(_) => panic!("a failed rule must fail"),
        }
    }

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
