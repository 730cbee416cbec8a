//! [`RedisBackendBuilder`]: where and how to connect.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::backend::{RedisBackend, RedisConnection};
use crate::direct::{DirectPool, DirectTarget};
use crate::error::{RedisBackendError, redact_url};

/// Default time to wait for a reply: short, so that an outage costs little per call.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Default time to wait for a connection to be established.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of reconnection attempts per (re)connection, after the first.
pub const DEFAULT_RETRIES: usize = 1;
/// Default number of direct connections for hit checks (see
/// [`RedisBackendBuilder::direct_connections`]).
pub const DEFAULT_DIRECT_CONNECTIONS: usize = 32;

/// Configures and builds a [`RedisBackend`]; see [`RedisBackend::builder`].
///
/// Exactly one target may be given: a URL, a host/port, a unix socket or cluster nodes
/// (nothing at all means `127.0.0.1:6379`). `db`, `username` and `password` override what a URL
/// says. Everything is validated by [`build`](Self::build) / [`build_lazy`](Self::build_lazy).
#[derive(Clone, Default)]
pub struct RedisBackendBuilder {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    unix: Option<PathBuf>,
    cluster: Option<Vec<String>>,
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
}

impl RedisBackendBuilder {
    /// A builder with defaults (`127.0.0.1:6379`, db 0, 250 ms response / 1 s connect timeouts).
    pub fn new() -> Self {
        Self::default()
    }

    /// Connect by URL: `redis://[user][:password@]host[:port][/db]`,
    /// `redis+unix:///path/to/socket?db=N` (or `unix://`). `rediss://` needs TLS support, which
    /// this build lacks: [`build`](Self::build) returns [`RedisBackendError::TlsUnsupported`].
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

    /// The database number (standalone only; a cluster has only db 0).
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
    /// too; everything else (misses, writes, scripts) always uses the shared connection. Cluster backends have no direct connections
    /// (setting a non-zero number for one is a configuration error).
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
        let direct_max = self.direct_connections.unwrap_or(DEFAULT_DIRECT_CONNECTIONS);
        let (target, description, timeouts) = self.resolve()?;
        let (response_timeout, connect_timeout, retries) = timeouts;
        let direct = direct_pool(&target, direct_max, connect_timeout, response_timeout);
        let connect_err = |source| RedisBackendError::Connect { target: description.clone(), source };
        let conn = match target {
            Target::Single(info) => {
                let client = Client::open(info).map_err(connect_err)?;
                let config = manager_config(response_timeout, connect_timeout, retries);
                let manager = ConnectionManager::new_with_config(client, config).await.map_err(connect_err)?;
                RedisConnection::Standalone(manager)
            }
            Target::Cluster(nodes) => {
                let client =
                    cluster_builder(nodes, response_timeout, connect_timeout, retries).build().map_err(connect_err)?;
                let conn = client
                    .get_async_connection_with_config(cluster_config(response_timeout, connect_timeout))
                    .await
                    .map_err(connect_err)?;
                RedisConnection::Cluster(conn)
            }
        };
        let backend = RedisBackend::new(conn, description.clone(), direct);
        backend.load_scripts().await.map_err(|e| match e {
            RedisBackendError::Command(source) => RedisBackendError::Connect { target: description, source },
            other => other,
        })?;
        Ok(backend)
    }

    /// Builds without connecting: the connection is made on first use (and remade after a
    /// failure), so this succeeds while Redis is down. Configuration errors are still reported.
    /// Must be called within a Tokio runtime (it is `async` for that reason).
    pub async fn build_lazy(self) -> Result<RedisBackend, RedisBackendError> {
        let direct_max = self.direct_connections.unwrap_or(DEFAULT_DIRECT_CONNECTIONS);
        let (target, description, timeouts) = self.resolve()?;
        let (response_timeout, connect_timeout, retries) = timeouts;
        let direct = direct_pool(&target, direct_max, connect_timeout, response_timeout);
        let config_err = |source| RedisBackendError::Connect { target: description.clone(), source };
        let conn = match target {
            Target::Single(info) => {
                let client = Client::open(info).map_err(config_err)?;
                let config = manager_config(response_timeout, connect_timeout, retries);
                RedisConnection::Standalone(
                    ConnectionManager::new_lazy_with_config(client, config).map_err(config_err)?,
                )
            }
            Target::Cluster(nodes) => {
                let client =
                    cluster_builder(nodes, response_timeout, connect_timeout, retries).build().map_err(config_err)?;
                RedisConnection::Cluster(
                    client.get_pending_async_connection_with_config(cluster_config(response_timeout, connect_timeout)),
                )
            }
        };
        Ok(RedisBackend::new(conn, description, direct))
    }

    #[allow(clippy::type_complexity)]
    fn resolve(self) -> Result<(Target, String, (Duration, Duration, usize)), RedisBackendError> {
        let response_timeout = self.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let retries = self.retries.unwrap_or(DEFAULT_RETRIES);
        if response_timeout.is_zero() || connect_timeout.is_zero() {
            return Err(RedisBackendError::Config("timeouts must be greater than zero".into()));
        }
        let timeouts = (response_timeout, connect_timeout, retries);
        let tcp = self.host.is_some() || self.port.is_some();
        let given = [self.url.is_some(), tcp, self.unix.is_some(), self.cluster.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(RedisBackendError::Config("give only one of url, host/port, unix_socket and cluster".into()));
        }
        if let Some(db) = self.db
            && db < 0
        {
            return Err(RedisBackendError::Config(format!("db must not be negative, got {db}")));
        }

        if let Some(nodes) = &self.cluster {
            if nodes.is_empty() {
                return Err(RedisBackendError::Config("cluster needs at least one seed node".into()));
            }
            if self.db.is_some_and(|db| db != 0) {
                return Err(RedisBackendError::Config("a Redis Cluster has only db 0".into()));
            }
            if self.direct_connections.is_some_and(|n| n > 0) {
                return Err(RedisBackendError::Config(
                    "direct_connections applies to a standalone server; a cluster backend has none".into(),
                ));
            }
            let mut infos = Vec::with_capacity(nodes.len());
            for node in nodes {
                let url = if node.contains("://") { node.clone() } else { format!("redis://{node}") };
                let mut info = parse_url(&url)?;
                if info.redis_settings().db() != 0 {
                    return Err(RedisBackendError::Config(format!(
                        "cluster node {} names a db; a Redis Cluster has only db 0",
                        redact_url(&url)
                    )));
                }
                info = self.apply_auth(info);
                infos.push(info);
            }
            let description =
                format!("cluster [{}]", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", "));
            return Ok((Target::Cluster(infos), description, timeouts));
        }

        let (info, mut description) = if let Some(url) = &self.url {
            (parse_url(url)?, redact_url(url))
        } else if let Some(path) = &self.unix {
            let info = ConnectionAddr::Unix(path.clone())
                .into_connection_info()
                .map_err(|e| RedisBackendError::Config(e.to_string()))?;
            (info, format!("unix:{}", path.display()))
        } else {
            let host = self.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
            let port = self.port.unwrap_or(6379);
            let info = ConnectionAddr::Tcp(host.clone(), port)
                .into_connection_info()
                .map_err(|e| RedisBackendError::Config(e.to_string()))?;
            (info, format!("{host}:{port}"))
        };
        let mut info = self.apply_auth(info);
        if let Some(db) = self.db {
            let settings = info.redis_settings().clone().set_db(db);
            info = info.set_redis_settings(settings);
        }
        if self.url.is_none() || self.db.is_some() {
            description.push_str(&format!(" (db {})", info.redis_settings().db()));
        }
        Ok((Target::Single(info), description, timeouts))
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

/// The direct-connection pool of a standalone target (none for a cluster, or with 0 connections).
fn direct_pool(target: &Target, max: usize, connect: Duration, response: Duration) -> Option<DirectPool> {
    match target {
        Target::Single(info) if max > 0 => DirectTarget::of(info).map(|t| DirectPool::new(t, max, connect, response)),
        _ => None,
    }
}

fn parse_url(url: &str) -> Result<ConnectionInfo, RedisBackendError> {
    let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
    match scheme.as_str() {
        "rediss" | "valkeys" => {
            return Err(RedisBackendError::TlsUnsupported { url: redact_url(url) });
        }
        "redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix" if url.contains("://") => {}
        _ => {
            return Err(RedisBackendError::InvalidUrl {
                url: redact_url(url),
                reason: "expected redis://, redis+unix:// or unix://".into(),
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
