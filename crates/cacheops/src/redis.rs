//! Connecting the Redis backend from a URL.
use std::sync::Arc;
use cacheops_core::protocol::Backend;
use crate::error::Error;
pub(crate) async fn connect(url: &str, _eager: bool) -> Result<Arc<dyn Backend>, Error> {
    Err(Error::Redis(format!("not yet: {url}")))
}
