//! Criterion micro-benchmarks of the hot paths of a cache hit: `cargo bench -p cacheops-bench`.
//! Quick by default (1 s warm-up, 2 s measurement; command-line options override).
//!
//! * `analysis/memo_hit` — `Cache::analyze` of a statement whose template is memoised;
//! * `keys/sql_query` — key derivation (`Cache::sql_query`: params encoding, SHA-1, deps clone);
//! * `rows/*` — `CachedRow` encode / decode of a `post` row (WORKLOAD.md) and of a 67-row list,
//!   the rebuild of SeaORM `QueryResult`s (`decode_rebuild_*`: bytes straight to `QueryResult`s,
//!   as a hit does), and the model read of a rebuilt row with SQLite's value types;
//! * `hit/memory_lookup` — `Cache::lookup` hit on the in-process backend;
//! * `hit/sea_orm_memory_get_pk` — a whole `find_by_id(..).one(&CachedConnection)` hit on the
//!   in-process backend (SQLite in memory behind it, never reached).

use std::time::Duration;

use cacheops::{Cache, Lookup, Profile, Profiles, Value};
use cacheops_sea_orm::CachedRow;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sea_orm::sea_query::Value as SeaValue;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, EntityTrait, FromQueryResult};
use std::hint::black_box;

mod post {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub title: String,
        pub category_id: i32,
        pub author_id: i32,
        pub visible: bool,
        pub body: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// The SQL SeaORM generates for `post::Entity::find_by_id(id).one(db)` on PostgreSQL.
const GET_SQL: &str = r#"SELECT "post"."id", "post"."title", "post"."category_id", "post"."author_id", "post"."visible", "post"."body" FROM "post" WHERE "post"."id" = $1 LIMIT $2"#;

fn profiles() -> Profiles {
    Profiles::builder().profile("post", Profile::builder().ops(["all"])).build().unwrap()
}

fn post_row(id: i32) -> CachedRow {
    CachedRow {
        columns: ["id", "title", "category_id", "author_id", "visible", "body"].map(String::from).to_vec(),
        values: vec![
            SeaValue::from(id),
            SeaValue::from(format!("post {id}")),
            SeaValue::from(id % 100 + 1),
            SeaValue::from(id % 500),
            SeaValue::from(id % 3 != 0),
            SeaValue::from("x".repeat(200)),
        ],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn analysis_and_keys(c: &mut Criterion) {
    let rt = rt();
    let cache = rt.block_on(Cache::builder().profiles(profiles()).build()).unwrap();
    let params = [Value::Int(42), Value::Int(1)];
    let analysis = cache.analyze(GET_SQL, &params).unwrap();
    c.bench_function("analysis/memo_hit", |b| {
        b.iter(|| cache.analyze(black_box(GET_SQL), black_box(&params)).unwrap())
    });
    c.bench_function("keys/sql_query", |b| {
        b.iter(|| cache.sql_query(black_box(GET_SQL), black_box(&params), &analysis, "default", "sea-orm:one"))
    });
}

fn rows(c: &mut Criterion) {
    let one = vec![post_row(42)];
    let list: Vec<CachedRow> = (1..=67).map(post_row).collect();
    let one_bytes = cacheops_sea_orm_encode(&one);
    let list_bytes = cacheops_sea_orm_encode(&list);
    println!("# encoded sizes: one post {} B, 67 posts {} B", one_bytes.len(), list_bytes.len());
    c.bench_function("rows/encode_post", |b| b.iter(|| cacheops_sea_orm_encode(black_box(&one))));
    c.bench_function("rows/decode_post", |b| b.iter(|| decode(black_box(&one_bytes))));
    c.bench_function("rows/decode_rebuild_post", |b| b.iter(|| decode_rebuild(black_box(&one_bytes))));
    c.bench_function("rows/rebuild_post", |b| {
        b.iter_batched(
            || one.clone(),
            |rows| rows.into_iter().map(|r| r.into_query_result().unwrap()).collect::<Vec<_>>(),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("rows/decode_67_posts", |b| b.iter(|| decode(black_box(&list_bytes))));
    c.bench_function("rows/decode_rebuild_67_posts", |b| b.iter(|| decode_rebuild(black_box(&list_bytes))));

    // What a hit on SQLite rebuilds: integers and booleans as `BigInt`, read as `i32` / `bool`.
    let sqlite_bytes = cacheops_sea_orm_encode(&[sqlite_post_row(42)]);
    let sqlite_row = decode_rebuild(&sqlite_bytes).remove(0);
    c.bench_function("rows/model_from_sqlite_post", |b| {
        b.iter(|| post::Model::from_query_result(black_box(&sqlite_row), "").unwrap())
    });
}

/// `post_row` with the value types the SQLite driver produces (`INTEGER`/`BOOLEAN` → `BigInt`).
fn sqlite_post_row(id: i32) -> CachedRow {
    let mut row = post_row(id);
    for value in &mut row.values {
        match value {
            SeaValue::Int(Some(i)) => *value = SeaValue::BigInt(Some(i64::from(*i))),
            SeaValue::Bool(Some(b)) => *value = SeaValue::BigInt(Some(i64::from(*b))),
            _ => {}
        }
    }
    row
}

/// What `CachedConnection` stores: `cacheops_sea_orm`'s (crate-private) `convert::encode`,
/// reached through a hidden entry point.
fn cacheops_sea_orm_encode(rows: &[CachedRow]) -> Vec<u8> {
    CachedRow::encode_all(rows).unwrap()
}

fn decode(bytes: &[u8]) -> Vec<CachedRow> {
    CachedRow::decode_all(bytes).unwrap()
}

/// What a hit does: bytes straight to SeaORM `QueryResult`s sharing the column names.
fn decode_rebuild(bytes: &[u8]) -> Vec<sea_orm::QueryResult> {
    CachedRow::decode_query_results(bytes).unwrap()
}

fn hits(c: &mut Criterion) {
    let rt = rt();
    let cache = rt.block_on(Cache::builder().profiles(profiles()).build()).unwrap();
    let params = [Value::Int(42), Value::Int(1)];
    let analysis = cache.analyze(GET_SQL, &params).unwrap();
    let q = cache.sql_query(GET_SQL, &params, &analysis, "default", "sea-orm:one");
    let bytes = cacheops_sea_orm_encode(&[post_row(42)]);
    rt.block_on(async {
        match cache.lookup(&q).await.unwrap() {
            Lookup::Miss(t) => assert!(cache.store(t, &bytes).await.unwrap()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(cache.lookup(&q).await.unwrap(), Lookup::Hit(_)));
    });
    c.bench_function("hit/memory_lookup", |b| {
        b.to_async(&rt).iter(|| async {
            match cache.lookup(black_box(&q)).await.unwrap() {
                Lookup::Hit(v) => v,
                other => panic!("{other:?}"),
            }
        })
    });

    // The whole SeaORM path, in-process backend, SQLite in memory behind it.
    let db = rt.block_on(async {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).sqlx_logging(false);
        let raw = Database::connect(opts).await.unwrap();
        raw.execute_unprepared(
            "CREATE TABLE post (id integer PRIMARY KEY, title text NOT NULL, category_id integer NOT NULL,
             author_id integer NOT NULL, visible boolean NOT NULL, body text NOT NULL);
             INSERT INTO post VALUES (42, 'post 42', 43, 42, 1, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');",
        )
        .await
        .unwrap();
        let cache = Cache::builder().profiles(profiles()).build().await.unwrap();
        let db = cacheops_sea_orm::CachedConnection::new(raw, cache);
        post::Entity::find_by_id(42).one(&db).await.unwrap().unwrap();
        post::Entity::find_by_id(42).one(&db).await.unwrap().unwrap();
        assert_eq!(db.cache().stats().hits, 1, "the warm get is a hit");
        db
    });
    c.bench_function("hit/sea_orm_memory_get_pk", |b| {
        b.to_async(&rt).iter(|| async { post::Entity::find_by_id(black_box(42)).one(&db).await.unwrap().unwrap() })
    });
}

fn quick() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = analysis_and_keys, rows, hits
}
criterion_main!(benches);
