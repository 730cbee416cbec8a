//! Redis outages with `MarkFailure::Proceed`: reads keep working from the database, writes go
//! on, and the invalidations issued meanwhile take effect once Redis is back, before this
//! process serves any hit. (With the default, `RefuseWrite`, such writes fail: see
//! `write_refusal.rs`.)

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cacheops::{Cache, Lookup, MarkFailure, Query, TableChange};
use support::*;

/// A tiny "database": row id → (category_id, version).
#[derive(Clone, Default)]
struct Db(Arc<Mutex<HashMap<i64, (i64, u64)>>>);

impl Db {
    fn category(&self, c: i64) -> String {
        let rows = self.0.lock().unwrap();
        let mut v: Vec<String> =
            rows.iter().filter(|(_, (cat, _))| *cat == c).map(|(id, (_, ver))| format!("{id}@{ver}")).collect();
        v.sort();
        v.join(",")
    }
}

async fn read(cache: &Cache, db: &Db, q: &Query, cat: i64) -> (String, bool) {
    match cache.lookup(q).await.expect("degrade mode never surfaces errors") {
        Lookup::Hit(d) => (String::from_utf8(d).unwrap(), true),
        Lookup::Miss(t) => {
            let v = db.category(cat);
            cache.store(t, v.as_bytes()).await.expect("degrade mode never surfaces errors");
            (v, false)
        }
        Lookup::Bypass(_) => (db.category(cat), false),
    }
}

/// A write through the cache's protocol: lease, change, commit, finish.
async fn write(cache: &Cache, db: &Db, id: i64, cat: i64) {
    let old = db.0.lock().unwrap().get(&id).copied();
    let mut lease = cache.write_lease();
    let mut rows = vec![row(&[("id", id), ("category_id", cat)])];
    if let Some((old_cat, _)) = old {
        rows.push(row(&[("id", id), ("category_id", old_cat)]));
    }
    lease.mark(TableChange::rows("post", rows)).await.expect("degrade");
    {
        let mut g = db.0.lock().unwrap();
        let ver = g.get(&id).map_or(1, |(_, v)| v + 1);
        g.insert(id, (cat, ver));
    }
    lease.before_commit().await.expect("degrade");
    lease.finish().await.expect("degrade");
}

async fn cache_for(redis: &OwnRedis) -> Cache {
    support::builder()
        .redis_url(redis.url())
        .retry_interval(Duration::from_millis(200))
        .on_mark_failure(MarkFailure::Proceed)
        .build()
        .await
        .unwrap()
}

async fn outage_scenario(frozen: bool) {
    let mut server = OwnRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let cache = cache_for(&server).await;
    let db = Db::default();
    write(&cache, &db, 1, 3).await;
    write(&cache, &db, 2, 4).await;
    let q3 = cache.query(b"cat3", deps_eq("post", "category_id", 3));
    let q4 = cache.query(b"cat4", deps_eq("post", "category_id", 4));
    read(&cache, &db, &q3, 3).await;
    read(&cache, &db, &q4, 4).await;
    assert_eq!(read(&cache, &db, &q3, 3).await, ("1@1".into(), true));

    if frozen {
        server.freeze()
    } else {
        server.stop()
    }

    // Outage: writes go on, reads go to the database and are fresh, and quickly (breaker).
    write(&cache, &db, 1, 3).await; // version 2 of row 1
    assert!(cache.pending_invalidations() > 0, "the failed invalidation is kept");
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(read(&cache, &db, &q3, 3).await, ("1@2".into(), false));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the circuit breaker spares callers the timeouts");

    if frozen {
        server.thaw()
    } else {
        server.restart()
    }
    // The old value is still in Redis (the server kept its data), yet it is never served.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut saw_hit = false;
    for _ in 0..20 {
        let (v, hit) = read(&cache, &db, &q3, 3).await;
        assert_eq!(v, "1@2", "stale read after the outage");
        saw_hit |= hit;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_hit, "the cache recovers");
    assert_eq!(cache.pending_invalidations(), 0);
    assert!(cache.stats().replayed > 0, "the invalidation was replayed");
    if frozen {
        // Granularity survived: category 4 was not invalidated by the replay.
        assert_eq!(read(&cache, &db, &q4, 4).await, ("2@1".into(), true));
    } else {
        // A restarted server is another server: whatever it kept (here its AOF) is never served.
        assert_eq!(read(&cache, &db, &q4, 4).await, ("2@1".into(), false));
    }
}

#[tokio::test]
async fn frozen_redis_replays_invalidations() {
    outage_scenario(true).await;
}

#[tokio::test]
async fn restarted_redis_replays_invalidations() {
    outage_scenario(false).await;
}

#[tokio::test]
async fn overflowing_replay_queue_fences_the_cache() {
    let server = OwnRedis::start(&[]);
    let cache = support::builder()
        .redis_url(server.url())
        .retry_interval(Duration::from_millis(100))
        .on_mark_failure(MarkFailure::Proceed)
        .replay_limit(2)
        .build()
        .await
        .unwrap();
    let db = Db::default();
    write(&cache, &db, 1, 3).await;
    write(&cache, &db, 2, 4).await;
    let q4 = cache.query(b"cat4", deps_eq("post", "category_id", 4));
    read(&cache, &db, &q4, 4).await;
    assert!(read(&cache, &db, &q4, 4).await.1);
    server.freeze();
    for i in 0..5 {
        write(&cache, &db, 2, 4 + (i % 2)).await; // more failed invalidations than the queue holds
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    server.thaw();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let expected = db.category(4);
    let (v, hit) = read(&cache, &db, &q4, 4).await;
    assert_eq!(v, expected);
    assert!(!hit, "after a fence nothing cached before it is served");
    assert!(cache.stats().fences >= 1);
}
