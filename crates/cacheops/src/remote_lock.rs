//! The dog-pile lock across processes, through the backend's shared locks
//! ([`Backend::lock_acquire`] and its companions; see [`crate::lock`]). Any backend that
//! [`shares_locks`](Backend::shares_locks) gets it: Redis standalone, Sentinel and Cluster.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cacheops_core::protocol::{Backend, BackendError, LockAttempt};

use crate::cache::Cache;
use crate::lock::{Acquired, Guard, stale_copy};

/// Cross-process locking through the backend.
pub(crate) struct RemoteLock {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for RemoteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteLock")
    }
}

const SIGNAL_TTL: Duration = Duration::from_secs(2);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

pub(crate) enum Remote {
    Got(String),
    Busy(Option<u64>),
}

impl RemoteLock {
    /// The shared lock of `backend`, if it has one (else the lock is in process only).
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Option<Self> {
        backend.shares_locks().then_some(RemoteLock { backend })
    }

    pub(crate) async fn try_acquire(
        &self,
        lock_key: &str,
        signal_key: &str,
        ttl: Duration,
    ) -> Result<Remote, BackendError> {
        let token = format!("{:016x} {}", rand::random::<u64>(), now_ms());
        Ok(match self.backend.lock_acquire(lock_key, signal_key, &token, ttl).await? {
            LockAttempt::Acquired => Remote::Got(token),
            LockAttempt::Busy(holder) => {
                Remote::Busy(holder.and_then(|h| h.split(' ').nth(1).and_then(|s| s.parse().ok())))
            }
            // Not expected from a backend that shares locks: behave as if there were none.
            _ => Remote::Got(token),
        })
    }

    pub(crate) async fn release(&self, cache: &Cache, lock_key: &str, signal_key: &str, token: &str) {
        let call = self.backend.lock_release(lock_key, signal_key, token, SIGNAL_TTL);
        if cache.gate(call).await.is_err() {
            tracing::debug!("cacheops could not release a dog-pile lock; it expires by itself");
        }
    }

    /// Blocks until the signal list has an element or `deadline`. Returns whether signalled.
    /// With the breaker open it does not try (the caller computes).
    pub(crate) async fn wait(&self, cache: &Cache, signal_key: &str, deadline: Instant) -> bool {
        if !cache.inner.health.closed() {
            return false;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return false;
        }
        match self.backend.lock_wait(signal_key, remaining).await {
            Ok(signalled) => signalled,
            Err(e) => {
                let _ = cache.backend_failed(e);
                false
            }
        }
    }

    /// Takes the Redis lock of the key `guard` holds in process, or waits for its holder.
    pub(crate) async fn acquire(
        &self,
        cache: &Cache,
        mut guard: Guard,
        hash: &str,
        deadline: Instant,
        stale: Option<Duration>,
    ) -> Acquired {
        let remote = self;
        let lock_key = cache.keys().lock(hash);
        let signal_key = format!("{lock_key}:signal");
        match cache.gate(remote.try_acquire(&lock_key, &signal_key, cache.inner.locks.ttl)).await {
            Ok(Remote::Got(token)) => {
                guard.remote_token = Some(token);
                Acquired::Held(guard)
            }
            Ok(Remote::Busy(started)) => {
                if let (Some(w), Some(started)) = (stale, started)
                    && now_ms().saturating_sub(started) <= u64::try_from(w.as_millis()).unwrap_or(u64::MAX)
                    && let Some(b) = stale_copy(cache, hash).await
                {
                    return Acquired::Stale(b);
                }
                if remote.wait(cache, &signal_key, deadline).await {
                    // Dropping the guard wakes this process's waiters: they look up again too.
                    Acquired::Woken
                } else {
                    // Timed out (a crashed holder, or a slow one): compute here, still holding the
                    // in-process slot so that this process computes once.
                    Acquired::Held(guard)
                }
            }
            // The breaker was open (no network call), or the call failed (counted and logged by the
            // gate, which opened the breaker): lock in process only.
            Err(_) => Acquired::Held(guard),
        }
    }
}
