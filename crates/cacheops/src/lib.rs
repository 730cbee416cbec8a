//! # cacheops
//!
//! Automatic, granular, stale-free caching of SQL query results in Redis or in process.
//!
//! A cached read records what it depends on (per table, a DNF of `column = value` conditions,
//! found by analysing its SQL); a write invalidates exactly the cached reads whose conditions its
//! old or new rows match. The stamp protocol (`docs/protocol.md`) guarantees that no reader is
//! ever served a value older than the newest commit that preceded its read.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cacheops::{Cache, ColumnClass, TableSchema, Value};
//! // Column classes come from the database through an integration; by hand with the raw API.
//! let cache = Cache::builder()
//!     .table_schema(TableSchema::new("post").column("category_id", ColumnClass::Integer))
//!     .build().await.unwrap();
//! let sql = "SELECT * FROM post WHERE category_id = $1";
//! let params = [Value::Int(3)];
//! let analysis = cache.analyze(sql, &params).unwrap();
//! let query = cache.sql_query(sql, &params, &analysis, "main", "rows");
//! assert_eq!(query.dependencies().get("post").unwrap().conjs()[0].rendered(), "category_id=3");
//! # });
//! ```
//!
//! Crate map: `cacheops-core` (analysis, DNF, keys, profiles, protocol, in-process backend),
//! `cacheops-redis` (Redis backend), this crate (the engine and its public API).

mod builder;
mod cache;
pub mod deps_scope;
mod error;
mod events;
mod file;
mod function;
mod health;
mod lease;
mod local;
pub mod lock;
#[cfg(feature = "redis")]
mod redis;
mod remote_lock;
mod scope;
mod serial;
mod simple;
mod tag;

pub use builder::{CacheBuilder, DEFAULT_MAX_PREIMAGE_ROWS};
pub use cache::{Cache, Lookup, MissTicket, Query, Stats, TableChange};
pub use cacheops_core::protocol::{Backend, BackendError, BypassReason};
pub use cacheops_core::{
    Analysis, AnalysisError, Analyzer, AnalyzerConfig, CacheOp, Catalog, ColumnClass, ConfigError, Conj, Dependencies,
    Dialect, Dnf, KeySpace, MemoryBackend, Profile, Profiles, ProfilesBuilder, Row, StatementKind, TableSchema,
    TextFold, Value, WriteTarget, equality,
};
/// `#[cached_as(...)]` and `#[cached(...)]`: see `docs/functions.md` and the crate docs.
pub use cacheops_macros::{cached, cached_as};
pub use error::{CacheMiss, Error};
pub use events::{InvalidateEvent, ReadEvent, ReadOutcome, ReadSource};
pub use file::{FileCache, cleanfilecache};
pub use function::{CachedAs, Dep, Deps, FnKey};
pub use health::HealthReport;
pub use lease::{MarkFailure, WriteLease};
pub use lock::LockOpts;
pub use scope::{invalidation_suppressed, no_invalidation};
pub use serial::{DefaultSerializer, Json, Postcard, Serializer};
pub use simple::{Cached, SimpleCache, SimpleKey, SimpleStore, SimpleTarget};
pub use tag::Tags;

/// The Redis backend, for building one by hand (custom clients, cluster). Feature `redis`.
#[cfg(feature = "redis")]
pub use cacheops_redis as redis_backend;

static GLOBAL: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();

/// Installs the cache used by `#[cached_as]`/`#[cached]` when they are not given `cache = …`.
/// Returns `false` (and keeps the first) when one was installed already.
pub fn set_global_cache(cache: Cache) -> bool {
    GLOBAL.set(cache).is_ok()
}

/// The cache installed by [`set_global_cache`].
pub fn global_cache() -> Result<&'static Cache, Error> {
    GLOBAL.get().ok_or(Error::NoGlobalCache)
}

/// Support for the macros; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    /// The key bytes of a function's arguments.
    pub fn args_key<A: serde::Serialize + ?Sized>(args: &A) -> Result<Vec<u8>, crate::Error> {
        crate::serial::key_bytes(args)
    }
    /// Borrow a cache given as `Cache`, `&Cache`, `Arc<Cache>`…
    pub fn as_cache<C: AsRef<crate::Cache> + ?Sized>(c: &C) -> &crate::Cache {
        c.as_ref()
    }
}

impl AsRef<Cache> for Cache {
    fn as_ref(&self) -> &Cache {
        self
    }
}

// The README's examples are compiled as doctests by `cacheops-sea-orm` (they use both crates).
