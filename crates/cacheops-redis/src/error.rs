//! The crate's error type.

use cacheops_core::BackendError;

/// Everything that can go wrong when building or using a [`crate::RedisBackend`].
///
/// Messages never contain a password: URLs are shown with their password replaced by `***`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBackendError {
    /// The URL could not be parsed or uses an unsupported scheme.
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `rediss://` (TLS) URL, but this build has no TLS support.
    #[error(
        "Redis URL {url} asks for TLS, but cacheops-redis was built without TLS support; \
         use redis:// or a TLS-terminating proxy"
    )]
    TlsUnsupported {
        /// The URL, password redacted.
        url: String,
    },
    /// The builder was given contradictory or incomplete settings.
    #[error("invalid Redis backend configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the handshake (eager build only).
    #[error("cannot connect to Redis at {target}: {source}")]
    Connect {
        /// Where we tried to connect (password redacted).
        target: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A command or script failed (connection lost, timeout, server error).
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// The server answered something the scripts never return.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// Redis answered a command with an error reply (e.g. `NOAUTH …`).
    #[error("Redis answered with an error: {0}")]
    Reply(String),
    /// A direct connection (the hit check's) failed or timed out.
    #[error("Redis connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The keys of one call do not share one hash slot (they must: one namespace, one tag).
    #[error("keys of one call span several hash slots: {first:?} and {other:?}")]
    CrossSlot {
        /// A key of the call.
        first: String,
        /// A key in another slot.
        other: String,
    },
}

impl From<RedisBackendError> for BackendError {
    fn from(e: RedisBackendError) -> Self {
        let (dropped, oom) = match &e {
            RedisBackendError::Command(r) => (r.is_connection_dropped() || r.is_connection_refusal(), r.code() == Some("OOM")),
            RedisBackendError::Reply(m) => (false, m.starts_with("OOM")),
            _ => (false, false),
        };
        if dropped {
            BackendError::connection_dropped(e.to_string())
        } else if oom {
            BackendError::out_of_memory(e.to_string())
        } else {
            BackendError::new(e.to_string())
        }
    }
}

/// Replaces the password of a URL (`scheme://user:password@host…`) with `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..rest_start], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/2"),
            "redis://:***@host:6379/2"
        );
        assert_eq!(redact_url("redis://u:p@ss@host/0"), "redis://u:***@host/0");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock?db=1"),
            "redis+unix:///tmp/r.sock?db=1"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
