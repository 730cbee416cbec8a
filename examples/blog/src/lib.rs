//! A small blog on axum + SeaORM (PostgreSQL), its reads cached by cacheops on Redis and
//! invalidated by its writes.
//!
//! Routes:
//!
//! * `GET /posts?category=N` — the posts of a category (cached automatically: profile `post`, op `fetch`)
//! * `GET /posts/{id}` — one post (op `get`)
//! * `POST /posts/{id}` with `{"title": "…"}` — edits a post: invalidates exactly the cached
//!   reads that depend on its old or new row
//! * `GET /stats` — the cache's counters
//! * `GET /post/{id}`, `GET /category/{c}` — HTML pages cached whole by `cacheops-axum`
//!   (`cached_view_as_auto`: invalidated by writes to what their handler read), with a sidebar
//!   fragment cached by `cacheops-minijinja`; `GET|POST /post/{id}/edit` — the edit form
//!
//! Every response says how its reads were served in `x-cache`: `hit` (all from the cache),
//! `miss` (at least one went to the database and was stored), `bypass` (went to the database,
//! not stored) or `none` (no cached read).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cacheops::{Cache, Profile, Profiles, ReadOutcome};
use cacheops_sea_orm::CachedConnection;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, Database, IntoActiveModel, QueryOrder};
use serde::Deserialize;

/// The posts table.
pub mod post {
    use sea_orm::entity::prelude::*;

    /// A post.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key)]
        pub id: i32,
        /// Its title.
        pub title: String,
        /// Its category.
        pub category_id: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Errors of the example (setup and requests).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod pages;

/// The application's state.
#[derive(Clone)]
pub struct AppState {
    db: CachedConnection,
    cache: Cache,
    templates: Arc<minijinja::Environment<'static>>,
}

tokio::task_local! {
    /// The outcomes of the cached reads of the current request.
    static READS: Arc<Mutex<Vec<ReadOutcome>>>;
}

/// The cache of the example: Redis at `redis_url`, posts cached automatically for 5 minutes, and
/// every read recorded for the request's `x-cache` header.
pub async fn cache(redis_url: &str, prefix: &str) -> Result<Cache, cacheops::Error> {
    let profiles = Profiles::builder()
        .profile("post", Profile::builder().ops(["get", "fetch"]).timeout(Duration::from_secs(300)))
        .build()?;
    Cache::builder()
        .redis_url(redis_url)
        .prefix(prefix)
        .profiles(profiles)
        .on_read(|event| {
            let _ = READS.try_with(|reads| {
                if let Ok(mut r) = reads.lock() {
                    r.push(event.outcome);
                }
            });
        })
        .build()
        .await
}

/// Connects to PostgreSQL with the example's tables in `schema` (created, and seeded when empty;
/// nothing outside the schema is touched), and wraps the connection.
pub async fn connect(database_url: &str, schema: &str, cache: Cache) -> Result<CachedConnection, BoxError> {
    if !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') || schema.is_empty() {
        return Err(format!("schema name {schema:?}: use lowercase letters, digits and _").into());
    }
    let admin = Database::connect(database_url).await?;
    admin.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
    admin.close().await?;
    let sep = if database_url.contains('?') { '&' } else { '?' };
    let raw = Database::connect(format!("{database_url}{sep}options=-c%20search_path%3D{schema}")).await?;
    raw.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS post (id serial PRIMARY KEY, title varchar(200) NOT NULL, category_id integer NOT NULL)",
    )
    .await?;
    let db = CachedConnection::new(raw, cache);
    if post::Entity::find().count(&db).await? == 0 {
        for (title, category_id) in [("Hello", 1), ("Caching", 1), ("Rust", 2), ("SQL", 2)] {
            post::ActiveModel { title: Set(title.into()), category_id: Set(category_id), ..Default::default() }
                .insert(&db)
                .await?;
        }
    }
    db.load_catalog().await?;
    Ok(db)
}

/// The routes.
pub fn router(db: CachedConnection) -> Result<Router, BoxError> {
    let cache = db.cache().clone();
    let templates = pages::templates(&cacheops_minijinja::Fragments::new(&cache))?;
    let page = |name: &str| cacheops_axum::cached_view_as_auto(&cache, name).timeout(Duration::from_secs(300));
    Ok(Router::new()
        .route("/posts", get(list))
        .route("/posts/{id}", get(show).post(edit))
        .route("/", get(pages::home))
        .route("/post/{id}", get(pages::post_page).layer(page("post_page")))
        .route("/category/{c}", get(pages::category_page).layer(page("category_page")))
        .route("/post/{id}/edit", get(pages::edit_form).post(pages::edit_submit))
        .route("/stats", get(stats))
        .layer(middleware::from_fn(x_cache))
        .with_state(AppState { db, cache, templates }))
}

/// Runs the request with its reads recorded and says how they were served in `x-cache`.
async fn x_cache(req: Request, next: Next) -> Response {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let mut res = READS.scope(reads.clone(), next.run(req)).await;
    let reads = reads.lock().map(|r| r.clone()).unwrap_or_default();
    let verdict = if reads.is_empty() {
        "none"
    } else if reads.contains(&ReadOutcome::Bypass) {
        "bypass"
    } else if reads.contains(&ReadOutcome::Miss) {
        "miss"
    } else {
        "hit"
    };
    // A cached view has said how it was served: keep its verdict.
    if !res.headers().contains_key("x-cache") {
        res.headers_mut().insert("x-cache", HeaderValue::from_static(verdict));
    }
    res
}

/// A request that failed: the database's or the cache's error, as a 500 with its text.
struct AppError(BoxError);

impl<E: Into<BoxError>> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0.to_string()).into_response()
    }
}

#[derive(Deserialize)]
struct ListQuery {
    category: i32,
}

async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Vec<post::Model>>, AppError> {
    let posts = post::Entity::find()
        .filter(post::Column::CategoryId.eq(q.category))
        .order_by_asc(post::Column::Id)
        .all(&s.db)
        .await?;
    Ok(Json(posts))
}

async fn show(State(s): State<AppState>, Path(id): Path<i32>) -> Result<Response, AppError> {
    Ok(match post::Entity::find_by_id(id).one(&s.db).await? {
        Some(p) => Json(p).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

#[derive(Deserialize)]
struct Edit {
    title: Option<String>,
    category_id: Option<i32>,
}

async fn edit(State(s): State<AppState>, Path(id): Path<i32>, Json(e): Json<Edit>) -> Result<Response, AppError> {
    // Read without the cache: the row is about to change.
    let Some(found) = cacheops_sea_orm::nocache(post::Entity::find_by_id(id).one(&s.db)).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut p = found.into_active_model();
    if let Some(title) = e.title {
        p.title = Set(title);
    }
    if let Some(c) = e.category_id {
        p.category_id = Set(c);
    }
    Ok(Json(p.update(&s.db).await?).into_response())
}

async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let st = s.cache.stats();
    Json(serde_json::json!({
        "hits": st.hits, "misses": st.misses, "bypasses": st.bypasses, "stores": st.stores,
        "refused_stores": st.refused_stores, "errors": st.errors,
    }))
}
