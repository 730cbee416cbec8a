//! A cached view's settings, its keys, and the `invalidate` / `key` companions.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cacheops::{Cache, CachedAs, Deps, Error, Tags};
use http::request::Parts;
use http::{HeaderName, Method, Uri};
use serde::Serialize;

use crate::response::StoredResponse;

/// The tag space ([`cacheops::Tags`]) every cached view depends on, one tag per view and path:
/// `invalidate(uri)` invalidates that tag, so it reaches every entry of the path (every query
/// string, header variant and user) in every process, at the cost of one more stamp in the same
/// read.
pub const VIEW_TABLE: &str = "_cacheops_view";

/// Default cap of a cached body (1 MiB): larger responses pass through, streamed.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The per-request part of a key a user adds (`None`: do not cache this request).
pub type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Kind {
    Deps(Deps),
    Auto,
    Time,
}

/// A cached view: a tower [`Layer`](tower_layer::Layer) for one route or a whole router, built by
/// [`cached_view_as`], [`cached_view_as_auto`] or [`cached_view`], with the companions
/// [`CachedView::invalidate`] and [`CachedView::key`].
///
/// **Key.** Method, path and — unless [`CachedView::ignore_query`] — the query string (two
/// query strings are two pages: `?page=2` is not `?page=1`; the original keyed on the path
/// alone), plus [`extra`](CachedView::extra), the values of the [`vary_on`](CachedView::vary_on)
/// headers and of every header a response of this view named in `Vary`, the
/// [`per_user`](CachedView::per_user) key and the [`key_fn`](CachedView::key_fn) part.
///
/// **What is stored.** Only `GET`/`HEAD` requests without `Range`, and only 200/203/204
/// responses without `Set-Cookie`, without `Cache-Control: private`/`no-store`/`no-cache`, without
/// `Vary: *`, whose `Vary` headers are all in the key, whose body fits [`max_body`](CachedView::max_body).
/// Requests with `Authorization` or `Cookie` are not cached unless the key includes the user
/// ([`per_user`](CachedView::per_user), or those headers in `vary_on`). Everything else passes
/// through untouched (larger bodies streamed, never buffered past the cap).
///
/// **Serving.** A stored response keeps its `ETag` (or gets a weak one over its body); a
/// request whose `If-None-Match` names it gets `304 Not Modified`. Every response says how it was
/// served in `x-cache` (`hit`, `miss`, `bypass`; see [`CachedView::status_header`]).
#[derive(Clone)]
#[must_use]
pub struct CachedView {
    pub(crate) cache: Cache,
    pub(crate) tags: Tags,
    pub(crate) name: Arc<str>,
    pub(crate) kind: Kind,
    pub(crate) timeout: Option<Duration>,
    pub(crate) extra: Option<Vec<u8>>,
    pub(crate) lock: Option<bool>,
    pub(crate) vary_on: Vec<HeaderName>,
    pub(crate) key_query: bool,
    pub(crate) per_user: Option<KeyFn>,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) max_body: usize,
    pub(crate) status_header: Option<HeaderName>,
    /// Headers that responses of this view named in `Vary` (learned in this process).
    pub(crate) learned: Arc<RwLock<Vec<HeaderName>>>,
}

impl fmt::Debug for CachedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedView").field("name", &self.name).field("vary_on", &self.vary_on).finish_non_exhaustive()
    }
}

/// A view cached until a write to `deps` (tables, rows or SQL, as [`Cache::cached_as`]) or its
/// timeout (default: the smallest profile timeout of its tables).
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use cacheops::{Cache, Dep};
/// use cacheops_axum::cached_view_as;
///
/// # async fn posts() -> &'static str { "posts" }
/// # async fn app(cache: Cache) -> Router {
/// Router::new().route("/posts", get(posts).layer(cached_view_as(&cache, "posts", Dep::table("post"))))
/// # }
/// ```
pub fn cached_view_as(cache: &Cache, name: impl Into<String>, deps: impl Into<Deps>) -> CachedView {
    CachedView::new(cache, name.into(), Kind::Deps(deps.into()))
}

/// A view whose dependencies are the reads its handler makes through cacheops while serving
/// the request (any integration: SeaORM reads, `cached_as` functions …), as
/// [`CachedAs::auto`]. Reads in tasks the handler spawns count only inside
/// [`cacheops::deps_scope::ScopeHandle::scope`]. A response built without any such read is not
/// stored.
pub fn cached_view_as_auto(cache: &Cache, name: impl Into<String>) -> CachedView {
    CachedView::new(cache, name.into(), Kind::Auto)
}

/// A view cached for `timeout` only (and until [`CachedView::invalidate`]).
pub fn cached_view(cache: &Cache, name: impl Into<String>, timeout: Duration) -> CachedView {
    CachedView::new(cache, name.into(), Kind::Time).timeout(timeout)
}

/// The part of the key that a request contributes (serialized and hashed by the cache).
#[derive(Serialize)]
struct KeyArgs<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: Vec<(&'a str, Option<Vec<u8>>)>,
    user: Option<String>,
    custom: Option<String>,
}

/// Why a request is not looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Method,
    Range,
    Credentials,
    KeyFn,
}

impl CachedView {
    fn new(cache: &Cache, name: String, kind: Kind) -> Self {
        CachedView {
            cache: cache.clone(),
            tags: Tags::new(cache, VIEW_TABLE),
            name: Arc::from(name),
            kind,
            timeout: None,
            extra: None,
            lock: None,
            vary_on: Vec::new(),
            key_query: true,
            per_user: None,
            key_fn: None,
            max_body: DEFAULT_MAX_BODY,
            status_header: Some(HeaderName::from_static("x-cache")),
            learned: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// How long a response is kept.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds `extra` to every key of this view (e.g. a template version).
    pub fn extra<X: Serialize + ?Sized>(mut self, extra: &X) -> Self {
        self.extra = postcard::to_allocvec(extra).ok();
        self
    }

    /// The dog-pile lock: one request renders, concurrent ones wait for its response.
    pub fn lock(mut self, on: bool) -> Self {
        self.lock = Some(on);
        self
    }

    /// Request headers whose values are part of the key (e.g. `accept-language`).
    pub fn vary_on<I, H>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: Into<HeaderName>,
    {
        self.vary_on.extend(headers.into_iter().map(Into::into));
        self.vary_on.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        self.vary_on.dedup();
        self
    }

    /// Keys on the path alone, as the original did: every query string shares one entry. Only
    /// for views whose content does not depend on the query.
    pub fn ignore_query(mut self) -> Self {
        self.key_query = false;
        self
    }

    /// The user a request is for (e.g. from a session cookie or a token): part of the key, so
    /// that requests with credentials are cached per user. `None`: do not cache this request.
    pub fn per_user(mut self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.per_user = Some(Arc::new(f));
        self
    }

    /// Anything else the response depends on, from the request. `None`: do not cache it.
    pub fn key_fn(mut self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.key_fn = Some(Arc::new(f));
        self
    }

    /// The largest body stored (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The response header that says `hit`, `miss` or `bypass` (default `x-cache`; `None`: no
    /// header).
    pub fn status_header(mut self, header: Option<HeaderName>) -> Self {
        self.status_header = header;
        self
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops every cached response of `uri`'s path — every query string, header variant, user
    /// and method — in every process (the query string of `uri` is ignored).
    pub async fn invalidate(&self, uri: &str) -> Result<(), Error> {
        let path = parse_path(uri)?;
        self.tags.invalidate(&path_tag(&self.name, &path)).await
    }

    /// The cache entry of a plain `GET uri` (no varying headers, no user), to get, set or delete.
    pub fn key(&self, uri: &str) -> Result<ViewKey, Error> {
        let uri: Uri = uri.parse().map_err(|e| Error::Serialization(format!("bad URI {uri:?}: {e}")))?;
        let (mut parts, ()) =
            http::Request::builder().method(Method::GET).uri(uri).body(()).map_err(http_err)?.into_parts();
        parts.headers.clear();
        let (args, _) = self.key_args(&parts).map_err(|_| Error::Serialization("this request is not cached".into()))?;
        Ok(ViewKey { key: self.cached_as(parts.uri.path()).key(&args) })
    }

    /// The key parts of a request and the headers they include, or why it is not cached.
    pub(crate) fn key_args(&self, parts: &Parts) -> Result<(Vec<u8>, Vec<HeaderName>), Skip> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(Skip::Method);
        }
        if parts.headers.contains_key(http::header::RANGE) {
            return Err(Skip::Range);
        }
        let names = self.key_headers();
        let credentials = [http::header::AUTHORIZATION, http::header::COOKIE];
        let keyed = |h: &HeaderName| names.contains(h);
        if self.per_user.is_none() && credentials.iter().any(|h| parts.headers.contains_key(h) && !keyed(h)) {
            return Err(Skip::Credentials);
        }
        let user = match &self.per_user {
            Some(f) => Some(f(parts).ok_or(Skip::Credentials)?),
            None => None,
        };
        let custom = match &self.key_fn {
            Some(f) => Some(f(parts).ok_or(Skip::KeyFn)?),
            None => None,
        };
        let headers = names
            .iter()
            .map(|h| {
                let values: Vec<&[u8]> = parts.headers.get_all(h).iter().map(|v| v.as_bytes()).collect();
                (h.as_str(), (!values.is_empty()).then(|| values.join(&b'\n')))
            })
            .collect();
        let args = KeyArgs {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: if self.key_query { parts.uri.query() } else { None },
            headers,
            user,
            custom,
        };
        let bytes = postcard::to_allocvec(&args).map_err(|_| Skip::KeyFn)?;
        Ok((bytes, names))
    }

    /// The headers in the key: `vary_on` and the learned ones, sorted, without duplicates.
    pub(crate) fn key_headers(&self) -> Vec<HeaderName> {
        let learned = self.learned.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<HeaderName> = self.vary_on.iter().chain(learned.iter()).cloned().collect();
        all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        all.dedup();
        all
    }

    /// Learns the `Vary` names missing from a key made of `keyed` headers; returns whether any
    /// was missing (the response may then not be stored under that key).
    pub(crate) fn learn(&self, vary: &[HeaderName], keyed: &[HeaderName]) -> bool {
        let missing: Vec<_> = vary.iter().filter(|h| !keyed.contains(h)).cloned().collect();
        if missing.is_empty() {
            return false;
        }
        tracing::debug!(view = %self.name, ?missing, "cacheops-axum: a response varies on headers not in the key; keyed on them from now on");
        let mut learned = self.learned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for h in missing {
            if !learned.contains(&h) {
                learned.push(h);
            }
        }
        true
    }

    /// The cached function behind a request to `path`.
    pub(crate) fn cached_as(&self, path: &str) -> CachedAs {
        let pseudo = self.tags.dep(&path_tag(&self.name, path));
        let f = match &self.kind {
            Kind::Deps(deps) => self.cache.cached_as(self.name.to_string(), deps.clone().with(pseudo)),
            Kind::Time => self.cache.cached_as(self.name.to_string(), pseudo),
            Kind::Auto => self.cache.cached_as_auto(self.name.to_string()),
        };
        let f = match self.timeout {
            Some(t) => f.timeout(t),
            None => f,
        };
        let f = match self.lock {
            Some(l) => f.lock(l),
            None => f,
        };
        match &self.extra {
            Some(x) => f.extra(x),
            None => f,
        }
    }

    /// For auto views: the path's tag, recorded as a dependency of the request.
    pub(crate) async fn record_path(&self, path: &str) {
        if matches!(self.kind, Kind::Auto) {
            self.tags.record(&path_tag(&self.name, path)).await;
        }
    }
}

/// The entry of one request of a view ([`CachedView::key`]).
#[derive(Debug)]
pub struct ViewKey {
    key: cacheops::FnKey,
}

impl ViewKey {
    /// Drops the entry; returns whether there was one.
    pub async fn delete(&self) -> Result<bool, Error> {
        self.key.delete().await
    }

    /// Whether a response is cached under the key.
    pub async fn exists(&self) -> Result<bool, Error> {
        match self.key.get::<StoredResponse>().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_cache_miss() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The cached body and status, if any.
    pub async fn get(&self) -> Result<(http::StatusCode, Vec<u8>), Error> {
        let r = self.key.get::<StoredResponse>().await?;
        Ok((http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::OK), r.body))
    }

    /// Stores `body` as a 200 response with `content-type` under the key (until a write to the
    /// view's dependencies, or its timeout).
    pub async fn set(&self, content_type: &str, body: impl Into<bytes::Bytes>) -> Result<bool, Error> {
        let mut headers = http::HeaderMap::new();
        let ct = http::HeaderValue::from_str(content_type).map_err(|e| Error::Serialization(e.to_string()))?;
        headers.insert(http::header::CONTENT_TYPE, ct);
        let stored = StoredResponse::new(http::StatusCode::OK, &headers, body.into());
        self.key.set(&stored).await
    }
}

fn http_err(e: http::Error) -> Error {
    Error::Serialization(format!("bad request parts: {e}"))
}

fn parse_path(uri: &str) -> Result<String, Error> {
    let u: Uri = uri.parse().map_err(|e| Error::Serialization(format!("bad URI {uri:?}: {e}")))?;
    Ok(u.path().to_owned())
}

/// The path's tag: the view's name and the path (two views of one path are apart).
fn path_tag(name: &str, path: &str) -> String {
    format!("{name}\u{0}{path}")
}
