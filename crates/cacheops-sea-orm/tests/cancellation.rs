//! A write whose future is dropped (a request timeout) while its COMMIT is in flight must not
//! end its lease early: the COMMIT still lands, and a reader that stored the old row meanwhile
//! would serve it for good. Real PostgreSQL and Redis; the slow COMMIT is a deferred unique
//! constraint waiting for another transaction that holds the same key.

mod common;

use std::time::Duration;

use cacheops::{Cache, Profile, Profiles};
use common::*;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

const READ: &str = "SELECT title FROM post WHERE id = 1";
const LEASE: Duration = Duration::from_secs(3);

async fn env_lease(name: &str) -> Env {
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique(&format!("cancel-{name}")))
        .degrade(false)
        .lease(LEASE)
        .profiles(Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles"))
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)");
    env_with(name, cache).await
}

async fn title<C: ConnectionTrait>(db: &C) -> String {
    first_column(db, READ).await.into_iter().next().expect("row 1")
}

/// Caches `READ`, asserting the hit.
async fn cached(e: &Env) {
    title(&e.db).await;
    e.take();
    title(&e.db).await;
    assert_eq!(e.take(), 0, "the read must be a hit first");
}

/// Another session inserts the title `key` and keeps its transaction open for `hold`: a COMMIT
/// that sets the same title under a deferred unique constraint waits for it, then succeeds
/// when it rolls back.
async fn hold_key(e: &Env, key: &str, hold: Duration) -> tokio::task::JoinHandle<()> {
    e.raw
        .execute_unprepared(
            "ALTER TABLE post ADD CONSTRAINT post_title_key UNIQUE (title) DEFERRABLE INITIALLY DEFERRED",
        )
        .await
        .expect("constraint");
    e.db.load_catalog().await.expect("catalog");
    let url = format!("{PG}?options=-c%20search_path%3D{}", e.schema);
    let other = Database::connect(&url).await.expect("connect");
    let txn = other.begin().await.expect("begin");
    txn.execute_unprepared(&format!(
        "INSERT INTO post (title, category_id, author_id, visible) VALUES ('{key}', 3, 1, true)"
    ))
    .await
    .expect("insert");
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        txn.rollback().await.expect("rollback");
        drop(other);
    })
}

/// After the dropped write: every read equals the database, before and after its COMMIT lands,
/// and once the lease has expired the cache serves hits again.
async fn reads_stay_fresh(e: &Env, holder: tokio::task::JoinHandle<()>, new: &str) {
    // While the COMMIT waits: readers see the old row and must not store it.
    for _ in 0..5 {
        assert_eq!(title(&e.db).await, "p1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.await.expect("holder");
    // The COMMIT lands once the other transaction is gone.
    let mut landed = false;
    for _ in 0..100 {
        if title(&e.raw).await == new {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(landed, "the dropped COMMIT must still land (test setup)");
    assert_eq!(title(&e.db).await, new, "stale: the lease ended before its COMMIT landed");
    tokio::time::sleep(LEASE).await;
    assert_eq!(title(&e.db).await, new);
    e.take();
    assert_eq!(title(&e.db).await, new);
    assert_eq!(e.take(), 0, "after the lease expired, the read is cached again");
}

#[tokio::test]
async fn autocommit_write_dropped_during_commit() {
    let e = env_lease("auto").await;
    cached(&e).await;
    let holder = hold_key(&e, "slow", Duration::from_millis(800)).await;
    let write = e.db.execute_unprepared("UPDATE post SET title = 'slow' WHERE id = 1");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), write).await.is_err(),
        "the COMMIT must be slow (test setup)"
    );
    reads_stay_fresh(&e, holder, "slow").await;
}

#[tokio::test]
async fn transaction_commit_dropped() {
    let e = env_lease("txn").await;
    cached(&e).await;
    let holder = hold_key(&e, "slow-txn", Duration::from_millis(800)).await;
    let txn = e.db.begin().await.expect("begin");
    txn.execute_unprepared("UPDATE post SET title = 'slow-txn' WHERE id = 1").await.expect("update");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), txn.commit()).await.is_err(),
        "the COMMIT must be slow (test setup)"
    );
    reads_stay_fresh(&e, holder, "slow-txn").await;
}

#[tokio::test]
async fn unattributable_write_dropped() {
    let e = env_lease("unknown").await;
    // A trigger makes every write to `post` unattributable (a namespace-level lease).
    e.raw
        .execute_unprepared(
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER touch BEFORE UPDATE ON post FOR EACH ROW EXECUTE FUNCTION touch();",
        )
        .await
        .expect("trigger");
    cached(&e).await;
    let holder = hold_key(&e, "slow-unknown", Duration::from_millis(800)).await;
    cached(&e).await;
    let write = e.db.execute_unprepared("UPDATE post SET title = 'slow-unknown' WHERE id = 1");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), write).await.is_err(),
        "the COMMIT must be slow (test setup)"
    );
    reads_stay_fresh(&e, holder, "slow-unknown").await;
}
