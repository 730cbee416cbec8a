//! The cache engine: lookups, stores, write leases, explicit invalidation, health.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cacheops_core::keys::{conj_ttl, hash_parts};
use cacheops_core::protocol::{
    Backend, BackendError, BypassReason, ConjRef, ReadReply, ReadRequest, Stamps, TableRead, TableWrite, WriteRequest,
};
use cacheops_core::{Analysis, Analyzer, Dependencies, KeySpace, Profiles, Row, Value};

use crate::error::Error;
use crate::events::{InvalidateEvent, ReadEvent, ReadOutcome, ReadSource, Subscribers};
use crate::health::{Health, Pending};
use crate::lease::MarkFailure;
use crate::lock::Locks;
use crate::scope::invalidation_suppressed;

/// Counters of what the cache did, for stats and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that went to the database and may store.
    pub misses: u64,
    /// Lookups that went to the database and may not store (leases, outages, fences, disabled).
    pub bypasses: u64,
    /// Values stored.
    pub stores: u64,
    /// Stores refused because a dependency changed meanwhile.
    pub refused_stores: u64,
    /// Backend errors seen.
    pub errors: u64,
    /// Invalidations delivered late (replayed after an outage).
    pub replayed: u64,
    /// Times the cache fenced itself (replaced its epoch) after losing invalidations.
    pub fences: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    bypasses: AtomicU64,
    stores: AtomicU64,
    refused_stores: AtomicU64,
    pub(crate) errors: AtomicU64,
    replayed: AtomicU64,
    fences: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    /// The registry and epoch keys of every prefix this cache has served (a fence deletes every
    /// epoch of each: the namespace's and its tables' copies).
    pub(crate) namespaces: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Table epoch keys known to be in their namespace's registry (`KeySpace::registry`).
    pub(crate) registered: std::sync::RwLock<std::collections::HashSet<String>>,
    pub(crate) profiles: Profiles,
    pub(crate) analyzer: Analyzer,
    pub(crate) health: Health,
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    pub(crate) degrade: bool,
    pub(crate) enabled: bool,
    pub(crate) lease: Duration,
    pub(crate) default_timeout: Duration,
    pub(crate) unmarked: AtomicUsize,
    pub(crate) mark_failure: MarkFailure,
    /// A background task replays the queue (see [`Cache::replay_soon`]).
    pub(crate) replayer: AtomicBool,
    pub(crate) subscribers: Subscribers,
    pub(crate) locks: Locks,
    pub(crate) lock_wait: Duration,
    pub(crate) max_preimage_rows: usize,
    pub(crate) max_schemes: u32,
    pub(crate) local: crate::local::LocalCopies,
    /// Recorded dependency shapes of `auto` functions, by their backend key: a copy in process
    /// saves a round trip per hit. Never a stale hit: a hit needs the value's stamps to equal
    /// the current stamps of the shape used, so an outdated shape can only cause a miss.
    pub(crate) shapes: std::sync::Mutex<lru::LruCache<String, Shape>>,
    pub(crate) counters: Counters,
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        keys: KeySpace,
        profiles: Profiles,
        analyzer: Analyzer,
        health: Health,
        degrade: bool,
        enabled: bool,
        lease: Duration,
        default_timeout: Duration,
        subscribers: Subscribers,
        locks: Locks,
        lock_wait: Duration,
        mark_failure: MarkFailure,
        max_preimage_rows: usize,
        max_schemes: u32,
    ) -> Self {
        Inner {
            backend,
            namespaces: std::sync::Mutex::new(std::iter::once((keys.registry(), keys.epoch())).collect()),
            registered: std::sync::RwLock::new(std::collections::HashSet::new()),
            profiles,
            analyzer,
            health,
            sync_lock: tokio::sync::Mutex::new(()),
            degrade,
            enabled,
            lease,
            default_timeout,
            unmarked: AtomicUsize::new(0),
            mark_failure,
            replayer: AtomicBool::new(false),
            subscribers,
            locks,
            lock_wait,
            max_preimage_rows,
            max_schemes,
            local: crate::local::LocalCopies::new(crate::local::LOCAL_ENTRIES),
            shapes: std::sync::Mutex::new(lru::LruCache::new(SHAPE_ENTRIES)),
            counters: Counters::default(),
        }
    }
}

/// How many `auto` shapes a process keeps (see [`Inner::shapes`]).
const SHAPE_ENTRIES: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

/// The cache: cheap to clone (an `Arc` inside), shared by every integration.
///
/// Build one with [`Cache::builder`]. A read goes [`Cache::lookup`] → (on a miss: query the
/// database) → [`Cache::store`]; [`Cache::get_or_compute`] does all three. A write takes a
/// [`WriteLease`] before it executes and finishes it after commit.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cacheops::{Cache, Dependencies, Dnf, Conj, Value, Row};
/// let cache = Cache::builder().build().await.unwrap();          // in-process backend
/// let mut deps = Dependencies::new();
/// let conj = Conj::from_terms([("category_id", Value::Int(3))]).unwrap();
/// deps.add("post", Dnf::from_conjs([conj], 64), 64);
/// let q = cache.query(b"posts in category 3", deps);
///
/// let v = cache.get_or_compute(&q, || async { Ok::<_, cacheops::Error>(b"3 posts".to_vec()) }).await.unwrap();
/// assert_eq!(v, b"3 posts");
/// assert_eq!(cache.stats().misses, 1);
/// cache.get_or_compute(&q, || async { Ok::<_, cacheops::Error>(b"unused".to_vec()) }).await.unwrap();
/// assert_eq!(cache.stats().hits, 1);
///
/// // A row with category_id = 3 changes: the cached query is dropped.
/// let row: Row = [("id".to_owned(), Value::Int(7)), ("category_id".to_owned(), Value::Int(3))].into();
/// cache.invalidate_rows("post", &[row]).await.unwrap();
/// cache.get_or_compute(&q, || async { Ok::<_, cacheops::Error>(b"4 posts".to_vec()) }).await.unwrap();
/// assert_eq!(cache.stats().misses, 2);
/// # });
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
    pub(crate) keys: Arc<KeySpace>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("prefix", &self.keys.base())
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

/// A cacheable read: a hash that identifies its result, what it depends on, and how long it lives.
///
/// Its keys are derived once, on the first lookup, and shared by its clones: keep a `Query`
/// (or a clone) around to make repeated lookups of the same read cheaper.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) hash: String,
    pub(crate) deps: Dependencies,
    pub(crate) timeout: Duration,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) local: bool,
    pub(crate) prepared: Arc<OnceLock<Prepared>>,
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.deps == other.deps
            && self.timeout == other.timeout
            && self.label == other.label
            && self.local == other.local
    }
}

/// What a lookup of a [`Query`] sends, derived once: its shape and its read-check request
/// (whose `new_stamp` is filled per lookup), for the key space it was derived in.
#[derive(Debug)]
pub(crate) struct Prepared {
    keys: Arc<KeySpace>,
    shape: Shape,
    req: ReadRequest,
}

/// The key-level form of a set of dependencies: per table, its conj keys as (scheme, rendered
/// conj). What a read-check needs; what auto-dependency functions persist.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shape {
    pub(crate) tables: Vec<(String, Vec<(String, String)>)>,
}

impl Shape {
    pub(crate) fn of(deps: &Dependencies) -> Shape {
        Shape {
            tables: deps
                .iter()
                .map(|(t, dnf)| (t.to_owned(), dnf.conjs().iter().map(|c| (c.scheme(), c.rendered())).collect()))
                .collect(),
        }
    }

    pub(crate) fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|(t, _)| t.clone()).collect()
    }
}

impl Query {
    pub(crate) fn new(hash: String, deps: Dependencies, timeout: Duration, label: Option<Arc<str>>) -> Query {
        Query { hash, deps, timeout, label, local: false, prepared: Arc::default() }
    }

    /// The key hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }
    /// The dependencies.
    pub fn dependencies(&self) -> &Dependencies {
        &self.deps
    }
    /// The lifetime of the cached value.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// Overrides the lifetime.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        if timeout != self.timeout {
            self.timeout = timeout;
            // The conj stamps' TTL follows the lifetime: derive the request again.
            self.prepared = Arc::default();
        }
        self
    }
    /// Keeps a copy of this query's value in process (`local_get`): a later lookup checks the
    /// copy's stamps with the backend (one round trip, no value transfer, no decoding) and serves
    /// the copy while they are unchanged — so the copy is invalidated exactly like the shared one.
    #[must_use]
    pub fn with_local(mut self, local: bool) -> Self {
        self.local = local;
        self
    }
    /// Names the read in events ([`ReadSource::Function`]) instead of its hash.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<Arc<str>>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
#[must_use]
pub enum Lookup {
    /// Cached and current.
    Hit(Vec<u8>),
    /// Query the database, then [`Cache::store`] the result with this ticket.
    Miss(MissTicket),
    /// Query the database and do not store.
    Bypass(BypassReason),
}

/// Permission to store a result, carrying the stamps taken before the database was queried.
#[derive(Debug)]
pub struct MissTicket {
    pub(crate) req: ReadRequest,
    pub(crate) stamps: Stamps,
    pub(crate) ttl: Duration,
    pub(crate) local: bool,
}

/// What a write changes in one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    table: String,
    rows: Vec<Row>,
    table_level: bool,
}

impl TableChange {
    /// Rows (old and new states) of a table.
    pub fn rows(table: impl Into<String>, rows: impl IntoIterator<Item = Row>) -> Self {
        TableChange { table: table.into(), rows: rows.into_iter().collect(), table_level: false }
    }
    /// The whole table (unknown rows, bulk writes).
    pub fn table(table: impl Into<String>) -> Self {
        TableChange { table: table.into(), rows: Vec::new(), table_level: true }
    }
    /// The table.
    pub fn table_name(&self) -> &str {
        &self.table
    }
}

fn new_stamp() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn encode_params(params: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * params.len());
    Value::encode_all_into(params, &mut out);
    out
}

impl Cache {
    /// A builder (in-process backend, no prefix, degrade on).
    pub fn builder() -> crate::CacheBuilder {
        crate::CacheBuilder::default()
    }

    /// How long a dog-pile waiter waits for the holder ([`crate::CacheBuilder::lock_wait`]);
    /// integrations use it for their reads.
    pub fn lock_wait(&self) -> Duration {
        self.inner.lock_wait
    }

    /// How many old rows an integration reads before a write ([`crate::CacheBuilder::max_preimage_rows`]).
    pub fn max_preimage_rows(&self) -> usize {
        self.inner.max_preimage_rows
    }

    /// The profiles this cache was built with.
    pub fn profiles(&self) -> &Profiles {
        &self.inner.profiles
    }

    /// The catalog of column classes shared by the analysis and the write path (see
    /// [`cacheops_core::equality`]); integrations install what they load from the database.
    pub fn catalog(&self) -> &Arc<cacheops_core::Catalog> {
        self.inner.analyzer.catalog()
    }

    /// The analyzer (memoised SQL analysis).
    pub fn analyzer(&self) -> &Analyzer {
        &self.inner.analyzer
    }

    /// The key space (prefix).
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The same cache (backend, profiles, health, subscribers) under another key prefix: caches
    /// with different prefixes never see each other's entries, and `invalidate_model`/`all` on
    /// one leave the others alone. Cheap (no connection is opened).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = cacheops::Cache::builder().prefix("app").build().await.unwrap();
    /// let tenant = cache.with_prefix("app-tenant7").unwrap();
    /// assert_eq!(tenant.keys().epoch(), "{co:app-tenant7}:4:e");
    /// assert!(cache.with_prefix("bad{prefix}").is_err());
    /// # });
    /// ```
    pub fn with_prefix(&self, prefix: &str) -> Result<Cache, Error> {
        let keys = KeySpace::new(prefix).map_err(cacheops_core::ConfigError::from)?;
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((keys.registry(), keys.epoch()));
        Ok(Cache { inner: self.inner.clone(), keys: Arc::new(keys) })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Whether caching is enabled (`false`: every lookup bypasses, nothing touches the backend).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            bypasses: c.bypasses.load(Ordering::Relaxed),
            stores: c.stores.load(Ordering::Relaxed),
            refused_stores: c.refused_stores.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            fences: c.fences.load(Ordering::Relaxed),
        }
    }

    /// Number of invalidations waiting to be replayed after a backend outage.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.health.queued()
    }

    /// A query identified by arbitrary bytes (a function name and its arguments, say), depending
    /// on `deps`, living as long as the shortest profile timeout among its tables.
    ///
    /// `deps` are used as given: conjs built by hand with [`cacheops_core::Conj::from_terms`]
    /// carry the untyped rendering ([`Value::render`]), which is the canonical form of integers
    /// but not of text, dates or UUIDs. Dependencies from [`Cache::analyze`] or
    /// [`crate::Dep`] follow the columns' canonical forms ([`cacheops_core::equality`]).
    pub fn query(&self, identity: &[u8], deps: Dependencies) -> Query {
        let hash = hash_parts([b"manual".as_ref(), identity]);
        let timeout = self.timeout_for(&deps);
        Query::new(hash, deps, timeout, None)
    }

    /// Analyses a SQL statement with its binds.
    pub fn analyze(&self, sql: &str, params: &[Value]) -> Result<Analysis, Error> {
        Ok(self.inner.analyzer.analyze(sql, params)?)
    }

    /// The query for a read statement. `db` is the database name (left out of the key when every
    /// table's profile is `db_agnostic`); `shape` distinguishes result forms of the same SQL
    /// (models, JSON, tuples…).
    pub fn sql_query(&self, sql: &str, params: &[Value], analysis: &Analysis, db: &str, shape: &str) -> Query {
        let agnostic = analysis.reads.tables().all(|t| self.inner.profiles.for_table(t).db_agnostic);
        let db = if agnostic { "" } else { db };
        let encoded = encode_params(params);
        let hash = hash_parts([b"sql".as_ref(), sql.as_bytes(), encoded.as_slice(), db.as_bytes(), shape.as_bytes()]);
        let timeout = self.timeout_for(&analysis.reads);
        Query::new(hash, analysis.reads.clone(), timeout, None)
    }

    pub(crate) fn timeout_for(&self, deps: &Dependencies) -> Duration {
        deps.tables()
            .map(|t| self.inner.profiles.for_table(t))
            .filter(|p| p.enabled)
            .map(|p| p.timeout)
            .min()
            .unwrap_or(self.inner.default_timeout)
    }

    /// The key of the value `hash` with the dependencies `shape`: in the slot of its first table.
    pub(crate) fn value_key(&self, shape: &Shape, hash: &str) -> String {
        self.keys.value_of(shape.tables.first().map(|(t, _)| t.as_str()), hash)
    }

    pub(crate) fn shape_request(&self, shape: &Shape, hash: &str, timeout: Duration) -> ReadRequest {
        let ks = &self.keys;
        let value_key = self.value_key(shape, hash);
        let tables = shape
            .tables
            .iter()
            .map(|(table, conjs)| {
                let prefix = ks.conj_prefix(table);
                TableRead {
                    epoch_key: ks.table_epoch(table),
                    seq_key: ks.table_seq(table),
                    table_key: ks.table(table),
                    schemes_key: ks.schemes(table),
                    writers_key: ks.writers(table),
                    conjs: conjs
                        .iter()
                        .map(|(scheme, rendered)| ConjRef {
                            scheme: scheme.clone(),
                            key: format!("{prefix}{rendered}"),
                        })
                        .collect(),
                }
            })
            .collect();
        ReadRequest {
            value_key,
            epoch_key: ks.epoch(),
            seq_key: ks.seq(),
            tables,
            new_stamp: new_stamp(),
            conj_ttl: conj_ttl(timeout),
            max_schemes: self.inner.max_schemes,
        }
    }

    /// A read-check request whose value key is never written: it answers with stamps, never a hit.
    pub(crate) fn probe_request(&self, shape: &Shape) -> ReadRequest {
        self.shape_request(shape, "auto-deps-probe", self.inner.default_timeout)
    }

    /// Sends a probe; `None` when the cache is disabled, unavailable, or out of sync.
    pub(crate) async fn probe(&self, req: &ReadRequest) -> Option<ReadReply> {
        if !self.inner.enabled || !self.inner.health.closed() || self.inner.health.needs_sync() {
            return None;
        }
        if self.inner.unmarked.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.backend_read(req).await {
            Ok(r) => {
                self.inner.health.succeeded();
                Some(r)
            }
            Err(e) => {
                let _ = self.backend_failed(e);
                None
            }
        }
    }

    pub(crate) fn count(&self, f: impl Fn(&Counters) -> &AtomicU64) {
        f(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bypass(&self, reason: BypassReason) -> Lookup {
        self.count(|c| &c.bypasses);
        Lookup::Bypass(reason)
    }

    fn unavailable(&self) -> Result<Lookup, Error> {
        if self.inner.degrade {
            Ok(self.bypass(BypassReason::Unavailable))
        } else {
            Err(BackendError::unavailable("cache backend unavailable (circuit open)").into())
        }
    }

    /// Checks the cache for a query.
    ///
    /// With degrade on (the default), backend trouble makes this a [`Lookup::Bypass`]; after a
    /// failure the circuit stays open for the retry interval, during which no network call is
    /// made. No hit is served while invalidations from an outage wait to be replayed.
    pub async fn lookup(&self, q: &Query) -> Result<Lookup, Error> {
        if !self.inner.enabled {
            return Ok(self.bypass(BypassReason::Unavailable));
        }
        let fresh;
        let prepared = match q.prepared.get() {
            Some(p) if Arc::ptr_eq(&p.keys, &self.keys) => p,
            Some(_) => {
                // Derived by another cache (another prefix): derive for this one, uncached.
                fresh = self.prepare(q);
                &fresh
            }
            None => q.prepared.get_or_init(|| self.prepare(q)),
        };
        let mut req = prepared.req.clone();
        req.new_stamp = new_stamp();
        let source = || match &q.label {
            Some(l) => ReadSource::Function { name: l.to_string() },
            None => ReadSource::Query { hash: q.hash.clone() },
        };
        let function = q.label.is_some();
        self.lookup_request(&prepared.shape, req, q.timeout, (function, source), q.local).await
    }

    /// Derives a query's keys in this cache's key space.
    fn prepare(&self, q: &Query) -> Prepared {
        let shape = Shape::of(&q.deps);
        let mut req = self.shape_request(&shape, &q.hash, q.timeout);
        req.new_stamp = String::new();
        Prepared { keys: Arc::clone(&self.keys), shape, req }
    }

    /// Lookup of a value stored under `hash` with the dependencies `shape`.
    pub(crate) async fn lookup_shape(
        &self,
        shape: &Shape,
        hash: &str,
        timeout: Duration,
        source: ReadSource,
    ) -> Result<Lookup, Error> {
        let req = self.shape_request(shape, hash, timeout);
        let function = matches!(source, ReadSource::Function { .. });
        self.lookup_request(shape, req, timeout, (function, || source), false).await
    }

    /// Lookup with a read-check request derived from `shape` (its value key identifies the value).
    /// `source`: whether the read is a function's, and its [`ReadSource`] (built only when a
    /// subscriber wants it).
    async fn lookup_request(
        &self,
        shape: &Shape,
        req: ReadRequest,
        timeout: Duration,
        (function, source): (bool, impl FnOnce() -> ReadSource),
        local: bool,
    ) -> Result<Lookup, Error> {
        if !self.inner.enabled {
            return Ok(self.bypass(BypassReason::Unavailable));
        }
        let span = tracing::debug_span!("cacheops.lookup", key = %req.value_key);
        let res = tracing::Instrument::instrument(self.lookup_inner(shape, req, timeout, local), span).await;
        if let Ok(l) = &res {
            let outcome = match l {
                Lookup::Hit(_) => ReadOutcome::Hit,
                Lookup::Miss(_) => ReadOutcome::Miss,
                Lookup::Bypass(_) => ReadOutcome::Bypass,
            };
            if self.inner.subscribers.has_read() {
                self.emit_read(&ReadEvent { source: source(), outcome, tables: shape.table_names() });
            } else {
                crate::events::count_read(outcome, function);
            }
        }
        res
    }

    /// Sends a read event to the subscribers and the `metrics` counters (integrations that serve
    /// reads without [`Cache::lookup`], e.g. from a local copy, report them here).
    pub fn emit_read(&self, event: &ReadEvent) {
        self.inner.subscribers.read(event);
    }

    async fn lookup_inner(
        &self,
        shape: &Shape,
        mut req: ReadRequest,
        timeout: Duration,
        local: bool,
    ) -> Result<Lookup, Error> {
        if crate::deps_scope::active() {
            crate::deps_scope::record_shape(self, shape).await;
        }
        if !self.inner.health.closed() {
            return self.unavailable();
        }
        if self.inner.unmarked.load(Ordering::Acquire) > 0 {
            // A write in this process could not take its lease: hits could be stale until it ends.
            return Ok(self.bypass(BypassReason::Pending));
        }
        if self.inner.health.needs_sync() && !self.sync().await? {
            return self.unavailable();
        }
        if local && let Some(entry) = self.inner.local.get(&req.value_key) {
            match self.lookup_local(req, entry, timeout).await? {
                Ok(lookup) => return Ok(lookup),
                Err(shared) => req = shared,
            }
        }
        match self.backend_read(&req).await {
            Ok(ReadReply::Hit(data)) => {
                self.inner.health.succeeded();
                self.count(|c| &c.hits);
                Ok(Lookup::Hit(data))
            }
            Ok(ReadReply::Miss(stamps)) => {
                self.inner.health.succeeded();
                self.count(|c| &c.misses);
                Ok(Lookup::Miss(MissTicket { req, stamps, ttl: timeout, local }))
            }
            Ok(ReadReply::Bypass(reason)) => {
                self.inner.health.succeeded();
                Ok(self.bypass(reason))
            }
            // At `maxmemory` with `noeviction` the read-check cannot register or create what is
            // missing: this read goes to the database, but the server is up (no breaker).
            Err(e) if e.is_out_of_memory() => Ok(self.bypass(BypassReason::Unavailable)),
            Err(e) => {
                self.backend_failed(e)?;
                Ok(self.bypass(BypassReason::Unavailable))
            }
        }
    }

    /// Stores a result computed after a miss. Returns whether it was stored (it is not when a
    /// dependency changed since the lookup: the result may predate that change).
    pub async fn store(&self, ticket: MissTicket, data: &[u8]) -> Result<bool, Error> {
        let stored = self.store_raw(&ticket.req, &ticket.stamps, data, ticket.ttl).await?;
        if stored && ticket.local {
            self.inner.local.put(ticket.req.value_key, ticket.stamps.0, data);
        }
        Ok(stored)
    }

    pub(crate) async fn store_raw(
        &self,
        req: &ReadRequest,
        stamps: &Stamps,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, Error> {
        if !self.inner.enabled || !self.inner.health.closed() || self.inner.health.needs_sync() {
            return Ok(false);
        }
        let span = tracing::debug_span!("cacheops.store", key = %req.value_key, bytes = data.len());
        let res = tracing::Instrument::instrument(self.inner.backend.store(req, stamps, data, ttl), span).await;
        match res {
            Ok(stored) => {
                if stored {
                    self.count(|c| &c.stores);
                    metrics::counter!("cacheops_stores_total").increment(1);
                } else {
                    self.count(|c| &c.refused_stores);
                    metrics::counter!("cacheops_refused_stores_total").increment(1);
                }
                Ok(stored)
            }
            Err(e) if e.is_out_of_memory() => {
                self.count(|c| &c.refused_stores);
                Ok(false)
            }
            Err(e) => {
                self.backend_failed(e)?;
                Ok(false)
            }
        }
    }

    /// Lookup, compute on a miss or bypass, store on a miss. When the profile of any of the
    /// query's tables has `lock: true`, the dog-pile lock applies: on a miss one caller
    /// computes, the others wait (at most the builder's `lock_wait`) for its value.
    pub async fn get_or_compute<F, Fut, E>(&self, q: &Query, compute: F) -> Result<Vec<u8>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: From<Error>,
    {
        let lock = q.deps.tables().any(|t| self.inner.profiles.for_table(t).lock);
        let opts = crate::lock::LockOpts { lock, wait: self.inner.lock_wait, stale: None };
        self.get_or_compute_with(q, opts, compute).await
    }

    /// [`Cache::get_or_compute`] with explicit dog-pile settings (lock on or off, wait,
    /// serve-stale window).
    pub async fn get_or_compute_with<F, Fut, E>(
        &self,
        q: &Query,
        opts: crate::lock::LockOpts,
        compute: F,
    ) -> Result<Vec<u8>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: From<Error>,
    {
        crate::lock::fetch(
            self,
            q,
            &opts,
            |b| Some(b.to_vec()),
            || async move {
                let data = compute().await?;
                Ok((data.clone(), data))
            },
        )
        .await
    }

    /// Replays queued invalidations (and the fence). Returns whether the cache is in sync.
    pub(crate) async fn sync(&self) -> Result<bool, Error> {
        let _guard = self.inner.sync_lock.lock().await;
        if !self.inner.health.needs_sync() {
            return Ok(true);
        }
        let (items, fence) = self.inner.health.take();
        if fence {
            let namespaces: Vec<(String, String)> = self
                .inner
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned()
                .collect();
            let mut fenced = Ok(());
            for (registry, epoch) in &namespaces {
                fenced = self.delete_epochs(registry, epoch).await;
                if fenced.is_err() {
                    break;
                }
            }
            if let Err(e) = fenced {
                self.inner.health.put_back(items, true);
                self.backend_failed(e)?;
                return Ok(false);
            }
            self.count(|c| &c.fences);
            tracing::warn!("cacheops fenced the cache: invalidations were lost during an outage");
            // Everything under the prefix is invalid now; the queued items are covered.
            return Ok(self.inner.health.synced());
        }
        let mut rest = items.into_iter();
        while let Some(item) = rest.next() {
            let res = match &item {
                Pending::Finish(req) => self.inner.backend.finish(req).await,
                Pending::DeleteStamps(keys) => self.inner.backend.delete_stamps(keys).await,
                Pending::InvalidateAll { registry, epoch } => self.delete_epochs(registry, epoch).await,
            };
            if let Err(e) = res {
                let mut back = vec![item];
                back.extend(rest);
                self.inner.health.put_back(back, false);
                self.backend_failed(e)?;
                return Ok(false);
            }
            self.count(|c| &c.replayed);
        }
        self.inner.health.succeeded();
        Ok(self.inner.health.synced())
    }

    /// `changes` and what they change through table inheritance (partitions): a parent's reads
    /// see the rows written to a child; a write to a parent may change any descendant's rows.
    fn with_relatives<'c>(
        catalog: &cacheops_core::CatalogSnapshot,
        changes: &'c [TableChange],
    ) -> std::borrow::Cow<'c, [TableChange]> {
        let mut extra: Vec<TableChange> = Vec::new();
        for c in changes {
            for a in catalog.ancestors(&c.table) {
                extra.push(TableChange { table: a, rows: c.rows.clone(), table_level: c.table_level });
            }
            for d in catalog.descendants(&c.table) {
                extra.push(TableChange::table(d));
            }
        }
        if extra.is_empty() {
            return std::borrow::Cow::Borrowed(changes);
        }
        let mut all = changes.to_vec();
        all.extend(extra);
        std::borrow::Cow::Owned(all)
    }

    pub(crate) fn write_request(&self, writer: Option<String>, changes: &[TableChange]) -> WriteRequest {
        let ks = &self.keys;
        let catalog = self.inner.analyzer.catalog().snapshot();
        let changes = Self::with_relatives(&catalog, changes);
        WriteRequest {
            writer,
            tables: changes
                .iter()
                .map(|c| {
                    // More rows than keys a write may touch: table-level, and the rows are not sent.
                    let over = c.rows.len() > cacheops_core::protocol::MAX_AFFECTED_KEYS;
                    TableWrite {
                        seq_key: ks.table_seq(&c.table),
                        table_key: ks.table(&c.table),
                        schemes_key: ks.schemes(&c.table),
                        writers_key: ks.writers(&c.table),
                        conj_prefix: ks.conj_prefix(&c.table),
                        rows: if over {
                            Vec::new()
                        } else {
                            c.rows.iter().map(|r| catalog.render_row(&c.table, r)).collect()
                        },
                        table_level: c.table_level || over,
                    }
                })
                .collect(),
            lease: self.inner.lease,
        }
    }

    /// Deletes a namespace's epoch and every table's copy of it (those its registry names).
    async fn delete_epochs(&self, registry: &str, epoch: &str) -> Result<(), BackendError> {
        let mut keys = self.inner.backend.registered(registry).await?;
        keys.push(epoch.to_owned());
        self.inner.backend.delete_stamps(&keys).await
    }

    /// Registers the tables of `req` (their epoch keys) in the namespace's registry before
    /// their first read by this process, then reads: `invalidate_all` then reaches every copy
    /// of the epoch a value could carry.
    pub(crate) async fn backend_read(&self, req: &ReadRequest) -> Result<ReadReply, BackendError> {
        // Every read looks: a read lock (nothing is written once the tables are known).
        let missing: Vec<String> = {
            let known = self.inner.registered.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            req.tables.iter().map(|t| &t.epoch_key).filter(|k| !known.contains(*k)).cloned().collect()
        };
        if !missing.is_empty() {
            self.inner.backend.register(&self.keys.registry(), &missing).await?;
            self.inner.registered.write().unwrap_or_else(std::sync::PoisonError::into_inner).extend(missing);
        }
        self.inner.backend.read(req).await
    }

    pub(crate) async fn deliver(&self, pending: Pending) -> Result<(), Error> {
        if !self.inner.enabled {
            return Ok(());
        }
        if self.inner.health.closed() && (!self.inner.health.needs_sync() || self.sync().await?) {
            let res = match &pending {
                Pending::Finish(req) => self.inner.backend.finish(req).await,
                Pending::DeleteStamps(keys) => self.inner.backend.delete_stamps(keys).await,
                Pending::InvalidateAll { registry, epoch } => self.delete_epochs(registry, epoch).await,
            };
            match res {
                Ok(()) => {
                    self.inner.health.succeeded();
                    return Ok(());
                }
                Err(e) => {
                    self.inner.health.queue(pending);
                    self.replay_soon();
                    return self.backend_failed(e);
                }
            }
        }
        self.inner.health.queue(pending);
        self.replay_soon();
        if self.inner.degrade {
            Ok(())
        } else {
            Err(BackendError::unavailable("cache backend unavailable; invalidation queued for replay").into())
        }
    }

    /// Invalidates the cached queries that depend on these rows of `table` (pass old and new
    /// states of changed rows). Skipped inside [`crate::no_invalidation`].
    pub async fn invalidate_rows(&self, table: &str, rows: &[Row]) -> Result<(), Error> {
        if invalidation_suppressed() {
            return Ok(());
        }
        let req = self.write_request(None, &[TableChange::rows(table, rows.iter().cloned())]);
        let span = tracing::debug_span!("cacheops.invalidate", table = %table, rows = rows.len());
        let res = tracing::Instrument::instrument(self.deliver(Pending::Finish(req)), span).await;
        if self.inner.enabled {
            self.emit_invalidate(&InvalidateEvent::Rows { table: table.to_owned(), rows: rows.to_vec() });
        }
        res
    }

    fn emit_invalidate(&self, event: &InvalidateEvent) {
        self.inner.subscribers.invalidate(event);
    }

    pub(crate) fn emit_changes(&self, changes: &[TableChange]) {
        if !self.inner.subscribers.has_invalidate() {
            for c in changes {
                let scope = if c.table_level { "model" } else { "rows" };
                metrics::counter!("cacheops_invalidations_total", "scope" => scope).increment(1);
            }
            return;
        }
        for c in changes {
            if c.table_level {
                self.emit_invalidate(&InvalidateEvent::Model { table: c.table.clone() });
            } else {
                self.emit_invalidate(&InvalidateEvent::Rows { table: c.table.clone(), rows: c.rows.clone() });
            }
        }
    }

    /// Invalidates the cached queries that depend on one row.
    pub async fn invalidate_obj(&self, table: &str, row: &Row) -> Result<(), Error> {
        self.invalidate_rows(table, std::slice::from_ref(row)).await
    }

    /// Invalidates every cached query that depends on `table`: O(1).
    pub async fn invalidate_model(&self, table: &str) -> Result<(), Error> {
        if invalidation_suppressed() {
            return Ok(());
        }
        let span = tracing::debug_span!("cacheops.invalidate", table = %table, rows = "all");
        let res =
            tracing::Instrument::instrument(self.deliver(Pending::DeleteStamps(vec![self.keys.table(table)])), span)
                .await;
        if self.inner.enabled {
            self.emit_invalidate(&InvalidateEvent::Model { table: table.to_owned() });
        }
        res
    }

    /// Invalidates everything under this cache's prefix (other prefixes are untouched): the
    /// namespace's epoch and every table's copy of it, O(tables).
    pub async fn invalidate_all(&self) -> Result<(), Error> {
        if invalidation_suppressed() {
            return Ok(());
        }
        let span = tracing::debug_span!("cacheops.invalidate", table = "*");
        let res = tracing::Instrument::instrument(
            self.deliver(Pending::InvalidateAll { registry: self.keys.registry(), epoch: self.keys.epoch() }),
            span,
        )
        .await;
        if self.inner.enabled {
            self.emit_invalidate(&InvalidateEvent::All);
        }
        res
    }
}
