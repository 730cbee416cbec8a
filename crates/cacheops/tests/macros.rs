//! `#[cached_as]` and `#[cached]` on async fns.

mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cacheops::{Cache, Dep, Error, FileCache, Value};
use support::row;

static CACHE: OnceLock<Cache> = OnceLock::new();
static FILES: OnceLock<FileCache> = OnceLock::new();
static CALLS: AtomicUsize = AtomicUsize::new(0);
static AUTO_CALLS: AtomicUsize = AtomicUsize::new(0);
static SIMPLE_CALLS: AtomicUsize = AtomicUsize::new(0);

async fn cache() -> &'static Cache {
    if CACHE.get().is_none() {
        let c = support::builder().build().await.unwrap();
        let _ = CACHE.set(c);
    }
    CACHE.get().unwrap()
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Post {
    id: i64,
    title: String,
}

struct Db;

#[derive(Debug)]
#[allow(dead_code)]
enum AppError {
    Cache(Error),
}
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Cache(e)
    }
}

/// Posts of a category: invalidated by writes to posts of that category.
#[cacheops::cached_as(
    cache = CACHE.get().unwrap(),
    deps = [Dep::sql("SELECT * FROM post WHERE category_id = $1", [Value::Int(*category)])],
    timeout = Duration::from_secs(60),
    extra = "v1",
)]
async fn posts_in(#[skip] _db: &Db, category: i64, limit: usize) -> Result<Vec<Post>, AppError> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok((0..limit as i64).map(|i| Post { id: i, title: format!("post {i} of {category}") }).collect())
}

/// A whole-table and a row dependency, and the lock.
#[cacheops::cached_as(cache = CACHE.get().unwrap(), deps = ["category", Dep::row("post", "id", *id)], lock = true)]
async fn post_page(id: i64) -> Result<String, Error> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("page {id}"))
}

/// Dependencies found automatically.
#[cacheops::cached_as(auto, cache = CACHE.get().unwrap())]
async fn auto_count(category: i64) -> Result<usize, Error> {
    AUTO_CALLS.fetch_add(1, Ordering::SeqCst);
    let cache = CACHE.get().unwrap();
    let params = [Value::Int(category)];
    let sql = "SELECT * FROM post WHERE category_id = $1";
    let analysis = cache.analyze(sql, &params)?;
    let q = cache.sql_query(sql, &params, &analysis, "main", "rows");
    let rows = cache.get_or_compute(&q, || async { Ok::<_, Error>(vec![1u8, 2, 3]) }).await?;
    Ok(rows.len())
}

/// Time-only cache on the cache's backend.
#[cacheops::cached(cache = CACHE.get().unwrap(), timeout = Duration::from_secs(60))]
async fn top(section: String) -> Result<Vec<String>, Error> {
    SIMPLE_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(vec![format!("top of {section}")])
}

/// Time-only cache in a directory.
#[cacheops::cached(cache = FILES.get().unwrap(), timeout = Duration::from_secs(60), name = "file_top")]
async fn file_top(section: String) -> Result<Vec<String>, Error> {
    SIMPLE_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(vec![format!("file top of {section}")])
}

/// Without `cache = …`: the global cache.
#[cacheops::cached_as(deps = ["post"])]
async fn global_fn() -> Result<u32, Error> {
    Ok(5)
}

// The tests share statics: run them as one test, in order.
#[tokio::test]
async fn macros() {
    let cache = cache().await;
    let _ = FILES.set(FileCache::new(std::env::temp_dir().join(format!("cacheops-macros-{:x}", support::rand_u64()))));
    let db = Db;

    // cached_as over a filtered select, with a skipped argument.
    let calls = || CALLS.load(Ordering::SeqCst);
    let start = calls();
    let a = posts_in(&db, 3, 2).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(posts_in(&db, 3, 2).await.unwrap(), a);
    assert_eq!(calls(), start + 1);
    posts_in(&db, 3, 1).await.unwrap();
    assert_eq!(calls(), start + 2, "arguments are in the key");
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 4)])).await.unwrap();
    posts_in(&db, 3, 2).await.unwrap();
    assert_eq!(calls(), start + 2, "a non-matching write keeps it");
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 3)])).await.unwrap();
    posts_in(&db, 3, 2).await.unwrap();
    assert_eq!(calls(), start + 3, "a matching write invalidates");
    // Companions.
    assert_eq!(posts_in::key(3, 2).unwrap().get::<Vec<Post>>().await.unwrap(), a);
    assert!(posts_in::invalidate(3, 2).await.unwrap());
    assert!(posts_in::key(3, 2).unwrap().get::<Vec<Post>>().await.unwrap_err().is_cache_miss());
    assert!(posts_in::key(3, 2).unwrap().set(&vec![Post { id: 9, title: "set".into() }]).await.unwrap());
    assert_eq!(posts_in(&db, 3, 2).await.unwrap()[0].title, "set");
    assert!(posts_in::key(3, 2).unwrap().delete().await.unwrap());
    assert!(posts_in::NAME.ends_with("macros::posts_in"), "{}", posts_in::NAME);

    // Whole table + one row.
    let start = calls();
    post_page(7).await.unwrap();
    post_page(7).await.unwrap();
    assert_eq!(calls(), start + 1);
    cache.invalidate_obj("post", &row(&[("id", 8), ("category_id", 1)])).await.unwrap();
    post_page(7).await.unwrap();
    assert_eq!(calls(), start + 1, "another row");
    cache.invalidate_obj("post", &row(&[("id", 7), ("category_id", 1)])).await.unwrap();
    post_page(7).await.unwrap();
    assert_eq!(calls(), start + 2, "that row");
    cache.invalidate_model("category").await.unwrap();
    assert_eq!(post_page(7).await.unwrap(), "page 7");
    assert_eq!(calls(), start + 3, "the whole table");

    // auto.
    assert_eq!(auto_count(3).await.unwrap(), 3);
    assert_eq!(auto_count(3).await.unwrap(), 3);
    assert_eq!(AUTO_CALLS.load(Ordering::SeqCst), 1);
    cache.invalidate_obj("post", &row(&[("id", 1), ("category_id", 3)])).await.unwrap();
    auto_count(3).await.unwrap();
    assert_eq!(AUTO_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(auto_count::key(3).unwrap().get::<usize>().await.unwrap(), 3);

    // cached (backend and file).
    for file in [false, true] {
        let run = |s: &str| {
            let s = s.to_owned();
            async move { if file { file_top(s).await } else { top(s).await } }
        };
        let start = SIMPLE_CALLS.load(Ordering::SeqCst);
        run("news").await.unwrap();
        run("news").await.unwrap();
        run("sport").await.unwrap();
        assert_eq!(SIMPLE_CALLS.load(Ordering::SeqCst), start + 2, "different arguments, different entries");
        let key = |s: &str| if file { file_top::key(s.to_owned()).unwrap() } else { top::key(s.to_owned()).unwrap() };
        assert_eq!(key("news").get::<Vec<String>>().await.unwrap().len(), 1);
        key("news").set(&vec!["manual".to_owned()]).await.unwrap();
        assert_eq!(run("news").await.unwrap(), ["manual"]);
        let invalidated =
            if file { file_top::invalidate("news".into()).await } else { top::invalidate("news".into()).await };
        assert!(invalidated.unwrap());
        assert!(key("news").get::<Vec<String>>().await.unwrap_err().is_cache_miss());
        assert!(key("sport").delete().await.unwrap());
        assert!(key("sport").get::<Vec<String>>().await.unwrap_err().is_cache_miss());
    }

    // The global cache.
    assert!(matches!(global_fn().await, Err(Error::NoGlobalCache)));
    assert!(cacheops::set_global_cache(cache.clone()));
    assert_eq!(global_fn().await.unwrap(), 5);
    assert_eq!(global_fn::key().unwrap().get::<u32>().await.unwrap(), 5);

    std::fs::remove_dir_all(FILES.get().unwrap().dir()).ok();
}
