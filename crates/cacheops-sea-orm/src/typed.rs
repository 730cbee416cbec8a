//! Per-query caching controls on SeaORM selects, and typed caching: models cached as their
//! columns' values, which needs no row conversion (and so no SeaORM patch).

use std::future::Future;

use std::pin::Pin;

use sea_orm::sea_query::Value as SeaValue;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Iterable, ModelTrait, PaginatorTrait, QuerySelect,
    QueryTrait, Select, Statement, TryIntoModel,
};

use crate::connection::CachedConnection;
use crate::convert::CachedRow;
use crate::engine::{self, Class, Shared, err};
use crate::scope::{self, CacheOptions, Override, nocache};

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

impl<E> WithCache<Select<E>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    /// All rows, as models (cached as the models' column values: works with stock SeaORM).
    pub async fn all<C: CacheTarget>(self, db: &C) -> Result<Vec<E::Model>, DbErr> {
        let stmt = self.select.clone().build(db.get_database_backend());
        let compute = || async {
            nocache(self.select.clone().all(db)).await.map(|models| models.iter().map(model_values::<E>).collect())
        };
        let rows = typed(db, stmt, "all", &type_key::<E::Model>(), self.options, compute).await?;
        rows.into_iter().map(model_from_values::<E>).collect()
    }
    /// The first row (see [`WithCache::all`]).
    pub async fn one<C: CacheTarget>(self, db: &C) -> Result<Option<E::Model>, DbErr> {
        let stmt = self.select.clone().limit(1).build(db.get_database_backend());
        let compute = || async {
            nocache(self.select.clone().one(db)).await.map(|model| model.iter().map(model_values::<E>).collect())
        };
        let rows = typed(db, stmt, "one", &type_key::<E::Model>(), self.options, compute).await?;
        rows.into_iter().next().map(model_from_values::<E>).transpose()
    }
    /// The number of rows (see [`WithCache::all`]).
    pub async fn count<C: CacheTarget>(self, db: &C) -> Result<u64, DbErr> {
        let stmt = self.select.clone().build(db.get_database_backend());
        let compute = || async {
            nocache(self.select.clone().count(db)).await.map(|n| vec![vec![SeaValue::BigUnsigned(Some(n))]])
        };
        let rows = typed(db, stmt, "count", "u64", self.options, compute).await?;
        match rows.first().and_then(|r| r.first()) {
            Some(SeaValue::BigUnsigned(Some(n))) => Ok(*n),
            _ => Err(DbErr::Custom("cacheops: a cached count that is not a count".into())),
        }
    }
}

impl<E: EntityTrait> WithoutCache<Select<E>>
where
    E::Model: Send + Sync,
{
    /// All rows.
    pub async fn all<C: ConnectionTrait>(self, db: &C) -> Result<Vec<E::Model>, DbErr> {
        nocache(self.select.clone().all(db)).await
    }
    /// The first row.
    pub async fn one<C: ConnectionTrait>(self, db: &C) -> Result<Option<E::Model>, DbErr> {
        nocache(self.select.clone().one(db)).await
    }
    /// The number of rows.
    pub async fn count<C: ConnectionTrait>(self, db: &C) -> Result<u64, DbErr> {
        nocache(self.select.clone().count(db)).await
    }
}

/// A connection that typed reads ([`SelectCacheExt::cache`], `typed_*`) are cached through:
/// [`CachedConnection`] and [`crate::CachedTransaction`]. Sealed.
pub trait CacheTarget: ConnectionTrait + Sync + private::Sealed {
    /// The engine (its catalog loaded), and whether reads may use the cache now (inside a
    /// transaction: not after it wrote, not at a snapshot isolation level).
    #[doc(hidden)]
    fn typed_target(&self) -> Pin<Box<dyn Future<Output = TypedTarget<'_>> + Send + '_>>;
}

/// What [`CacheTarget::typed_target`] hands out (not a public API).
#[doc(hidden)]
pub struct TypedTarget<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) allowed: bool,
}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::CachedConnection {}
    impl Sealed for crate::CachedTransaction {}
}

impl CacheTarget for CachedConnection {
    fn typed_target(&self) -> Pin<Box<dyn Future<Output = TypedTarget<'_>> + Send + '_>> {
        Box::pin(async move {
            self.shared().ensure_catalog(self.inner()).await;
            TypedTarget { shared: self.shared(), allowed: true }
        })
    }
}

/// A model as its column values, in `Column::iter()` order.
fn model_values<E: EntityTrait>(model: &E::Model) -> Vec<SeaValue> {
    E::Column::iter().map(|c| model.get(c)).collect()
}

/// The model back from [`model_values`], through the active model (which checks each value's type).
fn model_from_values<E>(values: Vec<SeaValue>) -> Result<E::Model, DbErr>
where
    E: EntityTrait,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    let mut active = <E::ActiveModel as ActiveModelTrait>::default();
    let mut columns = E::Column::iter();
    for value in values {
        let column =
            columns.next().ok_or_else(|| DbErr::Custom("cacheops: a cached model with too many values".into()))?;
        active.try_set(column, value)?;
    }
    if columns.next().is_some() {
        return Err(DbErr::Custom("cacheops: a cached model with too few values".into()));
    }
    active.try_into_model()
}

enum TypedErr {
    Db(DbErr),
    Cache(cacheops::Error),
    /// The values are fine but have no faithful encoding: hand them over, store nothing.
    Uncacheable(Vec<Vec<SeaValue>>),
}

impl From<cacheops::Error> for TypedErr {
    fn from(e: cacheops::Error) -> Self {
        TypedErr::Cache(e)
    }
}

impl CachedConnection {
    /// Typed caching: `select.cache().all(db)` spelled on the connection (see [`WithCache::all`]).
    ///
    /// ```no_run
    /// # mod post { use sea_orm::entity::prelude::*;
    /// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
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
        E::Model: Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        select.cache().all(self).await
    }

    /// Typed caching of the first row (see [`CachedConnection::typed_all`]).
    pub async fn typed_one<E>(&self, select: Select<E>) -> Result<Option<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        select.cache().one(self).await
    }

    /// Typed caching of a count (see [`CachedConnection::typed_all`]).
    pub async fn typed_count<E>(&self, select: Select<E>) -> Result<u64, DbErr>
    where
        E: EntityTrait,
        E::Model: Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        select.cache().count(self).await
    }
}

/// Typed caching: caches the *values* a read produced (models as their columns' values, a count)
/// instead of rows, so it needs no row conversion and works with stock SeaORM. The query is cached
/// whatever the profiles' ops say (a disabled profile and [`crate::nocache`] still win) and
/// invalidated like any other.
async fn typed<C, F, Fut>(
    db: &C,
    stmt: Statement,
    shape: &str,
    type_name: &str,
    options: CacheOptions,
    compute: F,
) -> Result<Vec<Vec<SeaValue>>, DbErr>
where
    C: CacheTarget,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<Vec<SeaValue>>, DbErr>>,
{
    let target = db.typed_target().await;
    let shared = target.shared;
    let params = crate::convert::params(&stmt);
    let Class::Read(plan) = engine::classify(shared, &stmt.sql, &params) else {
        return compute().await;
    };
    let analysis = &plan.analysis;
    let profiles = shared.cache.profiles();
    let disabled = analysis.reads.tables().any(|t| profiles.is_configured(t) && !profiles.for_table(t).enabled);
    let off = matches!(scope::current(), Some(Override::Off));
    if !target.allowed || disabled || off || analysis.locking || analysis.volatile || !shared.catalog.namespace_known()
    {
        return compute().await;
    }
    let tables: Vec<&str> = analysis.reads.tables().collect();
    let Some(cache) = shared.cache_for(&tables)? else { return compute().await };
    let namespace = shared.catalog.namespace().unwrap_or_default();
    let mut query = cache.sql_query(
        &stmt.sql,
        &params,
        analysis,
        &shared.db,
        &format!("model:{shape}:{type_name}\u{0}{namespace}"),
    );
    if let Some(t) = options.timeout {
        query = query.with_timeout(t);
    }
    let lock = options.lock.unwrap_or_else(|| analysis.reads.tables().any(|t| profiles.for_table(t).lock));
    let opts = cacheops::LockOpts::new(lock, cache.lock_wait());
    let bytes = cache
        .get_or_compute_with(&query, opts, || async {
            let rows = compute().await.map_err(TypedErr::Db)?;
            encode_values(&rows).map_err(|_| TypedErr::Uncacheable(rows))
        })
        .await;
    match bytes {
        Ok(b) => match decode_values(&b) {
            Some(rows) => Ok(rows),
            // Written by another version: read it live (the next write or expiry replaces it).
            None => compute().await,
        },
        Err(TypedErr::Uncacheable(rows)) => Ok(rows),
        Err(TypedErr::Db(e)) => Err(e),
        Err(TypedErr::Cache(e)) => Err(err(e)),
    }
}

/// Values in the row format (one anonymous column per value, so every row has as many).
fn encode_values(rows: &[Vec<SeaValue>]) -> Result<Vec<u8>, DbErr> {
    let width = rows.first().map_or(0, Vec::len);
    let columns: Vec<String> = (0..width).map(|i| i.to_string()).collect();
    let rows: Vec<CachedRow> =
        rows.iter().map(|values| CachedRow { columns: columns.clone(), values: values.clone() }).collect();
    crate::convert::encode(&rows)
}

fn decode_values(bytes: &[u8]) -> Option<Vec<Vec<SeaValue>>> {
    crate::convert::decode(bytes).map(|rows| rows.into_iter().map(|r| r.values).collect())
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
