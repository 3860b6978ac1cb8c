//! Values that several backends' options share: durations written with a
//! unit, paths that name one store however they are spelt.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Reads a duration option: a number of seconds (`5`, `0.5`) or a string
/// with a unit (`"500ms"`, `"5s"`, `"2m"`), more than 0 and at most a day.
/// `key` names the option in the message. Use it from a field's
/// `deserialize_with` function.
///
/// ```
/// use std::time::Duration;
/// #[derive(serde::Deserialize)]
/// struct Options {
///     #[serde(deserialize_with = "timeout")]
///     timeout: Duration,
/// }
/// fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
///     runstore_core::backend::deserialize_duration("timeout", d)
/// }
/// let o: Options = serde_json::from_str(r#"{"timeout": "250ms"}"#).unwrap();
/// assert_eq!(o.timeout, Duration::from_millis(250));
/// let bad = serde_json::from_str::<Options>(r#"{"timeout": "soon"}"#).err().unwrap();
/// assert!(bad.to_string().contains("option `timeout` must be seconds"));
/// ```
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    key: &str,
    deserializer: D,
) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(f64),
        Text(String),
    }
    let bad = || {
        serde::de::Error::custom(format!(
            "option `{key}` must be seconds (e.g. 5 or 0.5) or a string like \"500ms\", \"5s\", \"2m\""
        ))
    };
    let secs = match Written::deserialize(deserializer).map_err(|_: D::Error| bad())? {
        Written::Seconds(n) => n,
        Written::Text(s) => {
            let s = s.trim();
            let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
                (n, 0.001)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else {
                (s, 1.0)
            };
            num.trim().parse::<f64>().map_err(|_| bad())? * mul
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(serde::de::Error::custom(format!(
            "option `{key}` must be more than 0 and at most 1 day"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The canonical form of `path` even when it does not exist yet: the
/// deepest existing ancestor canonicalized, then the rest appended. Two
/// spellings of one file (`./a/../db`, a symlinked folder) give one key, so
/// concerns naming one store share one handle.
pub fn canonical_path_key(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut existing = absolute.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out).display().to_string();
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalize(&absolute).display().to_string(),
        }
    }
}

/// Whether the file whose presence says a store exists is there (not
/// followed if it is a symlink), for [`super::BackendFactory::exists`].
pub fn path_marker_exists(marker: &Path) -> bool {
    std::fs::symlink_metadata(marker).is_ok()
}

/// A configuration type's own check failure as a message about the
/// option at fault: `option `readers` must be 1 to 64, got 0`, for
/// [`super::BackendFactory::validate`].
pub fn option_message(err: &crate::Error) -> String {
    match err {
        crate::Error::InvalidInput { field, rule } => format!("option `{field}` {rule}"),
        other => other.to_string(),
    }
}

/// Removes `.` and resolves `..` lexically (only for the part that does not
/// exist yet, where there is no symlink to follow).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_key_joins_spellings_of_one_file_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let a = canonical_path_key(&dir.path().join("db/x.db"));
        let b = canonical_path_key(&dir.path().join("sub/../db/./x.db"));
        let c = canonical_path_key(&dir.path().join("db/y.db"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(Path::new(&a).is_absolute());
    }

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "t")]
        t: Duration,
    }
    fn t<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        deserialize_duration("t", d)
    }

    #[test]
    fn durations_take_seconds_or_a_unit_and_refuse_zero_and_more_than_a_day() {
        let read = |y: &str| serde_yaml::from_str::<T>(&format!("t: {y}")).map(|x| x.t);
        assert_eq!(read("5").unwrap(), Duration::from_secs(5));
        assert_eq!(read("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(read("\"2m\"").unwrap(), Duration::from_secs(120));
        assert_eq!(read("\"500ms\"").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "\"2d\"", "90000", "[1]"] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("option `t`"), "{bad}: {e}");
        }
    }
}
