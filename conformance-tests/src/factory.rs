//! [`StoreFactory`]: how the suite gets a fresh, isolated backend per rule,
//! and [`Capability`]: what a backend says it can do beyond section 4.

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use runstore_core::{ArtifactKey, Error, Result, StoreSet};

/// Something a backend may or may not offer. A rule that needs one is
/// skipped, and reported as skipped, for a backend that lacks it; nothing
/// else is ever skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// [`StoreFactory::reopen`] gives a new handle on the same data, as a
    /// restarted process would open it: what was written through the first
    /// handle is read through the second after the first is dropped.
    PersistsAcrossReopen,
    /// Handles from [`StoreFactory::create`] and [`StoreFactory::reopen`]
    /// work on one store at the same time, as several processes do: both
    /// may write at once, and each sees the other's writes.
    ConcurrentHandles,
    /// Not declared by the factory but found at run time: the test binary
    /// counts its heap with [`crate::PeakAlloc`] as its global allocator,
    /// so the memory bounds of streaming can be checked.
    MeasuredMemory,
    /// Both [`Capability::PersistsAcrossReopen`] and
    /// [`Capability::ConcurrentHandles`]: [`Capabilities::with`] declares
    /// the two. Kept for factories written before the split.
    SharedStorage,
    /// [`StoreFactory::tamper_artifact`] can change stored artifact bytes
    /// behind the store's back, so the suite can check that reads detect it.
    TamperArtifacts,
    /// [`StoreFactory::advance_clock`] moves the store's clock forward, so
    /// lease expiry is checked without waiting. Without it the rules wait
    /// in real time with generous margins.
    ControlledClock,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The capabilities a backend declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(BTreeSet<Capability>);

impl Capabilities {
    /// No capability beyond section 4.
    pub fn none() -> Self {
        Self::default()
    }
    /// Adds one ([`Capability::SharedStorage`] adds the two it stands for).
    pub fn with(mut self, c: Capability) -> Self {
        if c == Capability::SharedStorage {
            self.0.insert(Capability::PersistsAcrossReopen);
            self.0.insert(Capability::ConcurrentHandles);
        }
        self.0.insert(c);
        self
    }
    /// Whether it is declared.
    pub fn has(&self, c: Capability) -> bool {
        self.0.contains(&c)
    }
    /// Every declared capability.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.0.iter().copied()
    }
}

/// A fresh store set made for one rule, with whatever keeps it alive (a
/// temp folder, a schema guard) in `guard`.
#[derive(Clone)]
pub struct TestStores {
    /// The four handles under test.
    pub stores: StoreSet,
    /// Kept alive as long as the stores (dropped with them): the factory puts
    /// its temp folder, schema name or concrete handles here, and finds them
    /// again in `reopen` and `tamper_artifact` by downcasting.
    pub guard: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for TestStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStores")
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl TestStores {
    /// Stores with nothing to keep alive.
    pub fn new(stores: StoreSet) -> Self {
        TestStores {
            stores,
            guard: Arc::new(()),
        }
    }

    /// Stores and what keeps them alive.
    pub fn with_guard(stores: StoreSet, guard: Arc<dyn Any + Send + Sync>) -> Self {
        TestStores { stores, guard }
    }

    /// The guard as the factory's own type `G`, to find its folder or
    /// schema again in `reopen` and `tamper_artifact`; an error naming
    /// `backend` if these stores were made by another factory.
    pub fn guard_as<G: Any>(&self, backend: &str) -> Result<&G> {
        self.guard
            .downcast_ref::<G>()
            .ok_or_else(|| Error::backend(format!("not a {backend} test store set"), None))
    }
}

/// Makes backends for the suite. Implement it once per backend (see the
/// crate README for a complete example).
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// A short name for reports, e.g. `sqlite (file)`.
    fn name(&self) -> String;

    /// What the backend offers beyond section 4.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    /// A fresh, empty store set that no other call of `create` shares.
    async fn create(&self) -> Result<TestStores>;

    /// Another handle on the data of `stores`, opened as a second process
    /// would open it. Needed for [`Capability::PersistsAcrossReopen`] and
    /// [`Capability::ConcurrentHandles`].
    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let _ = stores;
        Err(Error::backend(
            format!("{} does not support reopen", self.name()),
            None,
        ))
    }

    /// Moves the clock the store judges lease expiry by forward by `by`.
    /// Needed for [`Capability::ControlledClock`].
    async fn advance_clock(&self, stores: &TestStores, by: std::time::Duration) -> Result<()> {
        let _ = (stores, by);
        Err(Error::backend(
            format!("{} cannot move its clock", self.name()),
            None,
        ))
    }

    /// Changes the stored bytes of an artifact (for example flips one byte)
    /// without updating its stored hash. Needed for
    /// [`Capability::TamperArtifacts`].
    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let _ = (stores, key);
        Err(Error::backend(
            format!("{} cannot tamper with artifacts", self.name()),
            None,
        ))
    }
}

/// [`StoreFactory::reopen`], refused when it gives back the handles of
/// `stores` themselves, not one opened anew: a second handle must be opened
/// the way a second process would open it, or the rules that need one
/// prove nothing. (A factory for a backend of some concerns only may share
/// the handles of the others, as the S3 factory shares its memory ones.)
pub(crate) async fn reopen_distinct(
    f: &dyn StoreFactory,
    stores: &TestStores,
) -> std::result::Result<TestStores, crate::RuleError> {
    let other = f.reopen(stores).await?;
    let same = |a: *const (), b: *const ()| std::ptr::eq(a, b);
    let (x, y) = (&stores.stores, &other.stores);
    let shared: Vec<&str> = [
        (
            "workflows",
            same(
                Arc::as_ptr(&x.workflows) as *const (),
                Arc::as_ptr(&y.workflows) as *const (),
            ),
        ),
        (
            "logs",
            same(
                Arc::as_ptr(&x.logs) as *const (),
                Arc::as_ptr(&y.logs) as *const (),
            ),
        ),
        (
            "metrics",
            same(
                Arc::as_ptr(&x.metrics) as *const (),
                Arc::as_ptr(&y.metrics) as *const (),
            ),
        ),
        (
            "artifacts",
            same(
                Arc::as_ptr(&x.artifacts) as *const (),
                Arc::as_ptr(&y.artifacts) as *const (),
            ),
        ),
    ]
    .into_iter()
    .filter(|(_, same)| *same)
    .map(|(name, _)| name)
    .collect();
    if shared.len() == 4 {
        return Err(crate::RuleError::Failed(format!(
            "reopen gave back the same handles that create made ({}): a second handle must be \
             opened as a second process would open it",
            shared.join(", ")
        )));
    }
    Ok(other)
}

/// The factory of the reference in-memory backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> String {
        "memory".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::TamperArtifacts)
            .with(Capability::ControlledClock)
    }

    async fn create(&self) -> Result<TestStores> {
        let guard = MemoryGuard::default();
        let mut stores = runstore_core::memory::store_set_with_clock(guard.clock.clone());
        stores.artifacts = guard.artifacts.clone();
        Ok(TestStores::with_guard(stores, Arc::new(guard)))
    }

    async fn advance_clock(&self, stores: &TestStores, by: std::time::Duration) -> Result<()> {
        memory_guard(stores)?.clock.advance(by);
        Ok(())
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let artifacts = &memory_guard(stores)?.artifacts;
        if artifacts.tamper(key, |bytes| match bytes.first_mut() {
            Some(b) => *b ^= 0xff,
            None => bytes.push(0),
        }) {
            Ok(())
        } else {
            Err(Error::not_found(format!("artifact {key}")))
        }
    }
}

/// What a memory store set keeps beside its handles: the artifacts to
/// tamper with and the clock to move.
#[derive(Debug, Default)]
struct MemoryGuard {
    artifacts: Arc<runstore_core::memory::MemoryArtifacts>,
    clock: runstore_core::memory::ManualClock,
}

fn memory_guard(stores: &TestStores) -> Result<&MemoryGuard> {
    stores
        .guard
        .downcast_ref::<MemoryGuard>()
        .ok_or_else(|| Error::backend("not a memory store set", None))
}
