//! The multi-host URL forms: `redis-cluster://` and `redis-sentinel://` (and their TLS forms
//! `rediss-cluster://`, `rediss-sentinel://`), which redis-rs does not parse.
//!
//! ```text
//! redis-cluster://[user[:password]@]host[:port][,host[:port]…][/]
//! redis-sentinel://[user[:password]@]host[:port][,host[:port]…]/<service>[/<db>][?sentinel_username=…&sentinel_password=…]
//! ```
//!
//! The user and password are the data nodes' (for a Sentinel URL, the master's); the Sentinels'
//! own credentials go in the query. Ports default to 6379 (cluster) and 26379 (Sentinel).
//! Percent-escapes are decoded in the user, password, service and query values.

use crate::error::{RedisBackendError, redact_url};

/// Which multi-host form a URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Cluster,
    Sentinel,
}

/// A parsed `redis-cluster://` / `redis-sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MultiHostUrl {
    pub(crate) form: Form,
    pub(crate) tls: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) hosts: Vec<(String, u16)>,
    /// Sentinel only.
    pub(crate) service: Option<String>,
    pub(crate) db: Option<i64>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
}

/// `Ok(None)` when `url` is not one of the multi-host forms (redis-rs parses it then).
pub(crate) fn parse_multi_host(url: &str) -> Result<Option<MultiHostUrl>, RedisBackendError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(None);
    };
    let (form, tls) = match scheme.to_ascii_lowercase().as_str() {
        "redis-cluster" | "valkey-cluster" => (Form::Cluster, false),
        "rediss-cluster" | "valkeys-cluster" => (Form::Cluster, true),
        "redis-sentinel" | "valkey-sentinel" => (Form::Sentinel, false),
        "rediss-sentinel" | "valkeys-sentinel" => (Form::Sentinel, true),
        _ => return Ok(None),
    };
    let bad = |reason: &str| RedisBackendError::InvalidUrl { url: redact_url(url), reason: reason.to_owned() };
    if rest.contains('#') {
        return Err(bad("a fragment is not supported"));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = decode(user).map_err(|r| bad(&r))?;
            let pass = pass.map(decode).transpose().map_err(|r| bad(&r))?;
            (Some(user).filter(|u| !u.is_empty()), pass.filter(|p| !p.is_empty()))
        }
    };
    let default_port = if form == Form::Cluster { 6379 } else { 26379 };
    let hosts =
        hosts.split(',').map(|h| host_port(h, default_port)).collect::<Result<Vec<_>, _>>().map_err(|r| bad(&r))?;

    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut parsed = MultiHostUrl {
        form,
        tls,
        username,
        password,
        hosts,
        service: None,
        db: None,
        sentinel_username: None,
        sentinel_password: None,
    };
    match form {
        Form::Cluster => {
            if !segments.is_empty() {
                return Err(bad("a cluster URL has no path: a Redis Cluster has only db 0"));
            }
        }
        Form::Sentinel => {
            let (service, db) = match segments.as_slice() {
                [service] => (*service, None),
                [service, db] => (*service, Some(*db)),
                [] => return Err(bad("a Sentinel URL needs the service name: redis-sentinel://host:port/<service>")),
                _ => return Err(bad("expected /<service>[/<db>] after the Sentinel addresses")),
            };
            parsed.service = Some(decode(service).map_err(|r| bad(&r))?);
            parsed.db = db
                .map(|d| d.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| bad("the db must be a number ≥ 0")))
                .transpose()?;
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value).map_err(|r| bad(&r))?;
        match (form, key) {
            (Form::Sentinel, "sentinel_username") => parsed.sentinel_username = Some(value),
            (Form::Sentinel, "sentinel_password") => parsed.sentinel_password = Some(value),
            _ => {
                return Err(bad(&format!(
                    "unknown query parameter {key:?} (a Sentinel URL takes sentinel_username and sentinel_password)"
                )));
            }
        }
    }
    Ok(Some(parsed))
}

/// `host[:port]` or `[v6 address][:port]`.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty host in the host list".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an IPv6 address without its closing ]")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("expected :port after ]")?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {s:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("invalid port in {s:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decoding (`%XX`), UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("an invalid %-escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        let u = parse_multi_host("redis-cluster://:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002").unwrap().unwrap();
        assert_eq!(u.form, Form::Cluster);
        assert!(!u.tls);
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.username, None);
        assert_eq!(u.hosts, vec![("10.0.0.1".into(), 7000), ("10.0.0.2".into(), 6379), ("::1".into(), 7002)]);
        assert!(parse_multi_host("rediss-cluster://h:1/").unwrap().unwrap().tls);
        for bad in [
            "redis-cluster://h:1/3",
            "redis-cluster://",
            "redis-cluster://h:1,,h:2",
            "redis-cluster://h:0",
            "redis-cluster://h:99999",
            "redis-cluster://h:1?x=1",
            "redis-cluster://h:1#insecure",
            "redis-cluster://[::1",
        ] {
            assert!(parse_multi_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sentinel_urls() {
        let u = parse_multi_host(
            "rediss-sentinel://app:secret@s1,s2:26380/my%20master/3?sentinel_password=sp&sentinel_username=su",
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.form, Form::Sentinel);
        assert!(u.tls);
        assert_eq!((u.username.as_deref(), u.password.as_deref()), (Some("app"), Some("secret")));
        assert_eq!(u.hosts, vec![("s1".into(), 26379), ("s2".into(), 26380)]);
        assert_eq!(u.service.as_deref(), Some("my master"));
        assert_eq!(u.db, Some(3));
        assert_eq!((u.sentinel_username.as_deref(), u.sentinel_password.as_deref()), (Some("su"), Some("sp")));
        for bad in [
            "redis-sentinel://s1:26379",
            "redis-sentinel://s1:26379/",
            "redis-sentinel://s1/m/-1",
            "redis-sentinel://s1/m/x",
            "redis-sentinel://s1/m/1/2",
            "redis-sentinel://s1/m?db=2",
            "redis-sentinel://s1/m%zz",
        ] {
            assert!(parse_multi_host(bad).is_err(), "{bad}");
        }
        // Not a multi-host form: left to redis-rs.
        assert_eq!(parse_multi_host("redis://h:1/2").unwrap(), None);
        assert_eq!(parse_multi_host("no scheme").unwrap(), None);
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = parse_multi_host("redis-sentinel://:hunter2@s1:26379").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
