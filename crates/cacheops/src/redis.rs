//! Connecting the Redis backend from a URL.

use std::sync::Arc;

use cacheops_core::protocol::Backend;
use cacheops_redis::RedisBackend;

use crate::builder::TlsFiles;
use crate::error::Error;

/// Connects to Redis (any topology `RedisBackendBuilder::url` accepts). `eager`: fail now if
/// the server is unreachable (degrade off); otherwise connect on first use, so that an
/// application starts while Redis is down. `tls`: root and client certificates (PEM).
pub(crate) async fn connect(url: &str, eager: bool, tls: &TlsFiles) -> Result<Arc<dyn Backend>, Error> {
    let mut builder = RedisBackend::builder().url(url);
    if let Some(ca) = &tls.root_cert {
        builder = builder.tls_root_cert(ca.clone());
    }
    if let Some((cert, key)) = &tls.client_cert {
        builder = builder.tls_client_cert(cert.clone(), key.clone());
    }
    let backend = if eager { builder.build().await } else { builder.build_lazy().await };
    Ok(Arc::new(backend?) as Arc<dyn Backend>)
}
