//! Exhaustive interleaving checks of the protocol model (see `docs/protocol.md`, "Model check").
//!
//! Run with `cargo test -p cacheops-model -- --nocapture` to see state counts and the
//! counterexample traces; the largest configuration is `#[ignore]`d:
//! `cargo test -p cacheops-model --release -- --ignored --nocapture`.

use cacheops_model::{Check, Config, Op, Query, Report, Variant, ViolationKind, explore};

fn run(name: &str, cfg: &Config, check: Check) -> Report {
    let r = explore(cfg, check);
    println!("{name}: {r}");
    if let Some(v) = &r.violation {
        println!("{v}");
    }
    r
}

/// Explores everything; no stale hit, and no state holding a stale value a read-check would
/// serve. The model must also really cache (hits and stores happen), or it proves nothing.
fn assert_safe(name: &str, cfg: &Config) -> Report {
    let r = run(name, cfg, Check::StaleHitOrServable);
    assert!(r.violation.is_none(), "{name}: unexpected violation");
    assert!(r.hits > 0 && r.stores > 0, "{name}: the model never hits; it proves nothing");
    r
}

/// The search must end with a reader's stale hit; the shortest trace is printed.
fn assert_stale_hit(name: &str, cfg: &Config) -> Report {
    let r = run(name, cfg, Check::StaleHit);
    match &r.violation {
        Some(v) => assert!(matches!(v.kind, ViolationKind::StaleHit(_)), "{name}: {v}"),
        None => panic!("{name}: expected a stale hit, found none"),
    }
    r
}

/// `a = v` and table-level (`SELECT * FROM t`, the empty conj) queries; the first writer does
/// not touch `a=2`.
fn with_table_level(variant: Variant) -> Config {
    Config::new(
        variant,
        vec![vec![Query::A(0), Query::A(0)], vec![Query::All, Query::All], vec![Query::A(2), Query::A(2)]],
        vec![Op::SetA(1), Op::SetA(2)],
    )
}

// --- the correct protocol -----------------------------------------------------------------

#[test]
fn correct_small() {
    assert_safe("small/correct", &Config::small(Variant::CORRECT));
}

/// DESIGN §4: one row (a, b), schemes a and b, two sequential writers, three readers of two
/// rounds, leases that may expire at any time; leases + sequence rule + re-mark: no stale hit.
#[test]
fn correct_design() {
    let r = assert_safe("design/correct", &Config::design(Variant::CORRECT));
    assert!(r.states > 1_000_000);
}

#[test]
fn correct_design_always_remark() {
    assert_safe("design/correct(always re-mark)", &Config::design(Variant::CORRECT_ALWAYS_REMARK));
}

#[test]
fn correct_table_level_queries() {
    assert_safe("table-level/correct", &with_table_level(Variant::CORRECT));
}

/// Writers overlap (the second marks while the first has committed but not finished), and may
/// roll back: markers are sets of writer ids, `finish` removes only its own.
#[test]
fn correct_overlapping_writers_with_rollbacks() {
    let mut cfg = Config::new(
        Variant::CORRECT,
        vec![vec![Query::A(0), Query::A(0)], vec![Query::B(0), Query::B(0)]],
        vec![Op::SetA(1), Op::SetB(1)],
    );
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    assert_safe("overlapping(2 readers)+rollbacks/correct", &cfg);
}

/// The time-based sequence numbers with the fix (mark stores its sequence number, registration
/// is strictly above it), with a wall clock that may stand still or jump back.
#[test]
fn correct_redis_seq_fixed() {
    assert_safe("small/redis-seq-fixed", &Config::small(Variant::REDIS_SEQ_FIXED));
}

// --- the naive variants: each must be refuted --------------------------------------------

#[test]
fn broken_stamps_after_db_read() {
    assert_stale_hit("design/stamps_after_db_read", &Config::design(Variant::STAMPS_AFTER_DB_READ));
}

#[test]
fn broken_no_leases() {
    assert_stale_hit("design/no_leases", &Config::design(Variant::NO_LEASES));
}

#[test]
fn broken_no_new_scheme_rule() {
    assert_stale_hit("design/no_new_scheme_rule", &Config::design(Variant::NO_NEW_SCHEME_RULE));
}

#[test]
fn broken_no_remark() {
    assert_stale_hit("design/no_remark", &Config::design(Variant::NO_REMARK));
}

#[test]
fn broken_finish_deletes_foreign_markers() {
    assert_stale_hit(
        "overlapping/finish_deletes_foreign_markers",
        &Config::overlapping_writers(Variant::FINISH_DELETES_FOREIGN_MARKERS),
    );
}

/// The Redis sequence rule as documented on `Backend::read`/`Backend::mark` (time based, the
/// mark's number not stored): a scheme registered in the same microsecond as a writer's mark gets
/// the same number, `mark_seq < seq` is false, and the new-scheme rule does not fire.
#[test]
fn broken_redis_seq_documented() {
    assert_stale_hit("small/redis-seq-documented", &Config::small(Variant::REDIS_SEQ_DOCUMENTED));
}

// --- the largest configuration -------------------------------------------------------------

/// DESIGN's configuration with overlapping writers that may roll back, the time-based fixed
/// sequence rule, and eviction; run it with
/// `cargo test -p cacheops-model --release -- --ignored --nocapture`.
#[test]
#[ignore = "large: run with --release -- --ignored"]
fn correct_full() {
    let mut cfg = Config::design(Variant::CORRECT);
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    assert_safe("full/correct", &cfg);
    let mut cfg = Config::overlapping_writers(Variant::CORRECT);
    cfg.rollbacks = true;
    assert_safe("overlapping(3 readers)+rollbacks/correct", &cfg);
    let mut cfg = with_table_level(Variant::CORRECT);
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    assert_safe("full-table-level/correct", &cfg);
    let mut cfg = Config::design(Variant::REDIS_SEQ_FIXED);
    assert_safe("design/redis-seq-fixed", &cfg);
    cfg.readers.truncate(2);
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    assert_safe("overlapping(2 readers)+rollbacks/redis-seq-fixed", &cfg);
    let mut cfg = Config::design(Variant::CORRECT);
    cfg.eviction = true;
    assert_safe("design+eviction/correct", &cfg);
    let mut cfg = Config::small(Variant::REDIS_SEQ_FIXED);
    cfg.eviction = true;
    assert_safe("small+eviction/redis-seq-fixed", &cfg);
    let mut cfg = Config::small(Variant::CORRECT);
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    cfg.eviction = true;
    assert_safe("overlapping(2 readers)+rollbacks+eviction/correct", &cfg);
}

// --- eviction (`maxmemory`) -----------------------------------------------------------------

/// Eviction under a `volatile-*` policy: values and conj stamps (the keys with a TTL) may vanish
/// at any moment; markers and writer records carry their expiry in their value and have no TTL,
/// so they are never evicted. Eviction can then only cause misses.
#[test]
fn correct_with_eviction() {
    let mut cfg = Config::small(Variant::CORRECT);
    cfg.eviction = true;
    assert_safe("small+eviction/correct", &cfg);
    let mut cfg = Config::new(
        Variant::CORRECT,
        vec![vec![Query::A(0), Query::A(0)], vec![Query::All, Query::All]],
        vec![Op::SetA(1), Op::SetA(2)],
    );
    cfg.eviction = true;
    assert_safe("table-level(2 readers)+eviction/correct", &cfg);
}

/// Eviction with overlapping writers (markers shared by two writers, one of whose entries may
/// expire while the other's is live); with rollbacks too in `correct_full`.
#[test]
fn correct_overlapping_writers_with_eviction() {
    let mut cfg = Config::new(
        Variant::CORRECT,
        vec![vec![Query::A(0), Query::A(0)], vec![Query::B(0), Query::B(0)]],
        vec![Op::SetA(1), Op::SetB(1)],
    );
    cfg.concurrent_writers = true;
    cfg.eviction = true;
    assert_safe("overlapping(2 readers)+eviction/correct", &cfg);
}

/// The former scheme: markers and writer records had a Redis TTL (the lease), so eviction could
/// delete them while the write was in flight; the writer does not notice and does not re-mark.
#[test]
fn broken_markers_evictable() {
    let mut cfg = Config::small(Variant::MARKERS_EVICTABLE);
    cfg.eviction = true;
    assert_stale_hit("small+eviction/markers_evictable", &cfg);
}

// --- cancellation: a writer dropped while its COMMIT is in flight -------------------------

/// The dropped writer never finishes; its markers stay until the lease expires (the COMMIT
/// lands within the lease): no stale hit, with overlapping writers and rollbacks too.
#[test]
fn correct_with_cancellation() {
    let mut cfg = Config::design(Variant::CORRECT);
    cfg.cancellation = true;
    assert_safe("design/correct+cancellation", &cfg);
    let mut cfg = Config::small(Variant::CORRECT);
    cfg.cancellation = true;
    cfg.concurrent_writers = true;
    cfg.rollbacks = true;
    assert_safe("small/correct+cancellation+overlap+rollbacks", &cfg);
}

/// The former `Drop for WriteLease`: the dropped lease is finished at once, before its COMMIT
/// is visible; a reader stores the old row under fresh stamps.
#[test]
fn broken_finish_on_drop() {
    let mut cfg = Config::small(Variant::FINISH_ON_DROP);
    cfg.cancellation = true;
    assert_stale_hit("small/finish_on_drop", &cfg);
}

// --- restarts: a server that comes back empty or from an older snapshot --------------------

/// The protocol on Redis (unconditional re-mark before COMMIT, the identity check in every
/// script): no stale hit, whenever the snapshot is taken and the restart happens (outside the
/// stated window between a re-mark and its COMMIT).
#[test]
fn correct_with_restarts() {
    let mut cfg = Config::small(Variant::REDIS_RESTARTS);
    cfg.restarts = true;
    assert_safe("small/redis+restarts", &cfg);
    cfg.rollbacks = true;
    cfg.cancellation = true;
    assert_safe("small/redis+restarts+rollbacks+cancellation", &cfg);
}

/// Without the identity check, the snapshot's old value is served after the restart.
#[test]
fn broken_no_boot_check() {
    let mut cfg = Config::small(Variant::NO_BOOT_CHECK);
    cfg.restarts = true;
    assert_stale_hit("small/no_boot_check", &cfg);
}

/// With the identity check but the re-mark only when the lease ran out: a restart loses the
/// write's markers, a reader stores the old row, the COMMIT lands unmarked.
#[test]
fn broken_restarts_without_unconditional_remark() {
    let mut cfg = Config::small(Variant::CORRECT);
    cfg.restarts = true;
    assert_stale_hit("small/restarts+remark_if_expired", &cfg);
}

// --- tables in several slots (Redis Cluster) -------------------------------------------------

fn two_slots(mut cfg: Config) -> Config {
    cfg.two_slots = true;
    cfg
}

/// Two readers: `a = 0` and the table-level query.
fn table_level_small(variant: Variant) -> Config {
    Config::new(
        variant,
        vec![vec![Query::A(0), Query::A(0)], vec![Query::All, Query::All]],
        vec![Op::SetA(1), Op::SetA(2)],
    )
}

/// The read-check and the store composed of per-slot steps (either order for the read, the
/// other slot first for the store), writes atomic: no stale hit (a hit returns a version at
/// least as new as the one committed when the read began), no servable stale value.
#[test]
fn correct_two_slots_small() {
    assert_safe("small, two slots/correct", &two_slots(Config::small(Variant::CORRECT)));
}

#[test]
fn correct_two_slots_small_with_eviction() {
    let mut cfg = two_slots(Config::small(Variant::CORRECT));
    cfg.eviction = true;
    assert_safe("small + eviction, two slots/correct", &cfg);
}

#[test]
fn correct_two_slots_table_level() {
    assert_safe("table-level (2 readers), two slots/correct", &two_slots(table_level_small(Variant::CORRECT)));
}

/// Table-level writes (they change the table key only, which the value's own slot does not
/// hold).
#[test]
fn correct_two_slots_table_level_writes() {
    let mut cfg = two_slots(table_level_small(Variant::CORRECT));
    cfg.table_level_writes = true;
    assert_safe("table-level writes (2 readers), two slots/correct", &cfg);
}

#[test]
fn correct_two_slots_overlapping_writers_with_rollbacks() {
    let mut cfg = two_slots(Config::overlapping_writers(Variant::CORRECT));
    cfg.readers.truncate(2);
    cfg.rollbacks = true;
    assert_safe("overlapping (2 readers) + rollbacks, two slots/correct", &cfg);
}

/// The largest two-slot configuration that fits in memory here (36 M states;
/// `--release --ignored`). The design configuration with two slots does not: it exceeds 22 GiB.
#[test]
#[ignore]
fn correct_two_slots_table_level_three_readers() {
    assert_safe("table-level, two slots/correct", &two_slots(with_table_level(Variant::CORRECT)));
}

/// The value's slot alone deciding the hit (not comparing the other slot's stamp) serves a
/// value a table-level write has changed.
#[test]
fn broken_composed_hit_own_slot_only() {
    let mut cfg = two_slots(table_level_small(Variant::COMPOSED_HIT_OWN_SLOT_ONLY));
    cfg.table_level_writes = true;
    assert_stale_hit("table-level writes, two slots/COMPOSED_HIT_OWN_SLOT_ONLY", &cfg);
}
