//! The SeaORM integration on SQLite (the demo's embedded default) with the in-process cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::Cache;
use cacheops_sea_orm::CachedConnection;
use common::*;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectOptions, Database, IntoActiveModel, QueryOrder, QuerySelect, TransactionTrait};

async fn sqlite() -> (CachedConnection, Arc<AtomicUsize>) {
    let mut opts = ConnectOptions::new("sqlite::memory:");
    opts.max_connections(1);
    let mut raw = Database::connect(opts).await.unwrap();
    raw.execute_unprepared(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE category (id integer PRIMARY KEY AUTOINCREMENT, title varchar(128) NOT NULL);
         CREATE TABLE post (id integer PRIMARY KEY AUTOINCREMENT, title varchar(128) NOT NULL,
            category_id integer NOT NULL REFERENCES category(id) ON DELETE CASCADE,
            author_id integer NOT NULL, visible boolean NOT NULL);
         INSERT INTO category (title) VALUES ('c1'), ('c2'), ('c3'), ('c4');
         INSERT INTO post (title, category_id, author_id, visible) VALUES
            ('p1', 3, 1, true), ('p2', 3, 2, false), ('p3', 4, 1, true), ('p4', 4, 2, true);",
    )
    .await
    .unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    raw.set_metric_callback(move |info| {
        if info.statement.sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    let cache = Cache::builder().profiles(profiles()).build().await.unwrap();
    let db = CachedConnection::new(raw, cache);
    db.load_catalog().await.unwrap();
    n.store(0, Ordering::SeqCst);
    (db, n)
}

#[tokio::test]
async fn sqlite_reads_are_cached_and_writes_invalidate() {
    let (db, n) = sqlite().await;
    let take = || n.swap(0, Ordering::SeqCst);
    let cat =
        |c: i32| post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id).all(&db);
    let c3 = cat(3).await.unwrap();
    assert_eq!(c3.len(), 2);
    cat(4).await.unwrap();
    take();
    assert_eq!(cat(3).await.unwrap(), c3, "hit returns identical models");
    assert_eq!(take(), 0);
    let tuple: Vec<(String, i32)> = post::Entity::find()
        .select_only()
        .column(post::Column::Title)
        .column(post::Column::Id)
        .order_by_asc(post::Column::Id)
        .into_tuple()
        .all(&db)
        .await
        .unwrap();
    let again: Vec<(String, i32)> = post::Entity::find()
        .select_only()
        .column(post::Column::Title)
        .column(post::Column::Id)
        .order_by_asc(post::Column::Id)
        .into_tuple()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(tuple, again, "positional reads survive the cache");

    let mut p1 = post::Entity::find_by_id(1).one(&db).await.unwrap().unwrap().into_active_model();
    p1.category_id = Set(4);
    p1.update(&db).await.unwrap();
    take();
    assert_eq!(cat(3).await.unwrap().len(), 1);
    assert_eq!(cat(4).await.unwrap().len(), 3);
    assert_eq!(take(), 2, "old and new category invalidated");

    // A transaction: rolled back, nothing stale; committed, visible.
    let txn = db.begin().await.unwrap();
    post::Entity::delete_many().filter(post::Column::CategoryId.eq(4)).exec(&txn).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(cat(4).await.unwrap().len(), 3);
    let txn = db.begin().await.unwrap();
    post::Entity::delete_many().filter(post::Column::CategoryId.eq(4)).exec(&txn).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(cat(4).await.unwrap().len(), 0);

    // ON DELETE CASCADE through SQLite's foreign_key_list.
    assert_eq!(cat(3).await.unwrap().len(), 1);
    category::Entity::delete_by_id(3).exec(&db).await.unwrap();
    assert_eq!(cat(3).await.unwrap().len(), 0);
}
