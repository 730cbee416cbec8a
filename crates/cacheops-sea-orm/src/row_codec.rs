//! The byte format of cached rows: compact, binary, the column names once per result.
//!
//! ```text
//! result  := VERSION len(n) name{n} len(m) value{m × n}   (values row by row, in column order)
//! name    := len bytes                                   (UTF-8)
//! value   := tag payload
//! tag     := kind | NULL_BIT                             (NULL_BIT set: the `None` form)
//! len     := unsigned LEB128, at most 10 bytes
//! ```
//!
//! Payloads (little endian): integers and floats at their width (floats as their bits, so NaN,
//! infinities and -0.0 survive), `bool` one byte 0 / 1, `char` its `u32`, text and bytes `len`
//! then the bytes, JSON its text (`serde_json`, floats round-trip with the `float_roundtrip`
//! feature), dates as days from the Common Era (`i32`), times as seconds from midnight and
//! nanoseconds (`u32`, `u32`, leap seconds included), date-times as date + time of the UTC
//! instant, then the offset in seconds (`i32`) for `DateTime<Local>` / `DateTime<FixedOffset>`,
//! UUIDs their 16 bytes, decimals `Decimal::serialize` (16 bytes), enums their type name (also
//! for `None`) then their text, arrays (PostgreSQL) their element type then `len` values.
//! The `None` form has no payload, except an enum's / array's type.
//!
//! A value that has no faithful encoding here (a `Value` variant of a feature this crate does not
//! use, a JSON value nested deeper than [`MAX_JSON_DEPTH`], an array inside an array, rows with
//! different columns) makes [`encode_rows`] fail: the caller then does not cache the result.
//! Decoding never panics: anything malformed, truncated, followed by extra bytes or of another
//! version is `None`, which the caller treats as a miss.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use sea_orm::DbErr;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::sea_query::{EnumTypeName, OptionEnum, Value as SeaValue};

use crate::convert::CachedRow;

/// The first byte of every encoding: the format version. A change of format takes the next
/// value, so that values written by an older version read as misses. (`0xC1` can start neither
/// UTF-8 text nor JSON, which tells the format apart from the former `serde_json` rows.)
pub(crate) const VERSION: u8 = 0xC1;

/// The JSON nesting depth up to which a JSON value is cached (`serde_json` refuses to read
/// text nested deeper than 128 levels).
pub(crate) const MAX_JSON_DEPTH: usize = 100;

/// At most this many rows of a result without columns are cached (such rows occupy no bytes,
/// so their count cannot be checked against the length of the input).
const MAX_EMPTY_ROWS: usize = 1 << 16;

/// At most this many items are allocated ahead from a count read in the input (a corrupt count
/// then costs no more than the items actually decoded).
const PREALLOCATE_MAX: usize = 1024;

/// Set in a tag for the `None` form of the kind.
const NULL_BIT: u8 = 0x80;

/// The kinds of values: one per `sea_query::Value` variant supported, also used for the
/// element type of arrays.
mod kind {
    pub const BOOL: u8 = 1;
    pub const TINY_INT: u8 = 2;
    pub const SMALL_INT: u8 = 3;
    pub const INT: u8 = 4;
    pub const BIG_INT: u8 = 5;
    pub const TINY_UNSIGNED: u8 = 6;
    pub const SMALL_UNSIGNED: u8 = 7;
    pub const UNSIGNED: u8 = 8;
    pub const BIG_UNSIGNED: u8 = 9;
    pub const FLOAT: u8 = 10;
    pub const DOUBLE: u8 = 11;
    pub const STRING: u8 = 12;
    pub const CHAR: u8 = 13;
    pub const BYTES: u8 = 14;
    pub const JSON: u8 = 15;
    pub const DATE: u8 = 16;
    pub const TIME: u8 = 17;
    pub const DATE_TIME: u8 = 18;
    pub const DATE_TIME_UTC: u8 = 19;
    pub const DATE_TIME_LOCAL: u8 = 20;
    pub const DATE_TIME_WITH_TIME_ZONE: u8 = 21;
    pub const UUID: u8 = 22;
    pub const DECIMAL: u8 = 23;
    pub const ENUM: u8 = 24;
    pub const ARRAY: u8 = 25;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Why rows cannot be encoded faithfully.
fn unsupported(what: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(format!("cacheops: cannot cache rows: {what}"))
}

/// Encodes rows that share their columns (the rows of one result).
pub(crate) fn encode_rows(rows: &[CachedRow]) -> Result<Vec<u8>, DbErr> {
    let columns = shared_columns(rows)?;
    let mut out = Vec::with_capacity(estimated_size(columns, rows));
    out.push(VERSION);
    put_len(&mut out, columns.len());
    for name in columns {
        put_bytes(&mut out, name.as_bytes());
    }
    put_len(&mut out, rows.len());
    for row in rows {
        for value in &row.values {
            put_value(&mut out, value, false)?;
        }
    }
    Ok(out)
}

/// The columns of every row: `Err` if rows differ in their columns, a row's values do not
/// match its columns, names repeat, or there are too many rows without columns.
fn shared_columns(rows: &[CachedRow]) -> Result<&[String], DbErr> {
    let Some(first) = rows.first() else { return Ok(&[]) };
    let columns = first.columns.as_slice();
    if let Some(row) = rows.iter().find(|r| r.columns != columns || r.values.len() != columns.len()) {
        return Err(if row.columns != columns {
            unsupported("rows of one result have different columns")
        } else {
            unsupported(format!("{} values for {} columns", row.values.len(), row.columns.len()))
        });
    }
    if columns.is_empty() && rows.len() > MAX_EMPTY_ROWS {
        return Err(unsupported(format!("more than {MAX_EMPTY_ROWS} rows without columns")));
    }
    if let Some(name) = crate::live::repeated(columns) {
        return Err(unsupported(format!("two columns named `{name}`")));
    }
    Ok(columns)
}

/// A guess of the encoded size, to allocate once in the common case.
fn estimated_size(columns: &[String], rows: &[CachedRow]) -> usize {
    let names: usize = columns.iter().map(|c| c.len() + 1).sum();
    let per_row = rows.first().map_or(0, |r| r.values.iter().map(estimated_value_size).sum::<usize>());
    16 + names + per_row.saturating_mul(rows.len())
}

/// A guess of one value's encoded size.
fn estimated_value_size(value: &SeaValue) -> usize {
    match value {
        SeaValue::String(Some(s)) => s.len() + 3,
        SeaValue::Bytes(Some(b)) => b.len() + 3,
        _ => 9,
    }
}

/// Appends `n` as unsigned LEB128.
fn put_len(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length-prefixed byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the tag of `kind` and, for `Some`, the payload written by `payload`.
fn put_option<T>(out: &mut Vec<u8>, kind: u8, value: &Option<T>, payload: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(kind | NULL_BIT),
        Some(v) => {
            out.push(kind);
            payload(out, v);
        }
    }
}

/// Appends one value; `in_array` forbids nested arrays.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
fn put_value(out: &mut Vec<u8>, value: &SeaValue, in_array: bool) -> Result<(), DbErr> {
    use SeaValue as S;
    match value {
        S::Bool(v) => put_option(out, kind::BOOL, v, |o, b| o.push(u8::from(*b))),
        S::TinyInt(v) => put_option(out, kind::TINY_INT, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::SmallInt(v) => put_option(out, kind::SMALL_INT, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::Int(v) => put_option(out, kind::INT, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::BigInt(v) => put_option(out, kind::BIG_INT, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::TinyUnsigned(v) => put_option(out, kind::TINY_UNSIGNED, v, |o, i| o.push(*i)),
        S::SmallUnsigned(v) => put_option(out, kind::SMALL_UNSIGNED, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::Unsigned(v) => put_option(out, kind::UNSIGNED, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::BigUnsigned(v) => put_option(out, kind::BIG_UNSIGNED, v, |o, i| o.extend_from_slice(&i.to_le_bytes())),
        S::Float(v) => put_option(out, kind::FLOAT, v, |o, f| o.extend_from_slice(&f.to_bits().to_le_bytes())),
        S::Double(v) => put_option(out, kind::DOUBLE, v, |o, f| o.extend_from_slice(&f.to_bits().to_le_bytes())),
        S::String(v) => put_option(out, kind::STRING, v, |o, s| put_bytes(o, s.as_bytes())),
        S::Char(v) => put_option(out, kind::CHAR, v, |o, c| o.extend_from_slice(&u32::from(*c).to_le_bytes())),
        S::Bytes(v) => put_option(out, kind::BYTES, v, |o, b| put_bytes(o, b)),
        S::Json(v) => put_json(out, v.as_deref())?,
        S::ChronoDate(v) => put_option(out, kind::DATE, v, put_date),
        S::ChronoTime(v) => put_option(out, kind::TIME, v, put_time),
        S::ChronoDateTime(v) => put_option(out, kind::DATE_TIME, v, put_date_time),
        S::ChronoDateTimeUtc(v) => put_option(out, kind::DATE_TIME_UTC, v, |o, t| put_date_time(o, &t.naive_utc())),
        S::ChronoDateTimeLocal(v) => put_option(out, kind::DATE_TIME_LOCAL, v, |o, t| {
            put_instant(o, &t.naive_utc(), t.offset().local_minus_utc());
        }),
        S::ChronoDateTimeWithTimeZone(v) => put_option(out, kind::DATE_TIME_WITH_TIME_ZONE, v, |o, t| {
            put_instant(o, &t.naive_utc(), t.offset().local_minus_utc());
        }),
        S::Uuid(v) => put_option(out, kind::UUID, v, |o, u| o.extend_from_slice(u.as_bytes())),
        S::Decimal(v) => put_option(out, kind::DECIMAL, v, |o, d| o.extend_from_slice(&d.serialize())),
        S::Enum(e) => put_enum(out, e),
        #[cfg(feature = "postgres")]
        S::Array(ty, items) if !in_array => put_array(out, ty, items.as_deref())?,
        #[allow(unreachable_patterns)]
        other => return Err(unsupported(format!("no faithful encoding for {other:?}"))),
    }
    Ok(())
}

/// A JSON value as its text; `Err` if nested too deep to be read back.
fn put_json(out: &mut Vec<u8>, json: Option<&serde_json::Value>) -> Result<(), DbErr> {
    let Some(json) = json else {
        out.push(kind::JSON | NULL_BIT);
        return Ok(());
    };
    if json_depth_exceeds(json, MAX_JSON_DEPTH) {
        return Err(unsupported(format!("JSON nested deeper than {MAX_JSON_DEPTH} levels")));
    }
    let text = serde_json::to_string(json).map_err(unsupported)?;
    out.push(kind::JSON);
    put_bytes(out, text.as_bytes());
    Ok(())
}

/// Whether arrays / objects in `json` nest deeper than `limit` levels.
fn json_depth_exceeds(json: &serde_json::Value, limit: usize) -> bool {
    let children: Box<dyn Iterator<Item = &serde_json::Value>> = match json {
        serde_json::Value::Array(items) => Box::new(items.iter()),
        serde_json::Value::Object(map) => Box::new(map.values()),
        _ => return false,
    };
    limit == 0 || children.into_iter().any(|c| json_depth_exceeds(c, limit - 1))
}

/// A date as days from the Common Era.
fn put_date(out: &mut Vec<u8>, date: &NaiveDate) {
    out.extend_from_slice(&date.num_days_from_ce().to_le_bytes());
}

/// A time as seconds from midnight and nanoseconds (≥ 10⁹ within a leap second).
fn put_time(out: &mut Vec<u8>, time: &NaiveTime) {
    out.extend_from_slice(&time.num_seconds_from_midnight().to_le_bytes());
    out.extend_from_slice(&time.nanosecond().to_le_bytes());
}

/// A date-time as its date and time.
fn put_date_time(out: &mut Vec<u8>, t: &NaiveDateTime) {
    put_date(out, &t.date());
    put_time(out, &t.time());
}

/// An instant (UTC date-time) and the offset it was expressed in.
fn put_instant(out: &mut Vec<u8>, utc: &NaiveDateTime, offset_seconds: i32) {
    put_date_time(out, utc);
    out.extend_from_slice(&offset_seconds.to_le_bytes());
}

/// An enum: its type name (also for `None`), then its text.
fn put_enum(out: &mut Vec<u8>, value: &OptionEnum) {
    match value {
        OptionEnum::None(type_name) => {
            out.push(kind::ENUM | NULL_BIT);
            put_bytes(out, type_name.as_bytes());
        }
        OptionEnum::Some(e) => {
            out.push(kind::ENUM);
            put_bytes(out, e.type_name.as_bytes());
            put_bytes(out, e.value.as_bytes());
        }
    }
}

/// A PostgreSQL array: its element type (also for `None`), then its values.
#[cfg(feature = "postgres")]
fn put_array(
    out: &mut Vec<u8>,
    ty: &sea_orm::sea_query::ArrayType,
    items: Option<&Vec<SeaValue>>,
) -> Result<(), DbErr> {
    out.push(kind::ARRAY | if items.is_none() { NULL_BIT } else { 0 });
    put_array_type(out, ty)?;
    if let Some(items) = items {
        put_len(out, items.len());
        for item in items {
            put_value(out, item, true)?;
        }
    }
    Ok(())
}

/// The element type of an array: the kind of its values (and an enum's type name).
#[cfg(feature = "postgres")]
fn put_array_type(out: &mut Vec<u8>, ty: &sea_orm::sea_query::ArrayType) -> Result<(), DbErr> {
    use sea_orm::sea_query::ArrayType as A;
    let k = match ty {
        A::Bool => kind::BOOL,
        A::TinyInt => kind::TINY_INT,
        A::SmallInt => kind::SMALL_INT,
        A::Int => kind::INT,
        A::BigInt => kind::BIG_INT,
        A::TinyUnsigned => kind::TINY_UNSIGNED,
        A::SmallUnsigned => kind::SMALL_UNSIGNED,
        A::Unsigned => kind::UNSIGNED,
        A::BigUnsigned => kind::BIG_UNSIGNED,
        A::Float => kind::FLOAT,
        A::Double => kind::DOUBLE,
        A::String => kind::STRING,
        A::Char => kind::CHAR,
        A::Bytes => kind::BYTES,
        A::Json => kind::JSON,
        A::ChronoDate => kind::DATE,
        A::ChronoTime => kind::TIME,
        A::ChronoDateTime => kind::DATE_TIME,
        A::ChronoDateTimeUtc => kind::DATE_TIME_UTC,
        A::ChronoDateTimeLocal => kind::DATE_TIME_LOCAL,
        A::ChronoDateTimeWithTimeZone => kind::DATE_TIME_WITH_TIME_ZONE,
        A::Uuid => kind::UUID,
        A::Decimal => kind::DECIMAL,
        A::Enum(name) => {
            out.push(kind::ENUM);
            put_bytes(out, name.as_bytes());
            return Ok(());
        }
        #[allow(unreachable_patterns)]
        other => return Err(unsupported(format!("no faithful encoding for arrays of {other:?}"))),
    };
    out.push(k);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes rows as [`CachedRow`]s (each with its own copy of the column names).
pub(crate) fn decode_rows(bytes: &[u8]) -> Option<Vec<CachedRow>> {
    decode_with(bytes, Some, |columns: &Vec<String>, values| Some(CachedRow { columns: columns.clone(), values }))
}

/// Decodes rows straight into SeaORM `QueryResult`s whose rows share one copy of the column
/// names; `None` also if names repeat.
#[cfg(feature = "transparent")]
pub(crate) fn decode_query_results(bytes: &[u8]) -> Option<Vec<sea_orm::QueryResult>> {
    use sea_orm::{ProxyColumns, ProxyRow, QueryResult};
    use std::sync::Arc;
    decode_with(
        bytes,
        |names| ProxyColumns::new(names).ok().map(Arc::new),
        |columns: &Arc<ProxyColumns>, values| {
            ProxyRow::with_shared_columns(Arc::clone(columns), values).ok().map(QueryResult::from)
        },
    )
}

/// The decoding skeleton: header, the column names turned into `H` by `prepare`, then each
/// row's values turned into a `T` by `make`; the input must be consumed exactly.
fn decode_with<H, T>(
    bytes: &[u8],
    prepare: impl FnOnce(Vec<String>) -> Option<H>,
    mut make: impl FnMut(&H, Vec<SeaValue>) -> Option<T>,
) -> Option<Vec<T>> {
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION {
        return None;
    }
    let mut reader = Reader { rest };
    let names = reader.column_names()?;
    let width = names.len();
    let row_count = reader.row_count(width)?;
    let header = prepare(names)?;
    let mut rows = Vec::with_capacity(row_count.min(PREALLOCATE_MAX));
    for _ in 0..row_count {
        let values = reader.row_values(width)?;
        rows.push(make(&header, values)?);
    }
    reader.rest.is_empty().then_some(rows)
}

/// A cursor over the bytes still to decode; every read checks the length first.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The next byte.
    fn byte(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// An unsigned LEB128 number (at most 10 bytes, no bits beyond 64, fits `usize`).
    fn len(&mut self) -> Option<usize> {
        let mut n: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7F);
            if i == 9 && bits > 1 {
                return None;
            }
            n |= bits << (7 * i);
            if b & 0x80 == 0 {
                return usize::try_from(n).ok();
            }
        }
        None
    }

    /// A length that cannot exceed the remaining input (each counted item takes ≥ 1 byte).
    fn bounded_len(&mut self) -> Option<usize> {
        self.len().filter(|&n| n <= self.rest.len())
    }

    /// A length-prefixed byte string.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    /// A length-prefixed UTF-8 string.
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// The column names of the header.
    fn column_names(&mut self) -> Option<Vec<String>> {
        let n = self.bounded_len()?;
        let mut names = Vec::with_capacity(n.min(PREALLOCATE_MAX));
        for _ in 0..n {
            names.push(self.str()?.to_owned());
        }
        Some(names)
    }

    /// The row count of the header, checked against the remaining input.
    fn row_count(&mut self, width: usize) -> Option<usize> {
        let rows = self.len()?;
        let plausible = match width {
            0 => rows <= MAX_EMPTY_ROWS,
            w => rows <= self.rest.len() / w,
        };
        plausible.then_some(rows)
    }

    /// The `width` values of one row.
    fn row_values(&mut self, width: usize) -> Option<Vec<SeaValue>> {
        let mut values = Vec::with_capacity(width.min(PREALLOCATE_MAX));
        for _ in 0..width {
            values.push(self.value(false)?);
        }
        Some(values)
    }

    /// One tagged value; `in_array` forbids nested arrays.
    fn value(&mut self, in_array: bool) -> Option<SeaValue> {
        let tag = self.byte()?;
        let (k, is_null) = (tag & !NULL_BIT, tag & NULL_BIT != 0);
        match k {
            kind::ENUM => self.enum_value(is_null),
            kind::ARRAY if !in_array => self.array_value(is_null),
            _ if is_null => null_of(k),
            _ => self.scalar(k),
        }
    }

    /// The payload of a non-null scalar of kind `k`.
    fn scalar(&mut self, k: u8) -> Option<SeaValue> {
        use SeaValue as S;
        Some(match k {
            kind::BOOL => S::Bool(Some(self.flag()?)),
            kind::TINY_INT => S::TinyInt(Some(i8::from_le_bytes(self.array()?))),
            kind::SMALL_INT => S::SmallInt(Some(i16::from_le_bytes(self.array()?))),
            kind::INT => S::Int(Some(i32::from_le_bytes(self.array()?))),
            kind::BIG_INT => S::BigInt(Some(i64::from_le_bytes(self.array()?))),
            kind::TINY_UNSIGNED => S::TinyUnsigned(Some(self.byte()?)),
            kind::SMALL_UNSIGNED => S::SmallUnsigned(Some(u16::from_le_bytes(self.array()?))),
            kind::UNSIGNED => S::Unsigned(Some(u32::from_le_bytes(self.array()?))),
            kind::BIG_UNSIGNED => S::BigUnsigned(Some(u64::from_le_bytes(self.array()?))),
            kind::FLOAT => S::Float(Some(f32::from_bits(u32::from_le_bytes(self.array()?)))),
            kind::DOUBLE => S::Double(Some(f64::from_bits(u64::from_le_bytes(self.array()?)))),
            kind::STRING => S::String(Some(self.str()?.to_owned())),
            kind::CHAR => S::Char(Some(char::from_u32(u32::from_le_bytes(self.array()?))?)),
            kind::BYTES => S::Bytes(Some(self.bytes()?.to_vec())),
            kind::JSON => S::Json(Some(Box::new(serde_json::from_str(self.str()?).ok()?))),
            kind::DATE => S::ChronoDate(Some(self.date()?)),
            kind::TIME => S::ChronoTime(Some(self.time()?)),
            kind::DATE_TIME => S::ChronoDateTime(Some(self.date_time()?)),
            kind::DATE_TIME_UTC => S::ChronoDateTimeUtc(Some(self.date_time()?.and_utc())),
            kind::DATE_TIME_LOCAL => {
                let (utc, offset) = self.instant()?;
                S::ChronoDateTimeLocal(Some(DateTime::<Local>::from_naive_utc_and_offset(utc, offset)))
            }
            kind::DATE_TIME_WITH_TIME_ZONE => {
                let (utc, offset) = self.instant()?;
                S::ChronoDateTimeWithTimeZone(Some(DateTime::<FixedOffset>::from_naive_utc_and_offset(utc, offset)))
            }
            kind::UUID => S::Uuid(Some(Uuid::from_bytes(self.array()?))),
            kind::DECIMAL => S::Decimal(Some(self.decimal()?)),
            _ => return None,
        })
    }

    /// A boolean byte: 0 or 1.
    fn flag(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// A date (days from the Common Era).
    fn date(&mut self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(self.array()?))
    }

    /// A time (seconds from midnight, nanoseconds).
    fn time(&mut self) -> Option<NaiveTime> {
        let secs = u32::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
    }

    /// A date-time (date, time).
    fn date_time(&mut self) -> Option<NaiveDateTime> {
        Some(NaiveDateTime::new(self.date()?, self.time()?))
    }

    /// An instant (UTC date-time) and its offset.
    fn instant(&mut self) -> Option<(NaiveDateTime, FixedOffset)> {
        let utc = self.date_time()?;
        let offset = FixedOffset::east_opt(i32::from_le_bytes(self.array()?))?;
        Some((utc, offset))
    }

    /// A decimal (`Decimal::serialize`); only flags that `serialize` can produce are accepted.
    fn decimal(&mut self) -> Option<Decimal> {
        let bytes: [u8; 16] = self.array()?;
        let flags = u32::from_le_bytes(bytes[..4].try_into().ok()?);
        let scale = (flags >> 16) & 0xFF;
        let valid = flags & !0x80FF_0000 == 0 && scale <= Decimal::MAX_SCALE;
        valid.then(|| Decimal::deserialize(bytes))
    }

    /// An enum's type name (and, unless `is_null`, its text).
    fn enum_value(&mut self, is_null: bool) -> Option<SeaValue> {
        let type_name = EnumTypeName::from(self.str()?);
        let value = if is_null {
            OptionEnum::None(type_name)
        } else {
            let text = self.str()?.to_owned();
            OptionEnum::Some(Box::new(sea_orm::sea_query::Enum { type_name, value: text.into() }))
        };
        Some(SeaValue::Enum(value))
    }

    /// A PostgreSQL array (element type, then unless `is_null` its values).
    #[cfg(feature = "postgres")]
    fn array_value(&mut self, is_null: bool) -> Option<SeaValue> {
        let ty = self.array_type()?;
        if is_null {
            return Some(SeaValue::Array(ty, None));
        }
        let n = self.bounded_len()?;
        let mut items = Vec::with_capacity(n.min(PREALLOCATE_MAX));
        for _ in 0..n {
            items.push(self.value(true)?);
        }
        Some(SeaValue::Array(ty, Some(Box::new(items))))
    }

    /// Arrays are only written with the `postgres` feature.
    #[cfg(not(feature = "postgres"))]
    fn array_value(&mut self, _is_null: bool) -> Option<SeaValue> {
        None
    }

    /// The element type of an array.
    #[cfg(feature = "postgres")]
    fn array_type(&mut self) -> Option<sea_orm::sea_query::ArrayType> {
        use sea_orm::sea_query::ArrayType as A;
        Some(match self.byte()? {
            kind::BOOL => A::Bool,
            kind::TINY_INT => A::TinyInt,
            kind::SMALL_INT => A::SmallInt,
            kind::INT => A::Int,
            kind::BIG_INT => A::BigInt,
            kind::TINY_UNSIGNED => A::TinyUnsigned,
            kind::SMALL_UNSIGNED => A::SmallUnsigned,
            kind::UNSIGNED => A::Unsigned,
            kind::BIG_UNSIGNED => A::BigUnsigned,
            kind::FLOAT => A::Float,
            kind::DOUBLE => A::Double,
            kind::STRING => A::String,
            kind::CHAR => A::Char,
            kind::BYTES => A::Bytes,
            kind::JSON => A::Json,
            kind::DATE => A::ChronoDate,
            kind::TIME => A::ChronoTime,
            kind::DATE_TIME => A::ChronoDateTime,
            kind::DATE_TIME_UTC => A::ChronoDateTimeUtc,
            kind::DATE_TIME_LOCAL => A::ChronoDateTimeLocal,
            kind::DATE_TIME_WITH_TIME_ZONE => A::ChronoDateTimeWithTimeZone,
            kind::UUID => A::Uuid,
            kind::DECIMAL => A::Decimal,
            kind::ENUM => A::Enum(Box::new(EnumTypeName::from(self.str()?))),
            _ => return None,
        })
    }
}

/// The `None` form of kind `k` (enums and arrays carry a type and are read elsewhere).
fn null_of(k: u8) -> Option<SeaValue> {
    use SeaValue as S;
    Some(match k {
        kind::BOOL => S::Bool(None),
        kind::TINY_INT => S::TinyInt(None),
        kind::SMALL_INT => S::SmallInt(None),
        kind::INT => S::Int(None),
        kind::BIG_INT => S::BigInt(None),
        kind::TINY_UNSIGNED => S::TinyUnsigned(None),
        kind::SMALL_UNSIGNED => S::SmallUnsigned(None),
        kind::UNSIGNED => S::Unsigned(None),
        kind::BIG_UNSIGNED => S::BigUnsigned(None),
        kind::FLOAT => S::Float(None),
        kind::DOUBLE => S::Double(None),
        kind::STRING => S::String(None),
        kind::CHAR => S::Char(None),
        kind::BYTES => S::Bytes(None),
        kind::JSON => S::Json(None),
        kind::DATE => S::ChronoDate(None),
        kind::TIME => S::ChronoTime(None),
        kind::DATE_TIME => S::ChronoDateTime(None),
        kind::DATE_TIME_UTC => S::ChronoDateTimeUtc(None),
        kind::DATE_TIME_LOCAL => S::ChronoDateTimeLocal(None),
        kind::DATE_TIME_WITH_TIME_ZONE => S::ChronoDateTimeWithTimeZone(None),
        kind::UUID => S::Uuid(None),
        kind::DECIMAL => S::Decimal(None),
        _ => return None,
    })
}
