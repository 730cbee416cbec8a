//! Runs typed caching and write invalidation on crates.io SeaORM against PostgreSQL and Redis,
//! with the database as the oracle; exits non-zero on the first wrong answer.

use cacheops::Cache;
use cacheops_sea_orm::{CachedConnection, SelectCacheExt};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, Database, QueryOrder, TransactionTrait};

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

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn check(ok: bool, what: &str) -> Res<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

fn by_category(c: i32) -> Select<post::Entity> {
    post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id)
}

#[tokio::main]
async fn main() -> Res<()> {
    let pg = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("CACHEOPS_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let schema = format!("cacheops_downstream_{}", std::process::id());
    let admin = Database::connect(&pg).await?;
    admin.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).await?;
    let result = run(&pg, &redis, &schema).await;
    admin.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
    result
}

async fn run(pg: &str, redis: &str, schema: &str) -> Res<()> {
    let sep = if pg.contains('?') { '&' } else { '?' };
    let raw = Database::connect(format!("{pg}{sep}options=-c%20search_path%3D{schema}")).await?;
    raw.execute_unprepared(
        "CREATE TABLE post (id serial PRIMARY KEY, title text NOT NULL, category_id int NOT NULL);
         INSERT INTO post (title, category_id) VALUES ('a', 1), ('b', 1), ('c', 2);",
    )
    .await?;
    let cache = Cache::builder().redis_url(redis).prefix(schema).degrade(false).build().await?;
    let db = CachedConnection::new(raw.clone(), cache);

    let first = by_category(1).cache().all(&db).await?;
    check(first == by_category(1).all(&raw).await?, "a cached read equals the database")?;
    let hits = db.cache().stats().hits;
    by_category(1).cache().all(&db).await?;
    check(db.cache().stats().hits == hits + 1, "the second read is a hit")?;
    let other = by_category(2).cache().all(&db).await?;

    post::ActiveModel { title: Set("d".into()), category_id: Set(1), ..Default::default() }.insert(&db).await?;
    let hits = db.cache().stats().hits;
    let after = by_category(1).cache().all(&db).await?;
    check(after == by_category(1).all(&raw).await? && after.len() == 3, "an insert invalidates: fresh rows")?;
    check(db.cache().stats().hits == hits, "that read was a miss")?;
    check(by_category(2).cache().all(&db).await? == other, "category 2 untouched")?;
    check(db.cache().stats().hits == hits + 1, "and still a hit")?;

    db.execute_unprepared("UPDATE post SET category_id = 2 WHERE title = 'a'").await?;
    check(by_category(2).cache().all(&db).await? == by_category(2).all(&raw).await?, "raw SQL UPDATE invalidates")?;
    check(by_category(1).cache().count(&db).await? == 2, "the count follows")?;

    let txn = db.begin().await?;
    post::Entity::delete_many().filter(post::Column::CategoryId.eq(2)).exec(&txn).await?;
    txn.commit().await?;
    check(by_category(2).cache().all(&db).await?.is_empty(), "a delete in a transaction invalidates at commit")?;
    println!("downstream check passed (crates.io SeaORM, PostgreSQL + Redis)");
    Ok(())
}
