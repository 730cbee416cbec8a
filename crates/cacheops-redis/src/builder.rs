//! [`RedisBackendBuilder`]: where and how to connect.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, TlsCertificates,
};

use crate::backend::{Parts, RedisBackend, RedisConnection};
use crate::cluster_direct::ClusterDirect;
use crate::direct::{DirectPool, DirectTarget};
use crate::error::{RedisBackendError, redact_url};
use crate::lock::WaitSource;
use crate::sentinel::{ReplicaAcks, SentinelConnection, SentinelSettings};
use crate::topology::{Form, parse_multi_host};

/// Default time to wait for a reply: short, so that an outage costs little per call.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Default time to wait for a connection to be established.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of reconnection attempts per (re)connection, after the first.
pub const DEFAULT_RETRIES: usize = 1;
/// Default number of direct connections for hit checks (see
/// [`RedisBackendBuilder::direct_connections`]).
pub const DEFAULT_DIRECT_CONNECTIONS: usize = 32;
/// The response timeout of the connections the dog-pile lock's waits block on (each wait is
/// bounded by the lock wait itself).
const WAIT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Default time a Sentinel master's replicas have to acknowledge a write (see
/// [`RedisBackendBuilder::replica_acks`]).
pub const DEFAULT_REPLICA_ACK_TIMEOUT: Duration = Duration::from_millis(100);

/// Configures and builds a [`RedisBackend`]; see [`RedisBackend::builder`].
///
/// Exactly one target may be given: a URL, a host/port, a unix socket, cluster nodes or
/// Sentinels (nothing at all means `127.0.0.1:6379`). `db`, `username` and `password` override
/// what a URL says. Everything is validated by [`build`](Self::build) /
/// [`build_lazy`](Self::build_lazy).
///
/// Every topology by URL (also what `CACHEOPS_REDIS` accepts):
///
/// ```
/// use cacheops_redis::RedisBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// for url in [
///     "redis://:secret@127.0.0.1:6379/2",
///     "rediss://cache.example:6380/0", // TLS (the system's roots, or tls_root_cert)
///     "redis+unix:///run/redis.sock?db=1",
///     "redis-cluster://10.0.0.1:7000,10.0.0.2:7000",
///     "rediss-cluster://:secret@10.0.0.1:7000,10.0.0.2:7000",
///     "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0?sentinel_password=s3",
///     "rediss-sentinel://:secret@10.0.0.1:26379/mymaster",
/// ] {
///     // Lazy: validated now, connected on first use.
///     RedisBackend::builder().url(url).build_lazy().await.expect(url);
/// }
/// # });
/// ```
#[derive(Clone, Default)]
pub struct RedisBackendBuilder {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    unix: Option<PathBuf>,
    cluster: Option<Vec<String>>,
    sentinel: Option<(Vec<String>, String)>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    tls: Option<bool>,
    tls_root_cert: Option<Vec<u8>>,
    tls_client_cert: Option<(Vec<u8>, Vec<u8>)>,
    replica_acks: Option<ReplicaAcks>,
    replica_ack_timeout: Option<Duration>,
    db: Option<i64>,
    username: Option<String>,
    password: Option<String>,
    response_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    retries: Option<usize>,
    direct_connections: Option<usize>,
}

impl std::fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("unix", &self.unix)
            .field("cluster", &self.cluster.as_ref().map(|n| n.iter().map(|u| redact_url(u)).collect::<Vec<_>>()))
            .field("sentinel", &self.sentinel)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("tls_root_cert", &self.tls_root_cert.as_ref().map(|_| "<pem>"))
            .field("tls_client_cert", &self.tls_client_cert.as_ref().map(|_| "<pem>"))
            .field("replica_acks", &self.replica_acks)
            .field("replica_ack_timeout", &self.replica_ack_timeout)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retries", &self.retries)
            .field("direct_connections", &self.direct_connections)
            .finish()
    }
}

enum Target {
    Single(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
    Sentinel(SentinelTarget),
}

struct SentinelTarget {
    sentinels: Vec<ConnectionAddr>,
    service: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    tls: bool,
    acks: ReplicaAcks,
    ack_timeout: Duration,
}

/// A validated configuration.
struct Resolved {
    target: Target,
    description: String,
    certs: Option<TlsCertificates>,
    response_timeout: Duration,
    connect_timeout: Duration,
    retries: usize,
    direct_max: usize,
    /// A cluster's replica acknowledgements.
    cluster_acks: Option<(ReplicaAcks, Duration)>,
}

impl RedisBackendBuilder {
    /// A builder with defaults (`127.0.0.1:6379`, db 0, 250 ms response / 1 s connect timeouts).
    pub fn new() -> Self {
        Self::default()
    }

    /// Connect by URL: `redis://[user][:password@]host[:port][/db]`, `rediss://…` (TLS),
    /// `redis+unix:///path/to/socket?db=N` (or `unix://`), a cluster
    /// `redis-cluster://[user][:password@]host:port,host:port…` (`rediss-cluster://` for TLS), or
    /// Sentinels `redis-sentinel://[user][:password@]host:port,host:port…/<service>[/<db>]`
    /// `[?sentinel_username=…&sentinel_password=…]` (`rediss-sentinel://` for TLS to the
    /// Sentinels and the master). In the multi-host forms the user and password are the data
    /// nodes'; ports default to 6379 (cluster) and 26379 (Sentinel).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Connect over TCP to this host (default port 6379).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The TCP port (with [`host`](Self::host); alone it means `127.0.0.1:port`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Connect over a unix socket.
    pub fn unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// Connect to a Redis Cluster through these seed nodes (`host:port` or `redis://…` URLs).
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster = Some(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// Connect to the master of `service` as the Sentinels at these addresses (`host:port`,
    /// port 26379 by default) report it, and to the new master after a failover. `db`,
    /// `username` and `password` are the master's; the Sentinels' own credentials are
    /// [`sentinel_username`](Self::sentinel_username) / [`sentinel_password`](Self::sentinel_password).
    /// Each write of the cache protocol waits for the replicas ([`replica_acks`](Self::replica_acks)).
    ///
    /// ```no_run
    /// use cacheops_redis::RedisBackend;
    ///
    /// # async fn demo() -> Result<(), cacheops_redis::RedisBackendError> {
    /// let backend = RedisBackend::builder()
    ///     .sentinel(["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"], "mymaster")
    ///     .sentinel_password("sentinel-secret")
    ///     .password("redis-secret")
    ///     .db(1)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<I, S>(mut self, sentinels: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sentinel = Some((sentinels.into_iter().map(Into::into).collect(), service.into()));
        self
    }

    /// The ACL user name for the Sentinels (not the master's: see [`username`](Self::username)).
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// The password for the Sentinels (`requirepass` of the Sentinels; never logged).
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// How many replicas of a Sentinel-managed master, or of a cluster master, must acknowledge
    /// each write of the cache protocol (a lease marker, an invalidation) within `timeout`
    /// (default [`ReplicaAcks::All`] within [`DEFAULT_REPLICA_ACK_TIMEOUT`]). A write
    /// acknowledged by fewer fails: a mark is then refused (the database write does not happen),
    /// an invalidation is replayed. On a cluster, *all* means the replicas the slot map lists for
    /// the master (a master without replicas does not wait). Standalone targets do not wait;
    /// `timeout` must be shorter than the response timeout.
    pub fn replica_acks(mut self, acks: ReplicaAcks, timeout: Duration) -> Self {
        self.replica_acks = Some(acks);
        self.replica_ack_timeout = Some(timeout);
        self
    }

    /// Use TLS for targets given without a scheme (`host`/`port`, cluster nodes and Sentinels
    /// as `host:port`); `rediss://` URLs use it anyway. Server certificates are verified
    /// against the system's roots, or [`tls_root_cert`](Self::tls_root_cert).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = Some(on);
        self
    }

    /// Verify the servers against this CA certificate (PEM) instead of the system's roots.
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Present this client certificate and key (PEM) to the servers (mutual TLS, for servers
    /// with `tls-auth-clients yes`, Redis's default).
    pub fn tls_client_cert(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls_client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The database number (standalone and Sentinel; a cluster has only db 0).
    pub fn db(mut self, db: i64) -> Self {
        self.db = Some(db);
        self
    }

    /// The ACL user name.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password (never logged nor shown in errors).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long to wait for a reply before the call fails (default 250 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long to wait for a connection (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Reconnection attempts after a failed connection, per (re)connection (default 1).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = Some(retries);
        self
    }

    /// How many plain connections a standalone backend keeps for hit checks (default
    /// [`DEFAULT_DIRECT_CONNECTIONS`]; 0: none).
    ///
    /// A hit check is one read-only `MGET`. On a direct connection the calling task writes it
    /// and reads the reply itself, which saves the hand-off to the shared connection's driver
    /// task and back (a hit then costs about one plain `GET`, see `BENCHMARKS.md`). Connections
    /// are opened on demand up to this number; a hit check that finds them all busy is decided
    /// by `read.lua` over the shared connection (still one round trip, but a script: only a
    /// direct connection knows which server process answers, see `docs/redis-data-model.md`,
    /// "Restarts and server identity"). The simple cache's `GET` uses them
    /// too; everything else (misses, writes, scripts) always uses the shared connection. A
    /// Sentinel backend keeps them to the current master, a cluster backend this many per
    /// master (found from the slot map). Over TLS there are none: every hit check is decided by
    /// `read.lua`.
    ///
    /// ```no_run
    /// use cacheops_redis::RedisBackend;
    ///
    /// # async fn demo() -> Result<(), cacheops_redis::RedisBackendError> {
    /// // Many concurrent requests per process: keep more hit checks off the shared connection.
    /// let backend = RedisBackend::builder()
    ///     .url("redis://127.0.0.1:6379/0")
    ///     .direct_connections(16)
    ///     .build()
    ///     .await?;
    /// // A plain GET over the same connections (what a hit cannot go below).
    /// let _ = backend.get("some-key").await?;
    /// # Ok(()) }
    /// ```
    pub fn direct_connections(mut self, n: usize) -> Self {
        self.direct_connections = Some(n);
        self
    }

    /// Connects now and loads the scripts. Fails with [`RedisBackendError::Connect`] (naming
    /// the target, password redacted) when Redis is unreachable.
    pub async fn build(self) -> Result<RedisBackend, RedisBackendError> {
        let r = self.resolve()?;
        let description = r.description.clone();
        let connect_err = |source| RedisBackendError::Connect { target: description.clone(), source };
        let backend = r.into_backend(true).await.map_err(|e| match e {
            RedisBackendError::Command(source) => connect_err(source),
            other => other,
        })?;
        if let RedisConnection::Sentinel(s) = backend.connection() {
            s.master().await.map_err(connect_err)?;
        }
        backend.load_scripts().await.map_err(|e| match e {
            RedisBackendError::Command(source) => connect_err(source),
            other => other,
        })?;
        Ok(backend)
    }

    /// Builds without connecting: the connection is made on first use (and remade after a
    /// failure), so this succeeds while Redis is down. Configuration errors are still reported.
    /// Must be called within a Tokio runtime (it is `async` for that reason).
    pub async fn build_lazy(self) -> Result<RedisBackend, RedisBackendError> {
        self.resolve()?.into_backend(false).await
    }

    /// Turns a `redis-cluster://` / `redis-sentinel://` URL into the equivalent settings.
    fn expand_multi_host_url(mut self) -> Result<Self, RedisBackendError> {
        let Some(url) = self.url.clone() else {
            return Ok(self);
        };
        let Some(m) = parse_multi_host(&url)? else {
            return Ok(self);
        };
        if self.cluster.is_some() || self.sentinel.is_some() {
            return Err(RedisBackendError::Config(
                "give only one of url, host/port, unix_socket, cluster and sentinel".into(),
            ));
        }
        self.url = None;
        self.username = self.username.or(m.username);
        self.password = self.password.or(m.password);
        if m.tls {
            self.tls = Some(true);
        }
        let hosts =
            m.hosts.iter().map(|(h, p)| if h.contains(':') { format!("[{h}]:{p}") } else { format!("{h}:{p}") });
        match m.form {
            Form::Cluster => self.cluster = Some(hosts.collect()),
            Form::Sentinel => {
                self.sentinel = Some((hosts.collect(), m.service.unwrap_or_default()));
                self.db = self.db.or(m.db);
                self.sentinel_username = self.sentinel_username.or(m.sentinel_username);
                self.sentinel_password = self.sentinel_password.or(m.sentinel_password);
            }
        }
        Ok(self)
    }

    fn resolve(self) -> Result<Resolved, RedisBackendError> {
        let had_url = self.url.is_some();
        let me = self.expand_multi_host_url()?;
        let response_timeout = me.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
        let connect_timeout = me.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let retries = me.retries.unwrap_or(DEFAULT_RETRIES);
        if response_timeout.is_zero() || connect_timeout.is_zero() {
            return Err(RedisBackendError::Config("timeouts must be greater than zero".into()));
        }
        let tcp = me.host.is_some() || me.port.is_some();
        let given = [me.url.is_some(), tcp, me.unix.is_some(), me.cluster.is_some(), me.sentinel.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(RedisBackendError::Config(
                "give only one of url, host/port, unix_socket, cluster and sentinel".into(),
            ));
        }
        if let Some(db) = me.db
            && db < 0
        {
            return Err(RedisBackendError::Config(format!("db must not be negative, got {db}")));
        }
        if me.sentinel.is_none() && (me.sentinel_username.is_some() || me.sentinel_password.is_some()) {
            return Err(RedisBackendError::Config("sentinel_username/sentinel_password need a sentinel target".into()));
        }
        if me.sentinel.is_none() && me.cluster.is_none() && me.replica_acks.is_some() {
            return Err(RedisBackendError::Config(
                "replica_acks applies to Sentinel and Cluster targets (standalone writes do not wait)".into(),
            ));
        }
        let ack_timeout = me.replica_ack_timeout.unwrap_or(DEFAULT_REPLICA_ACK_TIMEOUT);
        if (me.sentinel.is_some() || me.cluster.is_some()) && (ack_timeout.is_zero() || ack_timeout >= response_timeout)
        {
            return Err(RedisBackendError::Config(format!(
                "the replica acknowledgement timeout ({ack_timeout:?}) must be greater than zero and \
                 shorter than the response timeout ({response_timeout:?})"
            )));
        }
        if me.unix.is_some() && me.tls == Some(true) {
            return Err(RedisBackendError::Config("TLS over a unix socket is not supported".into()));
        }
        let tls = me.tls == Some(true);
        let (target, description) = if let Some((sentinels, service)) = &me.sentinel {
            me.sentinel_target(sentinels, service, tls, ack_timeout)?
        } else if let Some(nodes) = &me.cluster {
            me.cluster_target(nodes, tls)?
        } else {
            me.single_target(tls, had_url)?
        };
        let cluster_acks =
            matches!(target, Target::Cluster(_)).then(|| (me.replica_acks.unwrap_or_default(), ack_timeout));
        let r = Resolved {
            target,
            description,
            certs: me.certificates(),
            response_timeout,
            connect_timeout,
            retries,
            direct_max: me.direct_connections.unwrap_or(DEFAULT_DIRECT_CONNECTIONS),
            cluster_acks,
        };
        if r.certs.is_some() && !r.uses_tls() {
            return Err(RedisBackendError::Config(
                "tls_root_cert / tls_client_cert need a TLS target (rediss://…, or tls(true))".into(),
            ));
        }
        Ok(r)
    }

    fn sentinel_target(
        &self,
        sentinels: &[String],
        service: &str,
        tls: bool,
        ack_timeout: Duration,
    ) -> Result<(Target, String), RedisBackendError> {
        if sentinels.is_empty() {
            return Err(RedisBackendError::Config("sentinel needs at least one Sentinel address".into()));
        }
        if service.trim().is_empty() {
            return Err(RedisBackendError::Config("sentinel needs the monitored service's name".into()));
        }
        let mut addrs = Vec::with_capacity(sentinels.len());
        for node in sentinels {
            let url = node_url(node, tls, 26379)?;
            addrs.push(parse_url(&url)?.addr().clone());
        }
        let description = format!(
            "sentinel {service:?} via [{}] (db {})",
            sentinels.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", "),
            self.db.unwrap_or(0)
        );
        let target = Target::Sentinel(SentinelTarget {
            sentinels: addrs,
            service: service.to_owned(),
            db: self.db.unwrap_or(0),
            username: self.username.clone(),
            password: self.password.clone(),
            sentinel_username: self.sentinel_username.clone(),
            sentinel_password: self.sentinel_password.clone(),
            tls,
            acks: self.replica_acks.unwrap_or_default(),
            ack_timeout,
        });
        Ok((target, description))
    }

    fn cluster_target(&self, nodes: &[String], tls: bool) -> Result<(Target, String), RedisBackendError> {
        if nodes.is_empty() {
            return Err(RedisBackendError::Config("cluster needs at least one seed node".into()));
        }
        if self.db.is_some_and(|db| db != 0) {
            return Err(RedisBackendError::Config("a Redis Cluster has only db 0".into()));
        }
        let mut infos = Vec::with_capacity(nodes.len());
        for node in nodes {
            let url = node_url(node, tls, 6379)?;
            let info = parse_url(&url)?;
            if info.redis_settings().db() != 0 {
                return Err(RedisBackendError::Config(format!(
                    "cluster node {} names a db; a Redis Cluster has only db 0",
                    redact_url(&url)
                )));
            }
            infos.push(self.apply_auth(info));
        }
        let first_tls = infos.first().is_some_and(|i| is_tls(i.addr()));
        if infos.iter().any(|i| is_tls(i.addr()) != first_tls) {
            return Err(RedisBackendError::Config("cluster nodes mix TLS (rediss://) and plain nodes".into()));
        }
        let description = format!("cluster [{}]", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", "));
        Ok((Target::Cluster(infos), description))
    }

    fn single_target(&self, tls: bool, had_url: bool) -> Result<(Target, String), RedisBackendError> {
        let (info, mut description) = if let Some(url) = &self.url {
            (parse_url(url)?, redact_url(url))
        } else if let Some(path) = &self.unix {
            let info = ConnectionAddr::Unix(path.clone()).into_connection_info().map_err(config)?;
            (info, format!("unix:{}", path.display()))
        } else {
            let host = self.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
            let port = self.port.unwrap_or(6379);
            let url = node_url(&format!("{host}:{port}"), tls, 6379)?;
            (parse_url(&url)?, url)
        };
        let mut info = self.apply_auth(info);
        if let Some(db) = self.db {
            let settings = info.redis_settings().clone().set_db(db);
            info = info.set_redis_settings(settings);
        }
        if !had_url || self.db.is_some() {
            description.push_str(&format!(" (db {})", info.redis_settings().db()));
        }
        Ok((Target::Single(info), description))
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        if self.tls_root_cert.is_none() && self.tls_client_cert.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .tls_client_cert
                .clone()
                .map(|(client_cert, client_key)| ClientTlsConfig { client_cert, client_key }),
            root_cert: self.tls_root_cert.clone(),
        })
    }

    fn apply_auth(&self, info: ConnectionInfo) -> ConnectionInfo {
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        info.set_redis_settings(settings)
    }
}

impl Resolved {
    fn uses_tls(&self) -> bool {
        match &self.target {
            Target::Single(info) => is_tls(info.addr()),
            Target::Cluster(nodes) => nodes.iter().any(|n| is_tls(n.addr())),
            Target::Sentinel(s) => s.tls,
        }
    }

    /// The backend; `eager`: connect now (standalone and cluster; a Sentinel group is looked up
    /// on first use either way).
    async fn into_backend(self, eager: bool) -> Result<RedisBackend, RedisBackendError> {
        if self.uses_tls() {
            install_crypto_provider();
        }
        let description = self.description.clone();
        let (response, connect) = (self.response_timeout, self.connect_timeout);
        let config_err = |source| RedisBackendError::Connect { target: description.clone(), source };
        let direct = |target: Option<DirectTarget>| {
            (self.direct_max > 0).then(|| Arc::new(DirectPool::new(target, self.direct_max, connect, response)))
        };
        let mut cluster_direct = None;
        let (conn, direct, wait_source) = match self.target {
            Target::Single(info) => {
                let pool = DirectTarget::of(&info).and_then(|t| direct(Some(t)));
                let client = match self.certs {
                    Some(certs) => Client::build_with_tls(info, certs),
                    None => Client::open(info),
                }
                .map_err(config_err)?;
                let config = manager_config(response, connect, self.retries);
                let manager = if eager {
                    ConnectionManager::new_with_config(client.clone(), config).await?
                } else {
                    ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(config_err)?
                };
                (RedisConnection::Standalone(manager), pool, WaitSource::Client(Box::new(client)))
            }
            Target::Cluster(nodes) => {
                // The slot map (for the replicas' acknowledgements), and direct connections per
                // master with the first seed's credentials (redis-rs uses them for every node
                // too); none over TLS.
                if let Some(first) = nodes.first() {
                    let settings = first.redis_settings();
                    cluster_direct = Some(ClusterDirect::new(
                        !is_tls(first.addr()) && self.direct_max > 0,
                        settings.username().map(str::to_owned),
                        settings.password().map(str::to_owned),
                        self.direct_max,
                        connect,
                        response,
                    ));
                }
                // The lock's waits block for up to the lock wait: their connections need a
                // response timeout of their own (the wait bounds them).
                let mut waits = cluster_builder(nodes.clone(), WAIT_RESPONSE_TIMEOUT, connect, self.retries);
                let mut builder = cluster_builder(nodes, response, connect, self.retries);
                if let Some(certs) = self.certs {
                    waits = waits.certs(certs.clone());
                    builder = builder.certs(certs);
                }
                let waits: ClusterClient = waits.build().map_err(config_err)?;
                let client: ClusterClient = builder.build().map_err(config_err)?;
                let conn = if eager {
                    client.get_async_connection_with_config(cluster_config(response, connect)).await?
                } else {
                    client.get_pending_async_connection_with_config(cluster_config(response, connect))
                };
                (RedisConnection::Cluster(conn), None, WaitSource::Cluster(Box::new(waits)))
            }
            Target::Sentinel(s) => {
                let pool = if s.tls { None } else { direct(None) };
                let (sentinels, master_settings) = sentinel_infos(&s).map_err(config_err)?;
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(response))
                    .set_connection_timeout(Some(connect));
                let conn = SentinelConnection::new(SentinelSettings {
                    sentinels,
                    master_settings,
                    tls: s.tls,
                    certs: self.certs,
                    service: s.service,
                    db: s.db,
                    config,
                    acks: s.acks,
                    ack_timeout: s.ack_timeout,
                    // One Sentinel: a connection and two queries; the master: two connections and
                    // a query.
                    step_timeout: connect.saturating_mul(3).saturating_add(response.saturating_mul(3)),
                    direct: pool.clone(),
                });
                (RedisConnection::Sentinel(conn), pool, WaitSource::Sentinel)
            }
        };
        Ok(RedisBackend::new(Parts {
            conn,
            target: self.description,
            direct,
            cluster_direct,
            cluster_acks: self.cluster_acks,
            wait_source,
            response_timeout: response,
            connect_timeout: connect,
        }))
    }
}

/// The Sentinels' connection infos (their credentials) and the master's settings (db,
/// credentials) of a Sentinel target.
fn sentinel_infos(s: &SentinelTarget) -> Result<(Vec<ConnectionInfo>, RedisConnectionInfo), redis::RedisError> {
    let mut sentinel_settings = RedisConnectionInfo::default();
    if let Some(u) = &s.sentinel_username {
        sentinel_settings = sentinel_settings.set_username(u);
    }
    if let Some(p) = &s.sentinel_password {
        sentinel_settings = sentinel_settings.set_password(p);
    }
    let sentinels = s
        .sentinels
        .iter()
        .map(|addr| Ok(addr.clone().into_connection_info()?.set_redis_settings(sentinel_settings.clone())))
        .collect::<Result<Vec<_>, redis::RedisError>>()?;
    let mut master = RedisConnectionInfo::default().set_db(s.db);
    if let Some(u) = &s.username {
        master = master.set_username(u);
    }
    if let Some(p) = &s.password {
        master = master.set_password(p);
    }
    Ok((sentinels, master))
}

fn is_tls(addr: &ConnectionAddr) -> bool {
    matches!(addr, ConnectionAddr::TcpTls { .. })
}

/// rustls needs a process-wide crypto provider; install ring's unless the application
/// installed one already.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn config(e: redis::RedisError) -> RedisBackendError {
    RedisBackendError::Config(e.to_string())
}

/// A node given as `host:port` or as a URL, as a URL (`rediss://` when `tls`).
fn node_url(node: &str, tls: bool, default_port: u16) -> Result<String, RedisBackendError> {
    if node.contains("://") {
        if tls && !node.to_ascii_lowercase().starts_with("rediss://") {
            return Err(RedisBackendError::InvalidUrl {
                url: redact_url(node),
                reason: "TLS is on, but this node is not a rediss:// URL".into(),
            });
        }
        return Ok(node.to_owned());
    }
    let node = node.trim();
    if node.is_empty() {
        return Err(RedisBackendError::Config("an empty node address".into()));
    }
    let has_port = match node.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => node.contains(':'),
    };
    let scheme = if tls { "rediss" } else { "redis" };
    Ok(if has_port { format!("{scheme}://{node}") } else { format!("{scheme}://{node}:{default_port}") })
}

fn parse_url(url: &str) -> Result<ConnectionInfo, RedisBackendError> {
    let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
    match scheme.as_str() {
        "redis" | "valkey" | "rediss" | "valkeys" | "redis+unix" | "valkey+unix" | "unix" if url.contains("://") => {}
        _ => {
            return Err(RedisBackendError::InvalidUrl {
                url: redact_url(url),
                reason: "expected redis://, rediss://, redis+unix://, unix://, redis-cluster:// or redis-sentinel://"
                    .into(),
            });
        }
    }
    url.into_connection_info().map_err(|e| RedisBackendError::InvalidUrl {
        url: redact_url(url),
        // The client's message does not echo the URL; keep only its kind and description.
        reason: e.detail().map_or_else(|| format!("{:?}", e.kind()), str::to_owned),
    })
}

fn manager_config(response: Duration, connect: Duration, retries: usize) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(response))
        .set_connection_timeout(Some(connect))
        .set_number_of_retries(retries)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500))
}

fn cluster_builder(
    nodes: Vec<ConnectionInfo>,
    response: Duration,
    connect: Duration,
    retries: usize,
) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes)
        .response_timeout(response)
        .connection_timeout(connect)
        .retries(u32::try_from(retries).unwrap_or(u32::MAX))
        .min_retry_wait(10)
        .max_retry_wait(500)
}

fn cluster_config(response: Duration, connect: Duration) -> ClusterConfig {
    ClusterConfig::new().set_response_timeout(response).set_connection_timeout(connect)
}
