#![doc = include_str!("../README.md")]

mod artifacts;
mod config;
mod error;
mod layout;
mod registration;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use runstore_core::{Error, Result};

pub use config::S3Config;
pub use registration::{S3Backend, TYPE_NAME};

use layout::Layout;

/// The artifact store on S3-compatible object storage. Cheap to clone: the
/// clones share one HTTP client.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    config: S3Config,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.config.location())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Opens the store: checks the options, builds the client with
    /// credentials from the environment, and checks that the bucket answers
    /// (an unreachable server is `Unavailable`; a missing bucket or refused
    /// credentials a `Backend` error naming the bucket, with the server's
    /// answer chained), so a bad configuration fails here rather than at
    /// the first write.
    pub async fn open(config: S3Config) -> Result<S3Store> {
        config.validate()?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_client_options(
                ClientOptions::new().with_connect_timeout(config.connect_timeout()),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: config.retry_timeout(),
                ..Default::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        let store = builder
            .build()
            .map_err(|e| Error::invalid("s3", format!("cannot use {}: {e}", config.location())))?;
        let s = S3Store {
            store: Arc::new(store),
            layout: Layout::new(&config.prefix),
            config,
        };
        s.probe().await?;
        Ok(s)
    }

    /// One listing request, to learn at open whether the bucket is there.
    async fn probe(&self) -> Result<()> {
        use futures_util::StreamExt;
        let prefix = object_store::path::Path::parse(format!(
            "{}probe",
            if self.config.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.config.prefix)
            }
        ))
        .map_err(|e| Error::invalid("prefix", e.to_string()))?;
        match self.store.list(Some(&prefix)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(object_store::Error::NotFound { .. })) => Err(Error::not_found(format!(
                "bucket {} ({})",
                self.config.bucket,
                self.config.location()
            ))),
            Some(Err(e)) => Err(error::map(format!("opening {}", self.config.location()), e)),
        }
    }

    /// The options it was opened with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }
}
