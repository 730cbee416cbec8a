//! Connecting the Redis backend from a URL.

use std::sync::Arc;

use cacheops_core::protocol::Backend;
use cacheops_redis::RedisBackend;

use crate::error::Error;

/// Connects to Redis. `eager`: fail now if the server is unreachable (degrade off); otherwise
/// connect on first use, so that an application starts while Redis is down.
pub(crate) async fn connect(url: &str, eager: bool) -> Result<Arc<dyn Backend>, Error> {
    let builder = RedisBackend::builder().url(url);
    let backend = if eager { builder.build().await } else { builder.build_lazy().await };
    backend.map(|b| Arc::new(b) as Arc<dyn Backend>).map_err(|e| Error::Redis(e.to_string()))
}
