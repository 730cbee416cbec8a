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
    let cache = forever(support::builder())
        .redis_url(SHARED_REDIS)
        .prefix(unique_prefix("forever"))
        .build()
        .await
        .expect("build");
    exercise(cache).await;
}

fn deps2(table: &str, a: (&str, i64), b: (&str, i64)) -> cacheops::Dependencies {
    let mut d = cacheops::Dependencies::new();
    let conj =
        cacheops::Conj::from_terms([(a.0, cacheops::Value::Int(a.1)), (b.0, cacheops::Value::Int(b.1))]).unwrap();
    d.add(table, cacheops::Dnf::from_conjs([conj], 64), 64);
    d
}

async fn hit(cache: &Cache, q: &cacheops::Query) -> bool {
    match cache.lookup(q).await.expect("lookup") {
        Lookup::Hit(_) => true,
        Lookup::Miss(t) => {
            cache.store(t, b"v").await.expect("store");
            false
        }
        Lookup::Bypass(_) => false,
    }
}

/// Past `max_schemes_per_table` a new scheme resets the table: its values are dropped, the
/// registry starts afresh, and invalidation stays exact afterwards.
async fn scheme_cap(cache: Cache) {
    let qa = cache.query(b"by-id", deps_eq("post", "id", 1));
    let qb = cache.query(b"by-cat", deps_eq("post", "category_id", 3));
    let qc = cache.query(b"by-both", deps2("post", ("id", 1), ("category_id", 3)));
    for q in [&qa, &qb] {
        assert!(!hit(&cache, q).await);
        assert!(hit(&cache, q).await, "cached under the cap");
    }
    // A third scheme: the registry (cap 2) is full.
    assert!(matches!(cache.lookup(&qc).await.expect("lookup"), Lookup::Bypass(cacheops::BypassReason::SchemeCap)));
    assert!(!hit(&cache, &qa).await, "the reset dropped the table's values");
    assert!(hit(&cache, &qa).await);
    // Invalidation is exact after the reset: a row of category 4 leaves `id = 1` alone only if it is another row.
    cache.invalidate_rows("post", &[row(&[("id", 2), ("category_id", 4)])]).await.expect("invalidate");
    assert!(hit(&cache, &qa).await, "an unrelated row does not invalidate");
    cache.invalidate_rows("post", &[row(&[("id", 1), ("category_id", 4)])]).await.expect("invalidate");
    assert!(!hit(&cache, &qa).await, "its row does");
}

/// A write whose rows × schemes exceed the key budget is table-level: it reaches values no
/// row of it matches.
async fn key_budget(cache: Cache) {
    let qa = cache.query(b"by-id-9999", deps_eq("post", "id", 9_999));
    let qb = cache.query(b"by-cat-9999", deps_eq("post", "category_id", 9_999));
    for q in [&qa, &qb] {
        hit(&cache, q).await;
        assert!(hit(&cache, q).await);
    }
    let few: Vec<cacheops::Row> = (0..10).map(|i| row(&[("id", i), ("category_id", i)])).collect();
    cache.invalidate_rows("post", &few).await.expect("invalidate");
    assert!(hit(&cache, &qa).await, "a small write is row-level");
    let many: Vec<cacheops::Row> = (0..600).map(|i| row(&[("id", i), ("category_id", i)])).collect();
    cache.invalidate_rows("post", &many).await.expect("invalidate");
    assert!(!hit(&cache, &qa).await, "600 rows × 2 schemes > 1 024 keys: table-level");
    assert!(!hit(&cache, &qb).await);
}

#[tokio::test]
async fn scheme_cap_in_process() {
    scheme_cap(support::builder().max_schemes_per_table(2).build().await.expect("build")).await;
    key_budget(support::builder().build().await.expect("build")).await;
}

#[tokio::test]
async fn scheme_cap_on_redis() {
    require_shared_redis();
    let b = || support::builder().redis_url(SHARED_REDIS).prefix(unique_prefix("cap"));
    scheme_cap(b().max_schemes_per_table(2).build().await.expect("build")).await;
    key_budget(b().build().await.expect("build")).await;
}

#[tokio::test]
async fn caps_are_validated() {
    for bad in [support::builder().max_schemes_per_table(0), support::builder().max_preimage_rows(0)] {
        let err = bad.build().await.unwrap_err();
        assert!(matches!(err, cacheops::Error::Config(_)), "{err}");
    }
}
