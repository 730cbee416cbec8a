//! Per-call overrides of automatic caching: `cached(..)` forces caching (with ops, timeout),
//! `nocache(..)` turns it off, for everything run inside, across `.await`s.

use std::future::Future;
use std::time::Duration;

/// A caching override for reads run inside [`cached`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Lifetime of the values stored (default: the tables' profiles, else the cache default).
    pub timeout: Option<Duration>,
    /// Dog-pile lock on misses (default: the tables' profiles).
    pub lock: Option<bool>,
}

impl CacheOptions {
    /// Options with a timeout.
    pub fn timeout(timeout: Duration) -> Self {
        CacheOptions { timeout: Some(timeout), lock: None }
    }

    /// Turns the dog-pile lock on or off for these reads.
    #[must_use]
    pub fn with_lock(mut self, lock: bool) -> Self {
        self.lock = Some(lock);
        self
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Override {
    Force(CacheOptions),
    Off,
}

tokio::task_local! {
    static OVERRIDE: Override;
}

/// Runs `fut` with every read cached through a `CachedConnection` (whatever the profiles'
/// `ops` say; a disabled profile still wins), like the original's `.cache()`.
///
/// ```no_run
/// # async fn f(db: &cacheops_sea_orm::CachedConnection) -> Result<(), sea_orm::DbErr> {
/// use std::time::Duration;
/// use cacheops_sea_orm::{cached, CacheOptions};
/// # use sea_orm::{ConnectionTrait, Statement};
/// let rows = cached(CacheOptions::timeout(Duration::from_secs(60)), async {
///     db.query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT 1 AS x")).await
/// }).await?;
/// # Ok(()) }
/// ```
pub async fn cached<F: Future>(options: CacheOptions, fut: F) -> F::Output {
    OVERRIDE.scope(Override::Force(options), fut).await
}

/// Runs `fut` with caching off for every read through a `CachedConnection` (writes still
/// invalidate), like the original's `.nocache()`.
pub async fn nocache<F: Future>(fut: F) -> F::Output {
    OVERRIDE.scope(Override::Off, fut).await
}

pub(crate) fn current() -> Option<Override> {
    OVERRIDE.try_with(|o| *o).ok()
}
