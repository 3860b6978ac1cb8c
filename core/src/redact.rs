//! Secrets in connection strings: the one redactor every crate uses, so no
//! output, error, log or `Debug` shows a password, whatever form the
//! string takes.
//!
//! Forms handled: URLs (`postgres://user:pass@host/db`, with reserved
//! characters in the password left unencoded, `?password=` query
//! parameters) and libpq key/value strings (`host=h password=secret`, quoted
//! values with spaces, unquoted values running up to the next `key=`).
//! It errs on the side of hiding too much.
//!
//! ```
//! use runstore_core::redact::connection_string as redact;
//! assert_eq!(redact("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
//! assert_eq!(redact("postgres://u:S3cr/et@h/db"), "postgres://u:***@h/db");
//! assert_eq!(redact("host=h password='a b' dbname=d"), "host=h password=*** dbname=d");
//! assert_eq!(redact("./data"), "./data");
//! ```

/// Keys whose values are secrets, in URLs' query strings and key/value
/// strings.
const SECRET_KEYS: &[&str] = &["password", "sslpassword", "secret", "token"];

/// `s` with every password replaced by `***`.
pub fn connection_string(s: &str) -> String {
    match s.find("://") {
        Some(scheme_end) => redact_url(s, scheme_end),
        None => {
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for (start, end) in key_value_secret_spans(s) {
                out.push_str(&s[last..start]);
                out.push_str("***");
                last = end;
            }
            out.push_str(&s[last..]);
            out
        }
    }
}

/// The secrets `s` holds (passwords of its URL or key/value pairs), for
/// scrubbing them from messages that quote `s` in part, such as a
/// driver's parse error.
pub fn secrets(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        // The userinfo ends at the last `@`: a password may hold `@` or `/`
        // unencoded, which must not leak as a "host".
        if let Some(at) = rest.rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
            && !password.is_empty()
        {
            found.push(password.to_string());
        }
        if let Some(q) = rest.find('?') {
            for pair in rest[q + 1..].split('&') {
                if let Some((k, v)) = pair.split_once('=')
                    && is_secret_key(k)
                    && !v.is_empty()
                {
                    found.push(v.to_string());
                }
            }
        }
    } else {
        for (start, end) in key_value_secret_spans(s) {
            let value = &s[start..end];
            found.push(value.to_string());
            // A quoted value's inner text, as a parser would quote it back.
            if let Some(inner) = value.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
                found.push(inner.to_string());
            }
        }
    }
    // Longest first, so a secret holding another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// `message` with every one of `secrets` replaced by `***`.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Whether the userinfo of a URL holds a reserved character a parser would
/// take for the end of the password (`/`, `@`, `?`, `#`): the URL must be
/// percent-encoded. `None` for a URL without userinfo or another string.
pub fn unencoded_userinfo(s: &str) -> Option<char> {
    let rest = &s[s.find("://")? + 3..];
    let at = rest.rfind('@')?;
    rest[..at]
        .chars()
        .find(|c| matches!(c, '/' | '@' | '?' | '#'))
}

fn is_secret_key(k: &str) -> bool {
    SECRET_KEYS.iter().any(|s| k.trim().eq_ignore_ascii_case(s))
}

/// `scheme://user:***@rest?password=***`: the userinfo cut at the last
/// `@`, secret query parameters hidden.
fn redact_url(s: &str, scheme_end: usize) -> String {
    let rest_start = scheme_end + 3;
    let rest = &s[rest_start..];
    let (head, tail) = match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => (format!("{}{user}:***", &s[..rest_start]), &rest[at..]),
            None => (s[..rest_start + at].to_string(), &rest[at..]),
        },
        None => (s[..rest_start].to_string(), rest),
    };
    let tail = match tail.split_once('?') {
        Some((before, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{before}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{head}{tail}")
}

/// Where the values of secret keys are in a libpq key/value string: quoted
/// values up to their closing quote, unquoted ones up to the next `key=` (a
/// space inside an unquoted password must not let its rest through).
fn key_value_secret_spans(s: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        // A key: a word followed by `=` (spaces allowed around it).
        let Some(eq) = s[i..].find('=').map(|e| i + e) else {
            break;
        };
        let key_start = s[..eq]
            .trim_end()
            .rfind(char::is_whitespace)
            .map_or(0, |w| w + 1);
        let key = s[key_start..eq].trim();
        let mut v = eq + 1;
        while v < s.len() && bytes[v].is_ascii_whitespace() {
            v += 1;
        }
        let end = if bytes.get(v) == Some(&b'\'') {
            let mut j = v + 1;
            let mut escaped = false;
            while j < s.len() {
                let c = bytes[j];
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'\'' {
                    j += 1;
                    break;
                }
                j += 1;
            }
            j.min(s.len())
        } else {
            next_key_start(s, v).unwrap_or(s.len())
        };
        if is_secret_key(key) {
            let value_end = v + s[v..end].trim_end().len();
            if value_end > v {
                found.push((v, value_end));
            }
        }
        i = end.max(eq + 1);
    }
    found
}

/// Where the next `key=` starts after `from` (the whitespace before a word
/// followed by `=`), if any.
fn next_key_start(s: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(ws) = s[pos..].find(char::is_whitespace).map(|w| pos + w) {
        let word_start = s[ws..].find(|c: char| !c.is_whitespace()).map(|w| ws + w)?;
        let word_end = s[word_start..]
            .find(|c: char| c.is_whitespace() || c == '=')
            .map_or(s.len(), |w| word_start + w);
        let after = s[word_end..].trim_start();
        if word_end > word_start && after.starts_with('=') {
            return Some(ws);
        }
        pos = word_start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_redacted() {
        let cases = [
            ("postgres://u:pw1@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgresql://u:p%40w1@h", "postgresql://u:***@h"),
            ("postgres://u:S3cr/et@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss/w:rd@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=pw1&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            (
                "host=h user=u password=pw1 dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h password = 'p w1\\' x' dbname=d",
                "host=h password = *** dbname=d",
            ),
            (
                "host=h password=S3c ret dbname=d",
                "host=h password=*** dbname=d",
            ),
            ("host=h password=S3c ret", "host=h password=***"),
            ("./runstore-data", "./runstore-data"),
        ];
        for (url, want) in cases {
            let got = connection_string(url);
            assert_eq!(got, want, "{url}");
            for secret in ["pw1", "S3cr", "et@h", "ss/w", "p w1", "ret"] {
                if url.contains(secret) && !want.contains(secret) {
                    assert!(!got.contains(secret), "{url} -> {got}");
                }
            }
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let url = "postgres://u:S3cr/et@h/db";
        let msg = "failed to lookup address for host `S3cr/et@h`";
        let clean = scrub(msg, &secrets(url));
        assert!(!clean.contains("S3cr"), "{clean}");
        assert_eq!(unencoded_userinfo(url), Some('/'));
        assert_eq!(unencoded_userinfo("postgres://u:p%2F@h/db"), None);
        assert_eq!(unencoded_userinfo("host=h"), None);
    }
}
