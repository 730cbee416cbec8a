//! Acceptance: the cost of one row invalidation does not depend on how many cached values
//! depend on it (stamps, not sets).

mod common;

use std::time::Duration;

use cacheops_core::protocol::{Backend, ReadReply};
use cacheops_redis::{FinishStats, RedisBackend};
use common::{Env, Kind, dep, hit, row};
use tokio::task::JoinSet;

const TTL: Duration = Duration::from_secs(120);

/// Caches `n` values depending on `post.category_id = 3`, then invalidates that row once.
async fn invalidate_with_dependents(kind: Kind, n: usize) -> (Env, FinishStats, u64) {
    let env = Env::new(kind).await;
    let redis: RedisBackend = env.redis.clone().expect("redis");
    let mut set = JoinSet::new();
    for chunk_start in (0..n).step_by(500) {
        for i in chunk_start..(chunk_start + 500).min(n) {
            let req = env.read_req(&format!("v{i}"), &[dep("post", &[("category_id", 3)])]);
            let b = redis.clone();
            set.spawn(async move {
                let ReadReply::Miss(stamps) = b.read(&req).await.expect("read") else { panic!("miss expected") };
                assert!(b.store(&req, &stamps, format!("value {i}").as_bytes(), TTL).await.expect("store"));
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
    }
    env.read_store("other", &[dep("post", &[("category_id", 4)])], b"4", TTL).await;

    let marked = redis
        .mark_counted(&env.write_req(Some("w"), "post", vec![row(&[("id", 1), ("category_id", 3)])], false, TTL))
        .await
        .expect("mark");
    let stats = redis
        .finish_counted(&env.write_req(Some("w"), "post", vec![row(&[("id", 1), ("category_id", 3)])], false, TTL))
        .await
        .expect("finish");
    (env, stats, marked)
}

async fn check(kind: Kind, many: usize) {
    let (_, one, marked_one) = invalidate_with_dependents(kind, 1).await;
    let (env, lots, marked_lots) = invalidate_with_dependents(kind, many).await;
    assert_eq!(one, lots, "finish cost must not depend on the number of dependents");
    assert_eq!(marked_one, marked_lots, "mark cost must not depend on the number of dependents");
    assert_eq!(lots.touched, 2, "one conj key + one writer record");

    // The dependents are still stored (nothing enumerated them)…
    let redis = env.redis.clone().expect("redis");
    let mut conn = redis.connection();
    let keys: Vec<String> = (0..many).map(|i| env.ks.value_of(Some("post"), &format!("v{i}"))).collect();
    let mut present = 0i64;
    for chunk in keys.chunks(1000) {
        let n: i64 = redis::cmd("EXISTS").arg(chunk).query_async(&mut conn).await.expect("EXISTS");
        present += n;
    }
    assert_eq!(present, many as i64);
    // …but every one of them misses, and the unrelated value still hits.
    let mut set = JoinSet::new();
    for i in 0..many {
        let req = env.read_req(&format!("v{i}"), &[dep("post", &[("category_id", 3)])]);
        let b = redis.clone();
        set.spawn(async move { matches!(b.read(&req).await.expect("read"), ReadReply::Miss(_)) });
        if set.len() >= 500 {
            while let Some(r) = set.join_next().await {
                assert!(r.expect("task"), "a dependent hit after its row was invalidated");
            }
        }
    }
    while let Some(r) = set.join_next().await {
        assert!(r.expect("task"), "a dependent hit after its row was invalidated");
    }
    assert!(hit(&env.read("other", &[dep("post", &[("category_id", 4)])]).await).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_cost_is_independent_of_dependents_standalone() {
    check(Kind::Standalone, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_cost_is_independent_of_dependents_cluster() {
    check(Kind::Cluster, 2_000).await;
}

/// A hit is one `MGET` with no Lua; a miss, a stale value and a pending key still go through
/// `read.lua` (which decides and creates what is missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_runs_no_script() {
    let server = common::spawn_server(&[]);
    let b = RedisBackend::builder().url(format!("redis://127.0.0.1:{}", server.port)).build().await.expect("connect");
    let env = Env::with_backend(b.clone());
    let deps = [dep("post", &[("category_id", 3)]), dep("category", &[("id", 3)])];
    assert!(common::is_miss(&env.read_store("v", &deps, b"data", TTL).await));
    common::redis_cli(server.port, &["CONFIG", "RESETSTAT"]).expect("RESETSTAT");
    for _ in 0..10 {
        assert_eq!(hit(&env.read("v", &deps).await), Some(&b"data"[..]));
    }
    assert_eq!(common::command_calls(server.port, None, "evalsha"), 0, "a hit ran a script");
    assert_eq!(common::command_calls(server.port, None, "mget"), 10, "a hit is one MGET");

    // A miss falls back to the script.
    assert!(common::is_miss(&env.read("absent", &deps).await));
    assert_eq!(common::command_calls(server.port, None, "evalsha"), 1);
    // So does a value whose stamp changed (invalidated)…
    let w = env.write_req(None, "category", vec![row(&[("id", 3)])], false, TTL);
    b.finish(&w).await.expect("finish");
    assert!(common::is_miss(&env.read("v", &deps).await));
    assert_eq!(common::command_calls(server.port, None, "evalsha"), 3);
    // …and one under a write lease: the script answers "pending", not a hit.
    assert!(common::is_miss(&env.read_store("v", &deps, b"data2", TTL).await));
    let w = env.write_req(Some("w1"), "post", vec![row(&[("id", 1), ("category_id", 3)])], false, TTL);
    b.mark(&w).await.expect("mark");
    assert!(matches!(env.read("v", &deps).await, ReadReply::Bypass(cacheops_core::protocol::BypassReason::Pending)));
    b.finish(&w).await.expect("finish");
    assert!(common::is_miss(&env.read("v", &deps).await));
}

/// On a cluster too: a hit is one `MGET` per table, on a direct connection to the master of
/// the table's slot (one for a one-table query), and no script runs anywhere; a miss goes to
/// `read.lua`.
#[tokio::test]
async fn a_cluster_hit_runs_no_script() {
    // A cluster of its own: the command counts are per node.
    let cluster = common::new_cluster();
    let b = RedisBackend::builder().cluster(cluster.nodes()).build().await.expect("connect");
    let env = Env::with_backend(b);
    let ports: Vec<u16> = cluster.nodes().iter().filter_map(|n| n.rsplit(':').next()?.parse().ok()).collect();
    assert_eq!(ports.len(), 3);
    let total = |command: &str| ports.iter().map(|p| common::command_calls(*p, None, command)).sum::<u64>();
    let one = [dep("post", &[("category_id", 3)])];
    let two = [dep("post", &[("category_id", 3)]), dep("category", &[("id", 3)])];
    for (deps, mgets) in [(&one[..], 1), (&two[..], 2)] {
        assert!(common::is_miss(&env.read_store("v", deps, b"data", TTL).await));
        let (evalsha, mget) = (total("evalsha"), total("mget"));
        for _ in 0..10 {
            assert_eq!(hit(&env.read("v", deps).await), Some(&b"data"[..]));
        }
        assert_eq!(total("evalsha"), evalsha, "a hit ran a script");
        assert_eq!(total("mget"), mget + 10 * mgets, "a hit is one MGET per table");
        assert!(common::is_miss(&env.read("absent", deps).await));
        // One read.lua per table: the others first, the value's table last.
        assert_eq!(total("evalsha"), evalsha + mgets, "a miss runs read.lua");
    }
}
