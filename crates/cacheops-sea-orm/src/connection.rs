//! `CachedConnection`: a `DatabaseConnection` whose reads are cached and whose writes invalidate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cacheops::Cache;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    Statement, StreamTrait, TransactionError, TransactionOptions, TransactionTrait,
};

use crate::engine::{self, Class, Output, ReadMode, Shared, WriteMode, err};
use crate::transaction::CachedTransaction;

/// A SeaORM connection with cacheops in front of it.
///
/// Every SeaORM API accepts it (`find`, `one`, `all`, `count`, `paginate`, `insert`,
/// `update_many`, raw `Statement`s…). Reads whose tables' profiles enable the matching op
/// (`get` for `one`, `fetch` for `all`, `count`, `aggregate`, `exists`) are served from the cache;
/// every write that passes through invalidates exactly the cached reads its old and new rows
/// match. Transactions are wrapped too ([`CachedTransaction`]).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use cacheops::{Cache, Profile, Profiles};
/// use cacheops_sea_orm::CachedConnection;
/// let cache = Cache::builder()
///     .profiles(Profiles::builder().profile("post", Profile::builder().ops(["all"])).build()?)
///     .build()
///     .await?;
/// let db = CachedConnection::new(sea_orm::Database::connect("sqlite::memory:").await?, cache);
/// // use `&db` wherever SeaORM wants a connection
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CachedConnection {
    inner: DatabaseConnection,
    shared: Arc<Shared>,
}

impl CachedConnection {
    /// Wraps a connection. Its database is named `"default"` in cache keys of tables whose
    /// profile is not `db_agnostic`.
    pub fn new(inner: DatabaseConnection, cache: Cache) -> Self {
        Self::with_db_name(inner, cache, "default")
    }

    /// Wraps a connection to the database called `name` (see `Profile::db_agnostic`).
    pub fn with_db_name(inner: DatabaseConnection, cache: Cache, name: impl Into<String>) -> Self {
        let backend = inner.get_database_backend();
        CachedConnection { shared: Shared::new(cache, backend, name.into()), inner }
    }

    /// Chooses the key prefix per statement from the database name and the tables (multi-tenant
    /// or per-database namespaces). A read whose tables map to different prefixes is not cached
    /// (no single prefix would receive all the writes that concern it); a write invalidates under
    /// the prefix of each table it changes.
    ///
    /// ```no_run
    /// # async fn f(db: cacheops_sea_orm::CachedConnection) {
    /// let db = db.with_prefix_fn(|q| format!("{}-{}", q.db, if q.tables.iter().all(|t| t.starts_with("billing_")) { "billing" } else { "main" }));
    /// # }
    /// ```
    #[must_use]
    pub fn with_prefix_fn(self, f: impl Fn(&crate::PrefixQuery<'_>) -> String + Send + Sync + 'static) -> Self {
        CachedConnection { shared: self.shared.with_prefix_fn(Arc::new(f)), inner: self.inner }
    }

    /// Reads the column classes (types, collations, generated columns) of every table from the
    /// database's catalog into the cache's [`cacheops::Catalog`], replacing what this
    /// connection loaded before. It happens by itself before the first statement and again
    /// after DDL that passes through the connection; call it after migrations run elsewhere
    /// (another process, the raw connection) or to see a catalog error, which the automatic
    /// load only logs (its tables then stay table-level).
    ///
    /// ```no_run
    /// # async fn f(db: cacheops_sea_orm::CachedConnection) -> Result<(), sea_orm::DbErr> {
    /// db.load_catalog().await?;
    /// # Ok(()) }
    /// ```
    pub async fn load_catalog(&self) -> Result<(), DbErr> {
        self.shared.catalog.reset(self.shared.cache.catalog());
        self.shared.catalog.load_into(&self.inner, self.shared.cache.catalog()).await
    }

    /// The wrapped connection (bypasses the cache entirely: writes through it do not invalidate).
    pub fn inner(&self) -> &DatabaseConnection {
        &self.inner
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    async fn autocommit_write(
        &self,
        stmt: Statement,
        analysis: &cacheops::Analysis,
        mode: WriteMode,
    ) -> Result<Output, DbErr> {
        let txn = self.inner.begin().await?;
        let mut leases = Vec::new();
        let res: Result<(Output, Vec<engine::Saved>), DbErr> = async {
            let (out, changes, saved) = engine::write_in(&self.shared, &txn, stmt, analysis, mode).await?;
            let (marked, ok) = engine::mark_all(&self.shared, changes).await;
            leases = marked;
            ok?;
            for lease in &mut leases {
                lease.before_commit().await.map_err(err)?;
            }
            Ok((out, saved))
        }
        .await;
        match res {
            Ok((out, saved)) => match txn.commit().await {
                Ok(()) => {
                    engine::finish_all(leases).await?;
                    engine::cache_saved(&self.shared, &self.inner, saved).await?;
                    Ok(out)
                }
                Err(e) => {
                    let _ = engine::finish_all(leases).await;
                    Err(e)
                }
            },
            Err(e) => {
                let _ = txn.rollback().await;
                let _ = engine::finish_all(leases).await;
                Err(e)
            }
        }
    }

    /// A statement whose effects cannot be attributed: a namespace-level lease from before it
    /// runs until after it, then everything under the prefix is invalidated.
    async fn unknown_write(&self, stmt: Statement, mode: WriteMode) -> Result<Output, DbErr> {
        let ddl = engine::is_ddl(&stmt.sql);
        let (leases, marked) = engine::mark_all(&self.shared, engine::namespace_changes(&self.shared, &[])).await;
        let out = match marked {
            Ok(()) => engine::run_write(&self.inner, stmt, mode).await,
            Err(e) => Err(e),
        };
        if ddl {
            // Again now that it ran: a load in between saw the old catalog.
            self.shared.after_ddl();
        }
        let finished = engine::finish_all(leases).await;
        let out = out?;
        finished?;
        self.shared.invalidate_all().await?;
        Ok(out)
    }

    async fn dispatch(&self, stmt: Statement, mode: WriteMode) -> Result<Output, DbErr> {
        let params = crate::convert::params(&stmt);
        self.shared.ensure_catalog(&self.inner).await;
        // Writes run in boxed futures: this future (moved on every call) stays as small as a
        // read needs.
        match engine::classify(&self.shared, &stmt.sql, &params) {
            Class::Write(a) if !cacheops::invalidation_suppressed() => {
                Box::pin(self.autocommit_write(stmt, &a, mode)).await
            }
            Class::Unknown => Box::pin(self.unknown_write(stmt, mode)).await,
            Class::Read(a) if matches!(mode, WriteMode::One | WriteMode::All) => {
                let read_mode = if mode == WriteMode::One { ReadMode::One } else { ReadMode::All };
                Ok(Output::Rows(
                    engine::read_analyzed(&self.shared, &self.inner, stmt, &params, &a, read_mode, true).await?,
                ))
            }
            _ => {
                if matches!(mode, WriteMode::One | WriteMode::All) {
                    cacheops::deps_scope::taint("a statement the analysis cannot attribute");
                }
                Box::pin(engine::run_write(&self.inner, stmt, mode)).await
            }
        }
    }

    async fn begin_cached(&self, options: TransactionOptions) -> Result<CachedTransaction, DbErr> {
        let isolation = crate::transaction::isolation_of(self.shared.backend, options.isolation_level);
        let inner = self.inner.begin_with_options(options).await?;
        Ok(CachedTransaction::outer(inner, self.inner.clone(), self.shared.clone(), isolation))
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for CachedConnection {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.dispatch(stmt, WriteMode::Execute).await?.into_exec()
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(self.inner.get_database_backend(), sql);
        self.dispatch(stmt, WriteMode::Unprepared).await?.into_exec()
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.dispatch(stmt, WriteMode::One).await?.into_rows()?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.dispatch(stmt, WriteMode::All).await?.into_rows()
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}

impl StreamTrait for CachedConnection {
    type Stream<'a> = sea_orm::QueryStream;

    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    /// Streams are not cached. A data-changing statement cannot be streamed through the cached
    /// connection (its invalidation could not be tied to the stream's end): that is an error.
    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            engine::refuse_stream_write(&self.shared, &stmt)?;
            self.inner.stream_raw(stmt).await
        })
    }
}

#[async_trait::async_trait]
impl TransactionTrait for CachedConnection {
    type Transaction = CachedTransaction;

    async fn begin(&self) -> Result<CachedTransaction, DbErr> {
        self.begin_cached(TransactionOptions::default()).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<CachedTransaction, DbErr> {
        self.begin_cached(TransactionOptions { isolation_level, access_mode, ..TransactionOptions::default() }).await
    }

    async fn begin_with_options(&self, options: TransactionOptions) -> Result<CachedTransaction, DbErr> {
        self.begin_cached(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c CachedTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        crate::transaction::run(txn, callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c CachedTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin_with_config(isolation_level, access_mode).await.map_err(TransactionError::Connection)?;
        crate::transaction::run(txn, callback).await
    }
}
