//! The example over real HTTP (a server on a free port, a minimal HTTP/1.1 client), against
//! PostgreSQL and Redis, with the database as the oracle: reads are hits on the second request,
//! an edit invalidates the reads of its old and new row and leaves the others cached.

use cacheops_example_blog::{cache, connect, post, router};
use sea_orm::{ConnectionTrait, Database, EntityTrait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PG: &str = "postgres://postgres@127.0.0.1/test";
const REDIS: &str = "redis://127.0.0.1:6379/0";

struct Reply {
    status: u16,
    x_cache: String,
    body: serde_json::Value,
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    send(addr, method, path, body, "application/json").await
}

async fn send(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let x_cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or_else(|| panic!("no x-cache header in {head}"))
        .to_owned();
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned()));
    Reply { status, x_cache, body }
}

/// Drops the test's schema when the test ends (also when it fails).
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(db) = Database::connect(PG).await {
                    let _ = db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn reads_hit_and_an_edit_invalidates_exactly_its_rows() {
    let id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let schema = Schema(format!("blog_test_{id}"));
    let cache = cache(REDIS, &format!("blog-test-{id}")).await.expect("Redis on 127.0.0.1:6379");
    let db = connect(PG, &schema.0, cache).await.expect("PostgreSQL on 127.0.0.1:5432");
    let raw = db.inner().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(db).expect("router")).await });

    for path in ["/posts/1", "/posts?category=1", "/posts?category=2"] {
        let first = request(addr, "GET", path, None).await;
        assert_eq!((first.status, first.x_cache.as_str()), (200, "miss"), "{path}");
        let second = request(addr, "GET", path, None).await;
        assert_eq!((second.status, second.x_cache.as_str()), (200, "hit"), "{path}: the second read is a hit");
        assert_eq!(first.body, second.body, "{path}");
    }
    assert_eq!(request(addr, "GET", "/posts/1", None).await.body["title"], "Hello");

    // Post 1 (category 1) is edited: its get and category 1 are invalidated, category 2 is not.
    let edited = request(addr, "POST", "/posts/1", Some(r#"{"title": "Hello, edited"}"#)).await;
    assert_eq!(edited.status, 200, "{:?}", edited.body);
    let fresh = post::Entity::find_by_id(1).one(&raw).await.unwrap().expect("post 1");
    assert_eq!(fresh.title, "Hello, edited", "the edit committed");

    let one = request(addr, "GET", "/posts/1", None).await;
    assert_eq!(one.x_cache, "miss", "the edited row's get was invalidated");
    assert_eq!(one.body["title"], "Hello, edited");
    let c1 = request(addr, "GET", "/posts?category=1", None).await;
    assert_eq!(c1.x_cache, "miss", "category 1 was invalidated");
    assert_eq!(c1.body[0]["title"], "Hello, edited");
    let c2 = request(addr, "GET", "/posts?category=2", None).await;
    assert_eq!(c2.x_cache, "hit", "category 2 is untouched");

    // Moving post 2 to category 2 invalidates both categories.
    request(addr, "GET", "/posts?category=2", None).await;
    assert_eq!(request(addr, "POST", "/posts/2", Some(r#"{"category_id": 2}"#)).await.status, 200);
    let c2 = request(addr, "GET", "/posts?category=2", None).await;
    assert_eq!(c2.x_cache, "miss", "the new row's category was invalidated");
    assert_eq!(c2.body.as_array().map(Vec::len), Some(3));
    assert_eq!(request(addr, "GET", "/posts?category=1", None).await.body.as_array().map(Vec::len), Some(1));

    let stats = request(addr, "GET", "/stats", None).await;
    assert_eq!(stats.x_cache, "none");
    assert!(stats.body["hits"].as_u64().unwrap() >= 4, "{:?}", stats.body);
    assert_eq!(request(addr, "GET", "/posts/999", None).await.status, 404);
    server.abort();
}

/// The `data-rendered` request number of a home-page section.
fn rendered(home: &str, category: i32) -> String {
    let marker = format!("id=\"cat-{category}\" data-rendered=\"");
    let at = home.find(&marker).expect("the section") + marker.len();
    home[at..].split('"').next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn html_pages_are_cached_views_and_fragments_and_an_edit_reaches_exactly_its_pages() {
    let id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let schema = Schema(format!("blog_pages_{id}"));
    let cache = cache(REDIS, &format!("blog-pages-{id}")).await.expect("Redis on 127.0.0.1:6379");
    let db = connect(PG, &schema.0, cache).await.expect("PostgreSQL on 127.0.0.1:5432");
    let raw = db.inner().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(db).expect("router")).await });
    let page = |path: &'static str| async move { request(addr, "GET", path, None).await };

    for path in ["/post/1", "/post/3", "/category/1", "/category/2"] {
        assert_eq!(page(path).await.x_cache, "miss", "{path}");
        let hit = page(path).await;
        assert_eq!((hit.status, hit.x_cache.as_str()), (200, "hit"), "{path}");
    }
    let home1 = page("/").await.body.as_str().unwrap_or("").to_owned();
    let home2 = page("/").await.body.as_str().unwrap_or("").to_owned();
    assert_eq!(rendered(&home2, 1), rendered(&home1, 1), "the category fragments are cached");
    assert_ne!(home1, home2, "the rest of the home page renders fresh (its request number)");

    let saved =
        send(addr, "POST", "/post/1/edit", Some("title=Hello%2C+edited"), "application/x-www-form-urlencoded").await;
    assert_eq!(saved.status, 303, "{:?}", saved.body);
    assert_eq!(post::Entity::find_by_id(1).one(&raw).await.unwrap().unwrap().title, "Hello, edited");

    let p1 = page("/post/1").await;
    assert_eq!(p1.x_cache, "miss", "the edited post's page");
    assert!(p1.body.as_str().unwrap_or("").contains("Hello, edited"));
    assert_eq!(page("/post/3").await.x_cache, "hit", "another post's page stays cached");
    assert_eq!(page("/category/1").await.x_cache, "miss", "its category's page");
    assert_eq!(page("/category/2").await.x_cache, "hit", "another category's page stays cached");
    let home3 = page("/").await.body.as_str().unwrap_or("").to_owned();
    assert!(home3.contains("Hello, edited"));
    assert_ne!(rendered(&home3, 1), rendered(&home2, 1), "category 1's fragment re-rendered");
    assert_eq!(rendered(&home3, 2), rendered(&home2, 2), "category 2's fragment is still the cached one");
    server.abort();
}
