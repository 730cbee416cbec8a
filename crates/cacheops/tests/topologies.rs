//! Every Redis topology by URL, on processes this test starts on loopback ports: TLS (a CA and
//! client certificates made with `openssl`) for standalone, Sentinel and Cluster; a Sentinel
//! group (master, replica, three Sentinels) through a forced `SENTINEL FAILOVER` in the middle of
//! a stress run; and the cross-process dog-pile lock on each of them.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cacheops::{Cache, CacheBuilder, LockOpts, TableChange};
use support::history::{CATEGORIES, Db, WriteFailure, read_join, read_once, write_once, write_target};
use support::topology::{Certs, Cluster, Node, SentinelGroup};
use support::*;

fn tls_builder(url: &str, certs: &Certs) -> CacheBuilder {
    builder().redis_url(url).redis_tls_root_cert(&certs.ca).redis_tls_client_cert(&certs.client_cert, &certs.client_key)
}

/// A value is cached (the second read hits), and a committed write of one of its rows makes
/// the next read a miss that returns the new rows.
async fn caches_and_invalidates(cache: &Cache) {
    let db = CategoryDb::default();
    db.0.lock().unwrap().extend([(1, 1), (2, 1), (3, 2)]);
    let q = cache.query(b"category-1", deps_eq("post", "category_id", 1));
    let (first, hit) = read_category(cache, &db, &q, 1).await;
    assert_eq!((first.as_str(), hit), ("1,2", false));
    let (second, hit) = read_category(cache, &db, &q, 1).await;
    assert_eq!((second.as_str(), hit), ("1,2", true), "the second read must be a hit");

    // Move row 3 into category 1 the way an integration does.
    let mut lease = cache.write_lease();
    lease.mark(TableChange::rows("post", db.rows_of_move(3, 1))).await.unwrap();
    lease.before_commit().await.unwrap();
    db.0.lock().unwrap().insert(3, 1);
    lease.finish().await.unwrap();

    let (third, hit) = read_category(cache, &db, &q, 1).await;
    assert_eq!((third.as_str(), hit), ("1,2,3", false), "the write must invalidate the cached value");
    let (_, hit) = read_category(cache, &db, &q, 1).await;
    assert!(hit, "cached again");
}

/// Two caches (as two processes would have) share the dog-pile lock: of two concurrent misses
/// of the same query, one computes and the other gets its value.
async fn lock_is_shared(a: Cache, b: Cache) {
    let computed = Arc::new(AtomicU64::new(0));
    let run = |cache: Cache| {
        let computed = computed.clone();
        async move {
            let q = cache.query(b"locked", deps_eq("post", "category_id", 7));
            cache
                .get_or_compute_with(&q, LockOpts::new(true, Duration::from_secs(10)), || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, cacheops::Error>(b"value".to_vec())
                })
                .await
                .unwrap()
        }
    };
    let (x, y) = tokio::join!(tokio::spawn(run(a)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::spawn(run(b)).await
    });
    assert_eq!((x.unwrap(), y.unwrap()), (b"value".to_vec(), b"value".to_vec()));
    assert_eq!(computed.load(Ordering::SeqCst), 1, "the second cache must wait for the first one's value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_standalone_with_a_ca_and_a_client_certificate() {
    let certs = Certs::generate();
    let node = Node::start(Some(&certs), &[]);
    let url = format!("rediss://127.0.0.1:{}/0", node.port);
    let prefix = unique_prefix("tls");
    let cache = tls_builder(&url, &certs).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    assert!(node.info("keyspace", "db0").is_some_and(|k| k.starts_with("keys=")), "the TLS server holds the keys");
    let other = tls_builder(&url, &certs).prefix(&prefix).build().await.unwrap();
    lock_is_shared(cache, other).await;

    // The server requires a client certificate; the system's roots do not know the test CA;
    // plain text does not reach a TLS port. Each fails at build with degrade off.
    let no_client_cert = builder().redis_url(&url).redis_tls_root_cert(&certs.ca).degrade(false).build().await;
    let unknown_ca = builder()
        .redis_url(&url)
        .redis_tls_client_cert(&certs.client_cert, &certs.client_key)
        .degrade(false)
        .build()
        .await;
    let plain = builder().redis_url(format!("redis://127.0.0.1:{}/0", node.port)).degrade(false).build().await;
    for (what, res) in [("no client certificate", no_client_cert), ("unknown CA", unknown_ca), ("plain text", plain)] {
        let err = res.err().unwrap_or_else(|| panic!("{what}: connected"));
        assert!(err.is_unavailable(), "{what}: {err:?}");
    }
    // Certificates for a plain URL are a configuration error, and so is a missing file.
    let err = builder().redis_url("redis://127.0.0.1:1/0").redis_tls_root_cert(&certs.ca).build().await.unwrap_err();
    assert!(err.to_string().contains("TLS target"), "{err}");
    let err = builder().redis_url(&url).redis_tls_root_cert("/nonexistent/ca.crt").build().await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_by_url() {
    let certs = Certs::generate();
    let cluster = Cluster::start(Some(&certs));
    let prefix = unique_prefix("tls-cluster");
    let cache = tls_builder(&cluster.url(), &certs).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    let other = tls_builder(&cluster.url(), &certs).prefix(&prefix).build().await.unwrap();
    lock_is_shared(cache, other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_cluster_by_url_shares_the_lock() {
    let cluster = Cluster::start(None);
    let prefix = unique_prefix("cluster");
    let cache = builder().redis_url(cluster.url()).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    let other = builder().redis_url(cluster.url()).prefix(&prefix).build().await.unwrap();
    lock_is_shared(cache, other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinel_by_url() {
    let certs = Certs::generate();
    let group = SentinelGroup::start(Some(&certs));
    let prefix = unique_prefix("tls-sentinel");
    let cache = tls_builder(&group.url(0), &certs).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    let other = tls_builder(&group.url(0), &certs).prefix(&prefix).build().await.unwrap();
    lock_is_shared(cache, other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sentinel_by_url() {
    let group = SentinelGroup::start(None);
    let prefix = unique_prefix("sentinel");
    let cache = builder().redis_url(group.url(2)).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    // Lazy (degrade on): the master is looked up on first use.
    let lazy = builder().redis_url(group.url(2)).prefix(unique_prefix("sentinel-lazy")).build().await.unwrap();
    caches_and_invalidates(&lazy).await;
    let master = group.node(group.master_port());
    assert!(master.info("keyspace", "db2").is_some(), "the master's db 2 holds the namespace");
    let other = builder().redis_url(group.url(2)).prefix(&prefix).build().await.unwrap();
    lock_is_shared(cache, other).await;
}

/// A Sentinel that accepts connections but never answers (frozen) costs one bounded step; the
/// next one names the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_that_does_not_answer_is_skipped() {
    let group = SentinelGroup::start(None);
    group.sentinels[0].signal("STOP");
    // A hang guard, not a measurement: without the bounded step the build never returns.
    let build = builder().redis_url(group.url(0)).prefix(unique_prefix("frozen")).degrade(false).build();
    let cache = tokio::time::timeout(Duration::from_secs(60), build).await.expect("the lookup hangs").unwrap();
    caches_and_invalidates(&cache).await;
    group.sentinels[0].signal("CONT");
}

/// A custom backend (built by the application) gets the shared lock too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_built_by_the_application_shares_the_lock() {
    require_shared_redis();
    let prefix = unique_prefix("custom-lock");
    let mk = || async {
        let backend = cacheops_redis::RedisBackend::builder().url(SHARED_REDIS).build().await.unwrap();
        builder().backend(Arc::new(backend)).prefix(&prefix).build().await.unwrap()
    };
    lock_is_shared(mk().await, mk().await).await;
}

const LEASE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
    hits_after: AtomicU64,
    writes: AtomicU64,
    writes_after: AtomicU64,
    refused: AtomicU64,
    unfinished: AtomicU64,
}

/// The shared state of the stress run's tasks.
#[derive(Clone)]
struct Load {
    db: Db,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    failed_over: Arc<AtomicBool>,
}

impl Load {
    /// Two writers and three readers on `cache`, until `stop`.
    fn spawn(&self, cache: &Cache, salt: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for w in 0..2u64 {
            let (cache, load) = (cache.clone(), self.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !load.stop.load(Ordering::SeqCst) {
                    let (id, cat) = write_target(salt * 10 + w, i);
                    i += 1;
                    let late = load.failed_over.load(Ordering::SeqCst);
                    let counts = &load.counts;
                    match write_once(&cache, &load.db, id, cat).await {
                        Ok(()) => {
                            counts.writes.fetch_add(1, Ordering::SeqCst);
                            if late {
                                counts.writes_after.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(WriteFailure::Refused(_)) => drop(counts.refused.fetch_add(1, Ordering::SeqCst)),
                        Err(WriteFailure::AfterCommit(_)) => drop(counts.unfinished.fetch_add(1, Ordering::SeqCst)),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        for r in 0..3u64 {
            let (cache, load) = (cache.clone(), self.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !load.stop.load(Ordering::SeqCst) {
                    let cat = ((r + i) % CATEGORIES as u64) as i64 + 1;
                    i += 1;
                    let late = load.failed_over.load(Ordering::SeqCst);
                    let (hit, stale) = read_once(&cache, &load.db, cat).await;
                    let counts = &load.counts;
                    counts.reads.fetch_add(1, Ordering::SeqCst);
                    if hit {
                        counts.hits.fetch_add(1, Ordering::SeqCst);
                        if late {
                            counts.hits_after.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if stale {
                        counts.stale.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }));
        }
        tasks
    }
}

/// Readers and writers in two "processes" (two caches) through a forced failover, and a third
/// process started right after it. Every read is
/// checked against the commit history; the run goes on until the writes and hits have resumed
/// on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_during_a_stress_run_is_stale_free() {
    let group = SentinelGroup::start(None);
    let url = group.url(0);
    let prefix = unique_prefix("sentinel-stress");
    let mut caches = Vec::new();
    for _ in 0..2 {
        caches.push(builder().redis_url(&url).prefix(&prefix).lease(LEASE).build().await.unwrap());
    }
    // Hits and writes on the first master.
    caches_and_invalidates(&caches[0]).await;

    let load = Load {
        db: Db::new(),
        counts: Arc::new(Counts::default()),
        stop: Arc::new(AtomicBool::new(false)),
        failed_over: Arc::new(AtomicBool::new(false)),
    };
    let counts = load.counts.clone();
    let mut tasks = Vec::new();
    for (c, cache) in caches.iter().enumerate() {
        tasks.extend(load.spawn(cache, c as u64));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits_before = counts.hits.load(Ordering::SeqCst);
    let old = group.master_port();
    // Returns once every Sentinel names the new master; the old one is reconfigured later.
    let switched_to = tokio::task::block_in_place(|| group.failover());
    load.failed_over.store(true, Ordering::SeqCst);
    // A process that starts now finds the new master at once, while the others are still on
    // the old one (which has not noticed yet): writers on one, readers on the other.
    let late = builder().redis_url(&url).prefix(&prefix).lease(LEASE).build().await.unwrap();
    tasks.extend(load.spawn(&late, 2));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && (counts.writes_after.load(Ordering::SeqCst) < 20 || counts.hits_after.load(Ordering::SeqCst) < 20)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A little more load on the new master.
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let new_master = group.master_port();
    let c = |a: &AtomicU64| a.load(Ordering::SeqCst);
    println!(
        "master {old} -> {new_master}: reads={} hits={} (before the failover {hits_before}, after {}) stale={} \
         writes={} (after {}) refused={} unfinished={}",
        c(&counts.reads),
        c(&counts.hits),
        c(&counts.hits_after),
        c(&counts.stale),
        c(&counts.writes),
        c(&counts.writes_after),
        c(&counts.refused),
        c(&counts.unfinished)
    );
    assert_ne!(old, new_master, "the Sentinels switched the master");
    assert_eq!(switched_to, new_master);
    assert_eq!(c(&counts.stale), 0, "stale reads");
    assert!(hits_before > 0, "hits before the failover");
    assert!(c(&counts.writes_after) >= 20, "writes resumed after the failover");
    assert!(c(&counts.hits_after) >= 20, "hits resumed after the failover");
    // The caches use the new master: once the leases of refused writes have expired, values of
    // the same namespace are cached and invalidated there.
    assert_eq!(group.node(new_master).info("replication", "role").as_deref(), Some("master"));
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    caches_and_invalidates(&caches[1]).await;
    lock_is_shared(caches[0].clone(), caches[1].clone()).await;
}

/// One namespace over a 3-master cluster: its tables' keys (and the values placed with them)
/// live on every node, while readers of one table and of two-table joins, and writers, in two
/// caches (two processes) stay stale-free; a hit of a join is composed of one check per table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_spreads_over_the_cluster_and_stays_stale_free() {
    let cluster = Cluster::start(None);
    let prefix = unique_prefix("spread");
    let ks = cacheops::KeySpace::new(&prefix).unwrap();
    // Twelve tables, four on each master (table names are what decide the slots).
    let mut per_node: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
    let mut tables = Vec::new();
    for i in 0..10_000 {
        let name = format!("t{i}");
        let Some(node) = cluster.owner(cacheops_redis::key_slot(&ks.table(&name))) else { continue };
        let n = per_node.entry(node).or_default();
        if *n < 4 {
            *n += 1;
            tables.push(name);
        }
        if tables.len() == 12 {
            break;
        }
    }
    assert_eq!(tables.len(), 12, "tables on every node: {per_node:?}");
    let int = cacheops::ColumnClass::Integer;
    let mut caches = Vec::new();
    for _ in 0..2 {
        let mut b = builder().redis_url(cluster.url()).prefix(&prefix).degrade(false);
        for t in &tables {
            b = b.table_schema(cacheops::TableSchema::new(t).column("id", int).column("category_id", int));
        }
        caches.push(b.build().await.unwrap());
    }
    let seq = Arc::new(AtomicU64::new(0));
    let dbs: Arc<Vec<Db>> = Arc::new(tables.iter().map(|t| Db::table(t, seq.clone())).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([(); 6].map(|_| AtomicU64::new(0))); // reads, hits, join reads, join hits, stale, writes
    let mut tasks = Vec::new();
    for (c, cache) in caches.iter().enumerate() {
        for w in 0..2u64 {
            let (cache, dbs, stop, counts) = (cache.clone(), dbs.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let salt = c as u64 * 10 + w;
                    let db = &dbs[(salt as usize + i * 5) % dbs.len()];
                    let (id, cat) = write_target(salt, i);
                    i += 1;
                    write_once(&cache, db, id, cat).await.expect("no fault: every write completes");
                    counts[5].fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
        for r in 0..3usize {
            let (cache, dbs, stop, counts) = (cache.clone(), dbs.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let cat = ((r + i) % CATEGORIES as usize) as i64 + 1;
                    let k = (r * 7 + i / 3) % dbs.len();
                    let join = i % 2 == 1;
                    i += 1;
                    let (hit, stale) = if join {
                        read_join(&cache, &[&dbs[k], &dbs[(k + 1) % dbs.len()]], cat).await
                    } else {
                        read_join(&cache, &[&dbs[k]], cat).await
                    };
                    let base = if join { 2 } else { 0 };
                    counts[base].fetch_add(1, Ordering::SeqCst);
                    counts[base + 1].fetch_add(u64::from(hit), Ordering::SeqCst);
                    counts[4].fetch_add(u64::from(stale), Ordering::SeqCst);
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let c: Vec<u64> = counts.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let keys = cluster.keys_per_node();
    let commands = cluster.commands_per_node();
    println!(
        "reads={} hits={} join reads={} join hits={} stale={} writes={}; keys per node {keys:?}, commands per node {commands:?}",
        c[0], c[1], c[2], c[3], c[4], c[5]
    );
    assert_eq!(c[4], 0, "stale reads");
    assert!(c[1] > 0 && c[3] > 0, "one-table and join reads hit: {c:?}");
    assert!(keys.iter().all(|k| *k > 0), "every node holds part of the namespace: {keys:?}");
    // invalidate_all reaches every table's epoch copy, on every node.
    let db = &dbs[0];
    let (_, _) = read_join(&caches[0], &[db], 1).await;
    assert!(read_join(&caches[0], &[db], 1).await.0, "cached");
    let (_, _) = read_join(&caches[0], &[&dbs[11], &dbs[5]], 2).await;
    assert!(read_join(&caches[0], &[&dbs[11], &dbs[5]], 2).await.0, "cached");
    caches[1].invalidate_all().await.unwrap();
    assert!(!read_join(&caches[0], &[db], 1).await.0, "invalidate_all reached the first table");
    assert!(!read_join(&caches[0], &[&dbs[11], &dbs[5]], 2).await.0, "and the join's");
}

/// On a cluster whose masters have replicas, every write of the protocol waits until the
/// master's replicas have it (a promoted replica would otherwise lack the lease): with a frozen
/// replica the write is refused, with `ReplicaAcks::AtLeast(0)` it goes through, and once the
/// replica is back writes complete again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_writes_wait_for_the_replicas() {
    let cluster = Cluster::start_replicated();
    let prefix = unique_prefix("acks");
    let cache = builder().redis_url(cluster.url()).prefix(&prefix).degrade(false).build().await.unwrap();
    caches_and_invalidates(&cache).await;
    let master = cluster.owner(cacheops_redis::key_slot(&cache.keys().table("post"))).expect("the table's master");
    let replica = cluster.replica_of(master).expect("its replica");
    let move_row = || TableChange::rows("post", vec![row(&[("id", 9), ("category_id", 1)])]);

    replica.signal("STOP");
    let mut lease = cache.write_lease();
    let res = lease.mark(move_row()).await;
    let err = res.expect_err("the replica cannot acknowledge");
    assert!(matches!(err, cacheops::Error::LeaseUnavailable(_)), "{err:?}");
    drop(lease);
    // Without the acknowledgement the same write goes through (the window `AtLeast(0)` states).
    let backend = cacheops_redis::RedisBackend::builder()
        .url(cluster.url())
        .replica_acks(cacheops_redis::ReplicaAcks::AtLeast(0), Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let unguarded = builder().backend(Arc::new(backend)).prefix(&prefix).degrade(false).build().await.unwrap();
    let mut lease = unguarded.write_lease();
    lease.mark(move_row()).await.expect("no acknowledgement asked");
    lease.finish().await.unwrap();
    replica.signal("CONT");

    // Back: writes are acknowledged again (after the breaker's retry interval).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut lease = cache.write_lease();
        match lease.mark(move_row()).await {
            Ok(()) => {
                lease.finish().await.unwrap();
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "writes stay refused: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    caches_and_invalidates(&cache.with_prefix(&unique_prefix("acks-after")).unwrap()).await;
}

/// A Sentinel URL is validated at build; a lazy cache starts while no Sentinel answers.
#[tokio::test]
async fn sentinel_and_cluster_urls_are_validated() {
    for bad in [
        "redis-sentinel://127.0.0.1:1",
        "redis-sentinel://127.0.0.1:1/svc/x",
        "redis-cluster://127.0.0.1:1/2",
        "redis-cluster://127.0.0.1:0",
        "redis-sentinel://127.0.0.1:1/svc?password=x",
        "memcached://127.0.0.1:1",
    ] {
        let err = builder().redis_url(bad).build().await.expect_err(bad);
        assert!(!err.to_string().contains("password=x"), "{err}");
    }
    for good in ["redis-sentinel://127.0.0.1:1,127.0.0.1:2/svc/1", "redis-cluster://127.0.0.1:1,127.0.0.1:2"] {
        builder().redis_url(good).build().await.expect(good);
    }
}
