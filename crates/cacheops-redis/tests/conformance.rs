//! One behavioural suite for the `Backend` trait, run against the in-process backend, a
//! standalone Redis (127.0.0.1:6379) and a 3-master Redis Cluster started by the harness.
//!
//! Each test uses its own namespace (random prefix), so tests run in parallel on a shared server
//! without flushing it.

mod common;

use std::time::Duration;

use cacheops_core::keys::conj_ttl;
use cacheops_core::protocol::{Backend, BypassReason, ReadReply, marker_entries};
use common::{Env, Kind, dep, hit, is_miss, row};

const MIN: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(30);

// ----------------------------------------------------------------------------------------------
// Cases.

async fn hit_after_store(env: Env) {
    let deps = [dep("post", &[("id", 1)])];
    assert!(is_miss(&env.read_store("v1", &deps, b"row 1", MIN).await));
    assert_eq!(hit(&env.read("v1", &deps).await), Some(&b"row 1"[..]));
    // Another value key with the same dependencies is independent.
    assert!(is_miss(&env.read("v2", &deps).await));
}

async fn miss_after_value_ttl(env: Env) {
    let deps = [dep("post", &[("id", 1)])];
    env.read_store("v", &deps, b"x", Duration::from_millis(300)).await;
    assert!(hit(&env.read("v", &deps).await).is_some());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(is_miss(&env.read("v", &deps).await));
}

async fn conj_stamp_outlives_value(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    // A stamp created by a read with a short conj TTL…
    let short = env.read_req_ttl("a", &deps, Duration::from_secs(2));
    let ReadReply::Miss(s) = env.backend.read(&short).await.expect("read") else { panic!("expected miss") };
    assert!(env.store(&short, &s, b"a", Duration::from_secs(1)).await);
    // …is extended by a store of a longer-lived value to that value's conj TTL.
    let ttl = Duration::from_secs(100);
    let long = env.read_req_ttl("b", &deps, conj_ttl(ttl));
    let ReadReply::Miss(s) = env.backend.read(&long).await.expect("read") else { panic!("expected miss") };
    assert!(env.store(&long, &s, b"b", ttl).await);
    assert_eq!(hit(&env.read("b", &deps).await), Some(&b"b"[..]));
    if env.is_redis() {
        let conj_key = &long.tables[0].conjs[0].key;
        let value_pttl = env.pttl(&long.value_key).await;
        let conj_pttl = env.pttl(conj_key).await;
        assert!(value_pttl > 0 && value_pttl <= 100_000, "value PTTL {value_pttl}");
        assert!(conj_pttl > value_pttl, "conj PTTL {conj_pttl} must exceed value PTTL {value_pttl}");
        assert!(conj_pttl > 200_000, "extended to conj_ttl(100 s) = 210 s, got {conj_pttl}");
        // Epoch and table stamps have no TTL.
        assert_eq!(env.pttl(&long.tables[0].epoch_key).await, -1);
        assert_eq!(env.pttl(&long.tables[0].table_key).await, -1);
    }
}

async fn granular_invalidation(env: Env) {
    let c3 = [dep("post", &[("category_id", 3)])];
    let c4 = [dep("post", &[("category_id", 4)])];
    env.read_store("c3", &c3, b"3", MIN).await;
    env.read_store("c4", &c4, b"4", MIN).await;
    let w = env.write_req(None, "post", vec![row(&[("id", 10), ("category_id", 3)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("c3", &c3).await));
    assert_eq!(hit(&env.read("c4", &c4).await), Some(&b"4"[..]));
}

async fn old_and_new_rows_invalidate(env: Env) {
    let deps: Vec<[common::Dep<'static>; 1]> = vec![
        [dep("post", &[("category_id", 3)])],
        [dep("post", &[("category_id", 4)])],
        [dep("post", &[("category_id", 5)])],
    ];
    for (i, d) in deps.iter().enumerate() {
        env.read_store(&format!("c{i}"), d, b"x", MIN).await;
    }
    // UPDATE post SET category_id = 4 WHERE id = 10 (it was 3): old and new states.
    let rows = vec![row(&[("id", 10), ("category_id", 3)]), row(&[("id", 10), ("category_id", 4)])];
    env.backend.finish(&env.write_req(None, "post", rows, false, LEASE)).await.expect("finish");
    assert!(is_miss(&env.read("c0", &deps[0]).await));
    assert!(is_miss(&env.read("c1", &deps[1]).await));
    assert!(hit(&env.read("c2", &deps[2]).await).is_some());
}

async fn table_level_dependency(env: Env) {
    let any = [dep("post", &[])];
    let c4 = [dep("post", &[("category_id", 4)])];
    env.read_store("all", &any, b"all", MIN).await;
    env.read_store("c4", &c4, b"4", MIN).await;
    let w = env.write_req(None, "post", vec![row(&[("id", 1), ("category_id", 3)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("all", &any).await), "scheme \"\" is dropped by any row");
    assert!(hit(&env.read("c4", &c4).await).is_some());
}

async fn row_missing_scheme_column_is_table_level(env: Env) {
    let c4 = [dep("post", &[("category_id", 4)])];
    let other = [dep("user", &[("id", 1)])];
    env.read_store("c4", &c4, b"4", MIN).await;
    env.read_store("u", &other, b"u", MIN).await;
    let w = env.write_req(None, "post", vec![row(&[("id", 1)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("c4", &c4).await), "unknown category_id ⇒ whole table");
    assert!(hit(&env.read("u", &other).await).is_some(), "other tables unaffected");
}

async fn mark_blocks_until_finish(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    let req = env.read_req("v", &deps);
    let ReadReply::Miss(pre_mark) = env.backend.read(&req).await.expect("read") else { panic!("miss") };
    let w = env.write_req(Some("w1"), "post", vec![row(&[("id", 1), ("category_id", 3)])], false, LEASE);
    env.backend.mark(&w).await.expect("mark");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    assert!(!env.store(&req, &pre_mark, b"stale", MIN).await, "store with pre-mark stamps refused");
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read_store("v", &deps, b"fresh", MIN).await));
    assert_eq!(hit(&env.read("v", &deps).await), Some(&b"fresh"[..]));
}

async fn overlapping_writers(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    env.read_store("v", &deps, b"old", MIN).await;
    let r = || vec![row(&[("id", 1), ("category_id", 3)])];
    let a = env.write_req(Some("A"), "post", r(), false, LEASE);
    let b = env.write_req(Some("B"), "post", r(), false, LEASE);
    env.backend.mark(&a).await.expect("mark A");
    env.backend.mark(&b).await.expect("mark B");
    env.backend.finish(&a).await.expect("finish A");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending), "B still in flight");
    // An explicit invalidation (no writer) leaves the other writer's marker alone.
    env.backend.finish(&env.write_req(None, "post", r(), false, LEASE)).await.expect("invalidate");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    env.backend.finish(&b).await.expect("finish B");
    assert!(is_miss(&env.read("v", &deps).await));
}

async fn new_scheme_rule(env: Env) {
    let by_cat = [dep("post", &[("category_id", 3)])];
    let by_author = [dep("post", &[("author_id", 7)])];
    env.read_store("cat", &by_cat, b"c", MIN).await; // registers "category_id"
    let w =
        env.write_req(Some("w"), "post", vec![row(&[("id", 1), ("category_id", 3), ("author_id", 7)])], false, LEASE);
    env.backend.mark(&w).await.expect("mark");
    // "author_id" was never seen: the writer's marks do not cover it.
    assert_eq!(env.read("auth", &by_author).await, ReadReply::Bypass(BypassReason::NewScheme));
    assert_eq!(env.read("auth", &by_author).await, ReadReply::Bypass(BypassReason::NewScheme));
    assert_eq!(env.read("cat", &by_cat).await, ReadReply::Bypass(BypassReason::Pending));
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read_store("auth", &by_author, b"a", MIN).await));
    assert_eq!(hit(&env.read("auth", &by_author).await), Some(&b"a"[..]));
}

async fn new_scheme_on_unregistered_table(env: Env) {
    // A writer on a table without schemes marks the table key and is recorded.
    let w = env.write_req(Some("w"), "tag", vec![row(&[("id", 1)])], false, LEASE);
    env.backend.mark(&w).await.expect("mark");
    let deps = [dep("tag", &[("id", 1)])];
    assert_eq!(env.read("t", &deps).await, ReadReply::Bypass(BypassReason::NewScheme));
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("t", &deps).await));
}

async fn lease_expiry_and_remark(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    env.read_store("v", &deps, b"old", MIN).await;
    let lease = Duration::from_millis(200);
    let w = env.write_req(Some("w"), "post", vec![row(&[("id", 1), ("category_id", 3)])], false, lease);
    env.backend.mark(&w).await.expect("mark");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Lease gone: the marker expired, so the stamp is new and the old value misses.
    assert!(is_miss(&env.read_store("v", &deps, b"during", MIN).await));
    assert!(hit(&env.read("v", &deps).await).is_some());
    // Re-mark before commit: the value stored meanwhile is dead.
    env.backend.mark(&w).await.expect("re-mark");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("v", &deps).await));
}

async fn invalidate_model(env: Env) {
    let post = [dep("post", &[("id", 1)])];
    let post_any = [dep("post", &[])];
    let user = [dep("user", &[("id", 1)])];
    env.read_store("p", &post, b"p", MIN).await;
    env.read_store("pa", &post_any, b"pa", MIN).await;
    env.read_store("u", &user, b"u", MIN).await;
    env.backend.delete_stamps(&[env.ks.table("post")]).await.expect("delete_stamps");
    assert!(is_miss(&env.read("p", &post).await));
    assert!(is_miss(&env.read("pa", &post_any).await));
    assert!(hit(&env.read("u", &user).await).is_some());
}

async fn invalidate_all_respects_prefix(env: Env) {
    let other = env.sibling();
    let deps = [dep("post", &[("id", 1)])];
    env.read_store("v", &deps, b"a", MIN).await;
    other.read_store("v", &deps, b"b", MIN).await;
    // `invalidate_all` deletes the namespace's epoch and every table's copy of it.
    env.backend.delete_stamps(&[env.ks.epoch(), env.ks.table_epoch("post")]).await.expect("delete_stamps");
    assert!(is_miss(&env.read("v", &deps).await));
    assert_eq!(hit(&other.read("v", &deps).await), Some(&b"b"[..]));
    // Several namespaces at once (several slots on a cluster).
    env.read_store("v", &deps, b"a", MIN).await;
    let all = [env.ks.epoch(), env.ks.table_epoch("post"), other.ks.epoch(), other.ks.table_epoch("post")];
    env.backend.delete_stamps(&all).await.expect("delete_stamps");
    assert!(is_miss(&env.read("v", &deps).await));
    assert!(is_miss(&other.read("v", &deps).await));
}

async fn delete_stamps_leaves_markers(env: Env) {
    let any = [dep("post", &[])];
    env.read_store("v", &any, b"x", MIN).await;
    let w = env.write_req(Some("w"), "post", vec![], true, LEASE);
    env.backend.mark(&w).await.expect("table-level mark");
    env.backend.delete_stamps(&[env.ks.table("post")]).await.expect("delete_stamps");
    assert_eq!(env.read("v", &any).await, ReadReply::Bypass(BypassReason::Pending));
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("v", &any).await));
}

async fn schemes_eviction_invalidates_table(env: Env) {
    if !env.is_redis() {
        return; // the in-process backend never drops a registration
    }
    let deps = [dep("post", &[("category_id", 3)])];
    let other = [dep("post", &[("author_id", 9)])];
    // A write after the registry is gone is table-level: it reaches every value of the table,
    // whatever the row (here one that matches no cached conj).
    env.read_store("v", &deps, b"x", MIN).await;
    env.read_store("o", &other, b"o", MIN).await;
    assert!(hit(&env.read("v", &deps).await).is_some());
    env.del(&env.ks.schemes("post")).await;
    // The hit check (one `MGET`, on every topology) does not look at the registry: nothing
    // changed yet, so the value is still right.
    assert!(hit(&env.read("v", &deps).await).is_some(), "nothing changed yet");
    let w = env.write_req(None, "post", vec![row(&[("id", 1), ("category_id", 4), ("author_id", 1)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("v", &deps).await));
    assert!(is_miss(&env.read("o", &other).await));

    // A lease taken while the registry is gone covers the whole table, and its finish ends it
    // even though a scheme was registered meanwhile.
    env.read_store("v", &deps, b"x", MIN).await;
    env.del(&env.ks.schemes("post")).await;
    let w = env.write_req(Some("w"), "post", vec![row(&[("id", 1), ("category_id", 4)])], false, LEASE);
    env.backend.mark(&w).await.expect("mark");
    assert!(matches!(env.read("v", &deps).await, ReadReply::Bypass(_)));
    assert!(matches!(env.read("o", &other).await, ReadReply::Bypass(_)));
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read_store("v", &deps, b"y", MIN).await));
    assert_eq!(hit(&env.read("v", &deps).await), Some(&b"y"[..]));

    // A reader that registers again after an eviction invalidates the table too.
    env.del(&env.ks.schemes("post")).await;
    assert!(is_miss(&env.read("o", &other).await));
    assert!(is_miss(&env.read("v", &deps).await));
}

async fn stamp_eviction_only_misses(env: Env) {
    if !env.is_redis() {
        return;
    }
    let deps = [dep("post", &[("category_id", 3)])];
    let req = env.read_req("v", &deps);
    for key in [req.tables[0].epoch_key.clone(), req.tables[0].table_key.clone(), req.tables[0].conjs[0].key.clone()] {
        env.read_store("v", &deps, b"x", MIN).await;
        assert!(hit(&env.read("v", &deps).await).is_some());
        env.del(&key).await;
        assert!(is_miss(&env.read("v", &deps).await), "evicting {key} must make the value miss");
    }
}

/// `(writer id, expiry ms)` of each entry of a marker `!w1@e1,w2@e2`.
fn entries(marker: &str) -> Vec<(String, u64)> {
    let parsed = marker_entries(marker);
    assert!(!parsed.is_empty(), "{marker:?} is not a marker");
    parsed
        .into_iter()
        .map(|(id, exp)| {
            assert!(exp > 1_000_000_000_000, "{marker:?}: expiry in ms since the epoch");
            (id.to_owned(), exp)
        })
        .collect()
}

async fn stored_numbers_and_lease_ttls(env: Env) {
    if !env.is_redis() {
        return;
    }
    let deps = [dep("post", &[("category_id", 3)]), dep("post", &[])];
    env.read_store("v", &deps, b"x", MIN).await;
    let conj_key = env.read_req("v", &deps).tables[0].conjs[0].key.clone();
    assert!(env.pttl(&conj_key).await > 0, "a plain conj stamp has a TTL");
    // A table-level lease on a table stamp; the conj key of the row becomes a marker too.
    let w = env.write_req(Some("w1"), "post", vec![row(&[("id", 1), ("category_id", 3)])], true, LEASE);
    env.backend.mark(&w).await.expect("mark");
    // Lease state never has a Redis TTL (so `volatile-*` eviction cannot touch it): the expiry
    // is in the value.
    assert_eq!(env.pttl(&env.ks.table("post")).await, -1, "table marker has no TTL");
    assert_eq!(env.pttl(&conj_key).await, -1, "conj marker has no TTL (PERSISTed)");
    assert_eq!(env.pttl(&env.ks.writers("post")).await, -1, "writers hash has no TTL");
    let conj_marker = env.get_raw(&conj_key).await.expect("conj marker");
    let e = entries(&conj_marker);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "w1");
    // A second writer with a longer lease; a third with a shorter one; w1 re-marks with a
    // shorter lease: its expiry is never lowered.
    let long = env.write_req(Some("w2"), "post", vec![], true, Duration::from_secs(100));
    env.backend.mark(&long).await.expect("mark");
    let short = env.write_req(Some("w3"), "post", vec![], true, Duration::from_secs(1));
    env.backend.mark(&short).await.expect("mark");
    let table_marker = env.get_raw(&env.ks.table("post")).await.expect("table marker");
    let before = entries(&table_marker);
    let w1_short = env.write_req(Some("w1"), "post", vec![], true, Duration::from_secs(1));
    env.backend.mark(&w1_short).await.expect("re-mark");
    let table_marker = env.get_raw(&env.ks.table("post")).await.expect("table marker");
    let after = entries(&table_marker);
    let ids: Vec<&str> = after.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["w1", "w2", "w3"], "{table_marker}");
    assert!(after[0].1 >= before[0].1, "w1's expiry never lowered: {before:?} {after:?}");
    assert!(after[1].1 > after[0].1 + 60_000, "w2 has the 100 s lease: {after:?}");
    assert!(after[2].1 < after[0].1, "w3 has the 1 s lease: {after:?}");
    assert_eq!(env.pttl(&env.ks.table("post")).await, -1);
    assert_eq!(env.pttl(&env.ks.writers("post")).await, -1);

    let mut conn = env.redis.as_ref().expect("redis").connection();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let seq: String = redis::cmd("GET").arg(env.ks.table_seq("post")).query_async(&mut conn).await.expect("GET seq");
    assert!(digits(&seq) && seq.len() >= 16, "seq {seq:?} must be integer microseconds");
    let schemes = env.hgetall(&env.ks.schemes("post")).await;
    assert_eq!(schemes.len(), 2, "{schemes:?}");
    assert!(schemes.iter().all(|(_, v)| digits(v)), "{schemes:?}");
    let writers = env.hgetall(&env.ks.writers("post")).await;
    assert_eq!(writers.len(), 3);
    for (_, v) in &writers {
        let (seq, exp) = v.split_once(' ').expect("\"seq expiry\"");
        assert!(digits(seq) && digits(exp), "{v:?}");
    }
    for w in [&w, &long, &short] {
        env.backend.finish(w).await.expect("finish");
    }
    assert_eq!(env.get_raw(&env.ks.table("post")).await, None);
    assert_eq!(env.get_raw(&conj_key).await, None);
    assert!(env.hgetall(&env.ks.writers("post")).await.is_empty());
    assert!(is_miss(&env.read("v", &deps).await));
    assert!(env.pttl(&conj_key).await > 0, "a new conj stamp has a TTL again");
}

const SHORT_LEASE: Duration = Duration::from_millis(150);
const PAST_LEASE: Duration = Duration::from_millis(300);

/// A marker whose lease expired (no finish) is ABSENT for read, store, mark and finish.
async fn expired_marker_is_absent(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    let r = || vec![row(&[("id", 1), ("category_id", 3)])];
    let conj_key = env.read_req("v", &deps).tables[0].conjs[0].key.clone();

    // store: stamps taken before the mark are refused after the marker expired.
    let req = env.read_req("v", &deps);
    let ReadReply::Miss(pre_mark) = env.backend.read(&req).await.expect("read") else { panic!("expected miss") };
    let w1 = env.write_req(Some("w1"), "post", r(), false, SHORT_LEASE);
    env.backend.mark(&w1).await.expect("mark");
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    tokio::time::sleep(PAST_LEASE).await;
    if env.is_redis() {
        assert!(env.get_raw(&conj_key).await.is_some_and(|v| v.starts_with('!')), "still there");
    }
    assert!(!env.store(&req, &pre_mark, b"stale", MIN).await, "expired marker != stamp");

    // read: the expired marker is replaced by a fresh stamp (a Miss, not Pending or NewScheme:
    // the writer record expired too), which gets the conj TTL again.
    assert!(is_miss(&env.read_store("v", &deps, b"fresh", MIN).await));
    assert_eq!(hit(&env.read("v", &deps).await), Some(&b"fresh"[..]));
    if env.is_redis() {
        let v = env.get_raw(&conj_key).await.expect("stamp");
        assert!(!v.starts_with('!'), "{v}");
        assert!(env.pttl(&conj_key).await > 0);
        assert!(env.hgetall(&env.ks.writers("post")).await.is_empty(), "expired record dropped");
    }

    // mark: an expired entry is dropped when another writer marks the key.
    env.backend.mark(&w1).await.expect("mark");
    tokio::time::sleep(PAST_LEASE).await;
    let w2 = env.write_req(Some("w2"), "post", r(), false, LEASE);
    env.backend.mark(&w2).await.expect("mark");
    if env.is_redis() {
        let m = env.get_raw(&conj_key).await.expect("marker");
        let ids: Vec<String> = entries(&m).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["w2"], "{m}");
        let writers = env.hgetall(&env.ks.writers("post")).await;
        assert_eq!(writers.len(), 1, "{writers:?}");
        assert_eq!(writers[0].0, "w2");
    }
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending));
    // finish of the live writer deletes the marker: the expired w1 entry does not keep it.
    env.backend.finish(&w2).await.expect("finish");
    assert!(is_miss(&env.read("v", &deps).await));

    // finish (an invalidation, which leaves live markers alone) deletes an expired marker.
    env.backend.mark(&w1).await.expect("mark");
    tokio::time::sleep(PAST_LEASE).await;
    env.backend.finish(&env.write_req(None, "post", r(), false, LEASE)).await.expect("invalidate");
    if env.is_redis() {
        assert_eq!(env.get_raw(&conj_key).await, None, "expired marker deleted by finish");
    }
    assert!(is_miss(&env.read("v", &deps).await));

    // Table-level: delete_stamps deletes an expired marker (it is absent), and a read replaces it.
    let any = [dep("post", &[])];
    env.read_store("all", &any, b"before", MIN).await; // registers the scheme ""
    let t = env.write_req(Some("t"), "post", vec![], true, SHORT_LEASE);
    env.backend.mark(&t).await.expect("mark");
    assert_eq!(env.read("all", &any).await, ReadReply::Bypass(BypassReason::Pending));
    tokio::time::sleep(PAST_LEASE).await;
    env.backend.delete_stamps(&[env.ks.table("post")]).await.expect("delete_stamps");
    if env.is_redis() {
        assert_eq!(env.get_raw(&env.ks.table("post")).await, None);
    }
    env.backend.mark(&t).await.expect("mark");
    tokio::time::sleep(PAST_LEASE).await;
    assert!(is_miss(&env.read_store("all", &any, b"all", MIN).await));
    assert_eq!(hit(&env.read("all", &any).await), Some(&b"all"[..]));
    if env.is_redis() {
        let v = env.get_raw(&env.ks.table("post")).await.expect("table stamp");
        assert!(!v.starts_with('!'), "{v}");
        assert_eq!(env.pttl(&env.ks.table("post")).await, -1, "table stamps have no TTL");
    }
}

/// Overlapping writers: one writer's lease expiring does not end another's.
async fn expiry_is_per_writer(env: Env) {
    let deps = [dep("post", &[("category_id", 3)])];
    let r = || vec![row(&[("id", 1), ("category_id", 3)])];
    env.read_store("v", &deps, b"old", MIN).await;
    let a = env.write_req(Some("A"), "post", r(), false, SHORT_LEASE);
    let b = env.write_req(Some("B"), "post", r(), false, LEASE);
    env.backend.mark(&b).await.expect("mark B");
    env.backend.mark(&a).await.expect("mark A");
    tokio::time::sleep(PAST_LEASE).await;
    assert_eq!(env.read("v", &deps).await, ReadReply::Bypass(BypassReason::Pending), "B's entry is live");
    env.backend.finish(&b).await.expect("finish B");
    assert!(is_miss(&env.read("v", &deps).await), "A's entry expired: nothing left");
}

async fn mark_requires_writer(env: Env) {
    let w = env.write_req(None, "post", vec![row(&[("id", 1)])], false, LEASE);
    assert!(env.backend.mark(&w).await.is_err());
}

async fn simple_cache(env: Env) {
    let k = env.ks.simple("k");
    assert_eq!(env.backend.get(&k).await.expect("get"), None);
    env.backend.set(&k, b"v", None).await.expect("set");
    assert_eq!(env.backend.get(&k).await.expect("get").as_deref(), Some(&b"v"[..]));
    assert!(env.backend.delete(&k).await.expect("delete"));
    assert!(!env.backend.delete(&k).await.expect("delete"));
    assert_eq!(env.backend.get(&k).await.expect("get"), None);
    env.backend.set(&k, b"t", Some(Duration::from_millis(200))).await.expect("set ttl");
    assert!(env.backend.get(&k).await.expect("get").is_some());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(env.backend.get(&k).await.expect("get"), None);
    env.backend.ping().await.expect("ping");
}

async fn binary_round_trip(env: Env) {
    let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).chain(b"\n\n\r\n".iter().copied()).collect();
    let deps = [dep("post", &[("id", 1)]), dep("user", &[("id", 2)])];
    env.read_store("bin", &deps, &data, MIN).await;
    assert_eq!(hit(&env.read("bin", &deps).await), Some(&data[..]));
    env.read_store("empty", &deps, b"", MIN).await;
    assert_eq!(hit(&env.read("empty", &deps).await), Some(&b""[..]));
    let k = env.ks.simple("bin");
    env.backend.set(&k, &data, None).await.expect("set");
    assert_eq!(env.backend.get(&k).await.expect("get"), Some(data));
}

async fn multi_table_and_conj_values(env: Env) {
    // A join: post (category 3) × user (id 2); a write to either drops it.
    let deps = [dep("post", &[("category_id", 3)]), dep("user", &[("id", 2)])];
    env.read_store("j", &deps, b"j", MIN).await;
    assert!(hit(&env.read("j", &deps).await).is_some());
    env.backend.finish(&env.write_req(None, "user", vec![row(&[("id", 3)])], false, LEASE)).await.expect("finish");
    assert!(hit(&env.read("j", &deps).await).is_some(), "user 3 is unrelated");
    env.backend.finish(&env.write_req(None, "user", vec![row(&[("id", 2)])], false, LEASE)).await.expect("finish");
    assert!(is_miss(&env.read_store("j", &deps, b"j", MIN).await));
    // Two-column conj.
    let two = [dep("post", &[("category_id", 3), ("visible", 1)])];
    env.read_store("two", &two, b"2", MIN).await;
    let w = env.write_req(None, "post", vec![row(&[("id", 9), ("category_id", 3), ("visible", 0)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(hit(&env.read("two", &two).await).is_some(), "visible=0 row does not touch visible=1");
    let w = env.write_req(None, "post", vec![row(&[("id", 9), ("category_id", 3), ("visible", 1)])], false, LEASE);
    env.backend.finish(&w).await.expect("finish");
    assert!(is_miss(&env.read("two", &two).await));
}

// ----------------------------------------------------------------------------------------------
// The same cases against each backend.

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $case() { super::$case(super::Env::new(super::Kind::Memory).await).await } )*
        }
        mod standalone {
            $( #[tokio::test] async fn $case() { super::$case(super::Env::new(super::Kind::Standalone).await).await } )*
        }
        mod cluster {
            $( #[tokio::test] async fn $case() { super::$case(super::Env::new(super::Kind::Cluster).await).await } )*
        }
    };
}

suite!(
    hit_after_store,
    miss_after_value_ttl,
    conj_stamp_outlives_value,
    granular_invalidation,
    old_and_new_rows_invalidate,
    table_level_dependency,
    row_missing_scheme_column_is_table_level,
    mark_blocks_until_finish,
    overlapping_writers,
    new_scheme_rule,
    new_scheme_on_unregistered_table,
    lease_expiry_and_remark,
    invalidate_model,
    invalidate_all_respects_prefix,
    delete_stamps_leaves_markers,
    schemes_eviction_invalidates_table,
    stamp_eviction_only_misses,
    mark_requires_writer,
    stored_numbers_and_lease_ttls,
    expired_marker_is_absent,
    expiry_is_per_writer,
    simple_cache,
    binary_round_trip,
    multi_table_and_conj_values,
);

// ----------------------------------------------------------------------------------------------
// Redis-specific checks.

#[tokio::test]
async fn cluster_keys_of_a_table_share_the_servers_slot() {
    let env = Env::new(Kind::Cluster).await;
    let ks = &env.ks;
    let mut conn = env.redis.as_ref().expect("redis").connection();
    let mut slots_of = async |keys: &[String]| {
        let mut slots = Vec::new();
        for k in keys {
            let server_slot: i64 =
                redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).query_async(&mut conn).await.expect("KEYSLOT");
            assert_eq!(server_slot, i64::from(cacheops_redis::key_slot(k)), "{k}");
            slots.push(server_slot);
        }
        slots.dedup();
        slots
    };
    // A table's keys, and the values whose first table it is.
    let table = |t: &str| {
        vec![
            ks.table_epoch(t),
            ks.table_seq(t),
            ks.table_base(t) + "b",
            ks.value_of(Some(t), "abc"),
            ks.table(t),
            ks.schemes(t),
            ks.writers(t),
            ks.conj_prefix(t) + "id=1",
        ]
    };
    let post = slots_of(&table("post")).await;
    assert_eq!(post.len(), 1, "one table, one slot");
    // The namespace's own keys.
    let namespace =
        slots_of(&[ks.epoch(), ks.seq(), ks.value("abc"), ks.registry(), ks.lock("abc"), ks.simple("x")]).await;
    assert_eq!(namespace.len(), 1, "the namespace's keys share a slot");
    // Tables spread: of 20 tables, more than one slot (all in one would happen with p = 2^-266).
    let mut spread = Vec::new();
    for i in 0..20 {
        spread.extend(slots_of(&[ks.table(&format!("t{i}"))]).await);
    }
    spread.sort();
    spread.dedup();
    assert!(spread.len() > 1, "{spread:?}");
}

#[tokio::test]
async fn cross_slot_requests_are_rejected_before_sending() {
    let env = Env::new(Kind::Standalone).await;
    let other = env.sibling();
    let mut req = env.read_req("v", &[dep("post", &[("id", 1)])]);
    let mut tables = req.tables.to_vec();
    tables[0].conjs[0].key = other.ks.conj("post", &common::conj(&[("id", 1)]));
    req.tables = tables.into();
    if cacheops_redis::key_slot(&env.ks.table("post")) == cacheops_redis::key_slot(&other.ks.table("post")) {
        return; // astronomically unlikely: both random prefixes hash to one slot
    }
    let err = env.backend.read(&req).await.expect_err("cross-slot");
    assert!(err.message().contains("hash slots"), "{err}");
}

#[tokio::test]
async fn eager_build_names_the_url_and_hides_the_password() {
    let port = common::free_port(); // nothing listens there
    let url = format!("redis://:hunter2@127.0.0.1:{port}/3");
    let err = cacheops_redis::RedisBackend::builder()
        .url(&url)
        .connect_timeout(Duration::from_millis(300))
        .retries(0)
        .build()
        .await
        .expect_err("nothing listens");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2"));

    // Lazy: built anyway, calls fail fast, and it works once the server is there.
    let lazy = cacheops_redis::RedisBackend::builder()
        .url(&url)
        .connect_timeout(Duration::from_millis(300))
        .retries(0)
        .build_lazy()
        .await
        .expect("lazy build");
    let t = std::time::Instant::now();
    assert!(lazy.ping().await.is_err());
    assert!(t.elapsed() < Duration::from_secs(2), "an outage must cost little: {:?}", t.elapsed());
    assert!(!format!("{lazy:?}").contains("hunter2"));

    // The server comes up: the lazy backend recovers by itself.
    let plain = cacheops_redis::RedisBackend::builder()
        .host("127.0.0.1")
        .port(port)
        .connect_timeout(Duration::from_millis(300))
        .retries(0)
        .build_lazy()
        .await
        .expect("lazy build");
    assert!(plain.ping().await.is_err());
    let _server = common::spawn_server_on(port, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while plain.ping().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "lazy backend did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deps = [dep("post", &[("id", 1)])];
    let env = Env {
        kind: Kind::Standalone,
        backend: std::sync::Arc::new(plain.clone()),
        redis: Some(plain),
        ks: cacheops_core::KeySpace::new("recover").expect("prefix"),
    };
    env.read_store("v", &deps, b"x", MIN).await;
    assert!(hit(&env.read("v", &deps).await).is_some());
}

#[tokio::test]
async fn lazy_cluster_builds_while_down() {
    let port = common::free_port();
    let lazy = cacheops_redis::RedisBackend::builder()
        .cluster([format!("127.0.0.1:{port}")])
        .connect_timeout(Duration::from_millis(300))
        .retries(0)
        .build_lazy()
        .await
        .expect("lazy cluster build");
    let t = std::time::Instant::now();
    assert!(lazy.ping().await.is_err());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let eager = cacheops_redis::RedisBackend::builder()
        .cluster([format!("redis://:pw@127.0.0.1:{port}")])
        .connect_timeout(Duration::from_millis(300))
        .retries(0)
        .build()
        .await
        .expect_err("nothing listens");
    let msg = eager.to_string();
    assert!(msg.contains(&port.to_string()) && !msg.contains(":pw@"), "{msg}");
}

#[tokio::test]
async fn builder_validation() {
    use cacheops_redis::{RedisBackend, RedisBackendError};
    let cases = [
        RedisBackend::builder().url("redis://x").host("y"),
        RedisBackend::builder().cluster(Vec::<String>::new()),
        RedisBackend::builder().cluster(["127.0.0.1:1"]).db(2),
        RedisBackend::builder().response_timeout(Duration::ZERO),
        RedisBackend::builder().sentinel(["127.0.0.1:1"], " "),
        RedisBackend::builder().sentinel(Vec::<String>::new(), "svc"),
        RedisBackend::builder().sentinel(["127.0.0.1:1"], "svc").cluster(["127.0.0.1:2"]),
        RedisBackend::builder().url("redis-sentinel://127.0.0.1:1/svc").host("x"),
        RedisBackend::builder().url("redis://127.0.0.1:1").sentinel_password("x"),
        RedisBackend::builder()
            .url("redis://127.0.0.1:1")
            .replica_acks(cacheops_redis::ReplicaAcks::All, Duration::from_millis(10)),
        // The acknowledgement wait must fit in the response timeout.
        RedisBackend::builder()
            .sentinel(["127.0.0.1:1"], "svc")
            .replica_acks(cacheops_redis::ReplicaAcks::All, Duration::from_secs(1)),
        RedisBackend::builder().url("redis://127.0.0.1:1").tls_root_cert(b"pem".to_vec()),
        RedisBackend::builder().cluster(["rediss://127.0.0.1:1", "redis://127.0.0.1:2"]),
        RedisBackend::builder().unix_socket("/tmp/x.sock").tls(true),
    ];
    for b in cases {
        let dbg = format!("{b:?}");
        assert!(matches!(b.build_lazy().await, Err(RedisBackendError::Config(_))), "{dbg}");
    }
    for url in ["http://:pw@host", "redis-sentinel://:pw@h:1", "redis-cluster://:pw@h:0", "rediss://:pw@h#x"] {
        let res = RedisBackend::builder().url(url).build_lazy().await;
        assert!(
            matches!(&res, Err(RedisBackendError::InvalidUrl { url, .. }) if !url.contains("pw")),
            "{url}: {res:?}"
        );
    }
    // TLS targets are built (connected on first use).
    for url in ["rediss://127.0.0.1:1/0", "rediss-cluster://127.0.0.1:1", "rediss-sentinel://127.0.0.1:1/svc"] {
        RedisBackend::builder().url(url).build_lazy().await.expect(url);
    }
}

#[tokio::test]
async fn host_port_db_and_password_settings() {
    common::Env::new(Kind::Standalone).await; // requires the server
    let b = cacheops_redis::RedisBackend::builder().host("127.0.0.1").port(6379).db(1).build().await.expect("db 1");
    let mut conn = b.connection();
    let key = format!("{{co:t{}}}:probe", common::unique());
    b.set(&key, b"x", Some(Duration::from_secs(5))).await.expect("set");
    // Written to db 1, not db 0.
    let in_db1: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.expect("exists");
    assert_eq!(in_db1, 1);
    let b0 = cacheops_redis::RedisBackend::builder().url("redis://127.0.0.1:6379/0").build().await.expect("db 0");
    assert_eq!(b0.get(&key).await.expect("get"), None);
    b.delete(&key).await.expect("del");
    // A wrong password is a clear connect error that does not echo it.
    let err = cacheops_redis::RedisBackend::builder().url("redis://default:wrong-secret@127.0.0.1:6379").build().await;
    if let Err(e) = err {
        assert!(!e.to_string().contains("wrong-secret"), "{e}");
    }
}

#[tokio::test]
async fn unix_socket() {
    let server = common::spawn_server(&["--unixsocket", "redis.sock", "--unixsocketperm", "700"]);
    let path = server.dir.join("redis.sock");
    let b = cacheops_redis::RedisBackend::builder().unix_socket(&path).build().await.expect("unix socket");
    b.ping().await.expect("ping");
    let url = format!("redis+unix://{}?db=2", path.display());
    let b2 = cacheops_redis::RedisBackend::builder().url(url).build().await.expect("unix url");
    b2.set("k", b"v", None).await.expect("set");
    assert_eq!(b.get("k").await.expect("get"), None, "db 0 vs db 2");
    assert_eq!(b2.get("k").await.expect("get").as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn scripts_reload_after_script_flush() {
    let env = Env::new(Kind::Standalone).await;
    let deps = [dep("post", &[("id", 1)])];
    env.read_store("v", &deps, b"x", MIN).await;
    let mut conn = env.redis.as_ref().expect("redis").connection();
    // Flushing the script cache (of this shared server) only costs a reload.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.expect("SCRIPT FLUSH");
    assert!(hit(&env.read("v", &deps).await).is_some());
}

#[tokio::test]
async fn custom_connection_manager() {
    Env::new(Kind::Standalone).await;
    let client = redis::Client::open(common::STANDALONE_URL).expect("client");
    let manager = redis::aio::ConnectionManager::new(client).await.expect("manager");
    let b = cacheops_redis::RedisBackend::from_connection_manager(manager);
    b.ping().await.expect("ping");
    let nodes = common::cluster().nodes();
    let cc = redis::cluster::ClusterClient::new(nodes).expect("cluster client");
    let c = cacheops_redis::RedisBackend::from_cluster_connection(cc.get_async_connection().await.expect("conn"));
    c.ping().await.expect("ping");
}
