//! Connecting the Redis backend from a URL.

use std::sync::Arc;

use cacheops_core::protocol::Backend;
use cacheops_redis::RedisBackend;

use crate::error::Error;
use crate::remote_lock::RemoteLock;

/// Connects to Redis. `eager`: fail now if the server is unreachable (degrade off); otherwise
/// connect on first use, so that an application starts while Redis is down. Also returns the
/// cross-process dog-pile lock for standalone servers.
pub(crate) async fn connect(url: &str, eager: bool) -> Result<(Arc<dyn Backend>, Option<RemoteLock>), Error> {
    let builder = RedisBackend::builder().url(url);
    let backend = if eager { builder.build().await } else { builder.build_lazy().await };
    let backend = backend?;
    let remote = RemoteLock::new(backend.connection(), url);
    Ok((Arc::new(backend) as Arc<dyn Backend>, remote))
}
