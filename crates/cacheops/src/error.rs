//! The crate's one error type.

use cacheops_core::protocol::BackendError;
use cacheops_core::{AnalysisError, ConfigError};

/// Nothing is cached under the key (or it expired, or caching is disabled): returned by the
/// simple and file caches' `get`, as the original's `CacheMiss` exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("cache miss")]
pub struct CacheMiss;

/// Everything that can go wrong in cacheops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cache backend failed and degrade mode is off.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A write was refused: its lease could not be placed in the cache backend, so other
    /// processes could have hit values it changes ([`crate::MarkFailure::RefuseWrite`]).
    #[error("write refused: its cache lease could not be placed")]
    LeaseUnavailable(#[source] BackendError),
    /// Redis could not be set up (bad URL, unreachable at build time with degrade off, …).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] cacheops_redis::RedisBackendError),
    /// A statement could not be analysed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// A table that is not configured was named where a configured one is required.
    #[error("unknown table {table:?}: no profile matches it")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// Nothing cached under the key ([`CacheMiss`]).
    #[error(transparent)]
    CacheMiss(#[from] CacheMiss),
    /// A value (or a function's arguments) could not be serialized or deserialized.
    #[error("cacheops serialization: {0}")]
    Serialization(String),
    /// The file cache could not read or write its directory.
    #[error("the cacheops file cache could not read or write its directory")]
    Io(#[from] std::io::Error),
    /// A macro without `cache = …` ran before [`crate::set_global_cache`].
    #[error("no global cache: call cacheops::set_global_cache first or pass `cache = …`")]
    NoGlobalCache,
}

impl Error {
    /// Whether this is a [`CacheMiss`].
    pub fn is_cache_miss(&self) -> bool {
        matches!(self, Error::CacheMiss(_))
    }

    /// Whether the cache backend could not be reached or is not serving right now (refused or
    /// dropped connection, timeout, circuit breaker open), including a write refused because
    /// its lease could not be placed: retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_unavailable(),
            Error::LeaseUnavailable(_) => true,
            #[cfg(feature = "redis")]
            Error::Redis(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// Whether the cache backend did not answer in time.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Backend(e) | Error::LeaseUnavailable(e) => e.is_timeout(),
            #[cfg(feature = "redis")]
            Error::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// The backend error behind this one, if any (its message, predicates and cause).
    pub fn backend_error(&self) -> Option<&BackendError> {
        match self {
            Error::Backend(e) | Error::LeaseUnavailable(e) => Some(e),
            _ => None,
        }
    }
}
