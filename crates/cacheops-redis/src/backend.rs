//! [`RedisBackend`]: the stamp protocol over Redis, one Lua script call per step.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cacheops_core::protocol::{Backend, BackendError, LockAttempt, ReadReply, ReadRequest, Stamps, WriteRequest};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, ScriptInvocation, Value};

use crate::builder::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisBackendBuilder};
use crate::cluster_direct::{ClusterDirect, parse_nodes};
use crate::direct::{DirectPool, Reply};
use crate::error::RedisBackendError;
use crate::lock::{WaitPool, WaitSource};
use crate::ops::ms;
use crate::scripts::SCRIPTS;
use crate::sentinel::{ReplicaAcks, SentinelConnection, acknowledged, wait_command};
use crate::slot::key_slot;

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
    /// A cluster's slot map (cluster targets built by the builder): each master's replicas, for
    /// the acknowledgements, and its plain connections for the hit check (none over TLS).
    cluster_direct: Option<Arc<ClusterDirect>>,
    /// A cluster's replica acknowledgements (see [`ReplicaAcks`]).
    cluster_acks: Option<(ReplicaAcks, Duration)>,
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
    pub(crate) cluster_acks: Option<(ReplicaAcks, Duration)>,
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
            cluster_acks: p.cluster_acks,
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
            cluster_acks: None,
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

    /// Whether this is a cluster backend (its operations on several tables are one call per
    /// table).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, RedisConnection::Cluster(_))
    }

    /// The Sentinel connection, for a Sentinel backend.
    pub(crate) fn sentinel(&self) -> Option<&SentinelConnection> {
        match &self.conn {
            RedisConnection::Sentinel(s) => Some(s),
            _ => None,
        }
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

    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// A script that writes protocol state, in the slot of `key`: on a Sentinel master or a
    /// cluster master, acknowledged by its replicas (see [`ReplicaAcks`]).
    pub(crate) async fn invoke_write<T: redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
        key: &str,
    ) -> Result<T, RedisBackendError> {
        match &self.conn {
            RedisConnection::Sentinel(s) => s.invoke_acked(inv).await,
            RedisConnection::Cluster(c) => {
                let out = self.invoke(inv).await?;
                self.wait_for_cluster_replicas(c, key_slot(key)).await?;
                Ok(out)
            }
            RedisConnection::Standalone(_) => self.invoke(inv).await,
        }
    }

    /// After a write to `slot`: `WAIT` on the connection to its master until the replicas the
    /// slot map lists (or [`ReplicaAcks::AtLeast`]) have it; fewer is
    /// [`RedisBackendError::NotAcknowledged`] (a promoted replica could lack the write).
    async fn wait_for_cluster_replicas(&self, conn: &ClusterConnection, slot: u16) -> Result<(), RedisBackendError> {
        let (Some((acks, timeout)), Some(map)) = (self.cluster_acks, &self.cluster_direct) else {
            return Ok(());
        };
        let wanted = match acks {
            ReplicaAcks::AtLeast(n) => u64::from(n),
            ReplicaAcks::All => {
                if map.replicas_for(slot).is_none() {
                    self.refresh_slots(map).await;
                }
                // Unknown (the map cannot be read): do not count the write as safe.
                map.replicas_for(slot).ok_or(RedisBackendError::NotAcknowledged { wanted: 1, acked: 0 })?
            }
        };
        if wanted == 0 {
            return Ok(());
        }
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
        let reply = conn.clone().route_command(wait_command(wanted, timeout), routing).await?;
        let acked = acknowledged(wanted, &reply);
        if acked.is_err() {
            // The topology may have changed: read the map again.
            map.invalidate();
        }
        acked
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisBackendError> {
        let mut conn = self.conn.clone();
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// A command over a free direct connection to the server holding `key`: `None` when there
    /// is none (no pool, every connection busy, a cluster slot whose master is not known or
    /// that answered with a redirection). Only for read-only commands (a failed reused
    /// connection is retried).
    pub(crate) async fn query_direct(&self, key: &str, args: &[&[u8]]) -> Option<DirectReply> {
        let pool = match (&self.direct, &self.cluster_direct) {
            (Some(pool), _) => pool.clone(),
            // Over TLS the map has no pools: do not read it for them.
            (None, Some(cluster)) if cluster.has_pools() => {
                if cluster.wants_refresh() {
                    self.refresh_slots(cluster).await;
                }
                cluster.pool_for(key_slot(key))?
            }
            _ => return None,
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

    /// Reads the slot map (`CLUSTER NODES`): the masters for the direct connections, and their
    /// replicas for the acknowledgements.
    async fn refresh_slots(&self, cluster: &ClusterDirect) {
        cluster.refreshing();
        let mut conn = self.conn.clone();
        if let Ok(reply) = redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut conn).await
            && let Some(ranges) = parse_nodes(&reply)
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

    async fn register(&self, registry: &str, members: &[String]) -> Result<(), BackendError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("SADD");
        cmd.arg(registry).arg(members);
        let _: i64 = self.query(&cmd).await?;
        Ok(())
    }

    async fn registered(&self, registry: &str) -> Result<Vec<String>, BackendError> {
        Ok(self.query(redis::cmd("SMEMBERS").arg(registry)).await?)
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
