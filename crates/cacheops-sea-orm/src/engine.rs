//! The read and write paths shared by `CachedConnection` and `CachedTransaction`.

use std::sync::Arc;

use cacheops::{
    Analysis, Analyzer, AnalyzerConfig, Cache, CacheOp, Dialect, Row, StatementKind, TableChange, WriteLease,
    WriteTarget,
};
use cacheops_core::ReadShape;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement};

use crate::convert::{self, CachedRow};
use crate::scope::{self, Override};

/// What one connection shares with its transactions.
pub(crate) struct Shared {
    pub(crate) cache: Cache,
    pub(crate) analyzer: Analyzer,
    pub(crate) db: String,
    pub(crate) backend: DbBackend,
    pub(crate) fks: crate::cascade::Graph,
    /// Shared with the connections made by `with_prefix_fn` (same database).
    pub(crate) catalog: Arc<crate::catalog::Loader>,
    pub(crate) prefix_fn: Option<PrefixFn>,
    by_prefix: std::sync::Mutex<std::collections::HashMap<String, Cache>>,
    plans: PlanMemo,
}

/// A read statement (SQL text and binds) classified once: its analysis and, per read mode, its
/// cache query with the keys derived (see [`cacheops::Query`]). Memoised per connection in
/// [`PlanMemo`], so that a repeated read costs one map lookup instead of analysis, hashing and
/// key derivation.
pub(crate) struct ReadPlan {
    pub(crate) analysis: Analysis,
    /// The query of [`ReadMode::One`] and [`ReadMode::All`] reads, for the connection's own cache
    /// (not memoised with a prefix callback, whose answer may change between calls).
    #[cfg_attr(not(feature = "transparent"), allow(dead_code))]
    queries: [std::sync::OnceLock<cacheops::Query>; 2],
    /// What the connection's profiles say about it.
    profile: std::sync::OnceLock<ProfilePlan>,
}

impl ReadPlan {
    fn new(analysis: Analysis) -> ReadPlan {
        ReadPlan { analysis, queries: Default::default(), profile: Default::default() }
    }
}

/// Most read plans a connection memoises; past it the memo starts over.
const PLAN_MEMO_ENTRIES: usize = 4096;

/// Most memory (estimated) the read plans of a connection may hold; past it the memo starts over.
const PLAN_MEMO_BYTES: usize = 64 << 20;

/// The read plans of recent statements, keyed by SQL text and exact bind values.
#[derive(Default)]
struct PlanMemo {
    map: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Arc<ReadPlan>>>,
    /// Estimated bytes held (see [`PlanMemo::cost`]).
    bytes: std::sync::atomic::AtomicUsize,
    /// The catalog generation the plans were analysed under; another one empties the memo.
    generation: std::sync::atomic::AtomicU64,
}

impl PlanMemo {
    fn key(sql: &str, params: &[cacheops::Value]) -> Vec<u8> {
        let mut key = Vec::with_capacity(sql.len() + 1 + 16 * params.len());
        key.extend_from_slice(sql.as_bytes());
        // SQL text never contains 0xFF (not UTF-8): the separator keeps the key unambiguous.
        key.push(0xFF);
        cacheops::Value::encode_all_into(params, &mut key);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, Arc<ReadPlan>>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &[u8], generation: u64) -> Option<Arc<ReadPlan>> {
        let mut map = self.lock();
        if self.generation.swap(generation, std::sync::atomic::Ordering::AcqRel) != generation {
            map.clear();
            self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        map.get(key).cloned()
    }

    /// What one plan is estimated to hold: its key (SQL text and binds), the analysis and the
    /// query's keys derived from them.
    fn cost(key: &[u8]) -> usize {
        cacheops_core::analysis::memo_cost_bytes(key.len())
    }

    fn insert(&self, key: Vec<u8>, plan: Arc<ReadPlan>) {
        use std::sync::atomic::Ordering::Relaxed;
        let cost = Self::cost(&key);
        if cost > PLAN_MEMO_BYTES {
            return;
        }
        let mut map = self.lock();
        if map.len() >= PLAN_MEMO_ENTRIES || self.bytes.load(Relaxed).saturating_add(cost) > PLAN_MEMO_BYTES {
            map.clear();
            self.bytes.store(0, Relaxed);
        }
        if map.insert(key, plan).is_none() {
            self.bytes.fetch_add(cost, Relaxed);
        }
    }
}

/// A prefix callback (see [`crate::CachedConnection::with_prefix_fn`]).
pub(crate) type PrefixFn = Arc<dyn Fn(&PrefixQuery<'_>) -> String + Send + Sync>;

/// What a prefix callback sees: the database (its name on the connection) and the tables of the
/// statement.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PrefixQuery<'a> {
    /// The database name given to the connection (`"default"` unless set).
    pub db: &'a str,
    /// The tables the statement reads (for a read) or changes (for a write: one at a time).
    pub tables: &'a [&'a str],
}

impl Shared {
    pub(crate) fn new(cache: Cache, backend: DbBackend, db: String) -> Arc<Shared> {
        let dialect = match backend {
            DbBackend::Sqlite => Dialect::Sqlite,
            DbBackend::MySql => Dialect::MySql,
            _ => Dialect::PostgreSql,
        };
        let mut config: AnalyzerConfig = cache.analyzer().config().clone();
        config.dialect = dialect;
        Arc::new(Shared {
            analyzer: Analyzer::with_catalog(config, Arc::clone(cache.catalog())),
            cache,
            db,
            backend,
            fks: Default::default(),
            catalog: Default::default(),
            prefix_fn: None,
            by_prefix: Default::default(),
            plans: Default::default(),
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cache", &self.cache)
            .field("db", &self.db)
            .field("backend", &self.backend)
            .field("prefix_fn", &self.prefix_fn.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn with_prefix_fn(&self, f: PrefixFn) -> Arc<Shared> {
        Arc::new(Shared {
            cache: self.cache.clone(),
            analyzer: Analyzer::with_catalog(self.analyzer.config().clone(), Arc::clone(self.cache.catalog())),
            db: self.db.clone(),
            backend: self.backend,
            fks: Default::default(),
            catalog: Arc::clone(&self.catalog),
            prefix_fn: Some(f),
            by_prefix: Default::default(),
            plans: Default::default(),
        })
    }

    fn prefixed(&self, prefix: String) -> Result<Cache, DbErr> {
        let mut map = self.by_prefix.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(&prefix) {
            return Ok(c.clone());
        }
        let c = self.cache.with_prefix(&prefix).map_err(err)?;
        map.insert(prefix, c.clone());
        Ok(c)
    }

    /// The cache for a statement over `tables`: `None` when the prefix callback puts the tables
    /// under different prefixes (a write to one of them could not reach the read's entries, so
    /// the read is not cached).
    pub(crate) fn cache_for(&self, tables: &[&str]) -> Result<Option<Cache>, DbErr> {
        let Some(f) = self.prefix_fn.as_ref() else { return Ok(Some(self.cache.clone())) };
        let prefix = f(&PrefixQuery { db: &self.db, tables });
        for t in tables {
            if f(&PrefixQuery { db: &self.db, tables: std::slice::from_ref(t) }) != prefix {
                tracing::debug!(tables = ?tables, "cacheops: tables under different prefixes; not cached");
                return Ok(None);
            }
        }
        self.prefixed(prefix).map(Some)
    }

    /// Every cache this connection has used (for invalidating everything).
    pub(crate) fn all_caches(&self) -> Vec<Cache> {
        let mut v = vec![self.cache.clone()];
        v.extend(self.by_prefix.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned());
        v
    }

    /// A statement changed the session's namespace (`SET search_path`, `USE`) on one pooled
    /// connection: which tables unqualified names mean is no longer known, so reads through
    /// this connection are no longer cached.
    pub(crate) fn namespace_changed(&self) {
        tracing::warn!(
            "cacheops: the session's search_path/database/autocommit changed; reads through this connection bypass the cache"
        );
        self.catalog.namespace_changed();
    }

    /// Forgets the catalog and the foreign-key graph; both reload on the next statement.
    pub(crate) fn after_ddl(&self) {
        self.fks.reset();
        self.catalog.reset(self.cache.catalog());
    }

    /// Loads the database's column classes unless loaded (once per connection, again after DDL).
    pub(crate) async fn ensure_catalog<C: ConnectionTrait>(&self, conn: &C) {
        self.catalog.ensure(conn, self.cache.catalog()).await;
    }

    /// Invalidates everything under every prefix this connection has used (after a statement
    /// that cannot be attributed).
    pub(crate) async fn invalidate_all(&self) -> Result<(), DbErr> {
        for c in self.all_caches() {
            c.invalidate_all().await.map_err(err)?;
        }
        Ok(())
    }
}

/// `from` of the [`DbErr::TryIntoErr`] that carries a cacheops error.
const FROM: &str = "cacheops::Error";

/// A cacheops error as SeaORM's: [`DbErr::TryIntoErr`], the one variant that keeps an error as
/// its source (its message reads "Error converting `cacheops::Error` into `sea_orm::DbErr`: …").
/// [`cache_error`] gets the cacheops error back.
pub(crate) fn err(e: cacheops::Error) -> DbErr {
    DbErr::TryIntoErr { from: FROM, into: "sea_orm::DbErr", source: std::sync::Arc::new(e) }
}

/// The cacheops error inside a [`DbErr`] this crate returned (a refused write, a backend that
/// failed with degrade off, a bad prefix …), to ask it
/// [`is_unavailable()`](cacheops::Error::is_unavailable) or
/// [`is_timeout()`](cacheops::Error::is_timeout) or walk its causes. `None` for SeaORM's and the
/// database's own errors.
///
/// ```
/// use cacheops_sea_orm::cache_error;
/// let db_err = sea_orm::DbErr::Custom("not ours".into());
/// assert!(cache_error(&db_err).is_none());
/// ```
pub fn cache_error(e: &DbErr) -> Option<&cacheops::Error> {
    match e {
        DbErr::TryIntoErr { from, source, .. } if *from == FROM => (**source).downcast_ref::<cacheops::Error>(),
        _ => None,
    }
}

/// How a read statement is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    One = 0,
    All = 1,
}

/// What a statement is, for the wrapper.
pub(crate) enum Class {
    /// A read that may be cached.
    Read(Arc<ReadPlan>),
    /// A write with a known target.
    Write(Box<Analysis>),
    /// Anything that neither reads cacheably nor writes (DDL without data loss, SET, BEGIN …).
    Pass,
    /// A statement that may change data in ways we cannot attribute: run it, then invalidate
    /// everything under the prefix.
    Unknown,
}

const DATA_CHANGING: &[&str] = &[
    "insert", "update", "delete", "truncate", "drop", "alter", "merge", "replace", "copy", "call", "do", "rename",
    // `EXECUTE` of a prepared statement, MySQL `LOAD DATA`, `REFRESH MATERIALIZED VIEW`,
    // `IMPORT FOREIGN SCHEMA`.
    "execute", "load", "refresh", "import",
];

/// `SET search_path`, `SET SCHEMA`, `RESET`, `set_config('search_path', …)` (PostgreSQL) and
/// `USE db` (MySQL) change which tables unqualified names mean on the pooled connection that
/// ran it; MySQL's `SET autocommit` may put every later statement of that connection into one
/// long snapshot transaction.
fn changes_namespace(sql: &str) -> bool {
    let lower = sql.trim_start().to_ascii_lowercase();
    let mut words = lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').filter(|w| !w.is_empty());
    match words.next() {
        Some("use") => true,
        Some("reset") => lower.contains("search_path") || words.any(|w| w == "all"),
        Some("set") => lower.contains("search_path") || lower.contains("autocommit") || words.any(|w| w == "schema"),
        _ => lower.contains("set_config") && lower.contains("search_path"),
    }
}

/// A write through a view, to a table with triggers or rules, or to a table the catalog does
/// not know (its triggers unknown) may change rows the statement does not show.
fn writes_beyond_rows(shared: &Shared, a: &Analysis) -> bool {
    let Some(w) = a.write.as_ref() else { return false };
    let catalog = shared.cache.catalog().snapshot();
    std::iter::once(&w.table).chain(&w.extra_tables).any(|t| match catalog.table(t) {
        Some(s) => s.has_side_effects() || matches!(s.relation(), cacheops::equality::Relation::View { .. }),
        None => true,
    })
}

/// Whether the statement names a table of a schema (database) outside the loaded ones: names
/// are compared without their qualifier, so its tables' classes, views and triggers are not
/// known.
fn names_foreign_schema(shared: &Shared, a: &Analysis) -> bool {
    a.schemas.iter().any(|s| !shared.catalog.knows_schema(s))
}

/// Whether a read names a relation the loaded catalog does not know.
fn reads_unknown_relation(catalog: &cacheops::equality::CatalogSnapshot, a: &Analysis) -> bool {
    a.reads.tables().any(|t| catalog.table(t).is_none())
}

/// Whether the statement calls a user-defined function that may write (or names one in FROM).
fn calls_writing_function(catalog: &cacheops::equality::CatalogSnapshot, a: &Analysis) -> bool {
    a.functions.iter().map(String::as_str).chain(a.reads.tables()).any(|f| catalog.function(f) == Some(true))
}

/// `TRUNCATE … CASCADE` empties every table that references the truncated ones, whatever the
/// foreign keys' actions.
fn truncates_cascade(sql: &str) -> bool {
    let lower = sql.trim_start().to_ascii_lowercase();
    lower.starts_with("truncate")
        && lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| w == "cascade")
}

pub(crate) fn is_ddl(sql: &str) -> bool {
    let lower = sql.trim_start().to_ascii_lowercase();
    lower.starts_with("create") || lower.starts_with("alter") || lower.starts_with("drop")
}

fn may_change_data(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| DATA_CHANGING.contains(&w))
}

pub(crate) fn classify(shared: &Shared, sql: &str, params: &[cacheops::Value]) -> Class {
    let key = PlanMemo::key(sql, params);
    // Read before the analysis: a plan is never filed under a newer generation than its own.
    let generation = shared.cache.catalog().generation();
    if let Some(plan) = shared.plans.get(&key, generation) {
        return Class::Read(plan);
    }
    if is_ddl(sql) {
        // The tables' types, collations and foreign keys may change: reload them. (Also after
        // the statement ran: see `Shared::after_ddl`.)
        shared.after_ddl();
    }
    let catalog = shared.cache.catalog().snapshot();
    match shared.analyzer.analyze(sql, params) {
        // `SELECT bump(1)` with a function that may write is a write nobody can attribute.
        Ok(a) if calls_writing_function(&catalog, &a) => Class::Unknown,
        // Another schema's tables: reads are not cached, writes are not attributed.
        Ok(a) if names_foreign_schema(shared, &a) => match a.kind {
            StatementKind::Read if a.write.is_none() => Class::Pass,
            StatementKind::Other if !may_change_data(sql) => Class::Pass,
            _ => Class::Unknown,
        },
        // A relation the catalog does not know may be a view over anything (created behind
        // the connection's back): not cached until the catalog is loaded again.
        Ok(a) if a.kind == StatementKind::Read && a.write.is_none() && reads_unknown_relation(&catalog, &a) => {
            Class::Pass
        }
        Ok(a) => match a.kind {
            StatementKind::Read if a.write.is_none() => {
                let plan = Arc::new(ReadPlan::new(a));
                shared.plans.insert(key, Arc::clone(&plan));
                Class::Read(plan)
            }
            StatementKind::Insert | StatementKind::Update | StatementKind::Delete if a.write.is_some() => {
                Class::Write(Box::new(a))
            }
            // DDL changes what equality means in a column: every cached value goes, as for a
            // statement that cannot be attributed.
            StatementKind::Other if is_ddl(sql) => Class::Unknown,
            StatementKind::Other if !may_change_data(sql) => pass(shared, sql),
            _ => Class::Unknown,
        },
        Err(_) if may_change_data(sql) => Class::Unknown,
        Err(_) => pass(shared, sql),
    }
}

/// A statement that neither reads cacheably nor writes; one that changes the session's
/// namespace turns the connection's caching off.
fn pass(shared: &Shared, sql: &str) -> Class {
    if changes_namespace(sql) {
        shared.namespace_changed();
    }
    Class::Pass
}

fn op_for(shape: ReadShape, mode: ReadMode) -> CacheOp {
    match shape {
        ReadShape::Count => CacheOp::Count,
        ReadShape::Aggregate => CacheOp::Aggregate,
        ReadShape::Exists => CacheOp::Exists,
        _ if mode == ReadMode::One => CacheOp::Get,
        _ => CacheOp::Fetch,
    }
}

/// How a cacheable read is cached: its lifetime override and whether the dog-pile lock applies.
#[cfg_attr(not(feature = "transparent"), allow(dead_code))]
struct Plan {
    timeout: Option<std::time::Duration>,
    lock: bool,
}

/// What the profiles say about a read, whatever the scope: whether it may be cached at all,
/// whether the profiles cache it by default (per read mode), and whether the dog-pile lock applies.
#[derive(Debug, Clone, Copy)]
struct ProfilePlan {
    cacheable: bool,
    by_default: [bool; 2],
    lock: bool,
}

impl ProfilePlan {
    fn of(shared: &Shared, a: &Analysis) -> ProfilePlan {
        let profiles = shared.cache.profiles();
        let disabled = a.reads.tables().any(|t| profiles.is_configured(t) && !profiles.for_table(t).enabled);
        let cacheable = !(a.locking || a.volatile || a.reads.is_empty() || disabled);
        let default_for = |mode| {
            let op = op_for(a.shape, mode);
            a.reads.tables().all(|t| profiles.for_table(t).caches(op))
        };
        ProfilePlan {
            cacheable,
            by_default: [default_for(ReadMode::One), default_for(ReadMode::All)],
            lock: a.reads.tables().any(|t| profiles.for_table(t).lock),
        }
    }
}

/// Whether this read may be served from / stored in the cache, and how: the profiles' answer
/// (derived once per plan), overridden by a `cached` / `nocache` scope.
fn cache_plan(shared: &Shared, read: &ReadPlan, mode: ReadMode) -> Option<Plan> {
    let p = *read.profile.get_or_init(|| ProfilePlan::of(shared, &read.analysis));
    if !p.cacheable {
        return None;
    }
    match scope::current() {
        Some(Override::Off) => None,
        Some(Override::Force(o)) => Some(Plan { timeout: o.timeout, lock: o.lock.unwrap_or(p.lock) }),
        None => p.by_default[mode as usize].then_some(Plan { timeout: None, lock: p.lock }),
    }
}

async fn run_read<C: ConnectionTrait>(conn: &C, stmt: Statement, mode: ReadMode) -> Result<Vec<QueryResult>, DbErr> {
    match mode {
        ReadMode::One => Ok(conn.query_one_raw(stmt).await?.into_iter().collect()),
        ReadMode::All => conn.query_all_raw(stmt).await,
    }
}

/// Why a cached read did not produce cacheable bytes.
#[cfg(feature = "transparent")]
enum ReadErr {
    Db(DbErr),
    Cache(cacheops::Error),
    /// The rows are fine but cannot be cached faithfully: hand them over, store nothing.
    Uncacheable(Vec<QueryResult>),
}

#[cfg(feature = "transparent")]
impl From<cacheops::Error> for ReadErr {
    fn from(e: cacheops::Error) -> Self {
        ReadErr::Cache(e)
    }
}

/// A read through the cache. `allowed`: false inside a transaction that has written or at an
/// isolation level where a hit could be newer than the snapshot.
pub(crate) async fn read<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    stmt: Statement,
    mode: ReadMode,
    allowed: bool,
) -> Result<Vec<QueryResult>, DbErr> {
    let params = convert::params(&stmt);
    shared.ensure_catalog(conn).await;
    match classify(shared, &stmt.sql, &params) {
        Class::Read(plan) => read_analyzed(shared, conn, stmt, &params, &plan, mode, allowed).await,
        _ => run_read(conn, stmt, mode).await,
    }
}

/// [`read`] of a statement the caller has already classified as a read (`params` are its binds).
#[cfg_attr(not(feature = "transparent"), allow(unused_variables))]
pub(crate) async fn read_analyzed<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    stmt: Statement,
    params: &[cacheops::Value],
    read: &ReadPlan,
    mode: ReadMode,
    allowed: bool,
) -> Result<Vec<QueryResult>, DbErr> {
    let analysis = &read.analysis;
    let plan = if allowed { cache_plan(shared, read, mode) } else { None };
    #[cfg(feature = "transparent")]
    if let (Some(plan), true) = (plan, shared.catalog.namespace_known()) {
        return read_cached(shared, conn, stmt, params, read, mode, plan).await;
    }
    #[cfg(not(feature = "transparent"))]
    if plan.is_some() {
        say_rows_are_not_cached();
    }
    // Not cached, but a cached function around it (`cached_as` with `auto`) still depends on it:
    // record its dependencies, or mark the function's result unstorable when they cannot be known.
    if cacheops::deps_scope::active() {
        let p = read.profile.get_or_init(|| ProfilePlan::of(shared, analysis));
        if allowed && p.cacheable && shared.catalog.namespace_known() {
            cacheops::deps_scope::record(&shared.cache, &analysis.reads).await;
        } else {
            cacheops::deps_scope::taint("a read whose dependencies cannot be recorded");
        }
    }
    run_read(conn, stmt, mode).await
}

/// Without the `transparent` feature (SeaORM with cacheops' patches rebuilds cached rows), a read
/// the profiles or [`crate::cached`] would cache runs live (`.cache()` and `cached_as` still
/// cache): said once in the log.
#[cfg(not(feature = "transparent"))]
fn say_rows_are_not_cached() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::info!(
            "cacheops-sea-orm: built without the `transparent` feature, so plain reads through a CachedConnection \
             are not cached row by row; use `.cache()` on selects, `cached_as`, or enable `transparent`"
        );
    });
}

/// The cached read of [`read_analyzed`]: rows from the cache, or from the database and stored.
#[cfg(feature = "transparent")]
async fn read_cached<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    stmt: Statement,
    params: &[cacheops::Value],
    read: &ReadPlan,
    mode: ReadMode,
    plan: Plan,
) -> Result<Vec<QueryResult>, DbErr> {
    use std::borrow::Cow;
    let analysis = &read.analysis;
    let build = |cache: &Cache| {
        // The namespace (search_path, current database) tells apart the tables that one
        // unqualified name means on differently configured connections.
        let namespace = shared.catalog.namespace().unwrap_or_default();
        let shape = match mode {
            ReadMode::One => format!("sea-orm:one\u{0}{namespace}"),
            ReadMode::All => format!("sea-orm:all\u{0}{namespace}"),
        };
        let query = cache.sql_query(&stmt.sql, params, analysis, &shared.db, &shape);
        let profiles = shared.cache.profiles();
        let local = mode == ReadMode::One
            && analysis.shape == ReadShape::Rows
            && analysis.reads.tables().all(|t| profiles.for_table(t).local_get);
        query.with_local(local)
    };
    let prefixed;
    let (cache, mut query) = if shared.prefix_fn.is_none() {
        let memo = &read.queries[mode as usize];
        (&shared.cache, Cow::Borrowed(memo.get_or_init(|| build(&shared.cache))))
    } else {
        let tables: Vec<&str> = analysis.reads.tables().collect();
        let Some(cache) = shared.cache_for(&tables)? else { return run_read(conn, stmt, mode).await };
        prefixed = cache;
        (&prefixed, Cow::Owned(build(&prefixed)))
    };
    if let Some(t) = plan.timeout {
        query = Cow::Owned(query.into_owned().with_timeout(t));
    }
    let opts = cacheops::LockOpts::new(plan.lock, cache.lock_wait());
    let fetched = cache
        .get_or_compute_with(&query, opts, || async {
            let rows = run_read(conn, stmt.clone(), mode).await.map_err(ReadErr::Db)?;
            match convert::convert_rows(&rows) {
                Some(cached) => convert::encode(&cached).map_err(ReadErr::Db),
                None => Err(ReadErr::Uncacheable(rows)),
            }
        })
        .await;
    match fetched {
        Ok(bytes) => match convert::decode_query_results(&bytes) {
            Some(rows) => Ok(rows),
            None => run_read(conn, stmt, mode).await,
        },
        Err(ReadErr::Uncacheable(rows)) => Ok(rows),
        Err(ReadErr::Db(e)) => Err(e),
        Err(ReadErr::Cache(e)) => Err(err(e)),
    }
}

/// Streams are not cached, and a data-changing statement cannot be streamed through the cached
/// connection (its invalidation could not be tied to the stream's end): that is an error.
pub(crate) fn refuse_stream_write(shared: &Shared, stmt: &Statement) -> Result<(), DbErr> {
    let params = convert::params(stmt);
    match classify(shared, &stmt.sql, &params) {
        Class::Write(_) | Class::Unknown => Err(DbErr::Custom(
            "cacheops: data-changing statements cannot be streamed through a cached connection; use query_all".into(),
        )),
        _ => Ok(()),
    }
}

/// How a write statement is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Execute,
    Unprepared,
    One,
    All,
}

/// A write's result.
pub(crate) enum Output {
    Exec(ExecResult),
    Rows(Vec<QueryResult>),
}

impl Output {
    pub(crate) fn into_exec(self) -> Result<ExecResult, DbErr> {
        match self {
            Output::Exec(e) => Ok(e),
            Output::Rows(_) => Err(DbErr::Custom("internal: rows where an exec result was expected".into())),
        }
    }
    pub(crate) fn into_rows(self) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Output::Rows(r) => Ok(r),
            Output::Exec(_) => Err(DbErr::Custom("internal: exec result where rows were expected".into())),
        }
    }
}

pub(crate) async fn run_write<C: ConnectionTrait>(conn: &C, stmt: Statement, mode: WriteMode) -> Result<Output, DbErr> {
    Ok(match mode {
        WriteMode::Execute => Output::Exec(conn.execute_raw(stmt).await?),
        WriteMode::Unprepared => Output::Exec(conn.execute_unprepared(&stmt.sql).await?),
        WriteMode::One => Output::Rows(conn.query_one_raw(stmt).await?.into_iter().collect()),
        WriteMode::All => Output::Rows(conn.query_all_raw(stmt).await?),
    })
}

fn rows_of(results: &[QueryResult]) -> Option<Vec<Row>> {
    convert::convert_rows(results).map(|rows| rows.iter().map(CachedRow::to_row).collect())
}

/// Runs a write inside `txn` (a real transaction, not yet committed) and returns what it changed.
///
/// Old rows come from a pre-image `SELECT … FOR UPDATE` with the statement's WHERE; new rows from
/// the statement's values, its RETURNING rows, or the old rows with the assignments applied.
/// Whatever is not known for certain becomes a table-level change.
pub(crate) async fn write_in<C: ConnectionTrait>(
    shared: &Shared,
    txn: &C,
    stmt: Statement,
    analysis: &Analysis,
    mode: WriteMode,
) -> Result<(Output, Vec<TableChange>, Vec<Saved>), DbErr> {
    let Some(w) = analysis.write.as_ref() else {
        return Err(DbErr::Custom("internal: write without target".into()));
    };
    let pre = match (&w.preimage_sql, analysis.kind) {
        (Some(sql), StatementKind::Update | StatementKind::Delete) => {
            let values: Option<Vec<_>> =
                stmt.values.as_ref().map(|v| w.where_params.iter().filter_map(|i| v.0.get(*i).cloned()).collect());
            let count_ok = values.as_ref().is_none_or(|v| v.len() == w.where_params.len());
            if count_ok {
                // At most `max_preimage_rows` (+1, to tell): past it the change is table-level
                // and nothing more is materialised.
                let limit = shared.cache.max_preimage_rows();
                let pre_stmt = Statement {
                    sql: limited_preimage(sql, limit),
                    values: values.map(sea_orm::sea_query::Values),
                    db_backend: shared.backend,
                };
                let rows = txn.query_all_raw(pre_stmt).await?;
                if rows.len() > limit { None } else { rows_of(&rows) }
            } else {
                None
            }
        }
        _ => None,
    };
    let stmt_sql = stmt.sql.clone();
    let output = run_write(txn, stmt, mode).await?;
    let (affected, returned) = match &output {
        Output::Exec(e) => (Some(e.rows_affected()), None),
        Output::Rows(r) => (Some(r.len() as u64), rows_of(r)),
    };
    let saved = match (&output, shared.cache.profiles().for_table(&w.table).cache_on_save.as_ref()) {
        (Output::Rows(r), Some(column)) if matches!(analysis.kind, StatementKind::Insert | StatementKind::Update) => {
            convert::convert_rows(r)
                .unwrap_or_default()
                .into_iter()
                .map(|row| Saved { table: w.table.clone(), column: column.clone(), row })
                .collect()
        }
        _ => Vec::new(),
    };
    let mut changes = vec![target_change(w, analysis.kind, pre, affected, returned)];
    for t in &w.extra_tables {
        changes.push(TableChange::table(t.clone()));
    }
    if writes_beyond_rows(shared, analysis) {
        // Triggers, rules, a view or an unknown table: what else changes is not known, so the
        // lease (taken before COMMIT) and the invalidation cover the namespace.
        let mut named = vec![w.table.clone()];
        named.extend(analysis.reads.tables().map(str::to_owned));
        changes.extend(namespace_changes(shared, &named));
    }
    // TRUNCATE reports no affected rows.
    let every_fk = truncates_cascade(&stmt_sql);
    if matches!(analysis.kind, StatementKind::Update | StatementKind::Delete) && (affected != Some(0) || every_fk) {
        let deleting = analysis.kind == StatementKind::Delete;
        let mut tables = vec![w.table.clone()];
        tables.extend(w.extra_tables.iter().cloned());
        for t in tables {
            for child in shared.fks.affected(txn, &t, deleting, every_fk).await? {
                changes.push(TableChange::table(child));
            }
        }
    }
    Ok((output, changes, saved))
}

/// The pre-image with `LIMIT limit + 1` (before its `FOR UPDATE`).
fn limited_preimage(sql: &str, limit: usize) -> String {
    let n = limit.saturating_add(1);
    match sql.strip_suffix(" FOR UPDATE") {
        Some(head) => format!("{head} LIMIT {n} FOR UPDATE"),
        None => format!("{sql} LIMIT {n}"),
    }
}

fn statement_rows(w: &WriteTarget) -> Vec<Row> {
    w.rows
        .iter()
        .map(|vals| {
            w.columns.iter().zip(vals).filter_map(|(c, v)| v.as_ref().map(|v| (c.clone(), v.clone()))).collect()
        })
        .collect()
}

fn target_change(
    w: &WriteTarget,
    kind: StatementKind,
    pre: Option<Vec<Row>>,
    affected: Option<u64>,
    returned: Option<Vec<Row>>,
) -> TableChange {
    let table = w.table.clone();
    match kind {
        StatementKind::Insert => {
            if w.upsert || !w.values_known {
                return TableChange::table(table);
            }
            let mut rows = statement_rows(w);
            if let Some(ret) = returned {
                if ret.len() == rows.len() {
                    for (row, r) in rows.iter_mut().zip(ret) {
                        row.extend(r);
                    }
                } else {
                    rows.extend(ret);
                }
            }
            TableChange::rows(table, rows)
        }
        StatementKind::Update => {
            let Some(old) = pre else { return TableChange::table(table) };
            if affected.is_none_or(|n| n > old.len() as u64) {
                // Rows committed after the pre-image matched too: their old values are unknown.
                return TableChange::table(table);
            }
            let assigned = statement_rows(w).into_iter().next().unwrap_or_default();
            let unknown: Vec<&String> = w.columns.iter().filter(|c| !assigned.contains_key(c.as_str())).collect();
            // New rows: the old rows with the assignments applied (columns set from expressions
            // unknown), then what RETURNING reported on top: whole rows replace them, a partial
            // RETURNING of a single row is overlaid (several partial rows cannot be matched up).
            let mut new_rows: Vec<Row> = old
                .iter()
                .map(|o| {
                    let mut n = o.clone();
                    for c in &unknown {
                        n.remove(c.as_str());
                    }
                    n.extend(assigned.clone());
                    n
                })
                .collect();
            if let Some(ret) = returned {
                let whole = ret.iter().all(|r| old.first().is_none_or(|o| o.keys().all(|k| r.contains_key(k))));
                if whole && ret.len() == old.len() {
                    new_rows = ret;
                } else if ret.len() == 1
                    && let (Some(n), Some(r)) = (new_rows.first_mut(), ret.into_iter().next())
                    && old.len() == 1
                {
                    n.extend(r);
                }
            }
            let mut rows = old;
            rows.extend(new_rows);
            TableChange::rows(table, rows)
        }
        StatementKind::Delete => {
            let Some(old) = pre else { return TableChange::table(table) };
            if affected.is_none_or(|n| n > old.len() as u64) {
                return TableChange::table(table);
            }
            TableChange::rows(table, old)
        }
        _ => TableChange::table(table),
    }
}

/// Marks all changes on a lease.
/// Marks all changes, on one lease per prefix. Returns the leases (to be finished whatever
/// happens) and whether every mark succeeded.
pub(crate) async fn mark_all(shared: &Shared, changes: Vec<TableChange>) -> (Vec<WriteLease>, Result<(), DbErr>) {
    // One lease (and one backend call) per prefix.
    let mut groups: Vec<(String, Cache, Vec<TableChange>)> = Vec::new();
    for c in changes {
        let cache = match shared.cache_for(&[c.table_name()]) {
            Ok(Some(cache)) => cache,
            Ok(None) => shared.cache.clone(),
            Err(e) => return (Vec::new(), Err(e)),
        };
        let base = cache.keys().base().to_owned();
        match groups.iter_mut().find(|(b, _, _)| *b == base) {
            Some((_, _, v)) => v.push(c),
            None => groups.push((base, cache, vec![c])),
        }
    }
    let mut leases = Vec::with_capacity(groups.len());
    for (_, cache, changes) in groups {
        let mut lease = cache.write_lease();
        let res = lease.mark_many(changes).await;
        leases.push(lease);
        if let Err(e) = res {
            return (leases, Err(err(e)));
        }
    }
    (leases, Ok(()))
}

/// Finishes every lease (after COMMIT or ROLLBACK, or after an autocommit statement); the first
/// error is returned once all are finished.
pub(crate) async fn finish_all(leases: Vec<WriteLease>) -> Result<(), DbErr> {
    let mut first = Ok(());
    for lease in leases {
        if let Err(e) = lease.finish().await {
            first = first.and(Err(err(e)));
        }
    }
    first
}

/// A namespace-level change: every table the catalog knows, and `named`, at table level. What
/// a statement whose effects cannot be bounded leases before it runs.
pub(crate) fn namespace_changes(shared: &Shared, named: &[String]) -> Vec<TableChange> {
    let catalog = shared.cache.catalog().snapshot();
    let mut tables: std::collections::BTreeSet<String> = catalog.table_names().map(str::to_owned).collect();
    tables.extend(named.iter().cloned());
    tables.into_iter().map(TableChange::table).collect()
}

/// A row a write saved, for `cache_on_save`.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    table: String,
    /// The column gets are keyed on (`""`: `id`, else the first column).
    column: String,
    row: CachedRow,
}

/// `cache_on_save`: after the write committed, caches the saved rows for the next
/// `find_by_id(..).one()` (or `filter(column.eq(..)).one()`), by running that very read through
/// the cache right away (a normal miss: stamps first, then the database, so it is as safe as
/// any read). The statement is built the way SeaORM builds it, so the next get hits.
pub(crate) async fn cache_saved<C: ConnectionTrait>(shared: &Shared, conn: &C, saved: Vec<Saved>) -> Result<(), DbErr> {
    if !cfg!(feature = "transparent") {
        return Ok(()); // rows are not cached (see `say_rows_are_not_cached`)
    }
    use sea_orm::sea_query::{
        Alias, Expr, ExprTrait, MysqlQueryBuilder, PostgresQueryBuilder, Query, SqliteQueryBuilder,
    };
    for s in saved {
        let column = if s.column.is_empty() {
            if s.row.columns.iter().any(|c| c == "id") {
                "id".to_owned()
            } else {
                s.row.columns.first().cloned().unwrap_or_default()
            }
        } else {
            s.column.clone()
        };
        let Some(pos) = s.row.columns.iter().position(|c| *c == column) else { continue };
        let Some(value) = s.row.values.get(pos).cloned() else { continue };
        let table = Alias::new(s.table.as_str());
        let mut q = Query::select();
        for c in &s.row.columns {
            q.column((table.clone(), Alias::new(c.as_str())));
        }
        q.from(table.clone()).and_where(Expr::col((table.clone(), Alias::new(column.as_str()))).eq(value)).limit(1);
        let (sql, values) = match shared.backend {
            DbBackend::Postgres => q.build(PostgresQueryBuilder),
            DbBackend::Sqlite => q.build(SqliteQueryBuilder),
            _ => q.build(MysqlQueryBuilder),
        };
        let stmt = Statement { sql, values: Some(values), db_backend: shared.backend };
        let options = crate::scope::CacheOptions::default();
        crate::scope::cached(options, read(shared, conn, stmt, ReadMode::One, true)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cacheops::Value;

    #[test]
    fn plan_keys_tell_statements_and_binds_apart() {
        let k = PlanMemo::key;
        assert_ne!(k("SELECT 1", &[Value::Int(1)]), k("SELECT 1", &[Value::Text("1".into())]));
        assert_ne!(k("SELECT $1", &[Value::Int(1)]), k("SELECT $", &[Value::Int(1)]));
        assert_ne!(k("SELECT", &[Value::Text("a".into()), Value::Null]), k("SELECT", &[Value::Text("a".into())]));
        assert_eq!(k("SELECT", &[Value::Int(7)]), k("SELECT", &[Value::Int(7)]));
    }

    #[test]
    fn plan_memo_is_bounded() {
        let memo = PlanMemo::default();
        let analyzer = Analyzer::new(AnalyzerConfig::default());
        let a = analyzer.analyze("SELECT * FROM post WHERE id = $1", &[Value::Int(1)]).expect("analysis");
        let plan = Arc::new(ReadPlan::new(a));
        for i in 0..(PLAN_MEMO_ENTRIES as i64 * 2 + 3) {
            let key = PlanMemo::key("SELECT * FROM post WHERE id = $1", &[Value::Int(i)]);
            memo.insert(key.clone(), Arc::clone(&plan));
            assert!(memo.get(&key, 0).is_some());
            assert!(memo.lock().len() <= PLAN_MEMO_ENTRIES);
        }
    }

    #[test]
    fn plan_memo_is_bounded_in_bytes() {
        let memo = PlanMemo::default();
        let analyzer = Analyzer::new(AnalyzerConfig::default());
        let a = analyzer.analyze("SELECT * FROM post WHERE id = $1", &[Value::Int(1)]).expect("analysis");
        let plan = Arc::new(ReadPlan::new(a));
        let big = "x".repeat(1 << 20);
        for i in 0..30 {
            memo.insert(PlanMemo::key(&big, &[Value::Int(i)]), Arc::clone(&plan));
            let bytes = memo.bytes.load(std::sync::atomic::Ordering::Relaxed);
            assert!(bytes <= PLAN_MEMO_BYTES, "{bytes}");
            assert_eq!(bytes, memo.lock().keys().map(|k| PlanMemo::cost(k)).sum::<usize>());
        }
        assert!(memo.lock().len() < 30);
    }

    #[test]
    fn plan_memo_empties_when_the_catalog_changes() {
        let memo = PlanMemo::default();
        let analyzer = Analyzer::new(AnalyzerConfig::default());
        let a = analyzer.analyze("SELECT * FROM post WHERE id = $1", &[Value::Int(1)]).expect("analysis");
        let key = PlanMemo::key("SELECT * FROM post WHERE id = $1", &[Value::Int(1)]);
        memo.insert(key.clone(), Arc::new(ReadPlan::new(a)));
        assert!(memo.get(&key, 0).is_some());
        assert!(memo.get(&key, 1).is_none());
        assert!(memo.lock().is_empty());
    }
}
