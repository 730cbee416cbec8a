//! [`RedisBackend`]: the stamp protocol over Redis, one Lua script call per step.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cacheops_core::protocol::{
    Backend, BackendError, BypassReason, HEADER_END, LockAttempt, ReadReply, ReadRequest, Stamps, TableWrite,
    WriteRequest,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, ScriptInvocation, Value};

use crate::builder::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisBackendBuilder};
use crate::cluster_direct::{ClusterDirect, parse_slots};
use crate::direct::{DirectPool, Reply};
use crate::error::RedisBackendError;
use crate::lock::{WaitPool, WaitSource};
use crate::scripts::SCRIPTS;
use crate::sentinel::SentinelConnection;
use crate::slot::{check_same_slot, key_slot};

/// A direct command's reply and the server's `run_id` when the connection learned it.
type DirectReply = Result<(Reply, Option<Arc<str>>), RedisBackendError>;

/// A connection to Redis: standalone (reconnecting [`ConnectionManager`]), the master of a
/// Sentinel group, or a Redis Cluster.
///
/// Cheap to clone (clones share the underlying connection). It implements
/// [`redis::aio::ConnectionLike`], so any redis-rs command can be sent through it.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// One server (or a proxy), reconnecting on failure.
    Standalone(ConnectionManager),
    /// A Redis Cluster, routed by key slot.
    Cluster(ClusterConnection),
    /// The current master of a Sentinel-monitored group (found again after a failover).
    Sentinel(SentinelConnection),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConnection::Standalone(_) => f.write_str("RedisConnection::Standalone"),
            RedisConnection::Cluster(_) => f.write_str("RedisConnection::Cluster"),
            RedisConnection::Sentinel(s) => write!(f, "RedisConnection::Sentinel({:?})", s.service()),
        }
    }
}

impl redis::aio::ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Standalone(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
            RedisConnection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Standalone(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
            RedisConnection::Sentinel(c) => c.get_db(),
        }
    }
}

/// What one [`RedisBackend::finish_counted`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinishStats {
    /// Stamp keys (and emptied markers) deleted.
    pub deleted: u64,
    /// Keys examined: the affected conj/table keys plus one writer record per table. It depends
    /// on the number of rows and schemes, never on how many cached values depend on them.
    pub touched: u64,
}

/// The Redis backend of the cacheops stamp protocol.
///
/// Every [`Backend`] method is one Lua script call (`EVALSHA`, scripts in `src/lua/`) whose keys
/// all carry the namespace's hash tag, so it works unchanged on Redis Cluster — except a hit,
/// which is one `MGET` decided on the client ([`RedisBackend::read_hit`]), sent over a direct
/// connection when one is free (see
/// [`RedisBackendBuilder::direct_connections`](crate::RedisBackendBuilder::direct_connections)).
/// The key layout is described in `docs/redis-data-model.md`.
///
/// Connecting (needs a server, so not run here):
///
/// ```no_run
/// use std::time::Duration;
/// use cacheops_redis::RedisBackend;
///
/// # async fn demo() -> Result<(), cacheops_redis::RedisBackendError> {
/// // Standalone, eager: fails now if Redis is unreachable.
/// let backend = RedisBackend::builder()
///     .url("redis://:secret@127.0.0.1:6379/2")
///     .response_timeout(Duration::from_millis(100))
///     .build()
///     .await?;
///
/// // Cluster, lazy: connects on first use, so startup survives a Redis outage.
/// let cluster = RedisBackend::builder()
///     .cluster(["127.0.0.1:7000", "127.0.0.1:7001"])
///     .build_lazy()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Configuration errors are reported without touching the network (and never show a password):
///
/// ```
/// use cacheops_redis::{RedisBackend, RedisBackendError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let err = RedisBackend::builder()
///     .url("redis-sentinel://:hunter2@sentinel.example:26379")
///     .build_lazy()
///     .await
///     .unwrap_err();
/// assert!(matches!(err, RedisBackendError::InvalidUrl { .. })); // no service name
/// assert!(!err.to_string().contains("hunter2"));
///
/// // A lazy backend is built even though nothing listens on this port…
/// let lazy = RedisBackend::builder().host("127.0.0.1").port(1).build_lazy().await.unwrap();
/// // …and its calls fail (quickly) until the server is there.
/// use cacheops_core::Backend;
/// assert!(lazy.ping().await.is_err());
/// # });
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conn: RedisConnection,
    target: String,
    /// Plain connections for the hit check (standalone targets built by the builder).
    direct: Option<Arc<DirectPool>>,
    /// A cluster's plain connections for the hit check, per master (cluster targets built by
    /// the builder, not over TLS).
    cluster_direct: Option<Arc<ClusterDirect>>,
    /// Where the dog-pile lock's waits get connections of their own, and those kept.
    wait_source: Arc<WaitSource>,
    waits: Arc<WaitPool>,
    response_timeout: Duration,
    connect_timeout: Duration,
}

/// What [`RedisBackend::new`] assembles.
pub(crate) struct Parts {
    pub(crate) conn: RedisConnection,
    pub(crate) target: String,
    pub(crate) direct: Option<Arc<DirectPool>>,
    pub(crate) cluster_direct: Option<ClusterDirect>,
    pub(crate) wait_source: WaitSource,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .field("conn", &self.conn)
            .field("direct", &self.direct)
            .field("cluster_direct", &self.cluster_direct)
            .finish()
    }
}

/// Longest TTL sent to Redis (100 years): keeps every millisecond count exact in Lua's doubles.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

fn ms(d: Duration) -> u64 {
    // PX/PEXPIRE reject 0; a sub-millisecond TTL is rounded up to 1 ms.
    u64::try_from(d.as_millis()).unwrap_or(MAX_TTL_MS).clamp(1, MAX_TTL_MS)
}

impl RedisBackend {
    /// A builder (standalone, unix socket or cluster; eager or lazy).
    pub fn builder() -> RedisBackendBuilder {
        RedisBackendBuilder::new()
    }

    pub(crate) fn new(p: Parts) -> Self {
        RedisBackend {
            conn: p.conn,
            target: p.target,
            direct: p.direct,
            cluster_direct: p.cluster_direct.map(Arc::new),
            wait_source: Arc::new(p.wait_source),
            waits: Arc::new(WaitPool::default()),
            response_timeout: p.response_timeout,
            connect_timeout: p.connect_timeout,
        }
    }

    fn from_given(conn: RedisConnection, target: &str) -> Self {
        Self::new(Parts {
            conn,
            target: target.into(),
            direct: None,
            cluster_direct: None,
            wait_source: WaitSource::Poll,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Uses an existing (custom-configured) connection manager. The dog-pile lock's waits poll
    /// (it cannot open connections of its own).
    pub fn from_connection_manager(manager: ConnectionManager) -> Self {
        Self::from_given(RedisConnection::Standalone(manager), "custom connection manager")
    }

    /// Uses an existing Redis Cluster connection. The dog-pile lock's waits poll.
    pub fn from_cluster_connection(conn: ClusterConnection) -> Self {
        Self::from_given(RedisConnection::Cluster(conn), "custom cluster connection")
    }

    pub(crate) fn wait_source(&self) -> &WaitSource {
        &self.wait_source
    }

    pub(crate) fn waits(&self) -> &WaitPool {
        &self.waits
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The connection (a clone sharing it), to send other commands.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Where this backend connects (password redacted).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Loads the scripts (`SCRIPT LOAD`, on every primary of a cluster). Optional: calls reload
    /// a missing script by themselves.
    pub async fn load_scripts(&self) -> Result<(), RedisBackendError> {
        let mut conn = self.conn.clone();
        for script in SCRIPTS.all() {
            script.load_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn invoke<T: redis::FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, RedisBackendError> {
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// A script that writes protocol state: on a Sentinel master, acknowledged by its replicas
    /// (see [`ReplicaAcks`](crate::ReplicaAcks)).
    async fn invoke_write<T: redis::FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, RedisBackendError> {
        match &self.conn {
            RedisConnection::Sentinel(s) => s.invoke_acked(inv).await,
            _ => self.invoke(inv).await,
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisBackendError> {
        let mut conn = self.conn.clone();
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// [`Backend::read`], with this crate's error type.
    ///
    /// A hit costs one round trip and no Lua: one `MGET` of the value and its stamps
    /// ([`RedisBackend::read_hit`]). Anything else (a missing key, a marker, a stamp mismatch)
    /// falls back to `read.lua`, which decides miss or bypass and creates what is missing.
    pub async fn read_checked(&self, req: &ReadRequest) -> Result<ReadReply, RedisBackendError> {
        check_same_slot(read_keys(req))?;
        if let Some(data) = self.read_hit(req).await? {
            return Ok(ReadReply::Hit(data));
        }
        self.read_script(req).await
    }

    /// The hit branch of `read.lua` as one read-only command: `MGET` of the value and every
    /// stamp, in stamp-vector order. It is a hit when every stamp is present and not a marker
    /// and the value's header equals the stamps — when `read.lua` would return a hit, or when
    /// the only difference is a missing schemes registry, which `read.lua` treats as a table
    /// invalidation but which can only matter once a write has run: and a write to a table
    /// without a registry is table-level (`affected_keys`), so it replaces the table stamp this
    /// check reads. A hit writes nothing in `read.lua` either. `None`: not a hit (the script
    /// decides what it is).
    ///
    /// The `MGET` goes over a direct connection when one is free (see
    /// [`RedisBackendBuilder::direct_connections`](crate::RedisBackendBuilder::direct_connections)),
    /// which knows the identity (`run_id`) of the server it is connected to, and also reads the
    /// namespace's boot key: a hit requires the namespace to have been verified on that server
    /// (see `verify_boot` in `common.lua`). Without a free direct connection (every one busy,
    /// TLS, a backend built from a connection, a cluster slot whose master is not known or that
    /// answered with a redirection) it answers `None`, and `read.lua` — which verifies the
    /// server first — decides, in one round trip still.
    pub async fn read_hit(&self, req: &ReadRequest) -> Result<Option<Vec<u8>>, RedisBackendError> {
        let stamp_keys = req.stamp_keys();
        let boot = cacheops_core::keys::boot_of_epoch(&req.epoch_key);
        // Only a direct connection knows which server process answers: over the shared
        // connection (which reconnects silently), `read.lua` decides, having verified the
        // server itself.
        let args: Vec<&[u8]> = [b"MGET".as_slice(), req.value_key.as_bytes()]
            .into_iter()
            .chain(stamp_keys.iter().map(|k| k.as_bytes()))
            .chain(std::iter::once(boot.as_bytes()))
            .collect();
        let Some(reply) = self.query_direct(&req.value_key, &args).await else {
            return Ok(None);
        };
        let (reply, server_id) = reply?;
        let mut values = match reply {
            Reply::Array(values) => values,
            other => return Err(RedisBackendError::Protocol(format!("MGET answered {other:?}"))),
        };
        // The namespace must have been verified on the server that answered: after a restart
        // (from an older snapshot, say) the first script deletes the epoch before anything is
        // served.
        let verified = match (values.pop(), server_id) {
            (Some(Some(stored)), Some(id)) => stored == id.as_bytes(),
            _ => false,
        };
        let Some((value, stamps)) = values.split_first_mut() else {
            return Ok(None);
        };
        Ok(if verified { value.take().and_then(|v| hit_data(v, stamps)) } else { None })
    }

    /// A command over a free direct connection to the server holding `key`: `None` when there
    /// is none (no pool, every connection busy, a cluster slot whose master is not known or
    /// that answered with a redirection). Only for read-only commands (a failed reused
    /// connection is retried).
    async fn query_direct(&self, key: &str, args: &[&[u8]]) -> Option<DirectReply> {
        let pool = match (&self.direct, &self.cluster_direct) {
            (Some(pool), _) => pool.clone(),
            (None, Some(cluster)) => {
                if cluster.wants_refresh() {
                    self.refresh_slots(cluster).await;
                }
                cluster.pool_for(key_slot(key))?
            }
            (None, None) => return None,
        };
        let lease = pool.take()?;
        let out = pool.query(lease, args.iter().copied()).await;
        match (&self.cluster_direct, &out) {
            // MOVED / ASK (slots migrating), CLUSTERDOWN, a node gone: the cluster connection
            // knows better; the map is read again later.
            (Some(cluster), Err(_)) => {
                cluster.invalidate();
                None
            }
            _ => Some(out),
        }
    }

    /// Reads the slot map (`CLUSTER SLOTS`) for the cluster's direct connections.
    async fn refresh_slots(&self, cluster: &ClusterDirect) {
        cluster.refreshing();
        let mut conn = self.conn.clone();
        if let Ok(reply) = redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut conn).await
            && let Some(ranges) = parse_slots(&reply)
        {
            cluster.install(ranges);
        }
    }

    /// A plain `GET` over the connection a hit check uses: a direct connection when one is free,
    /// else the shared connection. This is the round trip a hit cannot go below (the benchmark's
    /// `redis_rtt`), and [`Backend::get`] of the simple cache.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisBackendError> {
        if let Some(reply) = self.query_direct(key, &[b"GET".as_slice(), key.as_bytes()]).await {
            return match reply?.0 {
                Reply::Bulk(value) => Ok(value),
                other => Err(RedisBackendError::Protocol(format!("GET answered {other:?}"))),
            };
        }
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// `read.lua`: the full read-check (miss and bypass decisions, stamp creation, scheme
    /// registration).
    async fn read_script(&self, req: &ReadRequest) -> Result<ReadReply, RedisBackendError> {
        let mut inv = SCRIPTS.read.prepare_invoke();
        inv.key(&req.value_key).key(&req.epoch_key).key(&req.seq_key);
        inv.arg(&req.new_stamp).arg(ms(req.conj_ttl)).arg(req.tables.len()).arg(req.max_schemes);
        for t in req.tables.iter() {
            inv.key(&t.table_key).key(&t.schemes_key).key(&t.writers_key);
            inv.arg(t.conjs.len());
            for c in &t.conjs {
                inv.key(&c.key);
                inv.arg(&c.scheme);
            }
        }
        let (kind, payload): (i64, Vec<u8>) = self.invoke(&inv).await?;
        match kind {
            1 => Ok(ReadReply::Hit(payload)),
            2 => String::from_utf8(payload)
                .map(|s| ReadReply::Miss(Stamps(s)))
                .map_err(|_| RedisBackendError::Protocol("stamps are not UTF-8".into())),
            3 => match payload.as_slice() {
                b"pending" => Ok(ReadReply::Bypass(BypassReason::Pending)),
                b"new_scheme" => Ok(ReadReply::Bypass(BypassReason::NewScheme)),
                b"scheme_cap" => Ok(ReadReply::Bypass(BypassReason::SchemeCap)),
                other => Err(RedisBackendError::Protocol(format!(
                    "unknown bypass reason {:?}",
                    String::from_utf8_lossy(other)
                ))),
            },
            other => Err(RedisBackendError::Protocol(format!("read returned kind {other}"))),
        }
    }

    /// [`Backend::store`], with this crate's error type.
    pub async fn store_checked(
        &self,
        req: &ReadRequest,
        stamps: &Stamps,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisBackendError> {
        check_same_slot(read_keys(req))?;
        let mut inv = SCRIPTS.store.prepare_invoke();
        inv.key(&req.value_key);
        let mut kinds = String::new();
        inv.key(&req.epoch_key);
        kinds.push('s');
        for t in req.tables.iter() {
            inv.key(&t.table_key);
            kinds.push('s');
            for c in &t.conjs {
                inv.key(&c.key);
                kinds.push('c');
            }
        }
        inv.arg(&stamps.0).arg(data).arg(ms(ttl)).arg(ms(req.conj_ttl)).arg(kinds);
        let stored: i64 = self.invoke(&inv).await?;
        Ok(stored == 1)
    }

    /// [`Backend::mark`], returning the number of keys marked.
    pub async fn mark_counted(&self, req: &WriteRequest) -> Result<u64, RedisBackendError> {
        let Some(writer) = req.writer.as_deref() else {
            return Err(RedisBackendError::Config("mark needs a writer id".into()));
        };
        check_same_slot(write_keys(req))?;
        let mut inv = SCRIPTS.mark.prepare_invoke();
        inv.arg(writer).arg(ms(req.lease));
        write_args(&mut inv, req);
        let marked: i64 = self.invoke_write(&inv).await?;
        Ok(u64::try_from(marked).unwrap_or(0))
    }

    /// [`Backend::finish`], returning what it did (see [`FinishStats`]).
    pub async fn finish_counted(&self, req: &WriteRequest) -> Result<FinishStats, RedisBackendError> {
        check_same_slot(write_keys(req))?;
        let mut inv = SCRIPTS.finish.prepare_invoke();
        match req.writer.as_deref() {
            Some(w) => inv.arg("1").arg(w),
            None => inv.arg("0").arg(""),
        };
        write_args(&mut inv, req);
        let (deleted, touched): (i64, i64) = self.invoke_write(&inv).await?;
        Ok(FinishStats { deleted: u64::try_from(deleted).unwrap_or(0), touched: u64::try_from(touched).unwrap_or(0) })
    }

    /// [`Backend::delete_stamps`], returning how many stamps were deleted. Keys are grouped by
    /// hash slot, one script call per slot.
    pub async fn delete_stamps_counted(&self, keys: &[String]) -> Result<u64, RedisBackendError> {
        let mut by_slot: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for key in keys {
            by_slot.entry(key_slot(key)).or_default().push(key);
        }
        let mut deleted = 0;
        for group in by_slot.values() {
            let mut inv = SCRIPTS.delete_stamps.prepare_invoke();
            for key in group {
                inv.key(*key);
            }
            let n: i64 = self.invoke_write(&inv).await?;
            deleted += u64::try_from(n).unwrap_or(0);
        }
        Ok(deleted)
    }
}

/// The data of a stored value (`header \n data`) if its header equals the current stamps joined
/// by spaces and none of them is absent or a marker; `None` otherwise.
fn hit_data(mut value: Vec<u8>, stamps: &[Option<Vec<u8>>]) -> Option<Vec<u8>> {
    let end = value.iter().position(|&b| b == HEADER_END)?;
    let mut rest = &value[..end];
    for (i, stamp) in stamps.iter().enumerate() {
        let stamp = stamp.as_deref()?;
        if stamp.first() == Some(&MARKER_BYTE) {
            return None;
        }
        if i > 0 {
            rest = rest.strip_prefix(b" ")?;
        }
        rest = rest.strip_prefix(stamp)?;
    }
    if !rest.is_empty() {
        return None;
    }
    value.drain(..=end);
    Some(value)
}

/// [`MARKER_PREFIX`](cacheops_core::protocol::MARKER_PREFIX) as a byte.
const MARKER_BYTE: u8 = cacheops_core::protocol::MARKER_PREFIX as u8;

fn read_keys(req: &ReadRequest) -> impl Iterator<Item = &str> {
    [req.value_key.as_str(), req.epoch_key.as_str(), req.seq_key.as_str()].into_iter().chain(
        req.tables.iter().flat_map(|t| {
            [t.table_key.as_str(), t.schemes_key.as_str(), t.writers_key.as_str()]
                .into_iter()
                .chain(t.conjs.iter().map(|c| c.key.as_str()))
        }),
    )
}

fn write_keys(req: &WriteRequest) -> impl Iterator<Item = &str> {
    std::iter::once(req.seq_key.as_str()).chain(req.tables.iter().flat_map(|t| {
        // The conj keys are built from the prefix inside the script: it must carry the tag too.
        [t.table_key.as_str(), t.schemes_key.as_str(), t.writers_key.as_str(), t.conj_prefix.as_str()]
    }))
}

fn write_args(inv: &mut ScriptInvocation<'_>, req: &WriteRequest) {
    inv.key(&req.seq_key);
    inv.arg(req.tables.len());
    for t in req.tables.iter() {
        table_args(inv, t);
    }
}

fn table_args(inv: &mut ScriptInvocation<'_>, t: &TableWrite) {
    inv.key(&t.table_key).key(&t.schemes_key).key(&t.writers_key);
    inv.arg(&t.conj_prefix).arg(if t.table_level { "1" } else { "0" }).arg(t.rows.len());
    for row in &t.rows {
        inv.arg(row.len());
        for (col, val) in row {
            inv.arg(col).arg(val);
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn read(&self, req: &ReadRequest) -> Result<ReadReply, BackendError> {
        Ok(self.read_checked(req).await?)
    }

    /// A restart (empty, or from an RDB/AOF snapshot older than the mark) loses markers.
    fn may_lose_marks(&self) -> bool {
        true
    }

    async fn store(
        &self,
        req: &ReadRequest,
        stamps: &Stamps,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self.store_checked(req, stamps, data, ttl).await?)
    }

    async fn mark(&self, req: &WriteRequest) -> Result<(), BackendError> {
        self.mark_counted(req).await?;
        Ok(())
    }

    async fn finish(&self, req: &WriteRequest) -> Result<(), BackendError> {
        self.finish_counted(req).await?;
        Ok(())
    }

    async fn delete_stamps(&self, keys: &[String]) -> Result<(), BackendError> {
        self.delete_stamps_counted(keys).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(RedisBackend::get(self, key).await?)
    }

    async fn set(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(data);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ms(ttl));
        }
        let _: () = self.query(&cmd).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, BackendError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(key)).await?;
        Ok(n > 0)
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn shares_locks(&self) -> bool {
        true
    }

    async fn lock_acquire(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<LockAttempt, BackendError> {
        Ok(self.lock_acquire_checked(lock_key, signal_key, token, ttl).await?)
    }

    async fn lock_release(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        signal_ttl: Duration,
    ) -> Result<(), BackendError> {
        Ok(self.lock_release_checked(lock_key, signal_key, token, signal_ttl).await?)
    }

    async fn lock_wait(&self, signal_key: &str, timeout: Duration) -> Result<bool, BackendError> {
        Ok(self.lock_wait_checked(signal_key, timeout).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::hit_data;

    fn stamps(s: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
        s.iter().map(|x| x.map(|x| x.as_bytes().to_vec())).collect()
    }

    #[test]
    fn hit_requires_the_exact_stamp_vector() {
        let value = b"e1 t1 c1\ndata\nwith newline".to_vec();
        let current = stamps(&[Some("e1"), Some("t1"), Some("c1")]);
        assert_eq!(hit_data(value.clone(), &current).as_deref(), Some(&b"data\nwith newline"[..]));
        // A changed, missing, extra, or marker stamp is not a hit.
        for other in [
            stamps(&[Some("e1"), Some("t1"), Some("c2")]),
            stamps(&[Some("e1"), None, Some("c1")]),
            stamps(&[Some("e1"), Some("t1")]),
            stamps(&[Some("e1"), Some("t1"), Some("c1"), Some("c9")]),
            stamps(&[Some("e1"), Some("t1"), Some("!w@99")]),
            stamps(&[Some("e1"), Some("t1"), Some("c")]),
        ] {
            assert_eq!(hit_data(value.clone(), &other), None, "{other:?}");
        }
        // No header at all.
        assert_eq!(hit_data(b"e1 t1 c1".to_vec(), &current), None);
    }
}
