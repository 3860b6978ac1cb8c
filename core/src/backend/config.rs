//! [`BackendConfig`]: the section of the configuration file that names the
//! backend of one [`Concern`], as its backend crate receives it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::Error;

/// One of the four concerns of docs/DESIGN.md section 1.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Concern {
    /// Workflow definitions.
    Workflows,
    /// Runs and events.
    Logs,
    /// Metrics and patterns.
    Metrics,
    /// Artifacts.
    Artifacts,
}

impl Concern {
    /// The four concerns, in configuration order.
    pub const ALL: [Concern; 4] = [
        Concern::Workflows,
        Concern::Logs,
        Concern::Metrics,
        Concern::Artifacts,
    ];

    /// The key of the concern under `storage:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::Workflows => "workflows",
            Concern::Logs => "logs",
            Concern::Metrics => "metrics",
            Concern::Artifacts => "artifacts",
        }
    }

    /// The concern whose key under `storage:` is `key`.
    pub fn from_key(key: &str) -> Option<Concern> {
        Concern::ALL.into_iter().find(|c| c.as_str() == key)
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The backend chosen for one concern: its `type` and the other keys of its
/// mapping, with `${VAR}` already expanded.
///
/// `Debug` shows every string option through
/// [`crate::redact::connection_string`], so a password in a URL never
/// reaches a log.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The concern it serves.
    pub concern: Concern,
    /// The `type` key: `file`, `sqlite`, `postgres`, `memory`, or a
    /// registered name.
    pub type_name: String,
    /// Every other key of the mapping.
    pub options: Mapping,
    /// Where relative paths are resolved: the folder of the configuration
    /// file, or the current folder for a YAML string and the default.
    pub base_dir: PathBuf,
    /// Where the mapping is, for messages: `file line L column C`.
    pub origin: String,
    /// Open the store without writing to it: nothing created, migrated or
    /// repaired, every write refused. Set by the facade for sources that
    /// are only read (`Storage::open_read_only`); a backend that cannot
    /// open read-only opens as usual, and the facade's read-only view
    /// refuses the writes.
    pub read_only: bool,
}

impl BackendConfig {
    /// A configuration of `type_name` for `concern` with these options,
    /// relative paths resolved against the current folder.
    pub fn new(concern: Concern, type_name: impl Into<String>, options: Mapping) -> Self {
        BackendConfig {
            concern,
            type_name: type_name.into(),
            options,
            base_dir: PathBuf::from("."),
            origin: "code".to_string(),
            read_only: false,
        }
    }

    /// Asks the backend to open its store read-only (see
    /// [`BackendConfig::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Resolves relative paths against `base_dir` (the configuration file's
    /// folder).
    pub fn with_base_dir(mut self, base_dir: impl Into<PathBuf>) -> Self {
        self.base_dir = base_dir.into();
        self
    }

    /// Names where the section was read, for messages.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The folder of this concern's outbox (`outbox: { path: … }`,
    /// docs/DESIGN.md section 10), resolved against the configuration's
    /// folder; `None` without one. Only logs and metrics take one.
    pub fn outbox_path(&self) -> std::result::Result<Option<PathBuf>, String> {
        let Some(value) = self.options.get(Value::String("outbox".into())) else {
            return Ok(None);
        };
        if !matches!(self.concern, Concern::Logs | Concern::Metrics) {
            return Err(format!(
                "option `outbox` is for the logs and metrics concerns, not {}",
                self.concern
            ));
        }
        let path = value
            .as_mapping()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get(Value::String("path".into())))
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
            .ok_or(
                "option `outbox` must be `{ path: FOLDER }`, e.g. `outbox: { path: ./outbox }`",
            )?;
        Ok(Some(self.base_dir.join(path)))
    }

    /// These options as the backend sees them: without `outbox`, which the
    /// facade handles for every backend type.
    pub fn for_backend(&self) -> std::borrow::Cow<'_, BackendConfig> {
        let key = Value::String("outbox".into());
        if !self.options.contains_key(&key) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut stripped = self.clone();
        stripped.options.remove(&key);
        std::borrow::Cow::Owned(stripped)
    }

    /// The key path of this backend in the file, e.g. `storage.logs`.
    pub fn key(&self) -> String {
        format!("storage.{}", self.concern)
    }

    /// An [`Error::InvalidInput`] about this backend's configuration, naming
    /// where it is and its key.
    pub fn error(&self, message: impl fmt::Display) -> Error {
        Error::invalid(
            "config",
            format!("{}, at {}: {message}", self.origin, self.key()),
        )
    }

    /// The options deserialized into `T` (use `#[serde(deny_unknown_fields)]`
    /// to refuse unknown keys). The error message names the key at fault.
    pub fn parse_options<T: serde::de::DeserializeOwned>(&self) -> std::result::Result<T, String> {
        serde_yaml::from_value(Value::Mapping(self.options.clone())).map_err(|e| e.to_string())
    }

    /// The options deserialized into `T`, a store kept at a path: the
    /// field `path` picks must not be empty, and is resolved against
    /// [`BackendConfig::base_dir`] (the configuration file's folder).
    pub fn parse_path_options<T: serde::de::DeserializeOwned>(
        &self,
        path: impl FnOnce(&mut T) -> &mut PathBuf,
    ) -> std::result::Result<T, String> {
        let mut options: T = self.parse_options()?;
        let p = path(&mut options);
        if p.as_os_str().is_empty() {
            return Err("option `path` must not be empty".into());
        }
        *p = self.resolve_path(&*p);
        Ok(options)
    }

    /// A string option, if present.
    pub fn str_option(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(Value::as_str)
    }

    /// `path` resolved against [`BackendConfig::base_dir`] when relative.
    pub fn resolve_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() || self.base_dir == Path::new(".") {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Options may hold a database URL with a password: redact it.
        let options: Vec<(String, String)> = self
            .options
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().unwrap_or("?").to_string();
                let v = match v {
                    Value::String(s) => crate::redact::connection_string(s),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_default(),
                };
                (k, v)
            })
            .collect();
        f.debug_struct("BackendConfig")
            .field("concern", &self.concern)
            .field("type_name", &self.type_name)
            .field("options", &options)
            .field("base_dir", &self.base_dir)
            .field("read_only", &self.read_only)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let mut options = Mapping::new();
        options.insert("url".into(), "postgres://app:s3cret@db/x".into());
        let c = BackendConfig::new(Concern::Logs, "postgres", options);
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
    }

    #[test]
    fn relative_paths_resolve_against_the_base_dir() {
        let c =
            BackendConfig::new(Concern::Logs, "sqlite", Mapping::new()).with_base_dir("/etc/app");
        assert_eq!(
            c.resolve_path("data/x.db"),
            PathBuf::from("/etc/app/data/x.db")
        );
        assert_eq!(c.resolve_path("/abs"), PathBuf::from("/abs"));
    }
}
