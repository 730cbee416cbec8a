//! The dog-pile lock: on a miss one caller computes, the others wait for its value.
//!
//! * **In process** (both backends): one slot per key; waiters sleep on a [`Notify`] that the
//!   holder fires when it is done (stored, failed or panicked: the guard's `Drop` fires it).
//! * **Across processes** (standalone Redis): the in-process holder also takes
//!   `SET <lock> <token> NX PX <ttl>` (a crashed holder's lock expires); a process that finds the
//!   lock taken blocks in `BLMOVE <signal> <signal> LEFT LEFT <timeout>` on a dedicated
//!   connection until the holder's release pushes to the signal list (the element rotates, so every
//!   blocked waiter wakes), like the original's `BRPOPLPUSH`. Acquiring deletes a leftover signal.
//! * Waiting is bounded: past `wait` the waiter computes by itself (and may store).
//! * Hits never touch the lock.
//! * Serve-stale (off unless asked for): with a window `w`, each store also keeps a copy of the
//!   value for `timeout + w`; a waiter whose holder started recomputing less than `w` ago gets that
//!   previous copy at once instead of waiting. **That copy may be stale** (the very reason it is
//!   being recomputed): enable it only where serving a value older than the latest write is
//!   acceptable for up to `w`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::cache::{Cache, Lookup, Query};
use crate::error::Error;

/// Dog-pile settings of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOpts {
    /// Whether the lock applies.
    pub lock: bool,
    /// How long a waiter waits before computing by itself.
    pub wait: Duration,
    /// Serve-stale window (see the [module docs](self)): `None` (the default) never serves stale.
    pub stale: Option<Duration>,
}

impl LockOpts {
    /// The lock on or off, waiting at most `wait`, never serving stale values.
    pub fn new(lock: bool, wait: Duration) -> Self {
        LockOpts { lock, wait, stale: None }
    }
    /// Serves the previous value to waiters for up to `window` after recomputation started.
    #[must_use]
    pub fn serve_stale(mut self, window: Duration) -> Self {
        self.stale = Some(window);
        self
    }
}

/// Default bounded wait.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Slot {
    notify: Notify,
    done: AtomicBool,
    started: Instant,
}

/// The locks of one cache.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    local: Mutex<HashMap<String, Arc<Slot>>>,
    remote: Option<RemoteLock>,
    /// The shared lock's expiry (a crashed holder's lock goes away).
    pub(crate) ttl: Duration,
}

impl Locks {
    pub(crate) fn new(remote: Option<RemoteLock>, ttl: Duration) -> Self {
        Locks { local: Mutex::new(HashMap::new()), remote, ttl }
    }
}

pub(crate) use crate::remote_lock::RemoteLock;

/// Holding the lock of one key. Dropping it (also while unwinding from a panic) wakes the
/// in-process waiters; the Redis lock is released in the background.
pub(crate) struct Guard {
    cache: Cache,
    hash: String,
    slot: Arc<Slot>,
    pub(crate) remote_token: Option<String>,
    released: bool,
}

impl Guard {
    fn release_local(&mut self) {
        let locks = &self.cache.inner.locks;
        let mut map = locks.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(&self.hash).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            map.remove(&self.hash);
        }
        drop(map);
        self.slot.done.store(true, Ordering::Release);
        self.slot.notify.notify_waiters();
    }

    pub(crate) async fn release(mut self) {
        self.released = true;
        if let (Some(token), Some(remote)) = (self.remote_token.take(), &self.cache.inner.locks.remote) {
            let ks = self.cache.keys();
            let lock_key = ks.lock(&self.hash);
            remote.release(&self.cache, &lock_key, &format!("{lock_key}:signal"), &token).await;
        }
        self.release_local();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.release_local();
        if let Some(token) = self.remote_token.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let cache = self.cache.clone();
            let hash = std::mem::take(&mut self.hash);
            handle.spawn(async move {
                if let Some(remote) = &cache.inner.locks.remote {
                    let lock_key = cache.keys().lock(&hash);
                    remote.release(&cache, &lock_key, &format!("{lock_key}:signal"), &token).await;
                }
            });
        }
    }
}

pub(crate) enum Acquired {
    /// Compute, store, release.
    Held(Guard),
    /// Another caller finished: look up again.
    Woken,
    /// The bounded wait is over: compute without the lock.
    TimedOut,
    /// The previous value (serve-stale).
    Stale(Vec<u8>),
}

fn stale_key(cache: &Cache, hash: &str) -> String {
    cache.keys().simple(&format!("s:{hash}"))
}

pub(crate) async fn stale_copy(cache: &Cache, hash: &str) -> Option<Vec<u8>> {
    cache.gate(cache.inner.backend.get(&stale_key(cache, hash))).await.ok().flatten()
}

/// Keeps the copy served by serve-stale.
pub(crate) async fn keep_stale_copy(cache: &Cache, hash: &str, data: &[u8], timeout: Duration, window: Duration) {
    let ttl = cacheops_core::time::cap(timeout.saturating_add(window));
    if let Err(e) = cache.gate(cache.inner.backend.set(&stale_key(cache, hash), data, Some(ttl))).await {
        tracing::debug!(error = %e, "cacheops could not keep a serve-stale copy");
    }
}

/// Takes the lock of `hash`, or waits for its holder.
pub(crate) async fn acquire(cache: &Cache, hash: &str, deadline: Instant, stale: Option<Duration>) -> Acquired {
    let locks = &cache.inner.locks;
    let existing = {
        let mut map = locks.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(hash) {
            Some(s) => Err(Arc::clone(s)),
            None => {
                let s = Arc::new(Slot { notify: Notify::new(), done: AtomicBool::new(false), started: Instant::now() });
                map.insert(hash.to_owned(), Arc::clone(&s));
                Ok(s)
            }
        }
    };
    let slot = match existing {
        Err(slot) => {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if slot.done.load(Ordering::Acquire) {
                return Acquired::Woken;
            }
            if let Some(w) = stale
                && slot.started.elapsed() <= w
                && let Some(b) = stale_copy(cache, hash).await
            {
                return Acquired::Stale(b);
            }
            return match tokio::time::timeout_at(deadline.into(), notified).await {
                Ok(()) => Acquired::Woken,
                Err(_) => Acquired::TimedOut,
            };
        }
        Ok(slot) => slot,
    };
    let guard = Guard { cache: cache.clone(), hash: hash.to_owned(), slot, remote_token: None, released: false };
    let Some(remote) = &locks.remote else { return Acquired::Held(guard) };
    remote.acquire(cache, guard, hash, deadline, stale).await
}

/// Lookup → (hit: decode) / (miss: lock, compute, store) / (bypass: compute), with the lock and
/// serve-stale settings of `opts`. `compute` returns the value and its bytes. After taking the
/// lock the cache is checked again: a holder that finished just before is not recomputed.
pub(crate) async fn fetch<T, E, F, Fut>(
    cache: &Cache,
    q: &Query,
    opts: &LockOpts,
    decode: impl Fn(&[u8]) -> Option<T>,
    compute: F,
) -> Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(T, Vec<u8>), E>>,
    E: From<Error>,
{
    // A hit is decided here; everything else (lock, compute, store) runs in a boxed future, so
    // that the hit path's future stays small (a miss queries the database anyway).
    let first = cache.lookup(q).await?;
    if let Lookup::Hit(bytes) = &first
        && let Some(v) = decode(bytes)
    {
        return Ok(v);
    }
    Box::pin(fetch_slow(cache, q, opts, decode, compute, first)).await
}

/// [`fetch`] after a first lookup that was not a decodable hit.
async fn fetch_slow<T, E, F, Fut>(
    cache: &Cache,
    q: &Query,
    opts: &LockOpts,
    decode: impl Fn(&[u8]) -> Option<T>,
    compute: F,
    first: Lookup,
) -> Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(T, Vec<u8>), E>>,
    E: From<Error>,
{
    let deadline = cacheops_core::time::deadline(Instant::now(), opts.wait);
    let mut guard: Option<Guard> = None;
    let mut next = Some(first);
    loop {
        let lookup = match next.take() {
            Some(l) => l,
            None => match cache.lookup(q).await {
                Ok(l) => l,
                Err(e) => {
                    release(guard).await;
                    return Err(e.into());
                }
            },
        };
        match lookup {
            Lookup::Hit(bytes) => {
                if let Some(v) = decode(&bytes) {
                    release(guard).await;
                    return Ok(v);
                }
                tracing::warn!(hash = %q.hash, "cacheops: a cached value could not be decoded; dropping it");
                let key = cache.value_key(&crate::cache::Shape::of(&q.deps), &q.hash);
                let _ = cache.gate(cache.inner.backend.delete(&key)).await;
                let out = compute().await.map(|(v, _)| v);
                release(guard).await;
                return out;
            }
            Lookup::Bypass(_) => {
                let out = compute().await.map(|(v, _)| v);
                release(guard).await;
                return out;
            }
            Lookup::Miss(ticket) => {
                if guard.is_some() || !opts.lock || Instant::now() >= deadline {
                    let out = match compute().await {
                        Ok((v, bytes)) => {
                            let stored = cache.store(ticket, &bytes).await;
                            if matches!(stored, Ok(true))
                                && let Some(w) = opts.stale
                            {
                                keep_stale_copy(cache, &q.hash, &bytes, q.timeout, w).await;
                            }
                            stored.map(|_| v).map_err(E::from)
                        }
                        Err(e) => Err(e),
                    };
                    release(guard).await;
                    return out;
                }
                match acquire(cache, &q.hash, deadline, opts.stale).await {
                    // Check again under the lock.
                    Acquired::Held(g) => guard = Some(g),
                    Acquired::Woken => {}
                    Acquired::TimedOut => {
                        let (v, bytes) = compute().await?;
                        cache.store(ticket, &bytes).await?;
                        return Ok(v);
                    }
                    Acquired::Stale(bytes) => {
                        if let Some(v) = decode(&bytes) {
                            return Ok(v);
                        }
                        let (v, bytes) = compute().await?;
                        cache.store(ticket, &bytes).await?;
                        return Ok(v);
                    }
                }
            }
        }
    }
}

/// Releases a held lock, if any.
pub(crate) async fn release(guard: Option<Guard>) {
    if let Some(g) = guard {
        g.release().await;
    }
}
