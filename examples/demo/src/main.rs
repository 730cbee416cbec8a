//! The cacheops demo: a small blog "database" in memory, its reads cached through cacheops, and a
//! write invalidating exactly the affected queries.
//!
//! Runs on embedded defaults (in-process cache). With `CACHEOPS_REDIS=redis://127.0.0.1:6379/0`
//! it uses Redis instead. (The SeaORM + SQLite/PostgreSQL version of this demo comes with the
//! SeaORM integration.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use cacheops::{Cache, Lookup, Profile, Profiles, Row, TableChange, Value};

#[derive(Clone, Debug)]
struct Post {
    id: i64,
    category_id: i64,
    title: String,
}

/// The "database": a table of posts and a query counter.
struct Db {
    posts: Mutex<BTreeMap<i64, Post>>,
    queries: AtomicUsize,
}

impl Db {
    fn select(&self, category: Option<i64>) -> Vec<Post> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let posts = self.posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        posts.values().filter(|p| category.is_none_or(|c| p.category_id == c)).cloned().collect()
    }
}

fn encode(posts: &[Post]) -> Vec<u8> {
    posts.iter().map(|p| format!("{}|{}|{}\n", p.id, p.category_id, p.title)).collect::<String>().into_bytes()
}

fn decode(bytes: &[u8]) -> Vec<Post> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '|');
            Some(Post {
                id: parts.next()?.parse().ok()?,
                category_id: parts.next()?.parse().ok()?,
                title: parts.next()?.to_owned(),
            })
        })
        .collect()
}

async fn cached_select(cache: &Cache, db: &Db, sql: &str, params: &[Value], category: Option<i64>) -> Result<(Vec<Post>, &'static str), cacheops::Error> {
    let analysis = cache.analyze(sql, params)?;
    let query = cache.sql_query(sql, params, &analysis, "main", "posts");
    Ok(match cache.lookup(&query).await? {
        Lookup::Hit(bytes) => (decode(&bytes), "hit "),
        Lookup::Miss(ticket) => {
            let rows = db.select(category);
            cache.store(ticket, &encode(&rows)).await?;
            (rows, "miss")
        }
        Lookup::Bypass(_) => (db.select(category), "bypass"),
    })
}

fn post_row(p: &Post) -> Row {
    [
        ("id".to_owned(), Value::Int(p.id)),
        ("category_id".to_owned(), Value::Int(p.category_id)),
        ("title".to_owned(), Value::Text(p.title.clone())),
    ]
    .into()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cacheops::Error> {
    let profiles = Profiles::builder().profile("post", Profile::builder().ops(["all"])).build()?;
    let cache = Cache::builder().prefix("demo").from_env().profiles(profiles).build().await?;
    // The demo creates its database afresh on every run: drop what earlier runs cached (O(1),
    // and only under this prefix).
    cache.invalidate_all().await?;
    let backend = if std::env::var("CACHEOPS_REDIS").is_ok_and(|v| !v.is_empty()) { "redis" } else { "in-process" };
    println!("cacheops demo — backend: {backend}");

    let db = Db { posts: Mutex::new(BTreeMap::new()), queries: AtomicUsize::new(0) };
    {
        let mut posts = db.posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in 1..=6 {
            posts.insert(id, Post { id, category_id: 3 + id % 2, title: format!("post {id}") });
        }
    }

    let by_category = "SELECT id, category_id, title FROM post WHERE category_id = $1";
    let all = "SELECT id, category_id, title FROM post";
    for sql in [by_category, all] {
        match cache.analyze(sql, &[Value::Int(3)]) {
            Ok(a) => {
                let deps: Vec<String> = a
                    .reads
                    .iter()
                    .map(|(t, d)| {
                        let conjs: Vec<String> = d.conjs().iter().map(|c| format!("{{{}}}", c.rendered())).collect();
                        format!("{t}: [{}]", conjs.join(", "))
                    })
                    .collect();
                println!("  {sql}\n    depends on {}", deps.join("; "));
            }
            Err(e) => println!("  {sql}\n    not analysed: {e}"),
        }
    }

    println!("\nreads:");
    for (label, sql, params, cat) in [
        ("category 3", by_category, vec![Value::Int(3)], Some(3)),
        ("category 4", by_category, vec![Value::Int(4)], Some(4)),
        ("all posts ", all, vec![], None),
        ("category 3", by_category, vec![Value::Int(3)], Some(3)),
        ("category 4", by_category, vec![Value::Int(4)], Some(4)),
        ("all posts ", all, vec![], None),
    ] {
        let (rows, how) = cached_select(&cache, &db, sql, &params, cat).await?;
        println!("  {label}  {how}  {} rows", rows.len());
    }

    println!("\nwrite: UPDATE post SET title = 'edited' WHERE id = 2   (post 2 is in category 3)");
    let old = db.posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&2).cloned();
    if let Some(old) = old {
        let new = Post { title: "edited".into(), ..old.clone() };
        let mut lease = cache.write_lease();
        lease.mark(TableChange::rows("post", [post_row(&old), post_row(&new)])).await?;
        db.posts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(2, new);
        lease.before_commit().await?;
        lease.finish().await?;
    }
    for (label, sql, params, cat) in [
        ("category 3", by_category, vec![Value::Int(3)], Some(3)),
        ("category 4", by_category, vec![Value::Int(4)], Some(4)),
        ("all posts ", all, vec![], None),
    ] {
        let (rows, how) = cached_select(&cache, &db, sql, &params, cat).await?;
        let titles: Vec<&str> = rows.iter().map(|p| p.title.as_str()).collect();
        println!("  {label}  {how}  {}", titles.join(", "));
    }

    let s = cache.stats();
    println!(
        "\nsummary: hits={} misses={} bypasses={} stores={} database queries={}",
        s.hits,
        s.misses,
        s.bypasses,
        s.stores,
        db.queries.load(Ordering::Relaxed)
    );
    Ok(())
}
