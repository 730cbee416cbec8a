//! Durations from configuration never overflow: `Duration::MAX` ("forever") works for every
//! setting, on the in-process backend and on Redis.

mod support;

use std::time::Duration;

use cacheops::{Cache, Lookup, Profile, Profiles, TableChange};
use support::*;

async fn exercise(cache: Cache) {
    let q = cache.query(b"forever", deps_eq("post", "category_id", 3));
    let v = cache.get_or_compute(&q, || async { Ok::<_, cacheops::Error>(b"v1".to_vec()) }).await.expect("compute");
    assert_eq!(v, b"v1");
    assert!(matches!(cache.lookup(&q).await.expect("lookup"), Lookup::Hit(_)), "the value is a hit");
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", [row(&[("id", 1), ("category_id", 3)])])).await.expect("mark");
    lease.before_commit().await.expect("before_commit");
    lease.finish().await.expect("finish");
    assert!(!matches!(cache.lookup(&q).await.expect("lookup"), Lookup::Hit(_)), "invalidated");
    let f = cache.cached_as("forever-fn", "post").timeout(Duration::MAX).lock(true);
    let n: u32 = f.get_or_compute(&(), || async { Ok::<_, cacheops::Error>(7) }).await.expect("fn");
    assert_eq!(n, 7);
    use cacheops::SimpleStore;
    let simple = cache.simple();
    simple.set("forever-simple", &5u8, Some(Duration::MAX)).await.expect("set");
    assert_eq!(simple.get::<u8>("forever-simple").await.expect("get"), 5);
    let timed = cache.cached("forever-timed").timeout(Duration::MAX);
    let n: u32 = timed.get_or_compute(&(), || async { Ok::<_, cacheops::Error>(8) }).await.expect("timed");
    assert_eq!(n, 8);
}

fn forever(builder: cacheops::CacheBuilder) -> cacheops::CacheBuilder {
    builder
        .lease(Duration::MAX)
        .default_timeout(Duration::MAX)
        .retry_interval(Duration::MAX)
        .lock_wait(Duration::MAX)
        .lock_ttl(Duration::MAX)
        .profiles(
            Profiles::builder()
                .profile("post", Profile::builder().ops(["all"]).timeout(Duration::MAX).lock(true))
                .build()
                .expect("profiles"),
        )
}

#[tokio::test]
async fn duration_max_in_process() {
    exercise(forever(support::builder()).build().await.expect("build")).await;
}

#[tokio::test]
async fn duration_max_on_redis() {
    require_shared_redis();
    let cache = forever(support::builder()).redis_url(SHARED_REDIS).prefix(unique_prefix("forever")).build().await.expect("build");
    exercise(cache).await;
}
