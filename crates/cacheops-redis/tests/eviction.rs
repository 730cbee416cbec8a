//! Eviction can only cause misses, never stale hits: a dedicated server with a tiny `maxmemory`,
//! a load that does not fit, and rows whose versions change between rounds; once with
//! `allkeys-lru`, once with `volatile-lru` — and with `volatile-lru`, eviction while writes hold
//! leases must never touch the lease state (markers and writer records have no TTL).

mod common;

use std::time::Duration;

use cacheops_core::protocol::{Backend, BypassReason, ReadReply, marker_entries};
use cacheops_core::{KeySpace, protocol::ReadRequest};
use cacheops_redis::RedisBackend;
use common::{Env, Kind, Server, dep, row};

const ROWS: i64 = 50;
const VARIANTS: usize = 40;
const HOT: usize = 3;
const ROUNDS: usize = 8;
const TTL: Duration = Duration::from_secs(300);

fn payload(version: u64) -> Vec<u8> {
    let mut v = format!("{version}:").into_bytes();
    v.resize(3000, b'.');
    v
}

fn version_of(data: &[u8]) -> u64 {
    let end = data.iter().position(|b| *b == b':').expect("version prefix");
    std::str::from_utf8(&data[..end]).expect("utf8").parse().expect("number")
}

/// Read; check a hit against `current`; store `current` on a miss. Returns whether it hit.
async fn read_check_store(b: &RedisBackend, req: &ReadRequest, current: u64, what: &str) -> bool {
    match b.read(req).await.expect("read") {
        ReadReply::Hit(data) => {
            let got = version_of(&data);
            assert_eq!(got, current, "stale hit for {what}: version {got}, latest {current}");
            true
        }
        ReadReply::Miss(stamps) => {
            // The "database" answer is read after the stamps were taken, as the engine does.
            b.store(req, &stamps, &payload(current), TTL).await.expect("store");
            false
        }
        ReadReply::Bypass(_) => false,
    }
}

async fn evicting_server(policy: &str, prefix: &str) -> (Server, RedisBackend, Env) {
    let server = common::spawn_server(&["--maxmemory", "2mb", "--maxmemory-policy", policy]);
    let b = RedisBackend::builder()
        .host("127.0.0.1")
        .port(server.port)
        .response_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("connect to the eviction server");
    let env = Env {
        kind: Kind::Standalone,
        backend: std::sync::Arc::new(b.clone()),
        redis: Some(b.clone()),
        ks: KeySpace::new(prefix).expect("prefix"),
    };
    (server, b, env)
}

async fn evicted_keys(b: &RedisBackend) -> u64 {
    let mut conn = b.connection();
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("evicted_keys in INFO stats")
}

#[tokio::test]
async fn eviction_never_serves_stale_values() {
    let (_server, b, env) = evicting_server("allkeys-lru", "evict").await;
    rounds(&b, &env).await;
}

#[tokio::test]
async fn volatile_lru_eviction_never_serves_stale_values() {
    let (_server, b, env) = evicting_server("volatile-lru", "evict").await;
    rounds(&b, &env).await;
}

/// Rounds of reads (a hot set, a cold sweep that forces eviction, the hot set again) with writes
/// between rounds; every hit must return the latest version.
async fn rounds(b: &RedisBackend, env: &Env) {
    let mut versions = vec![0u64; ROWS as usize];
    let mut hits = 0usize;
    let mut reads = 0usize;
    for round in 0..ROUNDS {
        // A hot set (fits in memory, re-read often), a cold sweep that forces eviction, and the
        // hot set again.
        for (pass, range) in [(0, 0..HOT), (1, HOT..VARIANTS), (2, 0..HOT)] {
            for r in 0..ROWS {
                for j in range.clone() {
                    let terms = [("id", r)];
                    let req = env.read_req(&format!("r{r}-{j}"), &[dep("post", &terms)]);
                    reads += 1;
                    if read_check_store(b, &req, versions[r as usize], &format!("row {r} variant {j}")).await {
                        hits += 1;
                    }
                }
                if pass != 1 {
                    // A list over the whole table: its version is the sum of all row versions.
                    let req = env.read_req("list", &[dep("post", &[])]);
                    reads += 1;
                    if read_check_store(b, &req, versions.iter().sum(), "the list").await {
                        hits += 1;
                    }
                }
            }
        }
        // Writes between rounds: some rows change. Alternate leases and plain invalidations.
        for r in (0..ROWS).filter(|r| (*r as usize + round).is_multiple_of(3)) {
            let rows = vec![row(&[("id", r)])];
            if round % 2 == 0 {
                let w = env.write_req(Some(&format!("w{round}-{r}")), "post", rows, false, Duration::from_secs(30));
                b.mark(&w).await.expect("mark");
                versions[r as usize] += 1;
                b.finish(&w).await.expect("finish");
            } else {
                versions[r as usize] += 1;
                b.finish(&env.write_req(None, "post", rows, false, Duration::from_secs(30))).await.expect("finish");
            }
        }
    }

    let evicted = evicted_keys(b).await;
    assert!(evicted > 0, "the load must force eviction (evicted_keys = 0)");
    assert!(hits > 0, "some reads must hit ({reads} reads)");
    eprintln!("eviction: {reads} reads, {hits} hits, {evicted} keys evicted, no stale hit");
}

const MARKED: i64 = 10;

/// `volatile-lru` while writes are in flight: writers mark rows, a flood of values forces
/// eviction, and the lease state — markers, writer records, the schemes hash, the table stamp —
/// survives it (none has a TTL); reads of the marked rows keep bypassing until the finishes, and
/// afterwards every hit is the committed version.
#[tokio::test]
async fn volatile_lru_never_evicts_leases() {
    let (_server, b, env) = evicting_server("volatile-lru", "lease").await;
    let mut versions = vec![0u64; ROWS as usize];
    // Register the schemes ("id" and "") and cache every row.
    for r in 0..ROWS {
        let req = env.read_req(&format!("r{r}"), &[dep("post", &[("id", r)])]);
        read_check_store(&b, &req, 0, "warm-up").await;
    }
    let list = env.read_req("list", &[dep("post", &[])]);
    read_check_store(&b, &list, 0, "the list").await;

    // Writers mark rows 0..MARKED (one writer per row, plus one on row 0 overlapping) and hold
    // their leases.
    let lease = Duration::from_secs(120);
    let mut writes = Vec::new();
    for r in 0..MARKED {
        writes.push(env.write_req(Some(&format!("w{r}")), "post", vec![row(&[("id", r)])], false, lease));
    }
    writes.push(env.write_req(Some("w-overlap"), "post", vec![row(&[("id", 0)])], false, lease));
    for w in &writes {
        b.mark(w).await.expect("mark");
    }
    // The statements "execute" (invisible until commit, but the lease covers them).
    let before = evicted_keys(&b).await;

    // Flood: far more values than fit (each ~3 KB, 2 MB of memory), all with a TTL.
    for i in 0..2000 {
        let r = MARKED + (i % (ROWS - MARKED));
        let req = env.read_req(&format!("flood{i}"), &[dep("post", &[("id", r)])]);
        read_check_store(&b, &req, versions[r as usize], "flood").await;
        if i % 200 == 0 {
            // Reads of marked rows bypass during the flood, whatever was evicted.
            for m in 0..MARKED {
                let req = env.read_req(&format!("r{m}"), &[dep("post", &[("id", m)])]);
                assert_eq!(
                    b.read(&req).await.expect("read"),
                    ReadReply::Bypass(BypassReason::Pending),
                    "row {m} is under a lease"
                );
            }
        }
    }
    let evicted = evicted_keys(&b).await - before;
    assert!(evicted > 100, "the flood must force eviction (evicted {evicted})");

    // The lease state survived: every marker with its writers, every writer record, the schemes.
    for r in 0..MARKED {
        let key = env.ks.conj("post", &common::conj(&[("id", r)]));
        let marker = env.get_raw(&key).await.unwrap_or_else(|| panic!("marker of row {r} evicted"));
        let ids: Vec<&str> = marker_entries(&marker).iter().map(|(id, _)| *id).collect();
        let mut expected = vec![format!("w{r}")];
        if r == 0 {
            expected.push("w-overlap".into());
        }
        assert_eq!(ids, expected, "marker of row {r}: {marker}");
        assert_eq!(env.pttl(&key).await, -1, "a marker has no TTL");
    }
    let any = env.ks.conj("post", &common::conj(&[]));
    assert!(env.get_raw(&any).await.is_some_and(|v| v.starts_with('!')), "the any-row marker");
    let writers = env.hgetall(&env.ks.writers("post")).await;
    assert_eq!(writers.len(), writes.len(), "writer records evicted: {writers:?}");
    assert_eq!(env.hgetall(&env.ks.schemes("post")).await.len(), 2, "schemes hash");
    assert!(env.get_raw(&env.ks.table("post")).await.is_some(), "table stamp");
    assert!(env.get_raw(&env.ks.table_epoch("post")).await.is_some(), "epoch");

    // COMMIT, then finish: the overlapping writer of row 0 still holds it after w0's finish.
    for r in 0..MARKED {
        versions[r as usize] += 1;
    }
    for w in &writes[..MARKED as usize] {
        b.finish(w).await.expect("finish");
    }
    let r0 = env.read_req("r0", &[dep("post", &[("id", 0)])]);
    assert_eq!(b.read(&r0).await.expect("read"), ReadReply::Bypass(BypassReason::Pending));
    b.finish(&writes[MARKED as usize]).await.expect("finish");
    assert!(env.hgetall(&env.ks.writers("post")).await.is_empty());

    // Every read is now a miss or a hit of the committed version.
    let mut hits = 0;
    for _ in 0..2 {
        for r in 0..ROWS {
            let req = env.read_req(&format!("r{r}"), &[dep("post", &[("id", r)])]);
            if read_check_store(&b, &req, versions[r as usize], &format!("row {r}")).await {
                hits += 1;
            }
        }
    }
    assert!(hits > 0, "reads hit again after the finishes");
    eprintln!("volatile-lru: {evicted} keys evicted while {} leases were held; none lost", writes.len());
}
