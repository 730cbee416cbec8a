//! Building a [`Cache`]: backend, prefix, profiles, failure policy. Everything is validated here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cacheops_core::protocol::Backend;
use cacheops_core::{Analyzer, AnalyzerConfig, Catalog, ConfigError, KeySpace, MemoryBackend, Profiles, TableSchema};

use crate::cache::{Cache, Inner};
use crate::error::Error;
use crate::events::{InvalidateEvent, ReadEvent, Subscribers};
use crate::health::Health;
use crate::lease::MarkFailure;
use crate::lock::{DEFAULT_LOCK_WAIT, Locks, RemoteLock};

/// Default of [`CacheBuilder::max_preimage_rows`].
pub const DEFAULT_MAX_PREIMAGE_ROWS: usize = 1_000;

#[derive(Debug, Clone)]
enum BackendChoice {
    Memory {
        max_entries: usize,
    },
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    RedisUrl(String),
    Custom(Arc<dyn Backend>),
}

/// Builds a [`Cache`].
///
/// Defaults: the in-process backend (100 000 values), no prefix, degrade on (backend trouble
/// turns reads into database reads), a 1 s circuit-breaker retry interval, 10 s write leases,
/// PostgreSQL analysis, and profiles that cache nothing automatically.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cacheops::{Cache, Profile, Profiles};
/// let cache = Cache::builder()
///     .prefix("tenant1")
///     .profiles(Profiles::builder().profile("post", Profile::builder().ops(["all"])).build().unwrap())
///     .lease(Duration::from_secs(5))
///     .build()
///     .await
///     .unwrap();
/// assert!(cache.is_enabled());
///
/// let err = Cache::builder().lease(Duration::ZERO).build().await.unwrap_err();
/// assert!(err.to_string().contains("lease"));
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheBuilder {
    prefix: String,
    backend: BackendChoice,
    profiles: Profiles,
    degrade: bool,
    enabled: bool,
    retry_interval: Duration,
    lease: Duration,
    replay_limit: usize,
    default_timeout: Duration,
    analyzer: AnalyzerConfig,
    schemas: Vec<TableSchema>,
    subscribers: Subscribers,
    lock_wait: Duration,
    lock_ttl: Duration,
    mark_failure: MarkFailure,
    max_preimage_rows: usize,
    max_schemes: u32,
    redis_tls_root_cert: Option<PathBuf>,
    redis_tls_client_cert: Option<(PathBuf, PathBuf)>,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            prefix: String::new(),
            backend: BackendChoice::Memory { max_entries: cacheops_core::memory::DEFAULT_MAX_ENTRIES },
            profiles: Profiles::default(),
            degrade: true,
            enabled: true,
            retry_interval: Duration::from_secs(1),
            lease: Duration::from_secs(10),
            replay_limit: 10_000,
            default_timeout: Duration::from_secs(3600),
            analyzer: AnalyzerConfig::default(),
            schemas: Vec::new(),
            subscribers: Subscribers::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
            lock_ttl: Duration::from_secs(60),
            mark_failure: MarkFailure::default(),
            max_preimage_rows: DEFAULT_MAX_PREIMAGE_ROWS,
            max_schemes: cacheops_core::protocol::DEFAULT_MAX_SCHEMES,
            redis_tls_root_cert: None,
            redis_tls_client_cert: None,
        }
    }
}

impl CacheBuilder {
    /// Reads `CACHEOPS_REDIS` (a Redis URL of any form [`redis_url`](Self::redis_url) takes;
    /// unset or empty: in process), `CACHEOPS_REDIS_TLS_CA` (a CA certificate file, PEM),
    /// `CACHEOPS_REDIS_TLS_CERT` and `CACHEOPS_REDIS_TLS_KEY` (a client certificate and its key,
    /// PEM files, both or neither), `CACHEOPS_PREFIX` and `CACHEOPS_ENABLED` (`0`/`false`/`off`
    /// disables) on top of the current settings.
    pub fn from_env(mut self) -> Self {
        let var = |name| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(url) = var("CACHEOPS_REDIS") {
            self = self.redis_url(url);
        }
        if let Some(ca) = var("CACHEOPS_REDIS_TLS_CA") {
            self.redis_tls_root_cert = Some(ca.into());
        }
        match (var("CACHEOPS_REDIS_TLS_CERT"), var("CACHEOPS_REDIS_TLS_KEY")) {
            (None, None) => {}
            // One without the other is reported by `build` (an empty path cannot be read).
            (cert, key) => {
                self.redis_tls_client_cert = Some((cert.unwrap_or_default().into(), key.unwrap_or_default().into()))
            }
        }
        if let Ok(prefix) = std::env::var("CACHEOPS_PREFIX") {
            self.prefix = prefix;
        }
        if let Ok(on) = std::env::var("CACHEOPS_ENABLED") {
            self.enabled = !matches!(on.trim().to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no");
        }
        self
    }

    /// Declares the column classes of a table ([`cacheops_core::equality`]): which columns narrow
    /// invalidation and how their values compare. Integrations load them from the database's
    /// catalog; with the raw API, a table that is neither declared nor loaded is invalidated
    /// and depended on at table level only (coarse, never stale).
    ///
    /// ```
    /// use cacheops::{Cache, ColumnClass, TableSchema, Value};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = Cache::builder()
    ///     .table_schema(TableSchema::new("post").column("id", ColumnClass::Integer).column("category_id", ColumnClass::Integer))
    ///     .build().await.unwrap();
    /// let a = cache.analyze("SELECT * FROM post WHERE category_id = $1", &[Value::Int(3)]).unwrap();
    /// assert_eq!(a.reads.get("post").unwrap().conjs()[0].rendered(), "category_id=3");
    /// let b = cache.analyze("SELECT * FROM author WHERE id = 3", &[]).unwrap();
    /// assert!(b.reads.get("author").unwrap().is_any()); // not declared: table level
    /// # });
    /// ```
    pub fn table_schema(mut self, schema: TableSchema) -> Self {
        self.schemas.push(schema);
        self
    }

    /// The key prefix: caches with different prefixes never see each other's entries.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Use Redis at this URL: `redis://[:password@]host[:port][/db]`, `rediss://…` (TLS),
    /// `redis+unix:///path?db=N`, a cluster `redis-cluster://host:port,host:port`
    /// (`rediss-cluster://` over TLS), or Sentinels
    /// `redis-sentinel://[:password@]host:port,host:port/<service>[/<db>][?sentinel_password=…]`
    /// (`rediss-sentinel://` over TLS). See `cacheops_redis::RedisBackendBuilder::url`; for
    /// settings a URL cannot carry, build a `RedisBackend` and pass it to
    /// [`backend`](Self::backend). The dog-pile lock is shared across processes on every form.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Validated at build; a lazy connection (degrade on, the default) starts while Redis is down.
    /// let cache = cacheops::Cache::builder()
    ///     .redis_url("redis-sentinel://127.0.0.1:1/mymaster/0")
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// # drop(cache);
    /// let err = cacheops::Cache::builder().redis_url("redis-sentinel://127.0.0.1:1").build().await.unwrap_err();
    /// assert!(err.to_string().contains("service name"), "{err}");
    /// # });
    /// ```
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = BackendChoice::RedisUrl(url.into());
        self
    }

    /// Verify Redis servers reached over TLS (`rediss://…`) against this CA certificate (a PEM
    /// file, read by [`build`](Self::build)) instead of the system's roots.
    pub fn redis_tls_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.redis_tls_root_cert = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM files, read by [`build`](Self::build)) to
    /// Redis servers reached over TLS.
    pub fn redis_tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.redis_tls_client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Use the in-process backend with at most `max_entries` values.
    pub fn memory(mut self, max_entries: usize) -> Self {
        self.backend = BackendChoice::Memory { max_entries };
        self
    }

    /// Use a backend you built (a custom Redis client, a shared in-process backend…).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = BackendChoice::Custom(backend);
        self
    }

    /// Per-table profiles.
    pub fn profiles(mut self, profiles: Profiles) -> Self {
        self.profiles = profiles;
        self
    }

    /// Degrade mode: backend failures turn reads into database reads instead of errors, and
    /// invalidations into queued replays (default on). With it off, an unreachable Redis fails
    /// [`CacheBuilder::build`].
    pub fn degrade(mut self, on: bool) -> Self {
        self.degrade = on;
        self
    }

    /// What a write does when its lease cannot be placed (the backend is unreachable or
    /// refuses writes): [`MarkFailure::RefuseWrite`] (the default) fails the write, so that no
    /// process can hit a value it changes; [`MarkFailure::Proceed`] lets it through, queues its
    /// invalidation, and accepts that *other* processes may hit old values until it is replayed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cacheops::{Cache, MarkFailure};
    /// let cache = Cache::builder().on_mark_failure(MarkFailure::Proceed).build().await.unwrap();
    /// # let _ = cache;
    /// # });
    /// ```
    pub fn on_mark_failure(mut self, policy: MarkFailure) -> Self {
        self.mark_failure = policy;
        self
    }

    /// How many old rows an integration reads (and marks) before an UPDATE or DELETE (default
    /// 1 000). A write that matches more is invalidated at table level: nothing more is
    /// materialised, and its lease and invalidation touch one key.
    pub fn max_preimage_rows(mut self, n: usize) -> Self {
        self.max_preimage_rows = n;
        self
    }

    /// How many distinct column combinations (schemes) cached queries of one table may be
    /// conditioned on (default 64). A write costs one key per row and scheme; when a new
    /// scheme would exceed the cap, the table is reset (its cached values are dropped, unused
    /// schemes are forgotten, those in use register again on their next miss). Must be 1 to
    /// 65 536.
    pub fn max_schemes_per_table(mut self, n: u32) -> Self {
        self.max_schemes = n;
        self
    }

    /// `false` makes every cache a pass-through that never touches the backend (for tests).
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// How long the circuit stays open after a backend failure.
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
        self
    }

    /// How long write markers live if their writer never finishes.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How many failed invalidations are kept for replay before the cache fences itself.
    pub fn replay_limit(mut self, n: usize) -> Self {
        self.replay_limit = n;
        self
    }

    /// Lifetime of values whose tables have no enabled profile (manual caching).
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }

    /// SQL analysis settings (dialect, caps, skipped columns).
    pub fn analyzer(mut self, config: AnalyzerConfig) -> Self {
        self.analyzer = config;
        self
    }

    /// Calls `f` after every read through the cache (hit, miss or bypass; queries and cached
    /// functions). Subscribers run synchronously on the reading task: keep them cheap.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use cacheops::{Cache, ReadEvent};
    /// let seen = Arc::new(Mutex::new(Vec::<ReadEvent>::new()));
    /// let sink = seen.clone();
    /// let cache = Cache::builder().on_read(move |e| sink.lock().unwrap().push(e.clone())).build().await.unwrap();
    /// let f = cache.cached_as("answer", "post");
    /// let v: u32 = f.get_or_compute(&(), || async { Ok::<_, cacheops::Error>(42) }).await.unwrap();
    /// assert_eq!(v, 42);
    /// assert!(!seen.lock().unwrap()[0].hit());
    /// # });
    /// ```
    pub fn on_read(mut self, f: impl Fn(&ReadEvent) + Send + Sync + 'static) -> Self {
        self.subscribers.read.push(Arc::new(f));
        self
    }

    /// Calls `f` for every invalidation (rows, a table, everything) when it is delivered.
    pub fn on_invalidate(mut self, f: impl Fn(&InvalidateEvent) + Send + Sync + 'static) -> Self {
        self.subscribers.invalidate.push(Arc::new(f));
        self
    }

    /// How long a dog-pile waiter waits for the holder before computing itself (default 5 s).
    pub fn lock_wait(mut self, d: Duration) -> Self {
        self.lock_wait = d;
        self
    }

    /// How long a dog-pile lock lives in Redis if its holder dies (default 60 s).
    pub fn lock_ttl(mut self, d: Duration) -> Self {
        self.lock_ttl = d;
        self
    }

    /// Validates the settings, connects, and builds the cache.
    pub async fn build(self) -> Result<Cache, Error> {
        let keys = KeySpace::new(&self.prefix).map_err(ConfigError::from)?;
        let invalid =
            |setting, reason: &str| Error::Config(ConfigError::Invalid { setting, reason: reason.to_owned() });
        if self.lease.is_zero() {
            return Err(invalid("lease", "must be greater than zero"));
        }
        if self.retry_interval.is_zero() {
            return Err(invalid("retry_interval", "must be greater than zero"));
        }
        if self.default_timeout.is_zero() {
            return Err(invalid("default_timeout", "must be greater than zero"));
        }
        if self.lock_ttl.is_zero() {
            return Err(invalid("lock_ttl", "must be greater than zero"));
        }
        if !(1..=65_536).contains(&self.max_schemes) {
            return Err(invalid("max_schemes_per_table", "must be in 1..=65536"));
        }
        if self.max_preimage_rows == 0 {
            return Err(invalid("max_preimage_rows", "must be at least 1"));
        }
        if self.replay_limit == 0 {
            return Err(invalid("replay_limit", "must be at least 1"));
        }
        if self.analyzer.in_list_cap == 0 || self.analyzer.dnf_cap == 0 || self.analyzer.memo_capacity == 0 {
            return Err(invalid("analyzer", "in_list_cap, dnf_cap and memo_capacity must be at least 1"));
        }
        let read = |setting, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                Error::Config(ConfigError::Invalid { setting, reason: format!("cannot read {}: {e}", path.display()) })
            })
        };
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let tls = TlsFiles {
            root_cert: self.redis_tls_root_cert.as_ref().map(|p| read("redis_tls_root_cert", p)).transpose()?,
            client_cert: match &self.redis_tls_client_cert {
                Some((cert, key)) if cert.as_os_str().is_empty() || key.as_os_str().is_empty() => {
                    return Err(invalid(
                        "redis_tls_client_cert",
                        "needs both a certificate and a key file (CACHEOPS_REDIS_TLS_CERT and CACHEOPS_REDIS_TLS_KEY)",
                    ));
                }
                Some((cert, key)) => Some((read("redis_tls_client_cert", cert)?, read("redis_tls_client_cert", key)?)),
                None => None,
            },
        };
        let backend: Arc<dyn Backend> = match self.backend {
            BackendChoice::Memory { max_entries } => {
                if max_entries == 0 {
                    return Err(invalid("memory", "max_entries must be at least 1"));
                }
                Arc::new(MemoryBackend::new(max_entries))
            }
            BackendChoice::Custom(b) => b,
            #[cfg(feature = "redis")]
            BackendChoice::RedisUrl(url) => {
                // Disabled: never connect (a pass-through performs no Redis command at all).
                crate::redis::connect(&url, !self.degrade && self.enabled, &tls).await?
            }
            #[cfg(not(feature = "redis"))]
            BackendChoice::RedisUrl(_) => {
                return Err(invalid(
                    "redis_url",
                    "this build of cacheops has no Redis client: enable the `redis` feature of the \
                     `cacheops` crate (on by default), or use the in-process backend",
                ));
            }
        };
        let remote = if self.enabled { RemoteLock::new(backend.clone()) } else { None };
        let inner = Inner::new(
            backend,
            keys.clone(),
            self.profiles,
            {
                let catalog = Arc::new(Catalog::strict());
                catalog.install(self.schemas);
                Analyzer::with_catalog(self.analyzer, catalog)
            },
            Health::new(self.retry_interval, self.replay_limit),
            self.degrade,
            self.enabled,
            self.lease,
            self.default_timeout,
            self.subscribers,
            Locks::new(remote, self.lock_ttl),
            self.lock_wait,
            self.mark_failure,
            self.max_preimage_rows,
            self.max_schemes,
        );
        let cache = Cache { inner: Arc::new(inner), keys: Arc::new(keys) };
        if self.enabled {
            cache.check_backend_soon();
        }
        Ok(cache)
    }
}

/// TLS material for the Redis connection, read from the configured files.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) root_cert: Option<Vec<u8>>,
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
}
