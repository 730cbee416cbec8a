//! The stamp protocol as seen by a backend: requests, replies and the [`Backend`] trait.
//!
//! The full protocol, with the argument for why no reader can hit a stale value, is in
//! `docs/protocol.md`. In short:
//!
//! * every dependency of a cached value (the epoch, each table, each conj key) holds a random
//!   **stamp**; a value is stored with the stamps it was computed under and is a hit only while all
//!   of them are unchanged;
//! * a read that misses gets the stamps *before* the database is queried, so a write that commits
//!   in between has already replaced them and the late store is refused;
//! * a write first replaces its conj stamps by **markers** (`!writer-id@expiry,…`: each writer's
//!   lease expiry is in the value, the key itself has no TTL, so a `volatile-*` eviction policy can
//!   never evict it), and deletes them after commit; a reader that meets a live marker neither hits
//!   nor stores, and a marker whose entries have all expired counts as absent everywhere;
//! * a scheme registered while a writer is in flight (`mark_seq < scheme_seq`) is not covered by the
//!   writer's markers, so its readers do not store.
//!
//! Both backends ([`crate::MemoryBackend`] and the Redis one) implement exactly the algorithms
//! documented on each method below; the Redis scripts are line-by-line translations.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use crate::value::Value;

/// A database row (or the part of it that is known): column → value.
pub type Row = BTreeMap<String, Value>;

/// A row with its values rendered ([`Value::render`]), as sent to a backend.
pub type RenderedRow = BTreeMap<String, String>;

/// Renders a row for a backend.
pub fn render_row(row: &Row) -> RenderedRow {
    row.iter().map(|(k, v)| (k.clone(), v.render())).collect()
}

/// The first byte of a marker (a write lease). Stamps never start with it.
///
/// A marker is `"!" + entries joined by ","`, one entry `"<writer id>@<expiry ms>"` per writer
/// holding a lease on the key ([`MARKER_EXPIRY_SEP`]). An entry is *live* while its expiry is in
/// the future (the backend's own clock: Redis `TIME`, `Instant` in process); a marker with no
/// live entry is treated as absent by every operation and removed when touched. A marker key has
/// no TTL of its own (see [`Backend::mark`]).
pub const MARKER_PREFIX: char = '!';

/// Separates a writer id from its lease expiry (milliseconds) in a marker entry. The expiry is
/// parsed after the *last* separator, so writer ids may contain it (they never contain `,`).
pub const MARKER_EXPIRY_SEP: char = '@';

/// Separates the stamp header from the data in a stored value.
pub const HEADER_END: u8 = b'\n';

/// One conj key a read depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConjRef {
    /// Its scheme (sorted column names joined by `,`).
    pub scheme: String,
    /// The full key.
    pub key: String,
}

/// One table a read depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    /// The table's copy of the epoch (in the table's slot).
    pub epoch_key: String,
    /// The scheme sequence key of the table's slot.
    pub seq_key: String,
    /// The table stamp key.
    pub table_key: String,
    /// The table's schemes key.
    pub schemes_key: String,
    /// The table's in-flight writers key.
    pub writers_key: String,
    /// The conj keys (at least one; the empty conj stands for "any row").
    pub conjs: Vec<ConjRef>,
}

/// A read-check: is the value there and current?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The value key (in the slot of the first table).
    pub value_key: String,
    /// The namespace's epoch key: the stamp vector of a value that reads no table.
    pub epoch_key: String,
    /// The namespace's sequence key (unused by tables, which carry their own).
    pub seq_key: String,
    /// The tables read (shared: a request is copied per lookup with a fresh stamp, its keys are
    /// not).
    pub tables: std::sync::Arc<[TableRead]>,
    /// A fresh random stamp for keys that do not exist yet (never starts with `!`).
    pub new_stamp: String,
    /// TTL given to conj stamps created or extended (see [`crate::keys::conj_ttl`]).
    pub conj_ttl: Duration,
    /// Most schemes a table may have registered ([`Backend::read`] step 5; 0: no limit).
    pub max_schemes: u32,
}

/// Default of [`ReadRequest::max_schemes`]: with it, a one-row write touches at most 2 × 64
/// conj keys.
pub const DEFAULT_MAX_SCHEMES: u32 = 64;

/// Most keys one write may affect per table (rows × schemes) before it is table-level: keeps
/// every mark and finish within a few milliseconds of Redis time.
pub const MAX_AFFECTED_KEYS: usize = 1024;

impl ReadRequest {
    /// The stamp keys in stamp-vector order: per table its epoch copy, its table key and its conj
    /// keys; for a value that reads no table, the namespace's epoch.
    pub fn stamp_keys(&self) -> Vec<&str> {
        if self.tables.is_empty() {
            return vec![self.epoch_key.as_str()];
        }
        let mut keys = Vec::new();
        for t in self.tables.iter() {
            keys.push(t.epoch_key.as_str());
            keys.push(t.table_key.as_str());
            keys.extend(t.conjs.iter().map(|c| c.key.as_str()));
        }
        keys
    }
}

/// The stamp vector a missing value must be stored with (opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps(pub String);

/// Why a read neither hit nor may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BypassReason {
    /// A dependency is under a write lease.
    Pending,
    /// A scheme was registered after a live writer marked its keys.
    NewScheme,
    /// The table's schemes registry was full and has just been reset (see [`Backend::read`]).
    SchemeCap,
    /// The cache is unavailable or fenced (set by the engine, not by backends).
    Unavailable,
}

/// The answer to a read-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadReply {
    /// The value is current: here is its data.
    Hit(Vec<u8>),
    /// Not cached (or outdated): query the database and store the result with these stamps.
    Miss(Stamps),
    /// Query the database and do not store.
    Bypass(BypassReason),
}

/// One table touched by a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWrite {
    /// The scheme sequence key of the table's slot.
    pub seq_key: String,
    /// The table stamp key.
    pub table_key: String,
    /// The table's schemes key.
    pub schemes_key: String,
    /// The table's writers key.
    pub writers_key: String,
    /// The beginning of every conj key of the table.
    pub conj_prefix: String,
    /// Rows (old and new states) whose conj keys are affected, rendered.
    pub rows: Vec<RenderedRow>,
    /// Whether the whole table is affected (unknown rows, bulk writes, `invalidate_model`).
    pub table_level: bool,
}

/// A write lease (mark), its end (finish), or an immediate invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// The writer's id; `None` for an explicit invalidation that is not part of a write.
    pub writer: Option<String>,
    /// Tables touched (each with its own sequence key).
    pub tables: Vec<TableWrite>,
    /// How long markers and the writer record live (the lease): their entries' expiry is
    /// `now + lease`, kept in the value, never as a TTL.
    pub lease: Duration,
}

/// A backend failure (connection, timeout, protocol, script error).
///
/// The message says what failed; the cause (the Redis client's or the socket's error) is kept
/// as [`source()`](std::error::Error::source), never repeated in the message. The predicates
/// say what a caller can do about it.
///
/// ```
/// use cacheops_core::protocol::BackendError;
/// let e = BackendError::timeout("Redis command timed out");
/// assert!(e.is_timeout() && e.is_unavailable());
/// assert_eq!(e.to_string(), "cache backend error: Redis command timed out");
/// ```
#[derive(Debug, Clone)]
pub struct BackendError {
    message: String,
    flags: Flags,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    connection_dropped: bool,
    out_of_memory: bool,
    unavailable: bool,
    timeout: bool,
}

impl BackendError {
    /// A backend error with a message (the server answered, but not as it should have).
    pub fn new(message: impl Into<String>) -> Self {
        BackendError { message: message.into(), flags: Flags::default(), source: None }
    }

    /// The server could not be reached, or is not serving (refused connection, circuit open,
    /// loading, failing over): see [`BackendError::is_unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(message).with_flags(Flags { unavailable: true, ..Flags::default() })
    }

    /// The server did not answer in time (also [unavailable](BackendError::is_unavailable)).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(message).with_flags(Flags { unavailable: true, timeout: true, ..Flags::default() })
    }

    /// An error of a command that never reached the server: its connection had been dropped
    /// (also [unavailable](BackendError::is_unavailable)).
    pub fn connection_dropped(message: impl Into<String>) -> Self {
        Self::new(message).with_flags(Flags { unavailable: true, connection_dropped: true, ..Flags::default() })
    }

    /// The server refused a write for want of memory (see [`BackendError::is_out_of_memory`]).
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(message).with_flags(Flags { out_of_memory: true, ..Flags::default() })
    }

    /// Keeps `cause` as this error's [`source()`](std::error::Error::source).
    #[must_use]
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    fn with_flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// What failed (without its cause: see [`source()`](std::error::Error::source)).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the backend could not be reached or is not serving right now (connection
    /// refused or dropped, timeout, circuit breaker open, server loading or failing over):
    /// retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        self.flags.unavailable
    }

    /// Whether the backend did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.flags.timeout
    }

    /// Whether the server answered but refused a write for want of memory.
    pub fn is_out_of_memory(&self) -> bool {
        self.flags.out_of_memory
    }

    /// Whether the command never reached the server (see [`BackendError::connection_dropped`]).
    pub fn is_connection_dropped(&self) -> bool {
        self.flags.connection_dropped
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cache backend error: {}", self.message)
    }
}

/// An error and its causes on one line (`error: cause: cause`), each text once: for logs and
/// reports that keep only a string.
///
/// ```
/// use cacheops_core::protocol::{BackendError, error_chain};
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let e = BackendError::unavailable("Redis connection failed").with_source(io);
/// assert_eq!(error_chain(&e), "cache backend error: Redis connection failed: connection refused");
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Storage for the stamp protocol. Every method is one atomic step (one script call in Redis,
/// one critical section in process) and touches keys of one namespace only (one hash slot).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + Debug {
    /// Read-check.
    ///
    /// Throughout, "absent" includes a marker whose entries have all expired (`expiry ≤ now`,
    /// the backend's clock); such a key is deleted when met, and treated exactly like a missing
    /// key. "Marker" means a live one (at least one entry with `expiry > now`).
    ///
    /// 1. Epoch: for each table its epoch copy (for a value that reads no table, the namespace's
    ///    epoch): `GET`; if absent, `SET` it to `new_stamp` (no TTL).
    /// 2. For each table: if the schemes key does not exist (never registered, or evicted), `SET`
    ///    the table key to `new_stamp` unless it holds a marker (an evicted registration
    ///    invalidates the table; a table-level lease stays in force); else `GET`
    ///    the table key and create it with `new_stamp` (no TTL) if absent. A marker ⇒ pending.
    /// 3. For each conj key: `GET`; if absent `SET` `new_stamp` with TTL `conj_ttl`. Marker ⇒ pending.
    /// 4. If nothing is pending and the value exists and its header (the bytes before the first
    ///    `\n`) equals the stamps joined by `' '`: [`ReadReply::Hit`] with the bytes after it.
    /// 5. Otherwise register schemes: for each table, drop expired writers (`expiry ≤ now`) from
    ///    the writers hash (the hash goes with its last entry); for each distinct scheme, `HGET` its sequence number or register it with
    ///    `seq = max(now_us, GET seq_key + 1)` with the table's `seq_key` (`SET seq_key seq`, `HSET schemes scheme seq`); if a
    ///    live writer has `mark_seq < seq` ⇒ [`BypassReason::NewScheme`]. A new scheme that would
    ///    exceed `max_schemes` first **resets the table**: the schemes hash is deleted and the table
    ///    key replaced by a new stamp (unless it holds a marker) — every value of the table and
    ///    every read in flight on it is dead, unused schemes are gone, used ones register again —
    ///    and this read answers [`BypassReason::SchemeCap`].
    /// 6. Pending ⇒ [`BypassReason::Pending`]; else [`ReadReply::Miss`] with the joined stamps.
    ///
    /// A backend may answer a hit from one atomic read of the value and the stamp keys (every
    /// stamp present, none a marker, the header equal to them) without the schemes check of
    /// step 2, and run the steps above otherwise: a write to a table without registered schemes
    /// is table-level (see [`Backend::mark`]), so a missing registry cannot hide a change.
    ///
    /// A backend whose tables live apart (Redis Cluster slots) may run steps 1–5 for each table
    /// as an atomic step of its own, the other tables first and the value's table last (which
    /// compares the header with all the stamps); likewise `store` checks the other tables'
    /// stamps first and writes the value in the last step, and `mark` / `finish` run per table.
    /// Every step reads its keys after the read began, so each confirms that no write affecting
    /// its table committed before (`docs/protocol.md`, "Tables in several slots"; the model
    /// checks this composition).
    async fn read(&self, req: &ReadRequest) -> Result<ReadReply, BackendError>;

    /// Store: if the current values of [`ReadRequest::stamp_keys`] joined by `' '` equal `stamps`
    /// (any missing key or marker, live or expired, ⇒ not equal), `SET value_key = stamps + "\n" + data` with TTL
    /// `ttl`, extend every conj key whose TTL is below `ttl` to `req.conj_ttl`, and return `true`;
    /// else return `false` and write nothing.
    async fn store(&self, req: &ReadRequest, stamps: &Stamps, data: &[u8], ttl: Duration)
    -> Result<bool, BackendError>;

    /// Mark (begin or renew a write lease). `req.writer` must be `Some`.
    ///
    /// Per table, `seq = max(now_us, GET seq_key)` and `SET seq_key seq` with the table's
    /// `seq_key` (stored, so that a scheme registered
    /// later in the same microsecond, or after the clock stepped back, gets `seq + 1` or more and
    /// is seen as newer than this mark; the model check finds a stale hit without the store).
    /// For each table: its affected keys are the table key when
    /// `table_level` or when the table has no registered scheme (the schemes hash is missing:
    /// never registered, or evicted — so a hit need not check the registry, see
    /// [`Backend::read`]), and for each row × each registered scheme the conj key
    /// `conj_prefix + "c1=v1&c2=v2"` (columns in scheme order, values from the row); a row lacking
    /// a scheme column makes the table key affected instead. With `expiry = now_ms + lease`, each
    /// affected key gets the entry `writer@expiry` in its marker (see [`MARKER_PREFIX`]): a
    /// stamp, nothing or an expired marker is replaced by the new marker `!writer@expiry`; a live
    /// marker drops its expired entries and gets this writer's entry added, or its expiry raised
    /// (never lowered). The key is written with a plain `SET`, so it has **no TTL** (a conj
    /// stamp's TTL is dropped): a `volatile-*` eviction policy can never evict a lease. Then, per
    /// table, drop the expired entries of the writers hash and `HSET writers writer
    /// "seq expiry_ms"`; the writers hash has no TTL either.
    async fn mark(&self, req: &WriteRequest) -> Result<(), BackendError>;

    /// Finish a write (after commit or rollback), or invalidate immediately (`writer = None`).
    ///
    /// Computes the affected keys as [`Backend::mark`] does, against the schemes registered *now*.
    /// For each: absent ⇒ nothing (an expired marker is deleted); a stamp ⇒ `DEL`; a live marker
    /// ⇒ remove this writer's entry and the expired ones, `DEL` when no entry is left, else keep
    /// the other writers' live entries (with `writer = None` a live marker is left alone: its
    /// writers' own finishes, or their expiries, end it). If the table key is not affected now
    /// but holds a live marker, this writer's entry is removed from it all the same (it marked
    /// the table while no scheme was registered, and one was registered since). Then `HDEL
    /// writers writer` and drop the expired entries of the writers hash.
    async fn finish(&self, req: &WriteRequest) -> Result<(), BackendError>;

    /// Deletes stamp keys (table keys, the epoch), leaving live markers alone (expired ones are
    /// absent and deleted too): `invalidate_model` and `invalidate_all`. O(number of keys).
    async fn delete_stamps(&self, keys: &[String]) -> Result<(), BackendError>;

    /// Whether a mark that succeeded may later be lost (a server restarted empty or from an
    /// older snapshot). Then every lease is renewed right before COMMIT
    /// (`WriteLease::before_commit`), so that its markers are in the server that sees the
    /// commit. The in-process backend never loses them.
    fn may_lose_marks(&self) -> bool {
        false
    }

    /// Simple cache: `GET`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError>;

    /// Simple cache: `SET` with an optional TTL.
    async fn set(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), BackendError>;

    /// Simple cache: `DEL`. Returns whether the key existed.
    async fn delete(&self, key: &str) -> Result<bool, BackendError>;

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<(), BackendError>;

    /// Adds `members` (table epoch keys) to the set `registry` (`SADD`): done before a table is
    /// first read, so that `invalidate_all` reaches every table's epoch copy.
    async fn register(&self, registry: &str, members: &[String]) -> Result<(), BackendError>;

    /// The members of the set `registry` (`SMEMBERS`).
    async fn registered(&self, registry: &str) -> Result<Vec<String>, BackendError>;

    /// Whether this backend holds dog-pile locks that every process sharing it sees
    /// ([`Backend::lock_acquire`] and its companions). The in-process backend does not: the
    /// engine's own in-process lock is all there is.
    fn shares_locks(&self) -> bool {
        false
    }

    /// Tries to take the shared lock `lock_key` with `token` for `ttl` (it expires by itself if
    /// its holder dies). Taking it empties the signal list `signal_key` (see
    /// [`Backend::lock_release`]). A backend without shared locks answers
    /// [`LockAttempt::Unsupported`].
    async fn lock_acquire(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<LockAttempt, BackendError> {
        let _ = (lock_key, signal_key, token, ttl);
        Ok(LockAttempt::Unsupported)
    }

    /// Releases the lock if it still holds `token`, and then pushes one element to the signal
    /// list (which expires after `signal_ttl`), waking the waiters of every process.
    async fn lock_release(
        &self,
        lock_key: &str,
        signal_key: &str,
        token: &str,
        signal_ttl: Duration,
    ) -> Result<(), BackendError> {
        let _ = (lock_key, signal_key, token, signal_ttl);
        Ok(())
    }

    /// Waits up to `timeout` for the signal list to have an element (without taking it: every
    /// waiter sees it). `true`: signalled; `false`: timed out, or no shared locks.
    async fn lock_wait(&self, signal_key: &str, timeout: Duration) -> Result<bool, BackendError> {
        let _ = (signal_key, timeout);
        Ok(false)
    }
}

/// The answer of [`Backend::lock_acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockAttempt {
    /// Taken: this caller holds it.
    Acquired,
    /// Another holder has it; its token, when the backend could read it.
    Busy(Option<String>),
    /// This backend has no shared locks.
    Unsupported,
}

/// Splits a stored value into (header, data).
pub fn split_value(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = stored.iter().position(|b| *b == HEADER_END)?;
    Some((&stored[..pos], &stored[pos + 1..]))
}

/// Whether a stamp key's content is a marker (live or expired).
pub fn is_marker(v: &str) -> bool {
    v.starts_with(MARKER_PREFIX)
}

/// The entries of a marker (see [`MARKER_PREFIX`]): each writer id with its lease expiry in
/// milliseconds. An entry without a parsable expiry gets `0` (expired). Empty for a non-marker.
///
/// ```
/// use cacheops_core::protocol::marker_entries;
/// assert_eq!(marker_entries("!w1@1700000000000,w@2@5"), vec![("w1", 1_700_000_000_000), ("w@2", 5)]);
/// assert_eq!(marker_entries("!old"), vec![("old", 0)]);
/// assert!(marker_entries("stamp").is_empty());
/// ```
pub fn marker_entries(v: &str) -> Vec<(&str, u64)> {
    let Some(body) = v.strip_prefix(MARKER_PREFIX) else { return Vec::new() };
    body.split(',')
        .filter(|e| !e.is_empty())
        .map(|e| match e.rsplit_once(MARKER_EXPIRY_SEP) {
            Some((id, exp)) if !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()) => {
                (id, exp.parse().unwrap_or(0))
            }
            _ => (e, 0),
        })
        .collect()
}

/// Whether a marker has an entry whose expiry (milliseconds) is after `now_ms`.
pub fn marker_is_live(v: &str, now_ms: u64) -> bool {
    marker_entries(v).iter().any(|(_, exp)| *exp > now_ms)
}

/// The conj keys (or the table key) affected by a write to one table, given its schemes.
/// Shared by the in-process backend and tests; the Redis scripts do the same in Lua.
pub fn affected_keys(table: &TableWrite, schemes: &[String]) -> Vec<String> {
    let mut keys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // No registered scheme (never registered, or the registry was evicted): the values cached
    // on this table are unknown, so the write is table-level. So is one that would touch more
    // than MAX_AFFECTED_KEYS keys.
    let over = table.rows.len().saturating_mul(schemes.len()) > MAX_AFFECTED_KEYS;
    let mut table_level = table.table_level || schemes.is_empty() || over;
    let rows: &[RenderedRow] = if over { &[] } else { &table.rows };
    for row in rows {
        for scheme in schemes {
            let mut key = table.conj_prefix.clone();
            let mut complete = true;
            if !scheme.is_empty() {
                for (i, col) in scheme.split(',').enumerate() {
                    match row.get(col) {
                        Some(v) => {
                            if i > 0 {
                                key.push('&');
                            }
                            key.push_str(col);
                            key.push('=');
                            key.push_str(v);
                        }
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
            }
            if complete {
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            } else {
                table_level = true;
            }
        }
    }
    if table_level {
        keys.push(table.table_key.clone());
    }
    keys
}
