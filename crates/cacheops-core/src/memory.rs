//! The in-process backend: the stamp protocol in one process's memory, bounded.
//!
//! It is the default when no Redis is configured, and the reference implementation of the
//! [`Backend`] algorithms (the Redis scripts are translations of this file).

use crate::time::deadline;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::protocol::{
    Backend, BackendError, BypassReason, ReadReply, ReadRequest, Stamps, WriteRequest, affected_keys, split_value,
};

/// Default number of cached values (and simple-cache entries) kept in process.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    expires: Option<Instant>,
}

/// A stamp key's content.
#[derive(Debug, Clone)]
enum Content {
    /// A random stamp.
    Stamp(String),
    /// A write-lease marker: each writer id with its own lease expiry. The marker is *live*
    /// while at least one entry has not expired; a marker with no live entry is treated as
    /// absent by every operation (and removed when touched).
    Marker(Vec<(String, Instant)>),
}

impl Content {
    fn is_marker(&self) -> bool {
        matches!(self, Content::Marker(_))
    }
}

/// The placeholder a marker contributes to a (discarded) stamp vector: markers never leave the
/// backend, a read that meets one answers `Bypass`.
const MARKER_PLACEHOLDER: &str = "!";

#[derive(Debug)]
struct Stamp {
    content: Content,
    /// The key's own TTL (stamps only; markers carry their expiry per entry and have none, so
    /// that nothing but their own lease can end them).
    expires: Option<Instant>,
}

impl Stamp {
    /// Whether the key still exists as far as the protocol is concerned: its TTL has not run out
    /// and, for a marker, some entry is live.
    fn alive(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
            && match &self.content {
                Content::Stamp(_) => true,
                Content::Marker(entries) => entries.iter().any(|(_, exp)| *exp > now),
            }
    }
}

/// Stamp keys, split into shards that grow (rehash) and are swept one at a time, so that no
/// single call holds the backend's lock for long however many stamps there are: a map of
/// millions rehashes for hundreds of milliseconds, one shard of it for a few.
#[derive(Debug)]
struct StampMap {
    shards: Vec<HashMap<String, Stamp>>,
    len: usize,
    /// The next shard [`State::bound_stamps`] sweeps.
    sweep: usize,
}

const STAMP_SHARDS: usize = 64;

impl StampMap {
    fn new() -> Self {
        StampMap { shards: (0..STAMP_SHARDS).map(|_| HashMap::new()).collect(), len: 0, sweep: 0 }
    }

    fn shard_of(key: &str) -> usize {
        // FNV-1a: cheap and stable; only spreads keys over shards.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % STAMP_SHARDS as u64) as usize
    }

    fn shard(&self, key: &str) -> &HashMap<String, Stamp> {
        &self.shards[Self::shard_of(key)]
    }

    fn shard_mut(&mut self, key: &str) -> &mut HashMap<String, Stamp> {
        &mut self.shards[Self::shard_of(key)]
    }

    fn get(&self, key: &str) -> Option<&Stamp> {
        self.shard(key).get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Stamp> {
        self.shard_mut(key).get_mut(key)
    }

    fn insert(&mut self, key: String, stamp: Stamp) {
        if self.shard_mut(&key).insert(key, stamp).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, key: &str) {
        if self.shard_mut(key).remove(key).is_some() {
            self.len = self.len.saturating_sub(1);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Sweeps the next shard: drops what is absent already (expired stamps, markers whose
    /// leases all ended), then, while the whole map is over `target`, arbitrary stamps of that
    /// shard (live markers stay). Touches one shard only.
    fn sweep_one(&mut self, now: Instant, target: usize) {
        let i = self.sweep;
        self.sweep = (self.sweep + 1) % STAMP_SHARDS;
        let shard = &mut self.shards[i];
        let before = shard.len();
        shard.retain(|_, s| s.alive(now));
        let mut removed = before - shard.len();
        let excess = self.len.saturating_sub(removed).saturating_sub(target);
        if excess > 0 {
            let victims: Vec<String> =
                shard.iter().filter(|(_, s)| !s.content.is_marker()).map(|(k, _)| k.clone()).take(excess).collect();
            for k in victims {
                shard.remove(&k);
                removed += 1;
            }
        }
        self.len = self.len.saturating_sub(removed);
    }
}

#[derive(Debug)]
struct State {
    values: LruCache<String, Entry>,
    stamps: StampMap,
    schemes: HashMap<String, BTreeMap<String, u64>>,
    writers: HashMap<String, HashMap<String, (u64, Instant)>>,
    /// One counter for every table: a refinement of the per-table counters of Redis (any
    /// order it gives within a table is one they could give).
    seq: u64,
    max_stamps: usize,
    /// Sets of [`Backend::register`].
    registries: HashMap<String, std::collections::BTreeSet<String>>,
}

/// The in-process backend.
///
/// Values (and simple-cache entries) live in an LRU bounded by entry count; stamps are bounded
/// too (expired ones are purged, then arbitrary stamps are dropped — which can only cause misses).
/// Markers and writer records are never dropped before their lease ends: like in Redis, a
/// marker carries one expiry per writer and no TTL of its own, and a marker whose entries have
/// all expired is treated as absent by every operation and removed when touched.
///
/// ```
/// # tokio_test_shim::run(async {
/// use cacheops_core::MemoryBackend;
/// use cacheops_core::protocol::Backend;
/// let b = MemoryBackend::new(1000);
/// b.set("k", b"v", None).await.unwrap();
/// assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
/// # });
/// # mod tokio_test_shim { pub fn run<F: std::future::Future>(f: F) -> F::Output {
/// #   tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
/// ```
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

impl MemoryBackend {
    /// A backend holding at most `max_entries` values (at least 1).
    pub fn new(max_entries: usize) -> Self {
        let cap = NonZeroUsize::new(max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        MemoryBackend {
            state: Mutex::new(State {
                values: LruCache::new(cap),
                stamps: StampMap::new(),
                schemes: HashMap::new(),
                writers: HashMap::new(),
                seq: 0,
                registries: HashMap::new(),
                max_stamps: max_entries.max(1).saturating_mul(4).max(1024),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters for safety more than losing it would; recover the guard.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of cached values and simple entries currently held (expired ones included until
    /// they are touched or evicted).
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of stamp keys (stamps and markers) held.
    pub fn stamp_count(&self) -> usize {
        self.lock().stamps.len()
    }
}

impl State {
    /// The key's content, or `None` when it is absent, its TTL ran out or it is a marker whose
    /// entries have all expired (such a key is removed: the lazy cleanup of leases that ended
    /// without a finish).
    fn get_stamp(&mut self, key: &str, now: Instant) -> Option<Content> {
        match self.stamps.get(key) {
            Some(s) if s.alive(now) => Some(s.content.clone()),
            Some(_) => {
                self.stamps.remove(key);
                None
            }
            None => None,
        }
    }

    fn set_stamp(&mut self, key: &str, value: String, ttl: Option<Duration>, now: Instant) {
        self.bound_stamps(now);
        self.stamps
            .insert(key.to_owned(), Stamp { content: Content::Stamp(value), expires: ttl.map(|t| deadline(now, t)) });
    }

    fn bound_stamps(&mut self, now: Instant) {
        if self.stamps.len() < self.max_stamps {
            return;
        }
        // One shard per call: expired stamps and ended markers go (they are absent already),
        // then stamps of that shard until the map is back under the bound. Dropping a stamp only
        // makes the values that depend on it miss. Live markers stay (like Redis under
        // `volatile-*`: a marker has no TTL, so it is never evicted).
        let target = self.max_stamps.saturating_sub(self.max_stamps / 8);
        self.stamps.sweep_one(now, target);
    }

    fn get_value(&mut self, key: &str, now: Instant) -> Option<&Entry> {
        let expired = self.values.peek(key).is_some_and(|e| e.expires.is_some_and(|x| x <= now));
        if expired {
            self.values.pop(key);
            return None;
        }
        self.values.get(key)
    }

    /// Drops expired entries from a writers hash (the hash goes when none is left) and returns
    /// the live writers' mark sequence numbers.
    fn live_writers(&mut self, key: &str, now: Instant) -> Vec<u64> {
        let Some(ws) = self.writers.get_mut(key) else { return Vec::new() };
        ws.retain(|_, (_, expiry)| *expiry > now);
        let live = ws.values().map(|(seq, _)| *seq).collect();
        if ws.is_empty() {
            self.writers.remove(key);
        }
        live
    }

    fn schemes_of(&self, key: &str) -> Vec<String> {
        self.schemes.get(key).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Adds `writer` (expiry `now + lease`, never lowering its current one) to the key's marker;
    /// a stamp, nothing or a marker whose entries all expired becomes a new marker. Expired
    /// entries of other writers are dropped. The marker has no TTL.
    fn add_marker(&mut self, key: &str, writer: &str, lease: Duration, now: Instant) {
        let expiry = deadline(now, lease);
        let mut entries = match self.get_stamp(key, now) {
            Some(Content::Marker(entries)) => entries,
            _ => {
                self.bound_stamps(now);
                Vec::new()
            }
        };
        entries.retain(|(_, exp)| *exp > now);
        match entries.iter_mut().find(|(id, _)| id == writer) {
            Some((_, exp)) => *exp = (*exp).max(expiry),
            None => entries.push((writer.to_owned(), expiry)),
        }
        self.stamps.insert(key.to_owned(), Stamp { content: Content::Marker(entries), expires: None });
    }

    /// Removes `writer`'s entry (and the expired ones) from the marker at `key`, if it holds
    /// one; a stamp is left alone.
    fn release_marker(&mut self, key: &str, writer: &str, now: Instant) {
        if matches!(self.get_stamp(key, now), Some(Content::Marker(_))) {
            self.clear_key(key, Some(writer), now);
        }
    }

    /// `finish` on one key: absent (or an expired marker) ⇒ nothing left; a stamp ⇒ deleted; a
    /// live marker ⇒ without `writer` (and without expired entries), deleted when no live entry
    /// is left. With no writer a live marker is left alone.
    fn clear_key(&mut self, key: &str, writer: Option<&str>, now: Instant) {
        let Some(content) = self.get_stamp(key, now) else { return };
        let Content::Marker(mut entries) = content else {
            self.stamps.remove(key);
            return;
        };
        let Some(writer) = writer else { return };
        entries.retain(|(id, exp)| *exp > now && id != writer);
        if entries.is_empty() {
            self.stamps.remove(key);
        } else if let Some(s) = self.stamps.get_mut(key) {
            s.content = Content::Marker(entries);
        }
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn read(&self, req: &ReadRequest) -> Result<ReadReply, BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        let mut stamps: Vec<String> = Vec::new();
        let mut pending = false;
        // The epoch: each table's copy, or the namespace's for a value that reads no table.
        let epoch = |st: &mut State, key: &str, pending: &mut bool| match st.get_stamp(key, now) {
            Some(Content::Stamp(e)) => e,
            Some(Content::Marker(_)) => {
                *pending = true;
                MARKER_PLACEHOLDER.to_owned()
            }
            None => {
                st.set_stamp(key, req.new_stamp.clone(), None, now);
                req.new_stamp.clone()
            }
        };
        if req.tables.is_empty() {
            stamps.push(epoch(&mut st, &req.epoch_key, &mut pending));
        }
        for t in req.tables.iter() {
            stamps.push(epoch(&mut st, &t.epoch_key, &mut pending));
            let registered = st.schemes.contains_key(&t.schemes_key);
            let ts = match st.get_stamp(&t.table_key, now) {
                Some(Content::Marker(_)) => {
                    pending = true;
                    MARKER_PLACEHOLDER.to_owned()
                }
                Some(Content::Stamp(s)) if registered => s,
                _ => {
                    st.set_stamp(&t.table_key, req.new_stamp.clone(), None, now);
                    req.new_stamp.clone()
                }
            };
            stamps.push(ts);
            for c in &t.conjs {
                let cs = match st.get_stamp(&c.key, now) {
                    Some(Content::Stamp(s)) => s,
                    Some(Content::Marker(_)) => {
                        pending = true;
                        MARKER_PLACEHOLDER.to_owned()
                    }
                    None => {
                        st.set_stamp(&c.key, req.new_stamp.clone(), Some(req.conj_ttl), now);
                        req.new_stamp.clone()
                    }
                };
                stamps.push(cs);
            }
        }
        let joined = stamps.join(" ");
        if !pending
            && let Some(entry) = st.get_value(&req.value_key, now)
            && let Some((header, data)) = split_value(&entry.data)
            && header == joined.as_bytes()
        {
            return Ok(ReadReply::Hit(data.to_vec()));
        }
        let mut new_scheme = false;
        let mut reset = false;
        for t in req.tables.iter() {
            let live = st.live_writers(&t.writers_key, now);
            for c in &t.conjs {
                let existing = st.schemes.get(&t.schemes_key).and_then(|m| m.get(&c.scheme)).copied();
                let seq = match existing {
                    Some(s) => s,
                    None => {
                        let full = st.schemes.get(&t.schemes_key).map_or(0, BTreeMap::len);
                        if req.max_schemes > 0 && full >= req.max_schemes as usize {
                            // The registry is full: reset the table (every value of it dies).
                            st.schemes.remove(&t.schemes_key);
                            if !matches!(st.get_stamp(&t.table_key, now), Some(Content::Marker(_))) {
                                st.set_stamp(&t.table_key, format!("{}r", req.new_stamp), None, now);
                            }
                            reset = true;
                        }
                        st.seq += 1;
                        let seq = st.seq;
                        st.schemes.entry(t.schemes_key.clone()).or_default().insert(c.scheme.clone(), seq);
                        seq
                    }
                };
                if live.iter().any(|mark| *mark < seq) {
                    new_scheme = true;
                }
            }
        }
        if reset {
            return Ok(ReadReply::Bypass(BypassReason::SchemeCap));
        }
        if new_scheme {
            return Ok(ReadReply::Bypass(BypassReason::NewScheme));
        }
        if pending {
            return Ok(ReadReply::Bypass(BypassReason::Pending));
        }
        Ok(ReadReply::Miss(Stamps(joined)))
    }

    async fn store(
        &self,
        req: &ReadRequest,
        stamps: &Stamps,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        let mut current = Vec::new();
        for key in req.stamp_keys() {
            // A marker (live or not) or a missing key never equals a stamp.
            match st.get_stamp(key, now) {
                Some(Content::Stamp(s)) => current.push(s),
                Some(Content::Marker(_)) | None => return Ok(false),
            }
        }
        if current.join(" ") != stamps.0 {
            return Ok(false);
        }
        let mut stored = Vec::with_capacity(stamps.0.len() + 1 + data.len());
        stored.extend_from_slice(stamps.0.as_bytes());
        stored.push(b'\n');
        stored.extend_from_slice(data);
        let value_until = deadline(now, ttl);
        let conj_until = deadline(now, req.conj_ttl);
        st.values.put(req.value_key.clone(), Entry { data: stored, expires: Some(value_until) });
        for t in req.tables.iter() {
            for c in &t.conjs {
                if let Some(s) = st.stamps.get_mut(&c.key)
                    && !s.content.is_marker()
                    && s.expires.is_some_and(|e| e < value_until)
                {
                    s.expires = Some(conj_until);
                }
            }
        }
        Ok(true)
    }

    async fn mark(&self, req: &WriteRequest) -> Result<(), BackendError> {
        let Some(writer) = req.writer.as_deref() else {
            return Err(BackendError::new("mark needs a writer id"));
        };
        let now = Instant::now();
        let mut st = self.lock();
        let seq = st.seq;
        for t in req.tables.iter() {
            let schemes = st.schemes_of(&t.schemes_key);
            for key in affected_keys(t, &schemes) {
                st.add_marker(&key, writer, req.lease, now);
            }
            st.live_writers(&t.writers_key, now); // drops expired records
            st.writers
                .entry(t.writers_key.clone())
                .or_default()
                .insert(writer.to_owned(), (seq, deadline(now, req.lease)));
        }
        Ok(())
    }

    async fn finish(&self, req: &WriteRequest) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        for t in req.tables.iter() {
            let schemes = st.schemes_of(&t.schemes_key);
            let keys = affected_keys(t, &schemes);
            for key in &keys {
                st.clear_key(key, req.writer.as_deref(), now);
            }
            if let Some(w) = req.writer.as_deref() {
                if !keys.contains(&t.table_key) {
                    st.release_marker(&t.table_key, w, now);
                }
                if let Some(ws) = st.writers.get_mut(&t.writers_key) {
                    ws.remove(w);
                }
            }
            st.live_writers(&t.writers_key, now); // drops expired records, and an empty hash
        }
        Ok(())
    }

    async fn delete_stamps(&self, keys: &[String]) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        for key in keys {
            st.clear_key(key, None, now);
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        Ok(st.get_value(key, now).map(|e| e.data.clone()))
    }

    async fn set(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.values.put(key.to_owned(), Entry { data: data.to_vec(), expires: ttl.map(|t| deadline(now, t)) });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, BackendError> {
        Ok(self.lock().values.pop(key).is_some())
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn register(&self, registry: &str, members: &[String]) -> Result<(), BackendError> {
        self.lock().registries.entry(registry.to_owned()).or_default().extend(members.iter().cloned());
        Ok(())
    }

    async fn registered(&self, registry: &str) -> Result<Vec<String>, BackendError> {
        Ok(self.lock().registries.get(registry).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConjRef, TableRead};

    fn read_req(i: usize) -> ReadRequest {
        ReadRequest {
            value_key: format!("v{i}"),
            epoch_key: "e".into(),
            seq_key: "n".into(),
            tables: vec![TableRead {
                epoch_key: "te".into(),
                seq_key: "tn".into(),
                table_key: "t".into(),
                schemes_key: "s".into(),
                writers_key: "w".into(),
                conjs: vec![ConjRef { scheme: "id".into(), key: format!("c:id={i}") }],
            }]
            .into(),
            new_stamp: format!("n{i}"),
            conj_ttl: Duration::from_secs(60),
            max_schemes: 0,
        }
    }

    /// Stamps stay bounded (swept one shard at a time), and what is dropped only causes misses.
    #[test]
    fn stamps_are_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let b = MemoryBackend::new(100); // at most 1 024 stamps
            let max = b.lock().max_stamps;
            for i in 0..20_000 {
                let req = read_req(i);
                if let ReadReply::Miss(s) = b.read(&req).await.expect("read") {
                    b.store(&req, &s, b"x", Duration::from_secs(60)).await.expect("store");
                }
                assert!(b.stamp_count() <= max + 1, "{} stamps", b.stamp_count());
            }
            // The recent ones still hit; anything older is a miss, never a wrong value.
            let recent = read_req(19_999);
            assert!(matches!(b.read(&recent).await.expect("read"), ReadReply::Hit(_)));
        });
    }
}
