//! Function caching (`cached_as`, auto dependencies), the dog-pile lock, events: both backends.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cacheops::{Cache, CachedAs, Dep, Deps, Error, Lookup, TableChange, Value};
use support::*;

async fn memory() -> Cache {
    support::builder().build().await.unwrap()
}

async fn redis(name: &str) -> Cache {
    require_shared_redis();
    support::builder().redis_url(SHARED_REDIS).prefix(unique_prefix(name)).degrade(false).build().await.unwrap()
}

macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn in_process() {
                super::$body(super::memory().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                super::$body(super::redis(stringify!($name)).await).await;
            }
        }
    };
}

/// Calls `f` for `arg`, counting computations in `calls`; returns (value, computed).
async fn call(f: &CachedAs, arg: i64, calls: &AtomicUsize, value: &str) -> (String, bool) {
    let before = calls.load(Ordering::SeqCst);
    let v = f
        .get_or_compute(&arg, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(value.to_owned())
        })
        .await
        .unwrap();
    (v, calls.load(Ordering::SeqCst) > before)
}

fn posts_in(cat: i64) -> Dep {
    Dep::sql("SELECT * FROM post WHERE category_id = $1", [Value::Int(cat)])
}

async fn filtered_select(cache: Cache) {
    let f = cache.cached_as("posts_in_3", posts_in(3));
    let n = AtomicUsize::new(0);
    assert_eq!(call(&f, 3, &n, "v1").await, ("v1".into(), true));
    assert_eq!(call(&f, 3, &n, "x").await, ("v1".into(), false), "second call is a hit");
    // A non-matching insert (category 4) does not invalidate.
    cache.invalidate_obj("post", &row(&[("id", 100), ("category_id", 4)])).await.unwrap();
    assert_eq!(call(&f, 3, &n, "x").await, ("v1".into(), false));
    // A matching insert through a write lease does.
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", [row(&[("id", 101), ("category_id", 3)])])).await.unwrap();
    lease.before_commit().await.unwrap();
    lease.finish().await.unwrap();
    assert_eq!(call(&f, 3, &n, "v2").await, ("v2".into(), true));
    assert_eq!(call(&f, 3, &n, "x").await, ("v2".into(), false));
    // Different arguments, different entries.
    assert_eq!(call(&f, 4, &n, "w").await, ("w".into(), true));
}
both_backends!(filtered_select_, filtered_select);

async fn two_entities(cache: Cache) {
    let f = cache.cached_as("two", Deps::new().with(posts_in(3)).with("category"));
    let n = AtomicUsize::new(0);
    call(&f, 0, &n, "a").await;
    assert!(!call(&f, 0, &n, "a").await.1);
    cache.invalidate_obj("category", &row(&[("id", 9)])).await.unwrap();
    assert!(call(&f, 0, &n, "a").await.1, "a change to category invalidates");
    assert!(!call(&f, 0, &n, "a").await.1);
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 3)])).await.unwrap();
    assert!(call(&f, 0, &n, "a").await.1, "a matching change to post invalidates");
    cache.invalidate_obj("author", &row(&[("id", 1)])).await.unwrap();
    assert!(!call(&f, 0, &n, "a").await.1, "another table does not");
}
both_backends!(two_entities_, two_entities);

async fn one_instance(cache: Cache) {
    let f = cache.cached_as("post7", Dep::row("post", "id", 7));
    let n = AtomicUsize::new(0);
    call(&f, 0, &n, "a").await;
    cache.invalidate_obj("post", &row(&[("id", 8), ("category_id", 3)])).await.unwrap();
    assert!(!call(&f, 0, &n, "a").await.1, "another row does not invalidate");
    cache.invalidate_obj("post", &row(&[("id", 7), ("category_id", 3)])).await.unwrap();
    assert!(call(&f, 0, &n, "b").await.1, "that row does");
}
both_backends!(one_instance_, one_instance);

async fn invalidation_during_first_call(cache: Cache) {
    let f = cache.cached_as("racy", posts_in(3));
    let c2 = cache.clone();
    let v: String = f
        .get_or_compute(&(), || async move {
            // The database read happened; a write commits before the result is stored.
            c2.invalidate_obj("post", &row(&[("id", 5), ("category_id", 3)])).await?;
            Ok::<_, Error>("computed before the write".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(v, "computed before the write");
    assert!(f.key(&()).get::<String>().await.unwrap_err().is_cache_miss(), "that result must not be served");
    let n = AtomicUsize::new(0);
    let v = f
        .get_or_compute(&(), || async {
            n.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("fresh".to_owned())
        })
        .await
        .unwrap();
    assert_eq!((v.as_str(), n.load(Ordering::SeqCst)), ("fresh", 1));
}
both_backends!(invalidation_during_first_call_, invalidation_during_first_call);

/// An "integration" read: a cached SQL query through the engine.
async fn sql_read(cache: &Cache, sql: &str, params: &[Value], db_value: &str) -> Vec<u8> {
    let analysis = cache.analyze(sql, params).unwrap();
    let q = cache.sql_query(sql, params, &analysis, "main", "rows");
    let v = db_value.as_bytes().to_vec();
    cache.get_or_compute(&q, || async move { Ok::<_, Error>(v) }).await.unwrap()
}

async fn auto_dependencies(cache: Cache) {
    let f = cache.cached_as_auto("auto_stats");
    let n = Arc::new(AtomicUsize::new(0));
    let run = |label: &'static str| {
        let (cache, n, f) = (cache.clone(), n.clone(), f.clone());
        async move {
            f.get_or_compute(&(), || async move {
                n.fetch_add(1, Ordering::SeqCst);
                let a = sql_read(&cache, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(3)], "posts").await;
                let b = sql_read(&cache, "SELECT * FROM tag WHERE id = $1", &[Value::Int(1)], "tag").await;
                Ok::<_, Error>(format!("{label}:{}:{}", a.len(), b.len()))
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(run("one").await, "one:5:3");
    assert_eq!(run("two").await, "one:5:3", "stored with the recorded dependencies");
    assert_eq!(n.load(Ordering::SeqCst), 1);
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 4)])).await.unwrap();
    assert_eq!(run("three").await, "one:5:3", "a non-matching write does not invalidate");
    cache.invalidate_obj("tag", &row(&[("id", 1)])).await.unwrap();
    assert_eq!(run("four").await, "four:5:3", "a matching write to the second table does");
    assert_eq!(run("five").await, "four:5:3");
    cache.invalidate_obj("post", &row(&[("id", 2), ("category_id", 3)])).await.unwrap();
    assert_eq!(run("six").await, "six:5:3");
    assert_eq!(n.load(Ordering::SeqCst), 3);
}
both_backends!(auto_dependencies_, auto_dependencies);

async fn auto_invalidation_between_inner_read_and_store(cache: Cache) {
    let f = cache.cached_as_auto("auto_racy");
    let c = cache.clone();
    let v: String = f
        .get_or_compute(&(), || async move {
            let a = sql_read(&c, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(3)], "old").await;
            // A write commits after the inner read, before the function's result is stored.
            c.invalidate_obj("post", &row(&[("id", 1), ("category_id", 3)])).await?;
            Ok::<_, Error>(String::from_utf8(a).unwrap())
        })
        .await
        .unwrap();
    assert_eq!(v, "old");
    let c = cache.clone();
    let v: String = f
        .get_or_compute(&(), || async move {
            let a = sql_read(&c, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(3)], "new").await;
            Ok::<_, Error>(String::from_utf8(a).unwrap())
        })
        .await
        .unwrap();
    assert_eq!(v, "new", "the result computed across the write must not be served");

    // Also when the inner read was a hit: the stamps are taken before it.
    let g = cache.cached_as_auto("auto_racy_hit");
    sql_read(&cache, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(5)], "cached").await;
    let c = cache.clone();
    let _: String = g
        .get_or_compute(&(), || async move {
            let a = sql_read(&c, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(5)], "unused").await;
            c.invalidate_obj("post", &row(&[("id", 1), ("category_id", 5)])).await?;
            Ok::<_, Error>(String::from_utf8(a).unwrap())
        })
        .await
        .unwrap();
    assert!(g.key(&()).get::<String>().await.unwrap_err().is_cache_miss());
}
both_backends!(auto_invalidation_between_inner_read_and_store_, auto_invalidation_between_inner_read_and_store);

async fn stampede(cache: Cache) {
    let f = cache.cached_as("stampede", "post").lock(true);
    let n = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (f, n, barrier) = (f.clone(), n.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            f.get_or_compute(&1, || async move {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, Error>(42u64)
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 42);
    }
    assert_eq!(n.load(Ordering::SeqCst), 1, "the computation must run once");
}
both_backends!(stampede_, stampede);

async fn panicking_holder(cache: Cache) {
    let f = cache.cached_as("panicky", "post").lock(true).lock_wait(Duration::from_secs(5));
    let holder = {
        let f = f.clone();
        tokio::spawn(async move {
            f.get_or_compute(&1, || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("the holder dies");
                #[allow(unreachable_code)]
                Ok::<u32, Error>(0)
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let f = f.clone();
        waiters
            .push(tokio::spawn(async move { f.get_or_compute(&1, || async { Ok::<u32, Error>(7) }).await.unwrap() }));
    }
    for w in waiters {
        assert_eq!(w.await.unwrap(), 7);
    }
    assert!(holder.await.is_err(), "the holder panicked");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "waiters released long before the bounded wait: {:?}",
        start.elapsed()
    );
}
both_backends!(panicking_holder_, panicking_holder);

#[tokio::test]
async fn crashed_process_lock_expires_and_waiters_are_bounded() {
    let prefix = unique_prefix("crashed");
    require_shared_redis();
    let cache = support::builder()
        .redis_url(SHARED_REDIS)
        .prefix(&prefix)
        .lock_wait(Duration::from_millis(600))
        .build()
        .await
        .unwrap();
    let f = cache.cached_as("crashed", "post").lock(true);
    // Another process took the lock and died: its key stays until its TTL.
    let lock_key = cache.keys().lock(f.key(&1).hash_str().unwrap());
    let client = redis::Client::open(SHARED_REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("SET").arg(&lock_key).arg("dead 0").arg("PX").arg(1500).query_async(&mut conn).await.unwrap();
    let start = Instant::now();
    let v = f.get_or_compute(&1, || async { Ok::<u32, Error>(1) }).await.unwrap();
    let waited = start.elapsed();
    assert_eq!(v, 1);
    assert!(waited >= Duration::from_millis(550) && waited < Duration::from_millis(1400), "bounded wait: {waited:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&lock_key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0, "the dead holder's lock expires by its own TTL");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let ttl: i64 = redis::cmd("PTTL").arg(&lock_key).query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -2, "expired");
}

/// The child half of `stampede_across_processes`: runs only when spawned by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stampede_child() {
    let Ok(prefix) = std::env::var("CACHEOPS_STAMPEDE_PREFIX") else { return };
    let start_at: u64 = std::env::var("CACHEOPS_STAMPEDE_AT").unwrap().parse().unwrap();
    stampede_half(&prefix, start_at).await;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn stampede_half(prefix: &str, start_at: u64) -> Vec<u64> {
    let cache = support::builder().redis_url(SHARED_REDIS).prefix(prefix).build().await.unwrap();
    let f = cache.cached_as("xproc", "post").lock(true);
    let counter = format!("{prefix}:computations");
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let (f, counter) = (f.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let client = redis::Client::open(SHARED_REDIS).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let wait = start_at.saturating_sub(unix_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            f.get_or_compute(&1, || async move {
                let n: u64 = redis::cmd("INCR").arg(&counter).query_async(&mut conn).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, Error>(n)
            })
            .await
            .unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stampede_across_processes() {
    require_shared_redis();
    let prefix = unique_prefix("xproc");
    let start_at = unix_ms() + 2500;
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["stampede_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("CACHEOPS_STAMPEDE_PREFIX", &prefix)
        .env("CACHEOPS_STAMPEDE_AT", start_at.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mine = stampede_half(&prefix, start_at).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran");
    let client = redis::Client::open(SHARED_REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: u64 = redis::cmd("GET").arg(format!("{prefix}:computations")).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{prefix}:computations")).query_async(&mut conn).await.unwrap();
    assert_eq!(n, 1, "one computation across both processes");
    assert!(mine.iter().all(|v| *v == 1));
}

async fn serve_stale(cache: Cache) {
    let f = cache.cached_as("stale", "post").serve_stale(Duration::from_secs(5));
    let v = f.get_or_compute(&1, || async { Ok::<u32, Error>(1) }).await.unwrap();
    assert_eq!(v, 1);
    cache.invalidate_model("post").await.unwrap();
    // One caller recomputes slowly; another gets the previous value at once.
    let slow = {
        let f = f.clone();
        tokio::spawn(async move {
            f.get_or_compute(&1, || async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<u32, Error>(2)
            })
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let v = f.get_or_compute(&1, || async { Ok::<u32, Error>(99) }).await.unwrap();
    assert_eq!(v, 1, "the previous value, served stale while recomputing");
    assert!(start.elapsed() < Duration::from_millis(300));
    assert_eq!(slow.await.unwrap(), 2);
    assert_eq!(f.get_or_compute(&1, || async { Ok::<u32, Error>(99) }).await.unwrap(), 2);
    // Without serve_stale nothing stale is served.
    let g = cache.cached_as("stale", "post").lock(true);
    cache.invalidate_model("post").await.unwrap();
    assert_eq!(g.get_or_compute(&1, || async { Ok::<u32, Error>(3) }).await.unwrap(), 3);
}
both_backends!(serve_stale_, serve_stale);

async fn key_companions(cache: Cache) {
    let f = cache.cached_as("keys", posts_in(3));
    assert!(f.key(&1).get::<u32>().await.unwrap_err().is_cache_miss());
    assert!(f.key(&1).set(&5u32).await.unwrap());
    assert_eq!(f.key(&1).get::<u32>().await.unwrap(), 5);
    assert!(f.key(&2).get::<u32>().await.unwrap_err().is_cache_miss(), "other arguments, other entry");
    assert!(f.key(&1).set(&6u32).await.unwrap(), "set replaces");
    assert_eq!(f.get_or_compute(&1, || async { Ok::<u32, Error>(0) }).await.unwrap(), 6);
    assert!(f.invalidate(&1).await.unwrap());
    assert!(f.key(&1).get::<u32>().await.unwrap_err().is_cache_miss());
    // A set value is invalidated like a computed one.
    f.key(&1).set(&7u32).await.unwrap();
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 3)])).await.unwrap();
    assert!(f.key(&1).get::<u32>().await.unwrap_err().is_cache_miss());
    // extra changes the key.
    let g = cache.cached_as("keys", posts_in(3)).extra(&"v2");
    g.key(&1).set(&8u32).await.unwrap();
    assert!(f.key(&1).get::<u32>().await.unwrap_err().is_cache_miss());
}
both_backends!(key_companions_, key_companions);

#[tokio::test]
async fn lookup_is_unchanged_for_plain_queries() {
    let cache = memory().await;
    let q = cache.query(b"plain", deps_eq("post", "id", 1));
    assert!(matches!(cache.lookup(&q).await.unwrap(), Lookup::Miss(_)));
}

/// Two processes (two caches on one Redis prefix) and an `auto` function whose dependencies
/// change between calls: process A keeps the shape it saw in process; B records a new one and
/// stores under it; a write to B's dependency must reach A too (A's outdated shape may only
/// cause a miss, never a stale hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_auto_shape_in_one_process_never_serves_a_stale_value() {
    require_shared_redis();
    let prefix = unique_prefix("auto_shape");
    let process = || support::builder().redis_url(SHARED_REDIS).prefix(prefix.clone()).degrade(false).build();
    let (a, b) = (process().await.unwrap(), process().await.unwrap());
    let compute = |cache: Cache, category: i64, value: &'static str| async move {
        let f = cache.cached_as_auto("shifting");
        let c = cache.clone();
        f.get_or_compute(&(), || async move {
            let rows = sql_read(&c, "SELECT * FROM post WHERE category_id = $1", &[Value::Int(category)], value).await;
            Ok::<_, Error>(String::from_utf8(rows).unwrap())
        })
        .await
        .unwrap()
    };
    assert_eq!(compute(a.clone(), 3, "v1").await, "v1");
    assert_eq!(compute(a.clone(), 3, "unused").await, "v1", "A: a hit with the shape it keeps");
    // B's function now depends on category 4 (and the value was dropped, as by a deploy).
    a.cached_as_auto("shifting").invalidate(&()).await.unwrap();
    assert_eq!(compute(b.clone(), 4, "v2").await, "v2");
    assert_eq!(compute(b.clone(), 4, "unused").await, "v2", "B: stored under category 4");
    // A write to category 4: B's dependency, not in the shape A keeps.
    b.invalidate_obj("post", &row(&[("id", 9), ("category_id", 4)])).await.unwrap();
    let seen = compute(a.clone(), 3, "v3").await;
    assert_ne!(seen, "v2", "A must not serve the value the write invalidated");
    assert_eq!(compute(b.clone(), 4, "v4").await, "v4", "B misses too");
}
