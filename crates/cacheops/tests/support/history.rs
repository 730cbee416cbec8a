//! A tiny versioned "database" with a commit history, and the writer and reader tasks of the
//! stress tests: every read is checked against the history. A read must never return data older
//! than the newest commit that affected its query before the read began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cacheops::{Cache, Lookup, TableChange};

use super::{deps_eq, row};

pub const ROWS: i64 = 6;
pub const CATEGORIES: i64 = 3;

#[derive(Default)]
pub struct DbState {
    /// id → (category, version)
    rows: HashMap<i64, (i64, u64)>,
    /// category → commit sequence numbers of the commits that changed its result
    history: HashMap<i64, Vec<u64>>,
}

#[derive(Clone, Default)]
pub struct Db {
    /// The table it stands for (`post` by default).
    pub table: Arc<str>,
    state: Arc<Mutex<DbState>>,
    /// The commit sequence, shared by the tables of one database.
    pub seq: Arc<AtomicU64>,
    /// Row locks, held from the pre-image read to the commit (`SELECT … FOR UPDATE`).
    row_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
}

impl Db {
    /// The newest commit affecting `cat` with sequence ≤ `upto`.
    pub fn newest_commit(&self, cat: i64, upto: u64) -> u64 {
        let g = self.state.lock().unwrap();
        g.history.get(&cat).and_then(|h| h.iter().rev().find(|s| **s <= upto).copied()).unwrap_or(0)
    }

    pub fn new() -> Db {
        Db::table("post", Arc::default())
    }

    /// Table `name` of a database whose commits are numbered by `seq`.
    pub fn table(name: &str, seq: Arc<AtomicU64>) -> Db {
        Db {
            table: name.into(),
            seq,
            row_locks: Arc::new((0..ROWS).map(|_| tokio::sync::Mutex::new(())).collect()),
            state: Arc::default(),
        }
    }
}

/// How a write ended when it did not complete.
#[derive(Debug)]
pub enum WriteFailure {
    /// Refused before its commit: the database did not change.
    Refused(cacheops::Error),
    /// Committed, but its lease could not be finished (the invalidation is replayed).
    AfterCommit(cacheops::Error),
}

/// Moves row `id` to category `new_cat` the way an integration does: lease, re-mark, commit,
/// finish.
pub async fn write_once(cache: &Cache, db: &Db, id: i64, new_cat: i64) -> Result<(), WriteFailure> {
    let _row_lock = db.row_locks[(id - 1) as usize].lock().await;
    let old = db.state.lock().unwrap().rows.get(&id).copied();
    let mut lease = cache.write_lease();
    let mut rows = vec![row(&[("id", id), ("category_id", new_cat)])];
    if let Some((old_cat, _)) = old {
        rows.push(row(&[("id", id), ("category_id", old_cat)]));
    }
    lease.mark(TableChange::rows(&*db.table, rows)).await.map_err(WriteFailure::Refused)?;
    tokio::task::yield_now().await;
    lease.before_commit().await.map_err(WriteFailure::Refused)?;
    {
        // COMMIT
        let mut g = db.state.lock().unwrap();
        let seq = db.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (old_cat, ver) = g.rows.get(&id).copied().unwrap_or((0, 0));
        g.rows.insert(id, (new_cat, ver + 1));
        for c in [old_cat, new_cat] {
            g.history.entry(c).or_default().push(seq);
        }
    }
    drop(_row_lock);
    tokio::task::yield_now().await;
    lease.finish().await.map_err(WriteFailure::AfterCommit)
}

/// The row and category of a writer's `i`-th write.
pub fn write_target(salt: u64, i: usize) -> (i64, i64) {
    let id = ((salt as usize + i * 7) % ROWS as usize) as i64 + 1;
    let new_cat = ((salt as usize + i * 3) % CATEGORIES as usize) as i64 + 1;
    (id, new_cat)
}

pub async fn writer(cache: Cache, db: Db, n: usize, salt: u64) {
    for i in 0..n {
        let (id, new_cat) = write_target(salt, i);
        write_once(&cache, &db, id, new_cat).await.unwrap();
        // Reads outnumber writes in real life; give readers room to hit between writes.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One read of category `cat` of every table of `dbs` at once (a join when there are several):
/// (hit, stale).
pub async fn read_join(cache: &Cache, dbs: &[&Db], cat: i64) -> (bool, bool) {
    let mut deps = cacheops::Dependencies::new();
    let mut identity = format!("cat{cat}");
    for db in dbs {
        deps.extend(&deps_eq(&db.table, "category_id", cat), 64);
        identity.push_str(&format!(" {}", db.table));
    }
    let Some(first) = dbs.first() else { return (false, false) };
    let began = first.seq.load(Ordering::SeqCst);
    let q = cache.query(identity.as_bytes(), deps);
    // The value: the commit sequence number the snapshot reflects.
    let (got, hit) = match cache.lookup(&q).await.unwrap() {
        Lookup::Hit(d) => (String::from_utf8(d).unwrap().parse::<u64>().unwrap(), true),
        Lookup::Miss(t) => {
            let snap = snapshot(dbs);
            tokio::task::yield_now().await;
            cache.store(t, snap.to_string().as_bytes()).await.unwrap();
            (snap, false)
        }
        Lookup::Bypass(_) => (snapshot(dbs), false),
    };
    (hit, dbs.iter().any(|db| got < db.newest_commit(cat, began)))
}

/// A consistent read of several tables (no commit in progress on any of them): the commit
/// sequence number it reflects. Locks are taken in the order given (always the same).
fn snapshot(dbs: &[&Db]) -> u64 {
    let _guards: Vec<_> = dbs.iter().map(|d| d.state.lock().unwrap()).collect();
    dbs.first().map_or(0, |d| d.seq.load(Ordering::SeqCst))
}

/// One read of category `cat`: (hit, stale).
pub async fn read_once(cache: &Cache, db: &Db, cat: i64) -> (bool, bool) {
    read_join(cache, &[db], cat).await
}

pub async fn reader(cache: Cache, db: Db, n: usize, salt: u64) -> (u64, u64, u64) {
    let (mut reads, mut hits, mut stale) = (0, 0, 0);
    for i in 0..n {
        let cat = ((salt as usize + i) % CATEGORIES as usize) as i64 + 1;
        let (hit, was_stale) = read_once(&cache, &db, cat).await;
        reads += 1;
        hits += u64::from(hit);
        stale += u64::from(was_stale);
    }
    (reads, hits, stale)
}
