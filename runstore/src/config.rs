//! The YAML configuration of docs/DESIGN.md section 5: which backend holds each
//! concern, with its options.
//!
//! Parsing goes straight from the YAML text to [`Config`] through serde
//! seeds, so that every error (syntax, unknown key, unknown `type`, bad
//! option, missing environment variable) carries the line and column of the
//! node at fault and its key path (`storage.logs`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use runstore_core::backend::{BackendConfig, Concern};
use runstore_core::retention::RetentionPolicy;
use runstore_core::{Error, Result};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_yaml::{Mapping, Value};

use crate::registry::BackendRegistry;

/// The embedded default configuration: files and SQLite under
/// `./runstore-data`, nothing to install or start.
pub const DEFAULT_YAML: &str = "\
storage:
  workflows: { type: file,   path: ./runstore-data }
  logs:      { type: sqlite, path: ./runstore-data/runstore.db }
  metrics:   { type: sqlite, path: ./runstore-data/runstore.db }
  artifacts: { type: file,   path: ./runstore-data }
";

/// The whole configuration: one backend per concern.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where workflow definitions go.
    pub workflows: BackendConfig,
    /// Where runs and events go.
    pub logs: BackendConfig,
    /// Where metrics and patterns go.
    pub metrics: BackendConfig,
    /// Where artifacts go.
    pub artifacts: BackendConfig,
    /// What it was read from: a file name, `YAML string` or `embedded default`.
    pub source: String,
    /// The `retention:` section, if any (docs/DESIGN.md section 8).
    pub retention: Option<RetentionPolicy>,
}

impl Default for Config {
    /// The embedded default ([`DEFAULT_YAML`]), relative to the current folder.
    fn default() -> Self {
        let base = PathBuf::from(".");
        let origin = "embedded default".to_string();
        let backend = |concern, type_name: &str, path: &str| {
            let mut options = Mapping::new();
            options.insert(Value::from("path"), Value::from(path));
            BackendConfig::new(concern, type_name, options)
                .with_base_dir(base.clone())
                .with_origin(origin.clone())
        };
        Config {
            workflows: backend(Concern::Workflows, "file", "./runstore-data"),
            logs: backend(Concern::Logs, "sqlite", "./runstore-data/runstore.db"),
            metrics: backend(Concern::Metrics, "sqlite", "./runstore-data/runstore.db"),
            artifacts: backend(Concern::Artifacts, "file", "./runstore-data"),
            source: origin,
            retention: None,
        }
    }
}

impl Config {
    /// Parses a YAML string against the global registry (built-in types and
    /// those added with [`crate::register_backend`]). Relative paths are
    /// resolved against the current folder.
    pub fn from_yaml_str(yaml: &str) -> Result<Config> {
        Config::parse(
            yaml,
            "YAML string",
            PathBuf::from("."),
            &crate::registry::global(),
        )
    }

    /// Reads and parses a YAML file. Relative paths in it are resolved
    /// against the folder that holds the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(
                "config",
                format!("cannot read configuration file {}: {e}", path.display()),
            )
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Config::parse(
            &text,
            &path.display().to_string(),
            base,
            &crate::registry::global(),
        )
    }

    /// Parses `yaml` read from `source` (named in errors), resolving relative
    /// paths against `base_dir`, checking types and options with `registry`.
    pub fn parse(
        yaml: &str,
        source: &str,
        base_dir: PathBuf,
        registry: &BackendRegistry,
    ) -> Result<Config> {
        let seed = ConfigSeed {
            ctx: Ctx {
                source,
                base_dir: &base_dir,
                registry,
            },
        };
        let de = serde_yaml::Deserializer::from_str(yaml);
        let (parts, retention) = seed.deserialize(de).map_err(|e| located(source, &e))?;
        Ok(Config {
            workflows: parts.0,
            logs: parts.1,
            metrics: parts.2,
            artifacts: parts.3,
            source: source.to_string(),
            retention,
        })
    }

    /// The backend of one concern.
    pub fn backend(&self, concern: Concern) -> &BackendConfig {
        match concern {
            Concern::Workflows => &self.workflows,
            Concern::Logs => &self.logs,
            Concern::Metrics => &self.metrics,
            Concern::Artifacts => &self.artifacts,
        }
    }

    /// The backend of one concern, to change.
    pub fn backend_mut(&mut self, concern: Concern) -> &mut BackendConfig {
        match concern {
            Concern::Workflows => &mut self.workflows,
            Concern::Logs => &mut self.logs,
            Concern::Metrics => &mut self.metrics,
            Concern::Artifacts => &mut self.artifacts,
        }
    }
}

/// Turns a YAML error into `InvalidInput` naming the source, line and column
/// (1-based) and the key path that serde_yaml prefixes to its message.
fn located(source: &str, e: &serde_yaml::Error) -> Error {
    // serde_yaml puts " at line L column C" into its message; we give the
    // location once, up front, in our own form.
    let message = strip_location(&e.to_string());
    match e.location() {
        Some(loc) => Error::invalid(
            "config",
            format!(
                "{source} line {} column {}: {message}",
                loc.line(),
                loc.column()
            ),
        ),
        None => Error::invalid("config", format!("{source}: {message}")),
    }
}

/// Removes every ` at line L column C` from a message.
fn strip_location(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        let tail = &rest[i + " at line ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let after = &tail[digits..];
        match after.strip_prefix(" column ") {
            Some(col) if digits > 0 => {
                let col_digits = col.bytes().take_while(u8::is_ascii_digit).count();
                out.push_str(&rest[..i]);
                rest = &col[col_digits..];
            }
            _ => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    source: &'a str,
    base_dir: &'a Path,
    registry: &'a BackendRegistry,
}

struct ConfigSeed<'a> {
    ctx: Ctx<'a>,
}

type Parts = (BackendConfig, BackendConfig, BackendConfig, BackendConfig);

type Whole = (Parts, Option<RetentionPolicy>);

impl<'de> DeserializeSeed<'de> for ConfigSeed<'_> {
    type Value = Whole;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Whole, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConfigSeed<'_> {
    type Value = Whole;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with a `storage` key")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Whole, A::Error> {
        let mut storage = None;
        let mut retention = None;
        while let Some(key) = map.next_key_seed(KeySeed(&["storage", "retention"]))? {
            if key == "retention" {
                if retention.is_some() {
                    return Err(de::Error::duplicate_field(key));
                }
                retention = Some(map.next_value::<RetentionPolicy>()?);
                continue;
            }
            if storage.is_some() {
                return Err(de::Error::duplicate_field(key));
            }
            storage = Some(map.next_value_seed(StorageSeed { ctx: self.ctx })?);
        }
        Ok((
            storage.ok_or_else(|| de::Error::missing_field("storage"))?,
            retention,
        ))
    }
}

/// A policy file (`--policy FILE`): the same shape as the configuration's
/// section, `retention:` at the top.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    retention: RetentionPolicy,
}

/// Parses a retention policy file read from `source` (named in errors with
/// line and column, like the configuration).
pub fn parse_policy(yaml: &str, source: &str) -> Result<RetentionPolicy> {
    let de = serde_yaml::Deserializer::from_str(yaml);
    let file: PolicyFile = serde::Deserialize::deserialize(de).map_err(|e| located(source, &e))?;
    Ok(file.retention)
}

/// Reads and parses a retention policy file (see [`parse_policy`]).
pub fn policy_from_file(path: impl AsRef<Path>) -> Result<RetentionPolicy> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(
            "policy",
            format!("cannot read policy file {}: {e}", path.display()),
        )
    })?;
    parse_policy(&text, &path.display().to_string())
}

/// A key that must be one of a fixed set. Checked while the key itself is
/// read, so that an unknown key is reported at its own line and column.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = &'static str;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<&'static str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "one of the keys {}", self.0.join(", "))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<&'static str, E> {
        self.0
            .iter()
            .find(|k| **k == v)
            .copied()
            .ok_or_else(|| E::unknown_field(v, self.0))
    }
}

struct StorageSeed<'a> {
    ctx: Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for StorageSeed<'_> {
    type Value = Parts;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Parts, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StorageSeed<'_> {
    type Value = Parts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with the keys workflows, logs, metrics and artifacts")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Parts, A::Error> {
        const KEYS: &[&str] = &["workflows", "logs", "metrics", "artifacts"];
        let mut found: [Option<BackendConfig>; 4] = [None, None, None, None];
        while let Some(key) = map.next_key_seed(KeySeed(KEYS))? {
            let Some(concern) = Concern::from_key(key) else {
                return Err(de::Error::unknown_field(key, KEYS));
            };
            let slot = &mut found[concern as usize];
            if slot.is_some() {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            *slot = Some(map.next_value_seed(BackendSeed {
                ctx: self.ctx,
                concern,
            })?);
        }
        let [w, l, m, a] = found;
        Ok((
            w.ok_or_else(|| de::Error::missing_field("workflows"))?,
            l.ok_or_else(|| de::Error::missing_field("logs"))?,
            m.ok_or_else(|| de::Error::missing_field("metrics"))?,
            a.ok_or_else(|| de::Error::missing_field("artifacts"))?,
        ))
    }
}

struct BackendSeed<'a> {
    ctx: Ctx<'a>,
    concern: Concern,
}

impl<'de> DeserializeSeed<'de> for BackendSeed<'_> {
    type Value = BackendConfig;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<BackendConfig, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BackendSeed<'_> {
    type Value = BackendConfig;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with a `type` key, e.g. { type: sqlite, path: ./runstore.db }")
    }
    // Errors returned from here get the line and column of this mapping and
    // the path `storage.<concern>` from serde_yaml.
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<BackendConfig, A::Error> {
        let mut type_name = None;
        let mut options = Mapping::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = expand_value(value)
                .map_err(|e| de::Error::custom(format_args!("option `{key}`: {e}")))?;
            if key == "type" {
                match value {
                    Value::String(s) => type_name = Some(s),
                    _ => {
                        return Err(de::Error::custom(
                            "option `type` must be a string such as file, sqlite, postgres or memory",
                        ));
                    }
                }
            } else {
                options.insert(Value::String(key), value);
            }
        }
        let type_name = type_name.ok_or_else(|| {
            de::Error::custom(format_args!(
                "missing option `type`; known types: {}",
                self.ctx.registry.known_types().join(", ")
            ))
        })?;
        let backend = BackendConfig::new(self.concern, type_name, options)
            .with_base_dir(self.ctx.base_dir)
            .with_origin(self.ctx.source);
        backend.outbox_path().map_err(de::Error::custom)?;
        self.ctx
            .registry
            .validate(&backend.for_backend())
            .map_err(de::Error::custom)?;
        Ok(backend)
    }
}

/// Expands `${VAR}` in every string of `value` from the environment.
fn expand_value(value: Value) -> std::result::Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(expand_env(&s)?),
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .map(expand_value)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(k, expand_value(v)?);
            }
            Value::Mapping(out)
        }
        other => other,
    })
}

/// Expands `${VAR}` from the environment. `$${` writes a literal `${`; a `$`
/// not followed by `{` is kept as it is. A variable that is not set (or not
/// UTF-8) is an error naming it.
///
/// ```
/// # // SAFETY-free: set_var is unsafe in edition 2024, so only read here.
/// assert_eq!(runstore::config::expand_env("a $${B} c $5").unwrap(), "a ${B} c $5");
/// let err = runstore::config::expand_env("${RUNSTORE_SURELY_UNSET_VAR}").unwrap_err();
/// assert!(err.contains("RUNSTORE_SURELY_UNSET_VAR"));
/// ```
pub fn expand_env(text: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(format!("unterminated `${{` in {}", redact_url(text)));
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("environment variable {name} is not set"));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Hides every password of a connection string (URL or key/value), such
/// as `postgres://user:secret@host/db`: core's one redactor.
///
/// ```
/// assert_eq!(runstore::config::redact_url("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
/// assert_eq!(runstore::config::redact_url("./data"), "./data");
/// ```
pub fn redact_url(text: &str) -> String {
    runstore_core::redact::connection_string(text)
}
