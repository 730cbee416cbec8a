//! [`SentinelConnection`]: the master of a Sentinel-monitored group, found through the
//! Sentinels and found again after any failure, with writes acknowledged by its replicas.
//!
//! Why writes wait for replicas (`docs/redis-data-model.md`, "Sentinel"): after a failover the
//! old master stays a writable master for a while (about 10 s with Redis 7's Sentinel) before it
//! is made a replica of the new one, and whatever it received in between is lost. A lease marker
//! that only the old master holds would let readers of the new master store pre-commit rows.
//! So every write script here is followed by `WAIT <replicas> <timeout>`, and a write that fewer
//! replicas acknowledged counts as failed (a mark is then refused, an invalidation replayed).
//! With [`ReplicaAcks::All`] a write on the new master can only be acknowledged once every
//! replica the Sentinels know, the old master included, follows it — and then the old master no
//! longer serves hits (its boot key names the new master: `verify_boot`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, ScriptInvocation, TlsCertificates, Value,
};

use crate::direct::{DirectPool, DirectTarget};
use crate::error::RedisBackendError;

/// How many replicas must acknowledge each write of the cache protocol on a Sentinel-managed
/// master, or on a cluster master, before it counts as done (see
/// [`RedisBackendBuilder::replica_acks`](crate::RedisBackendBuilder::replica_acks)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplicaAcks {
    /// Every replica the Sentinels know for the master (also those they consider down). No
    /// write can be lost to a failover, and no deposed master serves hits on data a write has
    /// changed. A replica that is down blocks writes (they are refused or replayed) until it
    /// is back or the Sentinels forget it (`SENTINEL RESET`).
    #[default]
    All,
    /// At least this many replicas (0: do not wait). With fewer than all, a failover can lose an
    /// acknowledged write when the promoted replica was not among those that acknowledged it,
    /// and a deposed master still reachable by some clients serves them hits until it is
    /// reconfigured (`docs/redis-data-model.md`, "Sentinel").
    AtLeast(u32),
}

/// `WAIT <wanted> <timeout>`: how many replicas have every write this connection sent.
pub(crate) fn wait_command(wanted: u64, timeout: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(wanted).arg(crate::ops::ms(timeout));
    cmd
}

/// A `WAIT` reply: fewer than `wanted` replicas is [`RedisBackendError::NotAcknowledged`].
pub(crate) fn acknowledged(wanted: u64, reply: &Value) -> Result<(), RedisBackendError> {
    let acked = match reply {
        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        other => return Err(RedisBackendError::Protocol(format!("WAIT answered {other:?}"))),
    };
    if acked < wanted {
        return Err(RedisBackendError::NotAcknowledged { wanted, acked });
    }
    Ok(())
}

/// A connection to the current master of a Sentinel-monitored group.
///
/// The master is looked up through the Sentinels (and its `ROLE` checked) on first use, and
/// again after any command fails for a reason that may mean a failover (a dropped or refused
/// connection, a timeout, `READONLY`, `MASTERDOWN`, `LOADING`). Cheap to clone.
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConnection").field("service", &self.shared.service).finish()
    }
}

struct Shared {
    /// The Sentinels (their addresses and credentials).
    sentinels: Vec<ConnectionInfo>,
    /// The Sentinel that answered last: asked first next time.
    last_good: AtomicUsize,
    /// The master's db and credentials.
    master_settings: RedisConnectionInfo,
    tls: bool,
    certs: Option<TlsCertificates>,
    /// One lookup at a time.
    looking_up: tokio::sync::Mutex<()>,
    service: String,
    db: i64,
    config: AsyncConnectionConfig,
    acks: ReplicaAcks,
    ack_timeout: Duration,
    /// Bounds what one Sentinel may take to name the master and the master to answer (a
    /// Sentinel that accepts connections but never answers costs this, then the next is asked).
    step_timeout: Duration,
    current: Mutex<Option<Arc<Master>>>,
    generation: AtomicU64,
    direct: Option<Arc<DirectPool>>,
}

/// The master found by one resolution.
pub(crate) struct Master {
    generation: u64,
    found: Instant,
    /// To open more connections to it (the dog-pile lock's waits).
    pub(crate) client: Client,
    main: MultiplexedConnection,
    /// Write scripts and their `WAIT`, off the main connection (a `WAIT` blocks its connection).
    acked: MultiplexedConnection,
    wanted_acks: u64,
}

pub(crate) struct SentinelSettings {
    pub(crate) sentinels: Vec<ConnectionInfo>,
    pub(crate) master_settings: RedisConnectionInfo,
    pub(crate) tls: bool,
    pub(crate) certs: Option<TlsCertificates>,
    pub(crate) service: String,
    pub(crate) db: i64,
    pub(crate) config: AsyncConnectionConfig,
    pub(crate) acks: ReplicaAcks,
    pub(crate) ack_timeout: Duration,
    pub(crate) step_timeout: Duration,
    pub(crate) direct: Option<Arc<DirectPool>>,
}

/// A write its replicas did not acknowledge looks the master up again (the group may have
/// changed) at most this often; other failures that may mean a failover do so at once.
const RELOOKUP_AFTER_UNACKNOWLEDGED: Duration = Duration::from_secs(1);

fn io_error(kind: std::io::ErrorKind, message: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(kind, message))
}

/// Whether an error may mean that the master moved: look it up again.
fn may_have_moved(e: &RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl SentinelConnection {
    pub(crate) fn new(s: SentinelSettings) -> Self {
        SentinelConnection {
            shared: Arc::new(Shared {
                sentinels: s.sentinels,
                last_good: AtomicUsize::new(0),
                master_settings: s.master_settings,
                tls: s.tls,
                certs: s.certs,
                looking_up: tokio::sync::Mutex::new(()),
                service: s.service,
                db: s.db,
                config: s.config,
                acks: s.acks,
                ack_timeout: s.ack_timeout,
                step_timeout: s.step_timeout,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                direct: s.direct,
            }),
        }
    }

    /// The service name the Sentinels monitor.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The current master (looked up when there is none).
    pub(crate) async fn master(&self) -> Result<Arc<Master>, RedisError> {
        self.shared.master().await
    }

    /// Forgets `master` after `e`, if `e` may mean a failover.
    pub(crate) fn failed(&self, master: &Master, e: &RedisError) {
        if may_have_moved(e) {
            self.shared.forget(master);
        }
    }

    /// Runs a write script on the master, then waits for the replicas to acknowledge it.
    pub(crate) async fn invoke_acked<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        let master = self.master().await?;
        let mut conn = master.acked.clone();
        let out = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                self.failed(&master, &e);
                return Err(e.into());
            }
        };
        self.wait_for_replicas(&master, &mut conn).await?;
        Ok(out)
    }

    async fn wait_for_replicas(
        &self,
        master: &Master,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), RedisBackendError> {
        let wanted = master.wanted_acks;
        if wanted == 0 {
            return Ok(());
        }
        let reply: Value = match wait_command(wanted, self.shared.ack_timeout).query_async(conn).await {
            Ok(r) => r,
            Err(e) => {
                self.failed(master, &e);
                return Err(e.into());
            }
        };
        let acked = acknowledged(wanted, &reply);
        // The group may have changed (a failover, a replica gone): look it up again, but not on
        // every write while a replica is down.
        if acked.is_err() && master.found.elapsed() >= RELOOKUP_AFTER_UNACKNOWLEDGED {
            self.shared.forget(master);
        }
        acked
    }
}

impl Shared {
    async fn master(&self) -> Result<Arc<Master>, RedisError> {
        if let Some(m) = self.current() {
            return Ok(m);
        }
        // One lookup at a time; whoever waited finds the result.
        let _one = self.looking_up.lock().await;
        if let Some(m) = self.current() {
            return Ok(m);
        }
        let n = self.sentinels.len().max(1);
        let first = self.last_good.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..n {
            let at = first.saturating_add(i) % n;
            match tokio::time::timeout(self.step_timeout, self.ask(at)).await {
                Ok(Ok(master)) => {
                    self.last_good.store(at, Ordering::Relaxed);
                    return Ok(self.install(master));
                }
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => {
                    last_err = Some(io_error(
                        std::io::ErrorKind::TimedOut,
                        "a Sentinel or the master it named did not answer in time",
                    ))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io_error(std::io::ErrorKind::NotFound, "no Sentinel configured")))
    }

    fn client(&self, info: ConnectionInfo) -> Result<Client, RedisError> {
        match &self.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone()),
            None => Client::open(info),
        }
    }

    /// Asks Sentinel `at` for the master, connects to it and checks that it is one.
    async fn ask(&self, at: usize) -> Result<Master, RedisError> {
        let info =
            self.sentinels.get(at).cloned().ok_or_else(|| io_error(std::io::ErrorKind::NotFound, "no Sentinel"))?;
        let mut conn = self.client(info)?.get_multiplexed_async_connection_with_config(&self.config).await?;
        let addr: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&self.service).query_async(&mut conn).await?;
        let (host, port) =
            addr.ok_or_else(|| io_error(std::io::ErrorKind::NotFound, "the Sentinel knows no master of this service"))?;
        let wanted_acks = match self.acks {
            ReplicaAcks::AtLeast(n) => u64::from(n),
            ReplicaAcks::All => {
                let replicas: Vec<Value> =
                    redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.service).query_async(&mut conn).await?;
                u64::try_from(replicas.len()).unwrap_or(u64::MAX)
            }
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        let url = if host.contains(':') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        let master_info = url.into_connection_info()?.set_redis_settings(self.master_settings.clone());
        let master_client = self.client(master_info)?;
        let mut main = master_client.get_multiplexed_async_connection_with_config(&self.config).await?;
        // The Sentinels may lag behind a failover: the node itself must say it is the master.
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut main).await?;
        let is_master = match role.first() {
            Some(Value::BulkString(r)) => r.as_slice() == b"master",
            Some(Value::SimpleString(r)) => r == "master",
            _ => false,
        };
        if !is_master {
            return Err(io_error(std::io::ErrorKind::ConnectionRefused, "the node the Sentinel names is not a master"));
        }
        let acked = master_client.get_multiplexed_async_connection_with_config(&self.config).await?;
        Ok(Master { generation: 0, found: Instant::now(), client: master_client, main, acked, wanted_acks })
    }

    fn install(&self, mut master: Master) -> Arc<Master> {
        if let Some(pool) = &self.direct {
            pool.retarget(DirectTarget::of(master.client.get_connection_info()));
        }
        master.generation = self.generation.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let master = Arc::new(master);
        *self.lock() = Some(master.clone());
        master
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Master>>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Master>> {
        self.lock().clone()
    }

    fn forget(&self, master: &Master) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|m| m.generation == master.generation) {
            *current = None;
            // Hit checks go through the scripts (which find the new master) until then.
            if let Some(pool) = &self.direct {
                pool.retarget(None);
            }
        }
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let master = self.master().await?;
            let mut conn = master.main.clone();
            let out = conn.req_packed_command(cmd).await;
            if let Err(e) = &out {
                self.failed(&master, e);
            }
            out
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let master = self.master().await?;
            let mut conn = master.main.clone();
            let out = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &out {
                self.failed(&master, e);
            }
            out
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}
