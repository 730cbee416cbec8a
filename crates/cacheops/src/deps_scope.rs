//! Automatic dependencies: a task-local scope that records what every cached or analysed read
//! run inside it depends on, with the stamps taken *before* that read.
//!
//! A function cached with [`crate::CachedAs::auto`] (or `#[cached_as(auto)]`) runs inside such a
//! scope and stores its result under the union of the recorded dependencies, checked against the
//! recorded stamps: a write that changed any of them after the inner read took its stamps makes
//! the store fail. See `docs/functions.md` for the argument.
//!
//! [`crate::Cache::lookup`] records by itself. An integration that runs a read *without* a
//! lookup (a read its profile does not cache, but whose SQL it analysed) calls [`record`]
//! right before sending it to the database:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cacheops::{Cache, Value, deps_scope};
//! let cache = Cache::builder().build().await.unwrap();
//! let analysis = cache.analyze("SELECT * FROM post WHERE id = $1", &[Value::Int(1)]).unwrap();
//! // Outside a scope this does nothing (and costs nothing).
//! assert!(!deps_scope::active());
//! deps_scope::record(&cache, &analysis.reads).await;
//! # });
//! ```
//!
//! Task-locals do not cross `tokio::spawn`: wrap a spawned future with [`ScopeHandle::scope`]
//! (from [`handle`]) so that its reads count too.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use cacheops_core::Dependencies;
use cacheops_core::protocol::{ReadReply, ReadRequest, Stamps};

use crate::cache::{Cache, Shape};

tokio::task_local! {
    static SCOPE: Arc<Mutex<Recorder>>;
}

/// What a scope recorded.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    /// The key-space base of the first cache recorded (all reads must share it).
    base: Option<String>,
    /// table → rendered conj → scheme.
    tables: BTreeMap<String, BTreeMap<String, String>>,
    /// stamp key → stamp taken before the read.
    stamps: HashMap<String, String>,
    /// Something could not be recorded (bypass, outage, another namespace, conflicting stamps):
    /// the result must not be stored.
    pub(crate) tainted: bool,
    /// Number of reads recorded.
    pub(crate) reads: usize,
}

impl Recorder {
    fn taint(&mut self, why: &str) {
        if !self.tainted {
            tracing::debug!(reason = why, "cacheops auto-dependency scope tainted: the result will not be stored");
        }
        self.tainted = true;
    }

    pub(crate) fn add(&mut self, base: &str, shape: &Shape, req: &ReadRequest, stamps: &Stamps) {
        match &self.base {
            None => self.base = Some(base.to_owned()),
            Some(b) if b != base => return self.taint("reads from two cache prefixes"),
            Some(_) => {}
        }
        let keys = req.stamp_keys();
        let values: Vec<&str> = stamps.0.split(' ').collect();
        if keys.len() != values.len() {
            return self.taint("unexpected stamp vector");
        }
        for (k, v) in keys.into_iter().zip(values) {
            match self.stamps.get(k) {
                Some(old) if old != v => return self.taint("a dependency changed between two inner reads"),
                Some(_) => {}
                None => {
                    self.stamps.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        for (table, conjs) in &shape.tables {
            let entry = self.tables.entry(table.clone()).or_default();
            for (scheme, rendered) in conjs {
                entry.insert(rendered.clone(), scheme.clone());
            }
        }
        self.reads += 1;
    }

    fn merge(&mut self, other: Recorder) {
        if other.tainted {
            self.taint("nested scope tainted");
        }
        if let Some(b) = &other.base {
            match &self.base {
                None => self.base = Some(b.clone()),
                Some(mine) if mine != b => return self.taint("reads from two cache prefixes"),
                Some(_) => {}
            }
        }
        for (k, v) in other.stamps {
            match self.stamps.get(&k) {
                Some(old) if *old != v => return self.taint("a dependency changed between two inner reads"),
                Some(_) => {}
                None => {
                    self.stamps.insert(k, v);
                }
            }
        }
        for (t, conjs) in other.tables {
            self.tables.entry(t).or_default().extend(conjs);
        }
        self.reads += other.reads;
    }

    /// The union shape (sorted) and the stamps for its request, if it may be stored.
    pub(crate) fn union(&self) -> Option<(Shape, &HashMap<String, String>)> {
        if self.tainted || self.reads == 0 {
            return None;
        }
        let tables = self
            .tables
            .iter()
            .map(|(t, conjs)| (t.clone(), conjs.iter().map(|(r, s)| (s.clone(), r.clone())).collect()))
            .collect();
        Some((Shape { tables }, &self.stamps))
    }
}

/// Whether the current task runs inside an auto-dependency scope.
pub fn active() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

/// Records a read's dependencies in the enclosing scope, with their current stamps. Call it
/// right *before* the read goes to the database (the stamps must predate the read). Does nothing
/// outside a scope. [`Cache::lookup`] calls it by itself: integrations need it only for reads
/// that bypass the lookup.
pub async fn record(cache: &Cache, deps: &Dependencies) {
    if !active() {
        return;
    }
    let shape = Shape::of(deps);
    record_shape(cache, &shape).await;
}

/// Marks the enclosing scope's result as not storable: a read ran whose dependencies cannot be
/// recorded (not analysable, volatile, inside a transaction that has written, at snapshot
/// isolation). Does nothing outside a scope.
pub fn taint(why: &str) {
    let _ = SCOPE.try_with(|rec| rec.lock().unwrap_or_else(std::sync::PoisonError::into_inner).taint(why));
}

/// Takes the stamps of `shape` with a read-check on a value key that never exists (so it always
/// answers with the stamps, never with a hit) and records them.
pub(crate) async fn record_shape(cache: &Cache, shape: &Shape) {
    let Ok(recorder) = SCOPE.try_with(Arc::clone) else { return };
    let req = cache.probe_request(shape);
    let reply = cache.probe(&req).await;
    let mut rec = recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match reply {
        Some(ReadReply::Miss(stamps)) => rec.add(cache.keys().base(), shape, &req, &stamps),
        _ => rec.taint("dependencies pending or cache unavailable"),
    }
}

/// Runs `fut` in a fresh scope; returns its output and what it recorded. What was recorded is
/// also added to the enclosing scope, if any (nested cached functions).
pub(crate) async fn run<F: Future>(fut: F) -> (F::Output, Recorder) {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let out = SCOPE.scope(Arc::clone(&rec), fut).await;
    let recorded = std::mem::take(&mut *rec.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if let Ok(outer) = SCOPE.try_with(Arc::clone) {
        outer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(recorded.clone());
    }
    (out, recorded)
}

/// A handle on the current scope, to carry it into spawned tasks.
#[derive(Debug, Clone)]
pub struct ScopeHandle(Arc<Mutex<Recorder>>);

/// The current scope, if any.
pub fn handle() -> Option<ScopeHandle> {
    SCOPE.try_with(Arc::clone).ok().map(ScopeHandle)
}

impl ScopeHandle {
    /// Runs `fut` (typically inside `tokio::spawn`) recording into this scope.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        SCOPE.scope(self.0, fut).await
    }
}
