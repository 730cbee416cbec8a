//! # cacheops-axum
//!
//! View caching for axum and tower: a response is cached and invalidated by writes to the data
//! it was built from (`cached_view_as`), by the reads its handler made (`cached_view_as_auto`),
//! or for a time (`cached_view`), like django-cacheops' `cached_view_as` / `cached_view`.
//!
//! A [`CachedView`] is a tower [`Layer`](tower_layer::Layer): put it on one route
//! (`get(handler).layer(view)`) or on a router (`.route_layer(view)`). Its
//! [`invalidate(uri)`](CachedView::invalidate) drops every cached response of a path, in every
//! process; [`key(uri)`](CachedView::key) gets, sets or deletes one entry. The HTTP rules (what
//! is stored, the key, `Vary`, `ETag`/304, credentials, the body cap) are on [`CachedView`].
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use cacheops::{Cache, Dep};
//! use cacheops_axum::{cached_view, cached_view_as};
//!
//! async fn posts() -> &'static str { "the posts" }
//! async fn about() -> &'static str { "about us" }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let cache = Cache::builder().build().await?;
//!     let posts_view = cached_view_as(&cache, "posts", Dep::table("post")).vary_on([http::header::ACCEPT_LANGUAGE]);
//!     let app: Router = Router::new()
//!         .route("/posts", get(posts).layer(posts_view.clone()))
//!         .route("/about", get(about).layer(cached_view(&cache, "about", Duration::from_secs(600))));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     posts_view.invalidate("/posts").await?; // by hand: a write to `post` does it by itself
//!     Ok(())
//! }
//! ```
//!
//! A hit costs one cache lookup (the same read-check as any cached query: one Redis round
//! trip), plus copying the stored body into the response.

mod response;
mod service;
mod view;

pub use service::CachedViewService;
pub use view::{
    CachedView, DEFAULT_MAX_BODY, KeyFn, VIEW_TABLE, ViewKey, cached_view, cached_view_as, cached_view_as_auto,
};
