//! The simple time-invalidated cache (`get`/`set`/`delete`, [`Cache::cached`], `#[cached]`)
//! over the cache's backend or over a directory ([`crate::FileCache`]).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use cacheops_core::keys::hash_parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::{CacheMiss, Error};
use crate::serial::{DefaultSerializer, Serializer, key_bytes};

/// Storage of the simple cache: bytes under a key, with an optional lifetime.
/// Implemented by [`SimpleCache`] (the cache's backend) and [`crate::FileCache`].
pub trait SimpleStore: Clone + Send + Sync + 'static {
    /// The bytes under `key`, if present and not expired.
    fn get_raw(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send;
    /// Stores bytes under `key`.
    fn set_raw(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> impl Future<Output = Result<(), Error>> + Send;
    /// Deletes `key`; returns whether it existed.
    fn delete_raw(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Whether caching is on (off: every `get` misses, `set`/`delete` do nothing).
    fn is_enabled(&self) -> bool;

    /// The value stored under `key`, or [`Error::CacheMiss`].
    fn get<T: DeserializeOwned>(&self, key: &str) -> impl Future<Output = Result<T, Error>> + Send {
        let key = format!("k:{key}");
        async move {
            match self.get_raw(&key).await? {
                Some(b) => DefaultSerializer::from_bytes(&b),
                None => Err(CacheMiss.into()),
            }
        }
    }
    /// Stores `value` under `key` for `ttl` (`None`: no expiry).
    fn set<T: Serialize + ?Sized + Sync>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let key = format!("k:{key}");
        let bytes = DefaultSerializer::to_bytes(value);
        async move { self.set_raw(&key, &bytes?, ttl).await }
    }
    /// Deletes `key`; returns whether it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + Send {
        let key = format!("k:{key}");
        async move { self.delete_raw(&key).await }
    }
}

/// The simple cache over a [`Cache`]'s backend (Redis or in process), under its prefix.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cacheops::{Cache, SimpleStore};
/// let cache = Cache::builder().build().await.unwrap();
/// let simple = cache.simple();
/// assert!(simple.get::<String>("greeting").await.unwrap_err().is_cache_miss());
/// simple.set("greeting", "hello", None).await.unwrap();
/// assert_eq!(simple.get::<String>("greeting").await.unwrap(), "hello");
/// assert!(simple.delete("greeting").await.unwrap());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SimpleCache {
    cache: Cache,
}

impl Cache {
    /// The simple time-invalidated cache on this cache's backend.
    pub fn simple(&self) -> SimpleCache {
        SimpleCache { cache: self.clone() }
    }

    /// A function cached for a time only (no invalidation by writes), on this cache's backend.
    pub fn cached(&self, name: impl Into<String>) -> Cached {
        self.simple().cached(name)
    }

    /// A simple-cache call through the gate: disabled, or failing with degrade on, it answers
    /// `fallback` (a miss, nothing done); with degrade off a failure is an error.
    async fn simple_call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, cacheops_core::protocol::BackendError>>,
        fallback: T,
    ) -> Result<T, Error> {
        if !self.inner.enabled {
            return Ok(fallback);
        }
        match self.gate(call).await {
            Ok(v) => Ok(v),
            Err(_) if self.inner.degrade => Ok(fallback),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn simple_get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.simple_call(self.inner.backend.get(key), None).await
    }

    pub(crate) async fn simple_set_raw(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        self.simple_call(self.inner.backend.set(key, data, ttl), ()).await
    }

    pub(crate) async fn simple_delete_raw(&self, key: &str) -> Result<bool, Error> {
        self.simple_call(self.inner.backend.delete(key), false).await
    }
}

impl SimpleCache {
    /// A function cached for a time only.
    pub fn cached(&self, name: impl Into<String>) -> Cached {
        cached_on(SimpleTarget::Backend(self.clone()), name.into())
    }
}

impl SimpleStore for SimpleCache {
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.cache.simple_get_raw(&self.cache.keys().simple(key)).await
    }
    async fn set_raw(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        self.cache.simple_set_raw(&self.cache.keys().simple(key), data, ttl).await
    }
    async fn delete_raw(&self, key: &str) -> Result<bool, Error> {
        self.cache.simple_delete_raw(&self.cache.keys().simple(key)).await
    }
    fn is_enabled(&self) -> bool {
        self.cache.is_enabled()
    }
}

/// A function cached for a time (the original's `@cached`), over a [`SimpleStore`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cacheops::Cache;
/// let cache = Cache::builder().build().await.unwrap();
/// let top = cache.cached("top_articles").timeout(Duration::from_secs(60));
/// let v: Vec<u32> = top.get_or_compute(&"news", || async { Ok::<_, cacheops::Error>(vec![1, 2]) }).await.unwrap();
/// assert_eq!(top.key(&"news").get::<Vec<u32>>().await.unwrap(), v);
/// top.key(&"news").set(&vec![3u32]).await.unwrap();
/// assert_eq!(top.key(&"news").get::<Vec<u32>>().await.unwrap(), vec![3]);
/// assert!(top.invalidate(&"news").await.unwrap());
/// assert!(top.key(&"news").get::<Vec<u32>>().await.unwrap_err().is_cache_miss());
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Cached<S: Serializer = DefaultSerializer> {
    store: SimpleTarget,
    name: Arc<str>,
    extra: Result<Vec<u8>, String>,
    timeout: Option<Duration>,
    _s: PhantomData<fn() -> S>,
}

/// Where a [`Cached`] function keeps its results.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SimpleTarget {
    /// The cache's backend.
    Backend(SimpleCache),
    /// A directory.
    File(crate::FileCache),
}

impl SimpleStore for SimpleTarget {
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self {
            SimpleTarget::Backend(s) => s.get_raw(key).await,
            SimpleTarget::File(f) => f.get_raw(key).await,
        }
    }
    async fn set_raw(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        match self {
            SimpleTarget::Backend(s) => s.set_raw(key, data, ttl).await,
            SimpleTarget::File(f) => f.set_raw(key, data, ttl).await,
        }
    }
    async fn delete_raw(&self, key: &str) -> Result<bool, Error> {
        match self {
            SimpleTarget::Backend(s) => s.delete_raw(key).await,
            SimpleTarget::File(f) => f.delete_raw(key).await,
        }
    }
    fn is_enabled(&self) -> bool {
        match self {
            SimpleTarget::Backend(s) => s.is_enabled(),
            SimpleTarget::File(f) => f.is_enabled(),
        }
    }
}

/// A [`Cached`] function over a store.
pub(crate) fn cached_on(store: SimpleTarget, name: String) -> Cached {
    Cached { store, name: Arc::from(name), extra: Ok(Vec::new()), timeout: None, _s: PhantomData }
}

impl<S: Serializer> Cached<S> {
    /// Lifetime of results (`None`, the default: no expiry).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Adds `extra` to the key.
    pub fn extra<X: Serialize + ?Sized>(mut self, extra: &X) -> Self {
        self.extra = key_bytes(extra).map_err(|e| e.to_string());
        self
    }
    /// Another serializer for the values.
    pub fn serializer<S2: Serializer>(self) -> Cached<S2> {
        Cached { store: self.store, name: self.name, extra: self.extra, timeout: self.timeout, _s: PhantomData }
    }

    fn raw_key<A: Serialize + ?Sized>(&self, args: &A) -> Result<String, Error> {
        self.raw_key_bytes(&key_bytes(args)?)
    }

    fn raw_key_bytes(&self, args: &[u8]) -> Result<String, Error> {
        let extra = self.extra.as_ref().map_err(|e| Error::Serialization(e.clone()))?;
        Ok(format!("f:{}", hash_parts([b"cached".as_ref(), self.name.as_bytes(), args, extra])))
    }

    /// Returns the cached result for `args`, or runs `compute`, stores and returns its result.
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

    /// [`Cached::get_or_compute`] with the arguments already serialized (for the macros).
    #[doc(hidden)]
    pub async fn __get_or_compute_args<T, E, F, Fut>(&self, args: Result<Vec<u8>, Error>, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.store.is_enabled() {
            return compute().await;
        }
        let key = self.raw_key_bytes(&args?)?;
        if let Some(b) = self.store.get_raw(&key).await?
            && let Ok(v) = S::from_bytes(&b)
        {
            return Ok(v);
        }
        let v = compute().await?;
        let bytes = S::to_bytes(&v)?;
        self.store.set_raw(&key, &bytes, self.timeout).await?;
        Ok(v)
    }

    /// Drops the cached result for `args`; returns whether there was one.
    pub async fn invalidate<A: Serialize + ?Sized>(&self, args: &A) -> Result<bool, Error> {
        self.key(args).delete().await
    }

    /// The entry for `args`.
    pub fn key<A: Serialize + ?Sized>(&self, args: &A) -> SimpleKey<S> {
        SimpleKey { f: self.clone(), key: self.raw_key(args).map_err(|e| e.to_string()) }
    }
}

/// The entry of a [`Cached`] function for given arguments.
#[derive(Debug)]
pub struct SimpleKey<S: Serializer = DefaultSerializer> {
    f: Cached<S>,
    key: Result<String, String>,
}

impl<S: Serializer> SimpleKey<S> {
    fn key(&self) -> Result<&str, Error> {
        self.key.as_deref().map_err(|e| Error::Serialization(e.clone()))
    }
    /// The cached value, or [`Error::CacheMiss`] (unlike the original, it returns the value).
    pub async fn get<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match self.f.store.get_raw(self.key()?).await? {
            Some(b) => S::from_bytes(&b),
            None => Err(CacheMiss.into()),
        }
    }
    /// Stores `value` with the function's timeout.
    pub async fn set<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let bytes = S::to_bytes(value)?;
        self.f.store.set_raw(self.key()?, &bytes, self.f.timeout).await
    }
    /// Deletes the entry; returns whether it existed.
    pub async fn delete(&self) -> Result<bool, Error> {
        self.f.store.delete_raw(self.key()?).await
    }
}
