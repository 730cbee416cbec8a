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
//! use cacheops::{Cache, Value};
//! let cache = Cache::builder().build().await.unwrap();
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
mod error;
mod health;
mod redis;
mod scope;

pub use builder::CacheBuilder;
pub use cache::{Cache, Lookup, MissTicket, Query, Stats, TableChange, WriteLease};
pub use cacheops_core::protocol::{Backend, BackendError, BypassReason};
pub use cacheops_core::{
    Analysis, AnalysisError, Analyzer, AnalyzerConfig, CacheOp, ConfigError, Conj, Dependencies,
    Dialect, Dnf, KeySpace, MemoryBackend, Profile, Profiles, ProfilesBuilder, Row, StatementKind,
    Value, WriteTarget,
};
pub use error::Error;
pub use scope::{invalidation_suppressed, no_invalidation};

/// The Redis backend, for building one by hand (custom clients, cluster).
pub use cacheops_redis as redis_backend;

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
