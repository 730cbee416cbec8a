//! `cargo xtask bench`: the shared workload (`WORKLOAD.md`) per backend, then the extra figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cacheops::{Cache, Conj, Dependencies, Dnf, Lookup, Profile, Profiles, Row, Value};
use cacheops_redis::RedisBackend;
use cacheops_sea_orm::CachedConnection;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
};

use crate::Args;
use crate::redis_server::{OwnRedis, info_field};
use crate::schema::{WORKLOAD_DDL, post};
use crate::topology::{Group, print_report};
use crate::util::{Rng, e, pg_schema_url, pg_url, redis_url, runtime, summarize, unique};

/// The PostgreSQL schema the workload's tables live in (dropped and recreated per backend).
pub const SCHEMA: &str = "cacheops_bench";

/// Concurrent tasks for the throughput figures, and how long each figure runs.
const TASKS: usize = 32;
const THROUGHPUT_FOR: Duration = Duration::from_secs(2);

type Res<T> = Result<T, String>;

pub fn main(args: &Args) -> Res<bool> {
    args.check(&["--n", "--backend", "--seed"], &["--no-extras"])?;
    let n: usize = args.value("--n", 2000)?;
    if n == 0 || n > 10_000 {
        return Err("--n must be in 1..=10000".into());
    }
    let seed: u64 = args.value("--seed", 42)?;
    let which = args.string("--backend", "all")?;
    let backends: Vec<&str> = match which.as_str() {
        "all" => vec!["redis", "memory", "cluster"],
        "redis" => vec!["redis"],
        "memory" => vec!["memory"],
        "cluster" => vec!["cluster"],
        "sentinel" => vec!["sentinel"],
        other => return Err(format!("unknown backend {other:?} (redis, memory, cluster, sentinel, all)")),
    };
    let extras = !args.flag("--no-extras");
    // XTASK_WORKERS: tokio worker threads (default 2, one per core of the reference machine).
    let workers = std::env::var("XTASK_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    runtime(workers).block_on(async move {
        println!(
            "# cacheops workload: N={n} seed={seed}, PostgreSQL schema {SCHEMA}, {} cores, release build",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for b in &backends {
            // A cluster or a Sentinel group of our own, for the length of its block.
            let group = match *b {
                "cluster" => Some(tokio::task::block_in_place(Group::cluster)?),
                "sentinel" => Some(tokio::task::block_in_place(Group::sentinel)?),
                _ => None,
            };
            let url = group.as_ref().map_or_else(redis_url, Group::url);
            workload(b, &url, n, seed).await?;
            if let Some(g) = &group {
                print_report(&g.node_report());
            }
        }
        if extras {
            extra_figures(n, seed, &backends).await?;
        }
        Ok(true)
    })
}

pub fn profiles() -> Profiles {
    Profiles::builder()
        .profile("post", Profile::builder().ops(["all"]).timeout(Duration::from_secs(600)))
        .profile("category", Profile::builder().ops(["all"]).timeout(Duration::from_secs(600)))
        .build()
        .expect("profiles")
}

/// The workload's tables, fresh; the connection has the schema on its search path.
async fn fresh_database() -> Res<DatabaseConnection> {
    let admin = Database::connect(pg_url()).await.map_err(e("PostgreSQL on 127.0.0.1:5432 (XTASK_PG)"))?;
    admin.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}")).await.map_err(e("schema"))?;
    admin.close().await.map_err(e("close"))?;
    let mut opts = ConnectOptions::new(pg_schema_url(SCHEMA));
    opts.max_connections(TASKS as u32).min_connections(4).sqlx_logging(false);
    let db = Database::connect(opts).await.map_err(e("connect"))?;
    db.execute_unprepared(WORKLOAD_DDL).await.map_err(e("tables"))?;
    Ok(db)
}

async fn redis_backend(url: &str) -> Res<RedisBackend> {
    RedisBackend::builder().url(url).build().await.map_err(e("Redis on 127.0.0.1:6379 (XTASK_REDIS)"))
}

/// A cache on `backend` ("memory": in process; otherwise Redis at `url`: the shared server, or a
/// cluster or Sentinel group of our own; unique prefix), and a Redis backend whose
/// [`RedisBackend::get`] is `redis_rtt`: a plain GET over the kind of connection a hit check
/// uses.
async fn cache_for(backend: &str, url: &str, name: &str) -> Res<(Cache, RedisBackend)> {
    let redis = redis_backend(url).await?;
    let rtt = redis.clone();
    let builder = Cache::builder().prefix(unique(name)).degrade(false).profiles(profiles());
    let builder = match backend {
        "memory" => builder.memory(100_000),
        _ => builder.backend(Arc::new(redis)),
    };
    Ok((builder.build().await.map_err(e("cache"))?, rtt))
}

/// A database that answers every query instantly with one prebuilt `post` row.
#[derive(Debug)]
struct InstantDb {
    row: sea_orm::ProxyRow,
}

#[async_trait::async_trait]
impl sea_orm::ProxyDatabaseTrait for InstantDb {
    async fn query(&self, _: sea_orm::Statement) -> Result<Vec<sea_orm::ProxyRow>, sea_orm::DbErr> {
        Ok(vec![self.row.clone()])
    }
    async fn execute(&self, _: sea_orm::Statement) -> Result<sea_orm::ProxyExecResult, sea_orm::DbErr> {
        Ok(sea_orm::ProxyExecResult { last_insert_id: 0, rows_affected: 0 })
    }
}

/// A SeaORM connection to an [`InstantDb`] serving post `id` as read from `raw`.
async fn instant_db(raw: &DatabaseConnection, id: i32) -> Res<DatabaseConnection> {
    let stmt = sea_orm::QueryTrait::build(&post::Entity::find_by_id(id), sea_orm::DbBackend::Postgres);
    let live = raw.query_one_raw(stmt).await.map_err(e("floor row"))?.ok_or("floor row missing")?;
    let cached = cacheops_sea_orm::CachedRow::from_query_result(&live).map_err(e("floor row"))?;
    let row = sea_orm::ProxyRow::try_from_ordered(cached.columns.into_iter().zip(cached.values).collect())
        .map_err(e("floor row"))?;
    Database::connect_proxy(sea_orm::DbBackend::Postgres, Arc::new(Box::new(InstantDb { row })))
        .await
        .map_err(e("proxy database"))
}

/// N distinct post ids, uniform over 1..=10000 (a partial Fisher-Yates shuffle).
pub fn workload_ids(n: usize, seed: u64) -> Vec<i32> {
    let mut rng = Rng::new(seed);
    let mut all: Vec<i32> = (1..=10_000).collect();
    for i in 0..n {
        let j = rng.range(i as i64, 9_999) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

struct Line {
    name: &'static str,
    median: f64,
    p99: f64,
}

fn line(name: &'static str, samples: &mut [Duration]) -> Line {
    let (median, p99) = summarize(samples);
    Line { name, median, p99 }
}

async fn get(db: &impl ConnectionTrait, id: i32) -> Res<post::Model> {
    post::Entity::find_by_id(id).one(db).await.map_err(e("get"))?.ok_or_else(|| format!("post {id} missing"))
}

async fn filter_list(db: &CachedConnection, c: i32) -> Res<usize> {
    let rows = post::Entity::find()
        .filter(post::Column::CategoryId.eq(c))
        .filter(post::Column::Visible.eq(true))
        .all(db)
        .await
        .map_err(e("filter"))?;
    Ok(rows.len())
}

async fn count(db: &CachedConnection, c: i32) -> Res<u64> {
    post::Entity::find().filter(post::Column::CategoryId.eq(c)).count(db).await.map_err(e("count"))
}

async fn redis_get(backend: &RedisBackend, key: &str) -> Res<Option<Vec<u8>>> {
    backend.get(key).await.map_err(e("GET"))
}

/// Runs `op` once for every category (warm-up), then times `n` calls cycling through the
/// categories, checking each result with `check` (outside the timing). Returns the timings and
/// the cache hits of the timed calls.
async fn per_category<T>(
    cache: &Cache,
    n: usize,
    mut op: impl AsyncFnMut(i32) -> Res<T>,
    check: impl Fn(i32, T) -> Res<()>,
) -> Res<(Vec<Duration>, u64)> {
    for c in 1..=100 {
        op(c).await?;
    }
    let before = cache.stats().hits;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 100) as i32 + 1;
        let t = Instant::now();
        let out = op(c).await?;
        samples.push(t.elapsed());
        check(c, out)?;
    }
    Ok((samples, cache.stats().hits - before))
}

/// One backend's block: the workload lines, the ratios, then `#` checks.
async fn workload(backend: &str, url: &str, n: usize, seed: u64) -> Res<()> {
    let raw = fresh_database().await?;
    let (cache, rtt) = cache_for(backend, url, "bench").await?;
    let db = CachedConnection::new(raw.clone(), cache.clone());
    let ids = workload_ids(n, seed);
    let mut checks = Vec::new();

    // Warm-up that caches nothing: connections, the analysis memo, prepared statements.
    for c in 1..=4 {
        cacheops_sea_orm::nocache(async {
            get(&db, c).await?;
            filter_list(&db, c).await?;
            count(&db, c).await
        })
        .await?;
    }
    for _ in 0..50 {
        get(&raw, 1).await?;
        redis_get(&rtt, "xtask-bench-warmup").await?;
    }

    let mut lines = Vec::new();
    let s0 = cache.stats();
    let mut samples = Vec::with_capacity(n);
    for &id in &ids {
        let t = Instant::now();
        let p = get(&db, id).await?;
        samples.push(t.elapsed());
        debug_assert_eq!(p.id, id);
    }
    lines.push(line("get_pk_miss", &mut samples));
    let s1 = cache.stats();
    checks.push(format!("get_pk_miss: misses={} stores={}", s1.misses - s0.misses, s1.stores - s0.stores));

    // `redis_rtt` is sampled interleaved with `get_pk_hit` (one plain GET right before each hit),
    // so that the ratio of the two compares calls made under the same machine load.
    let key = format!("xtask-bench-rtt-{}", std::process::id());
    {
        let mut c = rtt.connection();
        let _: () =
            redis::cmd("SET").arg(&key).arg("x").arg("EX").arg(60).query_async(&mut c).await.map_err(e("SET"))?;
    }
    let mut rtt_samples = Vec::with_capacity(n);
    samples.clear();
    for &id in &ids {
        let t = Instant::now();
        let v = redis_get(&rtt, &key).await?;
        rtt_samples.push(t.elapsed());
        debug_assert!(v.is_some());
        let t = Instant::now();
        get(&db, id).await?;
        samples.push(t.elapsed());
    }
    lines.push(line("get_pk_hit", &mut samples));
    let s2 = cache.stats();
    checks.push(format!("get_pk_hit: hits={}/{n}", s2.hits - s1.hits));

    // SeaORM's own share of a get (statement building, row → model), sampled the same way:
    // `find_by_id(..).one` against a database that answers instantly with a prebuilt row.
    let instant = instant_db(&raw, ids[0]).await?;
    let mut floor = Vec::with_capacity(n);
    for &id in &ids {
        redis_get(&rtt, &key).await?;
        let t = Instant::now();
        get(&instant, id).await?;
        floor.push(t.elapsed());
    }
    let (floor_median, floor_p99) = summarize(&mut floor);

    let (mut samples, hits) = per_category(
        &cache,
        n,
        async |c| filter_list(&db, c).await,
        |c, len| {
            if (66..=67).contains(&len) { Ok(()) } else { Err(format!("filter_list({c}) returned {len} rows")) }
        },
    )
    .await?;
    lines.push(line("filter_list_hit", &mut samples));
    checks.push(format!("filter_list_hit: hits={hits}/{n} (~67 rows each)"));

    let (mut samples, hits) = per_category(
        &cache,
        n,
        async |c| count(&db, c).await,
        |c, k| {
            if k == 100 { Ok(()) } else { Err(format!("count({c}) = {k}")) }
        },
    )
    .await?;
    lines.push(line("count_hit", &mut samples));
    let s6 = cache.stats();
    checks.push(format!("count_hit: hits={hits}/{n}"));

    samples.clear();
    let saves = n.min(500);
    for &id in &ids[..saves] {
        let t = Instant::now();
        let p = get(&db, id).await?;
        let next = p.category_id % 100 + 1;
        let mut am = p.into_active_model();
        am.category_id = Set(next);
        am.update(&db).await.map_err(e("save"))?;
        samples.push(t.elapsed());
    }
    lines.push(line("save_invalidate", &mut samples));
    // The saves invalidated what they had to: the lists of the categories they left are fresh.
    let moved = get(&raw, ids[0]).await?;
    let cached = get(&db, ids[0]).await?;
    if moved != cached {
        return Err(format!("stale after save: {cached:?} vs {moved:?}"));
    }
    let s7 = cache.stats();
    checks.push(format!(
        "save_invalidate: {saves} saves, lookups hit={} miss={}",
        s7.hits - s6.hits,
        s7.misses - s6.misses
    ));

    samples.clear();
    for &id in &ids {
        let t = Instant::now();
        get(&raw, id).await?;
        samples.push(t.elapsed());
    }
    lines.push(line("get_pk_nocache", &mut samples));

    lines.push(line("redis_rtt", &mut rtt_samples));

    // The engine alone: `Cache::lookup` hits of one query depending on one conj (what get_pk_hit
    // does below the SeaORM layer: analysis, key, rows).
    let probe = cache.query(b"xtask-engine-probe", deps_eq("post", "id", 1));
    if let Lookup::Miss(t) = cache.lookup(&probe).await.map_err(e("lookup"))? {
        cache.store(t, &[b'v'; 365]).await.map_err(e("store"))?;
    }
    samples.clear();
    for _ in 0..n {
        let t = Instant::now();
        let l = cache.lookup(&probe).await.map_err(e("lookup"))?;
        samples.push(t.elapsed());
        if !matches!(l, Lookup::Hit(_)) {
            return Err(format!("engine probe: expected a hit, got {l:?}"));
        }
    }
    let (em, ep) = summarize(&mut samples);

    println!("# backend: {backend}");
    for l in &lines {
        println!("{} {:.1} {:.1}", l.name, l.median, l.p99);
    }
    let m = |name: &str| lines.iter().find(|l| l.name == name).map_or(f64::NAN, |l| l.median);
    println!("get_pk_hit/redis_rtt {:.2}", m("get_pk_hit") / m("redis_rtt"));
    println!("get_pk_nocache/get_pk_hit {:.2}", m("get_pk_nocache") / m("get_pk_hit"));
    println!("filter_list_hit/redis_rtt {:.2}", m("filter_list_hit") / m("redis_rtt"));
    println!("# engine_lookup_hit {em:.1} {ep:.1} (Cache::lookup alone, 365-byte value)");
    println!(
        "# sea_orm_floor {floor_median:.1} {floor_p99:.1} (find_by_id(..).one against a database answering instantly)"
    );
    println!(
        "# (get_pk_hit-sea_orm_floor)/redis_rtt {:.2} (the cache's share of a hit, in round trips)",
        (m("get_pk_hit") - floor_median) / m("redis_rtt")
    );
    for c in checks {
        println!("# check {c}");
    }
    let mut view_ids: Vec<i32> = Vec::new();
    for id in &ids {
        if view_ids.len() < 500 && !view_ids.contains(id) {
            view_ids.push(*id);
        }
    }
    crate::views::view_figures(&raw, &cache, &view_ids, m("redis_rtt")).await?;
    crate::views::fragment_figures(&cache, view_ids.len(), m("redis_rtt")).await?;

    // Concurrent hit throughput, reported with the extras but measured here on the warm cache.
    let hits = hit_throughput(&db, &ids).await?;
    let gets = redis_throughput(&rtt, &key).await?;
    println!(
        "# throughput {backend}: get_pk_hit {:.0} hits/s with {TASKS} tasks; Redis GET {:.0} ops/s with {TASKS} tasks",
        hits, gets
    );
    cache.invalidate_all().await.map_err(e("invalidate_all"))?;
    raw.close().await.map_err(e("close"))?;
    Ok(())
}

/// get_pk hits per second from TASKS tasks on this process's runtime.
async fn hit_throughput(db: &CachedConnection, ids: &[i32]) -> Res<f64> {
    let ids: Arc<Vec<i32>> = Arc::new(ids.to_vec());
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + THROUGHPUT_FOR;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (db, ids, done) = (db.clone(), ids.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t * 7919;
            while Instant::now() < deadline {
                get(&db, ids[i % ids.len()]).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(e("task"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Plain GETs per second from TASKS tasks sharing the same kind of connection.
async fn redis_throughput(conn: &RedisBackend, key: &str) -> Res<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + THROUGHPUT_FOR;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (conn, done, key) = (conn.clone(), done.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                redis_get(&conn, &key).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(e("task"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn deps_eq(table: &str, col: &str, v: i64) -> Dependencies {
    let mut d = Dependencies::new();
    d.add(table, Dnf::from_conjs([Conj::from_terms([(col, Value::Int(v))]).expect("conj")], 64), 64);
    d
}

/// Stores `count` distinct values, each depending on `deps(j)`, from 16 tasks.
async fn fill(
    cache: &Cache,
    tag: &str,
    count: usize,
    timeout: Option<Duration>,
    deps: fn(usize) -> Dependencies,
) -> Res<u64> {
    let before = cache.stats().stores;
    let per = count.div_ceil(16);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let cache = cache.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let payload = vec![b'v'; 200];
            for j in t * per..((t + 1) * per).min(count) {
                let mut q = cache.query(format!("{tag}-{j}").as_bytes(), deps(j));
                if let Some(t) = timeout {
                    q = q.with_timeout(t);
                }
                match cache.lookup(&q).await.map_err(e("lookup"))? {
                    Lookup::Miss(ticket) => {
                        cache.store(ticket, &payload).await.map_err(e("store"))?;
                    }
                    other => return Err(format!("expected a miss, got {other:?}")),
                }
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(e("task"))??;
    }
    Ok(cache.stats().stores - before)
}

async fn extra_figures(_n: usize, _seed: u64, _backends: &[&str]) -> Res<()> {
    // A server of our own: command counts and memory are this run's alone.
    let server = OwnRedis::start(&[])?;
    let backend = redis_backend(&server.url()).await?;
    let mut conn = backend.connection();

    println!("# invalidation cost (own redis-server; one row of `post` whose category_id = 7 changes; redis_commands");
    println!("# counts the EVALSHA and the commands its script runs; keys_touched as reported by the finish script)");
    println!("# dependents  fill_s  invalidate_us  redis_commands  keys_deleted  keys_touched  dependents_hit_after");
    for k in [1usize, 1_000, 100_000] {
        let cache = Cache::builder()
            .backend(Arc::new(backend.clone()))
            .prefix(format!("inv{k}"))
            .degrade(false)
            // The raw API has no database catalog: declare the columns that narrow.
            .table_schema(
                cacheops::TableSchema::new("post")
                    .column("id", cacheops::ColumnClass::Integer)
                    .column("category_id", cacheops::ColumnClass::Integer),
            )
            .build()
            .await
            .map_err(e("cache"))?;
        let t = Instant::now();
        let stored = fill(&cache, "dep", k, None, |_| deps_eq("post", "category_id", 7)).await?;
        let fill_s = t.elapsed().as_secs_f64();
        if stored != k as u64 {
            return Err(format!("stored {stored} of {k}"));
        }
        // Warm the script cache (a first EVALSHA may need a SCRIPT LOAD) on an unrelated row.
        let other: Row = [("id".to_owned(), Value::Int(2)), ("category_id".to_owned(), Value::Int(8))].into();
        cache.invalidate_rows("post", std::slice::from_ref(&other)).await.map_err(e("invalidate"))?;
        let keys_before: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(e("DBSIZE"))?;
        let cmds_before = info_field(&mut conn, "stats", "total_commands_processed").await?;
        let row: Row = [("id".to_owned(), Value::Int(1)), ("category_id".to_owned(), Value::Int(7))].into();
        let t = Instant::now();
        cache.invalidate_rows("post", std::slice::from_ref(&row)).await.map_err(e("invalidate"))?;
        let took = t.elapsed();
        let cmds_after = info_field(&mut conn, "stats", "total_commands_processed").await?;
        let keys_after: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(e("DBSIZE"))?;
        // The same invalidation again, counted by the backend: keys examined do not depend on k.
        let ks = cache.keys();
        let req = cacheops_core::protocol::WriteRequest {
            writer: None,
            tables: vec![cacheops_core::protocol::TableWrite {
                seq_key: ks.table_seq("post"),
                table_key: ks.table("post"),
                schemes_key: ks.schemes("post"),
                writers_key: ks.writers("post"),
                conj_prefix: ks.conj_prefix("post"),
                rows: vec![cacheops_core::protocol::render_row(&row)],
                table_level: false,
            }],
            lease: Duration::from_secs(10),
        };
        let fs = backend.finish_counted(&req).await.map_err(e("finish"))?;
        // Every dependent misses now (sampled).
        let mut hit_after = 0;
        for j in (0..k).step_by((k / 100).max(1)) {
            let q = cache.query(format!("dep-{j}").as_bytes(), deps_eq("post", "category_id", 7));
            if let Lookup::Hit(_) = cache.lookup(&q).await.map_err(e("lookup"))? {
                hit_after += 1;
            }
        }
        println!(
            "# {k:>10}  {fill_s:6.1}  {:13.1}  {:14}  {:12}  {:12}  {hit_after}",
            took.as_secs_f64() * 1e6,
            cmds_after.saturating_sub(cmds_before + 1),
            keys_before.saturating_sub(keys_after),
            fs.touched
        );
    }

    drop(server);
    // Memory: many distinct cached queries with a short timeout, then after they expire (a fresh
    // server of our own, so that the baseline is this cache's alone).
    let server = OwnRedis::start(&[])?;
    let backend = redis_backend(&server.url()).await?;
    let mut conn = backend.connection();
    let cache = Cache::builder()
        .backend(Arc::new(backend.clone()))
        .prefix("mem")
        .degrade(false)
        .build()
        .await
        .map_err(e("cache"))?;
    let warm = fill(&cache, "warm", 10, Some(Duration::from_secs(1)), |j| deps_eq("post", "id", j as i64)).await?;
    debug_assert_eq!(warm, 10);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = info_field(&mut conn, "memory", "used_memory").await?;
    let base_keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(e("DBSIZE"))?;
    const DISTINCT: usize = 50_000;
    let timeout = Duration::from_secs(1);
    let stored = fill(&cache, "m", DISTINCT, Some(timeout), |j| deps_eq("post", "id", j as i64 + 1_000_000)).await?;
    let filled_at = Instant::now();
    let peak = info_field(&mut conn, "memory", "used_memory").await?;
    let peak_keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(e("DBSIZE"))?;
    // Values live `timeout`, conj stamps `conj_ttl(timeout)` = 2 × timeout + 10 s.
    let wait = cacheops_core::keys::conj_ttl(timeout) + Duration::from_secs(1);
    tokio::time::sleep(wait.saturating_sub(filled_at.elapsed())).await;
    // Redis' active expiry reclaims them; a SCAN over the keyspace also expires what it meets.
    let mut cursor: u64 = 0;
    loop {
        let (next, _keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(&mut conn).await.map_err(e("SCAN"))?;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = info_field(&mut conn, "memory", "used_memory").await?;
    let after_keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(e("DBSIZE"))?;
    println!(
        "# redis memory (own redis-server): {stored} distinct cached queries, timeout {}s, each on its own conj",
        timeout.as_secs()
    );
    println!(
        "# used_memory baseline {base} B ({base_keys} keys), after caching {peak} B ({peak_keys} keys), {} s later {after} B ({after_keys} keys): {:+} B vs baseline",
        filled_at.elapsed().as_secs(),
        after as i64 - base as i64
    );
    Ok(())
}
