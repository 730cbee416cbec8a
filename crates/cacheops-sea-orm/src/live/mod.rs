//! Live rows to values, through sqlx's public API (no SeaORM patch needed).
//!
//! Writes need the values of the rows they touch (pre-image, `RETURNING`) to know what to
//! invalidate, and the `transparent` feature caches rows: both decode a live `QueryResult` into
//! column names (in select order) and `sea_query::Value`s. A column whose type has no faithful
//! value (enums, domains, `interval`, `timetz`, …), a value that fails to decode, or repeated
//! column names make the whole row an error: the caller then invalidates the whole table (writes)
//! or does not cache (reads).

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;

use sea_orm::sea_query::Value;
use sea_orm::sqlx::{Column, ColumnIndex, Database, Decode, Row, Type, TypeInfo};
use sea_orm::{DbErr, QueryResult};

/// Column names in select order and their values.
pub(crate) type Decoded = (Vec<String>, Vec<Value>);

/// Decodes a row. Fails on unknown column types, decode failures and repeated column names.
pub(crate) fn decode(row: &QueryResult) -> Result<Decoded, DbErr> {
    let decoded = decode_any(row)?;
    if let Some(name) = repeated(&decoded.0) {
        return Err(type_err(format!("the row has two columns named `{name}`")));
    }
    Ok(decoded)
}

#[allow(unreachable_code, unused_variables)]
fn decode_any(row: &QueryResult) -> Result<Decoded, DbErr> {
    #[cfg(feature = "postgres")]
    if let Some(r) = row.try_as_pg_row() {
        return columns(r, pg::column);
    }
    #[cfg(feature = "mysql")]
    if let Some(r) = row.try_as_mysql_row() {
        return columns(r, mysql::column);
    }
    #[cfg(feature = "sqlite")]
    if let Some(r) = row.try_as_sqlite_row() {
        return columns(r, sqlite::column);
    }
    #[cfg(feature = "transparent")]
    if let Some(r) = row.try_as_proxy_row() {
        return Ok(r.to_ordered_pairs().into_iter().unzip());
    }
    Err(type_err("a row of a database driver this build of cacheops-sea-orm does not decode".to_owned()))
}

/// Each column of a driver's row through `column`, in select order.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code))]
fn columns<R: Row>(row: &R, column: fn(&R, &ColumnOf<R>) -> Result<Value, DbErr>) -> Result<Decoded, DbErr> {
    let mut names = Vec::with_capacity(row.columns().len());
    let mut values = Vec::with_capacity(row.columns().len());
    for c in row.columns() {
        values.push(column(row, c)?);
        names.push(c.name().to_owned());
    }
    Ok((names, values))
}

pub(crate) fn repeated(names: &[String]) -> Option<&str> {
    if names.len() <= 16 {
        return names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n.as_str());
    }
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0].as_str())
}

pub(crate) fn type_err(message: String) -> DbErr {
    DbErr::Type(format!("cacheops: {message}"))
}

/// A column of a driver's row.
type ColumnOf<R> = <<R as Row>::Database as Database>::Column;

/// Reads one column as `Option<T>`, with the column named in the error.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code))]
fn get<'r, T, R>(row: &'r R, c: &ColumnOf<R>) -> Result<Option<T>, DbErr>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    row.try_get::<Option<T>, _>(c.ordinal())
        .map_err(|e| type_err(format!("cannot decode column `{}` of type {}: {e}", c.name(), c.type_info().name())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_names_are_found_in_short_and_long_rows() {
        let names = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        assert_eq!(super::repeated(&names(5)), None);
        assert_eq!(super::repeated(&names(40)), None);
        let mut short = names(5);
        short.push("c2".into());
        assert_eq!(super::repeated(&short), Some("c2"));
        let mut long = names(40);
        long.push("c31".into());
        assert_eq!(super::repeated(&long), Some("c31"));
    }
}
