//! # cacheops-sea-orm
//!
//! SeaORM 2 integration for [cacheops](cacheops): wrap a `DatabaseConnection` in a
//! [`CachedConnection`] and use it wherever SeaORM wants a connection.
//!
//! * **Reads** are analysed (SQL + binds → tables and `column = value` conditions) and served from
//!   the cache when every table's profile enables the op (`get` for `one()`, `fetch` for `all()`,
//!   `count`, `aggregate`, `exists`), or inside [`cached`]; [`nocache`] turns caching off. Cached
//!   rows read back exactly like live ones, by name and by position; a row that cannot be
//!   represented faithfully (unknown column types, duplicate column names) is simply not cached.
//! * **Writes** (single and bulk, `update_many`/`delete_many`, raw SQL, `… RETURNING`) invalidate
//!   the cached reads their old rows (a pre-image `SELECT … FOR UPDATE`) and new rows match,
//!   under a write lease, so no reader ever sees a value older than the last commit.
//! * **Transactions** follow cacheops' rules ([`CachedTransaction`]).
//!
//! Statements that cannot be analysed are not cached; if they might change data, the whole cache
//! namespace is invalidated after them.

mod cascade;
mod catalog;
mod connection;
mod convert;
mod engine;
mod live;
mod row_codec;
mod scope;
mod transaction;
mod typed;

pub use connection::CachedConnection;
pub use convert::CachedRow;
pub use engine::{PrefixQuery, cache_error};
pub use scope::{CacheOptions, cached, nocache};
pub use transaction::CachedTransaction;
pub use typed::{CacheTarget, SelectCacheExt, WithCache, WithoutCache};
