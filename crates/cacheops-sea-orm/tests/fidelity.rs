//! Cached rows read back exactly as live rows, and nothing the database can return panics in
//! the cached read path (against real PostgreSQL and Redis).

mod common;

use common::*;
use sea_orm::{ConnectionTrait, FromQueryResult, JsonValue, Statement};

fn stmt(sql: &str) -> Statement {
    Statement::from_string(sea_orm::DbBackend::Postgres, sql)
}

async fn json<C: ConnectionTrait>(db: &C, sql: &str) -> Result<Vec<JsonValue>, sea_orm::DbErr> {
    let rows = db.query_all_raw(stmt(sql)).await?;
    rows.iter().map(|r| JsonValue::from_query_result(r, "")).collect()
}

#[tokio::test]
async fn values_the_row_types_cannot_hold_never_panic() {
    let e = env_all("inf").await;
    exec_raw(&e, "CREATE TABLE odd (id int PRIMARY KEY, d date, t timestamp, tz timestamptz)").await;
    exec_raw(&e, "INSERT INTO odd VALUES (1, 'infinity', 'infinity', '-infinity'), (2, '0044-03-15 BC', '294276-12-31 23:59:59', '4713-01-01 BC'), (3, '2024-01-05', '2024-01-05 10:00', '2024-01-05 10:00Z')").await;
    let arrays = "SELECT ARRAY['infinity'::date, '2024-01-05'] AS a, ARRAY[NULL, '-infinity'::timestamptz] AS b, id FROM odd WHERE id = 3";
    for _ in 0..2 {
        assert_eq!(e.db.query_all_raw(stmt(arrays)).await.expect("cached read of arrays").len(), 1);
    }
    for id in 1..=3 {
        // The whole row through the cache: never a panic, the rows the database returns.
        let sql = format!("SELECT * FROM odd WHERE id = {id}");
        for _ in 0..2 {
            assert_eq!(e.db.query_all_raw(stmt(&sql)).await.expect("cached read").len(), 1, "{sql}");
        }
        let text = format!("SELECT d::text AS d, t::text AS t, tz::text AS tz FROM odd WHERE id = {id}");
        let live = json(&e.raw, &text).await.map_err(|err| err.to_string());
        for _ in 0..2 {
            assert_eq!(json(&e.db, &text).await.map_err(|err| err.to_string()), live, "{text}");
        }
    }
    // A hit after all: the in-range row was cached.
    e.take();
    e.db.query_all_raw(stmt("SELECT * FROM odd WHERE id = 3")).await.unwrap();
    assert_eq!(e.take(), 0);
}

#[tokio::test]
async fn into_json_reads_back_as_without_the_cache() {
    let e = env_all("json").await;
    exec_raw(
        &e,
        "CREATE TABLE j (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, n numeric(10,3), b bytea, u uuid, f float8, js jsonb, arr int[], t time, bo bool)",
    )
    .await;
    exec_raw(
        &e,
        "INSERT INTO j VALUES (1, '2024-01-05', '2024-01-05 10:00:00.5', '2024-01-05 10:00Z', 1.500, '\\x00ff41', \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.1, '{\"a\": [1, 2]}', '{1,2}', '10:30', true)",
    )
    .await;
    let sql = "SELECT * FROM j WHERE id = 1";
    let live = json(&e.raw, sql).await.map_err(|err| err.to_string());
    assert!(live.is_ok(), "{live:?}");
    let first = json(&e.db, sql).await.map_err(|err| err.to_string());
    e.take();
    let second = json(&e.db, sql).await.map_err(|err| err.to_string());
    assert_eq!(first, live);
    assert_eq!(second, live, "a hit reads back exactly");
}

async fn exec_raw(e: &Env, sql: &str) {
    e.raw.execute_unprepared(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    e.db.load_catalog().await.unwrap();
}
