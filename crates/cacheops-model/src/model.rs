//! The model: one table holding one row `(a, b)` with a version, a cache backend holding the
//! protocol's keys, readers and writers whose steps are the real atomic units.
//!
//! Every step function here is named after, and mirrors, one atomic operation of the real
//! protocol (`cacheops_core::protocol::Backend`, reference implementation
//! `cacheops_core::memory::MemoryBackend`):
//!
//! | model                     | real                                                              |
//! |---------------------------|-------------------------------------------------------------------|
//! | [`State::read_check`]     | `Backend::read` (`MemoryBackend::read`, one script / lock)        |
//! | [`State::store`]          | `Backend::store`                                                  |
//! | [`State::mark`]           | `Backend::mark` (used both for the first mark and the re-mark)    |
//! | [`State::finish`]         | `Backend::finish` (`State::clear_key` per affected key)           |
//! | [`State::expire`]         | the lease runs out: its entries in markers (`writer@expiry`) and its writers-hash record become *expired* — still stored, but every operation treats them as absent (and drops them when it touches them) |
//! | `State::evict_*`          | `maxmemory` eviction under a `volatile-*` policy: any key with a TTL (values, conj stamps) may vanish at any time; with [`Variant::markers_evictable`] also markers and writer records (the former scheme, where they had a TTL) |
//! | `db_read`, `pre_image`, `commit` | the database (`SELECT`, `SELECT … FOR UPDATE`, `UPDATE` + `COMMIT`) |
//!
//! What is abstracted: random stamps are small integers, kept distinct from every stamp still
//! referenced anywhere in the state and renumbered canonically after each step (stamps are only
//! ever compared for equality, so this is exact); the epoch is constant (no `invalidate_all` in
//! the model); TTLs other than the lease do not run out on their own, but eviction (when
//! [`Config::eviction`] is on) deletes TTL keys at any moment, which covers their expiry too.

use std::fmt;

/// Column values range over `0..NVALS`.
pub const NVALS: usize = 3;
/// Schemes: `a`, `b` and the empty scheme (a query with no condition: table level).
pub const NSCHEMES: usize = 3;
/// Conj keys: `a=0..`, `b=0..`, and the empty conj.
pub const NCONJ: usize = 2 * NVALS + 1;
/// Upper bounds of the configuration (fixed-size arrays keep states small and `Copy`).
pub const MAX_READERS: usize = 4;
/// See [`MAX_READERS`].
pub const MAX_WRITERS: usize = 3;
/// See [`MAX_READERS`].
pub const MAX_QUERIES: usize = 4;
/// See [`MAX_READERS`].
pub const MAX_ROUNDS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A cached query over the one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    /// `WHERE a = v` (scheme `a`).
    A(u8),
    /// `WHERE b = v` (scheme `b`).
    B(u8),
    /// No condition (scheme `""`, the empty conj: any change to the table).
    All,
}

impl Query {
    /// Index of its scheme.
    pub fn scheme(self) -> usize {
        match self {
            Query::A(_) => 0,
            Query::B(_) => 1,
            Query::All => 2,
        }
    }

    /// Index of its conj key.
    pub fn conj(self) -> usize {
        match self {
            Query::A(v) => v as usize,
            Query::B(v) => NVALS + v as usize,
            Query::All => 2 * NVALS,
        }
    }

    /// Whether the row `(a, b)` is in the result.
    pub fn matches(self, a: u8, b: u8) -> bool {
        match self {
            Query::A(v) => a == v,
            Query::B(v) => b == v,
            Query::All => true,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::A(v) => write!(f, "a={v}"),
            Query::B(v) => write!(f, "b={v}"),
            Query::All => write!(f, "all"),
        }
    }
}

/// Name of a conj key index.
pub fn conj_name(i: usize) -> String {
    if i < NVALS {
        format!("conj(a={i})")
    } else if i < 2 * NVALS {
        format!("conj(b={})", i - NVALS)
    } else {
        "conj()".to_owned()
    }
}

const SCHEME_NAMES: [&str; NSCHEMES] = ["a", "b", "\"\""];

/// What a writer's statement does to the row: `UPDATE t SET <col> = <to>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `SET a = v`.
    SetA(u8),
    /// `SET b = v`.
    SetB(u8),
}

impl Op {
    fn apply(self, (a, b): (u8, u8)) -> (u8, u8) {
        match self {
            Op::SetA(v) => (v, b),
            Op::SetB(v) => (a, v),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::SetA(v) => write!(f, "SET a={v}"),
            Op::SetB(v) => write!(f, "SET b={v}"),
        }
    }
}

/// When a writer renews its lease (re-marks) before COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remark {
    /// Never (broken when leases can expire).
    Never,
    /// When the lease has run out (the engine re-marks when the lease is *close to* expiry; the
    /// model takes the worst case: it did expire). COMMIT only happens under a live lease.
    IfExpired,
    /// Always, once, right before COMMIT; the fresh lease covers the COMMIT.
    Always,
}

/// How scheme registration sequence numbers and writers' mark sequence numbers are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqRule {
    /// `MemoryBackend`: a counter; registration `seq += 1`, mark takes `seq`.
    Counter,
    /// The Redis algorithm as documented on `Backend::read`/`Backend::mark`: registration
    /// `seq = max(now_us, GET seq_key + 1); SET seq_key seq`, mark `max(now_us, GET seq_key)`
    /// (not stored). `now_us` is a wall clock that may stand still (same microsecond) or jump.
    RedisDocumented,
    /// The fix (what `cacheops-redis`'s `mark.lua` does): mark
    /// `m = max(now_us, GET seq_key); SET seq_key m`; registration as documented.
    RedisFixed,
}

/// Largest wall-clock value of the `Redis*` sequence rules.
pub const MAX_CLOCK: u8 = 2;

/// Protocol variants: the correct protocol and the naive ones the model must refute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Readers take their stamps *after* the database read (broken).
    pub stamps_after_db_read: bool,
    /// Writers do not mark; they only finish after commit (broken).
    pub no_leases: bool,
    /// Readers ignore the scheme registration sequence rule (broken).
    pub no_new_scheme_rule: bool,
    /// Re-mark policy before COMMIT.
    pub remark: Remark,
    /// `finish` deletes a marker even when other writers' ids are in it (broken with
    /// overlapping writers).
    pub finish_deletes_foreign_markers: bool,
    /// How sequence numbers are made.
    pub seq_rule: SeqRule,
    /// Eviction may also delete markers and writer records (broken): the former scheme, where
    /// lease state had a Redis TTL and so was evictable under `volatile-*` (and is under
    /// `allkeys-*`). Only matters with [`Config::eviction`].
    pub markers_evictable: bool,
    /// A writer dropped while its COMMIT is in flight finishes its lease at once (broken: the
    /// former `Drop for WriteLease`, which spawned the finish). Only matters with
    /// [`Config::cancellation`].
    pub finish_on_drop: bool,
    /// The server's identity is not checked (broken): after a restart the backend serves what
    /// its snapshot brought back. Only matters with [`Config::restarts`].
    pub no_boot_check: bool,
    /// A composed read-check decides the hit with the value's own slot only, not comparing the
    /// header with the stamp the other part read (broken). Only matters with
    /// [`Config::two_slots`].
    pub composed_hit_own_slot_only: bool,
}

impl Variant {
    /// The protocol as specified: leases, the sequence rule, re-mark when the lease expired.
    pub const CORRECT: Variant = Variant {
        stamps_after_db_read: false,
        no_leases: false,
        no_new_scheme_rule: false,
        remark: Remark::IfExpired,
        finish_deletes_foreign_markers: false,
        seq_rule: SeqRule::Counter,
        markers_evictable: false,
        finish_on_drop: false,
        no_boot_check: false,
        composed_hit_own_slot_only: false,
    };
    /// The correct protocol with an unconditional re-mark before COMMIT.
    pub const CORRECT_ALWAYS_REMARK: Variant = Variant { remark: Remark::Always, ..Variant::CORRECT };
    /// Stamps taken after the database read.
    pub const STAMPS_AFTER_DB_READ: Variant = Variant { stamps_after_db_read: true, ..Variant::CORRECT };
    /// No leases: only a finish after commit.
    pub const NO_LEASES: Variant = Variant { no_leases: true, ..Variant::CORRECT };
    /// Leases without the new-scheme rule.
    pub const NO_NEW_SCHEME_RULE: Variant = Variant { no_new_scheme_rule: true, ..Variant::CORRECT };
    /// Leases without the re-mark before commit.
    pub const NO_REMARK: Variant = Variant { remark: Remark::Never, ..Variant::CORRECT };
    /// `finish` that deletes other writers' markers.
    pub const FINISH_DELETES_FOREIGN_MARKERS: Variant =
        Variant { finish_deletes_foreign_markers: true, ..Variant::CORRECT };
    /// The sequence rule as documented for Redis (time based, mark not stored).
    pub const REDIS_SEQ_DOCUMENTED: Variant = Variant { seq_rule: SeqRule::RedisDocumented, ..Variant::CORRECT };
    /// The fixed time-based sequence rule.
    pub const REDIS_SEQ_FIXED: Variant = Variant { seq_rule: SeqRule::RedisFixed, ..Variant::CORRECT };
    /// Lease state (markers, writer records) evictable like values and conj stamps.
    pub const MARKERS_EVICTABLE: Variant = Variant { markers_evictable: true, ..Variant::CORRECT };
    /// A dropped writer finishes before its in-flight COMMIT lands.
    pub const FINISH_ON_DROP: Variant = Variant { finish_on_drop: true, ..Variant::CORRECT };
    /// The protocol on Redis: the re-mark before COMMIT is unconditional (a restart may have lost
    /// the marks), and every operation verifies the server's identity first.
    pub const REDIS_RESTARTS: Variant = Variant::CORRECT_ALWAYS_REMARK;
    /// A composed read-check that compares the value's header with its own slot's stamp only.
    pub const COMPOSED_HIT_OWN_SLOT_ONLY: Variant = Variant { composed_hit_own_slot_only: true, ..Variant::CORRECT };
    /// Restarts without the identity check.
    pub const NO_BOOT_CHECK: Variant = Variant { no_boot_check: true, ..Variant::CORRECT_ALWAYS_REMARK };
}

/// A model configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol variant.
    pub variant: Variant,
    /// The initial row `(a, b)`; its version is 0.
    pub initial_row: (u8, u8),
    /// Each reader's query per round.
    pub readers: Vec<Vec<Query>>,
    /// Each writer's statement.
    pub writers: Vec<Op>,
    /// Whether writers may overlap (still serialised on the row lock taken by the pre-image
    /// `SELECT … FOR UPDATE`, so a writer may mark while the previous one has committed but not
    /// finished). Otherwise writer `i + 1` starts after writer `i` finished.
    pub concurrent_writers: bool,
    /// Whether a writer may roll back instead of committing.
    pub rollbacks: bool,
    /// Whether lease expiry can happen at all.
    pub lease_expiry: bool,
    /// Whether `maxmemory` eviction may delete keys at any moment: those with a TTL (values,
    /// conj stamps; markers and writer records have none), plus markers and writer records with
    /// [`Variant::markers_evictable`].
    pub eviction: bool,
    /// Whether a writer's future may be dropped (a request timeout) after it sent COMMIT and
    /// before the COMMIT is visible. The COMMIT still lands — within the lease (the stated
    /// assumption: a COMMIT takes less than the lease's remaining third). A dropped writer never
    /// finishes: its lease only expires (unless [`Variant::finish_on_drop`]).
    pub cancellation: bool,
    /// Whether the backend may take one snapshot (`SAVE`) and restart once, from it or empty
    /// (`kill -9`), at any moment — except between a writer's unconditional re-mark and the
    /// moment its COMMIT is visible (the stated window; `appendfsync always` closes it). The backend then holds the
    /// snapshot's keys, and the first operation on it verifies the server's identity
    /// (`verify_boot`): the epoch goes, so every value and every read in flight is dead.
    pub restarts: bool,
    /// Whether the read-check and the store are composed of two atomic steps, as on a Redis
    /// Cluster where a read's tables live in different slots: the *table part* (the table key,
    /// scheme registration, the new-scheme rule) and the *conj part* (the conj key, and the
    /// value, placed with it). A read-check runs its two parts in either order and decides
    /// after the second (hit when nothing was pending and the value's header equals both
    /// stamps); a store checks the table part first and writes the value with the conj part.
    /// Writes stay atomic. This is finer than the real composition (there a table's keys share
    /// one slot, and only different tables are apart), so safety here implies safety there.
    pub two_slots: bool,
    /// Whether writes are table-level (`UPDATE t SET …` without a condition the analysis can
    /// narrow, `invalidate_model`): they mark and finish the table key only.
    pub table_level_writes: bool,
    /// The distinct queries (one value key each); derived by [`Config::new`].
    queries: Vec<Query>,
}

impl Config {
    /// A configuration; panics when it exceeds the model's bounds.
    pub fn new(variant: Variant, readers: Vec<Vec<Query>>, writers: Vec<Op>) -> Config {
        assert!(readers.len() <= MAX_READERS && writers.len() <= MAX_WRITERS);
        assert!(readers.iter().all(|r| r.len() <= MAX_ROUNDS));
        let mut queries: Vec<Query> = Vec::new();
        for q in readers.iter().flatten() {
            if !queries.contains(q) {
                queries.push(*q);
            }
        }
        assert!(queries.len() <= MAX_QUERIES);
        for q in &queries {
            if let Query::A(v) | Query::B(v) = q {
                assert!((*v as usize) < NVALS);
            }
        }
        Config {
            variant,
            initial_row: (0, 0),
            readers,
            writers,
            concurrent_writers: false,
            rollbacks: false,
            lease_expiry: true,
            eviction: false,
            cancellation: false,
            restarts: false,
            two_slots: false,
            table_level_writes: false,
            queries,
        }
    }

    /// The configuration of DESIGN §4: one row `(a, b)`, two schemes (`a`, `b`), two sequential
    /// writers (`SET a=1`, then `SET b=1`), three readers of two rounds (`a=0`, `b=0`, `a=1`),
    /// leases that may expire at any time.
    pub fn design(variant: Variant) -> Config {
        Config::new(
            variant,
            vec![vec![Query::A(0), Query::A(0)], vec![Query::B(0), Query::B(0)], vec![Query::A(1), Query::A(1)]],
            vec![Op::SetA(1), Op::SetB(1)],
        )
    }

    /// A smaller configuration for quick debug-build runs: two readers of two rounds (`a=0`,
    /// `b=0`), two sequential writers.
    pub fn small(variant: Variant) -> Config {
        Config::new(
            variant,
            vec![vec![Query::A(0), Query::A(0)], vec![Query::B(0), Query::B(0)]],
            vec![Op::SetA(1), Op::SetB(1)],
        )
    }

    /// Overlapping writers on the same row (`SET a=1`, `SET b=1`, in either order), serialised by
    /// the row lock taken by the pre-image, so the second marks while the first has committed
    /// but not finished (shared keys: `conj(a=1)`, `conj(b=0)`); three readers of two rounds
    /// (`a=0`, `b=0`, `b=0`).
    pub fn overlapping_writers(variant: Variant) -> Config {
        let mut c = Config::new(
            variant,
            vec![vec![Query::A(0), Query::A(0)], vec![Query::B(0), Query::B(0)], vec![Query::B(0), Query::B(0)]],
            vec![Op::SetA(1), Op::SetB(1)],
        );
        c.concurrent_writers = true;
        c
    }

    /// The distinct queries (value keys).
    pub fn queries(&self) -> &[Query] {
        &self.queries
    }

    fn value_index(&self, q: Query) -> usize {
        self.queries.iter().position(|x| *x == q).expect("query of the configuration")
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A stamp key's content: `0` absent, `1..=0x7f` a stamp, `0x80 | live | dead << 3` a marker:
/// the writers whose entries are live (bits 0..3) and those whose entries have expired but are
/// still stored (bits 3..6; `!w@expiry` with `expiry ≤ now`). A marker with no live entry is
/// *absent* for every operation ([`eff`]).
type Slot = u8;
const ABSENT: Slot = 0;
const MARKER: Slot = 0x80;
const LIVE: Slot = 0x07;
const DEAD_SHIFT: u32 = 3;

/// A marker, live or not (the stored bytes start with `!`).
fn is_marker(s: Slot) -> bool {
    s & MARKER != 0
}

/// The key as every operation sees it: a marker without live entries is absent, and a marker's
/// expired entries are ignored.
fn eff(s: Slot) -> Slot {
    if !is_marker(s) {
        s
    } else if s & LIVE == 0 {
        ABSENT
    } else {
        MARKER | (s & LIVE)
    }
}

/// What `finish` of the writer with bit `bit` leaves in a key. Absent (or expired): nothing; an
/// affected stamp: `DEL`; a marker, affected or not: this writer's entry removed (the key deleted
/// when no live entry is left; with `FINISH_DELETES_FOREIGN_MARKERS` an affected marker is
/// deleted whole); an unaffected stamp stays.
fn finish_slot(s: Slot, bit: u8, affected: bool, cfg: &Config) -> Slot {
    let s = eff(s);
    if affected && (!is_marker(s) || cfg.variant.finish_deletes_foreign_markers) {
        ABSENT
    } else if is_marker(s) {
        let rest = s & LIVE & !bit;
        if rest == 0 { ABSENT } else { MARKER | rest }
    } else {
        s
    }
}

/// A writer record whose expiry has passed (still stored until an operation drops it).
const REC_EXPIRED: u8 = 0x80;

fn is_stamp(s: Slot) -> bool {
    s != ABSENT && !is_marker(s)
}

/// Data a reader got from the database for its query: `1` the empty result, `2 + v` the row at
/// version `v` (within one execution a version identifies the row's content).
type Data = u8;
const NO_DATA: Data = 0;
const EMPTY: Data = 1;

fn data_name(d: Data) -> String {
    match d {
        NO_DATA => "-".to_owned(),
        EMPTY => "[]".to_owned(),
        v => format!("[row v{}]", v - 2),
    }
}

// Reader phases.
const R_IDLE: u8 = 0; // next: read_check (or db_read when stamps are taken after it)
const R_MISSED: u8 = 1; // read_check said Miss: next db_read
const R_FETCHED: u8 = 2; // has data: next store (or take_stamps)
const R_STAMPED: u8 = 3; // stamps_after_db_read: has data and stamps: next store

// Writer phases.
const W_NOT_STARTED: u8 = 0;
const W_LOCKED: u8 = 1; // pre-image taken, row locked
const W_MARKED: u8 = 2; // statement executed under a lease, not committed
const W_ENDED: u8 = 3; // committed or rolled back, not finished
const W_DONE: u8 = 4;
const W_IN_FLIGHT: u8 = 5; // COMMIT sent, not visible yet, the writer's future dropped
const W_IN_FLIGHT_FINISHED: u8 = 6; // the same, after the dropped lease was finished (broken)
const W_DROPPED: u8 = 7; // the COMMIT landed; nothing will finish the lease

// Lease states.
const L_NONE: u8 = 0;
const L_LIVE: u8 = 1;
const L_EXPIRED: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Reader {
    round: u8,
    phase: u8,
    /// Stamps from the Miss: `[table, conj]`.
    stamps: [Slot; 2],
    data: Data,
    /// [`Config::two_slots`]: which parts of the read-check (bit 0: table, bit 1: conj) or of
    /// the store (bit 0: the table's stamp checked) are done, what they saw, and the value the
    /// conj part read (`[table, conj, data]`).
    parts: u8,
    part_pending: bool,
    part_new_scheme: bool,
    cand: [u8; 3],
    /// The query's results committed while the composed read-check runs (bit `d` for data
    /// `d`), from its first part on: a hit may return any of them — the newest version
    /// committed before the read began, or a later one — and nothing older.
    seen: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Writer {
    phase: u8,
    lease: u8,
    remarked: bool,
    /// The pre-image (old row).
    old: (u8, u8),
}

/// The backend's keys, as a snapshot holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Saved {
    table: Slot,
    conj: [Slot; NCONJ],
    schemes: [u8; NSCHEMES],
    seq: u8,
    writer_rec: [u8; MAX_WRITERS],
    values: [[u8; 3]; MAX_QUERIES],
}

/// Restart progress ([`Config::restarts`]).
const RS_NONE: u8 = 0;
const RS_SAVED: u8 = 1;
const RS_RESTARTED: u8 = 2;

/// One state of the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    // Database: the committed row and its version, and the row lock.
    db_row: (u8, u8),
    db_ver: u8,
    row_lock: u8,
    // Cache backend.
    table: Slot,
    conj: [Slot; NCONJ],
    /// Registration sequence number of each scheme, 0 = not registered.
    schemes: [u8; NSCHEMES],
    /// The scheme sequence counter (`seq_key`).
    seq: u8,
    /// The backend's wall clock (`Redis*` sequence rules only).
    clock: u8,
    /// The writers hash: `mark_seq + 1`, 0 = no record.
    writer_rec: [u8; MAX_WRITERS],
    /// Value keys: `[table stamp, conj stamp, data]`, data 0 = no value.
    values: [[u8; 3]; MAX_QUERIES],
    // Actors.
    readers: [Reader; MAX_READERS],
    writers: [Writer; MAX_WRITERS],
    /// [`Config::restarts`]: the snapshot, how far the restart got, and whether the namespace
    /// was verified on the server running now.
    saved: Option<Saved>,
    restart: u8,
    booted: bool,
}

/// One atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reader: `Backend::read`.
    ReadCheck(u8),
    /// Reader ([`Config::two_slots`]): the table part of `Backend::read`.
    ReadTablePart(u8),
    /// Reader ([`Config::two_slots`]): the conj part of `Backend::read` (conj key and value).
    ReadConjPart(u8),
    /// Reader ([`Config::two_slots`]): the store's check of the table stamp (the other slot).
    StoreTablePart(u8),
    /// Reader: the database query (an atomic snapshot of committed data).
    DbRead(u8),
    /// Reader (variant `stamps_after_db_read`): `Backend::read` again after the DB read, to
    /// obtain stamps.
    TakeStamps(u8),
    /// Reader: `Backend::store`.
    Store(u8),
    /// Writer: `SELECT … FOR UPDATE` (takes the row lock, learns the old row).
    PreImage(u8),
    /// Writer: `Backend::mark` (begin the lease), then the statement executes (invisible).
    Mark(u8),
    /// Writer: `Backend::mark` again right before COMMIT.
    Remark(u8),
    /// Writer: `COMMIT` (the new version becomes visible, the row lock is released).
    Commit(u8),
    /// Writer: `ROLLBACK`.
    Rollback(u8),
    /// Writer: `COMMIT` sent, then the writer's future is dropped (cancelled) before it is
    /// visible ([`Config::cancellation`]).
    CommitDropped(u8),
    /// A dropped writer's COMMIT becomes visible (the row lock is released).
    Land(u8),
    /// Writer: `Backend::finish`.
    Finish(u8),
    /// The writer's lease runs out: its marker entries and its writer record expire.
    Expire(u8),
    /// Eviction deletes this value key.
    EvictValue(u8),
    /// Eviction deletes this conj key.
    EvictConj(u8),
    /// Eviction deletes the table key.
    EvictTable,
    /// Eviction deletes this writer's record.
    EvictWriterRecord(u8),
    /// The backend's wall clock (`now_us`) jumps to this value (`Redis*` sequence rules).
    Tick(u8),
    /// The backend saves a snapshot of its keys ([`Config::restarts`]).
    Save,
    /// The backend restarts (a new server process): with the snapshot's keys, or empty.
    Restart,
}

/// Why a read-check did not hit and may not store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// A marker (write lease) is on a key.
    Pending,
    /// The scheme was registered after a live writer's mark.
    NewScheme,
}

/// The answer of [`State::read_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadReply {
    /// The cached data.
    Hit(Data),
    /// Query the database, store with these stamps `[table, conj]`.
    Miss([Slot; 2]),
    /// Query the database, store nothing.
    Bypass(Bypass),
}

/// What a step observed (for the checker and for traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing to report.
    None,
    /// A read-check's reply; for a hit, `fresh` says whether it equals the current committed
    /// result.
    Read { reply: ReadReply, fresh: bool },
    /// A database read returned this data.
    Fetched(Data),
    /// A store: accepted or refused.
    Stored(bool),
}

impl State {
    /// The initial state: the row at version 0, an empty cache, nobody started.
    pub fn initial(cfg: &Config) -> State {
        State {
            db_row: cfg.initial_row,
            db_ver: 0,
            row_lock: 0,
            table: ABSENT,
            conj: [ABSENT; NCONJ],
            schemes: [0; NSCHEMES],
            seq: 0,
            clock: 0,
            writer_rec: [0; MAX_WRITERS],
            values: [[0; 3]; MAX_QUERIES],
            readers: [Reader::default(); MAX_READERS],
            writers: [Writer::default(); MAX_WRITERS],
            saved: None,
            restart: RS_NONE,
            booted: true,
        }
    }

    /// `verify_boot`, first in every script: on a server the namespace was not verified on, the
    /// epoch is deleted — every stored value and every reader's stamp vector (which includes the
    /// epoch) is dead. (Modelled by dropping the values and the readers' stamps: the model has no
    /// epoch key.) The broken variant skips it.
    fn verify_boot(&mut self, cfg: &Config) {
        if self.booted || cfg.variant.no_boot_check {
            return;
        }
        self.booted = true;
        for v in self.values.iter_mut() {
            *v = [0; 3];
        }
        for r in self.readers.iter_mut() {
            r.stamps = [ABSENT; 2];
        }
    }

    fn snapshot(&self) -> Saved {
        Saved {
            table: self.table,
            conj: self.conj,
            schemes: self.schemes,
            seq: self.seq,
            writer_rec: self.writer_rec,
            values: self.values,
        }
    }

    /// The current result of a query on the committed row.
    fn result(&self, q: Query) -> Data {
        if q.matches(self.db_row.0, self.db_row.1) { 2 + self.db_ver } else { EMPTY }
    }

    /// A stamp distinct from every stamp referenced anywhere in the state (a "random" stamp).
    fn fresh_stamp(&self) -> Slot {
        let mut max = 0;
        let mut see = |s: Slot| {
            if is_stamp(s) && s > max {
                max = s;
            }
        };
        see(self.table);
        self.conj.iter().for_each(|s| see(*s));
        self.values.iter().for_each(|v| {
            see(v[0]);
            see(v[1]);
        });
        self.readers.iter().for_each(|r| {
            see(r.stamps[0]);
            see(r.stamps[1]);
            see(r.cand[0]);
            see(r.cand[1]);
        });
        if let Some(sv) = &self.saved {
            see(sv.table);
            sv.conj.iter().for_each(|s| see(*s));
            sv.values.iter().for_each(|v| {
                see(v[0]);
                see(v[1]);
            });
        }
        assert!(max < 0x7f, "too many stamps");
        max + 1
    }

    /// Renumbers stamps by order of first appearance, so that states differing only in the
    /// names of their random stamps are one state.
    fn canonicalize(&mut self) {
        let mut map = [0u8; 128];
        let mut next = 1u8;
        let mut f = |s: &mut Slot| {
            if is_stamp(*s) {
                if map[*s as usize] == 0 {
                    map[*s as usize] = next;
                    next += 1;
                }
                *s = map[*s as usize];
            }
        };
        f(&mut self.table);
        self.conj.iter_mut().for_each(&mut f);
        for v in self.values.iter_mut() {
            let [t, c, _] = v;
            f(t);
            f(c);
        }
        for r in self.readers.iter_mut() {
            let [t, c] = &mut r.stamps;
            f(t);
            f(c);
            let [t, c, _] = &mut r.cand;
            f(t);
            f(c);
        }
        if let Some(sv) = self.saved.as_mut() {
            f(&mut sv.table);
            sv.conj.iter_mut().for_each(&mut f);
            for v in sv.values.iter_mut() {
                let [t, c, _] = v;
                f(t);
                f(c);
            }
        }
    }

    fn registered(&self, scheme: usize) -> bool {
        self.schemes[scheme] != 0
    }

    /// Whether the table has any registered scheme (its schemes hash exists).
    fn any_registered(&self) -> bool {
        self.schemes.iter().any(|s| *s != 0)
    }

    /// `affected_keys`: the conj keys of the old and the new row for every registered scheme.
    fn affected_keys(&self, cfg: &Config, w: usize) -> [bool; NCONJ] {
        let old = self.writers[w].old;
        let new = cfg.writers[w].apply(old);
        let mut keys = [false; NCONJ];
        for (a, b) in [old, new] {
            if self.registered(0) {
                keys[Query::A(a).conj()] = true;
            }
            if self.registered(1) {
                keys[Query::B(b).conj()] = true;
            }
            if self.registered(2) {
                keys[Query::All.conj()] = true;
            }
        }
        keys
    }

    // --- the cache backend's atomic operations -------------------------------------------

    /// `Backend::read` (see `MemoryBackend::read`), for query `q`, with the variant's rules.
    pub fn read_check(&mut self, cfg: &Config, q: Query) -> ReadReply {
        self.verify_boot(cfg);
        let new_stamp = self.fresh_stamp();
        let mut pending = false;
        // 2. The table key: reset when the table has no registered scheme, unless a marker.
        // (An expired marker is absent: replaced like a missing key.)
        let registered = self.schemes.iter().any(|s| *s != 0);
        let t = eff(self.table);
        if !(is_marker(t) || (registered && is_stamp(t))) {
            self.table = new_stamp;
        }
        pending |= is_marker(eff(self.table));
        // 3. The conj key: created when absent (or an expired marker).
        let c = q.conj();
        if eff(self.conj[c]) == ABSENT {
            self.conj[c] = new_stamp;
        }
        pending |= is_marker(eff(self.conj[c]));
        let stamps = [self.table, self.conj[c]];
        // 4. Hit when nothing is pending and the value's header equals the stamps.
        let v = self.values[cfg.value_index(q)];
        if !pending && v[2] != NO_DATA && v[0] == stamps[0] && v[1] == stamps[1] {
            return ReadReply::Hit(v[2]);
        }
        // 5. Drop expired writer records; register the scheme; a live writer that marked before
        // it was registered ⇒ bypass.
        if self.register_scheme(cfg, q) {
            return ReadReply::Bypass(Bypass::NewScheme);
        }
        // 6.
        if pending {
            return ReadReply::Bypass(Bypass::Pending);
        }
        ReadReply::Miss(stamps)
    }

    /// The table part of a composed read-check ([`Config::two_slots`]): the table key (reset
    /// when the table has no registered scheme, unless a marker), the scheme's registration and
    /// the new-scheme rule. Returns the table stamp, whether it is pending, and whether the rule
    /// says bypass.
    pub fn read_table_part(&mut self, cfg: &Config, q: Query) -> (Slot, bool, bool) {
        let new_stamp = self.fresh_stamp();
        let registered = self.schemes.iter().any(|s| *s != 0);
        let t = eff(self.table);
        if !(is_marker(t) || (registered && is_stamp(t))) {
            self.table = new_stamp;
        }
        let pending = is_marker(eff(self.table));
        let new_scheme = self.register_scheme(cfg, q);
        (self.table, pending, new_scheme)
    }

    /// Step 5 of a read-check: drops expired writer records, registers the query's scheme if
    /// needed; whether a live writer marked before it was registered (the new-scheme rule).
    fn register_scheme(&mut self, cfg: &Config, q: Query) -> bool {
        self.drop_expired_records();
        let s = q.scheme();
        if self.schemes[s] == 0 {
            self.seq = match cfg.variant.seq_rule {
                SeqRule::Counter => self.seq + 1,
                SeqRule::RedisDocumented | SeqRule::RedisFixed => self.clock.max(self.seq + 1),
            };
            self.schemes[s] = self.seq;
        }
        let seq = self.schemes[s];
        !cfg.variant.no_new_scheme_rule
            && self.writer_rec.iter().any(|rec| *rec != 0 && *rec & REC_EXPIRED == 0 && *rec - 1 < seq)
    }

    /// The conj part of a composed read-check: the conj key (created when absent) and the value
    /// stored with it. Returns the conj stamp, whether it is pending, and the value.
    pub fn read_conj_part(&mut self, cfg: &Config, q: Query) -> (Slot, bool, [u8; 3]) {
        let new_stamp = self.fresh_stamp();
        let c = q.conj();
        if eff(self.conj[c]) == ABSENT {
            self.conj[c] = new_stamp;
        }
        (self.conj[c], is_marker(eff(self.conj[c])), self.values[cfg.value_index(q)])
    }

    /// `Backend::store`: stores when the current stamps equal the reader's (a marker, live or
    /// expired, never equals a stamp).
    pub fn store(&mut self, cfg: &Config, q: Query, stamps: [Slot; 2], data: Data) -> bool {
        // The stamp vector a store compares includes the epoch: when this store is the first
        // operation on a new server, `verify_boot` deletes the epoch its stamps were taken under.
        let first_on_new_server = !self.booted && !cfg.variant.no_boot_check;
        self.verify_boot(cfg);
        if first_on_new_server {
            return false;
        }
        let current = [self.table, self.conj[q.conj()]];
        if !is_stamp(current[0]) || !is_stamp(current[1]) || current != stamps {
            return false;
        }
        self.values[cfg.value_index(q)] = [stamps[0], stamps[1], data];
        true
    }

    /// `Backend::mark`: writer `w` joins the marker of every affected key (a stamp, nothing or an
    /// expired marker is replaced by a new marker; a live marker drops its expired entries), and
    /// its writer record gets the current sequence number (expired records are dropped).
    pub fn mark(&mut self, cfg: &Config, w: usize) {
        self.verify_boot(cfg);
        let bit = 1u8 << w;
        let keys = self.affected_keys(cfg, w);
        for (i, k) in keys.iter().enumerate() {
            if *k && !cfg.table_level_writes {
                let e = eff(self.conj[i]);
                self.conj[i] = if is_marker(e) { e | bit } else { MARKER | bit };
            }
        }
        // No registered scheme: the write is table-level (`affected_keys` in protocol.rs).
        if !self.any_registered() || cfg.table_level_writes {
            let e = eff(self.table);
            self.table = if is_marker(e) { e | bit } else { MARKER | bit };
        }
        self.drop_expired_records();
        let mark_seq = match cfg.variant.seq_rule {
            SeqRule::Counter => self.seq,
            SeqRule::RedisDocumented => self.clock.max(self.seq),
            SeqRule::RedisFixed => {
                self.seq = self.clock.max(self.seq);
                self.seq
            }
        };
        self.writer_rec[w] = mark_seq + 1;
        self.writers[w].lease = L_LIVE;
    }

    /// `Backend::finish`: for every affected key (against the schemes registered *now*): a
    /// stamp or an expired marker is deleted, a live marker loses this writer's entry and its
    /// expired ones and is deleted when none is left; then the writer record is removed (and the
    /// expired ones dropped).
    pub fn finish(&mut self, cfg: &Config, w: usize) {
        self.verify_boot(cfg);
        let bit = 1u8 << w;
        let keys = self.affected_keys(cfg, w);
        for (i, k) in keys.iter().enumerate() {
            if !*k || cfg.table_level_writes {
                continue;
            }
            self.conj[i] = finish_slot(self.conj[i], bit, true, cfg);
        }
        // The table key: affected when no scheme is registered (or the write is table-level);
        // otherwise a marker (this writer's, from a mark made before a scheme was registered)
        // still loses this writer's entry.
        self.table = finish_slot(self.table, bit, !self.any_registered() || cfg.table_level_writes, cfg);
        self.writer_rec[w] = 0;
        self.drop_expired_records();
        self.writers[w].lease = L_NONE;
    }

    /// The lease of writer `w` runs out: the expiry of its entry in every marker, and of its
    /// writer record, passes. They stay stored, but from now on every operation treats them as
    /// absent ([`eff`], `REC_EXPIRED`) and drops them when it touches them; a marker with no live
    /// entry left is absent. (The key does not vanish: it has no TTL.)
    pub fn expire(&mut self, w: usize) {
        let bit = 1u8 << w;
        let age = |s: &mut Slot| {
            if is_marker(*s) && *s & bit != 0 {
                *s = (*s & !bit) | (bit << DEAD_SHIFT);
            }
        };
        age(&mut self.table);
        self.conj.iter_mut().for_each(age);
        if self.writer_rec[w] != 0 {
            self.writer_rec[w] |= REC_EXPIRED;
        }
        self.writers[w].lease = L_EXPIRED;
    }

    /// Drops the writer records whose expiry has passed (`read` step 5, `mark`, `finish`).
    fn drop_expired_records(&mut self) {
        for rec in self.writer_rec.iter_mut() {
            if *rec & REC_EXPIRED != 0 {
                *rec = 0;
            }
        }
    }

    /// Eviction deletes value key `i`.
    pub fn evict_value(&mut self, i: usize) {
        self.values[i] = [0; 3];
    }

    /// Eviction deletes conj key `i` (a stamp; or, with `markers_evictable`, a marker).
    pub fn evict_conj(&mut self, i: usize) {
        self.conj[i] = ABSENT;
    }

    /// Eviction deletes the table key (a marker, with `markers_evictable` only: a table stamp
    /// has no TTL).
    pub fn evict_table(&mut self) {
        self.table = ABSENT;
    }

    /// Eviction deletes writer `w`'s record (`markers_evictable` only). The writer is not told:
    /// its lease is still live as far as it knows.
    pub fn evict_writer_record(&mut self, w: usize) {
        self.writer_rec[w] = 0;
    }

    /// Whether some value would be served by a read-check right now although it differs from
    /// the committed result: returns that query. (A read-check's hit decision depends only on
    /// the state, so this is the "no stale hit" property for every possible reader at once.)
    pub fn servable_stale(&self, cfg: &Config) -> Option<Query> {
        // Not verified on this server yet: any read-check verifies first, and drops them.
        if !self.booted && !cfg.variant.no_boot_check {
            return None;
        }
        // The hit check of the backends: every stamp present and current (no registry check:
        // a write to a table without registered schemes is table-level).
        for (i, q) in cfg.queries.iter().enumerate() {
            let v = self.values[i];
            let c = self.conj[q.conj()];
            let servable = v[2] != NO_DATA && is_stamp(self.table) && is_stamp(c) && v[0] == self.table && v[1] == c;
            if servable && v[2] != self.result(*q) {
                return Some(*q);
            }
        }
        None
    }

    // --- actors --------------------------------------------------------------------------

    fn reader_query(cfg: &Config, r: usize, round: u8) -> Query {
        cfg.readers[r][round as usize]
    }

    fn next_round(&mut self, r: usize) {
        let rd = &mut self.readers[r];
        rd.round += 1;
        rd.phase = R_IDLE;
        rd.stamps = [ABSENT; 2];
        rd.data = NO_DATA;
        rd.parts = 0;
        rd.part_pending = false;
        rd.part_new_scheme = false;
        rd.cand = [0; 3];
        rd.seen = 0;
    }

    /// A commit became visible: readers in the middle of a composed read-check may return it.
    fn note_commit(&mut self, cfg: &Config) {
        for r in 0..cfg.readers.len() {
            let rd = self.readers[r];
            if rd.phase == R_IDLE && rd.parts != 0 && (rd.round as usize) < cfg.readers[r].len() {
                let q = Self::reader_query(cfg, r, rd.round);
                self.readers[r].seen |= 1u16 << self.result(q);
            }
        }
    }

    /// What a reader does with a read-check's reply (the observable event).
    fn on_read_reply(&mut self, cfg: &Config, r: usize, q: Query, reply: ReadReply) -> Event {
        match reply {
            ReadReply::Hit(d) => {
                let ev = Event::Read { reply, fresh: d == self.result(q) };
                self.next_round(r);
                ev
            }
            ReadReply::Bypass(_) => {
                // Queries the database and stores nothing: nothing observable.
                self.next_round(r);
                Event::Read { reply, fresh: true }
            }
            ReadReply::Miss(stamps) => {
                let rd = &mut self.readers[r];
                rd.phase = R_MISSED;
                rd.parts = 0;
                // Stamps taken after the DB read: the read-check's stamps are not used.
                rd.stamps = if cfg.variant.stamps_after_db_read { [ABSENT; 2] } else { stamps };
                Event::Read { reply, fresh: true }
            }
        }
    }

    /// The decision of a composed read-check, once both parts ran: a hit when nothing was
    /// pending and the value the conj part read has both stamps in its header (the most
    /// permissive answer the composition can give: the client-side `MGET` check does not look
    /// at the registry), else the script's answers.
    fn decide_composed_read(&mut self, cfg: &Config, r: usize, q: Query) -> Event {
        let rd = self.readers[r];
        let v = rd.cand;
        let other_slot = cfg.variant.composed_hit_own_slot_only || v[0] == rd.stamps[0];
        if !rd.part_pending && v[2] != NO_DATA && other_slot && v[1] == rd.stamps[1] {
            let reply = ReadReply::Hit(v[2]);
            self.next_round(r);
            return Event::Read { reply, fresh: rd.seen & (1u16 << v[2]) != 0 };
        }
        let reply = if rd.part_new_scheme {
            ReadReply::Bypass(Bypass::NewScheme)
        } else if rd.part_pending {
            ReadReply::Bypass(Bypass::Pending)
        } else {
            ReadReply::Miss(rd.stamps)
        };
        self.on_read_reply(cfg, r, q, reply)
    }

    fn writer_may_start(&self, cfg: &Config, w: usize) -> bool {
        self.row_lock == 0
            && (cfg.concurrent_writers || self.writers[..w].iter().all(|x| x.phase == W_DONE || x.phase == W_DROPPED))
    }

    fn commit_allowed(&self, cfg: &Config, w: usize) -> bool {
        let wr = &self.writers[w];
        match cfg.variant.remark {
            Remark::Never => true,
            Remark::IfExpired => wr.lease == L_LIVE,
            Remark::Always => wr.remarked,
        }
    }

    /// The enabled actions, in a fixed order.
    pub fn actions(&self, cfg: &Config, out: &mut Vec<Action>) {
        out.clear();
        let v = cfg.variant;
        for r in 0..cfg.readers.len() {
            let rd = &self.readers[r];
            if rd.round as usize >= cfg.readers[r].len() {
                continue;
            }
            let r8 = r as u8;
            if cfg.two_slots {
                match rd.phase {
                    R_IDLE => {
                        // The two parts of the read-check, in either order.
                        if rd.parts & 1 == 0 {
                            out.push(Action::ReadTablePart(r8));
                        }
                        if rd.parts & 2 == 0 {
                            out.push(Action::ReadConjPart(r8));
                        }
                    }
                    R_MISSED => out.push(Action::DbRead(r8)),
                    R_FETCHED if rd.parts & 1 == 0 => out.push(Action::StoreTablePart(r8)),
                    R_FETCHED => out.push(Action::Store(r8)),
                    _ => unreachable!(),
                }
                continue;
            }
            out.push(match (rd.phase, v.stamps_after_db_read) {
                (R_IDLE, _) => Action::ReadCheck(r8),
                (R_MISSED, _) => Action::DbRead(r8),
                (R_FETCHED, false) => Action::Store(r8),
                (R_FETCHED, true) => Action::TakeStamps(r8),
                (R_STAMPED, _) => Action::Store(r8),
                _ => unreachable!(),
            });
        }
        for w in 0..cfg.writers.len() {
            let wr = &self.writers[w];
            let w8 = w as u8;
            match wr.phase {
                W_NOT_STARTED if self.writer_may_start(cfg, w) => out.push(Action::PreImage(w8)),
                W_LOCKED => {
                    if v.no_leases {
                        out.push(Action::Commit(w8));
                        if cfg.rollbacks {
                            out.push(Action::Rollback(w8));
                        }
                    } else {
                        out.push(Action::Mark(w8));
                    }
                }
                W_MARKED => {
                    let remark = match v.remark {
                        Remark::Never => false,
                        Remark::IfExpired => wr.lease == L_EXPIRED,
                        Remark::Always => !wr.remarked,
                    };
                    if remark {
                        out.push(Action::Remark(w8));
                    }
                    if self.commit_allowed(cfg, w) {
                        out.push(Action::Commit(w8));
                        if cfg.cancellation {
                            out.push(Action::CommitDropped(w8));
                        }
                    }
                    if cfg.rollbacks {
                        out.push(Action::Rollback(w8));
                    }
                }
                W_ENDED => out.push(Action::Finish(w8)),
                W_IN_FLIGHT => {
                    out.push(Action::Land(w8));
                    if v.finish_on_drop {
                        out.push(Action::Finish(w8));
                    }
                }
                W_IN_FLIGHT_FINISHED => out.push(Action::Land(w8)),
                _ => {}
            }
            // The lease can run out at any time while it is live, except between an
            // unconditional re-mark and COMMIT (the fresh lease covers the COMMIT), and while
            // a COMMIT is in flight (it lands within the lease).
            let covered = (v.remark == Remark::Always && wr.phase == W_MARKED && wr.remarked)
                || wr.phase == W_IN_FLIGHT
                || wr.phase == W_IN_FLIGHT_FINISHED;
            if cfg.lease_expiry && wr.lease == L_LIVE && !covered {
                out.push(Action::Expire(w8));
            }
        }
        if cfg.eviction {
            // Keys with a TTL: values and conj stamps. Markers and writer records have none
            // (and the table stamp, schemes, seq and epoch never had one), so `volatile-*` never
            // evicts them — unless the variant gives them one.
            for (i, val) in self.values.iter().enumerate().take(cfg.queries.len()) {
                if val[2] != NO_DATA {
                    out.push(Action::EvictValue(i as u8));
                }
            }
            for (i, c) in self.conj.iter().enumerate() {
                if is_stamp(*c) || (v.markers_evictable && is_marker(*c)) {
                    out.push(Action::EvictConj(i as u8));
                }
            }
            if v.markers_evictable {
                if is_marker(self.table) {
                    out.push(Action::EvictTable);
                }
                for w in 0..cfg.writers.len() {
                    if self.writer_rec[w] != 0 {
                        out.push(Action::EvictWriterRecord(w as u8));
                    }
                }
            }
        }
        if cfg.restarts {
            if self.restart == RS_NONE {
                out.push(Action::Save);
            }
            // Not between an unconditional re-mark and the moment its COMMIT is visible (the
            // stated window), which for a dropped writer lasts until its COMMIT lands.
            let remarked_uncommitted = self.writers.iter().take(cfg.writers.len()).any(|w| {
                (w.phase == W_MARKED && w.remarked) || w.phase == W_IN_FLIGHT || w.phase == W_IN_FLIGHT_FINISHED
            });
            if self.restart != RS_RESTARTED && !remarked_uncommitted {
                out.push(Action::Restart);
            }
        }
        if v.seq_rule != SeqRule::Counter {
            for t in 0..=MAX_CLOCK {
                if t != self.clock {
                    out.push(Action::Tick(t));
                }
            }
        }
    }

    /// Applies one action: the successor state (canonical) and what was observed.
    pub fn step(&self, cfg: &Config, action: Action) -> (State, Event) {
        let mut s = *self;
        let mut ev = Event::None;
        match action {
            Action::ReadCheck(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let reply = s.read_check(cfg, q);
                ev = s.on_read_reply(cfg, r, q, reply);
            }
            Action::ReadTablePart(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let (t, pending, new_scheme) = s.read_table_part(cfg, q);
                let now = 1u16 << s.result(q);
                let rd = &mut s.readers[r];
                rd.seen |= now;
                rd.stamps[0] = t;
                rd.part_pending |= pending;
                rd.part_new_scheme |= new_scheme;
                rd.parts |= 1;
                if rd.parts == 3 {
                    ev = s.decide_composed_read(cfg, r, q);
                }
            }
            Action::ReadConjPart(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let (c, pending, cand) = s.read_conj_part(cfg, q);
                let now = 1u16 << s.result(q);
                let rd = &mut s.readers[r];
                rd.seen |= now;
                rd.stamps[1] = c;
                rd.part_pending |= pending;
                rd.cand = cand;
                rd.parts |= 2;
                if rd.parts == 3 {
                    ev = s.decide_composed_read(cfg, r, q);
                }
            }
            Action::StoreTablePart(r) => {
                let r = r as usize;
                let rd = s.readers[r];
                if is_stamp(s.table) && s.table == rd.stamps[0] {
                    s.readers[r].parts |= 1;
                } else {
                    ev = Event::Stored(false);
                    s.next_round(r);
                }
            }
            Action::DbRead(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let d = s.result(q);
                s.readers[r].data = d;
                s.readers[r].phase = R_FETCHED;
                ev = Event::Fetched(d);
            }
            Action::TakeStamps(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let reply = s.read_check(cfg, q);
                ev = Event::Read { reply, fresh: true };
                match reply {
                    ReadReply::Miss(stamps) => {
                        s.readers[r].stamps = stamps;
                        s.readers[r].phase = R_STAMPED;
                    }
                    // Already cached, or bypass: the reader returns its DB data, stores nothing.
                    _ => s.next_round(r),
                }
            }
            Action::Store(r) => {
                let r = r as usize;
                let q = Self::reader_query(cfg, r, s.readers[r].round);
                let rd = s.readers[r];
                let stored = if cfg.two_slots {
                    // The conj part: its stamp checked, the value written (the table's stamp was
                    // checked by the table part, before).
                    let c = s.conj[q.conj()];
                    let ok = is_stamp(c) && c == rd.stamps[1];
                    if ok {
                        s.values[cfg.value_index(q)] = [rd.stamps[0], rd.stamps[1], rd.data];
                    }
                    ok
                } else {
                    s.store(cfg, q, rd.stamps, rd.data)
                };
                ev = Event::Stored(stored);
                s.next_round(r);
            }
            Action::PreImage(w) => {
                let w = w as usize;
                s.row_lock = w as u8 + 1;
                s.writers[w].old = s.db_row;
                s.writers[w].phase = W_LOCKED;
            }
            Action::Mark(w) => {
                let w = w as usize;
                s.mark(cfg, w);
                s.writers[w].phase = W_MARKED;
            }
            Action::Remark(w) => {
                let w = w as usize;
                s.mark(cfg, w);
                s.writers[w].remarked = true;
            }
            Action::Commit(w) => {
                let w = w as usize;
                s.db_row = cfg.writers[w].apply(s.writers[w].old);
                s.db_ver += 1;
                s.row_lock = 0;
                s.writers[w].phase = W_ENDED;
                s.note_commit(cfg);
            }
            Action::Rollback(w) => {
                let w = w as usize;
                s.row_lock = 0;
                s.writers[w].phase = W_ENDED;
            }
            Action::CommitDropped(w) => s.writers[w as usize].phase = W_IN_FLIGHT,
            Action::Land(w) => {
                let w = w as usize;
                s.db_row = cfg.writers[w].apply(s.writers[w].old);
                s.db_ver += 1;
                s.row_lock = 0;
                s.writers[w].phase = if s.writers[w].phase == W_IN_FLIGHT { W_DROPPED } else { W_DONE };
                s.note_commit(cfg);
            }
            Action::Finish(w) => {
                let w = w as usize;
                s.finish(cfg, w);
                s.writers[w].phase = if s.writers[w].phase == W_IN_FLIGHT { W_IN_FLIGHT_FINISHED } else { W_DONE };
            }
            Action::Expire(w) => s.expire(w as usize),
            Action::EvictValue(i) => s.evict_value(i as usize),
            Action::EvictConj(i) => s.evict_conj(i as usize),
            Action::EvictTable => s.evict_table(),
            Action::EvictWriterRecord(w) => s.evict_writer_record(w as usize),
            Action::Tick(t) => s.clock = t,
            Action::Save => {
                s.saved = Some(s.snapshot());
                s.restart = RS_SAVED;
            }
            Action::Restart => {
                let sv = s.saved.take().unwrap_or(Saved {
                    table: ABSENT,
                    conj: [ABSENT; NCONJ],
                    schemes: [0; NSCHEMES],
                    seq: 0,
                    writer_rec: [0; MAX_WRITERS],
                    values: [[0; 3]; MAX_QUERIES],
                });
                s.table = sv.table;
                s.conj = sv.conj;
                s.schemes = sv.schemes;
                s.seq = sv.seq;
                s.writer_rec = sv.writer_rec;
                s.values = sv.values;
                s.restart = RS_RESTARTED;
                s.booted = false;
            }
        }
        s.canonicalize();
        (s, ev)
    }

    /// A one-line rendering of the cache and database (for traces).
    pub fn describe(&self, cfg: &Config) -> String {
        let slot = |s: Slot| -> String {
            if s == ABSENT {
                "·".to_owned()
            } else if is_marker(s) {
                // Expired entries are shown with a `†`.
                let ids: Vec<String> = (0..MAX_WRITERS)
                    .filter_map(|w| {
                        if s & (1 << w) != 0 {
                            Some(format!("W{}", w + 1))
                        } else if s & (1 << (w as u32 + DEAD_SHIFT)) != 0 {
                            Some(format!("W{}†", w + 1))
                        } else {
                            None
                        }
                    })
                    .collect();
                format!("!{}", ids.join(","))
            } else {
                format!("s{s}")
            }
        };
        let mut out =
            format!("db=(a={},b={},v{}) table={}", self.db_row.0, self.db_row.1, self.db_ver, slot(self.table));
        for (i, c) in self.conj.iter().enumerate() {
            if *c != ABSENT {
                out.push_str(&format!(" {}={}", conj_name(i), slot(*c)));
            }
        }
        let schemes: Vec<String> = (0..NSCHEMES)
            .filter(|s| self.schemes[*s] != 0)
            .map(|s| format!("{}#{}", SCHEME_NAMES[s], self.schemes[s]))
            .collect();
        out.push_str(&format!(" schemes={{{}}}", schemes.join(",")));
        if cfg.variant.seq_rule != SeqRule::Counter {
            out.push_str(&format!(" seq_key={} now_us={}", self.seq, self.clock));
        }
        let recs: Vec<String> = (0..cfg.writers.len())
            .filter(|w| self.writer_rec[*w] != 0)
            .map(|w| {
                let rec = self.writer_rec[w];
                let dead = if rec & REC_EXPIRED != 0 { "†" } else { "" };
                format!("W{}@{}{dead}", w + 1, (rec & !REC_EXPIRED) - 1)
            })
            .collect();
        if !recs.is_empty() {
            out.push_str(&format!(" writers={{{}}}", recs.join(",")));
        }
        for (i, q) in cfg.queries.iter().enumerate() {
            let v = self.values[i];
            if v[2] != NO_DATA {
                out.push_str(&format!(" value({q})=[{} {}|{}]", slot(v[0]), slot(v[1]), data_name(v[2])));
            }
        }
        out
    }

    /// A one-line rendering of a step and what it observed (for traces).
    pub fn describe_step(&self, cfg: &Config, action: Action, ev: Event) -> String {
        let reader = |r: u8| -> (String, Query) {
            let q = Self::reader_query(cfg, r as usize, self.readers[r as usize].round);
            (format!("R{} round {} ({q})", r + 1, self.readers[r as usize].round + 1), q)
        };
        let stamps = |s: [Slot; 2]| format!("[table s{} conj s{}]", s[0], s[1]);
        let reply = |ev: Event| match ev {
            Event::Read { reply: ReadReply::Hit(d), fresh } => {
                format!("HIT {}{}", data_name(d), if fresh { "" } else { "  <-- STALE" })
            }
            Event::Read { reply: ReadReply::Miss(s), .. } => format!("Miss {}", stamps(s)),
            Event::Read { reply: ReadReply::Bypass(b), .. } => format!("Bypass({b:?})"),
            _ => String::new(),
        };
        match action {
            Action::ReadCheck(r) => {
                let (who, q) = reader(r);
                let miss = matches!(ev, Event::Read { reply: ReadReply::Miss(_), .. });
                let note = if cfg.variant.stamps_after_db_read && miss { " (stamps not kept)" } else { "" };
                format!("{who}: read_check({}) -> {}{note}", conj_name(q.conj()), reply(ev))
            }
            Action::DbRead(r) => {
                let (who, _) = reader(r);
                let d = if let Event::Fetched(d) = ev { d } else { NO_DATA };
                format!("{who}: DB read -> {}", data_name(d))
            }
            Action::TakeStamps(r) => format!("{}: take stamps (read_check) -> {}", reader(r).0, reply(ev)),
            Action::ReadTablePart(r) => format!("{}: read_check, table part {}", reader(r).0, reply(ev)),
            Action::ReadConjPart(r) => {
                let (who, q) = reader(r);
                format!("{who}: read_check, {} part {}", conj_name(q.conj()), reply(ev))
            }
            Action::StoreTablePart(r) => {
                let refused = matches!(ev, Event::Stored(false));
                format!("{}: store, table part -> {}", reader(r).0, if refused { "refused" } else { "current" })
            }
            Action::Store(r) => {
                let (who, _) = reader(r);
                let rd = self.readers[r as usize];
                let ok = matches!(ev, Event::Stored(true));
                format!(
                    "{who}: store({} with {}) -> {}",
                    data_name(rd.data),
                    stamps(rd.stamps),
                    if ok { "stored" } else { "refused" }
                )
            }
            Action::PreImage(w) => format!(
                "W{} ({}): pre-image SELECT FOR UPDATE -> (a={},b={})",
                w + 1,
                cfg.writers[w as usize],
                self.db_row.0,
                self.db_row.1
            ),
            Action::Mark(w) => format!("W{}: mark (lease begins), statement executes", w + 1),
            Action::Remark(w) => format!("W{}: re-mark before COMMIT", w + 1),
            Action::Commit(w) => format!("W{}: COMMIT -> version {}", w + 1, self.db_ver + 1),
            Action::Rollback(w) => format!("W{}: ROLLBACK", w + 1),
            Action::CommitDropped(w) => format!("W{}: COMMIT sent, then the writer's future is dropped", w + 1),
            Action::Land(w) => format!("W{}: the dropped COMMIT lands -> version {}", w + 1, self.db_ver + 1),
            Action::Finish(w) => format!("W{}: finish", w + 1),
            Action::Expire(w) => {
                format!("W{}: lease expires (its marker entries and writer record are expired from now on)", w + 1)
            }
            Action::EvictValue(i) => format!("eviction: value({}) deleted", cfg.queries[i as usize]),
            Action::EvictConj(i) => format!("eviction: {} deleted", conj_name(i as usize)),
            Action::EvictTable => "eviction: table key deleted".to_owned(),
            Action::EvictWriterRecord(w) => format!("eviction: W{}'s writer record deleted", w + 1),
            Action::Tick(t) => format!("clock: now_us = {t}"),
            Action::Save => "redis: SAVE (a snapshot of every key)".to_owned(),
            Action::Restart => if self.saved.is_some() {
                "redis: kill -9, restart from the snapshot"
            } else {
                "redis: kill -9, restart empty"
            }
            .to_owned(),
        }
    }
}
