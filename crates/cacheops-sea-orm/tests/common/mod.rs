//! Shared fixtures: a blog schema in its own PostgreSQL schema, a query counter, a cache.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

pub mod category {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "category")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::post::Entity")]
        Post,
    }
    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod post {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
        pub category_id: i32,
        pub author_id: i32,
        pub visible: bool,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::category::Entity",
            from = "Column::CategoryId",
            to = "super::category::Column::Id"
        )]
        Category,
    }
    impl Related<super::category::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Category.def()
        }
    }
    impl Related<super::tag::Entity> for Entity {
        fn to() -> RelationDef {
            super::post_tag::Relation::Tag.def()
        }
        fn via() -> Option<RelationDef> {
            Some(super::post_tag::Relation::Post.def().rev())
        }
    }
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tag {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "tag")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            super::post_tag::Relation::Post.def()
        }
        fn via() -> Option<RelationDef> {
            Some(super::post_tag::Relation::Tag.def().rev())
        }
    }
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod post_tag {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post_tag")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag_id: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(belongs_to = "super::post::Entity", from = "Column::PostId", to = "super::post::Column::Id")]
        Post,
        #[sea_orm(belongs_to = "super::tag::Entity", from = "Column::TagId", to = "super::tag::Column::Id")]
        Tag,
    }
    impl ActiveModelBehavior for ActiveModel {}
}

pub const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS: &str = "redis://127.0.0.1:6379/0";

pub fn unique(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{name}_{:x}", h.finish() & 0xffff_ffff)
}

/// A test database: its own PostgreSQL schema with the blog tables, and a counter of the data
/// queries that reach PostgreSQL (pre-image `FOR UPDATE` selects are not counted).
pub struct Env {
    pub db: CachedConnection,
    pub raw: DatabaseConnection,
    pub queries: Arc<AtomicUsize>,
    pub schema: String,
}

/// The test's schema goes with it (on a thread of its own: `Drop` cannot await).
impl Drop for Env {
    fn drop(&mut self) {
        let schema = std::mem::take(&mut self.schema);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(admin) = Database::connect(PG).await {
                    // A connection of the test may still hold a lock (a dropped transaction is rolled
                    // back only when its connection is used again): give up rather than wait.
                    let sql = format!("SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = admin.execute_unprepared(&sql).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

impl Env {
    /// Data queries run since the last call.
    pub fn take(&self) -> usize {
        self.queries.swap(0, Ordering::SeqCst)
    }
}

pub fn profiles() -> Profiles {
    Profiles::builder()
        .profile("post", Profile::builder().ops(["all"]).timeout(Duration::from_secs(600)))
        .profile("category", Profile::builder().ops(["all"]))
        .profile("tag", Profile::builder().ops(["all"]))
        .profile("post_tag", Profile::builder().ops(["all"]))
        .build()
        .expect("profiles")
}

pub async fn env(name: &str) -> Env {
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique(&format!("sea-{name}")))
        .degrade(false)
        .profiles(profiles())
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)");
    env_with(name, cache).await
}

pub async fn env_with(name: &str, cache: Cache) -> Env {
    let schema = unique(&format!("t_{name}"));
    let admin = Database::connect(PG).await.expect("PostgreSQL must be running on 127.0.0.1:5432 (see .ci/run)");
    admin
        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
        .await
        .expect("schema");
    let url = format!("{PG}?options=-c%20search_path%3D{schema}");
    let mut raw = Database::connect(&url).await.expect("connect");
    raw.execute_unprepared(
        "CREATE TABLE category (id serial PRIMARY KEY, title varchar(128) NOT NULL);
         CREATE TABLE post (id serial PRIMARY KEY, title varchar(128) NOT NULL,
            category_id integer NOT NULL REFERENCES category ON DELETE CASCADE,
            author_id integer NOT NULL, visible boolean NOT NULL);
         CREATE TABLE tag (id serial PRIMARY KEY, name varchar(64) NOT NULL);
         CREATE TABLE post_tag (post_id integer REFERENCES post ON DELETE CASCADE,
            tag_id integer REFERENCES tag ON DELETE CASCADE, PRIMARY KEY (post_id, tag_id));
         INSERT INTO category (title) VALUES ('c1'), ('c2'), ('c3'), ('c4'), ('c5');
         INSERT INTO post (title, category_id, author_id, visible) VALUES
            ('p1', 3, 1, true), ('p2', 3, 2, false), ('p3', 4, 1, true), ('p4', 4, 2, true);
         INSERT INTO tag (name) VALUES ('rust'), ('sql');
         INSERT INTO post_tag VALUES (1, 1), (2, 1), (3, 2);",
    )
    .await
    .expect("tables");
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if (sql.starts_with("SELECT") || sql.starts_with("WITH")) && !sql.contains("FOR UPDATE") {
            q.fetch_add(1, Ordering::SeqCst);
        }
    });
    let db = CachedConnection::new(raw.clone(), cache);
    db.load_catalog().await.expect("catalog");
    queries.store(0, Ordering::SeqCst);
    Env { db, raw, queries, schema }
}

/// A cache on the shared Redis under a unique prefix whose profile caches every read of every
/// table, and a PostgreSQL environment on it.
pub async fn env_all(name: &str) -> Env {
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique(&format!("all-{name}")))
        .degrade(false)
        .profiles(Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles"))
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)");
    env_with(name, cache).await
}

/// Counts the data reads that reach the database through `raw` (pre-image `FOR UPDATE`
/// selects are not counted).
pub fn count_selects(raw: &mut DatabaseConnection) -> Arc<AtomicUsize> {
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("SELECT") && !sql.contains("FOR UPDATE") {
            q.fetch_add(1, Ordering::SeqCst);
        }
    });
    queries
}

/// The first column of every row of `sql`, as text (strings, integers; `NULL`).
pub async fn first_column<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<String> {
    let stmt = sea_orm::Statement::from_string(db.get_database_backend(), sql);
    let rows = db.query_all_raw(stmt).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| {
            r.try_get_by_index::<Option<String>>(0)
                .map(|s| s.unwrap_or_else(|| "NULL".into()))
                .or_else(|_| r.try_get_by_index::<i64>(0).map(|i| i.to_string()))
                .or_else(|_| r.try_get_by_index::<i32>(0).map(|i| i.to_string()))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
        .collect()
}
