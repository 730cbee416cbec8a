//! SQL analysis: statement kind, tables read, and per-table DNFs of equality conditions.
//!
//! [`Analyzer::analyze`] parses a statement with `sqlparser` (pinned), memoises a *template* of
//! the analysis per SQL text, and evaluates the template against the bind values. The rules are
//! documented in `docs/analysis.md`; in short they follow django-cacheops: `=`, `IN (…)` below a
//! cap, `= ANY($n)` and `IS NULL` narrow a table's dependency, anything else is "no constraint".

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::dnf::{Dependencies, Dnf};
use crate::equality::Catalog;
use crate::value::Value;

mod build;
mod shape;
mod template;

pub use shape::ReadShape;

use template::{Caps, Template};

/// SQL dialect of the statements given to the analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL (`$n` placeholders).
    PostgreSql,
    /// SQLite (`?`, `?NNN`, `$n` placeholders).
    Sqlite,
    /// MySQL / MariaDB (`?` placeholders).
    MySql,
}

/// Analyzer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AnalyzerConfig {
    /// SQL dialect.
    pub dialect: Dialect,
    /// `IN (…)` / `= ANY(…)` lists with at least this many values become table-level.
    pub in_list_cap: usize,
    /// A table DNF with more conjs than this collapses to table level.
    pub dnf_cap: usize,
    /// Columns that never narrow invalidation: `"column"` (any table) or `"table.column"`.
    pub skip_columns: BTreeSet<String>,
    /// Number of distinct SQL texts whose parse is memoised.
    pub memo_capacity: usize,
    /// Memory the memo may use, in bytes (estimated per entry from its SQL text: see
    /// [`memo_cost`]); least recently used entries go first. Default 64 MiB.
    pub memo_bytes: usize,
}

/// The memo's estimate of what one entry costs: the template keeps the SQL text and several
/// renderings of its parts, plus the evaluated trees.
pub fn memo_cost(sql: &str) -> usize {
    memo_cost_bytes(sql.len())
}

/// [`memo_cost`] of a text of `len` bytes.
pub fn memo_cost_bytes(len: usize) -> usize {
    len.saturating_mul(6).saturating_add(1024)
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            dialect: Dialect::PostgreSql,
            in_list_cap: 8,
            dnf_cap: 64,
            skip_columns: BTreeSet::new(),
            memo_capacity: 4096,
            memo_bytes: 64 << 20,
        }
    }
}

impl AnalyzerConfig {
    /// The default configuration for a dialect.
    pub fn new(dialect: Dialect) -> Self {
        AnalyzerConfig { dialect, ..AnalyzerConfig::default() }
    }
}

/// What kind of statement was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `WITH … SELECT`, set operations.
    Read,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE` or `TRUNCATE`.
    Delete,
    /// Anything else.
    Other,
}

/// The result of analysing one statement with its bind values.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Analysis {
    /// Statement kind.
    pub kind: StatementKind,
    /// Every table read, with its DNF.
    pub reads: Dependencies,
    /// For writes: the target.
    pub write: Option<WriteTarget>,
    /// The statement locks rows (`SELECT … FOR UPDATE/SHARE`): callers should not cache it.
    pub locking: bool,
    /// The statement calls a volatile function (`now()`, `random()`, `nextval()`, …), has
    /// `SELECT … INTO`, or modifies data inside a read (data-modifying CTE): callers should not
    /// cache its result.
    pub volatile: bool,
    /// For reads: what the result is (rows, a count, aggregates, an existence check).
    pub shape: ReadShape,
    /// The functions the statement calls (names folded like identifiers, at most 64).
    pub functions: Vec<String>,
    /// The schema (database) qualifiers of the tables it names (`blog` of `blog.post`; folded,
    /// at most 64). Table names drop them, so a caller that knows only some schemas' tables
    /// must not attribute statements that name others.
    pub schemas: Vec<String>,
}

/// The target of a write statement.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WriteTarget {
    /// Target table.
    pub table: String,
    /// Columns given values (INSERT column list, UPDATE SET columns).
    pub columns: Vec<String>,
    /// Values per row, aligned with `columns`; `None` where not a literal or parameter.
    pub rows: Vec<Vec<Option<Value>>>,
    /// The WHERE DNF on the target table (UPDATE/DELETE); `Dnf::any()` when unconstrained.
    pub filter: Dnf,
    /// RETURNING columns, if any (`"*"` for all).
    pub returning: Option<Vec<String>>,
    /// Whether `rows` holds the inserted/updated values: `false` for `INSERT … SELECT` (rows is
    /// empty: the new rows are unknown, invalidate the table), for TRUNCATE and for DELETE.
    pub values_known: bool,
    /// The INSERT may update an existing row (`ON CONFLICT … DO UPDATE`, `ON DUPLICATE KEY
    /// UPDATE`, `REPLACE INTO`, `INSERT OR REPLACE`): the pre-image of the conflicting row is
    /// unknown, so it must be fetched by `conflict_columns` or the table invalidated.
    pub upsert: bool,
    /// Columns set by the upsert's update part (`DO UPDATE SET` / `ON DUPLICATE KEY UPDATE`).
    pub upsert_columns: Vec<String>,
    /// `ON CONFLICT (cols)` target columns, if given.
    pub conflict_columns: Vec<String>,
    /// Other tables written by the same statement (`TRUNCATE a, b`, MySQL multi-table
    /// `DELETE a, b FROM …`): invalidate them at table level.
    pub extra_tables: Vec<String>,
    /// The WHERE expression of an UPDATE/DELETE re-rendered by sqlparser, placeholders unchanged.
    pub where_sql: Option<String>,
    /// For each placeholder of `where_sql` in textual order, the index into the bind values it
    /// refers to (`UPDATE t SET a = ? WHERE id = ?` → `[1]`; `WHERE id = $2 OR p = $2` → `[1, 1]`).
    pub where_params: Vec<usize>,
    /// The target table reference as written, with its alias (`post AS p`), for building a
    /// pre-image query.
    pub target_sql: String,
    /// A ready pre-image query for single-table UPDATE/DELETE with a WHERE:
    /// `SELECT * FROM <target_sql> WHERE <where> FOR UPDATE` (no `FOR UPDATE` on SQLite), whose
    /// placeholders are renumbered in order (`$1..` / `?1..` / `?`) so that its i-th parameter
    /// is `params[where_params[i]]`. `None` when there is no WHERE or other tables are involved.
    pub preimage_sql: Option<String>,
}

/// Why a statement could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The SQL text did not parse.
    #[error("cannot parse SQL: {0}")]
    Parse(String),
    /// The text holds zero or several statements.
    #[error("expected exactly one SQL statement, found {0}")]
    NotOneStatement(usize),
    /// A placeholder refers to a bind value that was not given.
    #[error("placeholder refers to parameter {} but only {len} were given", index + 1)]
    ParamOutOfRange {
        /// 0-based index of the missing parameter.
        index: usize,
        /// Number of parameters given.
        len: usize,
    },
    /// The statement is too large or too deeply chained to analyse safely.
    #[error("SQL statement too complex to analyse")]
    TooComplex,
}

/// The memo: templates by SQL text, LRU, bounded in entries and in (estimated) bytes.
struct Memo {
    map: lru::LruCache<String, Arc<Result<Template, AnalysisError>>>,
    bytes: usize,
    max_bytes: usize,
}

impl Memo {
    fn get(&mut self, sql: &str) -> Option<&Arc<Result<Template, AnalysisError>>> {
        self.map.get(sql)
    }

    fn put(&mut self, sql: String, t: Arc<Result<Template, AnalysisError>>) {
        let cost = memo_cost(&sql);
        if cost > self.max_bytes {
            return; // never memoised: it would push everything else out
        }
        if let Some((old, _)) = self.map.push(sql.clone(), t) {
            // `push` returns the replaced or evicted entry.
            self.bytes = self.bytes.saturating_sub(memo_cost(&old));
        }
        self.bytes = self.bytes.saturating_add(cost);
        while self.bytes > self.max_bytes {
            match self.map.pop_lru() {
                Some((old, _)) => self.bytes = self.bytes.saturating_sub(memo_cost(&old)),
                None => {
                    self.bytes = 0;
                    break;
                }
            }
        }
    }
}

/// Analyses SQL statements; memoises a template of the analysis per SQL text.
///
/// `Analyzer` is `Send + Sync`: share one per database. The first call for a SQL text parses it
/// (tens of microseconds); later calls with the same text only substitute the bind values.
///
/// ```
/// use cacheops_core::{Analyzer, AnalyzerConfig, StatementKind, Value};
///
/// let analyzer = Analyzer::new(AnalyzerConfig::default());
/// let sql = "SELECT * FROM post p JOIN category c ON p.category_id = c.id WHERE c.id = $1";
/// let a = analyzer.analyze(sql, &[Value::Int(3)]).unwrap();
/// assert_eq!(a.kind, StatementKind::Read);
/// let post = a.reads.get("post").unwrap();
/// assert_eq!(post.conjs()[0].rendered(), "category_id=3");
/// assert_eq!(a.reads.get("category").unwrap().conjs()[0].rendered(), "id=3");
///
/// // Same text, other values: a memo hit, no parsing.
/// let b = analyzer.analyze(sql, &[Value::Int(4)]).unwrap();
/// assert_eq!(b.reads.get("post").unwrap().conjs()[0].rendered(), "category_id=4");
/// assert_eq!(analyzer.memo_stats(), (1, 1));
///
/// // Writes describe their target.
/// let w = analyzer.analyze("UPDATE post SET title = $1 WHERE id = $2", &["x".into(), Value::Int(7)]).unwrap();
/// let target = w.write.unwrap();
/// assert_eq!(target.table, "post");
/// assert_eq!(target.filter.conjs()[0].rendered(), "id=7");
/// assert_eq!(target.preimage_sql.as_deref(), Some("SELECT * FROM post WHERE id = $1 FOR UPDATE"));
/// assert_eq!(target.where_params, vec![1]);
/// ```
pub struct Analyzer {
    config: AnalyzerConfig,
    catalog: Arc<Catalog>,
    memo: Option<Mutex<Memo>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("config", &self.config)
            .field("memo_stats", &self.memo_stats())
            .finish_non_exhaustive()
    }
}

/// Longest chain of binary operators accepted: sqlparser's AST is recursive, and dropping or
/// walking a left-deep chain of tens of thousands of `AND`s could overflow the stack.
const MAX_OPERATORS: usize = 8000;

/// Tokens that can chain into left-deep expression trees.
fn is_operator(t: &sqlparser::tokenizer::Token) -> bool {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::Token;
    match t {
        Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::IS),
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::Comma
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::Placeholder(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::EOF => false,
        _ => true,
    }
}

/// Longest SQL text accepted (bytes).
const MAX_SQL_LEN: usize = 4 << 20;

pub(crate) fn sp_dialect(d: Dialect) -> Box<dyn sqlparser::dialect::Dialect> {
    match d {
        Dialect::PostgreSql => Box::new(sqlparser::dialect::PostgreSqlDialect {}),
        Dialect::Sqlite => Box::new(sqlparser::dialect::SQLiteDialect {}),
        Dialect::MySql => Box::new(sqlparser::dialect::MySqlDialect {}),
    }
}

impl Analyzer {
    /// Creates an analyzer with an [untyped](Catalog::untyped) catalog: values are compared by
    /// [`Value::render`], which is not the database's equality (for tools and tests). A cache
    /// uses [`Analyzer::with_catalog`]. A `memo_capacity` of 0 disables memoisation.
    pub fn new(config: AnalyzerConfig) -> Self {
        Analyzer::with_catalog(config, Arc::new(Catalog::untyped()))
    }

    /// Creates an analyzer whose conditions narrow by the column classes of `catalog`
    /// ([`crate::equality`]).
    pub fn with_catalog(config: AnalyzerConfig, catalog: Arc<Catalog>) -> Self {
        let memo = NonZeroUsize::new(config.memo_capacity)
            .map(|c| Mutex::new(Memo { map: lru::LruCache::new(c), bytes: 0, max_bytes: config.memo_bytes }));
        Analyzer { config, catalog, memo, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The catalog of column classes.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The configuration.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// The memo's size: `(entries, estimated bytes)`.
    pub fn memo_size(&self) -> (usize, usize) {
        self.memo.as_ref().and_then(|m| m.lock().ok().map(|m| (m.map.len(), m.bytes))).unwrap_or((0, 0))
    }

    /// Memo statistics: `(hits, misses)` since creation.
    pub fn memo_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Analyses one statement with its bind values (`$n` → `params[n-1]`, `?` → positional).
    ///
    /// Errors: the text does not parse, holds zero or several statements, is too complex, or a
    /// placeholder refers to a missing parameter. Never panics.
    pub fn analyze(&self, sql: &str, params: &[Value]) -> Result<Analysis, AnalysisError> {
        let template = self.template(sql);
        let caps = Caps::new(self.config.in_list_cap, self.config.dnf_cap);
        match template.as_ref() {
            Ok(t) => t.eval(params, caps, &self.catalog),
            Err(e) => Err(e.clone()),
        }
    }

    fn template(&self, sql: &str) -> Arc<Result<Template, AnalysisError>> {
        if let Some(memo) = &self.memo
            && let Ok(mut m) = memo.lock()
            && let Some(t) = m.get(sql)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(t);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(self.build(sql));
        if let Some(memo) = &self.memo
            && let Ok(mut m) = memo.lock()
        {
            m.put(sql.to_owned(), Arc::clone(&t));
        }
        t
    }

    fn build(&self, sql: &str) -> Result<Template, AnalysisError> {
        use sqlparser::tokenizer::Tokenizer;
        if sql.len() > MAX_SQL_LEN {
            return Err(AnalysisError::TooComplex);
        }
        let dialect = sp_dialect(self.config.dialect);
        let tokens = Tokenizer::new(dialect.as_ref(), sql)
            .tokenize_with_location()
            .map_err(|e| AnalysisError::Parse(e.to_string()))?;
        if tokens.iter().filter(|t| is_operator(&t.token)).count() > MAX_OPERATORS {
            return Err(AnalysisError::TooComplex);
        }
        let params = build::ParamMap::new(dialect.as_ref(), sql);
        let statements = sqlparser::parser::Parser::new(dialect.as_ref())
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .map_err(|e| AnalysisError::Parse(e.to_string()))?;
        let [statement] = statements.as_slice() else {
            return Err(AnalysisError::NotOneStatement(statements.len()));
        };
        Ok(build::with_dialect(self.config.dialect, || build::Builder::new(&self.config, params).build(statement)))
    }
}

/// The tables a view's definition reads: `definition` is its query (PostgreSQL's
/// `pg_get_viewdef`, MySQL's `VIEW_DEFINITION`) or a whole `CREATE VIEW` (SQLite). `None` when
/// it cannot be analysed or calls volatile functions.
///
/// ```
/// use cacheops_core::analysis::definition_reads;
/// use cacheops_core::Dialect;
/// let t = definition_reads(Dialect::Sqlite, "CREATE VIEW v AS SELECT p.* FROM post p JOIN category c ON c.id = p.category_id").unwrap();
/// assert_eq!(t, vec!["category".to_owned(), "post".to_owned()]);
/// ```
pub fn definition_reads(dialect: Dialect, definition: &str) -> Option<Vec<String>> {
    use sqlparser::ast::Statement;
    if definition.len() > MAX_SQL_LEN {
        return None;
    }
    let d = sp_dialect(dialect);
    let text = definition.trim().trim_end_matches(';');
    let query = match sqlparser::parser::Parser::parse_sql(d.as_ref(), text).ok()?.as_slice() {
        [Statement::CreateView(v)] => v.query.to_string(),
        [Statement::Query(_)] => text.to_owned(),
        _ => return None,
    };
    let analysis =
        Analyzer::new(AnalyzerConfig { memo_capacity: 0, ..AnalyzerConfig::new(dialect) }).analyze(&query, &[]).ok()?;
    if analysis.volatile || analysis.write.is_some() {
        return None;
    }
    Some(analysis.reads.tables().map(str::to_owned).collect())
}

/// The explicit `COLLATE` of each column of a `CREATE TABLE` statement (names folded as the
/// analysis folds them, collations upper-cased): SQLite keeps collations only in the table's
/// SQL text. `None` when the text is not one `CREATE TABLE`.
///
/// ```
/// use cacheops_core::analysis::column_collations;
/// use cacheops_core::Dialect;
/// let c = column_collations(Dialect::Sqlite, "CREATE TABLE t (a TEXT COLLATE nocase, b TEXT)").unwrap();
/// assert_eq!(c.get("a").map(String::as_str), Some("NOCASE"));
/// assert!(c.get("b").is_none());
/// ```
pub fn column_collations(dialect: Dialect, create_sql: &str) -> Option<std::collections::BTreeMap<String, String>> {
    use sqlparser::ast::{ColumnOption, Statement};
    if create_sql.len() > MAX_SQL_LEN {
        return None;
    }
    let d = sp_dialect(dialect);
    let statements = sqlparser::parser::Parser::parse_sql(d.as_ref(), create_sql).ok()?;
    let [Statement::CreateTable(ct)] = statements.as_slice() else { return None };
    build::with_dialect(dialect, || {
        let mut out = std::collections::BTreeMap::new();
        for col in &ct.columns {
            for opt in &col.options {
                if let ColumnOption::Collation(name) = &opt.option {
                    out.insert(build::ident(&col.name), name.to_string().trim_matches('"').to_ascii_uppercase());
                }
            }
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn analyzer_is_send_sync() {
        assert_send_sync::<Analyzer>();
    }
}
