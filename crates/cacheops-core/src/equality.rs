//! Equality as the database defines it: one canonical form per column.
//!
//! A conj key holds `column = canonical(value)`. For invalidation to be exact, two values the
//! database calls equal in a column must have the same canonical form there, whichever way they
//! were spelled (a literal, a bind, a row decoded by the driver). That depends on the column's
//! type and collation, so the canonical form is chosen per column, from a [`Catalog`]:
//!
//! * every column has a [`ColumnClass`]; integrations load the classes from the database's
//!   catalog (types, collations, generated columns), users of the raw API declare them with
//!   [`TableSchema`];
//! * [`ColumnClass::canonical`] maps a value to its canonical form, or to `None` when the form
//!   is not certain for that class (a spelling the database may read differently, a value the
//!   column would round on store, a type the database converts implicitly);
//! * `None` never narrows: on a read the condition is dropped (the conj is wider), on a write
//!   the column is left out of the row, so every scheme that uses it is invalidated at table
//!   level. Both are coarse and never stale;
//! * [`ColumnClass::Opaque`] columns (case-insensitive or nondeterministic collations, floats,
//!   JSON, arrays, intervals, generated columns, anything not listed) never narrow at all;
//! * a table the catalog does not know is opaque as a whole in a [`Catalog::strict`] catalog
//!   (what a [`crate::Analyzer`] inside a cache uses), and rendered with [`Value::render`] in a
//!   [`Catalog::untyped`] one (analysis tools and tests only: it is not exact).
//!
//! ```
//! use cacheops_core::equality::{Catalog, ColumnClass, TableSchema, TextFold};
//! use cacheops_core::Value;
//!
//! let catalog = Catalog::strict();
//! catalog.install([TableSchema::new("post")
//!     .column("id", ColumnClass::Integer)
//!     .column("title", ColumnClass::Text { fold: TextFold::Exact, max_chars: None })
//!     .column("score", ColumnClass::Opaque)]);
//! let snap = catalog.snapshot();
//! assert_eq!(snap.canonical("post", "id", &Value::Text("042".into()), None).as_deref(), Some("42"));
//! assert_eq!(snap.canonical("post", "id", &Value::Text("42abc".into()), None), None);
//! assert_eq!(snap.canonical("post", "score", &Value::Float(1.5), None), None);
//! assert_eq!(snap.canonical("other", "id", &Value::Int(1), None), None); // unknown table
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::value::{NULL_RENDERING, Value};

/// How text compares in a column (its collation), when that is certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TextFold {
    /// Byte (code point) equality: PostgreSQL deterministic collations, SQLite `BINARY`,
    /// MySQL `*_nopad_bin`.
    Exact,
    /// Trailing U+0020 spaces are ignored (PAD SPACE): PostgreSQL `char(n)`, SQLite `RTRIM`,
    /// MySQL `*_bin`.
    TrimEnd,
    /// ASCII letters fold case (SQLite `NOCASE`).
    AsciiCase,
}

/// What equality means in a column, as far as a canonical form can follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnClass {
    /// Never narrows (the condition is table-level on both sides).
    Opaque,
    /// Integers (any width), MySQL `BOOLEAN`, SQLite INTEGER and NUMERIC affinity. Text narrows
    /// only in plain decimal notation of up to 15 digits.
    Integer,
    /// Exact decimals (PostgreSQL `numeric`, MySQL `DECIMAL`): by numeric value; a value with
    /// more fractional digits than `scale` is not certain (the column rounds it on store).
    Decimal {
        /// The column's scale, when it has one.
        scale: Option<u32>,
    },
    /// PostgreSQL `boolean`: the exact spellings it accepts (`t`, `true`, `yes`, `on`, `1`, …).
    Bool,
    /// UUIDs: 32 hex digits, hyphens and braces ignored, case folded.
    Uuid,
    /// Text with a certain collation.
    Text {
        /// The collation's equality.
        fold: TextFold,
        /// Longer values are not certain (`varchar(n)` silently cuts trailing spaces).
        max_chars: Option<u32>,
    },
    /// Binary strings compared byte by byte (only byte values narrow).
    Bytes,
    /// Dates, spelled `YYYY-MM-DD`.
    Date,
    /// Timestamps without time zone, `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` or a bare date (midnight).
    Timestamp {
        /// Fractional digits the column keeps (6 by default); more non-zero digits are not
        /// certain (rounded or truncated on store).
        precision: u8,
    },
    /// PostgreSQL `timestamptz`: an instant; only spellings with an explicit offset (`Z`,
    /// `+05`, `-03:30`) narrow, since the others depend on the session's time zone.
    TimestampTz {
        /// Fractional digits the column keeps.
        precision: u8,
    },
}

impl ColumnClass {
    /// The meet of two classes (what is certain under both): equal classes stay, others become
    /// [`ColumnClass::Opaque`]. Used when two databases describe a table of the same name.
    pub fn meet(self, other: ColumnClass) -> ColumnClass {
        if self == other { self } else { ColumnClass::Opaque }
    }

    /// The canonical form of `value` in a column of this class, or `None` when it is not
    /// certain. `cast` is the type the statement casts the value to (`$1::uuid`), if any: only
    /// casts that cannot change the value for this class are accepted.
    ///
    /// `NULL` is always certain (it renders as [`NULL_RENDERING`]). The result is key-safe
    /// (escaped, long values hashed), like [`Value::render`].
    pub fn canonical(self, value: &Value, cast: Option<&str>) -> Option<String> {
        if value.is_null() {
            return Some(NULL_RENDERING.to_owned());
        }
        if let Some(t) = cast
            && !self.cast_preserves(t)
        {
            return None;
        }
        let raw = match self {
            ColumnClass::Opaque => None,
            ColumnClass::Integer => integer(value),
            ColumnClass::Decimal { scale } => decimal(value, scale),
            ColumnClass::Bool => boolean(value),
            ColumnClass::Uuid => uuid(value),
            ColumnClass::Text { fold, max_chars } => text(value, fold, max_chars),
            ColumnClass::Bytes => match value {
                Value::Bytes(b) => Some(hex(b)),
                _ => None,
            },
            ColumnClass::Date => match value {
                Value::Text(s) => parse_date(s.as_bytes()).map(|d| d.to_string()),
                _ => None,
            },
            ColumnClass::Timestamp { precision } => match value {
                Value::Text(s) => timestamp(s, precision, false),
                _ => None,
            },
            ColumnClass::TimestampTz { precision } => match value {
                Value::Text(s) => timestamp(s, precision, true),
                _ => None,
            },
        }?;
        Some(crate::value::key_safe(raw))
    }

    /// Whether casting a value to `type_name` before comparing it with (or storing it in) this
    /// column leaves the value unchanged for every value [`ColumnClass::canonical`] accepts.
    pub fn cast_preserves(self, type_name: &str) -> bool {
        let t = type_name.trim().to_ascii_lowercase();
        let t = t.trim_start_matches("pg_catalog.");
        // A length or precision modifier (`varchar(3)`, `numeric(5,2)`) may cut or round.
        if t.contains('(') {
            return false;
        }
        match self {
            ColumnClass::Opaque => false,
            ColumnClass::Integer => matches!(
                t,
                "int"
                    | "int2"
                    | "int4"
                    | "int8"
                    | "integer"
                    | "smallint"
                    | "bigint"
                    | "signed"
                    | "unsigned"
                    | "signed integer"
                    | "unsigned integer"
                    | "numeric"
                    | "decimal"
            ),
            ColumnClass::Decimal { .. } => matches!(t, "numeric" | "decimal"),
            ColumnClass::Bool => matches!(t, "bool" | "boolean"),
            ColumnClass::Uuid => t == "uuid",
            ColumnClass::Text { fold: TextFold::Exact, .. } => matches!(t, "text" | "varchar" | "character varying"),
            ColumnClass::Text { .. } => false,
            ColumnClass::Bytes => t == "bytea",
            ColumnClass::Date => t == "date",
            ColumnClass::Timestamp { .. } => matches!(t, "timestamp" | "timestamp without time zone" | "datetime"),
            ColumnClass::TimestampTz { .. } => matches!(t, "timestamptz" | "timestamp with time zone"),
        }
    }
}

/// What a table name stands for, beyond its columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Relation {
    /// A table (or a materialized view, which changes only through statements naming it).
    #[default]
    Table,
    /// A view. Reads through it depend, at table level, on the tables its definition reads
    /// (`None`: not known, and such reads are not cached); writes through it cannot be
    /// attributed to rows.
    View {
        /// The tables the view's definition reads.
        reads: Option<Vec<String>>,
    },
}

/// The classes of one table's columns.
///
/// ```
/// use cacheops_core::equality::{ColumnClass, TableSchema};
/// let post = TableSchema::new("post").column("id", ColumnClass::Integer).column("category_id", ColumnClass::Integer);
/// assert_eq!(post.class("id"), ColumnClass::Integer);
/// assert_eq!(post.class("nope"), ColumnClass::Opaque);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    name: String,
    columns: BTreeMap<String, ColumnClass>,
    relation: Relation,
    side_effects: bool,
    parents: Vec<String>,
}

impl TableSchema {
    /// A table with no columns yet (every column opaque). The name is as the analysis spells it
    /// (unquoted names lowercased, no schema qualifier).
    pub fn new(name: impl Into<String>) -> Self {
        TableSchema {
            name: name.into(),
            columns: BTreeMap::new(),
            relation: Relation::Table,
            side_effects: false,
            parents: Vec::new(),
        }
    }

    /// Declares the table a view ([`Relation::View`]).
    #[must_use]
    pub fn view(mut self, reads: Option<Vec<String>>) -> Self {
        self.relation = Relation::View { reads };
        self
    }

    /// Declares that writes to the table have effects its rows do not show: triggers or rules
    /// that may change other tables or rewrite the written rows. Such writes invalidate the
    /// whole namespace.
    #[must_use]
    pub fn side_effects(mut self, yes: bool) -> Self {
        self.side_effects = yes;
        self
    }

    /// Declares a parent table (PostgreSQL inheritance or partitioning): the parent's reads
    /// see this table's rows, and writes to the parent may change this table's rows.
    #[must_use]
    pub fn inherits(mut self, parent: impl Into<String>) -> Self {
        let parent = parent.into();
        if !self.parents.contains(&parent) {
            self.parents.push(parent);
        }
        self
    }

    /// What the name stands for.
    pub fn relation(&self) -> &Relation {
        &self.relation
    }

    /// Whether writes have effects beyond their rows ([`TableSchema::side_effects`]).
    pub fn has_side_effects(&self) -> bool {
        self.side_effects
    }

    /// The parent tables ([`TableSchema::inherits`]).
    pub fn parents(&self) -> &[String] {
        &self.parents
    }

    /// Declares a column.
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, class: ColumnClass) -> Self {
        self.columns.insert(name.into(), class);
        self
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A column's class ([`ColumnClass::Opaque`] when undeclared).
    pub fn class(&self, column: &str) -> ColumnClass {
        self.columns.get(column).copied().unwrap_or(ColumnClass::Opaque)
    }

    /// The declared columns.
    pub fn columns(&self) -> impl Iterator<Item = (&str, ColumnClass)> {
        self.columns.iter().map(|(k, v)| (k.as_str(), *v))
    }

    fn meet(&self, other: &TableSchema) -> TableSchema {
        let columns = self
            .columns
            .iter()
            .chain(other.columns.iter())
            .map(|(name, _)| (name.clone(), self.class(name).meet(other.class(name))))
            .collect();
        // Whatever either side says that makes a write or a read wider wins.
        let relation = match (&self.relation, &other.relation) {
            (Relation::Table, Relation::Table) => Relation::Table,
            (Relation::View { reads: Some(a) }, Relation::View { reads: Some(b) }) => {
                let mut reads = a.clone();
                reads.extend(b.iter().filter(|t| !a.contains(t)).cloned());
                Relation::View { reads: Some(reads) }
            }
            _ => Relation::View { reads: None },
        };
        let mut parents = self.parents.clone();
        parents.extend(other.parents.iter().filter(|p| !self.parents.contains(p)).cloned());
        TableSchema {
            name: self.name.clone(),
            columns,
            relation,
            side_effects: self.side_effects || other.side_effects,
            parents,
        }
    }
}

/// What a catalog does with a table it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    Opaque,
    Legacy,
}

/// What one source (a database connection, or the user's declarations) says.
#[derive(Debug, Default, Clone)]
struct Contribution {
    tables: Vec<TableSchema>,
    functions: Vec<(String, bool)>,
}

/// The column classes of every known table, shared by the analysis (read conditions) and the
/// write path (written rows), so that both sides use the same canonical forms.
///
/// Several sources may describe tables (each database connection behind one cache, and the
/// user's declarations); each source's description replaces its previous one, and a table two
/// sources describe keeps what both agree on ([`ColumnClass::meet`]: two databases behind one
/// cache may disagree).
///
/// Cheap to read: [`Catalog::snapshot`] is one atomic reference count. A change bumps
/// [`Catalog::generation`], which memos of evaluated analyses compare against.
#[derive(Debug)]
pub struct Catalog {
    unknown: Unknown,
    sources: std::sync::Mutex<BTreeMap<u64, Contribution>>,
    /// The meet of the sources, replaced as a whole (a snapshot never mixes two states).
    state: RwLock<Arc<State>>,
    generation: AtomicU64,
}

/// What the sources say together.
#[derive(Debug, Default, PartialEq)]
struct State {
    tables: HashMap<String, TableSchema>,
    /// User-defined functions: name → whether it may write.
    functions: HashMap<String, bool>,
}

/// The source of [`Catalog::install`] and [`Catalog::install_functions`] (declarations).
const DECLARED: u64 = 0;

impl Catalog {
    fn with_unknown(unknown: Unknown) -> Self {
        Catalog {
            unknown,
            sources: std::sync::Mutex::default(),
            state: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// A catalog in which unknown tables never narrow. What a cache uses.
    pub fn strict() -> Self {
        Catalog::with_unknown(Unknown::Opaque)
    }

    /// A catalog in which unknown tables are rendered with [`Value::render`] (the analysis
    /// rules without type information). Not exact: for analysis tools and tests.
    pub fn untyped() -> Self {
        Catalog::with_unknown(Unknown::Legacy)
    }

    /// A new source id for [`Catalog::replace_source`] (unique in this process).
    pub fn new_source() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(DECLARED + 1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// Declares tables (added to what was declared before).
    pub fn install(&self, tables: impl IntoIterator<Item = TableSchema>) {
        self.change(DECLARED, |c| c.tables.extend(tables));
    }

    /// Declares user-defined functions (`name`, whether it may write). A read that calls one is
    /// not cached: the tables it reads are not visible in the statement. One that may write
    /// makes the statement a write that integrations cannot attribute. Built-in and extension
    /// functions are not listed. A name declared twice may write if either says so.
    pub fn install_functions(&self, functions: impl IntoIterator<Item = (String, bool)>) {
        self.change(DECLARED, |c| c.functions.extend(functions));
    }

    /// Replaces everything `source` said (what a database's catalog holds now).
    pub fn replace_source(&self, source: u64, tables: Vec<TableSchema>, functions: Vec<(String, bool)>) {
        self.change(source, |c| *c = Contribution { tables, functions });
    }

    /// Forgets what `source` said (after DDL): its tables are unknown until it replaces them.
    pub fn remove_source(&self, source: u64) {
        let mut sources = self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sources.remove(&source).is_some() {
            self.rebuild(&sources);
        }
    }

    fn change(&self, source: u64, f: impl FnOnce(&mut Contribution)) {
        let mut sources = self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(sources.entry(source).or_default());
        self.rebuild(&sources);
    }

    /// The meet of every source's tables, the union of their functions.
    fn rebuild(&self, sources: &BTreeMap<u64, Contribution>) {
        let mut next = State::default();
        for c in sources.values() {
            for t in &c.tables {
                let merged = match next.tables.get(&t.name) {
                    Some(existing) => existing.meet(t),
                    None => t.clone(),
                };
                next.tables.insert(merged.name.clone(), merged);
            }
            for (name, may_write) in &c.functions {
                *next.functions.entry(name.clone()).or_insert(false) |= *may_write;
            }
        }
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if **state != next {
            *state = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes so far (a counter).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current state, for a series of lookups.
    pub fn snapshot(&self) -> CatalogSnapshot {
        let state = Arc::clone(&self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        CatalogSnapshot { state, unknown: self.unknown }
    }
}

/// A consistent view of a [`Catalog`].
#[derive(Debug, Clone)]
pub struct CatalogSnapshot {
    state: Arc<State>,
    unknown: Unknown,
}

impl CatalogSnapshot {
    /// The class of a column; `None` for a table the catalog does not know.
    pub fn class(&self, table: &str, column: &str) -> Option<ColumnClass> {
        self.state.tables.get(table).map(|t| t.class(column))
    }

    /// The names of the known tables.
    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.state.tables.keys().map(String::as_str)
    }

    /// A user-defined function: `Some(may_write)`; `None` for built-in or unknown names.
    pub fn function(&self, name: &str) -> Option<bool> {
        self.state.functions.get(name).copied()
    }

    /// A known table's schema.
    pub fn table(&self, table: &str) -> Option<&TableSchema> {
        self.state.tables.get(table)
    }

    /// The tables whose rows a write to `table` may change without naming them: its
    /// descendants through inheritance or partitioning (transitively, at most 16 levels).
    pub fn descendants(&self, table: &str) -> Vec<String> {
        self.closure(table, |of| {
            self.state.tables.values().filter(|t| t.parents.iter().any(|p| p == of)).map(|t| t.name.clone()).collect()
        })
    }

    /// The tables whose reads see `table`'s rows: its ancestors (transitively, at most 16
    /// levels; a parent the catalog does not describe counts too).
    pub fn ancestors(&self, table: &str) -> Vec<String> {
        self.closure(table, |of| self.state.tables.get(of).map(|t| t.parents.clone()).unwrap_or_default())
    }

    /// The tables reached from `table` through `next`, breadth first, at most 16 levels deep.
    fn closure(&self, table: &str, next: impl Fn(&str) -> Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut frontier = vec![table.to_owned()];
        for _ in 0..16 {
            let mut reached = Vec::new();
            for of in &frontier {
                for t in next(of) {
                    if t != table && !out.contains(&t) {
                        out.push(t.clone());
                        reached.push(t);
                    }
                }
            }
            if reached.is_empty() {
                break;
            }
            frontier = reached;
        }
        out
    }

    /// The canonical form of `value` in `table.column` (see [`ColumnClass::canonical`]).
    pub fn canonical(&self, table: &str, column: &str, value: &Value, cast: Option<&str>) -> Option<String> {
        match self.class(table, column) {
            Some(class) => class.canonical(value, cast),
            None if self.unknown == Unknown::Legacy => Some(value.render()),
            None => None,
        }
    }

    /// Whether a cast to `type_name` leaves values of `table.column` unchanged (an unknown
    /// table of an untyped catalog: assumed, as [`Value::render`] does).
    pub fn cast_preserves(&self, table: &str, column: &str, type_name: &str) -> bool {
        match self.class(table, column) {
            Some(class) => class.cast_preserves(type_name),
            None => self.unknown == Unknown::Legacy,
        }
    }

    /// Whether two columns compare values alike, so that different canonical forms prove two
    /// values different (used to drop contradictory join conditions).
    pub fn same_equality(&self, a: (&str, &str), b: (&str, &str)) -> bool {
        match (self.class(a.0, a.1), self.class(b.0, b.1)) {
            (Some(x), Some(y)) => x == y && x != ColumnClass::Opaque,
            (None, None) => self.unknown == Unknown::Legacy,
            _ => false,
        }
    }

    /// A written row of `table` in canonical form, keyed by [`key_column`] names. Values whose
    /// form is not certain are left out: a scheme that uses their column is then invalidated
    /// at table level.
    pub fn render_row(&self, table: &str, row: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
        row.iter().filter_map(|(col, v)| self.canonical(table, col, v, None).map(|r| (key_column(col), r))).collect()
    }
}

/// A column name as it appears in schemes and conj keys: the characters that structure them
/// (`,` `&` `=` `%`) and control characters are percent-escaped, so that a column named `a,b`
/// is not the scheme of `a` and `b`.
pub fn key_column(name: &str) -> String {
    if !name.bytes().any(|b| matches!(b, b',' | b'&' | b'=' | b'%') || b < 0x20) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 8);
    for ch in name.chars() {
        if matches!(ch, ',' | '&' | '=' | '%') || (ch as u32) < 0x20 {
            let _ = write!(out, "%{:02X}", ch as u32);
        } else {
            out.push(ch);
        }
    }
    out
}

// ------------------------------------------------------------------------------ per class

/// Largest integer magnitude accepted from text or floats: every such value is exact in an
/// `f64`, which is how MySQL compares a string with a number.
const MAX_EXACT: f64 = 9.007_199_254_740_992e15;

fn integer(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < MAX_EXACT =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Some((*f as i64).to_string())
        }
        Value::Text(s) => {
            let d = parse_decimal(s, false)?;
            (d.frac.is_empty() && d.int.len() <= 15).then(|| d.to_string())
        }
        _ => None,
    }
}

fn decimal(v: &Value, scale: Option<u32>) -> Option<String> {
    let d = match v {
        Value::Int(i) => parse_decimal(&i.to_string(), false)?,
        Value::UInt(u) => parse_decimal(&u.to_string(), false)?,
        Value::Text(s) => parse_decimal(s, true)?,
        _ => return None,
    };
    if let Some(s) = scale
        && d.frac.len() > s as usize
    {
        return None;
    }
    Some(d.to_string())
}

fn boolean(v: &Value) -> Option<String> {
    let b = match v {
        Value::Bool(b) => *b,
        Value::Text(s) => match s.to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => true,
            "f" | "false" | "n" | "no" | "off" | "0" => false,
            _ => return None,
        },
        _ => return None,
    };
    Some(if b { "1" } else { "0" }.to_owned())
}

fn uuid(v: &Value) -> Option<String> {
    let digits: Vec<u8> = match v {
        Value::Text(s) => {
            let s = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(s);
            s.bytes().filter(|b| *b != b'-').collect()
        }
        Value::Bytes(b) if b.len() == 16 => hex(b).into_bytes(),
        _ => return None,
    };
    if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let lower: String = digits.iter().map(|b| char::from(b.to_ascii_lowercase())).collect();
    let part = |a: usize, b: usize| lower.get(a..b).unwrap_or_default();
    Some(format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32)))
}

fn text(v: &Value, fold: TextFold, max_chars: Option<u32>) -> Option<String> {
    let Value::Text(s) = v else { return None };
    if let Some(n) = max_chars
        && s.chars().count() > n as usize
    {
        return None;
    }
    Some(match fold {
        TextFold::Exact => s.clone(),
        TextFold::TrimEnd => s.trim_end_matches(' ').to_owned(),
        TextFold::AsciiCase => s.to_ascii_lowercase(),
    })
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// A decimal number in canonical parts: no leading zeros in `int`, no trailing zeros in `frac`,
/// never `-0`.
struct Decimal {
    neg: bool,
    int: String,
    frac: String,
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.neg {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

/// Parses `[+-]digits[.digits]` (and, with `exponent`, `e[+-]digits` up to 100). No spaces.
fn parse_decimal(s: &str, exponent: bool) -> Option<Decimal> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) if exponent => {
            let e = rest.get(i + 1..)?;
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: i64 = e.parse().ok()?;
            if n.abs() > 100 {
                return None;
            }
            (rest.get(..i)?, n)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Shift the decimal point by the exponent.
    let mut digits = format!("{int}{frac}");
    let mut point = i64::try_from(int.len()).ok()?.checked_add(exp)?;
    if point < 0 {
        digits.insert_str(0, &"0".repeat(usize::try_from(-point).ok()?));
        point = 0;
    }
    let point = usize::try_from(point).ok()?;
    if point > digits.len() {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (i, f) = digits.split_at(point);
    let int = i.trim_start_matches('0').to_owned();
    let frac = f.trim_end_matches('0').to_owned();
    let neg = neg && !(int.is_empty() && frac.is_empty());
    Some(Decimal { neg, int, frac })
}

/// A calendar date.
#[derive(Clone, Copy)]
struct Date {
    y: i64,
    m: u32,
    d: u32,
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.y, self.m, self.d)
    }
}

fn digits_n(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Exactly `YYYY-MM-DD` (years 0001–9999), a valid day.
fn parse_date(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let y = digits_n(b.get(0..4)?)?;
    let m = digits_n(b.get(5..7)?)?;
    let d = digits_n(b.get(8..10)?)?;
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(i64::from(y), m) {
        return None;
    }
    Some(Date { y: i64::from(y), m, d })
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days_from_civil(date: Date) -> i64 {
    let y = if date.m <= 2 { date.y - 1 } else { date.y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(date.m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(date.d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date { y, m, d }
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,9}]]][offset]`: canonical `YYYY-MM-DD HH:MM:SS[.f]` (UTC
/// for `with_zone`). An offset is required with `with_zone` and refused without it.
fn timestamp(s: &str, precision: u8, with_zone: bool) -> Option<String> {
    let b = s.as_bytes();
    let date = parse_date(b.get(..10)?)?;
    let rest = b.get(10..)?;
    let (mut secs, frac, rest) = if rest.is_empty() {
        (0i64, String::new(), rest)
    } else {
        if !matches!(rest.first(), Some(b' ' | b'T')) {
            return None;
        }
        let t = rest.get(1..)?;
        let h = digits_n(t.get(0..2)?)?;
        if t.get(2) != Some(&b':') {
            return None;
        }
        let mi = digits_n(t.get(3..5)?)?;
        let mut pos = 5;
        let mut sec = 0;
        let mut frac = String::new();
        if t.get(pos) == Some(&b':') {
            sec = digits_n(t.get(pos + 1..pos + 3)?)?;
            pos += 3;
            if t.get(pos) == Some(&b'.') {
                let start = pos + 1;
                let mut end = start;
                while t.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                if end == start || end - start > 9 {
                    return None;
                }
                frac = std::str::from_utf8(t.get(start..end)?).ok()?.trim_end_matches('0').to_owned();
                pos = end;
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        (i64::from(h * 3600 + mi * 60 + sec), frac, t.get(pos..)?)
    };
    if frac.len() > usize::from(precision.min(6)) {
        return None;
    }
    let mut days = days_from_civil(date);
    match (with_zone, parse_offset(rest)) {
        (false, None) if rest.is_empty() => {}
        (true, Some(off)) => {
            secs -= off;
            days += secs.div_euclid(86_400);
            secs = secs.rem_euclid(86_400);
        }
        _ => return None,
    }
    let day = civil_from_days(days);
    if !(1..=9999).contains(&day.y) {
        return None;
    }
    let mut out = format!("{day} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// `Z`, `+HH`, `+HHMM`, `+HH:MM` (also `-`) → seconds east of UTC.
fn parse_offset(b: &[u8]) -> Option<i64> {
    if b == b"Z" || b == b"z" {
        return Some(0);
    }
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = b.get(1..)?;
    let (h, m) = match rest.len() {
        2 => (digits_n(rest)?, 0),
        4 => (digits_n(rest.get(..2)?)?, digits_n(rest.get(2..)?)?),
        5 if rest.get(2) == Some(&b':') => (digits_n(rest.get(..2)?)?, digits_n(rest.get(3..)?)?),
        _ => return None,
    };
    if h > 15 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class: ColumnClass, v: &str) -> Option<String> {
        class.canonical(&Value::Text(v.into()), None)
    }

    #[test]
    fn integers() {
        let i = ColumnClass::Integer;
        assert_eq!(c(i, "042").as_deref(), Some("42"));
        assert_eq!(c(i, "-0").as_deref(), Some("0"));
        assert_eq!(c(i, "42.000").as_deref(), Some("42"));
        assert_eq!(c(i, "42.5"), None);
        assert_eq!(c(i, " 42"), None);
        assert_eq!(c(i, "3e0"), None);
        assert_eq!(c(i, "42abc"), None);
        assert_eq!(c(i, "1234567890123456"), None);
        assert_eq!(i.canonical(&Value::Float(3.0), None).as_deref(), Some("3"));
        assert_eq!(i.canonical(&Value::Float(3.5), None), None);
        assert_eq!(i.canonical(&Value::Bool(true), None).as_deref(), Some("1"));
        assert_eq!(i.canonical(&Value::Int(7), Some("int4")).as_deref(), Some("7"));
        assert_eq!(i.canonical(&Value::Int(7), Some("numeric(3,1)")), None);
    }

    #[test]
    fn decimals() {
        let d = ColumnClass::Decimal { scale: None };
        assert_eq!(c(d, "1.50"), c(d, "1.5"));
        assert_eq!(c(d, "15e-1").as_deref(), Some("1.5"));
        assert_eq!(c(d, "1e2").as_deref(), Some("100"));
        assert_eq!(c(d, ".5").as_deref(), Some("0.5"));
        assert_eq!(c(d, "-0.00").as_deref(), Some("0"));
        assert_eq!(d.canonical(&Value::Int(100), None), c(d, "100.0"));
        assert_eq!(c(d, "NaN"), None);
        assert_eq!(c(d, "1e999"), None);
        let s2 = ColumnClass::Decimal { scale: Some(2) };
        assert_eq!(c(s2, "12.345"), None);
        assert_eq!(c(s2, "12.340").as_deref(), Some("12.34"));
    }

    #[test]
    fn booleans_uuids_text() {
        assert_eq!(c(ColumnClass::Bool, "YES"), c(ColumnClass::Bool, "t"));
        assert_eq!(c(ColumnClass::Bool, "tru"), None);
        let u = ColumnClass::Uuid;
        let canon = Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned());
        assert_eq!(c(u, "A0EEBC999C0B4EF8BB6D6BB9BD380A11"), canon);
        assert_eq!(c(u, "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}"), canon);
        assert_eq!(c(u, "a0eebc99"), None);
        let pad = ColumnClass::Text { fold: TextFold::TrimEnd, max_chars: None };
        assert_eq!(c(pad, "ab  "), c(pad, "ab"));
        assert_ne!(c(pad, "ab\t"), c(pad, "ab"));
        let v5 = ColumnClass::Text { fold: TextFold::Exact, max_chars: Some(5) };
        assert_eq!(c(v5, "abcde     "), None);
        assert_eq!(ColumnClass::Text { fold: TextFold::Exact, max_chars: None }.canonical(&Value::Int(3), None), None);
        assert_eq!(c(ColumnClass::Text { fold: TextFold::AsciiCase, max_chars: None }, "AbC").as_deref(), Some("abc"));
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(c(ColumnClass::Date, "2024-01-05").as_deref(), Some("2024-01-05"));
        assert_eq!(c(ColumnClass::Date, "20240105"), None);
        assert_eq!(c(ColumnClass::Date, "2023-02-29"), None);
        let ts = ColumnClass::Timestamp { precision: 6 };
        assert_eq!(c(ts, "2024-01-05T10:00"), c(ts, "2024-01-05 10:00:00.000"));
        assert_eq!(c(ts, "2024-01-05"), c(ts, "2024-01-05 00:00:00"));
        assert_eq!(c(ts, "2024-01-05 10:00:00+05"), None);
        assert_eq!(c(ts, "2024-01-05 24:00:00"), None);
        assert_eq!(c(ts, "2024-01-05 10:00:00.1234567"), None);
        assert_eq!(c(ColumnClass::Timestamp { precision: 0 }, "2024-01-05 10:00:00.5"), None);
        let tz = ColumnClass::TimestampTz { precision: 6 };
        assert_eq!(c(tz, "2024-01-05 10:00:00+05"), c(tz, "2024-01-05T05:00:00Z"));
        assert_eq!(c(tz, "2024-01-01 01:00:00+02:00"), c(tz, "2023-12-31 23:00:00Z"));
        assert_eq!(c(tz, "2024-01-05 10:00:00"), None);
    }

    #[test]
    fn column_names_are_escaped() {
        assert_eq!(key_column("a,b"), "a%2Cb");
        assert_eq!(key_column("plain"), "plain");
    }

    #[test]
    fn meet_keeps_agreement_only() {
        let cat = Catalog::strict();
        cat.install([TableSchema::new("t").column("a", ColumnClass::Integer).column("b", ColumnClass::Uuid)]);
        let g = cat.generation();
        cat.install([TableSchema::new("t").column("a", ColumnClass::Integer).column("b", ColumnClass::Bytes)]);
        assert!(cat.generation() > g);
        let s = cat.snapshot();
        assert_eq!(s.class("t", "a"), Some(ColumnClass::Integer));
        assert_eq!(s.class("t", "b"), Some(ColumnClass::Opaque));
    }

    #[test]
    fn inheritance_is_followed_both_ways_transitively() {
        let cat = Catalog::strict();
        cat.install([
            TableSchema::new("animal").inherits("thing"),
            TableSchema::new("dog").inherits("animal"),
            TableSchema::new("puppy").inherits("dog"),
            TableSchema::new("cat").inherits("animal"),
        ]);
        let s = cat.snapshot();
        assert_eq!(s.ancestors("puppy"), vec!["dog", "animal", "thing"], "an undescribed parent counts too");
        let mut d = s.descendants("animal");
        d.sort();
        assert_eq!(d, vec!["cat", "dog", "puppy"]);
        assert!(s.descendants("puppy").is_empty());
    }

    #[test]
    fn sources_replace_their_own_part_only() {
        let cat = Catalog::strict();
        let (a, b) = (Catalog::new_source(), Catalog::new_source());
        let text = ColumnClass::Text { fold: TextFold::Exact, max_chars: None };
        cat.replace_source(a, vec![TableSchema::new("t").column("x", text)], vec![]);
        cat.replace_source(b, vec![TableSchema::new("t").column("x", ColumnClass::Opaque)], vec![("f".into(), true)]);
        assert_eq!(cat.snapshot().class("t", "x"), Some(ColumnClass::Opaque));
        // `a` reloads after DDL: `b`'s word still counts.
        cat.remove_source(a);
        cat.replace_source(a, vec![TableSchema::new("t").column("x", text)], vec![]);
        assert_eq!(cat.snapshot().class("t", "x"), Some(ColumnClass::Opaque));
        assert_eq!(cat.snapshot().function("f"), Some(true));
        cat.remove_source(b);
        assert_eq!(cat.snapshot().class("t", "x"), Some(text));
        assert_eq!(cat.snapshot().function("f"), None);
    }
}
