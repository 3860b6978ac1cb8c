//! Opening a backend from configuration: what a backend crate implements so
//! that a YAML file can name it in `type:`.
//!
//! The facade (`runstore`) reads the YAML file, splits it into one
//! [`BackendConfig`] per [`Concern`], and asks the [`BackendFactory`]
//! registered under the section's `type` to check and open it. The trait and
//! its types live here, in core, so that a backend crate, built in or not,
//! owns its configuration type, its type name and its factory without
//! depending on the facade or on any other backend.
//!
//! A backend outside the workspace, opened from the options of its section:
//!
//! ```
//! use runstore_core::backend::{Backend, BackendConfig, BackendFactory};
//! use runstore_core::{Result, async_trait};
//!
//! /// The options of `type: my-mem`: `capacity` only.
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct MyConfig {
//!     capacity: u32,
//! }
//!
//! struct MyBackend;
//!
//! #[async_trait]
//! impl BackendFactory for MyBackend {
//!     fn validate(&self, config: &BackendConfig) -> std::result::Result<(), String> {
//!         let c: MyConfig = config.parse_options()?;
//!         if c.capacity == 0 {
//!             return Err("option `capacity` must be at least 1".into());
//!         }
//!         Ok(())
//!     }
//!
//!     async fn open(&self, config: &BackendConfig) -> Result<Backend> {
//!         let _c: MyConfig = config.parse_options().map_err(|e| config.error(e))?;
//!         // A real backend opens its own store here.
//!         let set = runstore_core::memory::store_set();
//!         Ok(Backend::from_store_set(set, runstore_core::memory::InMemory))
//!     }
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let mut options = runstore_core::backend::Mapping::new();
//! options.insert("capacity".into(), 3.into());
//! let config = BackendConfig::new(runstore_core::backend::Concern::Logs, "my-mem", options);
//! assert!(MyBackend.validate(&config).is_ok());
//! let backend = MyBackend.open(&config).await.unwrap();
//! assert!(backend.logs.is_some());
//! # });
//! ```
//!
//! The facade's `runstore::register_backend("my-mem", MyBackend)` then makes
//! `type: my-mem` usable in every configuration read afterwards.

mod config;
mod factory;
mod option_values;

pub use config::{BackendConfig, Concern};
pub use factory::{Backend, BackendFactory, BackendHandle};
pub use option_values::{
    canonical_path_key, deserialize_duration, option_message, path_marker_exists,
};
/// The YAML mapping a backend's options arrive in.
pub use serde_yaml::{Mapping, Value};
