//! [`S3Config`]: where the artifacts go, and with which credentials.
//! Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's role)
//! unless the configuration names them (typically as `${VAR}`); the secret
//! is never printed by `Debug`, `Display` or an error.

use std::fmt;
use std::time::Duration;

use runstore_core::{ArtifactPath, Error, Result};
use serde::Deserialize;

/// The options of `type: s3` in the YAML configuration.
///
/// ```
/// use runstore_s3::S3Config;
/// let config = S3Config::new("runs-artifacts")
///     .with_prefix("prod/runstore")
///     .with_endpoint("http://127.0.0.1:9000")
///     .with_region("eu-west-1");
/// config.validate().unwrap();
/// assert_eq!(config.bucket, "runs-artifacts");
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// A folder inside the bucket that holds everything of this store,
    /// `/`-separated without leading or trailing `/`; empty for the root.
    #[serde(default)]
    pub prefix: String,
    /// The server's URL for S3-compatible servers (MinIO, Ceph, R2, a local
    /// test server); AWS itself when absent. `http://` URLs are allowed.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region; `AWS_DEFAULT_REGION`/`AWS_REGION` or `us-east-1` when
    /// absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Seconds to wait for a connection (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// How long one request may keep retrying transient failures, in
    /// seconds (default 15), before the call fails with `Unavailable`.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout: f64,
    /// The access key id; from the environment when absent.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret access key (write `${VAR}` in YAML); from the environment
    /// when absent. Never printed.
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

fn default_connect_timeout() -> f64 {
    5.0
}

fn default_retry_timeout() -> f64 {
    15.0
}

impl S3Config {
    /// A store in `bucket`, at its root, on AWS.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            connect_timeout: default_connect_timeout(),
            retry_timeout: default_retry_timeout(),
            access_key_id: None,
            secret_access_key: None,
        }
    }

    /// Signs with these credentials instead of the environment's.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// Sets the folder inside the bucket.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the server URL.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Checks every option; the error names the option at fault and never
    /// echoes an endpoint that carries credentials.
    pub fn validate(&self) -> Result<()> {
        // S3 bucket names: 3 to 63 of lowercase letters, digits, `.` and `-`.
        let b = &self.bucket;
        if b.len() < 3
            || b.len() > 63
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        {
            return Err(Error::invalid(
                "bucket",
                format!(
                    "must be 3 to 63 lowercase letters, digits, `.` or `-`; got {}",
                    runstore_core::text::shown(b)
                ),
            ));
        }
        if !self.prefix.is_empty() {
            // The prefix follows the artifact path rules: no `..`, no empty
            // segment, no control character, so it cannot escape its folder.
            ArtifactPath::new(&self.prefix).map_err(|e| {
                Error::invalid(
                    "prefix",
                    format!("must be a relative `/`-separated path: {e}"),
                )
            })?;
        }
        if let Some(endpoint) = &self.endpoint {
            let rest = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .ok_or_else(|| Error::invalid("endpoint", "must start with http:// or https://"))?;
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(Error::invalid(
                    "endpoint",
                    "must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead",
                ));
            }
            if authority.is_empty() {
                return Err(Error::invalid("endpoint", "names no host"));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::invalid(
                "secret_access_key",
                "access_key_id and secret_access_key go together: give both or neither",
            ));
        }
        for (name, secs) in [
            ("connect_timeout", self.connect_timeout),
            ("retry_timeout", self.retry_timeout),
        ] {
            if !secs.is_finite() || secs <= 0.0 || secs > 3600.0 {
                return Err(Error::invalid(
                    name,
                    format!("must be more than 0 and at most 3600 seconds; got {secs}"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout)
    }

    pub(crate) fn retry_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.retry_timeout)
    }

    /// `s3://bucket/prefix` (and the endpoint), for messages and logs.
    pub fn location(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        if let Some(e) = &self.endpoint {
            s.push_str(" at ");
            s.push_str(e);
        }
        s
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Holds no secret by construction (credentials come from the
        // environment and endpoints with credentials are refused), but an
        // unvalidated endpoint is still not printed verbatim.
        let endpoint = self.endpoint.as_ref().map(|e| {
            if e.contains('@') {
                "<endpoint with credentials, refused>".to_string()
            } else {
                e.clone()
            }
        });
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &endpoint)
            .field("region", &self.region)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_timeout", &self.retry_timeout)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runstore_core::ErrorKind;

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        let cases = [
            (S3Config::new("ab"), "bucket"),
            (S3Config::new("Upper"), "bucket"),
            (S3Config::new("runs").with_prefix("a/../b"), "prefix"),
            (S3Config::new("runs").with_prefix("/a"), "prefix"),
            (S3Config::new("runs").with_endpoint("ftp://x"), "endpoint"),
            (S3Config::new("runs").with_endpoint("http://"), "endpoint"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{config:?}");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_and_never_printed() {
        let config = S3Config::new("runs").with_endpoint("http://key:S3cret@127.0.0.1:9000");
        let err = config.validate().unwrap_err();
        assert!(!err.to_string().contains("S3cret"), "{err}");
        assert!(!format!("{err:?}").contains("S3cret"));
        assert!(!format!("{config:?}").contains("S3cret"));
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let config = S3Config::new("runs").with_credentials("AKIAEXAMPLE", "S3cr/et@key");
        config.validate().unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("S3cr/et@key"), "{shown}");
        assert!(shown.contains("***"));
        let mut half = S3Config::new("runs");
        half.secret_access_key = Some("S3cret".into());
        let err = half.validate().unwrap_err();
        assert!(!err.to_string().contains("S3cret"));
    }

    #[test]
    fn yaml_options_parse_with_defaults() {
        let config: S3Config =
            serde_json::from_str(r#"{"bucket":"runs","endpoint":"http://127.0.0.1:9000"}"#)
                .unwrap();
        config.validate().unwrap();
        assert_eq!(config.prefix, "");
        assert_eq!(config.connect_timeout, 5.0);
        let unknown = serde_json::from_str::<S3Config>(r#"{"bucket":"runs","secret":"x"}"#);
        assert!(unknown.is_err());
    }
}
