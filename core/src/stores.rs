//! [`StoreSet`]: one handle per concern.

use std::sync::Arc;

use crate::artifacts::ArtifactStore;
use crate::logs::LogRepository;
use crate::metrics::MetricsRepository;
use crate::workflows::WorkflowRepository;

/// One handle per concern, each possibly on another backend. The facade's
/// `Storage` builds one from configuration; tests build them directly.
#[derive(Clone, Debug)]
pub struct StoreSet {
    /// Workflow definitions.
    pub workflows: Arc<dyn WorkflowRepository>,
    /// Runs and events.
    pub logs: Arc<dyn LogRepository>,
    /// Metrics and patterns.
    pub metrics: Arc<dyn MetricsRepository>,
    /// Artifacts.
    pub artifacts: Arc<dyn ArtifactStore>,
}
