//! The core of cacheops: everything that decides, nothing that talks to a network.
//!
//! * [`analysis`]: SQL text + typed binds → statement kind, tables read, per-table DNFs.
//! * [`dnf`]: the DNF types ([`Dnf`], [`Conj`], [`Dependencies`]).
//! * [`equality`]: canonical forms per column class, the [`Catalog`] of column classes.
//! * [`config`]: profiles per table pattern, validated by a builder.
//! * [`keys`]: key derivation (prefix, schema version, hash tags).
//! * [`protocol`]: the stamp protocol's requests and replies, and the [`Backend`] trait.
//! * [`memory`]: the in-process backend (the embedded default).

pub mod analysis;
pub mod config;
pub mod dnf;
pub mod equality;
pub mod keys;
pub mod memory;
pub mod protocol;
pub mod time;
pub mod value;

pub use analysis::{Analysis, AnalysisError, Analyzer, AnalyzerConfig, Dialect, ReadShape, StatementKind, WriteTarget};
pub use config::{CacheOp, ConfigError, Profile, Profiles, ProfilesBuilder};
pub use dnf::{Conj, Dependencies, Dnf};
pub use equality::{Catalog, CatalogSnapshot, ColumnClass, Relation, TableSchema, TextFold};
pub use keys::KeySpace;
pub use memory::MemoryBackend;
pub use protocol::{
    Backend, BackendError, LockAttempt, ReadReply, ReadRequest, Row, Stamps, WriteRequest, error_chain,
};
pub use value::Value;
