//! Per-query caching controls on SeaORM selects, and typed caching that needs no row conversion.

use std::future::Future;

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryTrait, Select, Statement};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection::CachedConnection;
use crate::engine::{self, Class, err};
use crate::scope::{self, CacheOptions, Override, cached, nocache};

/// `.cache()` / `.nocache()` on SeaORM selects, like the original's queryset methods.
///
/// ```no_run
/// # mod post { use sea_orm::entity::prelude::*;
/// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)] #[sea_orm(table_name = "post")]
/// #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub category_id: i32 }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// #   impl ActiveModelBehavior for ActiveModel {} }
/// # async fn f(db: &cacheops_sea_orm::CachedConnection) -> Result<(), sea_orm::DbErr> {
/// use std::time::Duration;
/// use sea_orm::{EntityTrait, QueryFilter, ColumnTrait};
/// use cacheops_sea_orm::{CacheOptions, SelectCacheExt};
/// // Cached whatever the profile's ops say, for a minute:
/// let posts = post::Entity::find().filter(post::Column::CategoryId.eq(3))
///     .cache_with(CacheOptions::timeout(Duration::from_secs(60))).all(db).await?;
/// // Never from the cache:
/// let fresh = post::Entity::find_by_id(1).nocache().one(db).await?;
/// # Ok(()) }
/// ```
pub trait SelectCacheExt: Sized {
    /// Caches this query's reads (profile timeout and lock).
    fn cache(self) -> WithCache<Self> {
        self.cache_with(CacheOptions::default())
    }
    /// Caches this query's reads with explicit options.
    fn cache_with(self, options: CacheOptions) -> WithCache<Self> {
        WithCache { select: self, options }
    }
    /// Never serves this query from the cache.
    fn nocache(self) -> WithoutCache<Self> {
        WithoutCache { select: self }
    }
}

impl<E: EntityTrait> SelectCacheExt for Select<E> {}

/// A select whose reads are cached (see [`SelectCacheExt::cache`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct WithCache<S> {
    select: S,
    options: CacheOptions,
}

/// A select whose reads bypass the cache (see [`SelectCacheExt::nocache`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct WithoutCache<S> {
    select: S,
}

impl<E: EntityTrait> WithCache<Select<E>>
where
    E::Model: Send + Sync,
{
    /// All rows.
    pub async fn all<C: ConnectionTrait>(self, db: &C) -> Result<Vec<E::Model>, DbErr> {
        cached(self.options, self.select.all(db)).await
    }
    /// The first row.
    pub async fn one<C: ConnectionTrait>(self, db: &C) -> Result<Option<E::Model>, DbErr> {
        cached(self.options, self.select.one(db)).await
    }
    /// The number of rows.
    pub async fn count<C: ConnectionTrait>(self, db: &C) -> Result<u64, DbErr> {
        cached(self.options, self.select.count(db)).await
    }
}

impl<E: EntityTrait> WithoutCache<Select<E>>
where
    E::Model: Send + Sync,
{
    /// All rows.
    pub async fn all<C: ConnectionTrait>(self, db: &C) -> Result<Vec<E::Model>, DbErr> {
        nocache(self.select.all(db)).await
    }
    /// The first row.
    pub async fn one<C: ConnectionTrait>(self, db: &C) -> Result<Option<E::Model>, DbErr> {
        nocache(self.select.one(db)).await
    }
    /// The number of rows.
    pub async fn count<C: ConnectionTrait>(self, db: &C) -> Result<u64, DbErr> {
        nocache(self.select.count(db)).await
    }
}

enum TypedErr {
    Db(DbErr),
    Cache(cacheops::Error),
}

impl From<cacheops::Error> for TypedErr {
    fn from(e: cacheops::Error) -> Self {
        TypedErr::Cache(e)
    }
}

impl CachedConnection {
    /// Typed caching: caches the *models* (serialised with serde) instead of rows, so it works on
    /// every backend and with column types the row conversion does not know. The query is cached
    /// whatever the profiles' ops say (a disabled profile and [`crate::nocache`] still win) and
    /// invalidated like any other.
    ///
    /// ```no_run
    /// # mod post { use sea_orm::entity::prelude::*;
    /// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    /// #   #[sea_orm(table_name = "post")]
    /// #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub category_id: i32 }
    /// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
    /// #   impl ActiveModelBehavior for ActiveModel {} }
    /// # async fn f(db: &cacheops_sea_orm::CachedConnection) -> Result<(), sea_orm::DbErr> {
    /// use sea_orm::{EntityTrait, QueryFilter, ColumnTrait};
    /// let posts: Vec<post::Model> = db.typed_all(post::Entity::find().filter(post::Column::CategoryId.eq(3))).await?;
    /// let n = db.typed_count(post::Entity::find()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn typed_all<E>(&self, select: Select<E>) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let stmt = select.build(self.get_database_backend());
        let inner = self.inner().clone();
        self.typed(stmt, "all", &type_key::<E::Model>(), || async move { select.all(&inner).await }).await
    }

    /// Typed caching of the first row (see [`CachedConnection::typed_all`]).
    pub async fn typed_one<E>(&self, select: Select<E>) -> Result<Option<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let stmt = select.build(self.get_database_backend());
        let inner = self.inner().clone();
        self.typed(stmt, "one", &type_key::<E::Model>(), || async move { select.one(&inner).await }).await
    }

    /// Typed caching of a count (see [`CachedConnection::typed_all`]).
    pub async fn typed_count<E>(&self, select: Select<E>) -> Result<u64, DbErr>
    where
        E: EntityTrait,
        E::Model: Send + Sync,
    {
        let stmt = select.build(self.get_database_backend());
        let inner = self.inner().clone();
        self.typed(stmt, "count", "u64", || async move { select.count(&inner).await }).await
    }

    async fn typed<T, F, Fut>(&self, stmt: Statement, shape: &str, type_name: &str, compute: F) -> Result<T, DbErr>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let shared = self.shared();
        let params = crate::convert::params(&stmt);
        shared.ensure_catalog(self.inner()).await;
        let Class::Read(plan) = engine::classify(shared, &stmt.sql, &params) else {
            return compute().await;
        };
        let analysis = &plan.analysis;
        let profiles = shared.cache.profiles();
        let disabled = analysis.reads.tables().any(|t| profiles.is_configured(t) && !profiles.for_table(t).enabled);
        if disabled || analysis.locking || analysis.volatile || matches!(scope::current(), Some(Override::Off)) {
            return compute().await;
        }
        let tables: Vec<&str> = analysis.reads.tables().collect();
        let Some(cache) = shared.cache_for(&tables)? else { return compute().await };
        let query = cache.sql_query(&stmt.sql, &params, analysis, &shared.db, &format!("typed:{shape}:{type_name}"));
        let lock = analysis.reads.tables().any(|t| profiles.for_table(t).lock);
        let opts = cacheops::LockOpts::new(lock, std::time::Duration::from_secs(5));
        let bytes = cache
            .get_or_compute_with(&query, opts, || async {
                let v = compute().await.map_err(TypedErr::Db)?;
                serde_json::to_vec(&v).map_err(|e| TypedErr::Db(DbErr::Custom(format!("cacheops: cannot serialise: {e}"))))
            })
            .await;
        match bytes {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| DbErr::Custom(format!("cacheops: cannot deserialise cached value: {e}"))),
            Err(TypedErr::Db(e)) => Err(e),
            Err(TypedErr::Cache(e)) => Err(err(e)),
        }
    }
}

/// The identity of a model type in cache keys: its `TypeId` (unique per type, stable for one
/// build), with its name for readability. `type_name` alone is neither unique (two types may
/// share a name) nor stable across compiler versions.
fn type_key<T: 'static>() -> String {
    format!("{}#{:?}", std::any::type_name::<T>(), std::any::TypeId::of::<T>())
}

#[cfg(test)]
mod tests {
    mod a {
        pub struct Model;
    }
    mod b {
        pub struct Model;
    }

    #[test]
    fn types_that_share_a_name_have_their_own_keys() {
        assert_ne!(super::type_key::<a::Model>(), super::type_key::<b::Model>());
        assert_eq!(super::type_key::<a::Model>(), super::type_key::<a::Model>());
    }
}
