//! The dog-pile lock across processes, on a standalone Redis (see [`crate::lock`]).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cacheops_core::protocol::BackendError;

use crate::cache::Cache;
use crate::lock::{Acquired, Guard, stale_copy};

/// Cross-process locking through Redis.
pub(crate) struct RemoteLock {
    conn: cacheops_redis::RedisConnection,
    client: redis::Client,
    pool: Mutex<Vec<redis::aio::MultiplexedConnection>>,
}

impl std::fmt::Debug for RemoteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteLock")
    }
}

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

const SIGNAL_TTL_MS: u64 = 2000;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

pub(crate) enum Remote {
    Got(String),
    Busy(Option<u64>),
}

fn redis_err(e: redis::RedisError) -> BackendError {
    cacheops_redis::RedisBackendError::Command(e).into()
}

impl RemoteLock {
    /// A remote lock for a standalone Redis URL (`None` for cluster or unparsable URLs: the lock is
    /// then in process only).
    pub(crate) fn new(conn: cacheops_redis::RedisConnection, url: &str) -> Option<Self> {
        if matches!(conn, cacheops_redis::RedisConnection::Cluster(_)) {
            return None;
        }
        let client = redis::Client::open(url).ok()?;
        Some(RemoteLock { conn, client, pool: Mutex::new(Vec::new()) })
    }

    pub(crate) async fn try_acquire(
        &self,
        lock_key: &str,
        signal_key: &str,
        ttl: Duration,
    ) -> Result<Remote, BackendError> {
        let token = format!("{:016x} {}", rand::random::<u64>(), now_ms());
        let mut conn = self.conn.clone();
        let v: redis::Value = redis::Script::new(ACQUIRE)
            .key(lock_key)
            .key(signal_key)
            .arg(&token)
            .arg(u64::try_from(cacheops_core::time::cap(ttl).as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(match v {
            redis::Value::Int(1) => Remote::Got(token),
            redis::Value::BulkString(b) => {
                let started = String::from_utf8_lossy(&b).split(' ').nth(1).and_then(|s| s.parse().ok());
                Remote::Busy(started)
            }
            _ => Remote::Busy(None),
        })
    }

    pub(crate) async fn release(&self, cache: &Cache, lock_key: &str, signal_key: &str, token: &str) {
        let mut conn = self.conn.clone();
        let call = async {
            redis::Script::new(RELEASE)
                .key(lock_key)
                .key(signal_key)
                .arg(token)
                .arg(SIGNAL_TTL_MS)
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(redis_err)
        };
        if cache.gate(call).await.is_err() {
            tracing::debug!("cacheops could not release a dog-pile lock; it expires by itself");
        }
    }

    /// Blocks until the signal list has an element or `deadline`. Returns whether signalled.
    /// With the breaker open it does not try (the caller computes).
    pub(crate) async fn wait(&self, cache: &Cache, signal_key: &str, deadline: Instant) -> bool {
        if !cache.inner.health.closed() {
            return false;
        }
        let pooled = self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(Duration::from_secs(1)));
                match self.client.get_multiplexed_async_connection_with_config(&config).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = cache.backend_failed(redis_err(e));
                        return false;
                    }
                }
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
            return false;
        }
        let secs = format!("{:.3}", remaining.as_secs_f64().max(0.001));
        let mut cmd = redis::cmd("BLMOVE");
        cmd.arg(signal_key).arg(signal_key).arg("LEFT").arg("LEFT").arg(secs);
        let fut = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(remaining.saturating_add(Duration::from_secs(1)), fut).await {
            Ok(Ok(v)) => {
                self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
                v.is_some()
            }
            Ok(Err(e)) => {
                let _ = cache.backend_failed(redis_err(e));
                false
            }
            Err(_) => false,
        }
    }

    /// Takes the Redis lock of the key `guard` holds in process, or waits for its holder.
    pub(crate) async fn acquire(
        &self,
        cache: &Cache,
        mut guard: Guard,
        hash: &str,
        deadline: Instant,
        stale: Option<Duration>,
    ) -> Acquired {
        let remote = self;
        let lock_key = cache.keys().lock(hash);
        let signal_key = format!("{lock_key}:signal");
        match cache.gate(remote.try_acquire(&lock_key, &signal_key, cache.inner.locks.ttl)).await {
            Ok(Remote::Got(token)) => {
                guard.remote_token = Some(token);
                Acquired::Held(guard)
            }
            Ok(Remote::Busy(started)) => {
                if let (Some(w), Some(started)) = (stale, started)
                    && now_ms().saturating_sub(started) <= u64::try_from(w.as_millis()).unwrap_or(u64::MAX)
                    && let Some(b) = stale_copy(cache, hash).await
                {
                    return Acquired::Stale(b);
                }
                if remote.wait(cache, &signal_key, deadline).await {
                    // Dropping the guard wakes this process's waiters: they look up again too.
                    Acquired::Woken
                } else {
                    // Timed out (a crashed holder, or a slow one): compute here, still holding the
                    // in-process slot so that this process computes once.
                    Acquired::Held(guard)
                }
            }
            // The breaker was open (no network call), or the call failed (counted and logged by the
            // gate, which opened the breaker): lock in process only.
            Err(_) => Acquired::Held(guard),
        }
    }
}
