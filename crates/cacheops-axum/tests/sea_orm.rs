//! Cached views over SeaORM on PostgreSQL, on Redis and in process: a write through the wrapped
//! connection to a dependency makes the next request a miss with fresh content (the database is
//! the oracle); a write elsewhere leaves the page a hit.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use cacheops::{Cache, Dep, Value};
use cacheops_axum::{cached_view, cached_view_as, cached_view_as_auto};
use cacheops_sea_orm::{CachedConnection, SelectCacheExt};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Database, QueryOrder};
use support::{PG, get as fetch, serve, unique};

mod post {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub category_id: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// A schema of its own with `post`, dropped when the test ends.
struct Db {
    schema: String,
    db: CachedConnection,
    raw: sea_orm::DatabaseConnection,
}

impl Drop for Db {
    fn drop(&mut self) {
        let schema = std::mem::take(&mut self.schema);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(admin) = Database::connect(PG).await {
                    let _ = admin.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

async fn db(cache: Cache, name: &str) -> Db {
    let schema = unique(name);
    let admin = Database::connect(PG).await.expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)");
    admin.execute_unprepared(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let raw = Database::connect(format!("{PG}?options=-c%20search_path%3D{schema}")).await.unwrap();
    raw.execute_unprepared(
        "CREATE TABLE post (id serial PRIMARY KEY, title text NOT NULL, category_id integer NOT NULL);
         INSERT INTO post (title, category_id) VALUES ('a', 3), ('b', 3), ('c', 4);",
    )
    .await
    .unwrap();
    let db = CachedConnection::new(raw.clone(), cache);
    db.load_catalog().await.unwrap();
    Db { schema, db, raw }
}

#[derive(Clone)]
struct AppState {
    db: CachedConnection,
    renders: Arc<AtomicUsize>,
}

fn in_category(c: i32) -> sea_orm::Select<post::Entity> {
    post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id)
}

async fn titles(db: &sea_orm::DatabaseConnection, c: i32) -> String {
    in_category(c).all(db).await.unwrap().iter().map(|p| p.title.as_str()).collect::<Vec<_>>().join(",")
}

/// The page of a category: its titles, read through the cache (typed caching).
async fn category(State(s): State<AppState>, Path(c): Path<i32>) -> String {
    render(&s, c, true).await
}

async fn render(s: &AppState, c: i32, cached: bool) -> String {
    s.renders.fetch_add(1, Ordering::SeqCst);
    let posts =
        if cached { in_category(c).cache().all(&s.db).await } else { in_category(c).nocache().all(&s.db).await };
    posts.unwrap().iter().map(|p| p.title.as_str()).collect::<Vec<_>>().join(",")
}

async fn caches() -> Vec<Cache> {
    let redis = Cache::builder().redis_url(support::REDIS).prefix(unique("axum-sea")).degrade(false).build().await;
    vec![redis.expect("Redis on 127.0.0.1:6379 (see .ci/run)"), Cache::builder().build().await.unwrap()]
}

async fn check_invalidation(app: Router, e: &Db, renders: &Arc<AtomicUsize>) {
    let s = serve(app).await;
    let take = || renders.swap(0, Ordering::SeqCst);
    for c in [3, 4] {
        assert_eq!(fetch(s.addr, &format!("/category/{c}")).await.x_cache(), "miss");
        let hit = fetch(s.addr, &format!("/category/{c}")).await;
        assert_eq!(hit.x_cache(), "hit");
        assert_eq!(hit.text(), titles(&e.raw, c).await);
    }
    assert_eq!(take(), 2, "the hits did not render");

    // A write to a category-3 row through the wrapped connection.
    e.db.execute_unprepared("UPDATE post SET title = 'a2' WHERE id = 1").await.unwrap();
    let fresh = fetch(s.addr, "/category/3").await;
    assert_eq!(fresh.x_cache(), "miss", "the dependency changed");
    assert_eq!(fresh.text(), titles(&e.raw, 3).await, "fresh content");
    assert_eq!(fresh.text(), "a2,b");
    let other = fetch(s.addr, "/category/4").await;
    assert_eq!(other.x_cache(), "hit", "a write elsewhere leaves category 4 cached");
    assert_eq!(take(), 1);

    // Moving a row to category 4 invalidates both pages.
    e.db.execute_unprepared("UPDATE post SET category_id = 4 WHERE id = 2").await.unwrap();
    for c in [3, 4] {
        let r = fetch(s.addr, &format!("/category/{c}")).await;
        assert_eq!((r.x_cache(), r.text()), ("miss", titles(&e.raw, c).await));
    }
}

#[tokio::test]
async fn a_view_with_explicit_dependencies_follows_writes_through_the_connection() {
    for cache in caches().await {
        let e = db(cache.clone(), "axum_deps").await;
        let renders = Arc::new(AtomicUsize::new(0));
        let state = AppState { db: e.db.clone(), renders: renders.clone() };
        let by_category = |c: i64| Dep::sql("SELECT * FROM post WHERE category_id = $1", [Value::Int(c)]);
        let app = Router::new()
            .route(
                "/category/3",
                get(|State(s): State<AppState>| async move { render(&s, 3, false).await }).layer(cached_view_as(
                    &cache,
                    "cat3",
                    by_category(3),
                )),
            )
            .route(
                "/category/4",
                get(|State(s): State<AppState>| async move { render(&s, 4, false).await }).layer(cached_view_as(
                    &cache,
                    "cat4",
                    by_category(4),
                )),
            )
            .with_state(state);
        check_invalidation(app, &e, &renders).await;
    }
}

#[tokio::test]
async fn an_auto_view_depends_on_the_reads_its_handler_made() {
    for cache in caches().await {
        let e = db(cache.clone(), "axum_auto").await;
        let renders = Arc::new(AtomicUsize::new(0));
        let state = AppState { db: e.db.clone(), renders: renders.clone() };
        let app = Router::new()
            .route("/category/{c}", get(category).layer(cached_view_as_auto(&cache, "category")))
            .with_state(state);
        check_invalidation(app, &e, &renders).await;
    }
}

#[tokio::test]
async fn a_hit_is_checked_against_the_database_after_invalidate() {
    let cache = caches().await.remove(0);
    let e = db(cache.clone(), "axum_manual").await;
    let renders = Arc::new(AtomicUsize::new(0));
    let view = cached_view(&cache, "category-live", std::time::Duration::from_secs(60));
    let app = Router::new()
        .route(
            "/category/{c}",
            get(|State(s): State<AppState>, Path(c): Path<i32>| async move { render(&s, c, false).await })
                .layer(view.clone()),
        )
        .with_state(AppState { db: e.db.clone(), renders: renders.clone() });
    let s = serve(app).await;
    fetch(s.addr, "/category/3").await;
    assert_eq!(fetch(s.addr, "/category/3").await.x_cache(), "hit");
    // A write behind cacheops' back (the raw connection) is invisible to it …
    e.raw.execute_unprepared("UPDATE post SET title = 'behind' WHERE id = 1").await.unwrap();
    assert_eq!(fetch(s.addr, "/category/3").await.x_cache(), "hit");
    // … until the page is invalidated by hand.
    view.invalidate("/category/3").await.unwrap();
    let r = fetch(s.addr, "/category/3").await;
    assert_eq!((r.x_cache(), r.text()), ("miss", titles(&e.raw, 3).await));
}
