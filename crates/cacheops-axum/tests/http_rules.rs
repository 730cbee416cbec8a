//! The HTTP rules of a cached view, one test each, over real HTTP on loopback. The backend is
//! Redis (a unique prefix) unless the test says in-process. Every "hit" is also checked by the
//! handler's call count: a hit never runs the handler.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cacheops::{Cache, Dep, Value};
use cacheops_axum::{CachedView, cached_view, cached_view_as};
use support::{get as fetch, request, serve, unique};

async fn redis_cache() -> Cache {
    Cache::builder()
        .redis_url(support::REDIS)
        .prefix(unique("axum"))
        .degrade(false)
        .build()
        .await
        .expect("Redis on 127.0.0.1:6379 (see .ci/run)")
}

async fn memory_cache() -> Cache {
    Cache::builder().build().await.expect("in-process cache")
}

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

/// Answers `page <n>` where n counts calls, with extra headers from the query
/// (`?h=name:value&h=…`), a status (`?status=500`) or a body size (`?size=N`).
async fn page(State(calls): State<Calls>, req: axum::extract::Request) -> Response {
    let n = calls.0.fetch_add(1, Ordering::SeqCst) + 1;
    let q = req.uri().query().unwrap_or("").to_owned();
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    let mut body = format!(
        "page {n} ?{q} for {}",
        req.headers().get("accept-language").and_then(|v| v.to_str().ok()).unwrap_or("-")
    );
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace("%20", " ").replace("%22", "\"");
        match k {
            "h" => {
                let (name, value) = v.split_once(':').expect("h=name:value");
                headers.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    header::HeaderValue::from_str(value).unwrap(),
                );
            }
            "status" => status = StatusCode::from_u16(v.parse().unwrap()).unwrap(),
            "size" => body = "x".repeat(v.parse().unwrap()),
            _ => {}
        }
    }
    (status, headers, body).into_response()
}

fn app(view: CachedView, calls: &Calls) -> Router {
    Router::new()
        .route("/page", get(page).post(page).layer(view.clone()))
        .route("/other", get(page).layer(view))
        .with_state(calls.clone())
}

async fn hit_after_miss(addr: std::net::SocketAddr, path: &str, calls: &Calls) -> (support::Reply, support::Reply) {
    let a = fetch(addr, path).await;
    let b = fetch(addr, path).await;
    assert_eq!((a.x_cache(), b.x_cache()), ("miss", "hit"), "{path}: {} / {}", a.text(), b.text());
    assert_eq!(a.body, b.body, "{path}");
    assert_eq!(calls.take(), 1, "{path}: the hit did not run the handler");
    (a, b)
}

#[tokio::test]
async fn a_cached_view_is_a_hit_and_invalidate_drops_every_variant_of_its_path() {
    for cache in [redis_cache().await, memory_cache().await] {
        let calls = Calls::default();
        let view = cached_view(&cache, "pages", Duration::from_secs(60));
        let s = serve(app(view.clone(), &calls)).await;
        hit_after_miss(s.addr, "/page", &calls).await;
        hit_after_miss(s.addr, "/page?x=1", &calls).await;
        hit_after_miss(s.addr, "/other", &calls).await;
        view.invalidate("/page?ignored=1").await.unwrap();
        assert_eq!(fetch(s.addr, "/page").await.x_cache(), "miss");
        assert_eq!(fetch(s.addr, "/page?x=1").await.x_cache(), "miss", "every query string of the path");
        assert_eq!(fetch(s.addr, "/other").await.x_cache(), "hit", "another path stays");
        assert_eq!(calls.take(), 2);
    }
}

#[tokio::test]
async fn the_query_string_is_in_the_key_unless_ignored() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "q", Duration::from_secs(60)), &calls)).await;
    let (a, _) = hit_after_miss(s.addr, "/page?p=1", &calls).await;
    let (b, _) = hit_after_miss(s.addr, "/page?p=2", &calls).await;
    assert_ne!(a.body, b.body);
    let s = serve(app(cached_view(&cache, "q-path-only", Duration::from_secs(60)).ignore_query(), &calls)).await;
    hit_after_miss(s.addr, "/page?p=1", &calls).await;
    assert_eq!(fetch(s.addr, "/page?p=2").await.x_cache(), "hit", "keyed on the path alone");
    assert_eq!(calls.take(), 0);
}

#[tokio::test]
async fn only_get_and_head_are_cached_and_head_apart_from_get() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "m", Duration::from_secs(60)), &calls)).await;
    for _ in 0..2 {
        assert_eq!(request(s.addr, "POST", "/page", &[]).await.x_cache(), "bypass");
    }
    assert_eq!(calls.take(), 2, "POST always runs the handler");
    let h1 = request(s.addr, "HEAD", "/page", &[]).await;
    let h2 = request(s.addr, "HEAD", "/page", &[]).await;
    assert_eq!((h1.x_cache(), h2.x_cache()), ("miss", "hit"));
    assert!(h2.body.is_empty());
    assert_eq!(fetch(s.addr, "/page").await.x_cache(), "miss", "GET has its own entry");
}

#[tokio::test]
async fn unsuccessful_responses_are_not_stored() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "status", Duration::from_secs(60)), &calls)).await;
    for status in [500, 404, 302, 206] {
        for _ in 0..2 {
            let r = fetch(s.addr, &format!("/page?status={status}")).await;
            assert_eq!((r.status, r.x_cache()), (status, "bypass"));
        }
    }
    assert_eq!(calls.take(), 8);
}

#[tokio::test]
async fn set_cookie_private_no_store_and_vary_star_are_never_stored() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "priv", Duration::from_secs(60)), &calls)).await;
    for h in [
        "set-cookie:session=1",
        "cache-control:private",
        "cache-control:max-age=60,%20no-store",
        "cache-control:no-cache",
        "vary:*",
    ] {
        for _ in 0..2 {
            let r = fetch(s.addr, &format!("/page?h={h}")).await;
            assert_eq!((r.status, r.x_cache()), (200, "bypass"), "{h}");
        }
        assert_eq!(calls.take(), 2, "{h}: never from the cache");
    }
    hit_after_miss(s.addr, "/page?h=cache-control:public,%20max-age=60", &calls).await;
}

#[tokio::test]
async fn headers_a_response_varies_on_become_part_of_its_key() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "vary", Duration::from_secs(60)), &calls)).await;
    let path = "/page?h=vary:Accept-Language";
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    // The first response names a header the key lacked: not stored; the view keys on it now.
    assert_eq!(request(s.addr, "GET", path, &en).await.x_cache(), "bypass");
    let a = request(s.addr, "GET", path, &en).await;
    let b = request(s.addr, "GET", path, &en).await;
    assert_eq!((a.x_cache(), b.x_cache()), ("miss", "hit"));
    assert!(b.text().ends_with("for en"), "{}", b.text());
    let c = request(s.addr, "GET", path, &de).await;
    assert_eq!(c.x_cache(), "miss", "another language is another entry");
    assert!(c.text().ends_with("for de"), "{}", c.text());
    assert_eq!(request(s.addr, "GET", path, &de).await.x_cache(), "hit");
    assert_eq!(calls.take(), 3);
    // Declared up front: stored from the first response.
    let s = serve(app(
        cached_view(&cache, "vary-declared", Duration::from_secs(60)).vary_on([header::ACCEPT_LANGUAGE]),
        &calls,
    ))
    .await;
    assert_eq!(request(s.addr, "GET", path, &en).await.x_cache(), "miss");
    assert_eq!(request(s.addr, "GET", path, &en).await.x_cache(), "hit");
}

#[tokio::test]
async fn an_etag_is_kept_and_if_none_match_gets_304() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "etag", Duration::from_secs(60)), &calls)).await;
    let first = fetch(s.addr, "/page").await;
    let tag = first.header("etag").expect("an ETag (generated)").to_owned();
    assert!(tag.starts_with("W/\""), "{tag}");
    let nm = request(s.addr, "GET", "/page", &[("if-none-match", &tag)]).await;
    assert_eq!((nm.status, nm.x_cache()), (304, "hit"));
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("etag"), Some(tag.as_str()));
    let other = request(s.addr, "GET", "/page", &[("if-none-match", "\"nope\"")]).await;
    assert_eq!((other.status, other.body.clone()), (200, first.body.clone()));
    // The handler's own ETag is kept as it is.
    let own = fetch(s.addr, "/page?h=etag:%22v7%22").await;
    assert_eq!(own.header("etag"), Some("\"v7\""));
    let nm = request(s.addr, "GET", "/page?h=etag:%22v7%22", &[("if-none-match", "W/\"v7\"")]).await;
    assert_eq!(nm.status, 304);
    assert_eq!(calls.take(), 2);
}

#[tokio::test]
async fn requests_with_credentials_are_not_shared_unless_the_key_has_the_user() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "auth", Duration::from_secs(60)), &calls)).await;
    hit_after_miss(s.addr, "/page", &calls).await;
    for creds in [("authorization", "Bearer alice"), ("cookie", "session=alice")] {
        let r = request(s.addr, "GET", "/page", &[creds]).await;
        assert_eq!(r.x_cache(), "bypass", "{creds:?}: not served the anonymous entry, not stored");
    }
    assert_eq!(calls.take(), 2);

    let per_user = cached_view(&cache, "auth-per-user", Duration::from_secs(60)).per_user(|p| {
        p.headers.get("authorization").map(|v| v.to_str().unwrap_or("?").to_owned()).or(Some(String::new()))
    });
    let s = serve(app(per_user, &calls)).await;
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    let a1 = request(s.addr, "GET", "/page", &alice).await;
    let a2 = request(s.addr, "GET", "/page", &alice).await;
    assert_eq!((a1.x_cache(), a2.x_cache()), ("miss", "hit"));
    let b1 = request(s.addr, "GET", "/page", &bob).await;
    assert_eq!(b1.x_cache(), "miss", "bob does not get alice's page");
    assert_ne!(a1.body, b1.body);
    assert_eq!(calls.take(), 2);
}

#[tokio::test]
async fn bodies_over_the_cap_pass_through_whole_and_are_not_stored() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "big", Duration::from_secs(60)).max_body(1000), &calls)).await;
    hit_after_miss(s.addr, "/page?size=1000", &calls).await;
    for _ in 0..2 {
        let r = fetch(s.addr, "/page?size=5000").await;
        assert_eq!((r.x_cache(), r.body.len()), ("bypass", 5000));
    }
    assert_eq!(calls.take(), 2);
}

/// A streamed body larger than the cap: passed through, chunk by chunk, complete.
#[tokio::test]
async fn a_streaming_body_over_the_cap_is_streamed_not_buffered() {
    let cache = redis_cache().await;
    let chunks = || {
        let parts = (0..64).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{i:04}").repeat(64))));
        Body::from_stream(futures_util::stream::iter(parts))
    };
    let app = Router::new()
        .route("/stream", get(move || async move { chunks() }))
        .layer(cached_view(&cache, "stream", Duration::from_secs(60)).max_body(1024));
    let s = serve(app).await;
    let r = fetch(s.addr, "/stream").await;
    assert_eq!((r.status, r.x_cache(), r.body.len()), (200, "bypass", 64 * 256));
    assert!(r.text().starts_with("0000000000") && r.text().ends_with("0063"));
}

#[tokio::test]
async fn the_status_header_is_configurable() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let view = cached_view(&cache, "hdr", Duration::from_secs(60))
        .status_header(Some(header::HeaderName::from_static("x-view")));
    let s = serve(app(view, &calls)).await;
    fetch(s.addr, "/page").await;
    let r = fetch(s.addr, "/page").await;
    assert_eq!((r.header("x-view"), r.header("x-cache")), (Some("hit"), None));
    let s = serve(app(cached_view(&cache, "nohdr", Duration::from_secs(60)).status_header(None), &calls)).await;
    assert_eq!(fetch(s.addr, "/page").await.header("x-cache"), None);
}

#[tokio::test]
async fn key_companion_gets_sets_and_deletes_one_entry() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let view = cached_view(&cache, "keyed", Duration::from_secs(60));
    let s = serve(app(view.clone(), &calls)).await;
    let key = view.key("/page").unwrap();
    assert!(!key.exists().await.unwrap());
    let r = fetch(s.addr, "/page").await;
    assert_eq!(key.get().await.unwrap(), (StatusCode::OK, r.body.clone()));
    assert!(key.set("text/plain", "set by hand").await.unwrap());
    let r = fetch(s.addr, "/page").await;
    assert_eq!((r.x_cache(), r.text().as_str(), r.header("content-type")), ("hit", "set by hand", Some("text/plain")));
    assert!(key.delete().await.unwrap());
    assert_eq!(fetch(s.addr, "/page").await.x_cache(), "miss");
}

#[tokio::test]
async fn extra_separates_entries_and_deps_invalidate() {
    let cache = redis_cache().await;
    let calls = Calls::default();
    let dep = || Dep::table("post");
    let a = serve(app(cached_view_as(&cache, "extra", dep()).extra("v1"), &calls)).await;
    let b = serve(app(cached_view_as(&cache, "extra", dep()).extra("v2"), &calls)).await;
    hit_after_miss(a.addr, "/page", &calls).await;
    assert_eq!(fetch(b.addr, "/page").await.x_cache(), "miss", "another extra, another entry");
    assert_eq!(fetch(b.addr, "/page").await.x_cache(), "hit");
    let row = [("id".to_owned(), Value::Int(1))].into();
    cache.invalidate_obj("post", &row).await.unwrap();
    assert_eq!(fetch(a.addr, "/page").await.x_cache(), "miss", "a write to the dependency");
    assert_eq!(fetch(b.addr, "/page").await.x_cache(), "miss");
    calls.take();
}

#[tokio::test]
async fn a_route_without_the_layer_is_untouched_and_a_router_layer_covers_its_routes() {
    let cache = memory_cache().await;
    let calls = Calls::default();
    let app = Router::new()
        .route("/a", get(page))
        .route("/b", post(page))
        .route_layer(cached_view(&cache, "router", Duration::from_secs(60)))
        .route("/plain", get(page))
        .with_state(calls.clone());
    let s = serve(app).await;
    hit_after_miss(s.addr, "/a", &calls).await;
    assert_eq!(fetch(s.addr, "/plain").await.header("x-cache"), None);
    assert_eq!(request(s.addr, "POST", "/b", &[]).await.x_cache(), "bypass");
}

/// The in-process backend, except that every store fails (as Redis going away between the
/// lookup and the store would make it).
#[derive(Debug)]
struct FailingStores(cacheops::MemoryBackend);

#[async_trait::async_trait]
impl cacheops::Backend for FailingStores {
    async fn read(&self, req: &cacheops_core::ReadRequest) -> Result<cacheops_core::ReadReply, cacheops::BackendError> {
        self.0.read(req).await
    }
    async fn store(
        &self,
        _: &cacheops_core::ReadRequest,
        _: &cacheops_core::Stamps,
        _: &[u8],
        _: Duration,
    ) -> Result<bool, cacheops::BackendError> {
        Err(cacheops::BackendError::unavailable("store refused by the test"))
    }
    async fn mark(&self, req: &cacheops_core::WriteRequest) -> Result<(), cacheops::BackendError> {
        self.0.mark(req).await
    }
    async fn finish(&self, req: &cacheops_core::WriteRequest) -> Result<(), cacheops::BackendError> {
        self.0.finish(req).await
    }
    async fn delete_stamps(&self, keys: &[String]) -> Result<(), cacheops::BackendError> {
        self.0.delete_stamps(keys).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, cacheops::BackendError> {
        self.0.get(key).await
    }
    async fn set(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), cacheops::BackendError> {
        self.0.set(key, data, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, cacheops::BackendError> {
        self.0.delete(key).await
    }
    async fn ping(&self) -> Result<(), cacheops::BackendError> {
        self.0.ping().await
    }
    async fn register(&self, registry: &str, members: &[String]) -> Result<(), cacheops::BackendError> {
        self.0.register(registry, members).await
    }
    async fn registered(&self, registry: &str) -> Result<Vec<String>, cacheops::BackendError> {
        self.0.registered(registry).await
    }
}

#[tokio::test]
async fn a_cache_that_fails_after_the_handler_ran_still_serves_its_response() {
    let backend = Arc::new(FailingStores(cacheops::MemoryBackend::new(1000)));
    let cache = Cache::builder().backend(backend).degrade(false).build().await.unwrap();
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "failing", Duration::from_secs(60)), &calls)).await;
    for _ in 0..2 {
        let r = fetch(s.addr, "/page").await;
        assert_eq!((r.status, r.x_cache()), (200, "bypass"), "{}", r.text());
        assert!(r.text().starts_with("page "), "{}", r.text());
    }
    assert_eq!(calls.take(), 2, "the handler ran once per request, never twice");
}

#[tokio::test]
async fn per_transfer_headers_are_not_replayed_from_the_cache() {
    let cache = memory_cache().await;
    let calls = Calls::default();
    let s = serve(app(cached_view(&cache, "hop", Duration::from_secs(60)), &calls)).await;
    let path = "/page?h=keep-alive:timeout=5&h=x-kept:yes";
    let first = fetch(s.addr, path).await;
    let hit = fetch(s.addr, path).await;
    assert_eq!((first.x_cache(), hit.x_cache()), ("miss", "hit"));
    assert_eq!(hit.header("x-kept"), Some("yes"), "an ordinary header is kept");
    assert_eq!(hit.header("keep-alive"), None, "a hop-by-hop header is not replayed");
    assert_eq!(hit.header("content-length").map(|v| v.parse::<usize>().unwrap()), Some(hit.body.len()));
}
