//! Tags: named invalidation handles for cached entries that are not about database rows
//! (a view's path, a template fragment's name), built on the row machinery.
//!
//! A [`Tags`] space is a pseudo-table with one exact-text column, `key`. An entry that depends on
//! [`Tags::dep`]`(key)` is dropped, in every process, by [`Tags::invalidate`]`(key)`: one row
//! invalidation (O(1)), and one more stamp in the same read-check (no extra round trip).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cacheops::{Cache, Tags};
//! let cache = Cache::builder().build().await.unwrap();
//! let pages = Tags::new(&cache, "_cacheops_page");
//! let f = cache.cached_as("page", pages.dep("/about"));
//! let v: String = f.get_or_compute(&(), || async { Ok::<_, cacheops::Error>("about".to_owned()) }).await.unwrap();
//! assert!(f.key(&()).get::<String>().await.is_ok());
//! pages.invalidate("/about").await.unwrap();
//! assert!(f.key(&()).get::<String>().await.unwrap_err().is_cache_miss());
//! # let _ = v; });
//! ```

use std::sync::Arc;

use cacheops_core::{ColumnClass, TableSchema, TextFold, Value};

use crate::cache::Cache;
use crate::error::Error;
use crate::function::{Dep, Deps};

const KEY: &str = "key";

/// A space of tags on one cache (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Tags {
    cache: Cache,
    table: Arc<str>,
}

impl Tags {
    /// The tag space `table` (a name no real table has, e.g. `_cacheops_view`): declares its
    /// `key` column as exact text, so that a tag narrows to its own entries.
    pub fn new(cache: &Cache, table: &str) -> Self {
        let probe = Value::Text(String::new());
        if cache.catalog().snapshot().canonical(table, KEY, &probe, None).is_none() {
            cache.catalog().install([
                TableSchema::new(table).column(KEY, ColumnClass::Text { fold: TextFold::Exact, max_chars: None })
            ]);
        }
        Tags { cache: cache.clone(), table: Arc::from(table) }
    }

    /// The dependency on tag `key`.
    pub fn dep(&self, key: &str) -> Dep {
        Dep::row(self.table.to_string(), KEY, Value::Text(key.to_owned()))
    }

    /// Inside a [`crate::deps_scope`] (an `auto` function being computed): records tag `key` as a
    /// dependency, with its current stamp. Outside one, does nothing.
    pub async fn record(&self, key: &str) {
        if !crate::deps_scope::active() {
            return;
        }
        if let Ok(deps) = Deps::from(self.dep(key)).resolve(&self.cache) {
            crate::deps_scope::record(&self.cache, &deps).await;
        }
    }

    /// Drops every entry that depends on tag `key`, in every process.
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        let row = [(KEY.to_owned(), Value::Text(key.to_owned()))].into();
        self.cache.invalidate_obj(&self.table, &row).await
    }
}
