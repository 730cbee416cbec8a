//! Events: read and invalidation callbacks, `metrics` counters.
//!
//! Subscribers are registered on the builder ([`crate::CacheBuilder::on_read`],
//! [`crate::CacheBuilder::on_invalidate`]) and called synchronously, in registration order, on
//! the task that did the read or the invalidation: keep them cheap (count, log, send to a
//! channel). A panicking subscriber is caught and logged; it never breaks a read.

use std::fmt;
use std::sync::Arc;

use cacheops_core::Row;

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadOutcome {
    /// Served from the cache.
    Hit,
    /// Not cached: computed, and stored when still current.
    Miss,
    /// Computed and not stored (write in flight, outage, caching disabled).
    Bypass,
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadSource {
    /// A query (SQL or manual): its key hash.
    Query {
        /// The key hash.
        hash: String,
    },
    /// A cached function (`cached_as`, `cached`): its name.
    Function {
        /// The function's identity (`module::name` for the macros).
        name: String,
    },
}

/// A read through the cache (the original's `cache_read` signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    /// Query or function.
    pub source: ReadSource,
    /// Hit, miss or bypass.
    pub outcome: ReadOutcome,
    /// The tables the read depends on (empty for time-only caches).
    pub tables: Vec<String>,
}

impl ReadEvent {
    /// Whether it was a hit.
    pub fn hit(&self) -> bool {
        self.outcome == ReadOutcome::Hit
    }
}

/// An invalidation (the original's `cache_invalidated` signal), sent when it is delivered (or
/// queued for replay during an outage).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InvalidateEvent {
    /// Rows of a table changed (old and new states): `invalidate_obj`/`invalidate_rows`, or a
    /// finished write lease.
    Rows {
        /// The table.
        table: String,
        /// The rows.
        rows: Vec<Row>,
    },
    /// A whole table: `invalidate_model`, or a write lease marked table-level.
    Model {
        /// The table.
        table: String,
    },
    /// Everything under the prefix: `invalidate_all`.
    All,
}

type ReadFn = dyn Fn(&ReadEvent) + Send + Sync;
type InvalidateFn = dyn Fn(&InvalidateEvent) + Send + Sync;

/// The registered subscribers.
#[derive(Clone, Default)]
pub(crate) struct Subscribers {
    pub(crate) read: Vec<Arc<ReadFn>>,
    pub(crate) invalidate: Vec<Arc<InvalidateFn>>,
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("read", &self.read.len())
            .field("invalidate", &self.invalidate.len())
            .finish()
    }
}

impl Subscribers {
    pub(crate) fn read(&self, event: &ReadEvent) {
        count_read(event.outcome, matches!(event.source, ReadSource::Function { .. }));
        for s in &self.read {
            call_guarded(|| s(event));
        }
    }

    pub(crate) fn has_read(&self) -> bool {
        !self.read.is_empty()
    }

    pub(crate) fn invalidate(&self, event: &InvalidateEvent) {
        let scope = match event {
            InvalidateEvent::Rows { .. } => "rows",
            InvalidateEvent::Model { .. } => "model",
            InvalidateEvent::All => "all",
        };
        metrics::counter!("cacheops_invalidations_total", "scope" => scope).increment(1);
        for s in &self.invalidate {
            call_guarded(|| s(event));
        }
    }

    pub(crate) fn has_invalidate(&self) -> bool {
        !self.invalidate.is_empty()
    }
}

/// The `metrics` counters of a read.
pub(crate) fn count_read(outcome: ReadOutcome, function: bool) {
    let name = match outcome {
        ReadOutcome::Hit => "cacheops_hits_total",
        ReadOutcome::Miss => "cacheops_misses_total",
        ReadOutcome::Bypass => "cacheops_bypasses_total",
    };
    let kind = if function { "function" } else { "query" };
    metrics::counter!(name, "kind" => kind).increment(1);
}

fn call_guarded(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("a cacheops event subscriber panicked");
    }
}
