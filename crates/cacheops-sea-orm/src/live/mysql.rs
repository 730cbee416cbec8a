//! MySQL / MariaDB rows (`sqlx::mysql::MySqlRow`) to values.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::DbErr;
use sea_orm::sea_query::Value;
use sea_orm::sqlx::mysql::{MySql, MySqlColumn, MySqlRow};
use sea_orm::sqlx::{Column, Decode, Row, Type, TypeInfo};

use super::{Decoded, type_err};

pub(super) fn decode(row: &MySqlRow) -> Result<Decoded, DbErr> {
    let mut names = Vec::with_capacity(row.columns().len());
    let mut values = Vec::with_capacity(row.columns().len());
    for c in row.columns() {
        values.push(column(row, c)?);
        names.push(c.name().to_owned());
    }
    Ok((names, values))
}

fn get<'r, T>(row: &'r MySqlRow, c: &MySqlColumn) -> Result<Option<T>, DbErr>
where
    T: Decode<'r, MySql> + Type<MySql>,
{
    super::get::<MySql, MySqlRow, T>(row, c.ordinal(), c.name(), c.type_info().name())
}

fn column(row: &MySqlRow, c: &MySqlColumn) -> Result<Value, DbErr> {
    Ok(match c.type_info().name() {
        "NULL" => Value::String(None),
        // TINYINT(1) may hold any i8; bool is read back as `!= 0` like sqlx does.
        "BOOLEAN" | "TINYINT" => Value::TinyInt(get(row, c)?),
        "TINYINT UNSIGNED" => Value::TinyUnsigned(get(row, c)?),
        "SMALLINT UNSIGNED" => Value::SmallUnsigned(get(row, c)?),
        "INT UNSIGNED" | "MEDIUMINT UNSIGNED" => Value::Unsigned(get(row, c)?),
        "BIGINT UNSIGNED" => Value::BigUnsigned(get(row, c)?),
        "SMALLINT" => Value::SmallInt(get(row, c)?),
        "INT" | "MEDIUMINT" => Value::Int(get(row, c)?),
        "BIGINT" => Value::BigInt(get(row, c)?),
        "FLOAT" => Value::Float(get(row, c)?),
        "DOUBLE" => Value::Double(get(row, c)?),
        // sqlx names text columns with a binary collation (`utf8mb4_bin`) VARBINARY / BLOB;
        // they hold text (their collation is not `binary`), which the live row reads as a
        // `String` and `into_json` as a JSON string.
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
            if <String as Type<MySql>>::compatible(c.type_info()) =>
        {
            Value::String(get(row, c)?)
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Value::Bytes(get(row, c)?),
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => Value::String(get(row, c)?),
        "TIMESTAMP" => Value::ChronoDateTimeUtc(get::<DateTime<Utc>>(row, c)?),
        "DATETIME" => Value::ChronoDateTime(get::<NaiveDateTime>(row, c)?),
        "DATE" => Value::ChronoDate(get::<NaiveDate>(row, c)?),
        "TIME" => Value::ChronoTime(get::<NaiveTime>(row, c)?),
        "DECIMAL" => Value::Decimal(get(row, c)?),
        "JSON" => Value::Json(get::<serde_json::Value>(row, c)?.map(Box::new)),
        other => return Err(type_err(format!("unsupported MySQL column type {other} (column `{}`)", c.name()))),
    })
}
