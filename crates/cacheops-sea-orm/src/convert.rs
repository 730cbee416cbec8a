//! Conversions: SeaORM values and rows to cacheops values and rows, and cached rows to and from
//! bytes (the format is described in [`crate::row_codec`]).

use cacheops::{Row, Value};
use sea_orm::sea_query::Value as SeaValue;
use sea_orm::{DbErr, QueryResult, Statement};
use serde::{Deserialize, Serialize};

use crate::row_codec;

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
        let (columns, values) = crate::live::decode(row)?;
        Ok(CachedRow { columns, values })
    }

    /// Rebuilds a `QueryResult` that reads back like the live row, by name and by position.
    /// Fails on repeated column names and when values and columns differ in number.
    /// (Feature `transparent`: needs SeaORM with cacheops' patches.)
    #[cfg(feature = "transparent")]
    pub fn into_query_result(self) -> Result<QueryResult, DbErr> {
        let columns = std::sync::Arc::new(sea_orm::ProxyColumns::new(self.columns)?);
        Ok(QueryResult::from(sea_orm::ProxyRow::with_shared_columns(columns, self.values)?))
    }

    /// The row as column → cacheops value (for invalidation).
    pub fn to_row(&self) -> Row {
        self.columns.iter().cloned().zip(self.values.iter().map(to_value)).collect()
    }
}

/// Hidden entry points to the byte format for benchmarks and tools (not a stable API).
impl CachedRow {
    /// [`encode`].
    #[doc(hidden)]
    pub fn encode_all(rows: &[CachedRow]) -> Result<Vec<u8>, DbErr> {
        encode(rows)
    }

    /// [`decode`].
    #[doc(hidden)]
    pub fn decode_all(bytes: &[u8]) -> Option<Vec<CachedRow>> {
        decode(bytes)
    }

    /// [`decode_query_results`].
    #[doc(hidden)]
    #[cfg(feature = "transparent")]
    pub fn decode_query_results(bytes: &[u8]) -> Option<Vec<QueryResult>> {
        decode_query_results(bytes)
    }
}

/// Serialises the rows of one result (they must share their columns). Fails, and the caller
/// bypasses the cache, if a value has no faithful encoding.
pub fn encode(rows: &[CachedRow]) -> Result<Vec<u8>, DbErr> {
    row_codec::encode_rows(rows)
}

/// Deserialises cached rows; `None` when the bytes are not a row list of the current format
/// (treated as a miss).
pub fn decode(bytes: &[u8]) -> Option<Vec<CachedRow>> {
    row_codec::decode_rows(bytes)
}

/// Deserialises cached rows straight into `QueryResult`s that share one copy of the column
/// names (what a hit hands to SeaORM); `None` as for [`decode`].
#[cfg(feature = "transparent")]
pub(crate) fn decode_query_results(bytes: &[u8]) -> Option<Vec<QueryResult>> {
    row_codec::decode_query_results(bytes)
}

/// Converts live rows; `None` if any row cannot be cached faithfully.
pub fn convert_rows(rows: &[QueryResult]) -> Option<Vec<CachedRow>> {
    rows.iter().map(|r| CachedRow::from_query_result(r).ok()).collect()
}

#[cfg(test)]
mod tests {
    //! The row format: every value round-trips exactly, malformed input is a miss.

    use super::*;
    use crate::row_codec::{MAX_JSON_DEPTH, VERSION};
    use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
    use sea_orm::prelude::{Decimal, Uuid};
    use sea_orm::sea_query::{Enum, EnumTypeName, OptionEnum};
    use std::str::FromStr;

    /// A deterministic xorshift generator (no dependency, reproducible failures).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn offset(secs: i32) -> FixedOffset {
        FixedOffset::east_opt(secs).expect("test offset")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    fn date_time() -> NaiveDateTime {
        date(2024, 2, 29).and_hms_nano_opt(23, 59, 58, 123_456_789).expect("test time")
    }

    fn enum_value(type_name: &str, value: &str) -> SeaValue {
        SeaValue::Enum(OptionEnum::Some(Box::new(Enum {
            type_name: EnumTypeName::from(type_name),
            value: value.to_owned().into(),
        })))
    }

    fn nested_json(depth: usize) -> serde_json::Value {
        (0..depth).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]))
    }

    /// The `None` form of every supported variant.
    fn nulls() -> Vec<SeaValue> {
        use SeaValue as S;
        vec![
            S::Bool(None),
            S::TinyInt(None),
            S::SmallInt(None),
            S::Int(None),
            S::BigInt(None),
            S::TinyUnsigned(None),
            S::SmallUnsigned(None),
            S::Unsigned(None),
            S::BigUnsigned(None),
            S::Float(None),
            S::Double(None),
            S::String(None),
            S::Char(None),
            S::Bytes(None),
            S::Json(None),
            S::ChronoDate(None),
            S::ChronoTime(None),
            S::ChronoDateTime(None),
            S::ChronoDateTimeUtc(None),
            S::ChronoDateTimeLocal(None),
            S::ChronoDateTimeWithTimeZone(None),
            S::Uuid(None),
            S::Decimal(None),
            S::Enum(OptionEnum::None(EnumTypeName::from("mood"))),
        ]
        .into_iter()
        .chain(arrays().into_iter().filter(|a| a == &a.as_null()))
        .collect()
    }

    /// PostgreSQL arrays (null, empty, with null elements, of enums) if the feature is on.
    #[cfg(feature = "postgres")]
    fn arrays() -> Vec<SeaValue> {
        use SeaValue as S;
        use sea_orm::sea_query::ArrayType;
        let mood = || ArrayType::Enum(Box::new(EnumTypeName::from("mood")));
        vec![
            S::Array(ArrayType::Int, None),
            S::Array(mood(), None),
            S::Array(ArrayType::Int, Some(Box::new(vec![S::Int(Some(1)), S::Int(None), S::Int(Some(i32::MIN))]))),
            S::Array(ArrayType::String, Some(Box::new(Vec::new()))),
            S::Array(mood(), Some(Box::new(vec![enum_value("mood", "sad")]))),
            S::Array(
                ArrayType::ChronoDateTimeUtc,
                Some(Box::new(vec![S::ChronoDateTimeUtc(Some(date_time().and_utc()))])),
            ),
        ]
    }

    /// No arrays without the `postgres` feature.
    #[cfg(not(feature = "postgres"))]
    fn arrays() -> Vec<SeaValue> {
        Vec::new()
    }

    /// Non-null values of every supported variant, with their edge cases.
    fn values() -> Vec<SeaValue> {
        use SeaValue as S;
        let mut v = vec![
            S::Bool(Some(false)),
            S::Bool(Some(true)),
            S::TinyInt(Some(i8::MIN)),
            S::TinyInt(Some(i8::MAX)),
            S::SmallInt(Some(i16::MIN)),
            S::SmallInt(Some(i16::MAX)),
            S::Int(Some(i32::MIN)),
            S::Int(Some(i32::MAX)),
            S::Int(Some(0)),
            S::BigInt(Some(i64::MIN)),
            S::BigInt(Some(i64::MAX)),
            S::BigInt(Some(-1)),
            S::TinyUnsigned(Some(u8::MAX)),
            S::SmallUnsigned(Some(u16::MAX)),
            S::Unsigned(Some(u32::MAX)),
            S::BigUnsigned(Some(u64::MAX)),
            S::BigUnsigned(Some(0)),
            S::String(Some(String::new())),
            S::String(Some("héllo wörld ✓ 🦀 \u{0} \u{10FFFF} \"quoted\"\n".to_owned())),
            S::String(Some("x".repeat(300))),
            S::Char(Some('a')),
            S::Char(Some('\u{0}')),
            S::Char(Some('🦀')),
            S::Char(Some('\u{10FFFF}')),
            S::Bytes(Some(Vec::new())),
            S::Bytes(Some((0..=255).collect())),
            S::ChronoDate(Some(NaiveDate::MIN)),
            S::ChronoDate(Some(NaiveDate::MAX)),
            S::ChronoDate(Some(date(1970, 1, 1))),
            S::ChronoTime(Some(NaiveTime::MIN)),
            S::ChronoTime(Some(NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).expect("time"))),
            S::ChronoTime(Some(NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).expect("leap second"))),
            S::ChronoDateTime(Some(NaiveDateTime::MIN)),
            S::ChronoDateTime(Some(NaiveDateTime::MAX)),
            S::ChronoDateTime(Some(date_time())),
            S::ChronoDateTimeUtc(Some(date_time().and_utc())),
            S::ChronoDateTimeUtc(Some(DateTime::<Utc>::MIN_UTC)),
            S::ChronoDateTimeUtc(Some(DateTime::<Utc>::MAX_UTC)),
            S::ChronoDateTimeLocal(Some(Local.from_utc_datetime(&date_time()))),
            S::ChronoDateTimeLocal(Some(DateTime::<Local>::from_naive_utc_and_offset(date_time(), offset(-12_345)))),
            S::ChronoDateTimeWithTimeZone(Some(offset(5 * 3600 + 1800).from_utc_datetime(&date_time()))),
            S::ChronoDateTimeWithTimeZone(Some(offset(-86_399).from_utc_datetime(&date_time()))),
            S::ChronoDateTimeWithTimeZone(Some(offset(0).from_utc_datetime(&date_time()))),
            S::Uuid(Some(Uuid::nil())),
            S::Uuid(Some(Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210))),
            S::Uuid(Some(Uuid::max())),
            S::Decimal(Some(Decimal::MAX)),
            S::Decimal(Some(Decimal::MIN)),
            S::Decimal(Some(Decimal::from_str("-0.0000000000000000000000000001").expect("decimal"))),
            S::Decimal(Some(Decimal::from_str("123.4500").expect("decimal"))),
            S::Decimal(Some(Decimal::from_str("-0.00").expect("decimal"))),
            S::Json(Some(Box::new(serde_json::json!(null)))),
            S::Json(Some(Box::new(serde_json::json!({
                "b": [1, -1, u64::MAX, i64::MIN, 0.1, 1e300, -0.0, 2.5e-308, 5e-324, 3.0],
                "a": {"nested": ["é", "🦀", "\u{0}", true, false, null]},
                "": ""
            })))),
            S::Json(Some(Box::new(nested_json(MAX_JSON_DEPTH)))),
            enum_value("mood", "happy"),
            enum_value("", "ünïcode ✓"),
        ];
        v.extend(arrays().into_iter().filter(|a| a != &a.as_null()));
        for f in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, f32::MIN_POSITIVE / 2.0, f32::MAX] {
            v.push(S::Float(Some(f)));
        }
        v.push(S::Float(Some(f32::from_bits(0x7FC0_1234))));
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.1, f64::MIN_POSITIVE / 2.0, f64::MAX, f64::MIN] {
            v.push(S::Double(Some(f)));
        }
        v.push(S::Double(Some(f64::from_bits(0xFFF8_0000_DEAD_BEEF))));
        v
    }

    /// Every value (null or not) as one row of `column_i` columns.
    fn all_values_row() -> CachedRow {
        let values: Vec<SeaValue> = nulls().into_iter().chain(values()).collect();
        let columns = (0..values.len()).map(|i| format!("column_{i}")).collect();
        CachedRow { columns, values }
    }

    /// The tag of a non-null `Int` (read off an encoding, not hard-coded).
    fn kind_int() -> u8 {
        let bytes = encoded(&[CachedRow { columns: vec!["a".into()], values: vec![SeaValue::Int(Some(0))] }]);
        bytes[bytes.len() - 5]
    }

    fn encoded(rows: &[CachedRow]) -> Vec<u8> {
        encode(rows).expect("encodable rows")
    }

    /// `a` and `b` are the same variant with the same value, bit for bit: equal (NaN == NaN
    /// here), the same debug text (offsets, -0.0, type names) and the same encoding (float
    /// bits, decimal sign and scale).
    fn assert_exact(a: &SeaValue, b: &SeaValue) {
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let row = |v: &SeaValue| vec![CachedRow { columns: vec!["c".into()], values: vec![v.clone()] }];
        assert_eq!(encoded(&row(a)), encoded(&row(b)), "{a:?}");
    }

    #[test]
    fn every_variant_and_none_form_round_trips_exactly() {
        for value in nulls().into_iter().chain(values()) {
            let rows = vec![CachedRow { columns: vec!["c".into()], values: vec![value.clone()] }];
            let back = decode(&encoded(&rows)).unwrap_or_else(|| panic!("decodes {value:?}"));
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].columns, ["c"]);
            assert_exact(&back[0].values[0], &value);
        }
    }

    #[test]
    fn many_rows_share_the_column_names() {
        let row = all_values_row();
        let rows = vec![row.clone(), row.clone(), row];
        let bytes = encoded(&rows);
        assert_eq!(bytes[0], VERSION);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back, rows);
        for (a, b) in back.iter().zip(&rows) {
            for (x, y) in a.values.iter().zip(&b.values) {
                assert_exact(x, y);
            }
        }
        let one = encoded(&rows[..1]);
        let names: usize = rows[0].columns.iter().map(|c| c.len() + 1).sum();
        assert_eq!(bytes.len(), 1 + (one.len() - 1 - names - 2) * 3 + names + 2, "names are written once");
    }

    #[test]
    fn empty_results_and_rows_without_columns_round_trip() {
        assert_eq!(decode(&encoded(&[])), Some(Vec::new()));
        let empty = CachedRow { columns: Vec::new(), values: Vec::new() };
        let rows = vec![empty.clone(), empty];
        assert_eq!(decode(&encoded(&rows)), Some(rows));
    }

    #[test]
    #[cfg(feature = "transparent")]
    fn query_results_read_back_like_the_rows() {
        let row = all_values_row();
        let bytes = encoded(&[row.clone(), row.clone()]);
        let results = decode_query_results(&bytes).expect("decodes");
        assert_eq!(results.len(), 2);
        for result in results {
            assert_eq!(result.column_names(), row.columns);
            let proxy = sea_orm::from_query_result_to_proxy_row(&result);
            assert_eq!(
                proxy.to_ordered_pairs(),
                row.columns.iter().cloned().zip(row.values.clone()).collect::<Vec<_>>()
            );
            assert_eq!(proxy.values.len(), row.columns.len(), "the map is filled for callers");
        }
    }

    #[test]
    #[cfg(feature = "transparent")]
    fn shared_rows_are_read_by_name_and_position_with_equivalents() {
        let columns = ["id", "title", "visible", "missing_value"].map(String::from).to_vec();
        let values = vec![
            SeaValue::BigInt(Some(42)),
            SeaValue::String(Some("post".into())),
            SeaValue::BigInt(Some(1)),
            SeaValue::Int(None),
        ];
        let rows = vec![CachedRow { columns, values }];
        for result in [
            decode_query_results(&encoded(&rows)).expect("decodes").remove(0),
            rows[0].clone().into_query_result().expect("rebuilds"),
        ] {
            assert_eq!(result.try_get::<i32>("", "id").ok(), Some(42));
            assert_eq!(result.try_get::<i64>("", "id").ok(), Some(42));
            assert_eq!(result.try_get_by_index::<String>(1).ok(), Some("post".to_owned()));
            assert_eq!(result.try_get::<bool>("", "visible").ok(), Some(true));
            assert_eq!(result.try_get::<Option<i32>>("", "missing_value").ok(), Some(None));
            assert_eq!(result.try_get::<Option<i32>>("", "no_such_column").ok(), Some(None));
            assert!(result.try_get::<i32>("", "title").is_err(), "a wrong type is an error");
            assert!(result.try_get_by_index::<String>(4).is_err());
        }
    }

    #[test]
    #[cfg(feature = "transparent")]
    fn wide_rows_are_looked_up_by_name() {
        let columns: Vec<String> = (0..40).rev().map(|i| format!("c{i}")).collect();
        let values = (0..40).map(|i| SeaValue::Int(Some(i))).collect();
        let rows = vec![CachedRow { columns: columns.clone(), values }];
        let result = decode_query_results(&encoded(&rows)).expect("decodes").remove(0);
        for (i, name) in columns.iter().enumerate() {
            assert_eq!(result.try_get::<i32>("", name).ok(), Some(i as i32), "{name}");
        }
    }

    #[test]
    fn unfaithful_rows_are_not_encoded() {
        let row = |columns: &[&str], values: Vec<SeaValue>| CachedRow {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values,
        };
        let int = || SeaValue::Int(Some(1));
        assert!(encode(&[row(&["a"], vec![int()]), row(&["b"], vec![int()])]).is_err(), "different columns");
        assert!(encode(&[row(&["a", "b"], vec![int()])]).is_err(), "fewer values than columns");
        assert!(encode(&[row(&["a"], vec![int(), int()])]).is_err(), "more values than columns");
        assert!(encode(&[row(&["a", "a"], vec![int(), int()])]).is_err(), "repeated column names");
        let wide: Vec<String> = (0..30).map(|i| format!("c{}", i % 29)).collect();
        let wide_row = CachedRow { columns: wide, values: vec![int(); 30] };
        assert!(encode(std::slice::from_ref(&wide_row)).is_err(), "repeated names among many columns");
        #[cfg(feature = "transparent")]
        assert!(wide_row.into_query_result().is_err());
        let deep = SeaValue::Json(Some(Box::new(nested_json(MAX_JSON_DEPTH + 1))));
        assert!(encode(&[row(&["a"], vec![deep])]).is_err(), "JSON too deep to read back");
        #[cfg(feature = "postgres")]
        {
            use sea_orm::sea_query::ArrayType;
            let inner = SeaValue::Array(ArrayType::Int, Some(Box::new(vec![int()])));
            let nested = SeaValue::Array(ArrayType::Int, Some(Box::new(vec![inner])));
            assert!(encode(&[row(&["a"], vec![nested])]).is_err(), "arrays of arrays");
        }
        let empty = vec![row(&[], Vec::new()); (1 << 16) + 1];
        assert!(encode(&empty).is_err(), "too many rows without columns");
        #[cfg(feature = "transparent")]
        assert!(row(&["a"], Vec::new()).into_query_result().is_err());
    }

    #[test]
    fn old_format_and_other_versions_are_misses() {
        let rows = vec![all_values_row()];
        let old =
            serde_json::to_vec(&vec![CachedRow { columns: vec!["id".into()], values: vec![SeaValue::Int(Some(1))] }])
                .expect("serde_json");
        assert_eq!(decode(&old), None);
        #[cfg(feature = "transparent")]
        assert!(decode_query_results(&old).is_none());
        let mut bytes = encoded(&rows);
        bytes[0] = VERSION + 1;
        assert_eq!(decode(&bytes), None);
        assert_eq!(decode(&[]), None);
        let duplicate_names = [VERSION, 2, 1, b'a', 1, b'a', 1, kind_int(), 1, 0, 0, 0, kind_int(), 2, 0, 0, 0];
        assert!(decode(&duplicate_names).is_some(), "well-formed otherwise");
        #[cfg(feature = "transparent")]
        assert!(decode_query_results(&duplicate_names).is_none(), "a corrupt header with a name twice");
    }

    #[test]
    fn truncated_or_extended_encodings_are_misses() {
        let row = all_values_row();
        let bytes = encoded(&[row.clone(), row]);
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "prefix of {len} bytes");
            #[cfg(feature = "transparent")]
            assert!(decode_query_results(&bytes[..len]).is_none(), "prefix of {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }

    #[test]
    fn corrupted_encodings_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let bytes = encoded(&[all_values_row()]);
        for _ in 0..20_000 {
            let mut bad = bytes.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bad.len());
                bad[at] = rng.next() as u8;
            }
            let cut = bad.len() - rng.below(4);
            let _ = decode(&bad[..cut]);
            #[cfg(feature = "transparent")]
            let _ = decode_query_results(&bad[..cut]);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..50_000 {
            let len = rng.below(64);
            let mut bytes = rng.bytes(len);
            if rng.below(2) == 0 && !bytes.is_empty() {
                bytes[0] = VERSION;
            }
            let _ = decode(&bytes);
            #[cfg(feature = "transparent")]
            let _ = decode_query_results(&bytes);
        }
        // Huge counts with nothing behind them.
        let huge = [VERSION, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert_eq!(decode(&huge), None);
        assert_eq!(decode(&[VERSION, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), None, "rows without columns");
        assert_eq!(decode(&[VERSION, 0x01, 0x01, b'a', 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x84]), None);
    }

    /// Reads `sql` from a live database, then checks that its rows convert, round-trip exactly
    /// through the format and read back the same through [`decode_query_results`].
    async fn assert_live_rows_round_trip(url: &str, sql: &str) {
        use sea_orm::{ConnectionTrait, Database};
        let db = Database::connect(url).await.expect("database");
        let stmt = Statement::from_string(db.get_database_backend(), sql);
        let live = db.query_all_raw(stmt).await.expect("query");
        assert!(!live.is_empty());
        let rows = convert_rows(&live).expect("convertible rows");
        let back = decode(&encoded(&rows)).expect("decodes");
        assert_eq!(back.len(), rows.len());
        for (a, b) in back.iter().zip(&rows) {
            assert_eq!(a.columns, b.columns);
            a.values.iter().zip(&b.values).for_each(|(x, y)| assert_exact(x, y));
        }
        #[cfg(feature = "transparent")]
        for (result, row) in decode_query_results(&encoded(&rows)).expect("decodes").iter().zip(&rows) {
            assert_eq!(&CachedRow::from_query_result(result).expect("proxy row"), row);
        }
    }

    #[tokio::test]
    #[cfg(feature = "sqlite")]
    async fn live_sqlite_rows_round_trip() {
        assert_live_rows_round_trip(
            "sqlite::memory:",
            "SELECT 1 AS one, -9223372036854775808 AS min, 9223372036854775807 AS max, 1.5e300 AS r,
                    -0.0 AS negzero, 'héllo 🦀' AS t, x'00ff' AS b, NULL AS n, COUNT(*) AS c",
        )
        .await;
    }

    /// Every PostgreSQL type the driver conversion accepts.
    #[tokio::test]
    #[cfg(feature = "postgres")]
    async fn live_postgres_rows_round_trip() {
        assert_live_rows_round_trip(
            "postgres://postgres@127.0.0.1:5432/test",
            r#"SELECT true AS b, 'x'::"char" AS ch, (-32768)::int2 AS i2, (-2147483648)::int4 AS i4,
                   (-9223372036854775808)::int8 AS i8, 4294967295::oid AS o, 'NaN'::float4 AS f4,
                   '-Infinity'::float8 AS f8, (-0.0)::float8 AS nz, 'héllo 🦀'::text AS t, 'v'::varchar AS v,
                   'c'::char(3) AS c3, 'n'::name AS nm, '\x00ff'::bytea AS by,
                   '-79228162514264337593543950335'::numeric AS n1, '0.0000000000000000000000000001'::numeric AS n2,
                   '{"a": [1, 0.1, -0.0, 1e300, 18446744073709551615], "é": null}'::json AS j,
                   '{"b": {"c": "🦀"}}'::jsonb AS jb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
                   '4713-01-01 BC'::date AS d, '23:59:59.999999'::time AS tm,
                   '2024-02-29 12:34:56.789012'::timestamp AS ts, '2024-02-29 12:34:56.789012+05:30'::timestamptz AS tz,
                   ARRAY[true, false] AS ab, ARRAY[1, 2]::int2[] AS a2, ARRAY[1, 2]::int4[] AS a4,
                   ARRAY[1, 2]::int8[] AS a8, ARRAY[1.5]::float4[] AS af4, ARRAY['NaN']::float8[] AS af8,
                   ARRAY['a', 'é']::text[] AS at, ARRAY['\x01'::bytea] AS aby, ARRAY[1.25]::numeric[] AS an,
                   ARRAY['{"a": 1}'::jsonb] AS aj, ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid] AS au,
                   ARRAY['2024-01-01'::date] AS ad, ARRAY['12:00'::time] AS atm,
                   ARRAY['2024-01-01 00:00'::timestamp] AS ats, ARRAY['2024-01-01 00:00+00'::timestamptz] AS atz,
                   NULL::int4 AS null_int, NULL::text AS null_text, NULL::jsonb AS null_json,
                   NULL::int4[] AS null_array, '{}'::int4[] AS empty_array
            UNION ALL
            SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"#,
        )
        .await;
    }
}
