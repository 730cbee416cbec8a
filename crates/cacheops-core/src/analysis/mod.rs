//! SQL analysis: statement kind, tables read, and per-table DNFs of equality conditions.
//! (Stub: being implemented.)

use std::collections::BTreeSet;

use crate::dnf::{Dependencies, Dnf};
use crate::value::Value;

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
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            dialect: Dialect::PostgreSql,
            in_list_cap: 8,
            dnf_cap: 64,
            skip_columns: BTreeSet::new(),
            memo_capacity: 4096,
        }
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
}

/// Why a statement could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The SQL text did not parse.
    #[error("cannot parse SQL: {0}")]
    Parse(String),
}

/// Analyses SQL statements; memoises parses per SQL text.
#[derive(Debug)]
pub struct Analyzer {
    config: AnalyzerConfig,
}

impl Analyzer {
    /// Creates an analyzer.
    pub fn new(config: AnalyzerConfig) -> Self {
        Analyzer { config }
    }

    /// The configuration.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// Analyses one statement.
    pub fn analyze(&self, sql: &str, _params: &[Value]) -> Result<Analysis, AnalysisError> {
        Err(AnalysisError::Parse(format!("analysis not implemented yet: {sql}")))
    }
}

#[allow(dead_code)]
fn _unused(_: Dnf) {}
