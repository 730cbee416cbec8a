//! A short stale-read stress test on PostgreSQL + Redis (the long, multi-process one is
//! `cargo xtask stress`): writers and readers run concurrently through `CachedConnection`, and
//! every read is checked against the committed state read straight from PostgreSQL right
//! before it began. A read must never return a row version older than that state, nor a group
//! list lacking a row that was in the group then and has not been written since.
//!
//! Variants: a table with a trigger (namespace-level leases); a Redis of the test's own that is
//! killed and comes back from an older snapshot mid-run; writers that drop one write in four at
//! a random await point (COMMIT included).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use common::{REDIS, env_with};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QuerySelect, Statement, TransactionTrait,
};

mod item {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub grp: i32,
        pub version: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

const ROWS: i32 = 24;
const GROUPS: i32 = 4;
const RUN_FOR: Duration = Duration::from_secs(3);

/// xorshift64: deterministic per task.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: i32) -> i32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i32
    }
}

/// Committed (version, group) of every row, straight from PostgreSQL.
async fn snapshot(raw: &DatabaseConnection) -> HashMap<i32, (i64, i32)> {
    let rows = raw
        .query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT id, version, grp FROM item"))
        .await
        .expect("snapshot");
    rows.iter()
        .map(|r| {
            let id: i32 = r.try_get("", "id").unwrap();
            (id, (r.try_get("", "version").unwrap(), r.try_get("", "grp").unwrap()))
        })
        .collect()
}

/// One read through the cache (a row by key, or a group list), checked. Returns whether it was
/// stale.
async fn checked_read(db: &CachedConnection, raw: &DatabaseConnection, list: bool, key: i32) -> bool {
    let before = snapshot(raw).await;
    if !list {
        let got = item::Entity::find_by_id(key).one(db).await.expect("get").expect("row");
        return got.version < before[&key].0;
    }
    let got: Vec<item::Model> = item::Entity::find().filter(item::Column::Grp.eq(key)).all(db).await.expect("list");
    let mut stale = got.iter().any(|m| m.version < before[&m.id].0);
    let missing: Vec<i32> = before
        .iter()
        .filter(|(id, (_, g))| *g == key && !got.iter().any(|m| m.id == **id))
        .map(|(id, _)| *id)
        .collect();
    if !missing.is_empty() {
        let now = snapshot(raw).await;
        stale |= missing.iter().any(|id| now[id].0 == before[id].0);
    }
    stale
}

/// A write: ActiveModel save in a transaction (row locked), or an autocommit `UPDATE … RETURNING`.
async fn write(db: &CachedConnection, i: u64, id: i32, grp: i32) -> Result<(), sea_orm::DbErr> {
    if i.is_multiple_of(2) {
        let txn = db.begin().await?;
        let m = item::Entity::find_by_id(id).lock_exclusive().one(&txn).await?.expect("row");
        let version = m.version + 1;
        let mut am = m.into_active_model();
        am.version = Set(version);
        am.grp = Set(grp);
        am.update(&txn).await?;
        txn.commit().await
    } else {
        db.query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE item SET version = version + 1, grp = $2 WHERE id = $1 RETURNING version",
            [id.into(), grp.into()],
        ))
        .await?
        .expect("row");
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    /// A trigger on the table: every write is a namespace-level lease.
    Trigger,
    /// The test's own Redis: `SAVE`, then `kill -9` and a restart from that older snapshot.
    CrashSnapshot,
    /// One write in four dropped at a random await point.
    Cancel,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_under_concurrent_writes() {
    stress(Variant::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_under_concurrent_writes_to_a_table_with_a_trigger() {
    stress(Variant::Trigger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_when_redis_comes_back_from_an_older_snapshot() {
    stress(Variant::CrashSnapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_when_writes_are_cancelled() {
    stress(Variant::Cancel).await;
}

/// A redis-server of the test's own on a free loopback port (killed on drop).
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let dir = std::env::temp_dir().join(format!("cacheops-stress-short-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut r = OwnRedis { port, dir, child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see .ci/run)");
        self.child = Some(child);
        for _ in 0..500 {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    fn cli(&self, args: &[&str]) -> String {
        std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A write the system refused on purpose (its lease could not be placed while Redis was down).
fn refused(e: &sea_orm::DbErr) -> bool {
    cacheops_sea_orm::cache_error(e)
        .is_some_and(|c| matches!(c, cacheops::Error::LeaseUnavailable(_)) && c.is_unavailable())
}

async fn stress(variant: Variant) {
    let trigger = variant == Variant::Trigger;
    let mut own = (variant == Variant::CrashSnapshot).then(OwnRedis::start);
    let profiles = Profiles::builder()
        .profile("item", Profile::builder().ops(["all"]).timeout(Duration::from_secs(60)))
        .build()
        .unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let url = own.as_ref().map_or_else(|| REDIS.to_owned(), |r| format!("redis://127.0.0.1:{}/0", r.port));
    let cache = Cache::builder()
        .redis_url(url)
        .prefix(format!("sea-stress-{}-{:x}", std::process::id(), nanos & 0xffff_ffff))
        // Reads must go on while the test's own Redis is down.
        .degrade(own.is_some())
        .retry_interval(Duration::from_millis(100))
        .lease(Duration::from_secs(if variant == Variant::Cancel { 1 } else { 5 }))
        .profiles(profiles)
        .build()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see .ci/run)");
    let env = env_with("stress", cache.clone()).await;
    env.raw
        .execute_unprepared(&format!(
            "CREATE TABLE item (id integer PRIMARY KEY, grp integer NOT NULL, version bigint NOT NULL);
             INSERT INTO item SELECT i, i % {GROUPS}, 1 FROM generate_series(1, {ROWS}) AS i;"
        ))
        .await
        .expect("item table");
    if trigger {
        env.raw
            .execute_unprepared(
                "CREATE TABLE item_log (n bigint); INSERT INTO item_log VALUES (0);
                 CREATE FUNCTION item_log_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE item_log SET n = n + 1; RETURN NEW; END $$;
                 CREATE TRIGGER item_log AFTER UPDATE ON item FOR EACH ROW EXECUTE FUNCTION item_log_bump();",
            )
            .await
            .expect("trigger");
    }
    // Created behind the cached connection's back: read its catalog again (a table it does not
    // know is written with a namespace-level lease).
    env.db.load_catalog().await.expect("catalog");
    let db = env.db.clone();
    let raw = env.raw.clone();
    let deadline = Instant::now() + RUN_FOR;

    let mut writers = Vec::new();
    for w in 0..2u64 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9 + w);
            let mut n = 0u64;
            while Instant::now() < deadline && n < 100_000 {
                let (id, grp) = (rng.below(ROWS) + 1, rng.below(GROUPS));
                let res = if variant == Variant::Cancel && rng.below(4) == 0 {
                    let after = Duration::from_micros(rng.below(10_000) as u64);
                    tokio::time::timeout(after, write(&db, n, id, grp)).await.unwrap_or(Ok(()))
                } else {
                    write(&db, n, id, grp).await
                };
                match res {
                    Ok(()) => {}
                    Err(e) if refused(&e) => {}
                    Err(e) => panic!("write: {e}"),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        }));
    }
    let fault = async {
        if let Some(r) = own.as_mut() {
            tokio::time::sleep(RUN_FOR / 4).await;
            r.cli(&["SAVE"]);
            tokio::time::sleep(RUN_FOR / 4).await;
            tokio::task::block_in_place(|| r.crash_and_restart());
        }
    };
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let (db, raw) = (db.clone(), raw.clone());
        readers.push(tokio::spawn(async move {
            let mut rng = Rng(0x1234_5678 + r);
            let (mut reads, mut stale) = (0u64, 0u64);
            while Instant::now() < deadline && reads < 100_000 {
                let list = rng.below(2) == 0;
                let key = if list { rng.below(GROUPS) } else { rng.below(ROWS) + 1 };
                stale += u64::from(checked_read(&db, &raw, list, key).await);
                reads += 1;
            }
            (reads, stale)
        }));
    }
    fault.await;
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    let (mut reads, mut stale) = (0, 0);
    for r in readers {
        let (a, b) = r.await.unwrap();
        reads += a;
        stale += b;
    }
    let concurrent_hits = cache.stats().hits;

    // Quiescent tail: every read twice; the second may be served from the cache (once dropped
    // writes' leases have expired, and a restarted server answers again).
    if variant != Variant::Plain && variant != Variant::Trigger {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let mut tail_hits = 0;
    for key in 0..GROUPS + ROWS {
        let (list, key) = if key < GROUPS { (true, key) } else { (false, key - GROUPS + 1) };
        stale += u64::from(checked_read(&db, &raw, list, key).await);
        let before = cache.stats().hits;
        stale += u64::from(checked_read(&db, &raw, list, key).await);
        tail_hits += cache.stats().hits - before;
    }
    println!("reads={reads} hits={concurrent_hits} writes={writes} stale={stale} tail_hits={tail_hits}");
    assert_eq!(stale, 0, "stale reads");
    assert!(writes > 0 && reads > 0);
    assert!(tail_hits > 0, "nothing was served from the cache once the writers stopped");
}
