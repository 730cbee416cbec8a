//! MySQL / MariaDB rows (`sqlx::mysql::MySqlRow`) to values.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::DbErr;
use sea_orm::sea_query::Value;
use sea_orm::sqlx::mysql::{MySql, MySqlColumn, MySqlRow};
use sea_orm::sqlx::{Column, Type, TypeInfo};

use super::{get, type_err};

pub(super) fn column(row: &MySqlRow, c: &MySqlColumn) -> Result<Value, DbErr> {
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
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Value::String(get(row, c)?)
        }
        "TIMESTAMP" => Value::ChronoDateTimeUtc(get::<DateTime<Utc>, _>(row, c)?),
        "DATETIME" => Value::ChronoDateTime(get::<NaiveDateTime, _>(row, c)?),
        "DATE" => Value::ChronoDate(get::<NaiveDate, _>(row, c)?),
        "TIME" => Value::ChronoTime(get::<NaiveTime, _>(row, c)?),
        "DECIMAL" => Value::Decimal(get(row, c)?),
        "JSON" => Value::Json(get::<serde_json::Value, _>(row, c)?.map(Box::new)),
        other => return Err(type_err(format!("unsupported MySQL column type {other} (column `{}`)", c.name()))),
    })
}
