//! `cargo run`: serves the blog on `BIND` (default `127.0.0.1:3000`), with PostgreSQL at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1/test`; tables in the schema
//! `cacheops_example`, or `APP_SCHEMA`) and Redis at `CACHEOPS_REDIS` (default `redis://127.0.0.1:6379/0`).

use cacheops_example_blog::{BoxError, cache, connect, router};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database_url = env_or("DATABASE_URL", "postgres://postgres@127.0.0.1/test");
    let redis_url = env_or("CACHEOPS_REDIS", "redis://127.0.0.1:6379/0");
    let bind = env_or("BIND", "127.0.0.1:3000");
    let schema = env_or("APP_SCHEMA", "cacheops_example");
    // One prefix per database schema: entries never outlive the data of another schema.
    let cache = cache(&redis_url, &format!("blog-{schema}")).await?;
    let db = connect(&database_url, &schema, cache).await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("blog on http://{}  (try /posts?category=1, /posts/1, /stats)", listener.local_addr()?);
    axum::serve(listener, router(db)?).await?;
    Ok(())
}
