//! Test support: Redis servers on loopback, a tiny versioned "database", helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod history;
pub mod topology;

use cacheops::{Cache, CacheBuilder, ColumnClass, Conj, Dependencies, Dnf, Row, TableSchema, Value};

/// A cache builder that declares the column classes of the tables these tests use (the raw API
/// has no database catalog: undeclared tables are table-level only).
pub fn builder() -> CacheBuilder {
    let int = ColumnClass::Integer;
    let text = ColumnClass::Text { fold: cacheops::TextFold::Exact, max_chars: None };
    Cache::builder()
        .table_schema(TableSchema::new("post").column("id", int).column("category_id", int).column("title", text))
        .table_schema(TableSchema::new("category").column("id", int))
        .table_schema(TableSchema::new("tag").column("id", int).column("post_id", int).column("tag_id", int))
}

/// The shared Redis of the machine (and CI). Tests use unique prefixes, never FLUSHALL.
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

/// Fails (never skips) when the shared Redis is not reachable.
pub fn require_shared_redis() {
    let ok = std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(1)).is_ok();
    assert!(ok, "Redis is not running on 127.0.0.1:6379 (CI={:?}); start it (see .ci/run)", std::env::var("CI").ok());
}

/// A unique prefix per test.
pub fn unique_prefix(name: &str) -> String {
    format!("t-{name}-{:x}", rand_u64())
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    h.finish()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A redis-server of our own, killed on drop.
pub struct OwnRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl OwnRedis {
    pub fn start(extra: &[&str]) -> OwnRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cacheops-redis-{port}-{:x}", rand_u64()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let mut r = OwnRedis { port, dir, child: None, extra: extra.iter().map(|s| s.to_string()).collect() };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server must be installed (see .ci/run)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis_cli(self.port, &["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Freezes the server: connections stay open, commands time out.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// Thaws a frozen server.
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// Stops the server (connection refused afterwards), keeping its data on disk if it persists.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = redis_cli(self.port, &["SHUTDOWN", "SAVE"]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server (SIGKILL: nothing is saved) and starts it again on the same port and
    /// directory: it comes back with what its last snapshot (`SAVE`) or AOF held.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "KILL");
            let _ = c.wait();
        }
        self.spawn();
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Dependencies of `SELECT … FROM table WHERE col = val`.
pub fn deps_eq(table: &str, col: &str, val: i64) -> Dependencies {
    let mut d = Dependencies::new();
    d.add(table, Dnf::from_conjs([Conj::from_terms([(col, Value::Int(val))]).unwrap()], 64), 64);
    d
}

/// Dependencies on a whole table.
pub fn deps_table(table: &str) -> Dependencies {
    let mut d = Dependencies::new();
    d.add(table, Dnf::any(), 64);
    d
}

pub fn row(pairs: &[(&str, i64)]) -> Row {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::Int(*v))).collect()
}

/// A tiny "database" for the fault tests: row id → category_id.
#[derive(Clone, Default)]
pub struct CategoryDb(pub std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, i64>>>);

impl CategoryDb {
    /// The ids in category `c`, sorted, joined by commas (the "query result").
    pub fn category(&self, c: i64) -> String {
        let rows = self.0.lock().unwrap();
        let mut v: Vec<String> = rows.iter().filter(|(_, cat)| **cat == c).map(|(id, _)| id.to_string()).collect();
        v.sort();
        v.join(",")
    }

    /// The rows a move of `id` to `cat` changes: the new state and the old one, if any.
    pub fn rows_of_move(&self, id: i64, cat: i64) -> Vec<Row> {
        let mut rows = vec![row(&[("id", id), ("category_id", cat)])];
        if let Some(old) = self.0.lock().unwrap().get(&id) {
            rows.push(row(&[("id", id), ("category_id", *old)]));
        }
        rows
    }
}

/// Reads category `cat` of `db` through `cache` (degrade mode: errors never surface); returns
/// the value and whether it was a hit.
pub async fn read_category(cache: &Cache, db: &CategoryDb, q: &cacheops::Query, cat: i64) -> (String, bool) {
    match cache.lookup(q).await.expect("degrade mode never surfaces read errors") {
        cacheops::Lookup::Hit(d) => (String::from_utf8(d).unwrap(), true),
        cacheops::Lookup::Miss(t) => {
            let v = db.category(cat);
            let _ = cache.store(t, v.as_bytes()).await;
            (v, false)
        }
        cacheops::Lookup::Bypass(_) => (db.category(cat), false),
    }
}
