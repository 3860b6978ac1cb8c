//! [`PostgresConfig`]: where the store connects and how it behaves; the
//! password never leaves it in `Debug`, `Display`, errors or logs.

use std::fmt;
use std::time::Duration;

use runstore_core::{Error, Result};

/// Default pool size (docs/DESIGN.md section 5).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default schema holding runstore's tables.
pub const DEFAULT_SCHEMA: &str = "runstore";
/// Default time to open one connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time one operation may take: waiting for a pool slot plus its
/// statements.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`PostgresConfig::migration_timeout`].
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_SCHEMA_LEN: usize = 63;

/// How a [`crate::PostgresStore`] connects.
///
/// `url` is a libpq-style URL (`postgres://user:pass@host:5432/db?sslmode=disable`)
/// or key/value string (`host=… user=… dbname=…`), as tokio-postgres reads
/// it. `Debug` and `Display` show it with the password replaced by `***`.
///
/// ```
/// use std::time::Duration;
/// use runstore_postgres::PostgresConfig;
/// let c = PostgresConfig::new("postgres://app:s3cret@db.internal/runs")
///     .with_pool_size(8)
///     .with_schema("runstore_prod")
///     .with_operation_timeout(Duration::from_secs(10));
/// assert_eq!(c.redacted_url(), "postgres://app:***@db.internal/runs");
/// assert!(!format!("{c:?} {c}").contains("s3cret"));
/// ```
///
/// The options of a `type: postgres` section of the configuration file are
/// its fields; the durations take seconds or a unit (`"500ms"`, `"2m"`).
///
/// ```
/// use std::time::Duration;
/// use runstore_postgres::PostgresConfig;
/// let c: PostgresConfig = serde_json::from_str(
///     r#"{"url": "postgres://app:s3cret@db/runs", "operation_timeout": "10s"}"#,
/// ).unwrap();
/// assert_eq!((c.pool_size, c.operation_timeout), (16, Duration::from_secs(10)));
/// ```
#[non_exhaustive]
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection URL; may hold a password, so never print it directly
    /// (use [`PostgresConfig::redacted_url`]).
    pub url: String,
    /// Most connections the pool opens. Default 16.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The schema holding the tables, created and migrated on connect.
    /// Default `runstore`. Letters, digits and `_`, not starting with a digit.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Longest time to open one connection. Default 5 s.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "connect_timeout"
    )]
    pub connect_timeout: Duration,
    /// Longest time one database step of an operation may take, waiting for
    /// a pool slot included; past it the call fails with `Unavailable`.
    /// Default 30 s.
    #[serde(
        default = "default_operation_timeout",
        deserialize_with = "operation_timeout"
    )]
    pub operation_timeout: Duration,
    /// Longest time `open` may take to create or migrate the schema. A
    /// step that builds an index or fills summary tables from millions of
    /// rows takes minutes; other processes opening meanwhile wait for it.
    /// Default 1 hour.
    #[serde(
        default = "default_migration_timeout",
        deserialize_with = "migration_timeout"
    )]
    pub migration_timeout: Duration,
    /// Opens the store without writing to it: no schema is created or
    /// migrated (the schema must exist at this build's version), every
    /// connection's transactions are read-only on the server
    /// (`default_transaction_read_only`), and a write fails with
    /// `InvalidInput`. For migration sources, dashboards and replicas.
    /// `false` by default.
    #[serde(default)]
    pub read_only: bool,
}

fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

fn default_schema() -> String {
    DEFAULT_SCHEMA.to_string()
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_operation_timeout() -> Duration {
    DEFAULT_OPERATION_TIMEOUT
}

fn default_migration_timeout() -> Duration {
    DEFAULT_MIGRATION_TIMEOUT
}

fn migration_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    runstore_core::backend::deserialize_duration("migration_timeout", d)
}

fn connect_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    runstore_core::backend::deserialize_duration("connect_timeout", d)
}

fn operation_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    runstore_core::backend::deserialize_duration("operation_timeout", d)
}

impl PostgresConfig {
    /// A config for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            pool_size: DEFAULT_POOL_SIZE,
            schema: DEFAULT_SCHEMA.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            migration_timeout: DEFAULT_MIGRATION_TIMEOUT,
            read_only: false,
        }
    }

    /// Opens the store read-only (see [`PostgresConfig::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Sets the schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the operation timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`PostgresConfig::migration_timeout`].
    pub fn with_migration_timeout(mut self, timeout: Duration) -> Self {
        self.migration_timeout = timeout;
        self
    }

    /// Checks the values serde cannot, without connecting: the schema name,
    /// the pool size and the timeouts.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        validate_schema(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::invalid("pool_size", "must be at least 1, got 0"));
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("operation_timeout", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(field, "must be longer than zero"));
            }
        }
        Ok(())
    }

    /// The URL with its password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks the options and parses the URL into a tokio-postgres config
    /// (connect timeout and keepalives applied) and the TLS connector its
    /// `sslmode` asks for (see [`crate::tls`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad schema name, pool size, timeout or
    /// URL, or `sslmode=verify-*` without a readable `sslrootcert`.
    pub(crate) fn to_pg_config(
        &self,
    ) -> Result<(
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    )> {
        self.validate()?;
        if let Some(c) = runstore_core::redact::unencoded_userinfo(&self.url) {
            // Unencoded, the rest of the password would be taken for a host
            // name and end up in "failed to lookup address" errors.
            return Err(Error::invalid(
                "url",
                format!(
                    "the user or password in {} holds `{c}`, which must be percent-encoded in a URL (`/` as %2F, `@` as %40, `?` as %3F, `#` as %23)",
                    self.redacted_url()
                ),
            ));
        }
        let tls = crate::tls::split_tls_params(&self.url);
        let mut pg: tokio_postgres::Config = tls.url.parse().map_err(|e: tokio_postgres::Error| {
            // The parser's message may quote part of the string.
            let why = runstore_core::redact::scrub(
                &e.to_string(),
                &runstore_core::redact::secrets(&self.url),
            );
            Error::invalid(
                "url",
                format!(
                    "{} is not a PostgreSQL connection string ({why}); quote values with spaces ('...') and percent-encode special characters in a URL's password",
                    self.redacted_url()
                ),
            )
        })?;
        let connector = crate::tls::connector(&tls)?;
        if pg.get_hosts().is_empty() {
            // libpq's default; tokio-postgres refuses an empty host list.
            pg.host("localhost");
        }
        pg.connect_timeout(self.connect_timeout);
        // A peer that vanishes without closing the socket is noticed by
        // keepalives rather than by a call hanging forever.
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        if self.read_only {
            // Enforced by the server, so no code path can write by mistake.
            let options = match pg.get_options() {
                Some(o) if !o.trim().is_empty() => {
                    format!("{o} -c default_transaction_read_only=on")
                }
                _ => "-c default_transaction_read_only=on".to_string(),
            };
            pg.options(&options);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("runstore");
        }
        Ok((pg, connector))
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("migration_timeout", &self.migration_timeout)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (schema {})", self.redacted_url(), self.schema)
    }
}

/// The schema rule: 1 to 63 bytes of `[A-Za-z0-9_]`, not starting with a
/// digit. It is also quoted wherever it appears in SQL.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= MAX_SCHEMA_LEN
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "schema",
            format!(
                "must be 1 to {MAX_SCHEMA_LEN} letters, digits or _, not starting with a digit; got {}",
                runstore_core::text::shown(schema)
            ),
        ))
    }
}

/// The schema as a quoted SQL identifier (validated names hold no quote).
pub(crate) fn quote_ident(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// The URL with every password replaced by `***` (core's one redactor, for
/// every form of connection string).
pub(crate) fn redact_url(url: &str) -> String {
    runstore_core::redact::connection_string(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_everywhere() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgresql://u:p%40w@h", "postgresql://u:***@h"),
            (
                "postgres://h/db?user=u&password=pw&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            (
                "host=h user=u password=pw dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h password = 'p w\\' x' dbname=d",
                "host=h password = *** dbname=d",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("pw"), "{url}");
        }
    }

    #[test]
    fn config_checks_options() {
        let ok = PostgresConfig::new("postgres://u:pw@127.0.0.1/db");
        assert!(ok.to_pg_config().is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", &"x".repeat(64)] {
            let err = ok.clone().with_schema(bad).to_pg_config().err().unwrap();
            assert_eq!(err.kind(), runstore_core::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(
            PostgresConfig::new("postgres://u:pw@h/db?sslmode=require")
                .to_pg_config()
                .is_ok()
        );
        let err = PostgresConfig::new("postgres://u:pw@h/db?sslmode=verify-full")
            .to_pg_config()
            .err()
            .unwrap();
        assert_eq!(err.kind(), runstore_core::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("sslrootcert") && !err.to_string().contains("pw@"));
        let err = ok.clone().with_pool_size(0).to_pg_config().err().unwrap();
        assert_eq!(err.kind(), runstore_core::ErrorKind::InvalidInput);
        let err = PostgresConfig::new("postgres://u:secretpw@h/db?port=notaport")
            .to_pg_config()
            .err()
            .unwrap();
        assert!(!err.to_string().contains("secretpw"), "{err}");
    }
}
