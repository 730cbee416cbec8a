//! `cargo xtask bounds`: what the caps bound, measured (BENCHMARKS.md, "Bounds").
//!
//! * a bulk DELETE of `--rows` rows (default 200 000) through the SeaORM `CachedConnection` on
//!   PostgreSQL: the process's peak RSS growth, the Redis commands and time it costs, once with
//!   the default pre-image cap and once with the cap lifted (`max_preimage_rows` = rows + 1);
//! * a one-row write on a table whose cached queries use `--schemes` distinct column
//!   combinations (default 16 000): Redis time of the write's finish script (from
//!   `INFO commandstats`), with the default scheme cap and with the cap lifted;
//! * the in-process backend holding `--queries` cached queries (default 1 000 000): the time of
//!   one row invalidation (the backend lock is held that long) and the longest lookup seen by a
//!   reader running meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cacheops::{Cache, ColumnClass, Conj, Dependencies, Dnf, Lookup, Profile, Profiles, Row, TableSchema, Value};
use cacheops_redis::RedisBackend;
use cacheops_sea_orm::CachedConnection;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};

use crate::Args;
use crate::redis_server::{OwnRedis, info_field};
use crate::util::{e, pg_schema_url, pg_url, runtime, unique};

type Res<T> = Result<T, String>;

const SCHEMA: &str = "cacheops_bounds";

pub fn main(args: &Args) -> Res<bool> {
    args.check(&["--rows", "--schemes", "--queries"], &[])?;
    let rows: usize = args.value("--rows", 200_000)?;
    let schemes: usize = args.value("--schemes", 16_000)?;
    let queries: usize = args.value("--queries", 1_000_000)?;
    if !(1..=2_000_000).contains(&rows) || !(1..=16_383).contains(&schemes) || !(1..=5_000_000).contains(&queries) {
        return Err("--rows in 1..=2000000, --schemes in 1..=16383, --queries in 1..=5000000".into());
    }
    runtime(2).block_on(async move {
        println!("# cacheops bounds, release build");
        bulk_delete(rows, None).await?;
        bulk_delete(rows, Some(rows + 1)).await?;
        many_schemes(schemes, None).await?;
        many_schemes(schemes, Some(65_536)).await?;
        in_process(queries).await?;
        Ok(true)
    })
}

/// Peak resident set size of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    status_kb("VmHWM:") * 1024
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets `VmHWM` to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn commands<C: redis::aio::ConnectionLike>(conn: &mut C) -> Res<u64> {
    info_field(conn, "stats", "total_commands_processed").await
}

/// Microseconds Redis spent in EVALSHA so far (`INFO commandstats`).
async fn evalsha_usec<C: redis::aio::ConnectionLike>(conn: &mut C) -> Res<u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.map_err(e("INFO"))?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn bulk_delete(rows: usize, cap: Option<usize>) -> Res<()> {
    let server = OwnRedis::start(&[])?;
    let backend = RedisBackend::builder().url(server.url()).build().await.map_err(e("redis"))?;
    let mut conn = backend.connection();
    let mut builder =
        Cache::builder().backend(Arc::new(backend)).prefix(unique("bounds")).degrade(false).profiles(
            Profiles::builder().profile("big", Profile::builder().ops(["all"])).build().map_err(e("profiles"))?,
        );
    if let Some(cap) = cap {
        builder = builder.max_preimage_rows(cap);
    }
    let cache = builder.build().await.map_err(e("cache"))?;
    let admin = Database::connect(pg_url()).await.map_err(e("PostgreSQL on 127.0.0.1:5432 (XTASK_PG)"))?;
    admin
        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"))
        .await
        .map_err(e("schema"))?;
    let mut opts = ConnectOptions::new(pg_schema_url(SCHEMA));
    opts.max_connections(4).sqlx_logging(false);
    let raw = Database::connect(opts).await.map_err(e("connect"))?;
    raw.execute_unprepared(&format!(
        "CREATE TABLE big (id integer PRIMARY KEY, grp integer NOT NULL, title text NOT NULL);
         INSERT INTO big SELECT g, g % 100, 'row ' || g FROM generate_series(1, {rows}) g"
    ))
    .await
    .map_err(e("rows"))?;
    let db = CachedConnection::new(raw, cache);
    db.load_catalog().await.map_err(e("catalog"))?;
    // A few cached reads on two schemes, so that the write has something to invalidate.
    for g in 0..10 {
        db.query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT id FROM big WHERE grp = {g} AND id < 50"),
        ))
        .await
        .map_err(e("read"))?;
        db.query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT title FROM big WHERE id = {}", g + 1),
        ))
        .await
        .map_err(e("read"))?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cmds = commands(&mut conn).await?;
    let usec = evalsha_usec(&mut conn).await?;
    reset_peak_rss();
    let base = status_kb("VmRSS:") * 1024;
    let t = Instant::now();
    db.execute_unprepared("DELETE FROM big WHERE grp >= 0").await.map_err(e("delete"))?;
    let took = t.elapsed();
    let peak = peak_rss();
    let cmds = commands(&mut conn).await?.saturating_sub(cmds + 1);
    let usec = evalsha_usec(&mut conn).await?.saturating_sub(usec);
    println!(
        "# bulk DELETE of {rows} rows, pre-image cap {}: {:.0} ms, peak RSS +{:.1} MiB, {cmds} Redis commands, {:.2} ms of Redis script time",
        cap.map_or_else(|| format!("{} (default)", cacheops::DEFAULT_MAX_PREIMAGE_ROWS), |c| format!("{c} (lifted)")),
        took.as_secs_f64() * 1e3,
        peak.saturating_sub(base) as f64 / (1 << 20) as f64,
        usec as f64 / 1e3
    );
    admin.execute_unprepared(&format!("DROP SCHEMA {SCHEMA} CASCADE")).await.map_err(e("drop"))?;
    Ok(())
}

const WIDE_COLUMNS: usize = 14;

fn wide_schema() -> TableSchema {
    (0..WIDE_COLUMNS).fold(TableSchema::new("wide"), |s, i| s.column(format!("c{i}"), ColumnClass::Integer))
}

/// The conj of the `k`-th non-empty subset of the wide table's columns, each `= 1`.
fn subset_deps(k: usize) -> Dependencies {
    let bits = k + 1;
    let terms: Vec<(String, Value)> =
        (0..WIDE_COLUMNS).filter(|i| bits & (1 << i) != 0).map(|i| (format!("c{i}"), Value::Int(1))).collect();
    let mut d = Dependencies::new();
    d.add("wide", Dnf::from_conjs([Conj::from_terms(terms).expect("conj")], 64), 64);
    d
}

async fn many_schemes(schemes: usize, cap: Option<u32>) -> Res<()> {
    let server = OwnRedis::start(&[])?;
    let backend = RedisBackend::builder().url(server.url()).build().await.map_err(e("redis"))?;
    let mut conn = backend.connection();
    let mut builder = Cache::builder()
        .backend(Arc::new(backend.clone()))
        .prefix("schemes")
        .degrade(false)
        .table_schema(wide_schema());
    if let Some(cap) = cap {
        builder = builder.max_schemes_per_table(cap);
    }
    let cache = builder.build().await.map_err(e("cache"))?;
    let mut resets = 0u64;
    for k in 0..schemes {
        let q = cache.query(format!("s{k}").as_bytes(), subset_deps(k));
        match cache.lookup(&q).await.map_err(e("lookup"))? {
            Lookup::Miss(t) => {
                cache.store(t, b"v").await.map_err(e("store"))?;
            }
            Lookup::Bypass(cacheops::BypassReason::SchemeCap) => resets += 1,
            _ => {}
        }
    }
    let registered: u64 =
        redis::cmd("HLEN").arg(cache.keys().schemes("wide")).query_async(&mut conn).await.map_err(e("HLEN"))?;
    let row: Row = (0..WIDE_COLUMNS).map(|i| (format!("c{i}"), Value::Int(1))).collect();
    // One lease (mark + finish) of a one-row UPDATE: old and new row.
    let usec = evalsha_usec(&mut conn).await?;
    let t = Instant::now();
    let mut lease = cache.write_lease();
    lease.mark(cacheops::TableChange::rows("wide", [row.clone(), row])).await.map_err(e("mark"))?;
    lease.finish().await.map_err(e("finish"))?;
    let took = t.elapsed();
    let usec = evalsha_usec(&mut conn).await?.saturating_sub(usec);
    println!(
        "# one-row write on a table read through {schemes} column combinations, scheme cap {}: {registered} registered ({resets} resets), mark + finish {:.2} ms of Redis script time ({:.2} ms wall)",
        cap.map_or_else(
            || format!("{} (default)", cacheops_core::protocol::DEFAULT_MAX_SCHEMES),
            |c| format!("{c} (lifted)")
        ),
        usec as f64 / 1e3,
        took.as_secs_f64() * 1e3
    );
    Ok(())
}

async fn in_process(queries: usize) -> Res<()> {
    in_process_with(queries, queries).await?;
    // A backend ten times smaller than the number of queries: values and stamps are evicted
    // all along.
    in_process_with(queries, queries / 10).await
}

async fn in_process_with(queries: usize, capacity: usize) -> Res<()> {
    let cache = Cache::builder()
        .memory(capacity.max(1))
        .degrade(false)
        .table_schema(TableSchema::new("post").column("id", ColumnClass::Integer))
        .build()
        .await
        .map_err(e("cache"))?;
    let t = Instant::now();
    let dep = |j: usize| {
        let mut d = Dependencies::new();
        d.add("post", Dnf::from_conjs([Conj::from_terms([("id", Value::Int(j as i64))]).expect("conj")], 64), 64);
        d
    };
    let mut worst_fill = Duration::ZERO;
    for j in 0..queries {
        let q = cache.query(format!("q{j}").as_bytes(), dep(j));
        let c = Instant::now();
        if let Lookup::Miss(t) = cache.lookup(&q).await.map_err(e("lookup"))? {
            cache.store(t, b"value").await.map_err(e("store"))?;
        }
        worst_fill = worst_fill.max(c.elapsed());
    }
    let fill = t.elapsed();
    // A reader running meanwhile: the longest lookup it sees is the longest lock hold.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let reader = {
        let (cache, stop, worst) = (cache.clone(), stop.clone(), worst.clone());
        tokio::spawn(async move {
            let q = cache.query(b"q7", dep(7));
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = cache.lookup(&q).await;
                worst.fetch_max(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    worst.store(0, Ordering::Relaxed);
    let row: Row = [("id".to_owned(), Value::Int(5))].into();
    let t = Instant::now();
    cache.invalidate_rows("post", std::slice::from_ref(&row)).await.map_err(e("invalidate"))?;
    let one = t.elapsed();
    let t = Instant::now();
    cache.invalidate_all().await.map_err(e("invalidate_all"))?;
    let all = t.elapsed();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.map_err(e("reader"))?;
    println!(
        "# in-process backend of {capacity} values, {queries} distinct queries (filled in {:.1} s, slowest miss + store {:.1} ms): one row invalidation {:.1} µs, invalidate_all {:.1} µs, longest concurrent lookup {} µs",
        fill.as_secs_f64(),
        worst_fill.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e6,
        all.as_secs_f64() * 1e6,
        worst.load(Ordering::Relaxed)
    );
    Ok(())
}
