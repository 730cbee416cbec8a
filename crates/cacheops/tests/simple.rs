//! The simple and file caches, events, and `enabled = false`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cacheops::{
    Cache, Error, FileCache, InvalidateEvent, ReadEvent, ReadOutcome, ReadSource, SimpleStore, TableChange,
};
use support::*;

async fn simple_cache_behaves(cache: Cache) {
    let s = cache.simple();
    assert!(s.get::<u32>("k").await.unwrap_err().is_cache_miss());
    s.set("k", &1u32, None).await.unwrap();
    assert_eq!(s.get::<u32>("k").await.unwrap(), 1);
    s.set("t", &2u32, Some(Duration::from_millis(200))).await.unwrap();
    assert_eq!(s.get::<u32>("t").await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.get::<u32>("t").await.unwrap_err().is_cache_miss(), "expired");
    assert!(s.delete("k").await.unwrap());
    assert!(!s.delete("k").await.unwrap());
    assert!(matches!(s.get::<u32>("k").await, Err(Error::CacheMiss(_))));

    let f = cache.cached("top").timeout(Duration::from_secs(60));
    cached_function(&f).await;
}

async fn cached_function(f: &cacheops::Cached) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let run = |arg: &'static str| {
        let calls = calls.clone();
        async move {
            f.get_or_compute(&arg, || async move {
                calls.lock().unwrap().push(arg);
                Ok::<_, Error>(format!("top of {arg}"))
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(run("news").await, "top of news");
    assert_eq!(run("news").await, "top of news");
    assert_eq!(run("sport").await, "top of sport");
    assert_eq!(*calls.lock().unwrap(), ["news", "sport"], "different arguments, different entries");
    assert_eq!(f.key(&"news").get::<String>().await.unwrap(), "top of news", "key().get() returns the value");
    f.key(&"news").set(&"manual").await.unwrap();
    assert_eq!(run("news").await, "manual");
    assert!(f.invalidate(&"news").await.unwrap());
    assert!(f.key(&"news").get::<String>().await.unwrap_err().is_cache_miss());
    assert_eq!(run("news").await, "top of news");
    assert!(f.key(&"news").delete().await.unwrap(), "delete really deletes");
    assert!(f.key(&"news").get::<String>().await.unwrap_err().is_cache_miss());
    assert_eq!(f.key(&"sport").get::<String>().await.unwrap(), "top of sport", "untouched");
}

#[tokio::test]
async fn simple_in_process() {
    simple_cache_behaves(support::builder().build().await.unwrap()).await;
}

#[tokio::test]
async fn simple_redis() {
    require_shared_redis();
    simple_cache_behaves(
        support::builder().redis_url(SHARED_REDIS).prefix(unique_prefix("simple")).build().await.unwrap(),
    )
    .await;
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cacheops-{name}-{:x}", rand_u64()))
}

#[tokio::test]
async fn file_cache_behaves() {
    let dir = temp_dir("files");
    let files = FileCache::new(&dir);
    assert!(files.get::<u32>("k").await.unwrap_err().is_cache_miss());
    files.set("k", &1u32, None).await.unwrap();
    assert_eq!(files.get::<u32>("k").await.unwrap(), 1);
    files.set("t", &2u32, Some(Duration::from_millis(100))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(files.get::<u32>("t").await.unwrap_err().is_cache_miss(), "expired");
    assert_eq!(cacheops::cleanfilecache(&dir).unwrap(), 1, "the expired entry is removed");
    assert_eq!(files.get::<u32>("k").await.unwrap(), 1, "a live entry is kept");
    assert!(files.delete("k").await.unwrap());
    assert!(files.get::<u32>("k").await.unwrap_err().is_cache_miss());
    cached_function(&files.cached("top").timeout(Duration::from_secs(60))).await;
    std::fs::remove_dir_all(&dir).ok();
}

const PAYLOAD_WORDS: usize = 16 * 1024;

/// A self-checking payload: every word derived from the first.
fn payload(seed: u64) -> Vec<u64> {
    (0..PAYLOAD_WORDS as u64).map(|i| seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i).collect()
}

fn check(v: &[u64]) -> bool {
    v.len() == PAYLOAD_WORDS && v.iter().enumerate().all(|(i, w)| *w == (v[0] ^ i as u64))
}

/// Writes and reads the same keys for a while; returns (reads, hits), panics on a torn read.
async fn hammer(dir: &std::path::Path, seed: u64, rounds: usize) -> (usize, usize) {
    let files = FileCache::new(dir);
    let (mut reads, mut hits) = (0, 0);
    for r in 0..rounds {
        let key = format!("k{}", r % 3);
        files.set(&key, &payload(seed * 1_000_000 + r as u64), None).await.unwrap();
        for k in 0..3 {
            reads += 1;
            match files.get::<Vec<u64>>(&format!("k{k}")).await {
                Ok(v) => {
                    assert!(check(&v), "torn read of k{k}");
                    hits += 1;
                }
                Err(e) => assert!(e.is_cache_miss(), "{e}"),
            }
        }
        if r % 10 == 0 {
            files.delete(&format!("k{}", (r / 10) % 3)).await.unwrap();
        }
    }
    (reads, hits)
}

/// The child half of `file_cache_two_processes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_cache_child() {
    let Ok(dir) = std::env::var("CACHEOPS_FILE_CHILD_DIR") else { return };
    let (reads, hits) = hammer(std::path::Path::new(&dir), 2, 200).await;
    println!("child reads={reads} hits={hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_cache_two_processes() {
    let dir = temp_dir("files2p");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["file_cache_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("CACHEOPS_FILE_CHILD_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (reads, hits) = hammer(&dir, 1, 200).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed (torn read?): {stdout}");
    assert!(stdout.contains("1 passed") && stdout.contains("child reads="), "the child ran: {stdout}");
    assert!(hits > reads / 2, "mostly hits: {hits}/{reads}");
    // No temporary file is left behind.
    for sub in std::fs::read_dir(&dir).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            assert!(!f.file_name().to_string_lossy().starts_with(".tmp-"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn events_fire_with_payloads() {
    let reads = Arc::new(Mutex::new(Vec::<ReadEvent>::new()));
    let invals = Arc::new(Mutex::new(Vec::<InvalidateEvent>::new()));
    let (r, i) = (reads.clone(), invals.clone());
    let cache = support::builder()
        .on_read(move |e| r.lock().unwrap().push(e.clone()))
        .on_invalidate(move |e| i.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();
    let f = cache.cached_as("stats", cacheops::Deps::new().with("post").with("tag"));
    f.get_or_compute(&(), || async { Ok::<u32, Error>(1) }).await.unwrap();
    f.get_or_compute(&(), || async { Ok::<u32, Error>(1) }).await.unwrap();
    let q = cache.query(b"q", deps_eq("post", "id", 1));
    let _ = cache.lookup(&q).await.unwrap();
    {
        let reads = reads.lock().unwrap();
        assert_eq!(reads.len(), 3);
        let fname = ReadSource::Function { name: "stats".into() };
        assert_eq!(
            reads[0],
            ReadEvent { source: fname.clone(), outcome: ReadOutcome::Miss, tables: vec!["post".into(), "tag".into()] }
        );
        assert_eq!(
            reads[1],
            ReadEvent { source: fname, outcome: ReadOutcome::Hit, tables: vec!["post".into(), "tag".into()] }
        );
        assert!(reads[1].hit());
        assert_eq!(reads[2].source, ReadSource::Query { hash: q.hash().to_owned() });
        assert_eq!(reads[2].tables, vec!["post".to_owned()]);
    }
    let r7 = row(&[("id", 7)]);
    cache.invalidate_obj("post", &r7).await.unwrap();
    cache.invalidate_model("tag").await.unwrap();
    cache.invalidate_all().await.unwrap();
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", [row(&[("id", 8)])])).await.unwrap();
    lease.mark(TableChange::table("category")).await.unwrap();
    lease.finish().await.unwrap();
    assert_eq!(
        *invals.lock().unwrap(),
        vec![
            InvalidateEvent::Rows { table: "post".into(), rows: vec![r7] },
            InvalidateEvent::Model { table: "tag".into() },
            InvalidateEvent::All,
            InvalidateEvent::Rows { table: "post".into(), rows: vec![row(&[("id", 8)])] },
            InvalidateEvent::Model { table: "category".into() },
        ]
    );
}

fn command_stats(redis: &OwnRedis) -> Vec<String> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn disabled_cache_performs_no_redis_command() {
    let redis = OwnRedis::start(&[]);
    let before = command_stats(&redis);
    let reads = Arc::new(Mutex::new(0usize));
    let r = reads.clone();
    let cache = support::builder()
        .redis_url(redis.url())
        .enabled(false)
        .on_read(move |_| *r.lock().unwrap() += 1)
        .build()
        .await
        .unwrap();
    let dir = temp_dir("disabled");
    let n = Arc::new(Mutex::new(0));
    for _ in 0..2 {
        let n2 = n.clone();
        let v = cache
            .cached_as("f", "post")
            .lock(true)
            .get_or_compute(&1, || async move {
                *n2.lock().unwrap() += 1;
                Ok::<u32, Error>(1)
            })
            .await
            .unwrap();
        assert_eq!(v, 1);
        let n2 = n.clone();
        cache
            .cached_as_auto("a")
            .get_or_compute(&1, || async move {
                *n2.lock().unwrap() += 1;
                Ok::<u32, Error>(1)
            })
            .await
            .unwrap();
        let n2 = n.clone();
        cache
            .cached("s")
            .get_or_compute(&1, || async move {
                *n2.lock().unwrap() += 1;
                Ok::<u32, Error>(1)
            })
            .await
            .unwrap();
        let n2 = n.clone();
        cache
            .file_cache(&dir)
            .cached("s")
            .get_or_compute(&1, || async move {
                *n2.lock().unwrap() += 1;
                Ok::<u32, Error>(1)
            })
            .await
            .unwrap();
        let q = cache.query(b"q", deps_eq("post", "id", 1));
        cache.get_or_compute(&q, || async { Ok::<_, Error>(b"x".to_vec()) }).await.unwrap();
    }
    assert_eq!(*n.lock().unwrap(), 8, "every call computes");
    let s = cache.simple();
    s.set("k", &1u32, None).await.unwrap();
    assert!(s.get::<u32>("k").await.unwrap_err().is_cache_miss());
    s.delete("k").await.unwrap();
    cache.cached_as("f", "post").key(&1).set(&1u32).await.unwrap();
    cache.cached_as("f", "post").invalidate(&1).await.unwrap();
    cache.invalidate_obj("post", &row(&[("id", 1)])).await.unwrap();
    cache.invalidate_model("post").await.unwrap();
    cache.invalidate_all().await.unwrap();
    let mut lease = cache.write_lease();
    lease.mark(TableChange::table("post")).await.unwrap();
    lease.finish().await.unwrap();
    assert!(!dir.exists(), "the disabled file cache wrote nothing");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(command_stats(&redis), before, "no Redis command besides INFO");
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0");
}
