//! The hit check's direct connections (`RedisBackendBuilder::direct_connections`): bounded,
//! replaced when the server drops them, never out of step after a cancelled call, and
//! authenticated / on the right database like the shared connection. Each test runs its own
//! `redis-server`.

mod common;

use std::time::Duration;

use cacheops_core::protocol::Backend;
use cacheops_redis::RedisBackend;
use common::{Env, dep, hit};

const TTL: Duration = Duration::from_secs(120);

/// `redis-cli` on `port` (with a password when given); it must succeed.
fn cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    common::redis_cli_auth(port, password, args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
}

/// Client connections to the server, not counting the `redis-cli` asking.
fn clients(port: u16) -> usize {
    cli(port, None, &["CLIENT", "LIST"]).lines().count() - 1
}

async fn backend(port: u16, direct: usize) -> RedisBackend {
    RedisBackend::builder()
        .url(format!("redis://127.0.0.1:{port}"))
        .direct_connections(direct)
        .build()
        .await
        .expect("connect")
}

/// Concurrent hits open at most the configured number of direct connections; the others go
/// through the shared connection (as `read.lua`, which verifies the server's identity), and
/// every one of them is a correct hit in one round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_connections_are_bounded_and_overflow_to_the_shared_one() {
    let server = common::spawn_server(&[]);
    let b = backend(server.port, 2).await;
    let env = Env::with_backend(b.clone());
    let deps = [dep("post", &[("id", 1)])];
    for i in 0..8 {
        assert!(common::is_miss(&env.read_store(&format!("v{i}"), &deps, format!("data {i}").as_bytes(), TTL).await));
    }
    let calls =
        || common::command_calls(server.port, None, "mget") + common::command_calls(server.port, None, "evalsha");
    let before = calls();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..64 {
        let (b, req) = (b.clone(), env.read_req(&format!("v{}", t % 8), &deps));
        tasks.spawn(async move {
            let reply = b.read(&req).await.expect("read");
            assert_eq!(hit(&reply), Some(format!("data {}", t % 8).as_bytes()), "task {t}");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    assert_eq!(calls() - before, 64, "every hit is one MGET or one read.lua");
    // One shared connection plus at most two direct ones.
    let n = clients(server.port);
    assert!((2..=3).contains(&n), "{n} client connections");

    // With no direct connections, hits go through the shared connection alone.
    let shared_only = backend(server.port, 0).await;
    let mut env0 = Env::with_backend(shared_only);
    env0.ks = env.ks.clone();
    assert_eq!(hit(&env0.read("v1", &deps).await), Some(&b"data 1"[..]));
    assert!(clients(server.port) <= n + 1);
}

/// Direct connections the server closed (restart, idle timeout, `CLIENT KILL`) are replaced:
/// the next hit check retries once on a new connection instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_direct_connections_are_replaced() {
    let server = common::spawn_server(&[]);
    let b = backend(server.port, 4).await;
    let env = Env::with_backend(b.clone());
    let deps = [dep("post", &[("id", 1)])];
    assert!(common::is_miss(&env.read_store("v", &deps, b"data", TTL).await));
    assert_eq!(hit(&env.read("v", &deps).await), Some(&b"data"[..]));
    let killed: u64 = cli(server.port, None, &["CLIENT", "KILL", "TYPE", "normal"]).trim().parse().expect("count");
    assert!(killed >= 2, "killed {killed}");
    for _ in 0..3 {
        assert_eq!(hit(&env.read("v", &deps).await), Some(&b"data"[..]));
    }
    assert_eq!(b.get("absent-key").await.expect("GET"), None);
}

/// A hit check abandoned while its reply is on the way (its future dropped by a timeout) must
/// not leave that reply to be read as the answer to the next command on the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_hit_check_leaves_no_reply_behind() {
    let server = common::spawn_server(&[]);
    let b = backend(server.port, 1).await;
    let env = Env::with_backend(b.clone());
    let deps = [dep("post", &[("id", 1)])];
    assert!(common::is_miss(&env.read_store("a", &deps, b"value a", TTL).await));
    assert!(common::is_miss(&env.read_store("b", &deps, b"value b", TTL).await));
    assert_eq!(hit(&env.read("a", &deps).await), Some(&b"value a"[..]));

    // Redis holds every client's commands for 300 ms: the read of `a` is sent, then dropped.
    cli(server.port, None, &["CLIENT", "PAUSE", "300", "ALL"]);
    let req_a = env.read_req("a", &deps);
    let abandoned = tokio::time::timeout(Duration::from_millis(50), b.read(&req_a)).await;
    assert!(abandoned.is_err(), "the read should still be waiting");
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The only direct connection may have `a`'s reply pending: it must not answer `b`.
    for _ in 0..3 {
        assert_eq!(hit(&env.read("b", &deps).await), Some(&b"value b"[..]));
        assert_eq!(hit(&env.read("a", &deps).await), Some(&b"value a"[..]));
    }
}

/// Direct connections authenticate and select the database like the shared one: hits on db 3
/// of a password-protected server are served by the `MGET` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_connections_authenticate_and_select_the_database() {
    let server = common::spawn_server(&[]);
    cli(server.port, None, &["CONFIG", "SET", "requirepass", "s3cret"]);
    let b = RedisBackend::builder()
        .host("127.0.0.1")
        .port(server.port)
        .password("s3cret")
        .db(3)
        .build()
        .await
        .expect("connect");
    let env = Env::with_backend(b.clone());
    let deps = [dep("post", &[("id", 7)])];
    assert!(common::is_miss(&env.read_store("v", &deps, b"on db 3", TTL).await));
    let pw = Some("s3cret");
    let (mget, evalsha) =
        (common::command_calls(server.port, pw, "mget"), common::command_calls(server.port, pw, "evalsha"));
    assert_eq!(hit(&env.read("v", &deps).await), Some(&b"on db 3"[..]));
    // One MGET and no script: the direct connection found the value on db 3.
    assert_eq!(common::command_calls(server.port, pw, "mget") - mget, 1);
    assert_eq!(common::command_calls(server.port, pw, "evalsha") - evalsha, 0);
    assert!(common::command_calls(server.port, pw, "auth") >= 2, "shared and direct connections authenticate");
    let keyspace = cli(server.port, pw, &["INFO", "keyspace"]);
    assert!(keyspace.contains("db3:") && !keyspace.contains("db0:"), "{keyspace}");
    assert!(matches!(b.get("nothing").await, Ok(None)));

    // A wrong password fails when building (shared connection) and on a direct connection.
    let wrong =
        RedisBackend::builder().host("127.0.0.1").port(server.port).password("nope").build_lazy().await.expect("lazy");
    assert!(wrong.get("x").await.is_err());
    assert!(wrong.read(&env.read_req("v", &deps)).await.is_err());
    // Let the server's guard shut it down without a password.
    cli(server.port, pw, &["CONFIG", "SET", "requirepass", ""]);
}
