//! Key derivation: each table of a namespace has a Redis Cluster hash tag of its own, so that a
//! namespace's tables spread over a cluster's nodes, while every key one call of the protocol
//! touches for one table shares one slot.
//!
//! Layout (see `docs/redis-data-model.md`): a table's keys `{ct:<prefix length>:<prefix>:<table>}:<version>:<kind>[:<rest>]`
//! (its epoch copy, server identity, sequence counter, stamps, schemes, writers, conj stamps, and
//! the values whose first table it is); the namespace's own keys `{co:<prefix>}:<version>:<kind>:<rest>`
//! (the epoch of values that read no table, the table registry, locks, simple-cache entries).

use std::time::Duration;

use crate::dnf::Conj;

/// Version of the key layout and value format. Bumped on any incompatible change, so that an old
/// and a new deployment sharing one Redis never read each other's data.
pub const SCHEMA_VERSION: u32 = 4;

/// Characters a prefix may not contain: they would break the hash tag or the key structure.
pub const FORBIDDEN_PREFIX_CHARS: &[char] = &['{', '}', ' ', '\n', '\r', '\t'];

/// The keys of one namespace (one prefix).
///
/// ```
/// use cacheops_core::KeySpace;
/// let ks = KeySpace::new("tenant1").unwrap();
/// assert_eq!(ks.epoch(), "{co:tenant1}:4:e");
/// assert_eq!(ks.table("post"), "{ct:7:tenant1:post}:4:t");
/// assert_eq!(ks.table_epoch("post"), "{ct:7:tenant1:post}:4:e");
/// assert_eq!(ks.value_of(Some("post"), "ab12"), "{ct:7:tenant1:post}:4:q:ab12");
/// assert!(KeySpace::new("bad{prefix").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpace {
    base: String,
    /// `ct:<prefix length>:<prefix>:`, the beginning of every table tag.
    table_tag: String,
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
        Ok(KeySpace {
            base: format!("{{co:{prefix}}}:{SCHEMA_VERSION}:"),
            table_tag: format!("ct:{}:{prefix}:", prefix.len()),
        })
    }

    /// The common beginning of every key of `table` (its own hash tag included).
    pub fn table_base(&self, table: &str) -> String {
        format!("{{{}{}}}:{SCHEMA_VERSION}:", self.table_tag, escape_table(table))
    }

    /// The table's copy of the epoch: part of the stamp vector of every value that reads the
    /// table; `invalidate_all` deletes every copy (see [`KeySpace::registry`]).
    pub fn table_epoch(&self, table: &str) -> String {
        format!("{}e", self.table_base(table))
    }

    /// The scheme registration counter of the table's slot.
    pub fn table_seq(&self, table: &str) -> String {
        format!("{}n", self.table_base(table))
    }

    /// The set of the table epoch keys of this namespace ([`KeySpace::table_epoch`]): a table is
    /// added before it is first read, so that `invalidate_all` reaches every copy.
    pub fn registry(&self) -> String {
        format!("{}T", self.base)
    }

    /// A cached query result, placed with its first table (`None`: it reads no table).
    pub fn value_of(&self, first_table: Option<&str>, hash: &str) -> String {
        match first_table {
            Some(t) => format!("{}q:{hash}", self.table_base(t)),
            None => self.value(hash),
        }
    }

    /// The common beginning of every key of this namespace (hash tag included).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The namespace's epoch: the stamp vector of a value that reads no table, deleted by
    /// `invalidate_all` (with every table's copy).
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

    /// The namespace's sequence counter (unused by tables, which have their own).
    pub fn seq(&self) -> String {
        format!("{}n", self.base)
    }

    /// A cached query result that reads no table (in the namespace's slot).
    pub fn value(&self, hash: &str) -> String {
        format!("{}q:{hash}", self.base)
    }

    /// A table's stamp, deleted by `invalidate_model`.
    pub fn table(&self, table: &str) -> String {
        format!("{}t", self.table_base(table))
    }

    /// A table's schemes (hash: scheme → registration sequence number).
    pub fn schemes(&self, table: &str) -> String {
        format!("{}s", self.table_base(table))
    }

    /// A table's in-flight writers (hash: writer id → `"<mark seq> <expiry ms>"`).
    pub fn writers(&self, table: &str) -> String {
        format!("{}w", self.table_base(table))
    }

    /// The beginning of every conj key of a table; the rendered conj follows.
    pub fn conj_prefix(&self, table: &str) -> String {
        format!("{}c:", self.table_base(table))
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

/// A value key in the slot of `value_key` (same table), for `name` instead of its hash: the
/// probes whose value is never written.
///
/// ```
/// let ks = cacheops_core::KeySpace::new("p").unwrap();
/// let v = ks.value_of(Some("post"), "ab12");
/// assert_eq!(cacheops_core::keys::sibling_value(&v, "probe"), ks.value_of(Some("post"), "probe"));
/// ```
pub fn sibling_value(value_key: &str, name: &str) -> String {
    match value_key.rsplit_once(":q:") {
        Some((base, _)) => format!("{base}:q:{name}"),
        None => format!("{value_key}:{name}"),
    }
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
        assert_eq!(ks.table("a:b"), "{ct:0::a%3Ab}:4:t");
        assert_eq!(ks.table("x}y"), "{ct:0::x%7Dy}:4:t");
    }

    #[test]
    fn table_tags_never_collide() {
        // Prefix "a" + table "b:c" and prefix "a:b" + table "c"; a namespace tag that looks like
        // a table tag.
        let one = KeySpace::new("a").unwrap();
        let two = KeySpace::new("a:b").unwrap();
        assert_ne!(one.table_base("b:c"), two.table_base("c"));
        assert_ne!(one.table_base("b"), KeySpace::new("a:b").unwrap().base().to_owned());
        let tricky = KeySpace::new("ct:1:a:b").unwrap();
        assert_ne!(tricky.epoch(), one.table_epoch("b"));
        assert!(one.table_base("b").starts_with("{ct:1:a:b}:"));
    }
}
