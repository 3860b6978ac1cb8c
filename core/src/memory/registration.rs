//! `type: memory`: the reference backend selectable from a configuration
//! file, for tests and demonstrations. Nothing persists; each concern gets
//! its own handle.

use async_trait::async_trait;
use serde::Deserialize;

use crate::Result;
use crate::backend::{Backend, BackendConfig, BackendFactory};

/// The `type` name of the memory backend.
pub const TYPE_NAME: &str = "memory";

/// The handle of an opened memory backend: it has no commands of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InMemory;

/// The [`BackendFactory`] of `type: memory`; it takes no options.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryBackend;

/// No options at all: any key is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryConfig {}

#[async_trait]
impl BackendFactory for MemoryBackend {
    fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
        config.parse_options::<MemoryConfig>().map(|_| ())
    }

    async fn open(&self, config: &BackendConfig) -> Result<Backend> {
        config
            .parse_options::<MemoryConfig>()
            .map_err(|e| config.error(e))?;
        Ok(Backend::from_store_set(super::store_set(), InMemory))
    }
}
