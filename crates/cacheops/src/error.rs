//! The crate's one error type.

use cacheops_core::protocol::BackendError;
use cacheops_core::{AnalysisError, ConfigError};

/// Everything that can go wrong in cacheops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid cacheops configuration: {0}")]
    Config(#[from] ConfigError),
    /// The cache backend failed and degrade mode is off.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Redis could not be set up (bad URL, unreachable at build time with degrade off, …).
    #[error("redis: {0}")]
    Redis(String),
    /// A statement could not be analysed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// A table that is not configured was named where a configured one is required.
    #[error("unknown table {table:?}: no profile matches it")]
    UnknownTable {
        /// The table.
        table: String,
    },
}
