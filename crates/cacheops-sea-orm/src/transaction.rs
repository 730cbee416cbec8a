//! `CachedTransaction`: transactions and savepoints with cacheops' rules.
//!
//! * Once a transaction has written, its reads bypass the cache (they may see its own writes).
//! * At REPEATABLE READ / SERIALIZABLE (and always on SQLite), reads bypass the cache: a hit
//!   could be newer than the transaction's snapshot, and a miss would store its old snapshot.
//!   The level is the server's: one given to `begin_with_config` is known; otherwise
//!   PostgreSQL is asked (`SHOW transaction_isolation`) before the first read
//!   that would use the cache, and again after any statement that may have changed it (`SET
//!   TRANSACTION …`, any `SET`); MySQL/MariaDB transactions without an explicit level are taken
//!   as REPEATABLE READ (their `@@transaction_isolation` does not tell the running
//!   transaction's level apart from the next one's).
//! * Each write takes a write lease when it runs (its markers keep other readers off the rows it
//!   changes until after COMMIT); the leases are kept per savepoint level, merged into the parent
//!   on release, finished at once on rollback, and renewed right before the outer COMMIT and
//!   finished right after it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cacheops::WriteLease;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    Statement, StreamTrait, TransactionError, TransactionOptions, TransactionSession, TransactionTrait,
};

use crate::engine::{self, Class, Output, ReadMode, Shared, WriteMode, err};

#[derive(Debug, Default)]
struct Level {
    leases: Vec<WriteLease>,
    saved: Vec<engine::Saved>,
    invalidate_all: bool,
    /// DDL ran: the catalog reloads when the level ends (committed or rolled back).
    ddl: bool,
    dirty: bool,
}

/// What is known of a transaction's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Isolation {
    /// Not known: ask the server before a read uses the cache.
    Unknown = 0,
    /// REPEATABLE READ, SERIALIZABLE (or SQLite): reads bypass the cache.
    Snapshot = 1,
    /// READ COMMITTED / READ UNCOMMITTED: each statement sees the latest committed data.
    PerStatement = 2,
}

impl Isolation {
    fn from_u8(v: u8) -> Isolation {
        match v {
            1 => Isolation::Snapshot,
            2 => Isolation::PerStatement,
            _ => Isolation::Unknown,
        }
    }

    /// The level as the server names it (`read committed`, `REPEATABLE-READ`…).
    pub(crate) fn from_server_name(name: &str) -> Isolation {
        let n = name.trim().to_ascii_lowercase().replace(['-', '_'], " ");
        match n.as_str() {
            "read committed" | "read uncommitted" => Isolation::PerStatement,
            _ => Isolation::Snapshot,
        }
    }
}

#[derive(Debug)]
struct TxState {
    levels: Mutex<Vec<Level>>,
    isolation: AtomicU8,
}

impl TxState {
    fn levels(&self) -> MutexGuard<'_, Vec<Level>> {
        self.levels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the options given to `begin` tell of the transaction's isolation.
pub(crate) fn isolation_of(backend: DbBackend, level: Option<IsolationLevel>) -> Isolation {
    match (backend, level) {
        (DbBackend::Sqlite, _) => Isolation::Snapshot,
        (_, Some(IsolationLevel::RepeatableRead | IsolationLevel::Serializable)) => Isolation::Snapshot,
        (_, Some(IsolationLevel::ReadCommitted | IsolationLevel::ReadUncommitted)) => Isolation::PerStatement,
        // The session, role or database default decides: the server says which.
        (DbBackend::Postgres, None) => Isolation::Unknown,
        // MySQL's default is REPEATABLE READ; a session default cannot be told apart from a
        // level set for the next transaction only.
        _ => Isolation::Snapshot,
    }
}

/// Asks PostgreSQL for the running transaction's isolation level (anything else, or an error:
/// a snapshot level, so reads bypass).
async fn server_isolation(txn: &DatabaseTransaction, backend: DbBackend) -> Isolation {
    if backend != DbBackend::Postgres {
        return Isolation::Snapshot;
    }
    // SHOW, not SELECT: it takes no snapshot, and it is not a data read to anyone counting them.
    let stmt = Statement::from_string(backend, "SHOW transaction_isolation");
    match txn.query_one_raw(stmt).await {
        Ok(Some(row)) => row
            .try_get::<String>("", "transaction_isolation")
            .map_or(Isolation::Snapshot, |n| Isolation::from_server_name(&n)),
        _ => Isolation::Snapshot,
    }
}

impl crate::typed::CacheTarget for CachedTransaction {
    fn typed_target(&self) -> Pin<Box<dyn Future<Output = crate::typed::TypedTarget<'_>> + Send + '_>> {
        Box::pin(async move {
            if let Ok(txn) = self.txn() {
                self.shared.ensure_catalog(txn).await;
            }
            crate::typed::TypedTarget { shared: &self.shared, allowed: self.reads_allowed().await }
        })
    }
}

/// A transaction (or savepoint) on a [`crate::CachedConnection`].
#[derive(Debug)]
pub struct CachedTransaction {
    inner: Option<DatabaseTransaction>,
    /// The connection the outer transaction came from (for `cache_on_save` after COMMIT).
    outer_conn: Option<sea_orm::DatabaseConnection>,
    shared: Arc<Shared>,
    state: Arc<TxState>,
    depth: usize,
}

impl CachedTransaction {
    pub(crate) fn outer(
        inner: DatabaseTransaction,
        conn: sea_orm::DatabaseConnection,
        shared: Arc<Shared>,
        isolation: Isolation,
    ) -> Self {
        let state =
            Arc::new(TxState { levels: Mutex::new(vec![Level::default()]), isolation: AtomicU8::new(isolation as u8) });
        CachedTransaction { inner: Some(inner), outer_conn: Some(conn), shared, state, depth: 0 }
    }

    fn txn(&self) -> Result<&DatabaseTransaction, DbErr> {
        self.inner.as_ref().ok_or_else(|| DbErr::Custom("cacheops: transaction already ended".into()))
    }

    /// Commits (releases the savepoint for a nested transaction); see [`TransactionSession`].
    pub async fn commit(self) -> Result<(), DbErr> {
        TransactionSession::commit(self).await
    }

    /// Rolls back (to the savepoint for a nested transaction); see [`TransactionSession`].
    pub async fn rollback(self) -> Result<(), DbErr> {
        TransactionSession::rollback(self).await
    }

    /// Whether this transaction (or an enclosing one) has written.
    pub fn is_dirty(&self) -> bool {
        self.state.levels().iter().any(|l| l.dirty)
    }

    /// Whether a read may use the cache: the transaction has not written and its isolation
    /// level (asked from the server when not known) is not a snapshot level.
    async fn reads_allowed(&self) -> bool {
        if self.is_dirty() {
            return false;
        }
        match Isolation::from_u8(self.state.isolation.load(Ordering::Acquire)) {
            Isolation::Snapshot => false,
            Isolation::PerStatement => true,
            Isolation::Unknown => {
                let Ok(txn) = self.txn() else { return false };
                let level = server_isolation(txn, self.shared.backend).await;
                // A `SET` that ran meanwhile reset the state to unknown again: keep that.
                let _ = self.state.isolation.compare_exchange(
                    Isolation::Unknown as u8,
                    level as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                level == Isolation::PerStatement
            }
        }
    }

    /// A statement that may have changed the transaction's isolation level (`SET TRANSACTION`,
    /// any `SET` or other statement that is neither a read nor a write) ran: ask again.
    fn isolation_may_have_changed(&self) {
        if self.shared.backend == DbBackend::Postgres {
            self.state.isolation.store(Isolation::Unknown as u8, Ordering::Release);
        }
    }

    fn with_level(&self, f: impl FnOnce(&mut Level)) {
        let mut levels = self.state.levels();
        if let Some(level) = levels.get_mut(self.depth) {
            f(level);
        }
    }

    async fn write(&self, stmt: Statement, analysis: &cacheops::Analysis, mode: WriteMode) -> Result<Output, DbErr> {
        let txn = self.txn()?;
        self.with_level(|l| l.dirty = true);
        let (out, changes, saved) = engine::write_in(&self.shared, txn, stmt, analysis, mode).await?;
        let (leases, marked) = engine::mark_all(&self.shared, changes).await;
        self.with_level(|l| {
            l.leases.extend(leases);
            l.saved.extend(saved);
        });
        marked.map(|()| out)
    }

    async fn dispatch(&self, stmt: Statement, mode: WriteMode) -> Result<Output, DbErr> {
        let txn = self.txn()?;
        let params = crate::convert::params(&stmt);
        self.shared.ensure_catalog(txn).await;
        match engine::classify(&self.shared, &stmt.sql, &params) {
            Class::Write(a) if !cacheops::invalidation_suppressed() => self.write(stmt, &a, mode).await,
            Class::Write(_) => {
                self.with_level(|l| l.dirty = true);
                engine::run_write(txn, stmt, mode).await
            }
            Class::Unknown => {
                self.isolation_may_have_changed();
                let ddl = engine::is_ddl(&stmt.sql);
                // A namespace-level lease, finished after the outer COMMIT.
                let (leases, marked) = if cacheops::invalidation_suppressed() {
                    (Vec::new(), Ok(()))
                } else {
                    engine::mark_all(&self.shared, engine::namespace_changes(&self.shared, &[])).await
                };
                self.with_level(|l| {
                    l.dirty = true;
                    l.invalidate_all = !cacheops::invalidation_suppressed();
                    l.ddl |= ddl;
                    l.leases.extend(leases);
                });
                marked?;
                engine::run_write(txn, stmt, mode).await
            }
            Class::Read(a) if matches!(mode, WriteMode::One | WriteMode::All) => {
                let read_mode = if mode == WriteMode::One { ReadMode::One } else { ReadMode::All };
                let allowed = self.reads_allowed().await;
                Ok(Output::Rows(engine::read_analyzed(&self.shared, txn, stmt, &params, &a, read_mode, allowed).await?))
            }
            _ => {
                self.isolation_may_have_changed();
                if matches!(mode, WriteMode::One | WriteMode::All) {
                    cacheops::deps_scope::taint("a statement the analysis cannot attribute");
                }
                engine::run_write(txn, stmt, mode).await
            }
        }
    }

    async fn begin_nested(&self) -> Result<CachedTransaction, DbErr> {
        let inner = self.txn()?.begin().await?;
        let depth = {
            let mut levels = self.state.levels();
            levels.truncate(self.depth + 1);
            levels.push(Level::default());
            levels.len() - 1
        };
        Ok(CachedTransaction {
            inner: Some(inner),
            outer_conn: None,
            shared: self.shared.clone(),
            state: self.state.clone(),
            depth,
        })
    }

    fn take_level(&self) -> Level {
        let mut levels = self.state.levels();
        if levels.len() > self.depth {
            let mut taken = levels.split_off(self.depth);
            let mut level = taken.remove(0);
            for deeper in taken {
                level.leases.extend(deeper.leases);
                level.saved.extend(deeper.saved);
                level.invalidate_all |= deeper.invalidate_all;
                level.ddl |= deeper.ddl;
                level.dirty |= deeper.dirty;
            }
            level
        } else {
            Level::default()
        }
    }

    async fn finish_level(&self, level: Level) -> Result<(), DbErr> {
        let mut first_err = engine::finish_all(level.leases).await.err();
        if level.ddl {
            self.shared.after_ddl();
        }
        if level.invalidate_all
            && let Err(e) = self.shared.invalidate_all().await
        {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for CachedTransaction {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // Dropped without commit or rollback (or while COMMIT was in flight: it may still
            // land). The leases are dropped unfinished: their markers stay until they expire.
            drop(self.take_level());
        }
    }
}

#[async_trait::async_trait]
impl TransactionSession for CachedTransaction {
    async fn commit(mut self) -> Result<(), DbErr> {
        let Some(inner) = self.inner.take() else { return Ok(()) };
        if self.depth == 0 {
            let mut level = self.take_level();
            for lease in &mut level.leases {
                lease.before_commit().await.map_err(err)?;
            }
            let saved = std::mem::take(&mut level.saved);
            match inner.commit().await {
                Ok(()) => {
                    self.finish_level(level).await?;
                    match self.outer_conn.as_ref() {
                        Some(conn) => engine::cache_saved(&self.shared, conn, saved).await,
                        None => Ok(()),
                    }
                }
                Err(e) => {
                    let _ = self.finish_level(level).await;
                    Err(e)
                }
            }
        } else {
            let res = inner.commit().await;
            let level = self.take_level();
            if res.is_ok() {
                let orphan = {
                    let mut levels = self.state.levels();
                    match levels.get_mut(self.depth - 1) {
                        Some(parent) => {
                            parent.leases.extend(level.leases);
                            parent.saved.extend(level.saved);
                            parent.invalidate_all |= level.invalidate_all;
                            parent.ddl |= level.ddl;
                            parent.dirty |= level.dirty;
                            None
                        }
                        None => Some(level),
                    }
                };
                return match orphan {
                    Some(level) => self.finish_level(level).await,
                    None => Ok(()),
                };
            }
            let _ = self.finish_level(level).await;
            res
        }
    }

    async fn rollback(mut self) -> Result<(), DbErr> {
        let Some(inner) = self.inner.take() else { return Ok(()) };
        let res = inner.rollback().await;
        let level = self.take_level();
        // Nothing of this level happened: finishing the leases only lifts their markers.
        let fin = self.finish_level(level).await;
        res.and(fin)
    }
}

pub(crate) async fn run<F, T, E>(txn: CachedTransaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(&'c CachedTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>> + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let result = callback(&txn).await;
    match result {
        Ok(v) => {
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(v)
        }
        Err(e) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(e))
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for CachedTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.shared.backend
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.dispatch(stmt, WriteMode::Execute).await?.into_exec()
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(self.shared.backend, sql);
        self.dispatch(stmt, WriteMode::Unprepared).await?.into_exec()
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.dispatch(stmt, WriteMode::One).await?.into_rows()?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.dispatch(stmt, WriteMode::All).await?.into_rows()
    }

    fn support_returning(&self) -> bool {
        self.shared.backend.support_returning()
    }
}

impl StreamTrait for CachedTransaction {
    type Stream<'a> = sea_orm::TransactionStream<'a>;

    fn get_database_backend(&self) -> DbBackend {
        self.shared.backend
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            engine::refuse_stream_write(&self.shared, &stmt)?;
            self.txn()?.stream_raw(stmt).await
        })
    }
}

#[async_trait::async_trait]
impl TransactionTrait for CachedTransaction {
    type Transaction = CachedTransaction;

    async fn begin(&self) -> Result<CachedTransaction, DbErr> {
        self.begin_nested().await
    }

    async fn begin_with_config(
        &self,
        _isolation_level: Option<IsolationLevel>,
        _access_mode: Option<AccessMode>,
    ) -> Result<CachedTransaction, DbErr> {
        self.begin_nested().await
    }

    async fn begin_with_options(&self, _options: TransactionOptions) -> Result<CachedTransaction, DbErr> {
        self.begin_nested().await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c CachedTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        run(txn, callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        _isolation_level: Option<IsolationLevel>,
        _access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c CachedTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        run(txn, callback).await
    }
}
