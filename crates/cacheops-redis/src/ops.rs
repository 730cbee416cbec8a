//! The protocol's operations on Redis: read (the hit check, then `read.lua`), store, mark,
//! finish, delete stamps.
//!
//! Each table's keys share a hash tag of their own (`KeySpace::table_base`), so the tables of one
//! read or write may live in several cluster slots. On one server (standalone, Sentinel) every
//! operation is one call whatever its tables. On a cluster an operation is composed of one
//! atomic call per table: a read checks the other tables first and the value's table (its
//! first one) last, comparing the value's header with every stamp; a store checks the other
//! tables' stamps first and writes the value last; mark and finish run per table
//! (`docs/protocol.md`, "Tables in several slots", and the model check's `Config::two_slots`).

use std::collections::BTreeMap;
use std::time::Duration;

use cacheops_core::protocol::{
    BypassReason, HEADER_END, ReadReply, ReadRequest, Stamps, TableRead, TableWrite, WriteRequest,
};
use redis::ScriptInvocation;

use crate::backend::{FinishStats, RedisBackend};
use crate::direct::Reply;
use crate::error::RedisBackendError;
use crate::scripts::SCRIPTS;
use crate::slot::{check_same_slot, key_slot};

/// Longest TTL sent to Redis (100 years): keeps every millisecond count exact in Lua's doubles.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

pub(crate) fn ms(d: Duration) -> u64 {
    // PX/PEXPIRE reject 0; a sub-millisecond TTL is rounded up to 1 ms.
    u64::try_from(d.as_millis()).unwrap_or(MAX_TTL_MS).clamp(1, MAX_TTL_MS)
}

/// One table's stamp keys in stamp-vector order: its epoch copy, its table key, its conj keys.
fn stamp_keys_of(t: &TableRead) -> impl Iterator<Item = &str> {
    [t.epoch_key.as_str(), t.table_key.as_str()].into_iter().chain(t.conjs.iter().map(|c| c.key.as_str()))
}

/// How many stamps a table contributes to the vector.
fn stamp_count(t: &TableRead) -> usize {
    2 + t.conjs.len()
}

/// Splits a stamp vector into the tables' parts (`None`: it does not have their shape).
fn split_stamps<'a>(stamps: &'a str, tables: &[TableRead]) -> Option<Vec<String>> {
    let mut all = stamps.split(' ');
    let mut parts = Vec::with_capacity(tables.len());
    for t in tables {
        let part: Vec<&'a str> = all.by_ref().take(stamp_count(t)).collect();
        if part.len() != stamp_count(t) {
            return None;
        }
        parts.push(part.join(" "));
    }
    all.next().is_none().then_some(parts)
}

impl RedisBackend {
    /// [`Backend::read`](cacheops_core::Backend::read), with this crate's error type.
    ///
    /// A hit costs one round trip and no Lua: one `MGET` of the value and its stamps
    /// ([`RedisBackend::read_hit`]; on a cluster, one per table). Anything else (a missing key,
    /// a marker, a stamp mismatch) falls back to `read.lua`, which decides miss or bypass and
    /// creates what is missing.
    pub async fn read_checked(&self, req: &ReadRequest) -> Result<ReadReply, RedisBackendError> {
        check_read_groups(req)?;
        if let Some(data) = self.read_hit(req).await? {
            return Ok(ReadReply::Hit(data));
        }
        if !self.is_cluster() || req.tables.len() <= 1 {
            return self.read_call(req, true, &req.tables, "").await;
        }
        // The other tables first, the value's table last (with their stamps).
        let mut others = Vec::with_capacity(req.tables.len() - 1);
        for t in &req.tables[1..] {
            match self.read_call(req, false, std::slice::from_ref(t), "").await? {
                ReadReply::Miss(s) => others.push(s.0),
                other => return Ok(other),
            }
        }
        let suffix = others.join(" ");
        Ok(match self.read_call(req, true, &req.tables[..1], &suffix).await? {
            ReadReply::Miss(s) => ReadReply::Miss(Stamps(format!("{} {suffix}", s.0))),
            other => other,
        })
    }

    /// The hit branch of `read.lua` as read-only commands: `MGET` of the value and every stamp,
    /// in stamp-vector order, and of each slot group's boot key. It is a hit when every stamp is
    /// present and not a marker and the value's header equals the stamps — when `read.lua`
    /// would return a hit, or when the only difference is a missing schemes registry, which
    /// `read.lua` treats as a table invalidation but which can only matter once a write has run:
    /// and a write to a table without a registry is table-level (`affected_keys`), so it
    /// replaces the table stamp this check reads. A hit writes nothing in `read.lua` either.
    /// `None`: not a hit (the script decides what it is).
    ///
    /// The `MGET` goes over a direct connection (see
    /// [`RedisBackendBuilder::direct_connections`](crate::RedisBackendBuilder::direct_connections)),
    /// which knows the identity (`run_id`) of the server it is connected to: a hit requires each
    /// group to have been verified on that server (see `verify_boot` in `common.lua`). On one
    /// server it is one `MGET`; on a cluster one per table, each on the master of its slot, the
    /// value's with its first table. Without a free direct connection (every one busy, TLS, a
    /// backend built from a connection, a cluster slot whose master is not known or that
    /// answered with a redirection) it answers `None`, and `read.lua` — which verifies the
    /// server first — decides.
    pub async fn read_hit(&self, req: &ReadRequest) -> Result<Option<Vec<u8>>, RedisBackendError> {
        let ns_epoch = [req.epoch_key.as_str()];
        let groups: Vec<Vec<&str>> = if req.tables.is_empty() {
            vec![ns_epoch.to_vec()]
        } else {
            req.tables.iter().map(|t| stamp_keys_of(t).collect()).collect()
        };
        let boots: Vec<String> = groups.iter().map(|g| cacheops_core::keys::boot_of_epoch(g[0])).collect();
        let calls: Vec<Vec<usize>> = if self.is_cluster() {
            (0..groups.len()).map(|g| vec![g]).collect()
        } else {
            vec![(0..groups.len()).collect()]
        };
        let mut value = None;
        let mut stamps: Vec<Option<Vec<u8>>> = Vec::new();
        for (n, call) in calls.iter().enumerate() {
            let with_value = n == 0;
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            if with_value {
                args.push(req.value_key.as_bytes());
            }
            for g in call {
                args.extend(groups[*g].iter().map(|k| k.as_bytes()));
            }
            for g in call {
                args.push(boots[*g].as_bytes());
            }
            let Some(reply) = self.query_direct(groups[call[0]][0], &args).await else {
                return Ok(None);
            };
            let (reply, server_id) = reply?;
            let Reply::Array(mut values) = reply else {
                return Err(RedisBackendError::Protocol("MGET answered something else than an array".into()));
            };
            // Each group must have been verified on the server that answered: after a restart
            // (from an older snapshot, say) the first script deletes its epoch before anything is
            // served.
            let Some(id) = server_id else { return Ok(None) };
            let boot_replies = values.split_off(values.len().saturating_sub(call.len()));
            if boot_replies.len() != call.len() || boot_replies.iter().any(|b| b.as_deref() != Some(id.as_bytes())) {
                return Ok(None);
            }
            let mut values = values.into_iter();
            if with_value {
                value = values.next().flatten();
            }
            stamps.extend(values);
        }
        Ok(value.and_then(|v| hit_data(v, &stamps)))
    }

    /// One `read.lua` call: `tables` (all of them, or one slot group), with the value when
    /// `with_value` (its header compared with these stamps followed by `suffix`).
    async fn read_call(
        &self,
        req: &ReadRequest,
        with_value: bool,
        tables: &[TableRead],
        suffix: &str,
    ) -> Result<ReadReply, RedisBackendError> {
        let mut inv = SCRIPTS.read.prepare_invoke();
        let mut keys: Vec<&str> = Vec::new();
        if with_value {
            inv.key(&req.value_key);
            keys.push(&req.value_key);
        }
        inv.arg(&req.new_stamp).arg(ms(req.conj_ttl)).arg(tables.len()).arg(req.max_schemes);
        inv.arg(if with_value { "1" } else { "0" }).arg(suffix);
        if tables.is_empty() {
            inv.key(&req.epoch_key);
            keys.push(&req.epoch_key);
        }
        for t in tables {
            for k in [&t.epoch_key, &t.seq_key, &t.table_key, &t.schemes_key, &t.writers_key] {
                inv.key(k);
                keys.push(k);
            }
            inv.arg(t.conjs.len());
            for c in &t.conjs {
                inv.key(&c.key);
                keys.push(&c.key);
                inv.arg(&c.scheme);
            }
        }
        if self.is_cluster() {
            check_same_slot(keys)?;
        }
        let (kind, payload): (i64, Vec<u8>) = self.invoke(&inv).await?;
        match kind {
            1 => Ok(ReadReply::Hit(payload)),
            2 => String::from_utf8(payload)
                .map(|s| ReadReply::Miss(Stamps(s)))
                .map_err(|_| RedisBackendError::Protocol("stamps are not UTF-8".into())),
            3 => match payload.as_slice() {
                b"pending" => Ok(ReadReply::Bypass(BypassReason::Pending)),
                b"new_scheme" => Ok(ReadReply::Bypass(BypassReason::NewScheme)),
                b"scheme_cap" => Ok(ReadReply::Bypass(BypassReason::SchemeCap)),
                other => Err(RedisBackendError::Protocol(format!(
                    "unknown bypass reason {:?}",
                    String::from_utf8_lossy(other)
                ))),
            },
            other => Err(RedisBackendError::Protocol(format!("read returned kind {other}"))),
        }
    }

    /// [`Backend::store`](cacheops_core::Backend::store), with this crate's error type.
    pub async fn store_checked(
        &self,
        req: &ReadRequest,
        stamps: &Stamps,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisBackendError> {
        check_read_groups(req)?;
        if !self.is_cluster() || req.tables.len() <= 1 {
            return self.store_call(req, true, &req.tables, &stamps.0, data, ttl, "").await;
        }
        let Some(parts) = split_stamps(&stamps.0, &req.tables) else {
            return Ok(false);
        };
        // The other tables' stamps first, then the value with its table's.
        for (t, part) in req.tables.iter().zip(&parts).skip(1) {
            if !self.store_call(req, false, std::slice::from_ref(t), part, &[], ttl, "").await? {
                return Ok(false);
            }
        }
        let suffix = parts[1..].join(" ");
        self.store_call(req, true, &req.tables[..1], &parts[0], data, ttl, &suffix).await
    }

    /// One `store.lua` call (see [`RedisBackend::read_call`]).
    #[allow(clippy::too_many_arguments)]
    async fn store_call(
        &self,
        req: &ReadRequest,
        with_value: bool,
        tables: &[TableRead],
        expected: &str,
        data: &[u8],
        ttl: Duration,
        suffix: &str,
    ) -> Result<bool, RedisBackendError> {
        let mut inv = SCRIPTS.store.prepare_invoke();
        let mut keys: Vec<&str> = Vec::new();
        let mut kinds = String::new();
        if with_value {
            inv.key(&req.value_key);
            keys.push(&req.value_key);
        }
        if tables.is_empty() {
            inv.key(&req.epoch_key);
            keys.push(&req.epoch_key);
            kinds.push('e');
        }
        for t in tables {
            for (i, k) in stamp_keys_of(t).enumerate() {
                inv.key(k);
                keys.push(k);
                kinds.push(match i {
                    0 => 'e',
                    1 => 's',
                    _ => 'c',
                });
            }
        }
        if self.is_cluster() {
            check_same_slot(keys)?;
        }
        inv.arg(expected).arg(data).arg(ms(ttl)).arg(ms(req.conj_ttl)).arg(kinds);
        inv.arg(if with_value { "1" } else { "0" }).arg(suffix);
        let stored: i64 = self.invoke(&inv).await?;
        Ok(stored == 1)
    }

    /// The calls of a write: all its tables in one on one server, one per table on a cluster.
    fn write_calls<'a>(&self, req: &'a WriteRequest) -> Vec<&'a [TableWrite]> {
        if self.is_cluster() { req.tables.chunks(1).collect() } else { vec![&req.tables[..]] }
    }

    /// [`Backend::mark`](cacheops_core::Backend::mark), returning the number of keys marked.
    pub async fn mark_counted(&self, req: &WriteRequest) -> Result<u64, RedisBackendError> {
        let Some(writer) = req.writer.as_deref() else {
            return Err(RedisBackendError::Config("mark needs a writer id".into()));
        };
        let mut marked = 0u64;
        for tables in self.write_calls(req) {
            if self.is_cluster() {
                check_same_slot(write_keys(tables))?;
            }
            let mut inv = SCRIPTS.mark.prepare_invoke();
            inv.arg(writer).arg(ms(req.lease));
            write_args(&mut inv, tables);
            let n: i64 = self.invoke_write(&inv, slot_key(tables)).await?;
            marked = marked.saturating_add(u64::try_from(n).unwrap_or(0));
        }
        Ok(marked)
    }

    /// [`Backend::finish`](cacheops_core::Backend::finish), returning what it did (see
    /// [`FinishStats`]).
    pub async fn finish_counted(&self, req: &WriteRequest) -> Result<FinishStats, RedisBackendError> {
        let mut stats = FinishStats { deleted: 0, touched: 0 };
        for tables in self.write_calls(req) {
            if self.is_cluster() {
                check_same_slot(write_keys(tables))?;
            }
            let mut inv = SCRIPTS.finish.prepare_invoke();
            match req.writer.as_deref() {
                Some(w) => inv.arg("1").arg(w),
                None => inv.arg("0").arg(""),
            };
            write_args(&mut inv, tables);
            let (deleted, touched): (i64, i64) = self.invoke_write(&inv, slot_key(tables)).await?;
            stats.deleted = stats.deleted.saturating_add(u64::try_from(deleted).unwrap_or(0));
            stats.touched = stats.touched.saturating_add(u64::try_from(touched).unwrap_or(0));
        }
        Ok(stats)
    }

    /// [`Backend::delete_stamps`](cacheops_core::Backend::delete_stamps), returning how many
    /// stamps were deleted. Keys are grouped by hash slot, one script call per slot.
    pub async fn delete_stamps_counted(&self, keys: &[String]) -> Result<u64, RedisBackendError> {
        let mut by_slot: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for key in keys {
            by_slot.entry(key_slot(key)).or_default().push(key);
        }
        let mut deleted = 0u64;
        for group in by_slot.values() {
            let mut inv = SCRIPTS.delete_stamps.prepare_invoke();
            for key in group {
                inv.key(*key);
            }
            let n: i64 = self.invoke_write(&inv, group.first().copied().unwrap_or_default()).await?;
            deleted = deleted.saturating_add(u64::try_from(n).unwrap_or(0));
        }
        Ok(deleted)
    }
}

/// Each slot group of a read (a table's keys, the value with the first one; or the value with
/// the namespace's epoch) is in one slot: the keys were built by one `KeySpace`.
fn check_read_groups(req: &ReadRequest) -> Result<(), RedisBackendError> {
    if req.tables.is_empty() {
        return check_same_slot([req.value_key.as_str(), req.epoch_key.as_str()]);
    }
    for (i, t) in req.tables.iter().enumerate() {
        let value = (i == 0).then_some(req.value_key.as_str());
        let keys = value.into_iter().chain([t.seq_key.as_str(), t.schemes_key.as_str(), t.writers_key.as_str()]);
        check_same_slot(keys.chain(stamp_keys_of(t)))?;
    }
    Ok(())
}

/// The data of a stored value (`header \n data`) if its header equals the current stamps joined
/// by spaces and none of them is absent or a marker; `None` otherwise.
fn hit_data(mut value: Vec<u8>, stamps: &[Option<Vec<u8>>]) -> Option<Vec<u8>> {
    let end = value.iter().position(|&b| b == HEADER_END)?;
    let mut rest = &value[..end];
    for (i, stamp) in stamps.iter().enumerate() {
        let stamp = stamp.as_deref()?;
        if stamp.first() == Some(&MARKER_BYTE) {
            return None;
        }
        if i > 0 {
            rest = rest.strip_prefix(b" ")?;
        }
        rest = rest.strip_prefix(stamp)?;
    }
    if !rest.is_empty() {
        return None;
    }
    value.drain(..=end);
    Some(value)
}

/// [`MARKER_PREFIX`](cacheops_core::protocol::MARKER_PREFIX) as a byte.
const MARKER_BYTE: u8 = cacheops_core::protocol::MARKER_PREFIX as u8;

/// A key of the slot of a write call (its first table's).
fn slot_key(tables: &[TableWrite]) -> &str {
    tables.first().map_or("", |t| t.seq_key.as_str())
}

fn write_keys(tables: &[TableWrite]) -> impl Iterator<Item = &str> {
    tables.iter().flat_map(|t| {
        // The conj keys are built from the prefix inside the script: it must carry the tag too.
        [
            t.seq_key.as_str(),
            t.table_key.as_str(),
            t.schemes_key.as_str(),
            t.writers_key.as_str(),
            t.conj_prefix.as_str(),
        ]
    })
}

fn write_args(inv: &mut ScriptInvocation<'_>, tables: &[TableWrite]) {
    inv.arg(tables.len());
    for t in tables {
        inv.key(&t.seq_key).key(&t.table_key).key(&t.schemes_key).key(&t.writers_key);
        inv.arg(&t.conj_prefix).arg(if t.table_level { "1" } else { "0" }).arg(t.rows.len());
        for row in &t.rows {
            inv.arg(row.len());
            for (col, val) in row {
                inv.arg(col).arg(val);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hit_data, split_stamps};
    use cacheops_core::protocol::{ConjRef, TableRead};

    fn stamps(s: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
        s.iter().map(|x| x.map(|x| x.as_bytes().to_vec())).collect()
    }

    #[test]
    fn hit_requires_the_exact_stamp_vector() {
        let value = b"e1 t1 c1\ndata\nwith newline".to_vec();
        let current = stamps(&[Some("e1"), Some("t1"), Some("c1")]);
        assert_eq!(hit_data(value.clone(), &current).as_deref(), Some(&b"data\nwith newline"[..]));
        // A changed, missing, extra, or marker stamp is not a hit.
        for other in [
            stamps(&[Some("e1"), Some("t1"), Some("c2")]),
            stamps(&[Some("e1"), None, Some("c1")]),
            stamps(&[Some("e1"), Some("t1")]),
            stamps(&[Some("e1"), Some("t1"), Some("c1"), Some("c9")]),
            stamps(&[Some("e1"), Some("t1"), Some("!w@99")]),
            stamps(&[Some("e1"), Some("t1"), Some("c")]),
        ] {
            assert_eq!(hit_data(value.clone(), &other), None, "{other:?}");
        }
        // No header at all.
        assert_eq!(hit_data(b"e1 t1 c1".to_vec(), &current), None);
    }

    #[test]
    fn stamp_vectors_split_by_table() {
        let table = |conjs: usize| TableRead {
            epoch_key: "e".into(),
            seq_key: "n".into(),
            table_key: "t".into(),
            schemes_key: "s".into(),
            writers_key: "w".into(),
            conjs: (0..conjs).map(|i| ConjRef { scheme: "id".into(), key: format!("c{i}") }).collect(),
        };
        let tables = [table(1), table(2)];
        assert_eq!(split_stamps("e1 t1 c1 e2 t2 c2 c3", &tables), Some(vec!["e1 t1 c1".into(), "e2 t2 c2 c3".into()]));
        assert_eq!(split_stamps("e1 t1 c1 e2 t2 c2", &tables), None);
        assert_eq!(split_stamps("e1 t1 c1 e2 t2 c2 c3 x", &tables), None);
    }
}
