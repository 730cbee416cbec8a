//! Backend health: a circuit breaker and the queue of invalidations that could not be delivered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;
use std::sync::Arc;

use cacheops_core::protocol::{BackendError, WriteRequest};

use crate::cache::Cache;
use crate::error::Error;
use crate::lease::MarkFailure;

/// What [`crate::Cache::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The circuit breaker is closed: calls go to the backend.
    pub available: bool,
    /// The last call to the backend failed (logged once, at the change; cleared by a success).
    pub degraded: bool,
    /// Invalidations waiting to be replayed; no hit is served until they are.
    pub pending_replays: usize,
    /// Invalidations were lost (the queue overflowed): the epoch is replaced before hits resume.
    pub fenced: bool,
    /// Writes in flight whose lease could not be placed ([`crate::MarkFailure::Proceed`]).
    pub unmarked_writes: usize,
    /// The last backend error, if the backend is degraded.
    pub last_error: Option<String>,
    /// Backend errors seen since the cache was built.
    pub errors: u64,
}

/// An invalidation that must reach the backend before any hit may be served again.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// A finish (end of a write lease) or an immediate row invalidation.
    Finish(WriteRequest),
    /// Deleting table stamps.
    DeleteStamps(Vec<String>),
    /// `invalidate_all`: the namespace's epoch and every table's copy (its registry's members).
    InvalidateAll {
        /// The registry key.
        registry: String,
        /// The namespace's epoch key.
        epoch: String,
    },
}

/// Circuit breaker + replay queue.
///
/// * After a backend error the breaker opens for `retry_interval`: calls made meanwhile fail
///   immediately, without touching the network, so no caller pays a timeout.
/// * Invalidations that fail are queued (up to `limit`); while the queue is not empty, or the
///   cache is fenced, no hit is served. Before the next lookup the queue is replayed; when the
///   queue overflowed, the cache is *fenced*: the epoch is replaced before hits resume, which
///   invalidates everything under the prefix.
#[derive(Debug)]
pub(crate) struct Health {
    start: Instant,
    open_until_ms: AtomicU64,
    retry_interval: Duration,
    queue: Mutex<VecDeque<Pending>>,
    dirty: AtomicBool,
    fenced: AtomicBool,
    limit: usize,
    /// Set by a failure, cleared by a success: the transitions are what gets logged.
    degraded: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn new(retry_interval: Duration, limit: usize) -> Self {
        Health {
            start: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            retry_interval,
            queue: Mutex::new(VecDeque::new()),
            dirty: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            limit,
            degraded: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether calls may go to the backend now.
    pub(crate) fn closed(&self) -> bool {
        self.now_ms() >= self.open_until_ms.load(Ordering::Acquire)
    }

    /// Records a backend failure: opens the breaker. Returns whether the backend was healthy
    /// until now (the failure is news, to be logged).
    pub(crate) fn failed(&self, err: &BackendError) -> bool {
        let until = self.now_ms().saturating_add(u64::try_from(self.retry_interval.as_millis()).unwrap_or(u64::MAX));
        self.open_until_ms.store(until, Ordering::Release);
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(cacheops_core::error_chain(err));
        !self.degraded.swap(true, Ordering::AcqRel)
    }

    /// Records a success: closes the breaker.
    pub(crate) fn succeeded(&self) {
        self.open_until_ms.store(0, Ordering::Release);
        if self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::AcqRel) {
            *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            tracing::info!("cacheops: the cache backend answers again");
        }
    }

    pub(crate) fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether something must be replayed (or fenced) before hits are served.
    pub(crate) fn needs_sync(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Queues an invalidation that failed. Overflow fences the cache.
    pub(crate) fn queue(&self, p: Pending) {
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= self.limit {
            q.clear();
            self.fenced.store(true, Ordering::Release);
        } else if !self.fenced.load(Ordering::Acquire) {
            q.push_back(p);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Takes the queued invalidations and whether a fence is required.
    pub(crate) fn take(&self) -> (Vec<Pending>, bool) {
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (q.drain(..).collect(), self.fenced.load(Ordering::Acquire))
    }

    /// Puts back what could not be replayed (in front, keeping order).
    pub(crate) fn put_back(&self, rest: Vec<Pending>, fence: bool) {
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in rest.into_iter().rev() {
            q.push_front(p);
        }
        if fence {
            self.fenced.store(true, Ordering::Release);
        }
        if q.len() > self.limit {
            q.clear();
            self.fenced.store(true, Ordering::Release);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Marks everything replayed. Returns false (and stays dirty) if something was queued meanwhile.
    pub(crate) fn synced(&self) -> bool {
        let q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.is_empty() {
            self.fenced.store(false, Ordering::Release);
            self.dirty.store(false, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Number of queued invalidations (for stats and tests).
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// The engine's side of backend health: failures, the gate, background replay, the report.
impl Cache {
    pub(crate) fn backend_failed(&self, err: BackendError) -> Result<(), Error> {
        self.count(|c| &c.errors);
        if self.inner.health.failed(&err) {
            tracing::warn!(
                error = %err,
                "cacheops: the cache backend is unavailable; reads go to the database and writes {} until it answers",
                match self.inner.mark_failure {
                    MarkFailure::RefuseWrite => "are refused",
                    MarkFailure::Proceed => "queue their invalidations",
                }
            );
        } else {
            tracing::debug!(error = %err, "cacheops backend failed");
        }
        if self.inner.degrade { Ok(()) } else { Err(err.into()) }
    }

    /// The one gate for backend calls outside the read / store / lease / invalidation paths
    /// (which apply the same rules themselves): the simple cache, the dog-pile lock, serve-stale
    /// copies, dropping a value that does not decode. An open breaker fails at once, without a
    /// network call (`call` is not polled); an error is counted, logged once per outage and opens
    /// the breaker; a success closes it.
    pub(crate) async fn gate<T>(&self, call: impl Future<Output = Result<T, BackendError>>) -> Result<T, BackendError> {
        if !self.inner.health.closed() {
            return Err(BackendError::unavailable("cache backend unavailable (circuit open)"));
        }
        match call.await {
            Ok(v) => {
                self.inner.health.succeeded();
                Ok(v)
            }
            Err(e) => {
                let _ = self.backend_failed(e.clone());
                Err(e)
            }
        }
    }

    /// Replays the queued invalidations in the background, as soon as the backend answers
    /// (every retry interval), instead of waiting for this process's next lookup. At most one
    /// such task runs per cache; it ends when the queue is empty or the cache is dropped.
    pub(crate) fn replay_soon(&self) {
        if !self.inner.health.needs_sync() || self.inner.replayer.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.inner.replayer.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let keys = Arc::clone(&self.keys);
        let interval = self.inner.health.retry_interval();
        handle.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let cache = Cache { inner, keys: Arc::clone(&keys) };
                if cache.inner.health.needs_sync() {
                    let _ = cache.sync().await;
                }
                if !cache.inner.health.needs_sync() {
                    cache.inner.replayer.store(false, Ordering::Release);
                    // Queued after the check and before the flag dropped: go on.
                    if !cache.inner.health.needs_sync() || cache.inner.replayer.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }

    /// Checks in the background that the backend answers, so that an unreachable server at
    /// start-up is logged (once) and counted at once rather than at the first read.
    pub(crate) fn check_backend_soon(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let cache = self.clone();
        handle.spawn(async move {
            match cache.inner.backend.ping().await {
                Ok(()) => cache.inner.health.succeeded(),
                Err(e) => {
                    let _ = cache.backend_failed(e);
                }
            }
        });
    }

    /// The backend's health as this process sees it: breaker, queued replays, fence, writes
    /// in flight without a lease.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = cacheops::Cache::builder().build().await.unwrap();
    /// let h = cache.health();
    /// assert!(h.available && h.pending_replays == 0 && !h.fenced);
    /// # });
    /// ```
    pub fn health(&self) -> crate::HealthReport {
        let h = &self.inner.health;
        crate::HealthReport {
            available: h.closed(),
            degraded: h.degraded(),
            pending_replays: h.queued(),
            fenced: h.is_fenced(),
            unmarked_writes: self.inner.unmarked.load(Ordering::Acquire),
            last_error: h.last_error(),
            errors: self.inner.counters.errors.load(Ordering::Relaxed),
        }
    }
}
