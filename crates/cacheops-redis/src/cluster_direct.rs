//! The slot map of a Redis Cluster (`CLUSTER NODES`): each range's master and how many replicas
//! it has (the writes of the protocol wait for them), and direct connections: one
//! [`DirectPool`] per master, so that a hit check is one `MGET` on the node that holds its slot —
//! no Lua, no hand-off to the cluster connection's driver. Anything unexpected (a `MOVED` or
//! `ASK` while slots migrate, `CLUSTERDOWN`, an unknown slot) drops the map, and the caller lets
//! `read.lua` decide over the cluster connection (which follows redirections); the map is read
//! again on a later call, at most every [`REFRESH_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::direct::{DirectPool, DirectTarget};

/// Least time between two reads of the slot map.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// One slot range and the master serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: u16,
    pub(crate) end: u16,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Replicas of the master, as the map lists them.
    pub(crate) replicas: u64,
}

/// The masters' direct pools, by slot.
pub(crate) struct ClusterDirect {
    /// Whether hit checks use direct connections (not over TLS, not with 0 connections).
    pools: bool,
    username: Option<String>,
    password: Option<String>,
    max: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ranges: Vec<(Range, Arc<DirectPool>)>,
    /// Pools by `host:port`, kept across map refreshes (their open connections stay usable).
    pools: HashMap<String, Arc<DirectPool>>,
    last_refresh: Option<Instant>,
}

impl State {
    /// The range holding `slot`, and its master's pool.
    fn range_of(&self, slot: u16) -> Option<&(Range, Arc<DirectPool>)> {
        self.ranges.iter().find(|(r, _)| r.start <= slot && slot <= r.end)
    }
}

impl std::fmt::Debug for ClusterDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDirect").field("max", &self.max).finish()
    }
}

/// `CLUSTER NODES` → the masters' ranges, each with the number of replicas the cluster knows for
/// its master — failed ones included: `CLUSTER SLOTS` leaves out a replica that has not yet
/// received data (its offset is 0), which would make a write not wait for it. `None`: a reply
/// of another shape.
pub(crate) fn parse_nodes(text: &str) -> Option<Vec<Range>> {
    struct Master<'a> {
        id: &'a str,
        host: String,
        port: u16,
        slots: Vec<(u16, u16)>,
    }
    let mut masters = Vec::new();
    let mut replicas_of: HashMap<&str, u64> = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return None;
        }
        let flags = f[2];
        if flags.contains("slave") || flags.contains("replica") {
            *replicas_of.entry(f[3]).or_default() += 1;
            continue;
        }
        if !flags.contains("master") {
            continue;
        }
        let addr = f[1].split([',', '@']).next()?;
        let (host, port) = addr.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let mut slots = Vec::new();
        for range in &f[8..] {
            if range.starts_with('[') {
                continue; // a slot being migrated or imported
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (a, b) = (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?);
            if a > b {
                return None;
            }
            slots.push((a, b));
        }
        masters.push(Master { id: f[0], host: host.to_owned(), port, slots });
    }
    let mut out = Vec::new();
    for m in masters {
        let replicas = replicas_of.get(m.id).copied().unwrap_or(0);
        for (start, end) in m.slots {
            out.push(Range { start, end, host: m.host.clone(), port: m.port, replicas });
        }
    }
    Some(out)
}

impl ClusterDirect {
    pub(crate) fn new(
        pools: bool,
        username: Option<String>,
        password: Option<String>,
        max: usize,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        ClusterDirect {
            pools,
            username,
            password,
            max,
            connect_timeout,
            response_timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// How many replicas the master of `slot` has, if the map knows it.
    pub(crate) fn replicas_for(&self, slot: u16) -> Option<u64> {
        self.lock().range_of(slot).map(|(r, _)| r.replicas)
    }

    /// Whether hit checks use direct connections.
    pub(crate) fn has_pools(&self) -> bool {
        self.pools
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pool of the master serving `slot`, if the map knows it.
    pub(crate) fn pool_for(&self, slot: u16) -> Option<Arc<DirectPool>> {
        if !self.pools {
            return None;
        }
        self.lock().range_of(slot).map(|(_, p)| p.clone())
    }

    /// Whether the map should be read (now empty or dropped, and not read recently).
    pub(crate) fn wants_refresh(&self) -> bool {
        let state = self.lock();
        state.ranges.is_empty() && state.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
    }

    /// Notes an attempt to read the map (so that failures are not retried at once).
    pub(crate) fn refreshing(&self) {
        self.lock().last_refresh = Some(Instant::now());
    }

    /// Installs a new map; pools of masters no longer in it are dropped.
    pub(crate) fn install(&self, ranges: Vec<Range>) {
        let mut state = self.lock();
        let old = std::mem::take(&mut state.pools);
        let mut kept: HashMap<String, Arc<DirectPool>> = HashMap::new();
        let mut installed = Vec::with_capacity(ranges.len());
        for r in ranges {
            let addr = format!("{}:{}", r.host, r.port);
            let pool =
                kept.entry(addr).or_insert_with_key(|addr| old.get(addr).cloned().unwrap_or_else(|| self.pool(&r)));
            let pool = Arc::clone(pool);
            installed.push((r, pool));
        }
        state.ranges = installed;
        state.pools = kept;
    }

    /// A new (empty) pool for the master of `r`.
    fn pool(&self, r: &Range) -> Arc<DirectPool> {
        let target = DirectTarget::tcp(r.host.clone(), r.port, self.username.clone(), self.password.clone());
        Arc::new(DirectPool::new(Some(target), self.max, self.connect_timeout, self.response_timeout))
    }

    /// Drops the map (a redirection or an error): hit checks use the scripts until it is read
    /// again.
    pub(crate) fn invalidate(&self) {
        self.lock().ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_replies_count_every_replica() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 slave,fail a1 0 0 1 disconnected
f6 127.0.0.1:7005@17005 slave c3 0 0 3 connected
";
        let ranges = parse_nodes(text).unwrap();
        let of = |slot: u16| ranges.iter().find(|r| r.start <= slot && slot <= r.end).map(|r| (r.port, r.replicas));
        assert_eq!(of(0), Some((7000, 2)), "a failed replica still counts");
        assert_eq!(of(6000), Some((7001, 0)));
        assert_eq!(of(16383), Some((7002, 1)));
        assert_eq!(parse_nodes("garbage"), None);
    }

    #[test]
    fn pools_follow_the_map() {
        let d = ClusterDirect::new(true, None, None, 2, Duration::from_secs(1), Duration::from_secs(1));
        assert!(d.pool_for(0).is_none() && d.wants_refresh());
        let r = |start, end, port| Range { start, end, host: "127.0.0.1".into(), port, replicas: 0 };
        d.install(vec![r(0, 100, 1), r(101, 16383, 2)]);
        let a = d.pool_for(50).unwrap();
        let b = d.pool_for(16383).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        // A new map keeps the pool of a master that is still in it.
        d.install(vec![r(0, 16383, 1)]);
        assert!(Arc::ptr_eq(&a, &d.pool_for(16383).unwrap()));
        d.invalidate();
        assert!(d.pool_for(50).is_none());
        d.refreshing();
        assert!(!d.wants_refresh(), "not read again at once");
    }
}
