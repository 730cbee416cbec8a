//! Errors a user can act on: the cause is kept as `source()` (never repeated in the message),
//! and the predicates say whether the backend was unavailable or timed out. Real sockets: a
//! port nobody listens on, and a listener that accepts and never answers.

use std::error::Error as _;
use std::time::Duration;

use cacheops::redis_backend::{RedisBackend, RedisBackendError};
use cacheops::{BackendError, Cache, SimpleStore};

/// A loopback port that refuses connections (bound, then closed).
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A listener that accepts connections and never writes a byte.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    (port, task)
}

/// Every link of the chain that is ours: its message does not contain its cause's message.
/// (The Redis client's own error repeats its I/O cause; that is redis-rs's, below ours.)
fn assert_cause_once(e: &(dyn std::error::Error + 'static)) {
    let mut cur = Some(e);
    while let Some(level) = cur {
        if level.downcast_ref::<redis::RedisError>().is_some() {
            break;
        }
        if let Some(cause) = level.source() {
            let (outer, inner) = (level.to_string(), cause.to_string());
            assert!(!outer.contains(&inner), "{outer:?} repeats its cause {inner:?}");
        }
        cur = level.source();
    }
}

#[tokio::test]
async fn refused_connection_at_build_is_unavailable_with_its_cause() {
    let url = format!("redis://127.0.0.1:{}/0", refused_port());
    let err = Cache::builder().redis_url(&url).degrade(false).build().await.expect_err("nobody listens");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    let cause = err.source().expect("the client's error is kept");
    assert!(cause.downcast_ref::<redis::RedisError>().is_some(), "{cause:?}");
    assert!(err.to_string().contains("cannot connect to Redis"), "{err}");
    assert_cause_once(&err);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (port, task) = silent_server().await;
    let backend = RedisBackend::builder()
        .url(format!("redis://127.0.0.1:{port}/0"))
        .response_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .retries(0)
        .build_lazy()
        .await
        .expect("lazy build does not connect");
    let cache = Cache::builder().backend(std::sync::Arc::new(backend)).degrade(false).build().await.expect("cache");
    let err = cache.simple().get::<String>("k").await.expect_err("the server never answers");
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_unavailable(), "{err:?}");
    let backend_err = err.backend_error().expect("a backend error");
    assert!(backend_err.source().is_some(), "the cause is kept: {backend_err:?}");
    assert_cause_once(&err);
    // Once the breaker is open, the answer is still "unavailable" (no network call).
    let again = cache.simple().get::<String>("k").await.expect_err("breaker open");
    assert!(again.is_unavailable(), "{again:?}");
    task.abort();
}

#[tokio::test]
async fn a_server_error_reply_is_neither_unavailable_nor_a_timeout() {
    // A real Redis refusing a command for a reason that retrying will not fix: WRONGTYPE.
    let client = redis::Client::open("redis://127.0.0.1:6379/0").expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("the shared Redis on 6379");
    let key = format!("cacheops-test:errors:{}", std::process::id());
    let _: () = redis::cmd("LPUSH").arg(&key).arg("x").query_async(&mut conn).await.expect("lpush");
    let r: Result<String, redis::RedisError> = redis::cmd("GET").arg(&key).query_async(&mut conn).await;
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("del");
    let e: BackendError = RedisBackendError::Command(r.expect_err("WRONGTYPE")).into();
    assert!(!e.is_unavailable() && !e.is_timeout(), "{e:?}");
    assert!(e.source().and_then(|s| s.downcast_ref::<redis::RedisError>()).is_some(), "{e:?}");
    assert_eq!(e.to_string(), "cache backend error: Redis command failed");
    assert_cause_once(&e);
}
