//! The hostile-input corpus, fed to every backend (docs/DESIGN.md section 2).
//!
//! [`hostile_strings`] is public so that backends can feed the same corpus
//! to their own tests (file names, SQL, CLI output). Each rule decides for
//! every string, with predicates written here from the text of docs/DESIGN.md
//! section 2 and core/README.md (not with core's validators), whether it is
//! valid for a field, and checks that the store accepts exactly the valid
//! ones, keeps them verbatim, and refuses the others with `InvalidInput`
//! naming the field, storing nothing.
//!
//! The rules are tables of cases: a field, the predicate that says which
//! strings are valid for it, and the call that puts a string there. Two
//! loops run them: [`refuse_each`] (every input refused, naming the field)
//! and [`keep_each`] (every valid string accepted and read back verbatim).

use std::future::Future;
use std::pin::Pin;

use runstore_core::{Error, ErrorKind, StoreSet};

use crate::outcome::RuleResult;
use crate::{ensure, ensure_err};

mod cursors;
mod deep_json;
mod identifiers;
mod text;
mod verbatim;

pub use cursors::hostile_cursors_and_limits_rejected;
pub use deep_json::hostile_deep_json_refused_on_every_write;
pub use identifiers::hostile_identifiers_rejected_naming_field;
pub use text::hostile_text_rejected_by_backend;
pub use verbatim::hostile_but_valid_values_stored_verbatim;

/// Strings an attacker, a buggy client or an unlucky user may send: path
/// traversal, absolute and Windows paths, NUL and control characters, 10 KB
/// strings, SQL and shell fragments, percent-encoding, Unicode look-alikes
/// (fullwidth dots and letters, division slash), invisible and
/// direction-changing characters, reserved device names. Every string is
/// distinct. Some are valid for some fields (e.g. SQL fragments are valid
/// event kinds and artifact paths; `CON` is a valid identifier).
pub fn hostile_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        // Empty, dots and traversal.
        "",
        ".",
        "..",
        "...",
        "./x",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "x/",
        "/etc/passwd",
        "C:\\x",
        "C:x",
        "\\\\server\\share",
        "a\\b",
        // NUL and control characters.
        "\0",
        "a\0b",
        "nul\0",
        "\u{1}",
        "\u{7}bell",
        "\u{1b}[31mred",
        "line\nbreak",
        "\n",
        "cr\rlf",
        "tab\tx",
        "\u{7f}del",
        "\u{85}next-line",
        // SQL, shell and template fragments.
        "'; DROP TABLE runs; --",
        "\" OR 1=1 --",
        "' OR ''='",
        "%' OR '1'='1",
        "1; SELECT pg_sleep(10)",
        "$$; DROP SCHEMA public CASCADE; $$",
        "\\x00",
        "$(rm -rf /)",
        "`id`",
        "${HOME}",
        "{{7*7}}",
        "<script>alert(1)</script>",
        "*",
        "?",
        // Percent-encoding.
        "%2e%2e",
        "%2e%2e/x",
        "..%2f..%2fetc",
        "%00",
        // Look-alike and invisible Unicode.
        "．．",
        "．．/x",
        "\u{2215}",
        "a\u{2215}..\u{2215}b",
        "\u{ff0f}etc\u{ff0f}passwd",
        "ｒｅｐｏｒｔ/．．/x",
        "e\u{301}",
        "é",
        "\u{feff}bom",
        "\u{200b}",
        "\u{202e}txt.exe",
        "😀",
        " leading space",
        "trailing space ",
        // Valid identifiers that are awkward elsewhere.
        "CON",
        "nul",
        "aux.txt",
        "-rf",
        "--help",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    out.push("x".repeat(10 * 1024));
    out.push("é".repeat(5 * 1024));
    out.push(format!("{}/{}", "a".repeat(300), "b"));
    out
}

/// docs/DESIGN.md section 2: "1 to 128 bytes of `[A-Za-z0-9._-]`, not starting
/// with `.`".
fn id_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// docs/DESIGN.md section 2: "relative, `/`-separated, each segment 1 to 255
/// bytes, no empty, `.` or `..` segment, no `\`, no NUL or control
/// character, at most 1024 bytes in all".
fn path_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && !s.starts_with('/')
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
        && s.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.len() <= 255)
}

/// core/README.md: labels (kinds, triggers, content types, names, keys)
/// refuse control characters; core's `MAX_LABEL_LEN` is 256 bytes.
fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// Free text (descriptions): no control character but `\n`, `\r`, `\t`.
fn text_ok(s: &str) -> bool {
    s.len() <= 64 * 1024
        && !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// "no string anywhere may hold NUL" (core/README.md).
fn json_ok(s: &str) -> bool {
    !s.contains('\0')
}

fn shown(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut:?}… ({} bytes)", s.len())
    } else {
        format!("{cut:?}")
    }
}

/// The future of one store call a case makes.
type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a store call answered, its value kept as text for the failure
/// message of a call that should have been refused.
struct Answered(String);

impl std::fmt::Debug for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer of a store call, whatever it returns.
fn answer<T: std::fmt::Debug>(result: runstore_core::Result<T>) -> Result<Answered, Error> {
    result.map(|v| Answered(format!("{v:?}")))
}

/// One call a rule makes with a hostile input of type `T` that the store
/// must refuse: the field the input goes into, how a failure describes the
/// call (`{}` stands for the input as shown), and the call itself, given
/// the input's index (for ids that must not collide) and the input.
struct Refused<T: 'static> {
    field: &'static str,
    what: &'static str,
    call: for<'a> fn(&'a StoreSet, usize, T) -> Fut<'a, Result<Answered, Error>>,
}

/// Every case with every input, input by input: each call must be
/// `InvalidInput` naming the case's field. `show` describes an input in
/// failure messages.
async fn refuse_each<T: Clone + 'static>(
    st: &StoreSet,
    cases: &[Refused<T>],
    inputs: &[T],
    show: fn(&T) -> String,
) -> RuleResult {
    for (i, input) in inputs.iter().enumerate() {
        let shown = show(input);
        for case in cases {
            let result = (case.call)(st, i, input.clone()).await;
            check_invalid(result, case.field, &case.what.replacen("{}", &shown, 1))?;
        }
    }
    Ok(())
}

/// One pass a rule makes over the valid strings of the corpus: which are
/// valid for it, and the call that writes one (given its index among the
/// valid ones) and checks it reads back verbatim.
struct Kept {
    valid: fn(&str) -> bool,
    check: for<'a> fn(&'a StoreSet, usize, &'a str) -> Fut<'a, RuleResult>,
}

/// Every pass over `corpus`, in order, each over the strings valid for it.
async fn keep_each(st: &StoreSet, passes: &[Kept], corpus: &[String]) -> RuleResult {
    for pass in passes {
        let valid = corpus.iter().filter(|s| (pass.valid)(s));
        for (i, s) in valid.enumerate() {
            (pass.check)(st, i, s).await?;
        }
    }
    Ok(())
}

/// Fails unless `result` is `InvalidInput` whose message names `field`.
fn check_invalid<T: std::fmt::Debug>(
    result: runstore_core::Result<T>,
    field: &str,
    what: &str,
) -> RuleResult {
    let err = ensure_err!(result, ErrorKind::InvalidInput, "{what}");
    ensure!(
        err.to_string().contains(field),
        "{what}: the InvalidInput error must name the field `{field}`, got: {err}"
    );
    Ok(())
}
