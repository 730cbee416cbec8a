//! Function caching over dependencies: [`Cache::cached_as`] (and `#[cached_as]`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheops_core::keys::hash_parts;
use cacheops_core::protocol::Stamps;
use cacheops_core::{Conj, Dependencies, Dnf, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, Lookup, Query, Shape};
use crate::error::{CacheMiss, Error};
use crate::events::ReadSource;
use crate::lock::{self, Acquired, LockOpts};
use crate::serial::{DefaultSerializer, Serializer, key_bytes};

/// One dependency of a cached function.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Dep {
    /// Explicit dependencies (table → DNF), e.g. a query's [`crate::Query::dependencies`].
    Deps(Dependencies),
    /// A whole table: any change to it invalidates (the original's model class sample).
    Table(String),
    /// One row, by a unique column (the original's model instance sample): only a change to a
    /// row with `column = value` invalidates.
    Row {
        /// The table.
        table: String,
        /// The key column (usually the primary key).
        column: String,
        /// Its value.
        value: Value,
    },
    /// A read statement, analysed like a cached query (the original's queryset sample).
    Sql {
        /// The SQL text.
        sql: String,
        /// Its bind values.
        params: Vec<Value>,
    },
}

impl Dep {
    /// A whole table.
    pub fn table(table: impl Into<String>) -> Dep {
        Dep::Table(table.into())
    }
    /// One row: `table.column = value`.
    pub fn row(table: impl Into<String>, column: impl Into<String>, value: impl Into<Value>) -> Dep {
        Dep::Row { table: table.into(), column: column.into(), value: value.into() }
    }
    /// A read statement with its binds.
    pub fn sql(sql: impl Into<String>, params: impl IntoIterator<Item = Value>) -> Dep {
        Dep::Sql { sql: sql.into(), params: params.into_iter().collect() }
    }
}

impl From<&str> for Dep {
    fn from(t: &str) -> Dep {
        Dep::Table(t.to_owned())
    }
}
impl From<String> for Dep {
    fn from(t: String) -> Dep {
        Dep::Table(t)
    }
}
impl From<Dependencies> for Dep {
    fn from(d: Dependencies) -> Dep {
        Dep::Deps(d)
    }
}
impl From<&Dependencies> for Dep {
    fn from(d: &Dependencies) -> Dep {
        Dep::Deps(d.clone())
    }
}

/// The dependencies of a cached function: any mix of [`Dep`]s.
///
/// ```
/// use cacheops::{Dep, Deps, Value};
/// let deps = Deps::new()
///     .with("category")
///     .with(Dep::row("post", "id", 7))
///     .with(Dep::sql("SELECT * FROM post WHERE category_id = $1", [Value::Int(3)]));
/// assert_eq!(deps.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deps(Vec<Dep>);

impl Deps {
    /// No dependencies.
    pub fn new() -> Deps {
        Deps(Vec::new())
    }
    /// Adds one.
    #[must_use]
    pub fn with(mut self, dep: impl Into<Dep>) -> Deps {
        self.0.push(dep.into());
        self
    }
    /// How many were given.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether none was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Resolves them (analysing SQL) into table → DNF.
    pub fn resolve(&self, cache: &Cache) -> Result<Dependencies, Error> {
        let cap = cache.analyzer().config().dnf_cap;
        let mut out = Dependencies::new();
        for d in &self.0 {
            match d {
                Dep::Deps(deps) => out.extend(deps, cap),
                Dep::Table(t) => out.add(t.clone(), Dnf::any(), cap),
                Dep::Row { table, column, value } => {
                    let canonical = cache.catalog().snapshot().canonical(table, column, value, None);
                    let conj = canonical.and_then(|r| {
                        Conj::from_rendered([(cacheops_core::equality::key_column(column), value.clone(), r)])
                    });
                    let dnf = match conj {
                        Some(c) => Dnf::from_conjs([c], cap),
                        None => Dnf::any(),
                    };
                    out.add(table.clone(), dnf, cap);
                }
                Dep::Sql { sql, params } => out.extend(&cache.analyze(sql, params)?.reads, cap),
            }
        }
        Ok(out)
    }
}

impl FromIterator<Dep> for Deps {
    fn from_iter<I: IntoIterator<Item = Dep>>(iter: I) -> Deps {
        Deps(iter.into_iter().collect())
    }
}

impl<T: Into<Dep>> From<T> for Deps {
    fn from(d: T) -> Deps {
        Deps(vec![d.into()])
    }
}

impl From<Vec<Dep>> for Deps {
    fn from(v: Vec<Dep>) -> Deps {
        Deps(v)
    }
}

/// A cached function over dependencies, built by [`Cache::cached_as`].
///
/// The key covers the name, the arguments (serialized with postcard) and `extra`. Stamps are
/// taken before the function runs, so a result computed across a concurrent write is not stored
/// (keep-fresh is always on). Timeout: the smallest of the dependencies' profile timeouts unless
/// given; lock: on when any dependency's profile has `lock`, unless given.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cacheops::{Cache, Dep, Value};
/// let cache = Cache::builder().build().await.unwrap();
/// let posts = cache.cached_as("posts_in", Dep::sql("SELECT * FROM post WHERE category_id = $1", [Value::Int(3)]));
/// let load = || async { Ok::<_, cacheops::Error>(vec!["a".to_owned(), "b".to_owned()]) };
/// let v: Vec<String> = posts.get_or_compute(&3, load).await.unwrap();
/// assert_eq!(v.len(), 2);
/// // Cached: the closure is not called again.
/// let v: Vec<String> = posts.get_or_compute(&3, || async { Err::<Vec<String>, _>(cacheops::Error::NoGlobalCache) }).await.unwrap();
/// assert_eq!(v.len(), 2);
/// // A post of category 3 changes: the entry is invalidated.
/// let row = [("id".to_owned(), Value::Int(1)), ("category_id".to_owned(), Value::Int(3))].into();
/// cache.invalidate_obj("post", &row).await.unwrap();
/// assert!(posts.key(&3).get::<Vec<String>>().await.unwrap_err().is_cache_miss());
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CachedAs<S: Serializer = DefaultSerializer> {
    cache: Cache,
    name: Arc<str>,
    deps: Option<Deps>,
    extra: Result<Vec<u8>, String>,
    timeout: Option<Duration>,
    lock: Option<bool>,
    lock_wait: Option<Duration>,
    stale: Option<Duration>,
    _s: PhantomData<fn() -> S>,
}

impl Cache {
    /// A cached function named `name` (its identity in keys: keep it unique and stable),
    /// depending on `deps`.
    pub fn cached_as(&self, name: impl Into<String>, deps: impl Into<Deps>) -> CachedAs {
        CachedAs {
            cache: self.clone(),
            name: Arc::from(name.into()),
            deps: Some(deps.into()),
            extra: Ok(Vec::new()),
            timeout: None,
            lock: None,
            lock_wait: None,
            stale: None,
            _s: PhantomData,
        }
    }

    /// A cached function whose dependencies are found automatically (see [`CachedAs::auto`]).
    pub fn cached_as_auto(&self, name: impl Into<String>) -> CachedAs {
        self.cached_as(name, Deps::new()).auto()
    }
}

impl<S: Serializer> CachedAs<S> {
    /// Automatic dependencies: the function runs inside a [`crate::deps_scope`] and its result is
    /// stored under what its cached or analysed reads depended on, checked against the stamps
    /// each read took before it went to the database. A function that reads nothing through
    /// cacheops is not stored.
    pub fn auto(mut self) -> Self {
        self.deps = None;
        self
    }
    /// Adds `extra` to the key.
    pub fn extra<X: Serialize + ?Sized>(mut self, extra: &X) -> Self {
        self.extra = key_bytes(extra).map_err(|e| e.to_string());
        self
    }
    /// The lifetime of cached results.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// The dog-pile lock on or off.
    pub fn lock(mut self, on: bool) -> Self {
        self.lock = Some(on);
        self
    }
    /// The bounded wait of the lock (default: the builder's `lock_wait`).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = Some(wait);
        self
    }
    /// Serve-stale-while-recomputing (implies the lock): while one caller recomputes an
    /// invalidated or expired result, the others get the previous result for up to `window`
    /// after recomputation started. **They are served stale data**: use it only where that is
    /// acceptable. Off by default.
    pub fn serve_stale(mut self, window: Duration) -> Self {
        self.stale = Some(window);
        self.lock = Some(true);
        self
    }
    /// Another serializer for the values.
    pub fn serializer<S2: Serializer>(self) -> CachedAs<S2> {
        CachedAs {
            cache: self.cache,
            name: self.name,
            deps: self.deps,
            extra: self.extra,
            timeout: self.timeout,
            lock: self.lock,
            lock_wait: self.lock_wait,
            stale: self.stale,
            _s: PhantomData,
        }
    }
    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn hash<A: Serialize + ?Sized>(&self, args: &A) -> Result<String, Error> {
        self.hash_bytes(&key_bytes(args)?)
    }

    fn hash_bytes(&self, args: &[u8]) -> Result<String, Error> {
        let extra = self.extra.as_ref().map_err(|e| Error::Serialization(e.clone()))?;
        Ok(hash_parts([b"fn".as_ref(), self.name.as_bytes(), args, extra]))
    }

    fn opts(&self, deps: Option<&Dependencies>) -> LockOpts {
        let profile_lock = deps.is_some_and(|d| d.tables().any(|t| self.cache.profiles().for_table(t).lock));
        LockOpts {
            lock: self.lock.unwrap_or(profile_lock),
            wait: self.lock_wait.unwrap_or(self.cache.inner.lock_wait),
            stale: self.stale,
        }
    }

    fn query(&self, hash: String) -> Result<Option<Query>, Error> {
        let Some(deps) = &self.deps else { return Ok(None) };
        let deps = deps.resolve(&self.cache)?;
        let timeout = self.timeout.unwrap_or_else(|| self.cache.timeout_for(&deps));
        Ok(Some(Query::new(hash, deps, timeout, Some(Arc::clone(&self.name)))))
    }

    fn shape_timeout(&self, shape: &Shape) -> Duration {
        self.timeout.unwrap_or_else(|| {
            shape
                .tables
                .iter()
                .map(|(t, _)| self.cache.profiles().for_table(t))
                .filter(|p| p.enabled)
                .map(|p| p.timeout)
                .min()
                .unwrap_or(self.cache.inner.default_timeout)
        })
    }

    /// Returns the cached result for `args`, or runs `compute`, stores and returns its result.
    /// With caching disabled, just runs `compute`.
    pub async fn get_or_compute<A, T, E, F, Fut>(&self, args: &A, compute: F) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.__get_or_compute_args(key_bytes(args), compute).await
    }

    /// [`CachedAs::get_or_compute`] with the arguments already serialized (for the macros, which
    /// move the arguments into the computation).
    #[doc(hidden)]
    pub async fn __get_or_compute_args<T, E, F, Fut>(&self, args: Result<Vec<u8>, Error>, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.cache.is_enabled() {
            return compute().await;
        }
        let hash = self.hash_bytes(&args?)?;
        match self.query(hash.clone())? {
            Some(q) => {
                let opts = self.opts(Some(&q.deps));
                lock::fetch(
                    &self.cache,
                    &q,
                    &opts,
                    |b| S::from_bytes(b).ok(),
                    || async move {
                        let v = compute().await?;
                        let bytes = S::to_bytes(&v)?;
                        Ok((v, bytes))
                    },
                )
                .await
            }
            None => self.auto_get_or_compute(hash, compute).await,
        }
    }

    fn deps_key(&self, hash: &str) -> String {
        self.cache.keys().simple(&format!("d:{hash}"))
    }

    /// The shape recorded for `hash`: the copy in process, else the backend's (then kept).
    async fn stored_shape(&self, hash: &str) -> Option<Shape> {
        let key = self.deps_key(hash);
        let local =
            self.cache.inner.shapes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
        if local.is_some() {
            return local;
        }
        let bytes = self.cache.simple_get_raw(&key).await.ok().flatten()?;
        let shape: Shape = postcard::from_bytes(&bytes).ok()?;
        self.remember_shape(key, &shape);
        Some(shape)
    }

    fn remember_shape(&self, key: String, shape: &Shape) {
        self.cache.inner.shapes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(key, shape.clone());
    }

    async fn auto_get_or_compute<T, E, F, Fut>(&self, hash: String, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = self.opts(None);
        let deadline = cacheops_core::time::deadline(Instant::now(), opts.wait);
        let source = || ReadSource::Function { name: self.name.to_string() };
        let mut guard = None;
        let known = loop {
            let known = self.stored_shape(&hash).await;
            if let Some(shape) = &known {
                let timeout = self.shape_timeout(shape);
                let looked = match self.cache.lookup_shape(shape, &hash, timeout, source()).await {
                    Ok(l) => l,
                    Err(e) => {
                        lock::release(guard).await;
                        return Err(e.into());
                    }
                };
                match looked {
                    Lookup::Hit(b) => match S::from_bytes::<T>(&b) {
                        Ok(v) => {
                            lock::release(guard).await;
                            return Ok(v);
                        }
                        Err(_) => {
                            let _ = self
                                .cache
                                .gate(self.cache.inner.backend.delete(&self.cache.value_key(shape, &hash)))
                                .await;
                        }
                    },
                    Lookup::Bypass(_) => {
                        let out = crate::deps_scope::run(compute()).await.0;
                        lock::release(guard).await;
                        return out;
                    }
                    Lookup::Miss(_) => {}
                }
            }
            if guard.is_some() || !opts.lock || Instant::now() >= deadline {
                break known;
            }
            match lock::acquire(&self.cache, &hash, deadline, opts.stale).await {
                // Check again under the lock.
                Acquired::Held(g) => guard = Some(g),
                Acquired::Woken => {}
                Acquired::TimedOut => break known,
                Acquired::Stale(b) => {
                    if let Ok(v) = S::from_bytes::<T>(&b) {
                        return Ok(v);
                    }
                    break known;
                }
            }
        };
        let (res, recorded) = crate::deps_scope::run(compute()).await;
        let out = self.auto_store(&hash, known, res, &recorded, &opts).await;
        lock::release(guard).await;
        out
    }

    async fn auto_store<T, E>(
        &self,
        hash: &str,
        known: Option<Shape>,
        res: Result<T, E>,
        recorded: &crate::deps_scope::Recorder,
        opts: &LockOpts,
    ) -> Result<T, E>
    where
        T: Serialize,
        E: From<Error>,
    {
        let v = res?;
        let bytes = S::to_bytes(&v)?;
        if let Some((shape, stamps)) = recorded.union() {
            let timeout = self.shape_timeout(&shape);
            if known.as_ref() != Some(&shape)
                && let Ok(rec) = postcard::to_allocvec(&shape)
            {
                let ttl = cacheops_core::keys::conj_ttl(timeout);
                self.cache.simple_set_raw(&self.deps_key(hash), &rec, Some(ttl)).await?;
                self.remember_shape(self.deps_key(hash), &shape);
            }
            let req = self.cache.shape_request(&shape, hash, timeout);
            let vector: Option<Vec<&str>> =
                req.stamp_keys().iter().map(|k| stamps.get(*k).map(String::as_str)).collect();
            if let Some(vector) = vector {
                let stored = self.cache.store_raw(&req, &Stamps(vector.join(" ")), &bytes, timeout).await?;
                if stored && let Some(w) = opts.stale {
                    lock::keep_stale_copy(&self.cache, hash, &bytes, timeout, w).await;
                }
            }
        }
        Ok(v)
    }

    /// Drops the cached result for `args`. Returns whether there was one.
    pub async fn invalidate<A: Serialize + ?Sized>(&self, args: &A) -> Result<bool, Error> {
        self.key(args).delete().await
    }

    /// The cache entry for `args`, to get, set or delete by hand.
    pub fn key<A: Serialize + ?Sized>(&self, args: &A) -> FnKey<S> {
        FnKey { f: self.clone(), hash: self.hash(args).map_err(|e| e.to_string()) }
    }
}

/// The entry of a [`CachedAs`] function for given arguments.
#[derive(Debug)]
pub struct FnKey<S: Serializer = DefaultSerializer> {
    f: CachedAs<S>,
    hash: Result<String, String>,
}

impl<S: Serializer> FnKey<S> {
    fn hash(&self) -> Result<&str, Error> {
        self.hash.as_deref().map_err(|e| Error::Serialization(e.clone()))
    }

    /// The key hash.
    pub fn hash_str(&self) -> Option<&str> {
        self.hash.as_deref().ok()
    }

    async fn lookup(&self) -> Result<Option<(Lookup, Option<Query>)>, Error> {
        let hash = self.hash()?.to_owned();
        let f = &self.f;
        let source = ReadSource::Function { name: f.name.to_string() };
        match f.query(hash.clone())? {
            Some(q) => Ok(Some((f.cache.lookup(&q).await?, Some(q)))),
            None => match f.stored_shape(&hash).await {
                Some(shape) => {
                    let timeout = f.shape_timeout(&shape);
                    Ok(Some((f.cache.lookup_shape(&shape, &hash, timeout, source).await?, None)))
                }
                None => Ok(None),
            },
        }
    }

    /// The cached result (current: invalidation applies), or [`Error::CacheMiss`].
    pub async fn get<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.f.cache.is_enabled() {
            return Err(CacheMiss.into());
        }
        match self.lookup().await? {
            Some((Lookup::Hit(b), _)) => S::from_bytes(&b),
            _ => Err(CacheMiss.into()),
        }
    }

    /// Stores `value` as the result, under the current stamps of the dependencies. Returns
    /// whether it was stored (not while a write to a dependency is in flight; for an `auto`
    /// function, not before its first computed call has recorded its dependencies).
    pub async fn set<T: Serialize + ?Sized>(&self, value: &T) -> Result<bool, Error> {
        if !self.f.cache.is_enabled() {
            return Ok(false);
        }
        let bytes = S::to_bytes(value)?;
        self.delete().await?;
        match self.lookup().await? {
            Some((Lookup::Miss(ticket), _)) => self.f.cache.store(ticket, &bytes).await,
            _ => Ok(false),
        }
    }

    /// Deletes the cached result. Returns whether there was one.
    pub async fn delete(&self) -> Result<bool, Error> {
        if !self.f.cache.is_enabled() {
            return Ok(false);
        }
        let hash = self.hash()?.to_owned();
        let f = &self.f;
        // The value lives with its first table: the dependencies given, or those recorded (an
        // `auto` function stores nothing before it has recorded them).
        let shape = match f.query(hash.clone())? {
            Some(q) => Shape::of(&q.deps),
            None => match f.stored_shape(&hash).await {
                Some(shape) => shape,
                None => return Ok(false),
            },
        };
        let key = f.cache.value_key(&shape, &hash);
        f.cache.simple_delete_raw(&key).await
    }
}
