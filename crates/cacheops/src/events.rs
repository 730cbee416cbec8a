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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    use crate::{Cache, Conj, Dependencies, Dnf, Lookup, Value};

    /// Counters by name and labels (`name{label=value}`), summed over registrations.
    #[derive(Default)]
    struct Counters(Mutex<Vec<(String, Arc<AtomicU64>)>>);

    impl Counters {
        fn get(&self, name: &str) -> u64 {
            let all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.iter().filter(|(n, _)| n == name).map(|(_, c)| c.load(Ordering::Relaxed)).sum()
        }
    }

    impl metrics::Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let c = Arc::new(AtomicU64::new(0));
            let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.push((format!("{}{{{}}}", key.name(), labels.join(",")), c.clone()));
            Counter::from_arc(c)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn read_counters_tell_functions_from_queries() {
        let counters = Counters::default();
        metrics::with_local_recorder(&counters, || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let cache = Cache::builder().memory(100).build().await.expect("cache");
                let mut deps = Dependencies::new();
                let conj = Conj::from_terms([("id", Value::Int(1))]).expect("conj");
                deps.add("post", Dnf::from_conjs([conj], 64), 64);
                let q = cache.query(b"query", deps.clone());
                let Lookup::Miss(t) = cache.lookup(&q).await.expect("lookup") else { panic!("miss expected") };
                assert!(cache.store(t, b"v").await.expect("store"));
                assert!(matches!(cache.lookup(&q).await.expect("lookup"), Lookup::Hit(_)));
                let f = cache.query(b"function", deps).with_label("f");
                assert!(matches!(cache.lookup(&f).await.expect("lookup"), Lookup::Miss(_)));
            });
        });
        assert_eq!(counters.get("cacheops_misses_total{kind=query}"), 1);
        assert_eq!(counters.get("cacheops_hits_total{kind=query}"), 1);
        assert_eq!(counters.get("cacheops_misses_total{kind=function}"), 1);
        assert_eq!(counters.get("cacheops_hits_total{kind=function}"), 0);
    }
}
