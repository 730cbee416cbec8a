//! A Redis that restarts — empty, or from a snapshot older than the last writes — never serves
//! a value older than a committed write, to any process. Two caches play two processes; every
//! case first proves the reader's value is a hit.

mod support;

use std::time::Duration;

use cacheops::{Cache, Query, TableChange};
use support::*;

async fn write(cache: &Cache, db: &CategoryDb, id: i64, cat: i64) {
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", db.rows_of_move(id, cat))).await.expect("mark");
    db.0.lock().unwrap().insert(id, cat);
    lease.before_commit().await.expect("before_commit");
    lease.finish().await.expect("finish");
}

/// Row 1 written into category 3, and the reader's `category_id = 3` query a hit.
async fn cached_category_3(writer: &Cache, reader: &Cache, db: &CategoryDb) -> Query {
    write(writer, db, 1, 3).await;
    let q = reader.query(b"cat3", deps_eq("post", "category_id", 3));
    read_category(reader, db, &q, 3).await;
    assert_eq!(read_category(reader, db, &q, 3).await, ("1".into(), true), "the reader's value must be a hit first");
    q
}

async fn two_processes(server: &OwnRedis) -> (Cache, Cache) {
    let prefix = unique_prefix("restart");
    let mk =
        || support::builder().redis_url(server.url()).prefix(&prefix).retry_interval(Duration::from_millis(50)).build();
    (mk().await.expect("build"), mk().await.expect("build"))
}

/// Reads until the reader answers again (after a restart the first calls may fail), checking
/// every answer against the database.
async fn settle(reader: &Cache, db: &CategoryDb, q: &Query, cat: i64) -> bool {
    let mut hit = false;
    for _ in 0..40 {
        let (v, h) = read_category(reader, db, q, cat).await;
        assert_eq!(v, db.category(cat), "stale read after the restart");
        hit |= h;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    hit
}

#[tokio::test]
async fn restart_from_an_older_snapshot_serves_no_old_value() {
    let mut server = OwnRedis::start(&[]);
    let (writer, reader) = two_processes(&server).await;
    let db = CategoryDb::default();
    let q = cached_category_3(&writer, &reader, &db).await;
    assert!(server.cli(&["SAVE"]).contains("OK"));
    // After the snapshot: row 1 leaves category 3, the reader caches the new answer.
    write(&writer, &db, 1, 4).await;
    read_category(&reader, &db, &q, 3).await;
    assert_eq!(read_category(&reader, &db, &q, 3).await, (String::new(), true));
    // The server dies and comes back with the snapshot: the old value and its old stamps.
    server.crash_and_restart();
    assert!(server.cli(&["DBSIZE"]).trim() != "0", "the snapshot was loaded (test setup)");
    assert!(settle(&reader, &db, &q, 3).await, "the cache works again after the restart");
}

#[tokio::test]
async fn restart_empty_serves_no_old_value() {
    let mut server = OwnRedis::start(&[]);
    let (writer, reader) = two_processes(&server).await;
    let db = CategoryDb::default();
    let q = cached_category_3(&writer, &reader, &db).await;
    server.crash_and_restart(); // no snapshot: empty
    write(&writer, &db, 1, 4).await;
    assert!(settle(&reader, &db, &q, 3).await);
}

/// Marks lost in a restart between a write's mark and its COMMIT: the re-mark right before
/// COMMIT puts them back, so a reader that stored the old row meanwhile is not served it.
#[tokio::test]
async fn marks_lost_in_a_restart_are_renewed_before_commit() {
    let mut server = OwnRedis::start(&[]);
    let (writer, reader) = two_processes(&server).await;
    let db = CategoryDb::default();
    db.0.lock().unwrap().insert(1, 3);
    let q = reader.query(b"cat3", deps_eq("post", "category_id", 3));
    read_category(&reader, &db, &q, 3).await;
    assert!(read_category(&reader, &db, &q, 3).await.1);
    assert!(server.cli(&["SAVE"]).contains("OK"));
    let mut lease = writer.write_lease();
    lease.mark(TableChange::rows("post", db.rows_of_move(1, 4))).await.expect("mark");
    assert!(!read_category(&reader, &db, &q, 3).await.1, "the lease keeps readers off");
    server.crash_and_restart(); // the snapshot predates the mark
    // Readers store the old row meanwhile (the write has not committed).
    for _ in 0..20 {
        let (v, _) = read_category(&reader, &db, &q, 3).await;
        assert_eq!(v, "1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut renewed = false;
    for _ in 0..40 {
        if lease.before_commit().await.is_ok() {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(renewed, "the re-mark reaches the restarted server");
    db.0.lock().unwrap().insert(1, 4); // COMMIT
    // Between COMMIT and finish no reader may be served the old row.
    for _ in 0..10 {
        assert_eq!(read_category(&reader, &db, &q, 3).await.0, "", "stale between COMMIT and finish");
    }
    lease.finish().await.expect("finish");
    assert!(settle(&reader, &db, &q, 3).await);
}
