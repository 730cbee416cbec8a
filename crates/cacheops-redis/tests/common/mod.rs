//! Test harness shared by the integration tests: servers, namespaces, request builders.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cacheops_core::protocol::{
    Backend, ConjRef, ReadReply, ReadRequest, RenderedRow, Stamps, TableRead, TableWrite, WriteRequest, render_row,
};
use cacheops_core::{Conj, KeySpace, MemoryBackend, Row, Value};
use cacheops_redis::RedisBackend;

pub const STANDALONE_URL: &str = "redis://127.0.0.1:6379";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-unique token.
pub fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Standalone,
    Cluster,
}

/// One backend and one fresh namespace.
pub struct Env {
    pub kind: Kind,
    pub backend: Arc<dyn Backend>,
    pub redis: Option<RedisBackend>,
    pub ks: KeySpace,
}

/// A dependency of a read: a table and one conj of it (`&[]` = any row).
pub struct Dep<'a> {
    pub table: &'a str,
    pub terms: &'a [(&'a str, i64)],
}

pub fn dep<'a>(table: &'a str, terms: &'a [(&'a str, i64)]) -> Dep<'a> {
    Dep { table, terms }
}

pub fn conj(terms: &[(&str, i64)]) -> Conj {
    Conj::from_terms(terms.iter().map(|(c, v)| (c.to_string(), Value::Int(*v)))).expect("consistent conj")
}

pub fn row(terms: &[(&str, i64)]) -> RenderedRow {
    let r: Row = terms.iter().map(|(c, v)| (c.to_string(), Value::Int(*v))).collect();
    render_row(&r)
}

fn require_standalone() {
    if std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().expect("addr"), Duration::from_secs(1)).is_err() {
        let ci = std::env::var_os("CI").is_some();
        panic!(
            "Redis is required at 127.0.0.1:6379 for these tests (CI={ci}); start it (e.g. `redis-server --daemonize yes`)"
        );
    }
}

impl Env {
    pub async fn new(kind: Kind) -> Env {
        Self::with_prefix(kind, &unique()).await
    }

    pub async fn with_prefix(kind: Kind, prefix: &str) -> Env {
        let ks = KeySpace::new(&format!("t{prefix}")).expect("valid prefix");
        let (backend, redis): (Arc<dyn Backend>, Option<RedisBackend>) = match kind {
            Kind::Memory => (Arc::new(MemoryBackend::new(100_000)), None),
            Kind::Standalone => {
                require_standalone();
                let b = RedisBackend::builder()
                    .url(STANDALONE_URL)
                    .response_timeout(Duration::from_secs(10))
                    .build()
                    .await
                    .expect("connect to standalone Redis");
                (Arc::new(b.clone()), Some(b))
            }
            Kind::Cluster => {
                let nodes = cluster().nodes();
                let b = RedisBackend::builder()
                    .cluster(nodes)
                    .response_timeout(Duration::from_secs(10))
                    .retries(3)
                    .build()
                    .await
                    .expect("connect to test cluster");
                (Arc::new(b.clone()), Some(b))
            }
        };
        Env { kind, backend, redis, ks }
    }

    /// An environment on a given Redis backend (a server started by the test), fresh namespace.
    #[allow(dead_code)]
    pub fn with_backend(b: RedisBackend) -> Env {
        Env {
            kind: Kind::Standalone,
            backend: Arc::new(b.clone()),
            redis: Some(b),
            ks: KeySpace::new(&format!("t{}", unique())).expect("valid prefix"),
        }
    }

    /// The same backend, another namespace.
    pub fn sibling(&self) -> Env {
        Env {
            kind: self.kind,
            backend: self.backend.clone(),
            redis: self.redis.clone(),
            ks: KeySpace::new(&format!("t{}", unique())).expect("valid prefix"),
        }
    }

    pub fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    pub fn read_req(&self, value: &str, deps: &[Dep<'_>]) -> ReadRequest {
        self.read_req_ttl(value, deps, Duration::from_secs(130))
    }

    pub fn read_req_ttl(&self, value: &str, deps: &[Dep<'_>], conj_ttl: Duration) -> ReadRequest {
        let mut tables: Vec<TableRead> = Vec::new();
        for d in deps {
            let c = conj(d.terms);
            let cref = ConjRef { scheme: c.scheme(), key: self.ks.conj(d.table, &c) };
            let table_key = self.ks.table(d.table);
            match tables.iter_mut().find(|t| t.table_key == table_key) {
                Some(t) => t.conjs.push(cref),
                None => tables.push(TableRead {
                    epoch_key: self.ks.table_epoch(d.table),
                    seq_key: self.ks.table_seq(d.table),
                    table_key,
                    schemes_key: self.ks.schemes(d.table),
                    writers_key: self.ks.writers(d.table),
                    conjs: vec![cref],
                }),
            }
        }
        ReadRequest {
            // With the first table, as the engine places it.
            value_key: self.ks.value_of(deps.first().map(|d| d.table), value),
            epoch_key: self.ks.epoch(),
            seq_key: self.ks.seq(),
            tables: tables.into(),
            new_stamp: unique(),
            conj_ttl,
            max_schemes: 0,
        }
    }

    pub fn write_req(
        &self,
        writer: Option<&str>,
        table: &str,
        rows: Vec<RenderedRow>,
        table_level: bool,
        lease: Duration,
    ) -> WriteRequest {
        WriteRequest {
            writer: writer.map(str::to_owned),
            tables: vec![TableWrite {
                seq_key: self.ks.table_seq(table),
                table_key: self.ks.table(table),
                schemes_key: self.ks.schemes(table),
                writers_key: self.ks.writers(table),
                conj_prefix: self.ks.conj_prefix(table),
                rows,
                table_level,
            }],
            lease,
        }
    }

    /// Reads with a fresh stamp (a new request each time, as the engine does).
    pub async fn read(&self, value: &str, deps: &[Dep<'_>]) -> ReadReply {
        self.backend.read(&self.read_req(value, deps)).await.expect("read")
    }

    /// Read; on a miss store `data` with `ttl`; returns the read reply.
    pub async fn read_store(&self, value: &str, deps: &[Dep<'_>], data: &[u8], ttl: Duration) -> ReadReply {
        let req = self.read_req(value, deps);
        let reply = self.backend.read(&req).await.expect("read");
        if let ReadReply::Miss(stamps) = &reply {
            assert!(self.backend.store(&req, stamps, data, ttl).await.expect("store"), "store refused");
        }
        reply
    }

    pub async fn store(&self, req: &ReadRequest, stamps: &Stamps, data: &[u8], ttl: Duration) -> bool {
        self.backend.store(req, stamps, data, ttl).await.expect("store")
    }

    pub async fn pttl(&self, key: &str) -> i64 {
        let r = self.redis.as_ref().expect("redis backend");
        redis::cmd("PTTL").arg(key).query_async(&mut r.connection()).await.expect("PTTL")
    }

    /// `GET` (Redis only).
    pub async fn get_raw(&self, key: &str) -> Option<String> {
        let r = self.redis.as_ref().expect("redis backend");
        redis::cmd("GET").arg(key).query_async(&mut r.connection()).await.expect("GET")
    }

    /// `HGETALL` (Redis only).
    pub async fn hgetall(&self, key: &str) -> Vec<(String, String)> {
        let r = self.redis.as_ref().expect("redis backend");
        redis::cmd("HGETALL").arg(key).query_async(&mut r.connection()).await.expect("HGETALL")
    }

    pub async fn del(&self, key: &str) {
        let r = self.redis.as_ref().expect("redis backend");
        let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut r.connection()).await.expect("DEL");
    }
}

pub fn hit(reply: &ReadReply) -> Option<&[u8]> {
    match reply {
        ReadReply::Hit(d) => Some(d),
        _ => None,
    }
}

pub fn is_miss(reply: &ReadReply) -> bool {
    matches!(reply, ReadReply::Miss(_))
}

// ---------------------------------------------------------------------------------------------
// Redis servers started by the tests.

/// A free loopback port whose cluster-bus port (+10000) is free too.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let port = addr.port();
        if !(1024..=55_000).contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A `redis-server` child that cannot outlive this test process: it runs under a small shell
/// watchdog that kills it (and removes its directory) as soon as our pid is gone, so nothing
/// leaks even though statics are never dropped.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
}

pub fn spawn_server(extra: &[&str]) -> Server {
    spawn_server_on(free_port(), extra)
}

pub fn spawn_server_on(port: u16, extra: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!("cacheops-redis-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "''".into(),
        "--appendonly".into(),
        "no".into(),
        "--daemonize".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let script = format!(
        "redis-server {args} >'{dir}/log' 2>&1 & c=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.2; done; \
         kill $c 2>/dev/null; wait $c; rm -rf '{dir}'",
        args = args.join(" "),
        dir = dir.display(),
        parent = std::process::id(),
    );
    // The watchdog shell is deliberately not waited for: it ends with the redis-server it guards.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (is it installed?)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if redis_cli(port, &["PING"]).is_some_and(|o| o.trim() == "PONG") {
            break;
        }
        assert!(Instant::now() < deadline, "redis-server on port {port} did not start (see {}/log)", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { port, dir }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = redis_cli(self.port, &["SHUTDOWN", "NOSAVE"]);
    }
}

pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    redis_cli_auth(port, None, args)
}

/// `redis-cli` on `port`, authenticating with `password` when given.
pub fn redis_cli_auth(port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("redis-cli");
    cmd.arg("-p").arg(port.to_string());
    if let Some(p) = password {
        cmd.env("REDISCLI_AUTH", p);
    }
    let out = cmd.args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How many times the server on `port` has run `command` (`INFO commandstats`; 0 if never).
pub fn command_calls(port: u16, password: Option<&str>, command: &str) -> u64 {
    let info = redis_cli_auth(port, password, &["INFO", "commandstats"]).expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub struct Cluster {
    pub servers: Vec<Server>,
}

impl Cluster {
    pub fn nodes(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("redis://127.0.0.1:{}", s.port)).collect()
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The 3-master cluster shared by every test of this binary (started on first use).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(new_cluster)
}

/// A 3-master cluster of its own (for tests that count commands).
pub fn new_cluster() -> Cluster {
    {
        let servers: Vec<Server> = (0..3).map(|_| spawn_cluster_node()).collect();
        let addrs: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create").args(&addrs).args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = cmd.output().expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = servers
                .iter()
                .all(|s| redis_cli(s.port, &["CLUSTER", "INFO"]).is_some_and(|o| o.contains("cluster_state:ok")));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { servers }
    }
}

fn spawn_cluster_node() -> Server {
    // The config file lives in the node's own directory (created by spawn_server).
    spawn_server(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"])
}
