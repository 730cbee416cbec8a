//! The cacheops demo: a small blog on SeaORM, its reads cached through cacheops, and writes
//! invalidating exactly the affected queries.
//!
//! Runs on embedded defaults — SQLite in memory and the in-process cache. Set `DATABASE_URL`
//! (e.g. `postgres://postgres@127.0.0.1/test`) and/or `CACHEOPS_REDIS`
//! (e.g. `redis://127.0.0.1:6379/0`) to use PostgreSQL and Redis instead, with the features
//! that build their clients: `cargo run -p cacheops-demo --features postgres,redis`.
//!
//! The demo recreates its two tables on every run. On PostgreSQL they live in a schema of their
//! own (`cacheops_demo`), so nothing else in the database is touched; on any other server it
//! refuses to run unless `CACHEOPS_DEMO_RESET=1` says that dropping `post` and `author` there is
//! fine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::{CacheOptions, CachedConnection, cached};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectOptions, Database, IntoActiveModel, QueryOrder};

mod post {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub title: String,
        pub category_id: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

mod author {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "author")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub name: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The schema the demo's tables live in on PostgreSQL.
const DEMO_SCHEMA: &str = "cacheops_demo";

/// Where the demo may drop and create its tables: SQLite in memory as given; on PostgreSQL a
/// schema of its own (created if missing, first on the connection's search path); elsewhere
/// only with `CACHEOPS_DEMO_RESET=1`.
async fn demo_database(url: &str) -> Res<String> {
    if url.starts_with("sqlite") {
        return Ok(url.to_owned());
    }
    if url.starts_with("postgres") {
        let admin = Database::connect(url).await?;
        admin.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {DEMO_SCHEMA}")).await?;
        admin.close().await?;
        let sep = if url.contains('?') { '&' } else { '?' };
        return Ok(format!("{url}{sep}options=-c%20search_path%3D{DEMO_SCHEMA}"));
    }
    if env("CACHEOPS_DEMO_RESET").as_deref() == Some("1") {
        return Ok(url.to_owned());
    }
    Err(format!(
        "the demo drops and recreates the tables `post` and `author`; refusing to do that in {}: \
         use a database of its own and set CACHEOPS_DEMO_RESET=1",
        url.split('@').next_back().unwrap_or(url)
    )
    .into())
}

/// A server asked for in the environment whose client this build does not have.
fn missing_feature(db_url: &str, redis: bool) -> Option<&'static str> {
    if db_url.starts_with("postgres") && !cfg!(feature = "postgres") {
        return Some("postgres");
    }
    if redis && !cfg!(feature = "redis") {
        return Some("redis");
    }
    None
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let db_url = env("DATABASE_URL").unwrap_or_else(|| "sqlite::memory:".to_owned());
    let redis = env("CACHEOPS_REDIS");
    if let Some(feature) = missing_feature(&db_url, redis.is_some()) {
        return Err(format!(
            "this demo was built without {feature}: run `cargo run -p cacheops-demo --features postgres,redis`"
        )
        .into());
    }
    println!(
        "cacheops demo — database: {}, cache: {}",
        if db_url.starts_with("sqlite") { "SQLite (in memory)" } else { "PostgreSQL" },
        if redis.is_some() { "Redis" } else { "in-process" }
    );

    // `post` is cached automatically; `author` only where asked for.
    let profiles = Profiles::builder()
        .profile("post", Profile::builder().ops(["get", "fetch", "count"]).timeout(Duration::from_secs(300)))
        .build()?;
    let cache = Cache::builder().prefix("demo").from_env().profiles(profiles).build().await?;
    cache.invalidate_all().await?; // the demo recreates its tables on every run

    let db_url = demo_database(&db_url).await?;
    let mut opts = ConnectOptions::new(db_url.clone());
    if db_url.starts_with("sqlite") {
        opts.max_connections(1); // one in-memory database, shared
    }
    let mut raw = Database::connect(opts).await?;
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("SELECT") && !sql.contains("FOR UPDATE") {
            q.fetch_add(1, Ordering::Relaxed);
        }
    });
    for sql in [
        "DROP TABLE IF EXISTS post",
        "DROP TABLE IF EXISTS author",
        "CREATE TABLE post (id integer PRIMARY KEY, title varchar(128) NOT NULL, category_id integer NOT NULL)",
        "CREATE TABLE author (id integer PRIMARY KEY, name varchar(128) NOT NULL)",
        "INSERT INTO post (id, title, category_id) VALUES (1, 'Hello', 3), (2, 'Caching', 3), (3, 'Rust', 4), (4, 'SQL', 4)",
        "INSERT INTO author (id, name) VALUES (1, 'Ada'), (2, 'Grace')",
    ] {
        raw.execute_unprepared(sql).await?;
    }
    let db = CachedConnection::new(raw, cache.clone());
    // Types, collations, views, triggers: what decides how invalidation narrows (read once).
    db.load_catalog().await?;
    let taken = || queries.swap(0, Ordering::Relaxed);
    taken();

    let in_category =
        |c: i32| post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id);

    println!("\nautomatic caching (profile `post`: get, fetch, count):");
    for round in 1..=2 {
        let p = post::Entity::find_by_id(1).one(&db).await?;
        let c3 = in_category(3).all(&db).await?;
        let c4 = in_category(4).all(&db).await?;
        let n = post::Entity::find().count(&db).await?;
        println!(
            "  round {round}: get post 1 = {:?}, category 3 = {} posts, category 4 = {} posts, count = {n}   → {} database queries",
            p.map(|p| p.title),
            c3.len(),
            c4.len(),
            taken()
        );
    }

    println!("\nmanual caching (`author` has no automatic ops; `cached(..)` opts in):");
    for round in 1..=2 {
        let names: Vec<String> = cached(
            CacheOptions::timeout(Duration::from_secs(60)),
            author::Entity::find().order_by_asc(author::Column::Id).all(&db),
        )
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
        println!("  round {round}: authors = {names:?}   → {} database queries", taken());
    }

    println!("\nwrite: post 2 moves from category 3 to category 5");
    let mut p2 = post::Entity::find_by_id(2).one(&db).await?.ok_or("post 2 is missing")?.into_active_model();
    taken();
    p2.category_id = Set(5);
    p2.update(&db).await?;
    taken();
    let p1 = post::Entity::find_by_id(1).one(&db).await?;
    println!("  get post 1        → {} database queries (untouched)", taken());
    let c3 = in_category(3).all(&db).await?;
    println!("  category 3 = {} posts → {} database queries (old value invalidated)", c3.len(), taken());
    let c4 = in_category(4).all(&db).await?;
    println!("  category 4 = {} posts → {} database queries (untouched)", c4.len(), taken());
    let c5 = in_category(5).all(&db).await?;
    println!("  category 5 = {} posts → {} database queries (new value invalidated)", c5.len(), taken());
    let n = post::Entity::find().count(&db).await?;
    println!("  count = {n}         → {} database queries (table-level count invalidated)", taken());
    let _ = p1;

    let s = cache.stats();
    println!("\nsummary: hits={} misses={} bypasses={} stores={}", s.hits, s.misses, s.bypasses, s.stores);
    Ok(())
}
