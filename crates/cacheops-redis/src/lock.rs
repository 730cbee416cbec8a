//! The dog-pile lock across processes ([`Backend::lock_acquire`](cacheops_core::Backend) and its
//! companions) on every topology: a lock key taken with `SET NX PX`, and a signal list that its
//! holder pushes to on release and that waiters watch with `BLMOVE` (the list is moved onto
//! itself, so every waiter sees the element). Both keys carry the namespace's hash tag: one slot.
//!
//! A blocking `BLMOVE` would hold up every other command of a shared (multiplexed) connection,
//! so waits use connections of their own, kept in a small pool: plain ones for a standalone
//! server or a Sentinel master, cluster connections for a cluster. A backend built from a
//! connection it cannot open more of polls the signal list instead.

use std::sync::Mutex;
use std::time::Duration;

use cacheops_core::protocol::LockAttempt;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use crate::backend::RedisBackend;
use crate::error::RedisBackendError;
use crate::ops::ms;

const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
local v = redis.call('GET', KEYS[1])
if v then return v end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
";

/// How often a backend without connections of its own for waiting polls the signal list.
const POLL: Duration = Duration::from_millis(10);

/// Where waits get their connections.
pub(crate) enum WaitSource {
    /// A standalone server: connections from this client.
    Client(Box<Client>),
    /// A Sentinel group: connections to its current master.
    Sentinel,
    /// A cluster: more cluster connections from this client.
    Cluster(Box<redis::cluster::ClusterClient>),
    /// A connection given by the caller: poll.
    Poll,
}

/// Connections kept for waits.
#[derive(Default)]
pub(crate) struct WaitPool {
    plain: Mutex<Vec<(String, MultiplexedConnection)>>,
    cluster: Mutex<Vec<ClusterConnection>>,
}

/// A wait connection's config: no response timeout of its own (the wait bounds it).
fn wait_config(connect: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new().set_response_timeout(None).set_connection_timeout(Some(connect))
}

impl RedisBackend {
    pub(crate) async fn lock_acquire_checked(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<LockAttempt, RedisBackendError> {
        crate::slot::check_same_slot([lock_key, signal_key])?;
        let mut conn = self.connection();
        let v: redis::Value =
            Script::new(ACQUIRE).key(lock_key).key(signal_key).arg(token).arg(ms(ttl)).invoke_async(&mut conn).await?;
        Ok(match v {
            redis::Value::Int(1) => LockAttempt::Acquired,
            redis::Value::BulkString(b) => LockAttempt::Busy(Some(String::from_utf8_lossy(&b).into_owned())),
            _ => LockAttempt::Busy(None),
        })
    }

    pub(crate) async fn lock_release_checked(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        signal_ttl: Duration,
    ) -> Result<(), RedisBackendError> {
        crate::slot::check_same_slot([lock_key, signal_key])?;
        let mut conn = self.connection();
        let _: i64 = Script::new(RELEASE)
            .key(lock_key)
            .key(signal_key)
            .arg(token)
            .arg(ms(signal_ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn lock_wait_checked(
        &self,
        signal_key: &str,
        timeout: Duration,
    ) -> Result<bool, RedisBackendError> {
        if timeout.is_zero() {
            return Ok(false);
        }
        let secs = format!("{:.3}", timeout.as_secs_f64().max(0.001));
        let mut cmd = redis::cmd("BLMOVE");
        cmd.arg(signal_key).arg(signal_key).arg("LEFT").arg("LEFT").arg(&secs);
        // The server ends the BLMOVE at `timeout`; this bounds a server that does not answer.
        let bound = timeout.saturating_add(self.response_timeout());
        match self.wait_source() {
            WaitSource::Poll => self.poll_signal(signal_key, timeout).await,
            WaitSource::Cluster(client) => {
                let pooled = self.waits().cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
                let mut conn = match pooled {
                    Some(c) => c,
                    None => client.get_async_connection().await?,
                };
                let v = bounded(bound, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await?;
                self.waits().cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
                Ok(v.is_some())
            }
            source @ (WaitSource::Client(_) | WaitSource::Sentinel) => {
                let client = match (source, self.sentinel()) {
                    (WaitSource::Client(c), _) => Client::clone(c),
                    (_, Some(s)) => s.master().await?.client.clone(),
                    _ => return self.poll_signal(signal_key, timeout).await,
                };
                let addr = client.get_connection_info().addr().to_string();
                let pooled = {
                    let mut pool = self.waits().plain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Connections to another server (before a failover) are dropped.
                    pool.retain(|(a, _)| *a == addr);
                    pool.pop()
                };
                let mut conn = match pooled {
                    Some((_, c)) => c,
                    None => {
                        client
                            .get_multiplexed_async_connection_with_config(&wait_config(self.connect_timeout()))
                            .await?
                    }
                };
                let v = bounded(bound, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await?;
                self.waits().plain.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((addr, conn));
                Ok(v.is_some())
            }
        }
    }

    /// Waits by polling `LLEN` of the signal list on the shared connection.
    async fn poll_signal(&self, signal_key: &str, timeout: Duration) -> Result<bool, RedisBackendError> {
        let deadline = tokio::time::Instant::now() + cacheops_core::time::cap(timeout);
        let mut conn = self.connection();
        loop {
            let n: i64 = redis::cmd("LLEN").arg(signal_key).query_async(&mut conn).await?;
            if n > 0 {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }
}

/// `fut`, failing with a timeout after `bound`.
async fn bounded<T>(
    bound: Duration,
    fut: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, RedisBackendError> {
    match tokio::time::timeout(cacheops_core::time::cap(bound), fut).await {
        Ok(v) => Ok(v?),
        Err(_) => Err(RedisBackendError::Io(std::io::ErrorKind::TimedOut.into())),
    }
}
