use crate::{ExecResult, ExecResultHolder, QueryResult, QueryResultRow, Statement, error::*};

use sea_query::{Value, ValueType};
use std::{collections::BTreeMap, fmt::Debug, ops::ControlFlow, sync::Arc};

/// Defines the [ProxyDatabaseTrait] to save the functions
#[async_trait::async_trait]
pub trait ProxyDatabaseTrait: Send + Sync + Debug {
    /// Execute a query in the [ProxyDatabase], and return the query results
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr>;

    /// Execute a command in the [ProxyDatabase], and report the number of rows affected
    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr>;

    /// Begin a transaction in the [ProxyDatabase]
    async fn begin(&self) {}

    /// Commit a transaction in the [ProxyDatabase]
    async fn commit(&self) {}

    /// Rollback a transaction in the [ProxyDatabase]
    async fn rollback(&self) {}

    /// Start rollback a transaction in the [ProxyDatabase]
    fn start_rollback(&self) {}

    /// Ping the [ProxyDatabase], it should return an error if the database is not available
    async fn ping(&self) -> Result<(), DbErr> {
        Ok(())
    }
}

/// Defines the results obtained from a [ProxyDatabase]
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProxyExecResult {
    /// The last inserted id on auto-increment
    pub last_insert_id: u64,
    /// The number of rows affected by the database operation
    pub rows_affected: u64,
}

impl ProxyExecResult {
    /// Create a new [ProxyExecResult] from the last inserted id and the number of rows affected
    pub fn new(last_insert_id: u64, rows_affected: u64) -> Self {
        Self {
            last_insert_id,
            rows_affected,
        }
    }
}

impl Default for ExecResultHolder {
    fn default() -> Self {
        Self::Proxy(ProxyExecResult::default())
    }
}

impl From<ProxyExecResult> for ExecResult {
    fn from(result: ProxyExecResult) -> Self {
        Self {
            result: ExecResultHolder::Proxy(result),
        }
    }
}

impl From<ExecResult> for ProxyExecResult {
    fn from(result: ExecResult) -> Self {
        match result.result {
            #[cfg(feature = "sqlx-mysql")]
            ExecResultHolder::SqlxMySql(result) => Self {
                last_insert_id: result.last_insert_id(),
                rows_affected: result.rows_affected(),
            },
            #[cfg(feature = "sqlx-postgres")]
            ExecResultHolder::SqlxPostgres(result) => Self {
                last_insert_id: 0,
                rows_affected: result.rows_affected(),
            },
            #[cfg(feature = "sqlx-sqlite")]
            ExecResultHolder::SqlxSqlite(result) => Self {
                last_insert_id: result.last_insert_rowid() as u64,
                rows_affected: result.rows_affected(),
            },
            #[cfg(feature = "mock")]
            ExecResultHolder::Mock(result) => Self {
                last_insert_id: result.last_insert_id,
                rows_affected: result.rows_affected,
            },
            ExecResultHolder::Proxy(result) => result,
        }
    }
}

/// Defines the structure of a Row for the [ProxyDatabase]
/// which is just a [BTreeMap]<[String], [Value]>
///
/// A row additionally remembers the original column
/// (select) order, so positional access (`try_get_by_index`, `into_tuple()`)
/// returns the right column. Rows built with [ProxyRow::new] / `From<BTreeMap>`
/// have no recorded order and fall back to the (alphabetical) map order.
///
/// rows built with [ProxyRow::with_shared_columns] keep their values
/// by position against column names shared by all rows of a result (no map,
/// no per-row copy of the names); their `values` map is empty. Every method of
/// this type, `QueryResult`'s getters and the conversions into a map / pairs /
/// JSON read both kinds alike.
#[derive(Clone, Default)]
pub struct ProxyRow {
    /// The values of the single row (empty for rows built with
    /// [ProxyRow::with_shared_columns]; read those with the methods).
    pub values: BTreeMap<String, Value>,
    /// Column names in select order; empty = use map order.
    order: Vec<String>,
    /// Positional values against shared column names (see [ProxyRow::with_shared_columns]).
    shared: Option<SharedValues>,
}

/// The values of a row built with [ProxyRow::with_shared_columns].
#[derive(Clone)]
struct SharedValues {
    columns: Arc<ProxyColumns>,
    values: Vec<Value>,
}

/// Column names in select order, shared by the rows of one result
/// (see [ProxyRow::with_shared_columns]). Validated once: no duplicates.
#[derive(Clone, Debug)]
pub struct ProxyColumns {
    names: Vec<String>,
    /// Positions into `names`, sorted by name, for the binary search of rows with
    /// more than `LINEAR_LOOKUP_MAX` columns (empty otherwise: linear scan).
    sorted: Vec<usize>,
}

/// Up to this many columns a name is looked up by a linear scan.
const LINEAR_LOOKUP_MAX: usize = 16;

impl ProxyColumns {
    /// Column names in select order; `Err` on a duplicate name (a row could not
    /// tell the two columns apart by name).
    pub fn new(names: Vec<String>) -> Result<Self, DbErr> {
        let sorted = if names.len() <= LINEAR_LOOKUP_MAX {
            Vec::new()
        } else {
            let mut sorted: Vec<usize> = (0..names.len()).collect();
            sorted.sort_unstable_by(|&a, &b| names[a].cmp(&names[b]));
            sorted
        };
        if let Some(name) = Self::first_duplicate(&names, &sorted) {
            return Err(type_err(format!(
                "duplicate column name `{name}` cannot be represented in a ProxyRow"
            )));
        }
        Ok(Self { names, sorted })
    }

    /// A name that occurs twice: pairwise for few names, else among neighbours in
    /// `sorted` order.
    fn first_duplicate<'a>(names: &'a [String], sorted: &[usize]) -> Option<&'a String> {
        if sorted.is_empty() {
            names
                .iter()
                .enumerate()
                .find(|(i, name)| names[..*i].contains(name))
                .map(|(_, name)| name)
        } else {
            sorted
                .windows(2)
                .find(|w| names[w[0]] == names[w[1]])
                .map(|w| &names[w[0]])
        }
    }

    /// Column names in select order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The select position of the column called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        if self.names.len() <= LINEAR_LOOKUP_MAX {
            self.names.iter().position(|n| n == name)
        } else {
            self.sorted
                .binary_search_by(|&i| self.names[i].as_str().cmp(name))
                .ok()
                .map(|at| self.sorted[at])
        }
    }
}

impl Debug for ProxyRow {
    /// Prints `ProxyRow { values, order }` (rows with shared columns print as
    /// the equivalent map row).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared {
            None => f
                .debug_struct("ProxyRow")
                .field("values", &self.values)
                .field("order", &self.order)
                .finish(),
            Some(shared) => {
                let values: BTreeMap<&String, &Value> =
                    shared.columns.names.iter().zip(&shared.values).collect();
                f.debug_struct("ProxyRow")
                    .field("values", &values)
                    .field("order", &shared.columns.names)
                    .finish()
            }
        }
    }
}

impl ProxyRow {
    /// Create a new [ProxyRow] from a [BTreeMap]<[String], [Value]>
    /// (positional access uses alphabetical order).
    pub fn new(values: BTreeMap<String, Value>) -> Self {
        Self {
            values,
            order: Vec::new(),
            shared: None,
        }
    }

    /// Create a [ProxyRow] whose positional access follows `order`.
    ///
    /// `order` must name every key of `values` exactly once (an empty `order`
    /// means "map order"); otherwise an error is returned.
    pub fn with_order(values: BTreeMap<String, Value>, order: Vec<String>) -> Result<Self, DbErr> {
        if !order.is_empty() {
            if order.len() != values.len() {
                return Err(type_err(format!(
                    "ProxyRow::with_order: {} column names for {} values",
                    order.len(),
                    values.len()
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            for name in &order {
                if !values.contains_key(name) {
                    return Err(type_err(format!(
                        "ProxyRow::with_order: column `{name}` has no value"
                    )));
                }
                if !seen.insert(name.as_str()) {
                    return Err(type_err(format!(
                        "ProxyRow::with_order: duplicate column name `{name}`"
                    )));
                }
            }
        }
        Ok(Self {
            values,
            order,
            shared: None,
        })
    }

    /// Build a [ProxyRow] from `(column, value)` pairs in select order.
    /// Returns an error on duplicate column names (a map cannot hold them).
    pub fn try_from_ordered(pairs: Vec<(String, Value)>) -> Result<Self, DbErr> {
        let mut values = BTreeMap::new();
        let mut order = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            if values.contains_key(&name) {
                return Err(type_err(format!(
                    "duplicate column name `{name}` cannot be represented in a ProxyRow"
                )));
            }
            order.push(name.clone());
            values.insert(name, value);
        }
        Ok(Self {
            values,
            order,
            shared: None,
        })
    }

    /// Build a [ProxyRow] from values in select order against column names
    /// shared with other rows : no map is built and no name is copied,
    /// which makes rebuilding many rows of one result cheap. The row reads back
    /// like [ProxyRow::try_from_ordered] of the same pairs; its `values` map is
    /// empty. Returns an error if `values` and `columns` differ in length.
    pub fn with_shared_columns(columns: Arc<ProxyColumns>, values: Vec<Value>) -> Result<Self, DbErr> {
        if columns.len() != values.len() {
            return Err(type_err(format!(
                "ProxyRow::with_shared_columns: {} column names for {} values",
                columns.len(),
                values.len()
            )));
        }
        Ok(Self {
            values: BTreeMap::new(),
            order: Vec::new(),
            shared: Some(SharedValues { columns, values }),
        })
    }

    /// Column names in select order (map order if no order was recorded).
    pub fn column_names(&self) -> Vec<&str> {
        if let Some(shared) = &self.shared {
            shared.columns.names.iter().map(String::as_str).collect()
        } else if self.order.is_empty() {
            self.values.keys().map(String::as_str).collect()
        } else {
            self.order.iter().map(String::as_str).collect()
        }
    }

    /// The recorded select order (empty if none was recorded).
    pub fn order(&self) -> &[String] {
        match &self.shared {
            Some(shared) => &shared.columns.names,
            None => &self.order,
        }
    }

    /// `(column, value)` pairs in select order.
    pub fn to_ordered_pairs(&self) -> Vec<(String, Value)> {
        if let Some(shared) = &self.shared {
            return shared
                .columns
                .names
                .iter()
                .cloned()
                .zip(shared.values.iter().cloned())
                .collect();
        }
        self.column_names()
            .into_iter()
            .filter_map(|c| self.values.get(c).map(|v| (c.to_owned(), v.clone())))
            .collect()
    }

    /// The same row with its values in the public `values` map (a row with
    /// shared columns is converted; any other row is cloned as is).
    pub fn to_map_row(&self) -> ProxyRow {
        match &self.shared {
            None => self.clone(),
            Some(shared) => ProxyRow {
                values: shared
                    .columns
                    .names
                    .iter()
                    .cloned()
                    .zip(shared.values.iter().cloned())
                    .collect(),
                order: shared.columns.names.clone(),
                shared: None,
            },
        }
    }

    /// [ProxyRow::to_map_row], consuming the row (the values are moved).
    fn into_map_row(self) -> ProxyRow {
        match self.shared {
            None => self,
            Some(shared) => ProxyRow {
                values: shared.columns.names.iter().cloned().zip(shared.values).collect(),
                order: shared.columns.names.clone(),
                shared: None,
            },
        }
    }

    fn lookup<I: crate::ColIdx>(&self, index: I) -> Result<&Value, DbErr> {
        if let Some(name) = index.as_str() {
            self.lookup_name(name)
                .ok_or_else(|| query_err(format!("No column for ColIdx {name:?}")))
        } else if let Some(i) = index.as_usize() {
            self.lookup_position(*i)
                .ok_or_else(|| query_err(format!("Column at index {i} not found")))
        } else {
            Err(query_err("Missing ColIdx implementation for ProxyRow"))
        }
    }

    /// The value of the column called `name`.
    fn lookup_name(&self, name: &str) -> Option<&Value> {
        match &self.shared {
            Some(shared) => shared
                .columns
                .position(name)
                .and_then(|i| shared.values.get(i)),
            None => self.values.get(name),
        }
    }

    /// The value at select position `i` (map position if no order was recorded).
    fn lookup_position(&self, i: usize) -> Option<&Value> {
        match &self.shared {
            Some(shared) => shared.values.get(i),
            None if self.order.is_empty() => self.values.values().nth(i),
            None => self.order.get(i).and_then(|name| self.values.get(name)),
        }
    }

    /// `value` as a `T`: the value itself, else the first lossless equivalent
    /// (see `equiv`) that `T` accepts. Equivalents are produced one at a time
    /// and only until one fits (the first version of this patch built
    /// the whole list on every mismatching read).
    fn convert<T: ValueType>(value: &Value) -> Result<T, DbErr> {
        if let Ok(v) = T::try_from(value.clone()) {
            return Ok(v);
        }
        let mut found = None;
        crate::database::proxy::for_each_equivalent(value, &mut |alt| match T::try_from(alt) {
            Ok(v) => {
                found = Some(v);
                ControlFlow::Break(())
            }
            Err(_) => ControlFlow::Continue(()),
        });
        found.ok_or_else(|| {
            type_err(format!(
                "ProxyRow: cannot read {value:?} as {}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Used by `QueryResult`/`TryGetable` for proxy rows: a missing column or a
    /// NULL value is reported as `TryGetError::Null` (so `Option<T>` yields
    /// `None`), but a non-NULL value of the wrong type is a real error
    /// (upstream silently turned it into `None`).
    pub(crate) fn try_get_for_result<T: ValueType, I: crate::ColIdx>(
        &self,
        index: I,
    ) -> Result<T, crate::TryGetError> {
        let value = self
            .lookup(index)
            .map_err(|_| crate::TryGetError::Null(format!("{index:?}")))?;
        if *value == value.as_null() {
            return Err(crate::TryGetError::Null(format!("{index:?}")));
        }
        Self::convert(value).map_err(crate::TryGetError::DbErr)
    }
}

mod equiv {
    use sea_query::Value;
    use std::ops::ControlFlow;

    /// Hands `$v` to the visitor `$f`; returns from the enclosing function once
    /// the visitor has what it wants.
    macro_rules! emit {
        ($f:expr, $v:expr) => {
            if $f($v).is_break() {
                return;
            }
        };
    }

    /// Lossless re-encodings of a (non-null) value that the live drivers would
    /// also accept for the same column, e.g. an SQLite `INTEGER` (stored as
    /// `BigInt`) read as `i32`, or a `timestamptz` read as `DateTime<FixedOffset>`.
    /// Narrowing integer conversions are range-checked (like sqlx does).
    ///
    /// the equivalents are handed to `visit` one at a time, in a fixed
    /// order, until `visit` breaks (the first version of this patch returned them
    /// all in a `Vec`, built on every mismatching read).
    #[allow(unused_variables)]
    pub(crate) fn for_each_equivalent(value: &Value, visit: &mut dyn FnMut(Value) -> ControlFlow<()>) {
        let int: Option<i128> = match value {
            Value::TinyInt(Some(v)) => Some(*v as i128),
            Value::SmallInt(Some(v)) => Some(*v as i128),
            Value::Int(Some(v)) => Some(*v as i128),
            Value::BigInt(Some(v)) => Some(*v as i128),
            Value::TinyUnsigned(Some(v)) => Some(*v as i128),
            Value::SmallUnsigned(Some(v)) => Some(*v as i128),
            Value::Unsigned(Some(v)) => Some(*v as i128),
            Value::BigUnsigned(Some(v)) => Some(*v as i128),
            _ => None,
        };
        if let Some(n) = int {
            if let Ok(v) = i8::try_from(n) {
                emit!(visit, Value::TinyInt(Some(v)));
            }
            if let Ok(v) = i16::try_from(n) {
                emit!(visit, Value::SmallInt(Some(v)));
            }
            if let Ok(v) = i32::try_from(n) {
                emit!(visit, Value::Int(Some(v)));
            }
            if let Ok(v) = i64::try_from(n) {
                emit!(visit, Value::BigInt(Some(v)));
            }
            if let Ok(v) = u8::try_from(n) {
                emit!(visit, Value::TinyUnsigned(Some(v)));
            }
            if let Ok(v) = u16::try_from(n) {
                emit!(visit, Value::SmallUnsigned(Some(v)));
            }
            if let Ok(v) = u32::try_from(n) {
                emit!(visit, Value::Unsigned(Some(v)));
            }
            if let Ok(v) = u64::try_from(n) {
                emit!(visit, Value::BigUnsigned(Some(v)));
            }
            // sqlx (sqlite, mysql) decodes bool from an integer as `!= 0`
            emit!(visit, Value::Bool(Some(n != 0)));
        }
        match value {
            Value::Float(Some(f)) => emit!(visit, Value::Double(Some(*f as f64))),
            // sqlx-sqlite decodes f32 from REAL as `double as f32`
            Value::Double(Some(f)) => {
                emit!(visit, Value::Float(Some(*f as f32)));
                // sea-orm reads Decimal on SQLite as `Decimal::try_from(f64)`
                #[cfg(feature = "with-rust_decimal")]
                if let Ok(d) = rust_decimal::Decimal::try_from(*f) {
                    emit!(visit, Value::Decimal(Some(d)));
                }
            }
            #[cfg(feature = "with-json")]
            Value::String(Some(s)) => {
                // sqlx-sqlite decodes JSON from TEXT
                if let Ok(j) = serde_json::from_str::<serde_json::Value>(s) {
                    emit!(visit, Value::Json(Some(Box::new(j))));
                }
            }
            #[cfg(feature = "with-uuid")]
            Value::Bytes(Some(b)) => {
                // sqlx-sqlite decodes Uuid from a 16-byte BLOB
                if let Ok(u) = uuid::Uuid::from_slice(b) {
                    emit!(visit, Value::Uuid(Some(u)));
                }
            }
            #[cfg(feature = "with-chrono")]
            Value::ChronoDateTimeUtc(Some(dt)) => {
                emit!(visit, Value::ChronoDateTimeWithTimeZone(Some(dt.fixed_offset())));
                emit!(visit, Value::ChronoDateTimeLocal(Some(dt.with_timezone(&chrono::Local))));
                emit!(visit, Value::ChronoDateTime(Some(dt.naive_utc())));
                #[cfg(feature = "with-time")]
                if let Some(t) = chrono_to_offset_datetime(&dt.fixed_offset()) {
                    emit!(visit, Value::TimeDateTimeWithTimeZone(Some(t)));
                }
            }
            #[cfg(feature = "with-chrono")]
            Value::ChronoDateTime(Some(dt)) => {
                // sqlx-mysql reads DATETIME as DateTime<Utc> by assuming UTC
                let utc = dt.and_utc();
                emit!(visit, Value::ChronoDateTimeUtc(Some(utc)));
                emit!(visit, Value::ChronoDateTimeWithTimeZone(Some(utc.fixed_offset())));
                #[cfg(feature = "with-time")]
                if let Some(t) = chrono_to_primitive_datetime(dt) {
                    emit!(visit, Value::TimeDateTime(Some(t)));
                }
            }
            #[cfg(feature = "with-chrono")]
            Value::ChronoDateTimeWithTimeZone(Some(dt)) => {
                emit!(visit, Value::ChronoDateTimeUtc(Some(dt.with_timezone(&chrono::Utc))));
                emit!(visit, Value::ChronoDateTimeLocal(Some(dt.with_timezone(&chrono::Local))));
                emit!(visit, Value::ChronoDateTime(Some(dt.naive_local())));
                #[cfg(feature = "with-time")]
                if let Some(t) = chrono_to_offset_datetime(dt) {
                    emit!(visit, Value::TimeDateTimeWithTimeZone(Some(t)));
                }
            }
            #[cfg(all(feature = "with-chrono", feature = "with-time"))]
            Value::ChronoDate(Some(d)) => {
                if let Some(t) = chrono_to_time_date(d) {
                    emit!(visit, Value::TimeDate(Some(t)));
                }
            }
            #[cfg(all(feature = "with-chrono", feature = "with-time"))]
            Value::ChronoTime(Some(t)) => {
                if let Some(t) = chrono_to_time_time(t) {
                    emit!(visit, Value::TimeTime(Some(t)));
                }
            }
            _ => {}
        }
    }

    #[cfg(all(feature = "with-chrono", feature = "with-time"))]
    fn chrono_to_time_date(d: &chrono::NaiveDate) -> Option<time::Date> {
        use chrono::Datelike;
        time::Date::from_ordinal_date(d.year(), u16::try_from(d.ordinal()).ok()?).ok()
    }

    #[cfg(all(feature = "with-chrono", feature = "with-time"))]
    fn chrono_to_time_time(t: &chrono::NaiveTime) -> Option<time::Time> {
        use chrono::Timelike;
        // chrono encodes leap seconds as nanosecond >= 1e9; time cannot
        time::Time::from_hms_nano(
            u8::try_from(t.hour()).ok()?,
            u8::try_from(t.minute()).ok()?,
            u8::try_from(t.second()).ok()?,
            t.nanosecond(),
        )
        .ok()
    }

    #[cfg(all(feature = "with-chrono", feature = "with-time"))]
    fn chrono_to_primitive_datetime(dt: &chrono::NaiveDateTime) -> Option<time::PrimitiveDateTime> {
        Some(time::PrimitiveDateTime::new(
            chrono_to_time_date(&dt.date())?,
            chrono_to_time_time(&dt.time())?,
        ))
    }

    #[cfg(all(feature = "with-chrono", feature = "with-time"))]
    fn chrono_to_offset_datetime(
        dt: &chrono::DateTime<chrono::FixedOffset>,
    ) -> Option<time::OffsetDateTime> {
        let offset = time::UtcOffset::from_whole_seconds(dt.offset().local_minus_utc()).ok()?;
        Some(chrono_to_primitive_datetime(&dt.naive_local())?.assume_offset(offset))
    }
}
pub(crate) use equiv::for_each_equivalent;

impl From<BTreeMap<String, Value>> for ProxyRow {
    fn from(values: BTreeMap<String, Value>) -> Self {
        Self::new(values)
    }
}

impl From<ProxyRow> for BTreeMap<String, Value> {
    /// The values by name (a row with shared columns is converted).
    fn from(row: ProxyRow) -> Self {
        row.into_map_row().values
    }
}

impl From<ProxyRow> for Vec<(String, Value)> {
    /// Pairs in select order (see [ProxyRow::with_order]).
    fn from(row: ProxyRow) -> Self {
        row.into_column_value_tuples().collect()
    }
}

impl From<ProxyRow> for QueryResult {
    fn from(row: ProxyRow) -> Self {
        QueryResult {
            row: QueryResultRow::Proxy(row),
        }
    }
}

#[cfg(feature = "with-json")]
impl From<ProxyRow> for serde_json::Value {
    fn from(val: ProxyRow) -> serde_json::Value {
        val.into_map_row()
            .values
            .into_iter()
            .map(|(k, v)| (k, sea_query::sea_value_to_json_value(&v)))
            .collect()
    }
}

/// Convert [QueryResult] to [ProxyRow]
pub fn from_query_result_to_proxy_row(result: &QueryResult) -> ProxyRow {
    match &result.row {
        #[cfg(feature = "sqlx-mysql")]
        QueryResultRow::SqlxMySql(row) => crate::from_sqlx_mysql_row_to_proxy_row(row),
        #[cfg(feature = "sqlx-postgres")]
        QueryResultRow::SqlxPostgres(row) => crate::from_sqlx_postgres_row_to_proxy_row(row),
        #[cfg(feature = "sqlx-sqlite")]
        QueryResultRow::SqlxSqlite(row) => crate::from_sqlx_sqlite_row_to_proxy_row(row),
        #[cfg(feature = "mock")]
        QueryResultRow::Mock(row) => ProxyRow::new(row.values.clone()),
        // a row with shared columns is handed out with its `values` map filled
        QueryResultRow::Proxy(row) => row.to_map_row(),
    }
}

impl ProxyRow {
    /// Get a value from the [ProxyRow] (by name, or by position in select order).
    pub fn try_get<T, I: crate::ColIdx>(&self, index: I) -> Result<T, DbErr>
    where
        T: ValueType,
    {
        Self::convert(self.lookup(index)?)
    }

    /// An iterator over the keys and values of a proxy row, in select order.
    pub fn into_column_value_tuples(self) -> impl Iterator<Item = (String, Value)> {
        if let Some(shared) = self.shared {
            let pairs: Vec<(String, Value)> =
                shared.columns.names.iter().cloned().zip(shared.values).collect();
            return pairs.into_iter();
        }
        let mut values = self.values;
        let pairs: Vec<(String, Value)> = if self.order.is_empty() {
            values.into_iter().collect()
        } else {
            self.order
                .into_iter()
                .filter_map(|c| values.remove(&c).map(|v| (c, v)))
                .collect()
        };
        pairs.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Database, DbBackend, DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, Statement,
        entity::*, tests_cfg::*,
    };
    use std::sync::Arc;

    #[derive(Debug)]
    struct ProxyDb {}

    #[async_trait::async_trait]
    impl ProxyDatabaseTrait for ProxyDb {
        async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
            println!("SQL query: {}", statement.sql);
            Ok(vec![].into())
        }

        async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
            println!("SQL execute: {}", statement.sql);
            Ok(ProxyExecResult {
                last_insert_id: 1,
                rows_affected: 1,
            })
        }
    }

    #[smol_potat::test]
    async fn create_proxy_conn() {
        let _db = Database::connect_proxy(DbBackend::MySql, Arc::new(Box::new(ProxyDb {})))
            .await
            .unwrap();
    }

    #[smol_potat::test]
    async fn select_rows() {
        let db = Database::connect_proxy(DbBackend::MySql, Arc::new(Box::new(ProxyDb {})))
            .await
            .unwrap();

        let _ = cake::Entity::find().all(&db).await;
    }

    #[smol_potat::test]
    async fn insert_one_row() {
        let db = Database::connect_proxy(DbBackend::MySql, Arc::new(Box::new(ProxyDb {})))
            .await
            .unwrap();

        let item = cake::ActiveModel {
            id: NotSet,
            name: Set("Alice".to_string()),
        };

        cake::Entity::insert(item).exec(&db).await.unwrap();
    }
}
