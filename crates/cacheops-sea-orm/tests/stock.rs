//! What works with stock SeaORM (no `transparent` feature needed): typed caching through
//! `.cache()` on a connection and in a transaction, and invalidation by every write, with the
//! database as the oracle. `cargo test --workspace` builds this with `transparent` on as well;
//! the downstream build in `.ci/run` (`tests/downstream`) runs the same checks on crates.io SeaORM.

mod common;

use cacheops_sea_orm::SelectCacheExt;
use common::{env, post};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

fn q(category: i32) -> sea_orm::Select<post::Entity> {
    post::Entity::find().filter(post::Column::CategoryId.eq(category)).order_by_asc(post::Column::Id)
}

#[tokio::test]
async fn cached_models_equal_the_database_and_follow_every_kind_of_write() {
    let e = env("stock_models").await;
    let live = q(3).all(&e.raw).await.unwrap();
    assert_eq!(q(3).cache().all(&e.db).await.unwrap(), live);
    let stats = e.db.cache().stats();
    assert_eq!(q(3).cache().all(&e.db).await.unwrap(), live);
    assert_eq!(e.db.cache().stats().hits, stats.hits + 1, "the second read is a hit");
    let other = q(4).cache().all(&e.db).await.unwrap();
    q(4).cache().all(&e.db).await.unwrap();

    // An insert through the model API.
    post::ActiveModel {
        title: Set("new".into()),
        category_id: Set(3),
        author_id: Set(1),
        visible: Set(true),
        ..Default::default()
    }
    .insert(&e.db)
    .await
    .unwrap();
    let hits = e.db.cache().stats().hits;
    assert_eq!(q(3).cache().all(&e.db).await.unwrap(), q(3).all(&e.raw).await.unwrap());
    assert_eq!(e.db.cache().stats().hits, hits, "invalidated: a miss");
    assert_eq!(q(4).cache().all(&e.db).await.unwrap(), other);
    assert_eq!(e.db.cache().stats().hits, hits + 1, "category 4 untouched: still a hit");

    // A mass update moving rows from 3 to 4 (both invalidated), in raw SQL.
    q(3).cache().all(&e.db).await.unwrap();
    e.db.execute_unprepared("UPDATE post SET category_id = 4 WHERE category_id = 3").await.unwrap();
    assert_eq!(q(3).cache().all(&e.db).await.unwrap(), q(3).all(&e.raw).await.unwrap());
    assert_eq!(q(4).cache().all(&e.db).await.unwrap(), q(4).all(&e.raw).await.unwrap());
    assert!(q(3).all(&e.raw).await.unwrap().is_empty());

    // A delete, and the count.
    assert_eq!(q(4).cache().count(&e.db).await.unwrap(), q(4).all(&e.raw).await.unwrap().len() as u64);
    post::Entity::delete_many().filter(post::Column::CategoryId.eq(4)).exec(&e.db).await.unwrap();
    assert_eq!(q(4).cache().count(&e.db).await.unwrap(), 0);
    assert_eq!(q(4).cache().one(&e.db).await.unwrap(), None);
}

#[tokio::test]
async fn a_transaction_caches_until_it_writes_and_invalidates_at_commit() {
    let e = env("stock_txn").await;
    let before = q(3).cache().all(&e.db).await.unwrap();
    let txn = e.db.begin().await.unwrap();
    assert_eq!(q(3).cache().all(&txn).await.unwrap(), before, "a clean read-committed transaction reads the cache");
    post::Entity::update_many()
        .col_expr(post::Column::Title, sea_orm::sea_query::Expr::value("in txn"))
        .filter(post::Column::CategoryId.eq(3))
        .exec(&txn)
        .await
        .unwrap();
    let inside = q(3).cache().all(&txn).await.unwrap();
    assert!(inside.iter().all(|p| p.title == "in txn"), "after its write the transaction reads its own rows");
    assert_eq!(q(3).cache().all(&e.db).await.unwrap(), before, "others still see the committed rows");
    txn.commit().await.unwrap();
    let after = q(3).cache().all(&e.db).await.unwrap();
    assert_eq!(after, q(3).all(&e.raw).await.unwrap(), "invalidated at commit");
    assert!(after.iter().all(|p| p.title == "in txn"));
}

#[tokio::test]
async fn nocache_and_a_disabled_cache_read_the_database() {
    let e = env("stock_nocache").await;
    q(3).cache().all(&e.db).await.unwrap();
    e.raw.execute_unprepared("UPDATE post SET title = 'behind' WHERE category_id = 3").await.unwrap();
    let fresh = q(3).nocache().all(&e.db).await.unwrap();
    assert!(fresh.iter().all(|p| p.title == "behind"), "nocache() reads the database");
    let in_scope = cacheops_sea_orm::nocache(q(3).cache().all(&e.db)).await.unwrap();
    assert_eq!(in_scope, fresh, "nocache(..) wins over .cache()");
}

#[tokio::test]
async fn a_write_refused_for_want_of_a_lease_says_so_and_is_rolled_back() {
    // Redis is unreachable (a closed port): the write's lease cannot be placed, so the write is
    // refused (the default `MarkFailure::RefuseWrite`) and SeaORM's error carries cacheops' error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = cacheops::Cache::builder()
        .redis_url(format!("redis://127.0.0.1:{port}/0"))
        .profiles(common::profiles())
        .build()
        .await
        .expect("degrade on: builds while Redis is down");
    let e = common::env_with("stock_refused", cache).await;
    let before = q(3).all(&e.raw).await.unwrap();
    let err =
        e.db.execute_unprepared("UPDATE post SET title = 'lost' WHERE category_id = 3").await.expect_err("refused");
    let cause = cacheops_sea_orm::cache_error(&err).expect("a cacheops error inside the DbErr");
    assert!(matches!(cause, cacheops::Error::LeaseUnavailable(_)), "{cause:?}");
    assert!(cause.is_unavailable(), "{cause:?}");
    assert!(std::error::Error::source(&err).is_some(), "the cause is kept as source(): {err:?}");
    assert_eq!(q(3).all(&e.raw).await.unwrap(), before, "the refused write did not commit");
    assert!(cacheops_sea_orm::cache_error(&sea_orm::DbErr::RecordNotFound("x".into())).is_none());
}
