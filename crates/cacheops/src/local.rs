//! `local_get`: bounded copies of values in process, served only after the backend confirms
//! their stamps (one read-check of a key that is never stored).

use std::sync::Arc;
use std::time::Duration;

use cacheops_core::protocol::{BypassReason, ReadReply, ReadRequest};

use crate::cache::{Cache, Lookup, MissTicket};
use crate::error::Error;

/// The value key of the `local_get` probe: never stored, so reading it returns current stamps.
pub(crate) const LOCAL_PROBE: &str = "local-get-probe";

/// How many `local_get` copies a process keeps.
pub(crate) const LOCAL_ENTRIES: usize = 10_000;

/// One `local_get` copy: the stamps it was stored with and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct LocalEntry {
    pub(crate) stamps: String,
    pub(crate) data: Arc<[u8]>,
}

/// The bounded in-process copies of `local_get` values.
pub(crate) struct LocalCopies {
    map: std::sync::Mutex<lru::LruCache<String, LocalEntry>>,
}

impl LocalCopies {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = std::num::NonZeroUsize::new(cap.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        LocalCopies { map: std::sync::Mutex::new(lru::LruCache::new(cap)) }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, LocalEntry>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub(crate) fn get(&self, key: &str) -> Option<LocalEntry> {
        self.lock().get(key).cloned()
    }
    pub(crate) fn put(&self, key: String, stamps: String, data: &[u8]) {
        self.lock().put(key, LocalEntry { stamps, data: Arc::from(data) });
    }
    pub(crate) fn remove(&self, key: &str) {
        self.lock().pop(key);
    }
    /// Number of copies held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Cache {
    /// Number of `local_get` copies held in this process.
    pub fn local_copies(&self) -> usize {
        self.inner.local.len()
    }
}

impl Cache {
    /// A lookup that found a local copy: its stamps are checked with a probe read-check. `Ok`:
    /// the answer (a hit of the copy, a miss, a bypass); `Err`: read the shared value instead.
    pub(crate) async fn lookup_local(
        &self,
        mut req: ReadRequest,
        entry: LocalEntry,
        timeout: Duration,
    ) -> Result<Result<Lookup, ReadRequest>, Error> {
        // Check the local copy's stamps: a read-check of a key that is never stored returns
        // the current stamps (a miss) without transferring any value.
        let probe = cacheops_core::keys::sibling_value(&req.value_key, LOCAL_PROBE);
        let value_key = std::mem::replace(&mut req.value_key, probe);
        match self.backend_read(&req).await {
            Ok(ReadReply::Miss(stamps)) => {
                self.inner.health.succeeded();
                if stamps.0 == entry.stamps {
                    self.count(|c| &c.hits);
                    return Ok(Ok(Lookup::Hit(entry.data.to_vec())));
                }
                self.inner.local.remove(&value_key);
                self.count(|c| &c.misses);
                req.value_key = value_key;
                Ok(Ok(Lookup::Miss(MissTicket { req, stamps, ttl: timeout, local: true })))
            }
            Ok(ReadReply::Bypass(reason)) => {
                self.inner.health.succeeded();
                Ok(Ok(self.bypass(reason)))
            }
            // Never stored, so never a hit; read the shared value.
            Ok(ReadReply::Hit(_)) => {
                req.value_key = value_key;
                Ok(Err(req))
            }
            Err(e) => {
                self.backend_failed(e)?;
                Ok(Ok(self.bypass(BypassReason::Unavailable)))
            }
        }
    }
}
