//! Key derivation: every key of one namespace shares one Redis Cluster hash tag.
//!
//! Layout (see `docs/redis-data-model.md`): `{co:<prefix>}:<version>:<kind>:<rest>`.

use std::time::Duration;

use crate::dnf::Conj;

/// Version of the key layout and value format. Bumped on any incompatible change, so that an old
/// and a new deployment sharing one Redis never read each other's data.
pub const SCHEMA_VERSION: u32 = 3;

/// Characters a prefix may not contain: they would break the hash tag or the key structure.
pub const FORBIDDEN_PREFIX_CHARS: &[char] = &['{', '}', ' ', '\n', '\r', '\t'];

/// The keys of one namespace (one prefix).
///
/// ```
/// use cacheops_core::KeySpace;
/// let ks = KeySpace::new("tenant1").unwrap();
/// assert_eq!(ks.epoch(), "{co:tenant1}:3:e");
/// assert_eq!(ks.boot(), "{co:tenant1}:3:b");
/// assert_eq!(ks.table("post"), "{co:tenant1}:3:t:post");
/// assert!(KeySpace::new("bad{prefix").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpace {
    base: String,
}

/// A prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache prefix {prefix:?}: it may not contain braces or whitespace")]
pub struct InvalidPrefix {
    /// The rejected prefix.
    pub prefix: String,
}

impl KeySpace {
    /// A namespace for `prefix` (may be empty).
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.contains(FORBIDDEN_PREFIX_CHARS) {
            return Err(InvalidPrefix { prefix: prefix.to_owned() });
        }
        Ok(KeySpace { base: format!("{{co:{prefix}}}:{SCHEMA_VERSION}:") })
    }

    /// The common beginning of every key of this namespace (hash tag included).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The epoch stamp: part of every value's stamp vector, deleted by `invalidate_all`.
    pub fn epoch(&self) -> String {
        format!("{}e", self.base)
    }

    /// The server identity the namespace was last verified on (the `run_id` of the Redis
    /// process): every script replaces it, and deletes the epoch, when the server it runs on is
    /// another one (a restart, possibly from an older snapshot); a hit requires it to equal the
    /// identity of the server that answered.
    pub fn boot(&self) -> String {
        format!("{}b", self.base)
    }

    /// The scheme registration counter.
    pub fn seq(&self) -> String {
        format!("{}n", self.base)
    }

    /// A cached query result.
    pub fn value(&self, hash: &str) -> String {
        format!("{}q:{hash}", self.base)
    }

    /// A table's stamp, deleted by `invalidate_model`.
    pub fn table(&self, table: &str) -> String {
        format!("{}t:{}", self.base, escape_table(table))
    }

    /// A table's schemes (hash: scheme → registration sequence number).
    pub fn schemes(&self, table: &str) -> String {
        format!("{}s:{}", self.base, escape_table(table))
    }

    /// A table's in-flight writers (hash: writer id → `"<mark seq> <expiry ms>"`).
    pub fn writers(&self, table: &str) -> String {
        format!("{}w:{}", self.base, escape_table(table))
    }

    /// The beginning of every conj key of a table; the rendered conj follows.
    pub fn conj_prefix(&self, table: &str) -> String {
        format!("{}c:{}:", self.base, escape_table(table))
    }

    /// The conj stamp key of a conj.
    pub fn conj(&self, table: &str, conj: &Conj) -> String {
        let mut key = self.conj_prefix(table);
        key.push_str(&conj.rendered());
        key
    }

    /// The dog-pile lock of a value key.
    pub fn lock(&self, hash: &str) -> String {
        format!("{}l:{hash}", self.base)
    }

    /// A simple-cache (time-only) entry.
    pub fn simple(&self, key: &str) -> String {
        format!("{}u:{key}", self.base)
    }
}

fn escape_table(table: &str) -> String {
    if !table.contains([':', '{', '}', '%']) {
        return table.to_owned();
    }
    table.replace('%', "%25").replace(':', "%3A").replace('{', "%7B").replace('}', "%7D")
}

/// The boot key ([`KeySpace::boot`]) of the namespace an epoch key belongs to.
///
/// ```
/// let ks = cacheops_core::KeySpace::new("p").unwrap();
/// assert_eq!(cacheops_core::keys::boot_of_epoch(&ks.epoch()), ks.boot());
/// ```
pub fn boot_of_epoch(epoch_key: &str) -> String {
    let mut k = epoch_key.strip_suffix('e').unwrap_or(epoch_key).to_owned();
    k.push('b');
    k
}

/// The TTL of conj stamps referenced by a value that lives `timeout`: they must outlive it.
pub fn conj_ttl(timeout: Duration) -> Duration {
    crate::time::cap(timeout.saturating_mul(2).saturating_add(Duration::from_secs(10)))
}

/// Hashes the parts that identify a cached result into a hex digest.
///
/// Parts are length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ.
pub fn hash_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = sha1_smol::Sha1::new();
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_parts_is_unambiguous() {
        assert_ne!(hash_parts([b"ab".as_ref(), b"c"]), hash_parts([b"a".as_ref(), b"bc"]));
        assert_eq!(hash_parts([b"x".as_ref()]).len(), 40);
    }

    #[test]
    fn tables_with_colons_are_escaped() {
        let ks = KeySpace::new("").unwrap();
        assert_eq!(ks.table("a:b"), "{co:}:3:t:a%3Ab");
    }
}
