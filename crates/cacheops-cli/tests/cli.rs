//! The `cacheops` command line against real Redis and PostgreSQL.

use std::process::Command;
use std::time::Duration;

use cacheops::{Cache, Conj, Dependencies, Dnf, Lookup, SimpleStore, Value};

const REDIS: &str = "redis://127.0.0.1:6379/0";
const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn cli(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cacheops"))
        .args(args)
        .env_remove("CACHEOPS_REDIS")
        .env_remove("CACHEOPS_PREFIX")
        .env_remove("DATABASE_URL")
        .envs(envs.iter().copied())
        .output()
        .expect("run cacheops");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn deps(table: &str, col: &str, v: i64) -> Dependencies {
    let mut d = Dependencies::new();
    d.add(table, Dnf::from_conjs([Conj::from_terms([(col, Value::Int(v))]).unwrap()], 64), 64);
    d
}

async fn cached(cache: &Cache, q: &cacheops::Query) -> bool {
    match cache.lookup(q).await.unwrap() {
        Lookup::Hit(_) => true,
        Lookup::Miss(t) => {
            cache.store(t, b"v").await.unwrap();
            false
        }
        Lookup::Bypass(_) => false,
    }
}

#[test]
fn explain_prints_dependencies() {
    let (ok, out) =
        cli(&["explain", "SELECT * FROM post p JOIN category c ON p.category_id = c.id WHERE c.id = $1", "5"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("depends on post: rows matching {category_id=5}"), "{out}");
    assert!(out.contains("depends on category: rows matching {id=5}"), "{out}");
    let (ok, out) = cli(&["explain", "--dialect", "sqlite", "SELECT count(*) FROM post WHERE title LIKE ?", "a%"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("depends on post: any change"), "{out}");
    let (ok, out) = cli(&["explain", "SELEC nonsense"], &[]);
    assert!(!ok && out.contains("cannot parse"), "{out}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let (ok, out) = cli(&["frobnicate"], &[]);
    assert!(!ok && out.contains("unknown command"), "{out}");
    let (ok, out) = cli(&["invalidate", "post"], &[]);
    assert!(!ok && out.contains("CACHEOPS_REDIS is not set"), "{out}");
    let (ok, out) = cli(&["invalidate", "bad name"], &[("CACHEOPS_REDIS", REDIS)]);
    assert!(!ok && out.contains("invalid target"), "{out}");
    let (ok, out) = cli(&["invalidate", "post.1"], &[("CACHEOPS_REDIS", REDIS)]);
    assert!(!ok && out.contains("DATABASE_URL is not set"), "{out}");
}

#[tokio::test]
async fn invalidate_table_row_and_all() {
    let prefix = format!("cli-{}", std::process::id());
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(&prefix)
        .degrade(false)
        .build()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let schema = format!("cli_{}", std::process::id());
    let admin = sea_orm::Database::connect(PG).await.expect("PostgreSQL on 127.0.0.1:5432");
    use sea_orm::ConnectionTrait;
    admin
        .execute_unprepared(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.post (id integer PRIMARY KEY, category_id integer NOT NULL);
             INSERT INTO {schema}.post VALUES (1, 3), (2, 4);"
        ))
        .await
        .unwrap();
    let db_url = format!("{PG}?options=-c%20search_path%3D{schema}");
    let env = [("CACHEOPS_REDIS", REDIS), ("CACHEOPS_PREFIX", prefix.as_str()), ("DATABASE_URL", db_url.as_str())];

    let c3 = cache.query(b"c3", deps("post", "category_id", 3));
    let c4 = cache.query(b"c4", deps("post", "category_id", 4));
    let cat = cache.query(b"cat", deps("category", "id", 1));
    for q in [&c3, &c4, &cat] {
        cached(&cache, q).await;
        assert!(cached(&cache, q).await);
    }
    let (ok, out) = cli(&["invalidate", "post.1"], &env);
    assert!(ok, "{out}");
    assert!(!cached(&cache, &c3).await, "post 1 is in category 3: invalidated through its row");
    assert!(cached(&cache, &c4).await, "category 4 untouched");
    let (ok, out) = cli(&["invalidate", "post"], &env);
    assert!(ok, "{out}");
    assert!(!cached(&cache, &c4).await);
    assert!(cached(&cache, &cat).await, "other table untouched");
    let (ok, out) = cli(&["invalidate", "all"], &env);
    assert!(ok, "{out}");
    assert!(!cached(&cache, &cat).await);
    let (ok, out) = cli(&["invalidate", "post.99"], &env);
    assert!(!ok && out.contains("no post row"), "{out}");
    admin.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn cleanfilecache_removes_expired_entries() {
    let dir = std::env::temp_dir().join(format!("cacheops-cli-files-{}", std::process::id()));
    let fc = cacheops::FileCache::new(&dir);
    fc.set("short", &1u32, Some(Duration::from_millis(50))).await.unwrap();
    fc.set("long", &2u32, Some(Duration::from_secs(600))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let d = dir.to_string_lossy().to_string();
    let (ok, out) = cli(&["cleanfilecache", &d], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("removed 1 expired"), "{out}");
    assert_eq!(fc.get::<u32>("long").await.unwrap(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
