//! Conversions: SeaORM values and rows to cacheops values and rows, and cached rows to and from
//! bytes.

use cacheops::{Row, Value};
use sea_orm::sea_query::Value as SeaValue;
use sea_orm::{DbErr, ProxyRow, QueryResult, Statement};
use serde::{Deserialize, Serialize};

/// A SeaORM value as a cacheops value: only equality matters (it feeds conj keys), so types
/// that have no cacheops counterpart become their canonical text.
pub fn to_value(v: &SeaValue) -> Value {
    use SeaValue as S;
    match v {
        S::Bool(Some(b)) => Value::Bool(*b),
        S::TinyInt(Some(i)) => Value::Int(i64::from(*i)),
        S::SmallInt(Some(i)) => Value::Int(i64::from(*i)),
        S::Int(Some(i)) => Value::Int(i64::from(*i)),
        S::BigInt(Some(i)) => Value::Int(*i),
        S::TinyUnsigned(Some(i)) => Value::Int(i64::from(*i)),
        S::SmallUnsigned(Some(i)) => Value::Int(i64::from(*i)),
        S::Unsigned(Some(i)) => Value::Int(i64::from(*i)),
        S::BigUnsigned(Some(i)) => i64::try_from(*i).map_or(Value::UInt(*i), Value::Int),
        S::Float(Some(f)) => Value::Float(f64::from(*f)),
        S::Double(Some(f)) => Value::Float(*f),
        S::String(Some(s)) => Value::Text(s.clone()),
        S::Char(Some(c)) => Value::Text(c.to_string()),
        S::Bytes(Some(b)) => Value::Bytes(b.clone()),
        S::Json(Some(j)) => Value::Text(j.to_string()),
        S::ChronoDate(Some(d)) => Value::Text(d.format("%Y-%m-%d").to_string()),
        S::ChronoTime(Some(t)) => Value::Text(t.format("%H:%M:%S%.f").to_string()),
        S::ChronoDateTime(Some(t)) => Value::Text(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        S::ChronoDateTimeUtc(Some(t)) => Value::Text(utc_text(t)),
        S::ChronoDateTimeLocal(Some(t)) => Value::Text(utc_text(&t.with_timezone(&chrono::Utc))),
        S::ChronoDateTimeWithTimeZone(Some(t)) => Value::Text(utc_text(&t.with_timezone(&chrono::Utc))),
        S::Uuid(Some(u)) => Value::Text(u.hyphenated().to_string()),
        S::Decimal(Some(d)) => Value::Text(d.normalize().to_string()),
        S::Enum(sea_orm::sea_query::OptionEnum::Some(e)) => Value::Text(e.value.to_string()),
        S::Enum(sea_orm::sea_query::OptionEnum::None(_)) => Value::Null,
        other if is_null(other) => Value::Null,
        other => Value::Text(format!("{other:?}")),
    }
}

fn utc_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

fn is_null(v: &SeaValue) -> bool {
    use SeaValue as S;
    matches!(
        v,
        S::Bool(None)
            | S::TinyInt(None)
            | S::SmallInt(None)
            | S::Int(None)
            | S::BigInt(None)
            | S::TinyUnsigned(None)
            | S::SmallUnsigned(None)
            | S::Unsigned(None)
            | S::BigUnsigned(None)
            | S::Float(None)
            | S::Double(None)
            | S::String(None)
            | S::Char(None)
            | S::Bytes(None)
            | S::Json(None)
            | S::ChronoDate(None)
            | S::ChronoTime(None)
            | S::ChronoDateTime(None)
            | S::ChronoDateTimeUtc(None)
            | S::ChronoDateTimeLocal(None)
            | S::ChronoDateTimeWithTimeZone(None)
            | S::Uuid(None)
            | S::Decimal(None)
    )
}

/// The bind values of a statement.
pub fn params(stmt: &Statement) -> Vec<Value> {
    stmt.values.as_ref().map(|v| v.0.iter().map(to_value).collect()).unwrap_or_default()
}

/// A row in select order, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedRow {
    /// Column names in select order.
    pub columns: Vec<String>,
    /// Values, aligned with `columns`.
    pub values: Vec<SeaValue>,
}

impl CachedRow {
    /// Converts a live row. Fails (and the caller bypasses the cache) when a column type cannot
    /// be represented faithfully or column names repeat.
    pub fn from_query_result(row: &QueryResult) -> Result<CachedRow, DbErr> {
        let proxy = sea_orm::try_from_query_result_to_proxy_row(row)?;
        let (columns, values) = proxy.to_ordered_pairs().into_iter().unzip();
        Ok(CachedRow { columns, values })
    }

    /// Rebuilds a `QueryResult` that reads back like the live row, by name and by position.
    pub fn into_query_result(self) -> Result<QueryResult, DbErr> {
        let pairs: Vec<(String, SeaValue)> = self.columns.into_iter().zip(self.values).collect();
        Ok(QueryResult::from(ProxyRow::try_from_ordered(pairs)?))
    }

    /// The row as column → cacheops value (for invalidation).
    pub fn to_row(&self) -> Row {
        self.columns.iter().cloned().zip(self.values.iter().map(to_value)).collect()
    }
}

/// Serialises cached rows.
pub fn encode(rows: &[CachedRow]) -> Result<Vec<u8>, DbErr> {
    serde_json::to_vec(rows).map_err(|e| DbErr::Custom(format!("cacheops: cannot serialise rows: {e}")))
}

/// Deserialises cached rows; `None` when the bytes are not a row list (treated as a miss).
pub fn decode(bytes: &[u8]) -> Option<Vec<CachedRow>> {
    serde_json::from_slice(bytes).ok()
}

/// Converts live rows; `None` if any row cannot be cached faithfully.
pub fn convert_rows(rows: &[QueryResult]) -> Option<Vec<CachedRow>> {
    rows.iter().map(|r| CachedRow::from_query_result(r).ok()).collect()
}
