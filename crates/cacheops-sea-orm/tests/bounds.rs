//! Bounds on what one write costs: the pre-image of a large UPDATE/DELETE is capped (past the
//! cap the write is table-level and nothing more is read), against real PostgreSQL and Redis.

mod common;

use std::sync::{Arc, Mutex};

use cacheops::{Cache, Profile, Profiles};
use common::*;
use sea_orm::ConnectionTrait;

const CAT3: &str = "SELECT id FROM post WHERE category_id = 3 ORDER BY id";
const CAT4: &str = "SELECT id FROM post WHERE category_id = 4 ORDER BY id";

async fn cached(e: &Env, sql: &str) {
    first_column(&e.db, sql).await;
    e.take();
    first_column(&e.db, sql).await;
    assert_eq!(e.take(), 0, "{sql}: must be a hit first");
}

async fn fresh(e: &Env, sql: &str) -> bool {
    let cached = first_column(&e.db, sql).await;
    let hit = e.take() == 0;
    assert_eq!(cached, first_column(&e.raw, sql).await, "{sql}: stale");
    e.take();
    hit
}

#[tokio::test]
async fn large_preimage_is_table_level() {
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique("bounds-pre"))
        .degrade(false)
        .max_preimage_rows(2)
        .profiles(Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles"))
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)");
    let mut e = env_with("bounds_pre", cache).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let counter = e.queries.clone();
    e.raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.clone();
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("SELECT") && !upper.contains("FOR UPDATE") {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        sink.lock().unwrap().push(sql);
    });
    let db = cacheops_sea_orm::CachedConnection::new(e.raw.clone(), e.db.cache().clone());
    db.load_catalog().await.expect("catalog");
    e.db = db;

    // Two rows (the cap): row-level, category 4 keeps its hit.
    cached(&e, CAT3).await;
    cached(&e, CAT4).await;
    e.db.execute_unprepared("UPDATE post SET visible = true WHERE category_id = 3").await.expect("update");
    assert!(!fresh(&e, CAT3).await, "category 3 invalidated");
    assert!(fresh(&e, CAT4).await, "category 4 untouched by a row-level write");
    assert!(
        seen.lock().unwrap().iter().any(|s| s.contains("LIMIT 3 FOR UPDATE")),
        "the pre-image reads at most cap + 1 rows: {:?}",
        seen.lock().unwrap()
    );

    // Four rows (past the cap): table-level, everything of the table invalidated, and fresh.
    cached(&e, CAT3).await;
    cached(&e, CAT4).await;
    e.db.execute_unprepared("UPDATE post SET visible = false WHERE author_id IN (1, 2)").await.expect("update");
    assert!(!fresh(&e, CAT4).await, "past the cap the write is table-level");
    assert!(!fresh(&e, CAT3).await);
    cached(&e, CAT4).await;
    e.db.execute_unprepared("DELETE FROM post WHERE author_id IN (1, 2)").await.expect("delete");
    assert!(!fresh(&e, CAT4).await);
    assert!(first_column(&e.raw, CAT4).await.is_empty());
}
