#![doc = include_str!("../README.md")]

#[macro_use]
mod builder;
mod canonical_writer;

pub mod artifact_path;
pub mod artifacts;
pub mod backend;
pub mod bulk_load;
pub mod bundle;
pub mod chunked;
pub mod coordination;
pub mod digest;
pub mod encoded_events;
pub mod error;
pub mod ext;
pub mod id;
pub mod json_text;
pub mod lifecycle;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod page;
mod read_only;
pub mod redact;
pub mod retention;
pub mod stores;
pub mod summary;
pub mod text;
pub mod timestamp;
pub mod workflows;
pub mod written;

pub use artifact_path::{ArtifactKey, ArtifactPath};
pub use artifacts::{
    ArtifactCursor, ArtifactInfo, ArtifactQuery, ArtifactReader, ArtifactStore, BundleRequest,
    ByteStream, HashingReader, PutDecision, PutOptions, VerifyingReader, decide_put,
};
pub use bulk_load::{BulkLoadOf, BulkLoadOptions};
pub use chunked::{ChunkFuture, ChunkSource, ChunkedReader, changed_while_reading};
pub use coordination::{
    Delivery, Lease, LeaseCursor, LeaseQuery, LeaseRequest, MAX_LEASE_TTL, decide_lease_acquire,
    decide_lease_release, decide_run_create, external_key_conflict, external_key_of, key_not_found,
    validate_batch_keys, validate_delivery_id, validate_external_key,
};
pub use digest::{Sha256Digest, Sha256Hasher, canonical_json, content_hash};
pub use encoded_events::{EncodedEvent, EncodedRun};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use ext::{ArtifactStoreExt, LogRepositoryExt, WorkflowRepositoryExt};
pub use id::{PatternId, Phase, RunId, Version, WorkflowId};
pub use json_text::{JsonText, SkippedJson};
pub use lifecycle::{
    ArtifactsDeleted, Deleted, MAX_DELETE_BATCH, decide_workflow_delete, validate_delete_batch,
};
pub use logs::{
    Appended, Event, EventCursor, EventQuery, JsonMap, LogRepository, NewEvent, Run, RunCursor,
    RunFilter, RunQuery, RunStatus, RunUpdate, RunWithEvents, SmallRuns, StoredEvent,
    events_by_run, run_conflict, run_not_found, validate_small_runs_request,
};
pub use metrics::{
    DurationStats, ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository, MetricsSummary,
    Pattern, PatternCursor, PatternQuery, SummaryQuery, ValueStats, metric_conflict,
    metrics_by_run, nearest_rank,
};
pub use page::{Cursor, Cursors, DEFAULT_PAGE_LIMIT, Items, MAX_PAGE_LIMIT, Page, validate_limit};
pub use stores::StoreSet;
pub use timestamp::Timestamp;
pub use workflows::{WorkflowCursor, WorkflowDefinition, WorkflowQuery, WorkflowRepository};
pub use written::{BulkOutcome, Written};

pub use async_trait::async_trait;
