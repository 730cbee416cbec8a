//! The database is the oracle: for each common column type, several spellings of values; for
//! every pair `(a, b)`, a cached read `WHERE col = a` (asserted to be a hit first) must give the
//! same rows as the raw connection after an INSERT, an UPDATE and a DELETE through the cached
//! connection whose row holds `b`. Wherever the database calls `a` and `b` equal (the raw read
//! finds the row), a missed invalidation would be a stale hit. PostgreSQL, MariaDB and SQLite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use common::{PG, REDIS};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// A column type and spellings of values (SQL literals or expressions); `other` is a value
/// equal to none of them.
struct Case {
    ty: &'static str,
    spellings: &'static [&'static str],
    other: &'static str,
}

const fn case(ty: &'static str, spellings: &'static [&'static str], other: &'static str) -> Case {
    Case { ty, spellings, other }
}

const PG_CASES: &[Case] = &[
    case("int4", &["42", "'42'", "' 42 '", "'042'", "42.0", "'+42'"], "7"),
    case("int8", &["42", "'42'", "42::int2"], "7"),
    case("numeric", &["1.5", "'1.50'", "'15e-1'", "1.500", "'.15e1'"], "2"),
    case("numeric(5,2)", &["12.345", "12.35", "'12.350'", "12.349"], "1"),
    case("float8", &["0.1", "'0.1'", "'1e-1'", "'Infinity'", "'infinity'", "'NaN'", "'-0'", "0"], "2"),
    case("real", &["0.1", "'0.1'", "'1e-1'", "0.1::real"], "2"),
    case("bool", &["true", "'t'", "'yes'", "'tru'", "'on'", "'1'", "'  true  '"], "false"),
    case("text", &["'abc'", "'ABC'", "'abc '", "'àbc'"], "'zzz'"),
    case("varchar(5)", &["'abcde'", "'abcde   '", "'abc'"], "'zz'"),
    case("char(5)", &["'ab'", "'ab   '", "'AB'", "'ab'::text", "'ab '::text"], "'zz'"),
    case("citext", &["'abc'", "'ABC'", "'Abc'"], "'zzz'"),
    case("text COLLATE eq_ci", &["'abc'", "'ABC'", "'abc'||chr(8203)"], "'zzz'"),
    case(
        "uuid",
        &[
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "'a0eebc999c0b4ef8bb6d6bb9bd380a11'",
            "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        ],
        "'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    ),
    case(
        "date",
        &["'2024-01-05'", "'20240105'", "'Jan 5 2024'", "'2024-01-05 10:30'", "DATE '2024-01-05'"],
        "'2020-01-01'",
    ),
    case("time", &["'10:30'", "'10:30:00'", "'10:30:00.000001'", "'10:30 AM'"], "'01:00'"),
    case(
        "timestamp",
        &[
            "'2024-01-05 10:00'",
            "'2024-01-05T10:00:00'",
            "'2024-01-05 10:00:00+05'",
            "'2024-01-05 10:00:00.0000004'",
            "'2024-01-05'::date",
        ],
        "'2020-01-01 00:00'",
    ),
    case(
        "timestamp(0)",
        &["'2024-01-05 10:00:00'", "'2024-01-05 10:00:00.4'", "'2024-01-05 09:59:59.6'"],
        "'2020-01-01 00:00'",
    ),
    case(
        "timestamptz",
        &[
            "'2024-01-05 10:00:00+05'",
            "'2024-01-05 05:00:00Z'",
            "'2024-01-05 05:00:00'",
            "'2024-01-05 06:00:00+01'",
            "'2024-01-05 05:00:00.0000001Z'",
        ],
        "'2020-01-01 00:00Z'",
    ),
    case("interval", &["'1 hour'", "'60 minutes'", "'3600 seconds'"], "'1 day'"),
    case("jsonb", &[r#"'{"a":1,"b":2}'"#, r#"'{"b": 2, "a": 1}'"#, r#"'{"a":1.0,"b":2}'"#], "'[]'"),
    case("int[]", &["'{1,2}'", "ARRAY[1,2]", "'{ 1 , 2 }'"], "'{3}'"),
    case("bytea", &["'\\x4142'", "'AB'", "'\\101\\102'"], "'\\x00'"),
    case("eq_mood", &["'happy'", "'happy'::eq_mood"], "'sad'"),
];

const MYSQL_CASES: &[Case] = &[
    case("int", &["42", "'42'", "'42.0'", "'4.2e1'", "42.0", "'42abc'", "' 42'"], "7"),
    case("bigint unsigned", &["42", "'42'"], "7"),
    case("varchar(10)", &["'abc'", "'ABC'", "'abc '", "'àbc'", "'ÀBC'"], "'zzz'"),
    case("varchar(10) COLLATE utf8mb4_bin", &["'abc'", "'abc '", "'ABC'", "'abc\t'"], "'zzz'"),
    case("varchar(10) COLLATE utf8mb4_nopad_bin", &["'abc'", "'abc '"], "'zzz'"),
    case("varchar(10) COLLATE utf8mb4_bin ", &["'3'", "3", "'03'", "3.0"], "'zzz'"),
    case("char(5) COLLATE utf8mb4_bin", &["'ab'", "'ab   '"], "'zz'"),
    case("decimal(5,2)", &["1.5", "'1.50'", "1.505", "'1.5e0'"], "2"),
    case("double", &["0.1", "'0.1'", "1e-1"], "2"),
    case("float", &["0.1", "'0.1'"], "2"),
    case("boolean", &["true", "1", "'1'", "'true'"], "0"),
    case("date", &["'2024-01-05'", "'20240105'", "'2024-01-05 00:00:00'", "'2024/1/5'"], "'2020-01-01'"),
    case(
        "datetime",
        &["'2024-01-05 10:00:00'", "'2024-01-05T10:00'", "'2024-01-05 10:00:00.4'", "20240105100000"],
        "'2020-01-01 00:00:00'",
    ),
    case("datetime(3)", &["'2024-01-05 10:00:00.123'", "'2024-01-05 10:00:00.1234'"], "'2020-01-01 00:00:00'"),
    case("timestamp NULL", &["'2024-01-05 10:00:00'", "'2024-01-05 10:00'"], "'2020-01-01 00:00:00'"),
    case("enum('a','b')", &["'a'", "'A'", "1", "'a '"], "'b'"),
    case(
        "uuid",
        &["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'A0EEBC999C0B4EF8BB6D6BB9BD380A11'"],
        "'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    ),
    case("varbinary(10)", &["'ab'", "0x6162", "X'6162'"], "'zz'"),
    case("binary(4)", &["'ab'", "X'61620000'"], "'zz'"),
    case("json", &[r#"'{"a":1}'"#, r#"'{"a": 1}'"#], "'[]'"),
];

const SQLITE_CASES: &[Case] = &[
    case("INTEGER", &["3", "'3'", "'3e0'", "3.0", "' 3 '", "'03'", "'0x3'"], "7"),
    case("NUMERIC", &["3", "'3.0'", "3.0", "'3'"], "7"),
    case("BOOLEAN", &["1", "true", "'1'", "'true'"], "0"),
    case("TEXT", &["'abc'", "'ABC'", "3", "'3'"], "'zzz'"),
    case("TEXT COLLATE NOCASE", &["'abc'", "'ABC'", "'abc '", "'àbc'", "'ÀBC'"], "'zzz'"),
    case("TEXT COLLATE RTRIM", &["'abc'", "'abc  '", "'ABC'"], "'zzz'"),
    case("VARCHAR(5)", &["'abc'", "'abc '"], "'zzz'"),
    case("REAL", &["0.1", "'0.1'", "1e-1", "1", "'1.0'"], "2"),
    case("DATETIME", &["'2024-01-05 10:00:00'", "'2024-01-05T10:00:00'", "'2024-01-05 10:00:00Z'"], "'2020-01-01'"),
    case("datetime_text", &["'2024-01-05 10:00:00'", "'2024-01-05T10:00:00'"], "'2020-01-01'"),
    case("BLOB", &["X'6162'", "'ab'"], "X'00'"),
    case("", &["3", "'3'", "3.0"], "7"),
];

/// What the matrix checked.
#[derive(Debug, Default)]
struct Tally {
    pairs: usize,
    /// Equal pairs checked per write kind (insert, update, delete), literal and bind reads.
    equal: [usize; 3],
    /// Bind reads run (each through the three write kinds).
    bind_reads: usize,
    /// Equal pairs checked with the written value as a bind.
    bind_writes: usize,
    refused: usize,
}

struct Oracle {
    db: CachedConnection,
    raw: DatabaseConnection,
    backend: DbBackend,
    queries: Arc<AtomicUsize>,
}

impl Oracle {
    fn take(&self) -> usize {
        self.queries.swap(0, Ordering::SeqCst)
    }

    fn stmt(&self, sql: &str) -> Statement {
        Statement::from_string(self.backend, sql)
    }

    /// A spelling as an operand: the literal itself, or (`bind`) a text bind of a quoted
    /// literal's contents.
    fn arg(&self, spelling: &str, bind: bool) -> Option<Arg> {
        if !bind {
            return Some(Arg { sql: spelling.to_owned(), values: Vec::new() });
        }
        let inner = spelling.strip_prefix('\'')?.strip_suffix('\'')?;
        if inner.contains('\'') || inner.contains('\\') {
            return None;
        }
        let placeholder = if self.backend == DbBackend::Postgres { "$1" } else { "?" };
        Some(Arg { sql: placeholder.to_owned(), values: vec![sea_orm::Value::String(Some(inner.to_owned()))] })
    }

    fn stmt_with(&self, sql: &str, values: &[sea_orm::Value]) -> Statement {
        if values.is_empty() {
            self.stmt(sql)
        } else {
            Statement::from_sql_and_values(self.backend, sql, values.to_vec())
        }
    }

    /// The ids of rows with `k` whose column equals `a`, through the cache and through the raw
    /// connection; `None` when the database refuses the read (a bind of the wrong type).
    async fn read(&self, table: &str, k: usize, a: &Arg) -> Option<(Vec<i64>, Vec<i64>)> {
        let sql = format!("SELECT id FROM {table} WHERE k = {k} AND col = {}", a.sql);
        let ids = |rows: Vec<sea_orm::QueryResult>| -> Vec<i64> {
            let mut v: Vec<i64> = rows
                .iter()
                .map(|r| {
                    r.try_get_by_index::<i64>(0).or_else(|_| r.try_get_by_index::<i32>(0).map(i64::from)).expect("id")
                })
                .collect();
            v.sort_unstable();
            v
        };
        let raw = ids(self.raw.query_all_raw(self.stmt_with(&sql, &a.values)).await.ok()?);
        let cached =
            ids(self.db.query_all_raw(self.stmt_with(&sql, &a.values)).await.unwrap_or_else(|e| panic!("{sql}: {e}")));
        Some((cached, raw))
    }

    /// Reads until cached, asserting the second read is a hit; `false` when the database
    /// refuses the read.
    async fn cache_read(&self, table: &str, k: usize, a: &Arg) -> bool {
        if self.read(table, k, a).await.is_none() {
            return false;
        }
        self.take();
        let sql = format!("SELECT id FROM {table} WHERE k = {k} AND col = {}", a.sql);
        self.db.query_all_raw(self.stmt_with(&sql, &a.values)).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            self.take(),
            0,
            "{sql} {:?}: the second read must be a hit (else the test proves nothing)",
            a.values
        );
        true
    }

    async fn write(&self, sql: &str) -> bool {
        self.db.execute_unprepared(sql).await.is_ok()
    }

    async fn write_with(&self, sql: &str, values: &[sea_orm::Value]) -> bool {
        self.db.execute_raw(self.stmt_with(sql, values)).await.is_ok()
    }

    async fn run_case(&self, i: usize, c: &Case) -> Tally {
        let mut tally = Tally::default();
        let table = format!("eq_{i}");
        let mut next_k = i * 100_000;
        let mut k = || {
            next_k += 1;
            next_k
        };
        for a_spelling in c.spellings {
            for b in c.spellings {
                tally.pairs += 1;
                for bind in [false, true] {
                    let Some(a) = self.arg(a_spelling, bind) else { continue };
                    let what = if bind { format!("bind {:?}", a.values) } else { a.sql.clone() };
                    // INSERT a row holding b.
                    let k1 = k();
                    if !self.cache_read(&table, k1, &a).await {
                        tally.refused += 1;
                        continue;
                    }
                    if self.write(&format!("INSERT INTO {table} (k, col) VALUES ({k1}, {b})")).await {
                        let (cached, raw) = self.read(&table, k1, &a).await.expect("read");
                        assert_eq!(cached, raw, "{}: read `col = {what}` after INSERT of {b}", c.ty);
                        tally.equal[0] += usize::from(!raw.is_empty());
                    } else {
                        tally.refused += 1;
                    }
                    // UPDATE a row to b.
                    let k2 = k();
                    assert!(
                        self.write(&format!("INSERT INTO {table} (k, col) VALUES ({k2}, {})", c.other)).await,
                        "{}: other",
                        c.ty
                    );
                    self.cache_read(&table, k2, &a).await;
                    if self.write(&format!("UPDATE {table} SET col = {b} WHERE k = {k2}")).await {
                        let (cached, raw) = self.read(&table, k2, &a).await.expect("read");
                        assert_eq!(cached, raw, "{}: read `col = {what}` after UPDATE to {b}", c.ty);
                        tally.equal[1] += usize::from(!raw.is_empty());
                    } else {
                        tally.refused += 1;
                    }
                    // DELETE a row holding b.
                    let k3 = k();
                    if self.write(&format!("INSERT INTO {table} (k, col) VALUES ({k3}, {b})")).await {
                        self.cache_read(&table, k3, &a).await;
                        let (before, _) = self.read(&table, k3, &a).await.expect("read");
                        assert!(self.write(&format!("DELETE FROM {table} WHERE k = {k3}")).await);
                        let (cached, raw) = self.read(&table, k3, &a).await.expect("read");
                        assert_eq!(cached, raw, "{}: read `col = {what}` after DELETE of {b}", c.ty);
                        tally.equal[2] += usize::from(!before.is_empty());
                    } else {
                        tally.refused += 1;
                    }
                    if bind {
                        tally.bind_reads += 1;
                    }
                }
                // The written value as a bind.
                let (Some(a), Some(bb)) = (self.arg(a_spelling, false), self.arg(b, true)) else { continue };
                let k4 = k();
                self.cache_read(&table, k4, &a).await;
                let ph = bb.sql.clone();
                if self.write_with(&format!("INSERT INTO {table} (k, col) VALUES ({k4}, {ph})"), &bb.values).await {
                    let (cached, raw) = self.read(&table, k4, &a).await.expect("read");
                    assert_eq!(cached, raw, "{}: read `col = {}` after INSERT of bind {:?}", c.ty, a.sql, bb.values);
                    tally.bind_writes += usize::from(!raw.is_empty());
                } else {
                    tally.refused += 1;
                }
            }
        }
        tally
    }
}

/// A value operand: SQL text and its binds.
struct Arg {
    sql: String,
    values: Vec<sea_orm::Value>,
}

fn profiles() -> Profiles {
    Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles")
}

async fn cache(name: &str) -> Cache {
    Cache::builder()
        .redis_url(REDIS)
        .prefix(common::unique(name))
        .degrade(false)
        .profiles(profiles())
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)")
}

async fn oracle(mut raw: DatabaseConnection, cache: Cache) -> Oracle {
    let backend = raw.get_database_backend();
    let queries = common::count_selects(&mut raw);
    let db = CachedConnection::new(raw.clone(), cache);
    db.load_catalog().await.expect("catalog");
    Oracle { db, raw, backend, queries }
}

/// Runs every case on its own table and its own connections (each counts its own queries),
/// `parallel` at a time: the writes commit one by one, and MariaDB's commits are slow alone.
async fn run_matrix<F, Fut>(cases: &[Case], name: &str, parallel: usize, connect: F) -> Tally
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = DatabaseConnection>,
{
    let cache = cache(name).await;
    let mut tally = Tally::default();
    let indexed: Vec<(usize, &Case)> = cases.iter().enumerate().collect();
    // The tables first: DDL through a cached connection invalidates everything.
    let setup = connect().await;
    let id = match setup.get_database_backend() {
        DbBackend::Postgres => "id serial PRIMARY KEY",
        DbBackend::MySql => "id int AUTO_INCREMENT PRIMARY KEY",
        _ => "id INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    for (i, c) in &indexed {
        setup
            .execute_unprepared(&format!("CREATE TABLE eq_{i} ({id}, k int, col {})", c.ty))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.ty));
    }
    for chunk in indexed.chunks(parallel) {
        let runs = chunk.iter().map(|(i, c)| {
            let (cache, conn) = (cache.clone(), connect());
            async move { oracle(conn.await, cache).await.run_case(*i, c).await }
        });
        for t in futures_util::future::join_all(runs).await {
            tally.pairs += t.pairs;
            tally.refused += t.refused;
            tally.bind_reads += t.bind_reads;
            tally.bind_writes += t.bind_writes;
            for (sum, n) in tally.equal.iter_mut().zip(t.equal) {
                *sum += n;
            }
        }
    }
    tally
}

fn report(db: &str, t: &Tally) {
    println!(
        "{db}: {} pairs; equal pairs checked: insert {}, update {}, delete {} (literal and bind reads; {} bind reads), \
         insert of a bound value {}; statements the database refused: {}",
        t.pairs, t.equal[0], t.equal[1], t.equal[2], t.bind_reads, t.bind_writes, t.refused
    );
    assert!(t.equal.iter().all(|n| *n > 0));
}

#[tokio::test]
async fn postgres_equality_matrix() {
    let schema = common::unique("t_eq");
    let admin = Database::connect(PG).await.expect("PostgreSQL must be running on 127.0.0.1:5432 (see .ci/run)");
    admin
        .execute_unprepared(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; CREATE EXTENSION IF NOT EXISTS citext;"
        ))
        .await
        .expect("schema");
    let url = format!("{PG}?options=-c%20search_path%3D{schema},public");
    let raw = Database::connect(&url).await.expect("connect");
    raw.execute_unprepared(
        "CREATE TYPE eq_mood AS ENUM ('happy', 'sad');
         CREATE COLLATION eq_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);",
    )
    .await
    .expect("types");
    let t = run_matrix(PG_CASES, "eq-pg", 8, || async { Database::connect(&url).await.expect("connect") }).await;
    report("PostgreSQL", &t);
    admin.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop");
}

#[tokio::test]
async fn mariadb_equality_matrix() {
    let name = format!("cacheops_eq{}", std::process::id());
    let admin = Database::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .expect("MariaDB must be running on 127.0.0.1:3306 (see .ci/run)");
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"))
        .await
        .expect("database");
    let url = format!("mysql://root@127.0.0.1:3306/{name}");
    let t = run_matrix(MYSQL_CASES, "eq-my", 8, || async { Database::connect(&url).await.expect("connect") }).await;
    report("MariaDB", &t);
    admin.execute_unprepared(&format!("DROP DATABASE {name}")).await.expect("drop");
}

#[tokio::test]
async fn sqlite_equality_matrix() {
    // One in-memory database, one case at a time.
    let db = Database::connect("sqlite::memory:").await.expect("sqlite");
    let t = run_matrix(SQLITE_CASES, "eq-lite", 1, || {
        let db = db.clone();
        async move { db }
    })
    .await;
    report("SQLite", &t);
}
