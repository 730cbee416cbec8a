//! SQLite rows (`sqlx::sqlite::SqliteRow`) to values.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use sea_orm::DbErr;
use sea_orm::sea_query::Value;
use sea_orm::sqlx::sqlite::{SqliteColumn, SqliteRow};
use sea_orm::sqlx::{Column, Row, TypeInfo, ValueRef};

use super::{get, type_err};

/// Integers are kept as `i64` (narrower reads are range-checked like sqlx does), `DATETIME` as
/// `DateTime<FixedOffset>` (the offset written in the text is kept); a column without a declared
/// type (`COUNT(*)`, `NULL AS x`) uses its value's storage class.
pub(super) fn column(row: &SqliteRow, c: &SqliteColumn) -> Result<Value, DbErr> {
    let raw = row.try_get_raw(c.ordinal()).map_err(|e| type_err(format!("column `{}`: {e}", c.name())))?;
    if raw.is_null() {
        // SQLite is dynamically typed; a NULL reads back as `None` for any type.
        return Ok(Value::String(None));
    }
    let declared = c.type_info().name().to_owned();
    let type_name = if declared == "NULL" { raw.type_info().name().to_owned() } else { declared };
    Ok(match type_name.as_str() {
        "BOOLEAN" | "INTEGER" => Value::BigInt(get(row, c)?),
        "REAL" => Value::Double(get(row, c)?),
        "TEXT" => Value::String(get(row, c)?),
        "BLOB" => Value::Bytes(get(row, c)?),
        "DATETIME" => Value::ChronoDateTimeWithTimeZone(get::<DateTime<FixedOffset>, _>(row, c)?),
        "DATE" => Value::ChronoDate(get::<NaiveDate, _>(row, c)?),
        "TIME" => Value::ChronoTime(get::<NaiveTime, _>(row, c)?),
        other => return Err(type_err(format!("unsupported SQLite column type {other} (column `{}`)", c.name()))),
    })
}
