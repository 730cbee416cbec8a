//! Redis topologies started by the tests on loopback ports: TLS certificates made with
//! `openssl`, TLS servers, a Sentinel group (master, replica, three Sentinels) and a 3-master
//! cluster, plain or over TLS. Every process is killed when its handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, rand_u64};

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cacheops-{name}-{}-{:x}", std::process::id(), rand_u64()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
pub struct Certs {
    _dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl must be installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = TempDir::new("certs");
        let d = dir.0.clone();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca =
            vec!["req", "-x509", "-days", "2", "-subj", "/CN=cacheops test CA", "-keyout", "ca.key", "-out", "ca.crt"];
        ca.extend(ec);
        openssl(&d, &ca);
        std::fs::write(d.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n").expect("ext");
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n").expect("ext");
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=cacheops test client")] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let ext = format!("{name}.ext");
            let mut req = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
            req.extend(ec);
            openssl(&d, &req);
            openssl(
                &d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &crt,
                ],
            );
        }
        Certs {
            ca: d.join("ca.crt"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            _dir: dir,
        }
    }

    /// `redis-server` settings for TLS (clients must present a certificate signed by the CA).
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.server_cert.display().to_string(),
            "--tls-key-file".into(),
            self.server_key.display().to_string(),
            "--tls-ca-cert-file".into(),
            self.ca.display().to_string(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    /// `redis-cli` settings for TLS.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.ca.display().to_string(),
            "--cert".into(),
            self.client_cert.display().to_string(),
            "--key".into(),
            self.client_key.display().to_string(),
        ]
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).expect("ca")
    }

    pub fn client_pem(&self) -> (Vec<u8>, Vec<u8>) {
        (std::fs::read(&self.client_cert).expect("cert"), std::fs::read(&self.client_key).expect("key"))
    }
}

/// One `redis-server` (or Sentinel) process on a loopback port, killed on drop.
pub struct Node {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    cli_tls: Vec<String>,
}

impl Node {
    /// `redis-server <args>` on a free port (plain, or TLS only when `certs` is given).
    pub fn start(certs: Option<&Certs>, args: &[String]) -> Node {
        Self::start_on(free_port(), certs, args, None)
    }

    /// On `port`; `config`: a file to start from (Sentinels need one).
    pub fn start_on(port: u16, certs: Option<&Certs>, args: &[String], config: Option<&str>) -> Node {
        let dir = TempDir::new(&format!("node-{port}"));
        let mut cmd = Command::new("redis-server");
        if let Some(text) = config {
            let path = dir.0.join("node.conf");
            std::fs::write(&path, text).expect("config");
            cmd.arg(&path);
        }
        let port_s = port.to_string();
        match certs {
            Some(c) => {
                cmd.args(["--port", "0", "--tls-port", &port_s]).args(c.server_args());
            }
            None => {
                cmd.args(["--port", &port_s]);
            }
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .arg("--logfile")
            .arg(dir.0.join("log"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server must be installed (see .ci/run)");
        let node = Node { port, dir, child: Some(child), cli_tls: certs.map(Certs::cli_args).unwrap_or_default() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if node.cli(&["PING"]).trim() == "PONG" {
                return node;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not start: {}", node.log());
    }

    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_tls)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log")).unwrap_or_default()
    }

    /// Sends `sig` (`STOP`: frozen, connections accepted but never answered; `CONT`: thawed).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
        }
    }

    /// `SIGKILL`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The value of `field` in `INFO <section>`.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let text = self.cli(&["INFO", section]);
        text.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_owned()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// Waits until `cond` holds (checked every 50 ms), or panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const SERVICE: &str = "cacheops";

/// One master, one replica and three Sentinels monitoring them (quorum 2).
pub struct SentinelGroup {
    pub data: Vec<Node>,
    pub sentinels: Vec<Node>,
    tls: bool,
}

impl SentinelGroup {
    pub fn start(certs: Option<&Certs>) -> SentinelGroup {
        let fast_sync = ["--repl-diskless-sync-delay".to_string(), "0".to_string()];
        let master = Node::start(certs, &fast_sync);
        let mut replica_args = fast_sync.to_vec();
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), master.port.to_string()]);
        let replica = Node::start(certs, &replica_args);
        wait_until(Duration::from_secs(20), "the replica to sync", || {
            replica.info("replication", "master_link_status").as_deref() == Some("up")
        });
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let config = format!(
                "sentinel monitor {SERVICE} 127.0.0.1 {m} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                m = master.port
            );
            sentinels.push(Node::start_on(port, certs, &["--sentinel".into()], Some(&config)));
        }
        let group = SentinelGroup { data: vec![master, replica], sentinels, tls: certs.is_some() };
        wait_until(Duration::from_secs(30), "the Sentinels to see each other and the replica", || {
            group.sentinels.iter().all(|s| {
                let out = s.cli(&["SENTINEL", "MASTER", SERVICE]);
                let lines: Vec<&str> = out.lines().collect();
                let field = |name: &str| lines.iter().position(|l| *l == name).and_then(|i| lines.get(i + 1)).copied();
                field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
            })
        });
        group
    }

    /// `redis-sentinel://…/<service>/<db>` (`rediss-sentinel://` over TLS).
    pub fn url(&self, db: u8) -> String {
        let scheme = if self.tls { "rediss-sentinel" } else { "redis-sentinel" };
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("{scheme}://{}/{SERVICE}/{db}", hosts.join(","))
    }

    /// The master's port as the first Sentinel reports it.
    pub fn master_port(&self) -> u16 {
        let out = self.sentinels[0].cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok()).expect("master address")
    }

    pub fn node(&self, port: u16) -> &Node {
        self.data.iter().find(|n| n.port == port).expect("a node of the group")
    }

    /// Forces a failover and returns once every Sentinel reports the new master (the old master
    /// may still think it is one for a while: that is the point).
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let reply = self.sentinels[0].cli(&["SENTINEL", "FAILOVER", SERVICE]);
        assert_eq!(reply.trim(), "OK", "SENTINEL FAILOVER");
        wait_until(Duration::from_secs(30), "the Sentinels to switch the master", || {
            self.sentinels.iter().all(|s| {
                let out = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
                out.lines().nth(1).and_then(|p| p.trim().parse::<u16>().ok()).is_some_and(|p| p != old)
            })
        });
        self.master_port()
    }
}

/// A free loopback port whose cluster-bus port (+10000) is free too.
fn free_bus_port() -> u16 {
    for _ in 0..200 {
        let port = free_port();
        if (1024..=55_000).contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port with a free cluster-bus port");
}

/// A 3-master cluster (no replicas), plain or over TLS.
pub struct Cluster {
    pub nodes: Vec<Node>,
    tls: bool,
}

impl Cluster {
    pub fn start(certs: Option<&Certs>) -> Cluster {
        Self::start_with(certs, 0)
    }

    /// Three masters with one replica each.
    pub fn start_replicated() -> Cluster {
        Self::start_with(None, 1)
    }

    fn start_with(certs: Option<&Certs>, replicas: usize) -> Cluster {
        let mut args: Vec<String> =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        if certs.is_some() {
            args.extend(["--tls-cluster".to_string(), "yes".to_string()]);
        }
        let nodes: Vec<Node> =
            (0..3 * (1 + replicas)).map(|_| Node::start_on(free_bus_port(), certs, &args, None)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(certs.map(Certs::cli_args).unwrap_or_default())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Cluster { nodes, tls: certs.is_some() };
        wait_until(Duration::from_secs(30), "cluster_state:ok", || {
            cluster.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        if replicas > 0 {
            wait_until(Duration::from_secs(30), "every replica to sync and the slot map to list it", || {
                let synced = cluster
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.info("replication", "role").as_deref() == Some("slave")
                            && n.info("replication", "master_link_status").as_deref() == Some("up")
                    })
                    .count();
                let listed =
                    cluster.nodes[0].cli(&["CLUSTER", "NODES"]).lines().filter(|l| l.contains("slave")).count();
                synced == 3 * replicas && listed == 3 * replicas
            });
        }
        cluster
    }

    /// The replica of the master on `master_port` (from `CLUSTER NODES`).
    pub fn replica_of(&self, master_port: u16) -> Option<&Node> {
        let out = self.nodes.first()?.cli(&["CLUSTER", "NODES"]);
        let port_of = |addr: &str| addr.split('@').next()?.rsplit(':').next()?.parse::<u16>().ok();
        let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        let master_id = lines.iter().find(|f| f.len() > 2 && port_of(f[1]) == Some(master_port))?[0];
        let replica = lines.iter().find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == master_id)?;
        let port = port_of(replica[1])?;
        self.nodes.iter().find(|n| n.port == port)
    }

    /// The port of the master serving `slot` (from `CLUSTER NODES`).
    pub fn owner(&self, slot: u16) -> Option<u16> {
        let out = self.nodes.first()?.cli(&["CLUSTER", "NODES"]);
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let port = fields[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            for range in &fields[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && (a..=b).contains(&slot)
                {
                    return Some(port);
                }
            }
        }
        None
    }

    /// Keys per node (`INFO keyspace`, db 0), in the order of `nodes`.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                n.info("keyspace", "db0")
                    .and_then(|v| {
                        v.strip_prefix("keys=").and_then(|r| r.split(',').next()).and_then(|k| k.parse().ok())
                    })
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Commands run per node (`INFO commandstats`, all calls), in the order of `nodes`.
    pub fn commands_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                n.cli(&["INFO", "commandstats"])
                    .lines()
                    .filter(|l| l.starts_with("cmdstat_"))
                    .filter_map(|l| l.split_once("calls=").and_then(|(_, r)| r.split(',').next()?.parse::<u64>().ok()))
                    .sum()
            })
            .collect()
    }

    /// `redis-cluster://…` (`rediss-cluster://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss-cluster" } else { "redis-cluster" };
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("{scheme}://{}", hosts.join(","))
    }
}
