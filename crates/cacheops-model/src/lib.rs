//! An exhaustive interleaving model check of the cacheops invalidation protocol (stamps, write
//! leases, the scheme registration sequence rule, the re-mark before COMMIT).
//!
//! The protocol and the argument for why no reader can hit a stale value are in
//! `docs/protocol.md`; this crate checks that argument on a small model: one row `(a, b)` with a
//! version, cached queries over two schemes, writers that change the row, readers of several
//! rounds, leases that may run out at any moment, and optionally `maxmemory` eviction of any key
//! with a TTL. Each step is one atomic unit of the real
//! protocol (see [`model`] for the correspondence with `cacheops_core::protocol::Backend`).
//!
//! ```
//! use cacheops_model::{explore, Check, Config, Variant};
//! let report = explore(&Config::small(Variant::NO_LEASES), Check::StaleHit);
//! assert!(report.violation.is_some());
//! ```

pub mod explore;
pub mod model;

pub use explore::{Check, Report, Violation, ViolationKind, explore};
pub use model::{Action, Config, Op, Query, Remark, SeqRule, State, Variant};
