//! PostgreSQL rows (`sqlx::postgres::PgRow`) to values.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::DbErr;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::sea_query::{ArrayType as AT, Value};
use sea_orm::sqlx::postgres::{PgColumn, PgRow, PgValueFormat, Postgres};
use sea_orm::sqlx::{Column, Decode, Row, Type, TypeInfo, ValueRef};

use super::{get, type_err};

fn arr<'r, T>(row: &'r PgRow, c: &PgColumn, ty: AT, f: fn(T) -> Value) -> Result<Value, DbErr>
where
    Vec<T>: Decode<'r, Postgres> + Type<Postgres>,
{
    Ok(Value::Array(ty, get::<Vec<T>, _>(row, c)?.map(|vals| Box::new(vals.into_iter().map(f).collect()))))
}

pub(super) fn column(row: &PgRow, c: &PgColumn) -> Result<Value, DbErr> {
    let type_name = c.type_info().name();
    // sqlx panics (`NaiveDate + TimeDelta overflowed`) decoding dates and timestamps chrono
    // cannot hold ('infinity', years past 262143): refuse them as a type error first.
    chrono_in_range(row, c, type_name)?;
    Ok(match type_name {
        "BOOL" => Value::Bool(get(row, c)?),
        "\"CHAR\"" => Value::TinyInt(get(row, c)?),
        "INT2" => Value::SmallInt(get(row, c)?),
        "INT4" => Value::Int(get(row, c)?),
        "INT8" => Value::BigInt(get(row, c)?),
        "OID" => Value::Unsigned(get::<sea_orm::sqlx::postgres::types::Oid, _>(row, c)?.map(|o| o.0)),
        "FLOAT4" => Value::Float(get(row, c)?),
        "FLOAT8" => Value::Double(get(row, c)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => Value::String(get(row, c)?),
        "BYTEA" => Value::Bytes(get(row, c)?),
        "NUMERIC" => Value::Decimal(get(row, c)?),
        "JSON" | "JSONB" => Value::Json(get::<serde_json::Value, _>(row, c)?.map(Box::new)),
        "UUID" => Value::Uuid(get(row, c)?),
        "DATE" => Value::ChronoDate(get(row, c)?),
        "TIME" => Value::ChronoTime(get(row, c)?),
        "TIMESTAMP" => Value::ChronoDateTime(get(row, c)?),
        // As sqlx returns it (offset +00:00), so that `into_json` reads back alike;
        // `DateTime<Utc>` is an equivalent.
        "TIMESTAMPTZ" => Value::ChronoDateTimeWithTimeZone(get(row, c)?),
        "BOOL[]" => arr::<bool>(row, c, AT::Bool, |v| Value::Bool(Some(v)))?,
        "\"CHAR\"[]" => arr::<i8>(row, c, AT::TinyInt, |v| Value::TinyInt(Some(v)))?,
        "INT2[]" => arr::<i16>(row, c, AT::SmallInt, |v| Value::SmallInt(Some(v)))?,
        "INT4[]" => arr::<i32>(row, c, AT::Int, |v| Value::Int(Some(v)))?,
        "INT8[]" => arr::<i64>(row, c, AT::BigInt, |v| Value::BigInt(Some(v)))?,
        "FLOAT4[]" => arr::<f32>(row, c, AT::Float, |v| Value::Float(Some(v)))?,
        "FLOAT8[]" => arr::<f64>(row, c, AT::Double, |v| Value::Double(Some(v)))?,
        "TEXT[]" | "VARCHAR[]" | "CHAR[]" | "NAME[]" => arr::<String>(row, c, AT::String, |v| Value::String(Some(v)))?,
        "BYTEA[]" => arr::<Vec<u8>>(row, c, AT::Bytes, |v| Value::Bytes(Some(v)))?,
        "NUMERIC[]" => arr::<Decimal>(row, c, AT::Decimal, |v| Value::Decimal(Some(v)))?,
        "JSON[]" | "JSONB[]" => arr::<serde_json::Value>(row, c, AT::Json, |v| Value::Json(Some(Box::new(v))))?,
        "UUID[]" => arr::<Uuid>(row, c, AT::Uuid, |v| Value::Uuid(Some(v)))?,
        "DATE[]" => arr::<NaiveDate>(row, c, AT::ChronoDate, |v| Value::ChronoDate(Some(v)))?,
        "TIME[]" => arr::<NaiveTime>(row, c, AT::ChronoTime, |v| Value::ChronoTime(Some(v)))?,
        "TIMESTAMP[]" => arr::<NaiveDateTime>(row, c, AT::ChronoDateTime, |v| Value::ChronoDateTime(Some(v)))?,
        "TIMESTAMPTZ[]" => arr::<DateTime<Utc>>(row, c, AT::ChronoDateTimeUtc, |v| Value::ChronoDateTimeUtc(Some(v)))?,
        other => return Err(type_err(format!("unsupported PostgreSQL column type {other} (column `{}`)", c.name()))),
    })
}

/// `Err` for a binary DATE / TIMESTAMP / TIMESTAMPTZ value (or array element) outside chrono's
/// range (PostgreSQL's `infinity` is the largest integer).
fn chrono_in_range(row: &PgRow, c: &PgColumn, type_name: &str) -> Result<(), DbErr> {
    // Days from 2000-01-01 to chrono's limits (±262143 years), with a margin.
    const MAX_DAYS: i64 = 95_000_000;
    const MAX_MICROS: i64 = MAX_DAYS * 86_400_000_000;
    let (limit, array) = match type_name {
        "DATE" => (MAX_DAYS, false),
        "TIMESTAMP" | "TIMESTAMPTZ" => (MAX_MICROS, false),
        "DATE[]" => (MAX_DAYS, true),
        "TIMESTAMP[]" | "TIMESTAMPTZ[]" => (MAX_MICROS, true),
        _ => return Ok(()),
    };
    let out_of_range =
        || type_err(format!("column `{}` of type {type_name} holds a value chrono cannot represent", c.name()));
    let raw = row.try_get_raw(c.ordinal()).map_err(|_| out_of_range())?;
    if raw.is_null() || raw.format() != PgValueFormat::Binary {
        return Ok(());
    }
    let bytes = raw.as_bytes().map_err(|_| out_of_range())?;
    let in_range = |b: &[u8]| -> bool {
        let n = match b.len() {
            4 => b.try_into().map(|x| i64::from(i32::from_be_bytes(x))).ok(),
            8 => b.try_into().map(i64::from_be_bytes).ok(),
            _ => None,
        };
        n.and_then(i64::checked_abs).is_some_and(|a| a <= limit)
    };
    let ok = if array {
        array_elements(bytes).is_some_and(|els| els.into_iter().all(|e| e.is_none_or(in_range)))
    } else {
        in_range(bytes)
    };
    if ok { Ok(()) } else { Err(out_of_range()) }
}

/// The elements of a binary PostgreSQL array (`None` for NULL); `None` if malformed.
fn array_elements(b: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let int = |at: usize| -> Option<i32> { Some(i32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?)) };
    let ndim = usize::try_from(int(0)?).ok()?;
    let mut pos: usize = 12;
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        count = count.checked_mul(usize::try_from(int(pos)?).ok()?)?;
        pos = pos.checked_add(8)?;
    }
    let mut out = Vec::with_capacity(count.min(b.len()));
    for _ in 0..count {
        let len = int(pos)?;
        pos = pos.checked_add(4)?;
        if len < 0 {
            out.push(None);
        } else {
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            out.push(Some(b.get(pos..end)?));
            pos = end;
        }
    }
    Some(out)
}
