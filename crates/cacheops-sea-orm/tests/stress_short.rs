//! A short stale-read stress test on PostgreSQL + Redis (the long, multi-process one is
//! `cargo xtask stress`): writers and readers run concurrently through `CachedConnection`, and
//! every read is checked against the committed state read straight from PostgreSQL right
//! before it began. A read must never return a row version older than that state, nor a group
//! list lacking a row that was in the group then and has not been written since.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use common::{REDIS, env_with};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, IntoActiveModel, QueryFilter, QuerySelect, Statement, TransactionTrait,
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
    let missing: Vec<i32> =
        before.iter().filter(|(id, (_, g))| *g == key && !got.iter().any(|m| m.id == **id)).map(|(id, _)| *id).collect();
    if !missing.is_empty() {
        let now = snapshot(raw).await;
        stale |= missing.iter().any(|id| now[id].0 == before[id].0);
    }
    stale
}

/// A write: ActiveModel save in a transaction (row locked), or an autocommit `UPDATE … RETURNING`.
async fn write(db: &CachedConnection, i: u64, id: i32, grp: i32) {
    if i % 2 == 0 {
        let txn = db.begin().await.expect("begin");
        let m = item::Entity::find_by_id(id).lock_exclusive().one(&txn).await.expect("lock").expect("row");
        let version = m.version + 1;
        let mut am = m.into_active_model();
        am.version = Set(version);
        am.grp = Set(grp);
        am.update(&txn).await.expect("update");
        txn.commit().await.expect("commit");
    } else {
        db.query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE item SET version = version + 1, grp = $2 WHERE id = $1 RETURNING version",
            [id.into(), grp.into()],
        ))
        .await
        .expect("update")
        .expect("row");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_under_concurrent_writes() {
    stress(false).await;
}

/// The same with a trigger on the table: every write is a namespace-level lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_read_under_concurrent_writes_to_a_table_with_a_trigger() {
    stress(true).await;
}

async fn stress(trigger: bool) {
    let profiles = Profiles::builder()
        .profile("item", Profile::builder().ops(["all"]).timeout(Duration::from_secs(60)))
        .build()
        .unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(format!("sea-stress-{}-{:x}", std::process::id(), nanos & 0xffff_ffff))
        .degrade(false)
        .lease(Duration::from_secs(5))
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
                write(&db, n, rng.below(ROWS) + 1, rng.below(GROUPS)).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        }));
    }
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

    // Quiescent tail: every read twice; the second may be served from the cache.
    let mut tail_hits = 0;
    for key in 0..GROUPS + ROWS {
        let (list, key) = if key < GROUPS { (true, key) } else { (false, key - GROUPS + 1) };
        stale += u64::from(checked_read(&db, &raw, list, key).await);
        let before = cache.stats().hits;
        stale += u64::from(checked_read(&db, &raw, list, key).await);
        tail_hits += cache.stats().hits - before;
    }
    println!("reads={reads} hits={concurrent_hits} writes={writes} stale={stale} tail_hits={tail_hits}");
    let admin = sea_orm::Database::connect(common::PG).await.unwrap();
    let _ = admin.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {} CASCADE", env.schema)).await;
    assert_eq!(stale, 0, "stale reads");
    assert!(writes > 0 && reads > 0);
    assert!(tail_hits > 0, "nothing was served from the cache once the writers stopped");
}
