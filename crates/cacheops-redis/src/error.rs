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
    /// The builder was given contradictory or incomplete settings.
    #[error("invalid Redis backend configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the handshake (eager build only).
    #[error("cannot connect to Redis at {target}")]
    Connect {
        /// Where we tried to connect (password redacted).
        target: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A command or script failed (connection lost, timeout, server error).
    #[error("Redis command failed")]
    Command(#[from] redis::RedisError),
    /// The server answered something the scripts never return.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// Redis answered a command with an error reply (e.g. `NOAUTH …`).
    #[error("Redis answered with an error: {0}")]
    Reply(String),
    /// A direct connection (the hit check's) failed or timed out.
    #[error("Redis connection failed")]
    Io(#[source] std::io::Error),
    /// A write was applied on the Sentinel-managed master but fewer of its replicas than
    /// required acknowledged it in time (`WAIT`), so a failover could lose it: the write is
    /// treated as failed (see
    /// [`RedisBackendBuilder::replica_acks`](crate::RedisBackendBuilder::replica_acks)).
    #[error("Redis write not acknowledged by enough replicas: {acked} of {wanted}")]
    NotAcknowledged {
        /// Replicas required.
        wanted: u64,
        /// Replicas that acknowledged within the timeout.
        acked: u64,
    },
    /// The keys of one call do not share one hash slot (they must: one namespace, one tag).
    #[error("keys of one call span several hash slots: {first:?} and {other:?}")]
    CrossSlot {
        /// A key of the call.
        first: String,
        /// A key in another slot.
        other: String,
    },
}

/// Error replies of a server that is up but not serving right now.
const UNAVAILABLE_CODES: [&str; 6] = ["LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "BUSY"];

fn reply_unavailable(reply: &str) -> bool {
    reply.split(' ').next().is_some_and(|code| UNAVAILABLE_CODES.contains(&code))
}

/// What a caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Dropped,
    Timeout,
    OutOfMemory,
    Unavailable,
    Other,
}

fn classify_client(r: &redis::RedisError) -> Class {
    if r.is_connection_dropped() || r.is_connection_refusal() {
        Class::Dropped
    } else if r.is_timeout() {
        Class::Timeout
    } else if r.code() == Some("OOM") {
        Class::OutOfMemory
    } else if r.is_io_error() || r.code().is_some_and(reply_unavailable) {
        Class::Unavailable
    } else {
        Class::Other
    }
}

impl RedisBackendError {
    fn class(&self) -> Class {
        match self {
            RedisBackendError::Command(r) => classify_client(r),
            RedisBackendError::Connect { source, .. } => match classify_client(source) {
                Class::Other | Class::OutOfMemory => Class::Unavailable,
                c => c,
            },
            RedisBackendError::Io(io) => match io.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Class::Timeout,
                _ => Class::Unavailable,
            },
            RedisBackendError::NotAcknowledged { .. } => Class::Unavailable,
            RedisBackendError::Reply(m) if m.starts_with("OOM") => Class::OutOfMemory,
            RedisBackendError::Reply(m) if reply_unavailable(m) => Class::Unavailable,
            _ => Class::Other,
        }
    }

    /// Whether Redis could not be reached or is not serving right now (refused or dropped
    /// connection, timeout, `LOADING`, `MASTERDOWN`, `READONLY`, …): retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.class(), Class::Dropped | Class::Timeout | Class::Unavailable)
    }

    /// Whether Redis did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.class() == Class::Timeout
    }
}

impl From<RedisBackendError> for BackendError {
    /// Keeps the message (it never contains the cause) and the client's or socket's error as
    /// the source, and says whether the server was unavailable, timed out or out of memory.
    fn from(e: RedisBackendError) -> Self {
        let message = e.to_string();
        let out = match e.class() {
            Class::Dropped => BackendError::connection_dropped(message),
            Class::Timeout => BackendError::timeout(message),
            Class::OutOfMemory => BackendError::out_of_memory(message),
            Class::Unavailable => BackendError::unavailable(message),
            Class::Other => BackendError::new(message),
        };
        match e {
            RedisBackendError::Command(r) | RedisBackendError::Connect { source: r, .. } => out.with_source(r),
            RedisBackendError::Io(io) => out.with_source(io),
            _ => out,
        }
    }
}

/// Replaces the password of a URL (`scheme://user:password@host…`) with `***`.
fn redact_userinfo(url: &str) -> String {
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

/// Replaces the password of a URL (`scheme://user:password@host…`) and the value of every query
/// parameter whose name contains `password` with `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://:s3cret@host:6379/2"), "redis://:***@host:6379/2");
        assert_eq!(redact_url("redis://u:p@ss@host/0"), "redis://u:***@host/0");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("redis+unix:///tmp/r.sock?db=1"), "redis+unix:///tmp/r.sock?db=1");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("redis-sentinel://:a@s1,s2/m?sentinel_password=b&sentinel_username=u"),
            "redis-sentinel://:***@s1,s2/m?sentinel_password=***&sentinel_username=u"
        );
    }
}
