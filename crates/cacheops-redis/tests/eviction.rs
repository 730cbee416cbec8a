//! Eviction can only cause misses, never stale hits: a dedicated server with a tiny `maxmemory`
//! and `allkeys-lru`, a load that does not fit, and rows whose versions change between rounds.

mod common;

use std::time::Duration;

use cacheops_core::protocol::{Backend, ReadReply};
use cacheops_core::{KeySpace, protocol::ReadRequest};
use cacheops_redis::RedisBackend;
use common::{Env, Kind, dep, row};

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
    let end = data
        .iter()
        .position(|b| *b == b':')
        .expect("version prefix");
    std::str::from_utf8(&data[..end])
        .expect("utf8")
        .parse()
        .expect("number")
}

/// Read; check a hit against `current`; store `current` on a miss. Returns whether it hit.
async fn read_check_store(b: &RedisBackend, req: &ReadRequest, current: u64, what: &str) -> bool {
    match b.read(req).await.expect("read") {
        ReadReply::Hit(data) => {
            let got = version_of(&data);
            assert_eq!(
                got, current,
                "stale hit for {what}: version {got}, latest {current}"
            );
            true
        }
        ReadReply::Miss(stamps) => {
            // The "database" answer is read after the stamps were taken, as the engine does.
            b.store(req, &stamps, &payload(current), TTL)
                .await
                .expect("store");
            false
        }
        ReadReply::Bypass(_) => false,
    }
}

#[tokio::test]
async fn eviction_never_serves_stale_values() {
    let server = common::spawn_server(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
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
        ks: KeySpace::new("evict").expect("prefix"),
    };

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
                    if read_check_store(
                        &b,
                        &req,
                        versions[r as usize],
                        &format!("row {r} variant {j}"),
                    )
                    .await
                    {
                        hits += 1;
                    }
                }
                if pass != 1 {
                    // A list over the whole table: its version is the sum of all row versions.
                    let req = env.read_req("list", &[dep("post", &[])]);
                    reads += 1;
                    if read_check_store(&b, &req, versions.iter().sum(), "the list").await {
                        hits += 1;
                    }
                }
            }
        }
        // Writes between rounds: some rows change. Alternate leases and plain invalidations.
        for r in (0..ROWS).filter(|r| (*r as usize + round).is_multiple_of(3)) {
            let rows = vec![row(&[("id", r)])];
            if round % 2 == 0 {
                let w = env.write_req(
                    Some(&format!("w{round}-{r}")),
                    "post",
                    rows,
                    false,
                    Duration::from_secs(30),
                );
                b.mark(&w).await.expect("mark");
                versions[r as usize] += 1;
                b.finish(&w).await.expect("finish");
            } else {
                versions[r as usize] += 1;
                b.finish(&env.write_req(None, "post", rows, false, Duration::from_secs(30)))
                    .await
                    .expect("finish");
            }
        }
    }

    let mut conn = b.connection();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("evicted_keys in INFO stats");
    assert!(
        evicted > 0,
        "the load must force eviction (evicted_keys = 0)"
    );
    assert!(hits > 0, "some reads must hit ({reads} reads)");
    eprintln!("eviction: {reads} reads, {hits} hits, {evicted} keys evicted, no stale hit");
}
