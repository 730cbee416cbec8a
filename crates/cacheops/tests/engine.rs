//! The engine's acceptance tests, against the in-process backend and a real Redis.

mod support;

use std::time::Duration;

use cacheops::{Cache, CacheBuilder, Lookup, Profile, Profiles, TableChange};
use support::*;

async fn memory() -> Cache {
    support::builder().build().await.unwrap()
}

async fn redis(name: &str) -> Cache {
    require_shared_redis();
    support::builder().redis_url(SHARED_REDIS).prefix(unique_prefix(name)).degrade(false).build().await.unwrap()
}

/// Runs a scenario against both backends.
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_process() {
                super::$body(super::memory().await).await;
            }
            #[tokio::test]
            async fn redis() {
                super::$body(super::redis(stringify!($name)).await).await;
            }
        }
    };
}

async fn fetch(cache: &Cache, q: &cacheops::Query, db_value: &str) -> (String, bool) {
    match cache.lookup(q).await.unwrap() {
        Lookup::Hit(d) => (String::from_utf8(d).unwrap(), true),
        Lookup::Miss(t) => {
            cache.store(t, db_value.as_bytes()).await.unwrap();
            (db_value.to_owned(), false)
        }
        Lookup::Bypass(_) => (db_value.to_owned(), false),
    }
}

async fn hit_after_store(cache: Cache) {
    let q = cache.query(b"q1", deps_eq("post", "id", 1));
    assert_eq!(fetch(&cache, &q, "v1").await, ("v1".into(), false));
    assert_eq!(fetch(&cache, &q, "unused").await, ("v1".into(), true));
}
both_backends!(hit_after_store_, hit_after_store);

async fn miss_after_ttl(cache: Cache) {
    let q = cache.query(b"ttl", deps_eq("post", "id", 1)).with_timeout(Duration::from_millis(300));
    fetch(&cache, &q, "v1").await;
    assert!(fetch(&cache, &q, "v1").await.1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(fetch(&cache, &q, "v2").await, ("v2".into(), false));
}
both_backends!(miss_after_ttl_, miss_after_ttl);

async fn granular(cache: Cache) {
    let q3 = cache.query(b"cat3", deps_eq("post", "category_id", 3));
    let q4 = cache.query(b"cat4", deps_eq("post", "category_id", 4));
    let all = cache.query(b"all", deps_table("post"));
    let other = cache.query(b"other", deps_table("category"));
    for (q, v) in [(&q3, "a"), (&q4, "b"), (&all, "c"), (&other, "d")] {
        fetch(&cache, q, v).await;
        assert!(fetch(&cache, q, v).await.1);
    }
    cache.invalidate_obj("post", &row(&[("id", 10), ("category_id", 3)])).await.unwrap();
    assert!(!fetch(&cache, &q3, "a2").await.1, "category 3 query must be invalidated");
    assert!(fetch(&cache, &q4, "b").await.1, "category 4 query must survive");
    assert!(!fetch(&cache, &all, "c2").await.1, "table-level query must be invalidated");
    assert!(fetch(&cache, &other, "d").await.1, "other table must survive");

    // An update moving a row from category 4 to 5: old and new values both invalidate.
    let q5 = cache.query(b"cat5", deps_eq("post", "category_id", 5));
    fetch(&cache, &q5, "e").await;
    fetch(&cache, &q3, "a2").await;
    let mut lease = cache.write_lease();
    lease
        .mark(TableChange::rows(
            "post",
            [row(&[("id", 11), ("category_id", 4)]), row(&[("id", 11), ("category_id", 5)])],
        ))
        .await
        .unwrap();
    lease.before_commit().await.unwrap();
    lease.finish().await.unwrap();
    assert!(!fetch(&cache, &q4, "b2").await.1);
    assert!(!fetch(&cache, &q5, "e2").await.1);
    assert!(fetch(&cache, &q3, "a2").await.1, "category 3 untouched by the move");
}
both_backends!(granular_, granular);

async fn lease_blocks_readers(cache: Cache) {
    let q = cache.query(b"leased", deps_eq("post", "id", 7));
    fetch(&cache, &q, "old").await;
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", [row(&[("id", 7)])])).await.unwrap();
    // While the write is in flight: no hit, no store.
    assert!(matches!(cache.lookup(&q).await.unwrap(), Lookup::Bypass(_)));
    lease.finish().await.unwrap();
    assert_eq!(fetch(&cache, &q, "new").await, ("new".into(), false));
    assert!(fetch(&cache, &q, "x").await.1);
}
both_backends!(lease_blocks_readers_, lease_blocks_readers);

async fn store_after_concurrent_write_is_refused(cache: Cache) {
    let q = cache.query(b"race", deps_eq("post", "id", 9));
    let Lookup::Miss(ticket) = cache.lookup(&q).await.unwrap() else { panic!("expected a miss") };
    // The "database read" happens here; a write commits and invalidates meanwhile.
    cache.invalidate_obj("post", &row(&[("id", 9)])).await.unwrap();
    assert!(!cache.store(ticket, b"computed before the write").await.unwrap());
    assert_eq!(fetch(&cache, &q, "fresh").await, ("fresh".into(), false));
}
both_backends!(store_after_concurrent_write_is_refused_, store_after_concurrent_write_is_refused);

async fn model_and_all(cache: Cache) {
    let a = cache.query(b"a", deps_eq("post", "id", 1));
    let b = cache.query(b"b", deps_eq("category", "id", 1));
    fetch(&cache, &a, "a").await;
    fetch(&cache, &b, "b").await;
    cache.invalidate_model("post").await.unwrap();
    assert!(!fetch(&cache, &a, "a").await.1);
    assert!(fetch(&cache, &b, "b").await.1);
    cache.invalidate_all().await.unwrap();
    assert!(!fetch(&cache, &a, "a").await.1);
    assert!(!fetch(&cache, &b, "b").await.1);
}
both_backends!(model_and_all_, model_and_all);

async fn no_invalidation_scope(cache: Cache) {
    let q = cache.query(b"noinv", deps_eq("post", "id", 1));
    fetch(&cache, &q, "v1").await;
    let c2 = cache.clone();
    cacheops::no_invalidation(async move {
        tokio::task::yield_now().await;
        c2.invalidate_obj("post", &row(&[("id", 1)])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        c2.invalidate_model("post").await.unwrap();
    })
    .await;
    assert!(fetch(&cache, &q, "v2").await.1, "suppressed invalidations must not run");
    cache.invalidate_obj("post", &row(&[("id", 1)])).await.unwrap();
    assert_eq!(fetch(&cache, &q, "v2").await, ("v2".into(), false), "explicit invalidation restores");
}
both_backends!(no_invalidation_scope_, no_invalidation_scope);

#[tokio::test]
async fn prefixes_are_isolated() {
    require_shared_redis();
    let p1 = unique_prefix("iso1");
    let p2 = unique_prefix("iso2");
    let c1 = support::builder().redis_url(SHARED_REDIS).prefix(&p1).build().await.unwrap();
    let c2 = support::builder().redis_url(SHARED_REDIS).prefix(&p2).build().await.unwrap();
    let q1 = c1.query(b"same", deps_eq("post", "id", 1));
    let q2 = c2.query(b"same", deps_eq("post", "id", 1));
    fetch(&c1, &q1, "one").await;
    fetch(&c2, &q2, "two").await;
    assert_eq!(fetch(&c1, &q1, "x").await, ("one".into(), true));
    assert_eq!(fetch(&c2, &q2, "x").await, ("two".into(), true));
    c1.invalidate_model("post").await.unwrap();
    assert!(!fetch(&c1, &q1, "one").await.1);
    assert!(fetch(&c2, &q2, "two").await.1, "invalidate_model under p1 must not touch p2");
    c2.invalidate_all().await.unwrap();
    assert!(fetch(&c1, &q1, "one").await.1, "invalidate_all under p2 must not touch p1");
    assert!(!fetch(&c2, &q2, "two").await.1);
}

#[tokio::test]
async fn disabled_cache_is_a_pass_through() {
    let cache = support::builder().enabled(false).build().await.unwrap();
    let q = cache.query(b"x", deps_eq("post", "id", 1));
    assert!(!fetch(&cache, &q, "v").await.1);
    assert!(!fetch(&cache, &q, "v").await.1);
    assert_eq!(cache.stats().hits, 0);
}

#[tokio::test]
async fn bad_configuration_is_rejected_clearly() {
    let err = Profiles::builder().profile("post", Profile::builder().ops(["get", "fetchall"])).build().unwrap_err();
    assert!(err.to_string().contains("unknown cache op \"fetchall\""), "{err}");
    let err = Profiles::builder().profile("post", Profile::builder().timeout(Duration::ZERO)).build().unwrap_err();
    assert!(err.to_string().contains("greater than zero"), "{err}");
    let err = Profiles::builder().profile("po st", Profile::builder()).build().unwrap_err();
    assert!(err.to_string().contains("malformed table pattern"), "{err}");
    let err = support::builder().prefix("a{b}").build().await.unwrap_err();
    assert!(err.to_string().contains("invalid cache prefix"), "{err}");
    // Unreachable Redis with degrade off: the build fails and names the address.
    let err = CacheBuilder::default().redis_url("redis://127.0.0.1:1/0").degrade(false).build().await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    // With degrade on, the application starts and reads go to the database.
    let cache = CacheBuilder::default().redis_url("redis://127.0.0.1:1/0").build().await.unwrap();
    let q = cache.query(b"x", deps_eq("post", "id", 1));
    assert!(matches!(cache.lookup(&q).await.unwrap(), Lookup::Bypass(_)));
    let err = support::builder().redis_url("http://nope").degrade(false).build().await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("url") || err.to_string().contains("scheme"), "{err}");
}
