//! `type: s3` in a configuration file: the options are [`S3Config`]'s
//! fields, and [`S3Backend`] checks and opens them. It holds artifacts
//! only.

use async_trait::async_trait;
use runstore_core::Result;
use runstore_core::backend::{Backend, BackendConfig, BackendFactory};

use crate::{S3Config, S3Store};

/// The `type` name of the S3 artifact store.
pub const TYPE_NAME: &str = "s3";

/// The [`BackendFactory`] of `type: s3`. Whether the bucket exists is only
/// known by asking the server, so `exists` keeps the default (`None`).
///
/// ```
/// use runstore_core::backend::{BackendConfig, BackendFactory, Concern, Mapping};
/// let mut options = Mapping::new();
/// options.insert("bucket".into(), "runs".into());
/// options.insert("secret_access_key".into(), "s3cret".into());
/// options.insert("colour".into(), "blue".into());
/// let config = BackendConfig::new(Concern::Artifacts, "s3", options);
/// let err = runstore_s3::S3Backend.validate(&config).unwrap_err();
/// assert!(err.contains("colour") && !err.contains("s3cret"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct S3Backend;

/// The section's [`S3Config`], checked without connecting.
fn read(config: &BackendConfig) -> std::result::Result<S3Config, String> {
    let c: S3Config = config.parse_options()?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[async_trait]
impl BackendFactory for S3Backend {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        read(config).map(|_| ())
    }

    async fn open(&self, config: &BackendConfig) -> Result<Backend> {
        let c = read(config).map_err(|e| config.error(e))?;
        Ok(Backend::artifacts_only(S3Store::open(c).await?))
    }
}
