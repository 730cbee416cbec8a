//! Redis topologies of our own for the stress run and the benchmark: a 3-master cluster, or a
//! Sentinel group (master, replica, three Sentinels), on free loopback ports; and what each
//! node holds and ran (keys, commands), to show how the load spreads.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::redis_server::{OwnRedis, free_port};

type Res<T> = Result<T, String>;

pub const SERVICE: &str = "xtask";

/// Which Redis a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The shared server (or the fault's own one).
    Standalone,
    /// Three masters of our own.
    Cluster,
    /// A master, a replica and three Sentinels of our own.
    Sentinel,
}

impl Topology {
    pub fn parse(s: &str) -> Res<Topology> {
        match s {
            "standalone" => Ok(Topology::Standalone),
            "cluster" => Ok(Topology::Cluster),
            "sentinel" => Ok(Topology::Sentinel),
            other => Err(format!("unknown topology {other:?} (standalone, cluster, sentinel)")),
        }
    }
}

/// The processes of a cluster or a Sentinel group (killed on drop).
pub struct Group {
    pub data: Vec<OwnRedis>,
    pub sentinels: Vec<OwnRedis>,
}

fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Res<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A free port whose cluster-bus port (+10000) is free too.
fn free_bus_port() -> Res<u16> {
    for _ in 0..200 {
        let port = free_port()?;
        if (1024..=55_000).contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port with a free cluster-bus port".into())
}

impl Group {
    pub fn cluster() -> Res<Group> {
        let args =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"];
        let data = (0..3).map(|_| OwnRedis::start_on(free_bus_port()?, &args, None)).collect::<Res<Vec<_>>>()?;
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(data.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
        if !out.status.success() {
            return Err(format!("cluster create: {}", String::from_utf8_lossy(&out.stderr)));
        }
        wait_until(Duration::from_secs(30), "cluster_state:ok", || {
            data.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        })?;
        Ok(Group { data, sentinels: Vec::new() })
    }

    pub fn sentinel() -> Res<Group> {
        let fast = ["--repl-diskless-sync-delay", "0"];
        let master = OwnRedis::start(&fast)?;
        let port = master.port.to_string();
        let replica = OwnRedis::start(&["--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", &port])?;
        wait_until(Duration::from_secs(20), "the replica to sync", || {
            replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
        })?;
        let config = format!(
            "sentinel monitor {SERVICE} 127.0.0.1 {port} 2\nsentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 5000\n"
        );
        let sentinels = (0..3)
            .map(|_| OwnRedis::start_on(free_port()?, &["--sentinel"], Some(&config)))
            .collect::<Res<Vec<_>>>()?;
        wait_until(Duration::from_secs(30), "the Sentinels to see each other and the replica", || {
            sentinels.iter().all(|s| {
                let out = s.cli(&["SENTINEL", "MASTER", SERVICE]);
                let lines: Vec<&str> = out.lines().collect();
                let field = |name: &str| lines.iter().position(|l| *l == name).and_then(|i| lines.get(i + 1)).copied();
                field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
            })
        })?;
        Ok(Group { data: vec![master, replica], sentinels })
    }

    pub fn url(&self) -> String {
        if self.sentinels.is_empty() {
            let hosts: Vec<String> = self.data.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
            format!("redis-cluster://{}", hosts.join(","))
        } else {
            let hosts: Vec<String> = self.sentinels.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
            format!("redis-sentinel://{}/{SERVICE}/0", hosts.join(","))
        }
    }

    fn master_port(&self) -> Option<u16> {
        let out = self.sentinels.first()?.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// `SENTINEL FAILOVER`, returning once every Sentinel names the new master.
    pub fn failover(&self) -> Res<(u16, u16)> {
        let old = self.master_port().ok_or("no master known to the Sentinels")?;
        let sentinel = self.sentinels.first().ok_or("not a Sentinel group")?;
        let reply = sentinel.cli(&["SENTINEL", "FAILOVER", SERVICE]);
        if reply.trim() != "OK" {
            return Err(format!("SENTINEL FAILOVER answered {reply:?}"));
        }
        wait_until(Duration::from_secs(30), "the Sentinels to switch the master", || {
            self.sentinels.iter().all(|s| {
                let out = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
                out.lines().nth(1).and_then(|p| p.trim().parse::<u16>().ok()).is_some_and(|p| p != old)
            })
        })?;
        Ok((old, self.master_port().unwrap_or(0)))
    }

    /// Per data node: its port, role, keys and commands run (`INFO commandstats`, all calls).
    pub fn node_report(&self) -> Vec<NodeReport> {
        self.data
            .iter()
            .map(|n| {
                let keyspace = n.cli(&["INFO", "keyspace"]);
                let keys = keyspace
                    .lines()
                    .filter_map(|l| l.split_once(":keys=").and_then(|(_, r)| r.split(',').next()?.parse::<u64>().ok()))
                    .sum();
                let stats = n.cli(&["INFO", "commandstats"]);
                let commands = stats
                    .lines()
                    .filter(|l| l.starts_with("cmdstat_"))
                    .filter_map(|l| l.split_once("calls=").and_then(|(_, r)| r.split(',').next()?.parse::<u64>().ok()))
                    .sum();
                let role = n.cli(&["ROLE"]).lines().next().unwrap_or("?").to_owned();
                NodeReport { port: n.port, role, keys, commands }
            })
            .collect()
    }
}

/// What one data node holds and ran.
pub struct NodeReport {
    pub port: u16,
    pub role: String,
    pub keys: u64,
    pub commands: u64,
}

/// Prints the per-node report with each node's share.
pub fn print_report(reports: &[NodeReport]) {
    let keys: u64 = reports.iter().map(|r| r.keys).sum::<u64>().max(1);
    let commands: u64 = reports.iter().map(|r| r.commands).sum::<u64>().max(1);
    for r in reports {
        println!(
            "# node 127.0.0.1:{} ({}): keys={} ({:.0}%) commands={} ({:.0}%)",
            r.port,
            r.role,
            r.keys,
            r.keys as f64 * 100.0 / keys as f64,
            r.commands,
            r.commands as f64 * 100.0 / commands as f64
        );
    }
}
