//! The isolation level comes from the server: a transaction whose level was set by SQL, by the
//! session or by the connection's default is never treated as READ COMMITTED, so a miss inside
//! a snapshot never stores its old rows. Against real PostgreSQL, MariaDB and Redis; every case
//! first proves the read is cached, and compares the final cached read with the raw one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use common::*;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

const READ1: &str = "SELECT title FROM post WHERE id = 1";
const READ2: &str = "SELECT title FROM post WHERE id = 2";

fn all_profiles() -> Profiles {
    Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles")
}

async fn redis_cache(name: &str) -> Cache {
    Cache::builder()
        .redis_url(REDIS)
        .prefix(unique(&format!("iso-{name}")))
        .degrade(false)
        .profiles(all_profiles())
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)")
}

/// Counts the data reads through `raw`, leaving out cacheops' own isolation and catalog
/// questions.
fn data_reads(raw: &mut DatabaseConnection) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    raw.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("SELECT TITLE") {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    n
}

/// A cached connection on the environment's schema, with extra connect-time `-c` options and a
/// pool of one connection (so that session settings stick).
async fn pg_connection(e: &Env, options: &str, cache: &Cache) -> (CachedConnection, Arc<AtomicUsize>) {
    let url = format!("{PG}?options=-c%20search_path%3D{}{options}", e.schema);
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1).min_connections(1);
    let mut raw = Database::connect(opts).await.expect("connect");
    let n = data_reads(&mut raw);
    let db = CachedConnection::new(raw, cache.clone());
    db.load_catalog().await.expect("catalog");
    (db, n)
}

async fn one(db: &impl ConnectionTrait, sql: &str) -> String {
    first_column(db, sql).await.into_iter().next().unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Proves `READ1` is cached through `db` (a hit costs no data read).
async fn assert_cached(db: &CachedConnection, n: &AtomicUsize) {
    one(db, READ1).await;
    n.store(0, Ordering::SeqCst);
    one(db, READ1).await;
    assert_eq!(n.load(Ordering::SeqCst), 0, "the read must be a hit before the transaction");
}

/// Inside a snapshot transaction begun on `db` (its level set by `setup`), a concurrent write
/// commits; the transaction's read still sees the old row, and after it ends the cache must
/// serve the new one.
async fn snapshot_read_is_not_stored(e: &Env, db: &CachedConnection, n: &AtomicUsize, setup: &[&str], title: &str) {
    assert_cached(db, n).await;
    let txn = db.begin().await.expect("begin");
    for sql in setup {
        txn.execute_unprepared(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    // The first read takes the snapshot.
    one(&txn, READ2).await;
    e.db.execute_unprepared(&format!("UPDATE post SET title = '{title}' WHERE id = 1")).await.expect("write");
    let inside = one(&txn, READ1).await;
    assert_ne!(inside, title, "the transaction must run at a snapshot level (test setup)");
    txn.commit().await.expect("commit");
    assert_eq!(one(db, READ1).await, title, "stale: a snapshot read was stored");
    assert_eq!(one(&e.db, READ1).await, one(&e.raw, READ1).await);
}

#[tokio::test]
async fn postgres_connection_default_repeatable_read() {
    let cache = redis_cache("pg-default").await;
    let e = env_with("iso_default", cache.clone()).await;
    let (db, n) = pg_connection(&e, "%20-c%20default_transaction_isolation%3Drepeatable%5C%20read", &cache).await;
    snapshot_read_is_not_stored(&e, &db, &n, &[], "via-default").await;
}

#[tokio::test]
async fn postgres_set_transaction_isolation_by_sql() {
    let cache = redis_cache("pg-sql").await;
    let e = env_with("iso_sql", cache.clone()).await;
    let (db, n) = pg_connection(&e, "", &cache).await;
    snapshot_read_is_not_stored(&e, &db, &n, &["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"], "via-sql").await;
    // After a cached read was already asked about: the SET makes cacheops ask again.
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").await.expect("set");
    one(&txn, READ2).await;
    e.db.execute_unprepared("UPDATE post SET title = 'via-sql-2' WHERE id = 1").await.expect("write");
    assert_ne!(one(&txn, READ1).await, "via-sql-2");
    txn.commit().await.expect("commit");
    assert_eq!(one(&db, READ1).await, "via-sql-2");
}

#[tokio::test]
async fn postgres_session_characteristics() {
    let cache = redis_cache("pg-session").await;
    let e = env_with("iso_session", cache.clone()).await;
    let (db, n) = pg_connection(&e, "", &cache).await;
    db.execute_unprepared("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .expect("set");
    snapshot_read_is_not_stored(&e, &db, &n, &[], "via-session").await;
}

#[tokio::test]
async fn postgres_read_committed_transactions_still_hit() {
    let cache = redis_cache("pg-rc").await;
    let e = env_with("iso_rc", cache.clone()).await;
    let (db, n) = pg_connection(&e, "", &cache).await;
    assert_cached(&db, &n).await;
    let txn = db.begin().await.expect("begin");
    n.store(0, Ordering::SeqCst);
    assert_eq!(one(&txn, READ1).await, "p1");
    assert_eq!(n.load(Ordering::SeqCst), 0, "a READ COMMITTED transaction may use the cache");
    // A write elsewhere is seen at once, as READ COMMITTED sees it.
    e.db.execute_unprepared("UPDATE post SET title = 'rc' WHERE id = 1").await.expect("write");
    assert_eq!(one(&txn, READ1).await, "rc");
    txn.commit().await.expect("commit");
}

const MYSQL: &str = "mysql://root@127.0.0.1:3306";

#[tokio::test]
async fn mysql_autocommit_off_reads_are_not_stored() {
    let dbname = format!("cacheops_iso{}", std::process::id());
    let admin = Database::connect(format!("{MYSQL}/mysql"))
        .await
        .expect("MariaDB/MySQL must be running on 127.0.0.1:3306 (see .ci/run)");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {dbname}; CREATE DATABASE {dbname}")).await.expect("db");
    let url = format!("{MYSQL}/{dbname}");
    let writer_raw = Database::connect(&url).await.expect("connect");
    writer_raw
        .execute_unprepared(
            "CREATE TABLE post (id integer PRIMARY KEY, title varchar(64) NOT NULL);
             INSERT INTO post VALUES (1, 'p1'), (2, 'p2')",
        )
        .await
        .expect("tables");
    let cache = Cache::builder().profiles(all_profiles()).build().await.expect("cache");
    let writer = CachedConnection::new(writer_raw.clone(), cache.clone());
    let mut opts = ConnectOptions::new(url.clone());
    opts.max_connections(1).min_connections(1);
    let mut raw = Database::connect(opts).await.expect("connect");
    let n = data_reads(&mut raw);
    let db = CachedConnection::new(raw, cache.clone());
    db.load_catalog().await.expect("catalog");
    assert_cached(&db, &n).await;

    // From here on every statement of that connection runs in one REPEATABLE READ transaction.
    db.execute_unprepared("SET autocommit = 0").await.expect("set");
    one(&db, READ2).await;
    writer.execute_unprepared("UPDATE post SET title = 'new' WHERE id = 1").await.expect("write");
    assert_eq!(one(&db, READ1).await, "p1", "the session reads its snapshot (test setup)");
    assert_eq!(one(&writer, READ1).await, "new", "stale: a snapshot read was stored");

    // A connection whose server default is autocommit off never caches.
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1).min_connections(1);
    let raw = Database::connect(opts).await.expect("connect");
    raw.execute_unprepared("SET autocommit = 0").await.expect("set");
    let off = CachedConnection::new(raw, cache.clone());
    off.load_catalog().await.expect("catalog");
    one(&off, READ2).await;
    writer.execute_unprepared("UPDATE post SET title = 'newer' WHERE id = 1").await.expect("write");
    one(&off, READ1).await;
    assert_eq!(one(&writer, READ1).await, "newer", "stale: a snapshot read was stored");
    // End both sessions' implicit transactions (they hold metadata locks) before dropping.
    db.execute_unprepared("ROLLBACK").await.expect("rollback");
    off.execute_unprepared("ROLLBACK").await.expect("rollback");
    admin.execute_unprepared(&format!("DROP DATABASE {dbname}")).await.expect("drop");
}
