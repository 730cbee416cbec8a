//! The SeaORM integration on MySQL/MariaDB (127.0.0.1:3306, root without password).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::Cache;
use cacheops_sea_orm::CachedConnection;
use common::*;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, Database, IntoActiveModel, QueryOrder};

const MYSQL: &str = "mysql://root@127.0.0.1:3306";

#[tokio::test]
async fn mysql_reads_are_cached_and_writes_invalidate() {
    let dbname = format!("cacheops_t{}", std::process::id());
    let admin = Database::connect(format!("{MYSQL}/mysql"))
        .await
        .expect("MariaDB/MySQL must be running on 127.0.0.1:3306 (see .ci/run)");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {dbname}; CREATE DATABASE {dbname}")).await.unwrap();
    let mut raw = Database::connect(format!("{MYSQL}/{dbname}")).await.unwrap();
    for sql in [
        "CREATE TABLE category (id integer AUTO_INCREMENT PRIMARY KEY, title varchar(128) NOT NULL)",
        "CREATE TABLE post (id integer AUTO_INCREMENT PRIMARY KEY, title varchar(128) NOT NULL,
            category_id integer NOT NULL, author_id integer NOT NULL, visible boolean NOT NULL,
            FOREIGN KEY (category_id) REFERENCES category(id) ON DELETE CASCADE)",
        "INSERT INTO category (title) VALUES ('c1'), ('c2'), ('c3'), ('c4')",
        "INSERT INTO post (title, category_id, author_id, visible) VALUES
            ('p1', 3, 1, true), ('p2', 3, 2, false), ('p3', 4, 1, true), ('p4', 4, 2, true)",
    ] {
        raw.execute_unprepared(sql).await.unwrap();
    }
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("SELECT") && !sql.contains("FOR UPDATE") {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    let cache = Cache::builder().profiles(profiles()).build().await.unwrap();
    let db = CachedConnection::new(raw, cache);
    db.load_catalog().await.unwrap();
    n.store(0, Ordering::SeqCst);
    let take = || n.swap(0, Ordering::SeqCst);
    let cat =
        |c: i32| post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id).all(&db);

    let c3 = cat(3).await.unwrap();
    assert_eq!(c3.len(), 2);
    cat(4).await.unwrap();
    take();
    assert_eq!(cat(3).await.unwrap(), c3);
    assert_eq!(post::Entity::find_by_id(1).one(&db).await.unwrap().map(|p| p.id), Some(1));
    assert_eq!(post::Entity::find_by_id(1).one(&db).await.unwrap().map(|p| p.visible), Some(true));
    assert_eq!(take(), 1, "list hit; get cached after its first read");

    let mut p1 = post::Entity::find_by_id(1).one(&db).await.unwrap().unwrap().into_active_model();
    p1.category_id = Set(4);
    p1.update(&db).await.unwrap();
    take();
    assert_eq!(cat(3).await.unwrap().len(), 1);
    assert_eq!(cat(4).await.unwrap().len(), 3);
    assert_eq!(take(), 2, "old and new category invalidated");

    post::ActiveModel {
        title: Set("n".into()),
        category_id: Set(3),
        author_id: Set(1),
        visible: Set(true),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    take();
    assert_eq!(cat(3).await.unwrap().len(), 2);
    assert_eq!(take(), 1);
    category::Entity::delete_by_id(3).exec(&db).await.unwrap();
    assert_eq!(cat(3).await.unwrap().len(), 0, "ON DELETE CASCADE");

    // The typed API on the default (case-, accent- and pad-insensitive) collation: a cached
    // `title = 'abc'` must see rows the database calls equal.
    let by_title = || post::Entity::find().filter(post::Column::Title.eq("abc")).all(&db);
    assert!(by_title().await.unwrap().is_empty());
    take();
    assert!(by_title().await.unwrap().is_empty());
    assert_eq!(take(), 0, "the typed read is a hit");
    for (i, title) in ["ABC", "abc ", "àbc"].into_iter().enumerate() {
        post::ActiveModel {
            title: Set(title.into()),
            category_id: Set(4),
            author_id: Set(1),
            visible: Set(true),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        assert_eq!(by_title().await.unwrap().len(), i + 1, "after inserting {title:?}");
        by_title().await.unwrap();
    }
    admin.execute_unprepared(&format!("DROP DATABASE {dbname}")).await.unwrap();
}
