//! A Redis that serves reads but refuses writes (OOM with `noeviction`, `CLIENT PAUSE WRITE`, a
//! read-only replica) must never let *another* process hit a value a committed write changed.
//! Two caches on one server play two processes: one writes, the other reads; every case first
//! proves the reader's value is a hit, and compares every read with the "database".

mod support;

use std::time::Duration;

use cacheops::{Cache, MarkFailure, Query, TableChange};
use support::*;

/// Moves row `id` to category `cat` through the protocol. The "database" changes only if the
/// lease was placed (as the SeaORM integration rolls back otherwise). Returns whether it did.
async fn write(cache: &Cache, db: &CategoryDb, id: i64, cat: i64) -> bool {
    let old = db.0.lock().unwrap().get(&id).copied();
    let rows = db.rows_of_move(id, cat);
    let mut lease = cache.write_lease();
    if let Err(e) = lease.mark(TableChange::rows("post", rows)).await {
        assert!(e.is_unavailable(), "{e}");
        let _ = lease.finish().await;
        return false;
    }
    db.0.lock().unwrap().insert(id, cat);
    if lease.before_commit().await.is_err() {
        // A real integration rolls back here.
        match old {
            Some(old) => db.0.lock().unwrap().insert(id, old),
            None => db.0.lock().unwrap().remove(&id),
        };
        let _ = lease.finish().await;
        return false;
    }
    let _ = lease.finish().await;
    true
}

async fn cache_on(server: &OwnRedis, prefix: &str, policy: MarkFailure) -> Cache {
    support::builder()
        .redis_url(server.url())
        .prefix(prefix)
        .retry_interval(Duration::from_millis(100))
        .on_mark_failure(policy)
        .build()
        .await
        .expect("build")
}

/// A writer and a reader process on `server`, with row 1 in category 3 cached by the reader.
async fn setup(server: &OwnRedis, policy: MarkFailure) -> (Cache, Cache, CategoryDb, Query) {
    let prefix = unique_prefix("refusal");
    let writer = cache_on(server, &prefix, policy).await;
    let reader = cache_on(server, &prefix, MarkFailure::default()).await;
    let db = CategoryDb::default();
    assert!(write(&writer, &db, 1, 3).await);
    let q = reader.query(b"cat3", deps_eq("post", "category_id", 3));
    read_category(&reader, &db, &q, 3).await;
    assert_eq!(read_category(&reader, &db, &q, 3).await, ("1".into(), true), "the reader's value must be a hit first");
    (writer, reader, db, q)
}

/// After the fault, whatever the writer managed, the reader never sees anything but the database.
async fn reader_stays_fresh(reader: &Cache, db: &CategoryDb, q: &Query) {
    for _ in 0..10 {
        let expected = db.category(3);
        assert_eq!(read_category(reader, db, q, 3).await.0, expected, "stale read in another process");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn oom_noeviction_still_places_leases() {
    let server = OwnRedis::start(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let (writer, reader, db, q) = setup(&server, MarkFailure::default()).await;
    // Fill the server past maxmemory (a script that starts under the limit may exceed it).
    server.cli(&["EVAL", "for i = 1, 600 do redis.call('SET', 'junk' .. i, string.rep('x', 10000)) end", "0"]);
    assert!(server.cli(&["SET", "probe", "x"]).contains("OOM"), "the server must be out of memory (test setup)");
    // Misses cannot register or store at OOM: they go to the database, but the server is up, so
    // the breaker stays closed and writes are not refused.
    let other = writer.query(b"cat9", deps_eq("post", "category_id", 9));
    assert_eq!(read_category(&writer, &db, &other, 9).await, (String::new(), false));
    assert!(writer.health().available && !writer.health().degraded, "{:?}", writer.health());
    // The lease is placed (`allow-oom`), so the write goes on and nobody hits the old value.
    assert!(write(&writer, &db, 1, 4).await, "a lease must be placeable at OOM");
    assert_eq!(writer.health().pending_replays, 0, "the invalidation was delivered, not queued");
    reader_stays_fresh(&reader, &db, &q).await;
    assert_eq!(read_category(&reader, &db, &q, 3).await.0, "");
}

#[tokio::test]
async fn client_pause_write_refuses_the_write() {
    let server = OwnRedis::start(&[]);
    let (writer, reader, db, q) = setup(&server, MarkFailure::default()).await;
    server.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    // The mark waits behind the pause and times out: the write is refused, so the old value
    // is still the database's.
    assert!(!write(&writer, &db, 1, 4).await, "the write must be refused while Redis takes no writes");
    assert!(writer.health().degraded);
    let (v, hit) = read_category(&reader, &db, &q, 3).await;
    assert_eq!((v.as_str(), hit), ("1", true), "hits of unchanged data go on during the pause");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Once writes are taken again, so are leases.
    assert!(write(&writer, &db, 1, 4).await);
    reader_stays_fresh(&reader, &db, &q).await;
}

#[tokio::test]
async fn read_only_replica_refuses_the_write() {
    let server = OwnRedis::start(&["--replica-serve-stale-data", "yes"]);
    let (writer, reader, db, q) = setup(&server, MarkFailure::default()).await;
    // The server turns into a replica of an unreachable master: it serves its data, refuses writes.
    server.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    assert!(server.cli(&["SET", "probe", "x"]).contains("READONLY"), "test setup");
    assert!(!write(&writer, &db, 1, 4).await, "the write must be refused on a READONLY server");
    reader_stays_fresh(&reader, &db, &q).await;
    server.cli(&["REPLICAOF", "NO", "ONE"]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(write(&writer, &db, 1, 4).await);
    reader_stays_fresh(&reader, &db, &q).await;
}

#[tokio::test]
async fn unreachable_redis_refuses_writes_and_reports_health() {
    let mut server = OwnRedis::start(&[]);
    let (writer, reader, db, q) = setup(&server, MarkFailure::default()).await;
    server.stop();
    assert!(!write(&writer, &db, 1, 4).await);
    let h = writer.health();
    assert!(h.degraded && h.last_error.is_some() && h.errors > 0, "{h:?}");
    server.restart();
    reader_stays_fresh(&reader, &db, &q).await;
}

#[tokio::test]
async fn unreachable_redis_at_start_up_is_reported() {
    let mut server = OwnRedis::start(&[]);
    let url = server.url();
    server.stop();
    let cache = support::builder().redis_url(url).build().await.expect("builds while Redis is down");
    // The start-up check runs in the background.
    for _ in 0..100 {
        if cache.health().degraded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = cache.health();
    assert!(h.degraded && !h.available && h.errors >= 1, "{h:?}");
}

#[tokio::test]
async fn queued_invalidations_are_replayed_without_a_lookup() {
    let server = OwnRedis::start(&[]);
    let (writer, _reader, db, _q) = setup(&server, MarkFailure::Proceed).await;
    server.freeze();
    assert!(write(&writer, &db, 1, 4).await, "Proceed lets the write through");
    assert!(writer.health().pending_replays > 0);
    server.thaw();
    // No lookup through `writer`: the background replay delivers it.
    for _ in 0..100 {
        if writer.health().pending_replays == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(writer.health().pending_replays, 0, "replayed in the background");
    assert!(writer.stats().replayed > 0);
}
