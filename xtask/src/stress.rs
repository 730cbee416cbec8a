//! `cargo xtask stress`: writers and readers in several OS processes over PostgreSQL + Redis,
//! through the SeaORM `CachedConnection` and through `cached_as`; every read is checked against
//! the committed state of the database taken right before the read began.
//!
//! The check. Every `item` row carries a `version` that each committed write increases by one
//! (rows also move between groups). Before a read, the worker reads the committed state
//! straight from PostgreSQL (not through the cache); a read is **stale** when it returns
//!
//! * a row with a version lower than the one committed before the read began, or
//! * a group list that lacks a row which was in the group before the read began and has not
//!   been written since (its version is still the one seen before the read).
//!
//! Writers log each version in `commit_log` in the same transaction as the bump (the durable
//! history); at the end the log must match the writes counted and the rows' final versions.
//!
//! Processes: the parent is worker 0 and re-executes itself (`xtask __stress-worker …`) for the
//! others. All share one Redis prefix. After the timed phase every worker waits for all writers
//! of all processes to stop (a barrier table), then runs a quiescent tail in which each read is
//! done twice: the second must be a hit (caching still works, e.g. after a Redis restart).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cacheops::{Cache, Dep, Profile, Profiles, Value};
use cacheops_sea_orm::CachedConnection;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect, Statement, TransactionTrait,
};

use crate::Args;
use crate::faults::Fault;
use crate::redis_server::OwnRedis;
use crate::schema::item;
use crate::topology::{Group, Topology, print_report};
use crate::util::{Rng, e, pg_schema_url, pg_url, redis_url, runtime, unique};

pub const WORKER_CMD: &str = "__stress-worker";

const WRITERS: usize = 2;
const READERS: usize = 6;
/// Upper bound on the operations of one task (the loops also stop at the deadline).
const MAX_OPS: u64 = 2_000_000;

type Res<T> = Result<T, String>;

/// A failed read of a cached function: the cache's or the database's.
#[derive(Debug)]
enum ReadErr {
    Cache(cacheops::Error),
    Db(sea_orm::DbErr),
}

impl From<cacheops::Error> for ReadErr {
    fn from(e: cacheops::Error) -> Self {
        ReadErr::Cache(e)
    }
}

impl std::fmt::Display for ReadErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadErr::Cache(e) => write!(f, "{e}"),
            ReadErr::Db(e) => write!(f, "database: {e}"),
        }
    }
}

/// What one worker process needs to know.
#[derive(Debug, Clone)]
struct Cfg {
    schema: String,
    redis: String,
    prefix: String,
    seconds: u64,
    rows: i32,
    groups: i32,
    payload: usize,
    processes: usize,
    worker: usize,
    fault: Fault,
}

impl Cfg {
    fn to_args(&self) -> Vec<String> {
        [
            ("--schema", self.schema.clone()),
            ("--redis", self.redis.clone()),
            ("--prefix", self.prefix.clone()),
            ("--seconds", self.seconds.to_string()),
            ("--rows", self.rows.to_string()),
            ("--groups", self.groups.to_string()),
            ("--payload", self.payload.to_string()),
            ("--processes", self.processes.to_string()),
            ("--worker", self.worker.to_string()),
            ("--fault", self.fault.name().to_owned()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    fn from_args(a: &Args) -> Res<Cfg> {
        Ok(Cfg {
            schema: a.string("--schema", "")?,
            redis: a.string("--redis", "")?,
            prefix: a.string("--prefix", "")?,
            seconds: a.value("--seconds", 10)?,
            rows: a.value("--rows", 64)?,
            groups: a.value("--groups", 8)?,
            payload: a.value("--payload", 16)?,
            processes: a.value("--processes", 2)?,
            worker: a.value("--worker", 1)?,
            fault: Fault::parse(&a.string("--fault", "none")?)?,
        })
    }
}

/// What one worker counted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    reads: u64,
    hits: u64,
    writes: u64,
    stale: u64,
    errors: u64,
    tail_reads: u64,
    tail_hits: u64,
    tail_stale: u64,
    /// Writes refused because their lease could not be placed (Redis faults), or by the
    /// database (serialization failures at REPEATABLE READ): rolled back, expected.
    refused: u64,
    /// Writes whose future was dropped (`--fault cancel`): they may or may not have landed.
    cancelled: u64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "RESULT reads={} hits={} writes={} stale={} errors={} tail_reads={} tail_hits={} tail_stale={} refused={} cancelled={}",
            self.reads,
            self.hits,
            self.writes,
            self.stale,
            self.errors,
            self.tail_reads,
            self.tail_hits,
            self.tail_stale,
            self.refused,
            self.cancelled
        )
    }

    fn parse(line: &str) -> Option<Counts> {
        let rest = line.strip_prefix("RESULT ")?;
        let mut c = Counts::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "reads" => c.reads = v,
                "hits" => c.hits = v,
                "writes" => c.writes = v,
                "stale" => c.stale = v,
                "errors" => c.errors = v,
                "tail_reads" => c.tail_reads = v,
                "tail_hits" => c.tail_hits = v,
                "tail_stale" => c.tail_stale = v,
                "refused" => c.refused = v,
                "cancelled" => c.cancelled = v,
                _ => {}
            }
        }
        Some(c)
    }

    fn add(&mut self, o: &Counts) {
        self.reads += o.reads;
        self.hits += o.hits;
        self.writes += o.writes;
        self.stale += o.stale;
        self.errors += o.errors;
        self.tail_reads += o.tail_reads;
        self.tail_hits += o.tail_hits;
        self.tail_stale += o.tail_stale;
        self.refused += o.refused;
        self.cancelled += o.cancelled;
    }
}

pub fn main(args: &Args) -> Res<bool> {
    args.check(
        &["--seconds", "--processes", "--rows", "--groups", "--fault", "--topology"],
        &["--redis-restart", "--eviction"],
    )?;
    let seconds: u64 = args.value("--seconds", 10)?;
    let processes: usize = args.value("--processes", 2)?;
    let fault = match (args.flag("--redis-restart"), args.flag("--eviction")) {
        (true, false) => Fault::Restart,
        (false, true) => Fault::Eviction,
        (true, true) => return Err("--redis-restart and --eviction are two faults: run them one at a time".into()),
        (false, false) => Fault::parse(&args.string("--fault", "none")?)?,
    };
    let eviction = fault == Fault::Eviction;
    if !(1..=8).contains(&processes) || !(1..=3600).contains(&seconds) {
        return Err("--processes must be in 1..=8 and --seconds in 1..=3600".into());
    }
    // Eviction needs data that does not fit in 4 MB: 3 000 rows of 1 kB, lists of ~190 kB.
    let (rows, groups, payload) = if eviction { (3000, 16, 1000) } else { (128, 16, 16) };
    let rows = args.value("--rows", rows)?;
    let groups = args.value("--groups", groups)?;
    let default_topology = if fault == Fault::Failover { "sentinel" } else { "standalone" };
    let topology = Topology::parse(&args.string("--topology", default_topology)?)?;
    if fault == Fault::Failover && topology != Topology::Sentinel {
        return Err("--fault failover runs on --topology sentinel".into());
    }
    if topology != Topology::Standalone && fault.server_args().is_some() {
        return Err(format!("--fault {} runs on a standalone server of its own", fault.name()));
    }
    let group = match topology {
        Topology::Standalone => None,
        Topology::Cluster => Some(Group::cluster()?),
        Topology::Sentinel => Some(Group::sentinel()?),
    };
    let mut server = match fault.server_args() {
        Some(extra) => Some(OwnRedis::start(&extra)?),
        None => None,
    };
    let cfg = Cfg {
        schema: format!("xstress_{}", unique("s").trim_start_matches("s-")),
        redis: match &group {
            Some(g) => g.url(),
            None => server.as_ref().map_or_else(redis_url, OwnRedis::url),
        },
        prefix: unique("stress"),
        seconds,
        rows,
        groups,
        payload,
        processes,
        worker: 0,
        fault,
    };
    println!(
        "# stress: {processes} processes × ({WRITERS} writers + {READERS} readers), {seconds} s, {rows} rows in {groups} groups, redis {}, fault {}",
        cfg.redis,
        fault.name()
    );
    let rt = runtime(2);
    let res = rt.block_on(async {
        setup(&cfg).await?;
        let exe = std::env::current_exe().map_err(e("current_exe"))?;
        let mut children = Vec::new();
        for w in 1..processes {
            let mut c = cfg.clone();
            c.worker = w;
            let child = tokio::process::Command::new(&exe)
                .arg(WORKER_CMD)
                .args(c.to_args())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(e("spawn worker"))?;
            children.push(child);
        }
        let restarter = fault.inject(server.as_mut(), seconds);
        let failover = async {
            let Some(g) = group.as_ref().filter(|_| fault == Fault::Failover) else { return Ok(()) };
            tokio::time::sleep(Duration::from_secs_f64(seconds as f64 * 0.4)).await;
            let (old, new) = tokio::task::block_in_place(|| g.failover())?;
            println!("# SENTINEL FAILOVER: the Sentinels name 127.0.0.1:{new} (was {old})");
            Ok::<_, String>(())
        };
        let (mine, restarted, failed_over) = tokio::join!(worker(cfg.clone()), restarter, failover);
        restarted?;
        failed_over?;
        let mut total = mine?;
        println!("# worker 0: {}", total.line());
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().await.map_err(e("worker"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let c = text
                .lines()
                .find_map(Counts::parse)
                .ok_or_else(|| format!("worker {} ({}) printed no result", i + 1, out.status))?;
            println!("# worker {}: {}", i + 1, c.line());
            total.add(&c);
        }
        let history = verify_history(&cfg, total.writes, fault == Fault::Cancel).await;
        if let Some(s) = &server
            && eviction
        {
            println!(
                "# evicted_keys={}",
                s.cli(&["INFO", "stats"]).lines().find_map(|l| l.strip_prefix("evicted_keys:")).unwrap_or("?").trim()
            );
        }
        if let Some(g) = &group {
            print_report(&g.node_report());
        }
        teardown(&cfg).await;
        Ok::<_, String>((total, history))
    });
    drop(rt);
    let (total, history) = res?;
    println!(
        "reads={} hits={} writes={} stale={}",
        total.reads + total.tail_reads,
        total.hits + total.tail_hits,
        total.writes,
        total.stale + total.tail_stale
    );
    println!(
        "# timed phase: reads={} hits={} stale={}; quiescent tail: reads={} hits={} stale={}; errors surfaced to callers={}; writes refused={} cancelled={}",
        total.reads,
        total.hits,
        total.stale,
        total.tail_reads,
        total.tail_hits,
        total.tail_stale,
        total.errors,
        total.refused,
        total.cancelled
    );
    let mut ok = true;
    if total.stale + total.tail_stale > 0 {
        println!("FAIL: stale reads");
        ok = false;
    }
    if total.errors > 0 {
        println!("FAIL: errors reached callers");
        ok = false;
    }
    if total.tail_hits == 0 {
        println!("FAIL: nothing was served from the cache in the quiescent tail");
        ok = false;
    }
    if let Err(msg) = history {
        println!("FAIL: history: {msg}");
        ok = false;
    }
    Ok(ok)
}

pub fn worker_main(args: &Args) -> Res<bool> {
    let cfg = Cfg::from_args(args)?;
    let counts = runtime(2).block_on(worker(cfg))?;
    println!("{}", counts.line());
    Ok(true)
}

async fn admin() -> Res<DatabaseConnection> {
    Database::connect(pg_url()).await.map_err(e("PostgreSQL on 127.0.0.1:5432 (XTASK_PG)"))
}

async fn setup(cfg: &Cfg) -> Res<()> {
    let a = admin().await?;
    let s = &cfg.schema;
    a.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};
         CREATE TABLE {s}.item (id integer PRIMARY KEY, grp integer NOT NULL, version bigint NOT NULL, payload text NOT NULL);
         CREATE TABLE {s}.commit_log (row_id integer NOT NULL, version bigint NOT NULL, grp integer NOT NULL,
            committed_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (row_id, version));
         CREATE TABLE {s}.barrier (worker integer PRIMARY KEY);
         INSERT INTO {s}.item SELECT i, i % {g}, 1, repeat('p', {p}) FROM generate_series(1, {n}) AS i;
         INSERT INTO {s}.commit_log (row_id, version, grp) SELECT id, version, grp FROM {s}.item;",
        g = cfg.groups,
        p = cfg.payload,
        n = cfg.rows
    ))
    .await
    .map_err(e("setup"))?;
    a.close().await.map_err(e("close"))?;
    Ok(())
}

async fn teardown(cfg: &Cfg) {
    if let Ok(a) = admin().await {
        let _ = a.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {} CASCADE", cfg.schema)).await;
        let _ = a.close().await;
    }
}

/// The durable history matches the writes: one log entry per write, final versions agree.
/// With cancelled writes (`at_least`), some of those dropped landed too: every bump is logged,
/// and at least the confirmed writes are.
async fn verify_history(cfg: &Cfg, writes: u64, at_least: bool) -> Res<()> {
    let a = admin().await?;
    let s = &cfg.schema;
    let row = a
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT (SELECT count(*) FROM {s}.commit_log)::bigint AS logged,
                        (SELECT count(*) FROM {s}.item i WHERE i.version <> (SELECT max(version) FROM {s}.commit_log c WHERE c.row_id = i.id))::bigint AS mismatched,
                        (SELECT coalesce(sum(version - 1), 0) FROM {s}.item)::bigint AS bumps"
            ),
        ))
        .await
        .map_err(e("history"))?
        .ok_or("history: no row")?;
    let logged: i64 = row.try_get("", "logged").map_err(e("logged"))?;
    let mismatched: i64 = row.try_get("", "mismatched").map_err(e("mismatched"))?;
    let bumps: i64 = row.try_get("", "bumps").map_err(e("bumps"))?;
    let _ = a.close().await;
    let expected = i64::from(cfg.rows) + writes as i64;
    println!(
        "# history: commit_log has {logged} entries ({} initial + {writes} writes), version bumps {bumps}, rows whose version disagrees with the log: {mismatched}",
        cfg.rows
    );
    let counts_agree = if at_least {
        logged == i64::from(cfg.rows) + bumps && bumps >= writes as i64
    } else {
        logged == expected && bumps == writes as i64
    };
    if !counts_agree || mismatched != 0 {
        return Err(format!(
            "commit_log {logged} ≠ {expected}, or bumps {bumps} ≠ writes {writes}, or {mismatched} rows disagree"
        ));
    }
    Ok(())
}

fn profiles() -> Profiles {
    Profiles::builder()
        .profile("item", Profile::builder().ops(["all"]).timeout(Duration::from_secs(60)))
        .build()
        .expect("profiles")
}

struct Ctx {
    cfg: Cfg,
    raw: DatabaseConnection,
    db: CachedConnection,
    /// `--fault repeatable-read`: the same cache over a pool whose transactions default to
    /// REPEATABLE READ (the readers' snapshot transactions).
    rr_db: Option<CachedConnection>,
    cache: Cache,
    errors: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
}

impl Ctx {
    fn error(&self, what: &str, err: impl std::fmt::Display) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            eprintln!("worker {}: {what}: {err}", self.cfg.worker);
        }
    }
}

async fn worker(cfg: Cfg) -> Res<Counts> {
    let mut opts = ConnectOptions::new(pg_schema_url(&cfg.schema));
    // Four processes stay under PostgreSQL's default max_connections (100).
    opts.max_connections(16).sqlx_logging(false);
    let raw = Database::connect(opts).await.map_err(e("connect"))?;
    let wide = Arc::new(AtomicU64::new(0));
    let wide2 = wide.clone();
    let cache = Cache::builder()
        .on_invalidate(move |ev| {
            if matches!(ev, cacheops::InvalidateEvent::Model { table } if table == "item")
                || matches!(ev, cacheops::InvalidateEvent::All)
            {
                wide2.fetch_add(1, Ordering::Relaxed);
            }
        })
        .redis_url(&cfg.redis)
        .prefix(&cfg.prefix)
        .profiles(profiles())
        .degrade(true)
        .retry_interval(Duration::from_millis(200))
        .lease(Duration::from_secs(5))
        .build()
        .await
        .map_err(e("cache"))?;
    let db = CachedConnection::new(raw.clone(), cache.clone());
    let rr_db = if cfg.fault == Fault::RepeatableRead {
        let url = format!("{}%20-c%20default_transaction_isolation%3Drepeatable%5C%20read", pg_schema_url(&cfg.schema));
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(4).sqlx_logging(false);
        let pool = Database::connect(opts).await.map_err(e("connect (repeatable read)"))?;
        Some(CachedConnection::new(pool, cache.clone()))
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        raw,
        db,
        rr_db,
        cache: cache.clone(),
        errors: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
    });
    let deadline = Instant::now() + Duration::from_secs(cfg.seconds);
    let seed = 1000 * cfg.worker as u64;

    let mut writers = Vec::new();
    // Diagnostics: XTASK_STRESS_WRITERS (per process), XTASK_STRESS_READ_KINDS (e.g. "0" = by key
    // only), XTASK_STRESS_WRITE_KINDS (e.g. "3" = autocommit only).
    let writers_n: usize = std::env::var("XTASK_STRESS_WRITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(WRITERS);
    for w in 0..writers_n {
        writers.push(tokio::spawn(writer(ctx.clone(), seed + w as u64, deadline)));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        readers.push(tokio::spawn(reader(ctx.clone(), seed + 100 + r as u64, deadline)));
    }
    let mut c = Counts::default();
    for w in writers {
        c.writes += w.await.map_err(e("writer"))?;
    }
    for r in readers {
        let (reads, stale) = r.await.map_err(e("reader"))?;
        c.reads += reads;
        c.stale += stale;
    }
    let st = cache.stats();
    c.hits = st.hits;
    eprintln!(
        "# worker {} timed phase: misses={} bypasses={} stores={} refused_stores={} backend_errors={} replayed={} fences={} table_level_invalidations={}",
        cfg.worker,
        st.misses,
        st.bypasses,
        st.stores,
        st.refused_stores,
        st.errors,
        st.replayed,
        st.fences,
        wide.load(Ordering::Relaxed)
    );

    // Barrier: the tail starts when every process's writers have stopped.
    let s = &cfg.schema;
    ctx.raw
        .execute_unprepared(&format!("INSERT INTO {s}.barrier VALUES ({})", cfg.worker))
        .await
        .map_err(e("barrier"))?;
    let waited = Instant::now();
    loop {
        let row = ctx
            .raw
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT count(*)::bigint AS n FROM {s}.barrier"),
            ))
            .await
            .map_err(e("barrier"))?
            .ok_or("barrier: no row")?;
        let n: i64 = row.try_get("", "n").map_err(e("barrier"))?;
        if n as usize >= cfg.processes {
            break;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            return Err("barrier: the other workers did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Quiescent tail: each read twice; the second is expected to hit. Give a restarted server's
    // clients time to close their circuit and replay what they queued; cancelled writes leave
    // their markers until their lease (5 s) expires.
    let settle = if cfg.fault == Fault::Cancel { Duration::from_millis(5_500) } else { Duration::from_millis(500) };
    tokio::time::sleep(settle).await;
    let mut rng = Rng::new(seed + 999);
    for i in 0..(cfg.groups as u64 * 6) {
        let kind = i % 3;
        let key = if kind == 0 { rng.range(1, i64::from(cfg.rows)) as i32 } else { (i / 3) as i32 % cfg.groups };
        for round in 0..2 {
            let before = cache.stats().hits;
            match checked_read(&ctx, kind, key).await {
                Ok(stale) => {
                    c.tail_reads += 1;
                    c.tail_stale += u64::from(stale);
                    if round == 1 && cache.stats().hits > before {
                        c.tail_hits += 1;
                    }
                }
                Err(err) => ctx.error("tail read", err),
            }
        }
    }
    c.errors = ctx.errors.load(Ordering::Relaxed);
    c.refused = ctx.refused.load(Ordering::Relaxed);
    c.cancelled = ctx.cancelled.load(Ordering::Relaxed);
    Ok(c)
}

async fn writer(ctx: Arc<Ctx>, seed: u64, deadline: Instant) -> u64 {
    let mut rng = Rng::new(seed);
    let kinds: Vec<u64> = std::env::var("XTASK_STRESS_WRITE_KINDS")
        .unwrap_or_else(|_| "0123".into())
        .chars()
        .filter_map(|c| c.to_digit(10).map(u64::from).filter(|k| *k < 4))
        .collect();
    let cancel = ctx.cfg.fault == Fault::Cancel;
    // Cancelled autocommit writes (kind 3) could land without their log entry: not with cancel.
    let kinds: Vec<u64> = kinds.into_iter().filter(|k| !cancel || *k < 3).collect();
    let kinds = if kinds.is_empty() { vec![0, 1, 2] } else { kinds };
    let mut writes = 0;
    let mut i: u64 = 0;
    while Instant::now() < deadline && i < MAX_OPS {
        let id = rng.range(1, i64::from(ctx.cfg.rows)) as i32;
        let grp = rng.range(0, i64::from(ctx.cfg.groups) - 1) as i32;
        let kind = kinds[i as usize % kinds.len()];
        let res = if cancel && rng.range(0, 3) == 0 {
            // One write in four is dropped at a random await point: before, during or after
            // its COMMIT.
            let after = Duration::from_micros(rng.range(0, 20_000) as u64);
            tokio::time::timeout(after, write(&ctx, kind, id, grp)).await.ok()
        } else {
            Some(write(&ctx, kind, id, grp).await)
        };
        match res {
            Some(Ok(())) => writes += 1,
            None => {
                ctx.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(err)) if expected_refusal(&err) => {
                if ctx.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("worker {}: first refused write: {err}", ctx.cfg.worker);
                }
            }
            Some(Err(err)) => ctx.error("write", err),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writes
}

fn log_stmt(id: i32, version: i64, grp: i32) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO commit_log (row_id, version, grp) VALUES ($1, $2, $3)",
        [id.into(), version.into(), grp.into()],
    )
}

/// One write, four ways: an ActiveModel save, a raw `UPDATE … RETURNING`, an `update_many` (each
/// in a transaction, logged in it), and an autocommit `UPDATE … RETURNING` (logged right after).
async fn write(ctx: &Ctx, kind: u64, id: i32, grp: i32) -> Result<(), sea_orm::DbErr> {
    match kind {
        0 => {
            let txn = ctx.db.begin().await?;
            let m = item::Entity::find_by_id(id)
                .lock_exclusive()
                .one(&txn)
                .await?
                .ok_or(sea_orm::DbErr::RecordNotFound(id.to_string()))?;
            let version = m.version + 1;
            let mut am = m.into_active_model();
            am.version = Set(version);
            am.grp = Set(grp);
            am.update(&txn).await?;
            txn.execute_raw(log_stmt(id, version, grp)).await?;
            txn.commit().await
        }
        1 => {
            let txn = ctx.db.begin().await?;
            let row = one_row(&txn, id, BUMP_RETURNING, [id.into(), grp.into()]).await?;
            let version: i64 = row.try_get("", "version")?;
            txn.execute_raw(log_stmt(id, version, grp)).await?;
            txn.commit().await
        }
        2 => {
            let txn = ctx.db.begin().await?;
            let row = one_row(&txn, id, "SELECT version FROM item WHERE id = $1 FOR UPDATE", [id.into()]).await?;
            let version: i64 = row.try_get::<i64>("", "version")? + 1;
            let res = item::Entity::update_many()
                .col_expr(item::Column::Version, Expr::col(item::Column::Version).add(1))
                .col_expr(item::Column::Grp, Expr::value(grp))
                .filter(item::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            if res.rows_affected != 1 {
                return Err(sea_orm::DbErr::RecordNotFound(id.to_string()));
            }
            txn.execute_raw(log_stmt(id, version, grp)).await?;
            txn.commit().await
        }
        _ => {
            let row = one_row(&ctx.db, id, BUMP_RETURNING, [id.into(), grp.into()]).await?;
            let version: i64 = row.try_get("", "version")?;
            ctx.raw.execute_raw(log_stmt(id, version, grp)).await?;
            Ok(())
        }
    }
}

/// A write the system refused on purpose: its lease could not be placed (Redis refusing writes,
/// `MarkFailure::RefuseWrite`), or PostgreSQL's serialization failure at REPEATABLE READ. It was
/// rolled back.
fn expected_refusal(err: &sea_orm::DbErr) -> bool {
    let msg = err.to_string();
    msg.contains("write refused") || msg.contains("could not serialize")
}

/// Write kinds 1 and 3: bump the version and move the item, returning the new state.
const BUMP_RETURNING: &str = "UPDATE item SET version = version + 1, grp = $2 WHERE id = $1 RETURNING id, grp, version";

/// The one row a statement about item `id` returns (`RecordNotFound` when there is none).
async fn one_row(
    conn: &impl ConnectionTrait,
    id: i32,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<sea_orm::QueryResult, sea_orm::DbErr> {
    conn.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await?
        .ok_or(sea_orm::DbErr::RecordNotFound(id.to_string()))
}

async fn reader(ctx: Arc<Ctx>, seed: u64, deadline: Instant) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let kinds: Vec<u64> = std::env::var("XTASK_STRESS_READ_KINDS")
        .unwrap_or_else(|_| "012".into())
        .chars()
        .filter_map(|c| c.to_digit(10).map(u64::from).filter(|k| *k < 3))
        .collect();
    let kinds = if kinds.is_empty() { vec![0, 1, 2] } else { kinds };
    let (mut reads, mut stale) = (0, 0);
    let mut i: u64 = 0;
    while Instant::now() < deadline && i < MAX_OPS {
        let kind = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
        let key = if kind == 0 {
            rng.range(1, i64::from(ctx.cfg.rows)) as i32
        } else {
            rng.range(0, i64::from(ctx.cfg.groups) - 1) as i32
        };
        if let Some(rr) = &ctx.rr_db
            && let Err(err) = snapshot_read(rr, kind, key).await
        {
            ctx.error("snapshot read", err);
        }
        match checked_read(&ctx, kind, key).await {
            Ok(s) => {
                reads += 1;
                stale += u64::from(s);
            }
            Err(err) => ctx.error("read", err),
        }
        i += 1;
    }
    (reads, stale)
}

/// A REPEATABLE READ transaction (by the pool's default) whose snapshot is taken first, then
/// the read the next checked read repeats outside it: a snapshot read stored in the cache would
/// make that one stale.
async fn snapshot_read(rr: &CachedConnection, kind: u64, key: i32) -> Res<()> {
    let txn = rr.begin().await.map_err(e("begin"))?;
    txn.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) AS n FROM commit_log"))
        .await
        .map_err(e("snapshot"))?;
    tokio::time::sleep(Duration::from_millis(2)).await;
    if kind == 0 {
        item::Entity::find_by_id(key).one(&txn).await.map_err(e("get"))?;
    } else {
        item::Entity::find().filter(item::Column::Grp.eq(key)).all(&txn).await.map_err(e("list"))?;
    }
    txn.commit().await.map_err(e("commit"))
}

/// The committed (version, group) of every row, straight from PostgreSQL.
async fn snapshot(ctx: &Ctx) -> Res<HashMap<i32, (i64, i32)>> {
    let rows = ctx
        .raw
        .query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT id, version, grp FROM item"))
        .await
        .map_err(e("snapshot"))?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "id")?, (r.try_get("", "version")?, r.try_get("", "grp")?))))
        .collect::<Result<_, sea_orm::DbErr>>()
        .map_err(e("snapshot"))
}

/// One read of kind 0 (by primary key, SeaORM), 1 (group list, SeaORM) or 2 (group list,
/// `cached_as`), checked. Returns whether it was stale.
async fn checked_read(ctx: &Ctx, kind: u64, key: i32) -> Res<bool> {
    if kind == 0 {
        let before = ctx
            .raw
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT version FROM item WHERE id = $1",
                [key.into()],
            ))
            .await
            .map_err(e("before"))?
            .ok_or("row missing")?;
        let before: i64 = before.try_get("", "version").map_err(e("before"))?;
        let got = item::Entity::find_by_id(key).one(&ctx.db).await.map_err(e("get"))?.ok_or("row missing")?;
        if got.version < before {
            eprintln!(
                "worker {}: STALE get item {key}: version {} < {before} committed before the read",
                ctx.cfg.worker, got.version
            );
            return Ok(true);
        }
        return Ok(false);
    }
    let before = snapshot(ctx).await?;
    let got: Vec<(i32, i64)> = if kind == 1 {
        item::Entity::find()
            .filter(item::Column::Grp.eq(key))
            .all(&ctx.db)
            .await
            .map_err(e("list"))?
            .into_iter()
            .map(|m| (m.id, m.version))
            .collect()
    } else {
        let sql = "SELECT id, version FROM item WHERE grp = $1 ORDER BY id";
        let f = ctx.cache.cached_as("stress_group", Dep::sql(sql, [Value::Int(i64::from(key))]));
        let raw = ctx.raw.clone();
        f.get_or_compute(&key, || async move {
            let rows = raw
                .query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [key.into()]))
                .await
                .map_err(ReadErr::Db)?;
            rows.iter()
                .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "version")?)))
                .collect::<Result<Vec<(i32, i64)>, sea_orm::DbErr>>()
                .map_err(ReadErr::Db)
        })
        .await
        .map_err(e("cached_as"))?
    };
    let mut stale = false;
    for (id, v) in &got {
        if let Some((bv, _)) = before.get(id)
            && v < bv
        {
            eprintln!("worker {}: STALE list grp {key} (kind {kind}): item {id} version {v} < {bv}", ctx.cfg.worker);
            stale = true;
        }
    }
    let missing: Vec<i32> = before
        .iter()
        .filter(|(id, (_, g))| *g == key && !got.iter().any(|(gid, _)| gid == *id))
        .map(|(id, _)| *id)
        .collect();
    if !missing.is_empty() {
        let now = snapshot(ctx).await?;
        for id in missing {
            if now.get(&id).map(|(v, _)| *v) == before.get(&id).map(|(v, _)| *v) {
                eprintln!(
                    "worker {}: STALE list grp {key} (kind {kind}): lacks item {id}, unchanged since before the read",
                    ctx.cfg.worker
                );
                stale = true;
            }
        }
    }
    Ok(stale)
}
