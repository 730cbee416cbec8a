//! Direct connections on a Redis Cluster: one [`DirectPool`] per master, found from the slot
//! map (`CLUSTER SLOTS`), so that a hit check is one `MGET` on the node that holds its slot —
//! no Lua, no hand-off to the cluster connection's driver. Anything unexpected (a `MOVED` or
//! `ASK` while slots migrate, `CLUSTERDOWN`, an unknown slot) drops the map, and the caller lets
//! `read.lua` decide over the cluster connection (which follows redirections); the map is read
//! again on a later call, at most every [`REFRESH_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

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
}

/// The masters' direct pools, by slot.
pub(crate) struct ClusterDirect {
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

impl std::fmt::Debug for ClusterDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDirect").field("max", &self.max).finish()
    }
}

/// `CLUSTER SLOTS` → the masters' ranges (`None`: a reply of another shape).
pub(crate) fn parse_slots(reply: &Value) -> Option<Vec<Range>> {
    let Value::Array(entries) = reply else { return None };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else { return None };
        let int = |v: &Value| match v {
            Value::Int(i) => u16::try_from(*i).ok(),
            _ => None,
        };
        let start = int(parts.first()?)?;
        let end = int(parts.get(1)?)?;
        let Value::Array(master) = parts.get(2)? else { return None };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = int(master.get(1)?)?;
        if start > end || host.is_empty() {
            return None;
        }
        out.push(Range { start, end, host, port });
    }
    Some(out)
}

impl ClusterDirect {
    pub(crate) fn new(
        username: Option<String>,
        password: Option<String>,
        max: usize,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        ClusterDirect {
            username,
            password,
            max,
            connect_timeout,
            response_timeout,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pool of the master serving `slot`, if the map knows it.
    pub(crate) fn pool_for(&self, slot: u16) -> Option<Arc<DirectPool>> {
        let state = self.lock();
        state.ranges.iter().find(|(r, _)| r.start <= slot && slot <= r.end).map(|(_, p)| p.clone())
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
        let mut pools = std::mem::take(&mut state.pools);
        let mut installed = Vec::with_capacity(ranges.len());
        let mut kept = HashMap::new();
        for r in ranges {
            let addr = format!("{}:{}", r.host, r.port);
            let pool = match kept.get(&addr).or_else(|| pools.get(&addr)) {
                Some(p) => Arc::clone(p),
                None => Arc::new(DirectPool::new(
                    Some(DirectTarget::tcp(r.host.clone(), r.port, self.username.clone(), self.password.clone())),
                    self.max,
                    self.connect_timeout,
                    self.response_timeout,
                )),
            };
            kept.insert(addr.clone(), pool.clone());
            pools.remove(&addr);
            installed.push((r, pool));
        }
        state.ranges = installed;
        state.pools = kept;
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

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slots_replies_are_parsed_and_odd_ones_refused() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk("10.0.0.2"), Value::Int(7001)]),
            ]),
        ]);
        let ranges = parse_slots(&reply).unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0], Range { start: 0, end: 5460, host: "127.0.0.1".into(), port: 7000 });
        assert_eq!(ranges[1].port, 7001);
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(9),
                Value::Int(1),
                Value::Array(vec![bulk("h"), Value::Int(1)]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(1),
                Value::Array(vec![bulk(""), Value::Int(1)]),
            ])]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(99999), Value::Array(vec![bulk("h")])])]),
        ] {
            assert_eq!(parse_slots(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pools_follow_the_map() {
        let d = ClusterDirect::new(None, None, 2, Duration::from_secs(1), Duration::from_secs(1));
        assert!(d.pool_for(0).is_none() && d.wants_refresh());
        let r = |start, end, port| Range { start, end, host: "127.0.0.1".into(), port };
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
