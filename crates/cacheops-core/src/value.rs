//! Typed bind values and their canonical rendering in conj keys.

use std::fmt::Write as _;

/// A typed value as it appears in a bind parameter, a SQL literal or a database row.
///
/// Integrations convert their own value types (SeaORM's `sea_query::Value`, SQLx arguments) into
/// this enum. Only equality matters here: [`Value::render`] is the canonical form used in conj keys,
/// and both sides of the protocol (the cached read and the invalidating write) go through it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer that fits in `i64`.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// Text (also decimals, dates, timestamps and UUIDs in their textual form).
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array (for `= ANY($1)`).
    Array(Vec<Value>),
}

/// The rendering of `NULL` in a conj key. It cannot be produced by any non-null value, because
/// rendered text never starts with a control character (those are escaped).
pub const NULL_RENDERING: &str = "\u{1}N";

/// Longest rendered value kept verbatim in a key; longer ones are replaced by their SHA-1.
pub const MAX_VERBATIM_LEN: usize = 64;

impl Value {
    /// The canonical, key-safe rendering of this value.
    ///
    /// The rendering is a function of the *logical* value so that a read (`WHERE visible = true`,
    /// `WHERE category_id = '3'`) and a write (a row fetched with `visible = 1`, `category_id = 3`)
    /// produce the same conj key. Values that merely look alike may collide (text `'007'` and the
    /// integer `7`): that only ever causes an extra invalidation, never a missed one.
    ///
    /// ```
    /// use cacheops_core::Value;
    /// assert_eq!(Value::Int(3).render(), Value::Text("3".into()).render());
    /// assert_eq!(Value::Bool(true).render(), Value::Int(1).render());
    /// assert_eq!(Value::Text("TRUE".into()).render(), Value::Bool(true).render());
    /// assert_ne!(Value::Null.render(), Value::Text("".into()).render());
    /// ```
    pub fn render(&self) -> String {
        let raw = match self {
            Value::Null => return NULL_RENDERING.to_owned(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => render_float(*f),
            Value::Text(s) => render_text(s),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(Value::render).collect();
                format!("{{{}}}", parts.join(","))
            }
        };
        finish(escape(&raw))
    }

    /// Appends an exact, self-delimiting binary form of this value to `out`: a tag byte, then a
    /// fixed-width number or a length-prefixed payload. Unlike [`Value::render`] it tells every
    /// two different values apart (types included), so a sequence of encodings identifies a list
    /// of bind values — what cache keys of SQL reads are derived from.
    ///
    /// ```
    /// use cacheops_core::Value;
    /// let enc = |v: &[Value]| { let mut out = Vec::new(); v.iter().for_each(|v| v.encode_into(&mut out)); out };
    /// assert_ne!(enc(&[Value::Int(3)]), enc(&[Value::Text("3".into())]));
    /// assert_ne!(enc(&[Value::Text("a".into()), Value::Text("b".into())]), enc(&[Value::Text("ab".into())]));
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        fn payload(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Value::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::UInt(u) => {
                out.push(3);
                out.extend_from_slice(&u.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(4);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Text(t) => payload(out, 5, t.as_bytes()),
            Value::Bytes(b) => payload(out, 6, b),
            Value::Array(items) => {
                out.push(7);
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                Value::encode_all_into(items, out);
            }
        }
    }

    /// [`Value::encode_into`] of each value in turn: an exact encoding of a list of binds (of a
    /// known statement, so the list needs no length of its own).
    pub fn encode_all_into(values: &[Value], out: &mut Vec<u8>) {
        for v in values {
            v.encode_into(out);
        }
    }

    /// Whether this value is SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

fn render_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        // Integral floats render like integers: `1.0` in a query matches `1` in a row.
        #[allow(clippy::cast_possible_truncation)]
        return (f as i64).to_string();
    }
    format!("{f}")
}

/// Text is normalised where its logical value has another common spelling: booleans and numbers.
fn render_text(s: &str) -> String {
    match s.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" => return "1".to_owned(),
        "f" | "false" | "n" | "no" | "off" => return "0".to_owned(),
        _ => {}
    }
    if let Some(n) = normalise_number(s) {
        return n;
    }
    if looks_like_uuid(s) {
        return s.to_ascii_lowercase();
    }
    s.to_owned()
}

/// `"003"` → `"3"`, `"1.50"` → `"1.5"`, `"-0"` → `"0"`, `"2.000"` → `"2"`. Only plain decimal
/// notation is normalised; anything else is kept as it is.
fn normalise_number(s: &str) -> Option<String> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty() {
        return None;
    }
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_trim = int_part.trim_start_matches('0');
    let frac_trim = frac_part.trim_end_matches('0');
    let mut out = String::new();
    if int_trim.is_empty() && frac_trim.is_empty() {
        return Some("0".to_owned());
    }
    if neg {
        out.push('-');
    }
    out.push_str(if int_trim.is_empty() { "0" } else { int_trim });
    if !frac_trim.is_empty() {
        out.push('.');
        out.push_str(frac_trim);
    }
    Some(out)
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Escapes the characters that structure a conj key (`&`, `=`, `%`) and control characters.
fn escape(s: &str) -> String {
    if !s.bytes().any(|b| matches!(b, b'&' | b'=' | b'%' | b',') || b < 0x20) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '&' | '=' | '%' | ',' => {
                let _ = write!(out, "%{:02X}", ch as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes and, past [`MAX_VERBATIM_LEN`], hashes a raw rendering: the last step of every
/// canonical form.
pub(crate) fn key_safe(raw: String) -> String {
    finish(escape(&raw))
}

fn finish(s: String) -> String {
    if s.len() <= MAX_VERBATIM_LEN { s } else { format!("#{}", sha1_smol::Sha1::from(s.as_bytes()).digest()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_agree() {
        assert_eq!(Value::Text("0042".into()).render(), "42");
        assert_eq!(Value::Text("1.50".into()).render(), Value::Float(1.5).render());
        assert_eq!(Value::Float(2.0).render(), Value::Int(2).render());
        assert_eq!(Value::Text("-0.0".into()).render(), "0");
        assert_eq!(Value::Text("abc".into()).render(), "abc");
        assert_eq!(Value::Text("1e5".into()).render(), "1e5");
    }

    #[test]
    fn structure_characters_are_escaped() {
        assert_eq!(Value::Text("a&b=c".into()).render(), "a%26b%3Dc");
        assert_eq!(Value::Text("\n".into()).render(), "%0A");
        assert_ne!(Value::Text(NULL_RENDERING.into()).render(), Value::Null.render());
    }

    #[test]
    fn long_values_are_hashed() {
        let long = "x".repeat(200);
        let r = Value::Text(long.clone()).render();
        assert!(r.starts_with('#') && r.len() == 41);
        assert_eq!(r, Value::Text(long).render());
    }

    #[test]
    fn uuids_ignore_case() {
        assert_eq!(
            Value::Text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into()).render(),
            Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()).render()
        );
    }
}
