//! The database's own equality: column classes loaded from its catalog (types, collations,
//! generated columns) into the cache's [`cacheops::Catalog`], once per connection and again
//! after DDL that passes through it.
//!
//! The mapping is deliberately narrow: a type narrows invalidation only where its canonical
//! form is certain (see `docs/analysis.md`, "Equality"); everything else is
//! [`ColumnClass::Opaque`], i.e. table-level on both sides.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use cacheops::{Catalog, ColumnClass, TableSchema, TextFold};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};

/// What one connection loaded into the shared catalog.
#[derive(Debug)]
pub(crate) struct Loader {
    /// This connection's source id in the shared catalog.
    source: u64,
    loaded: AtomicBool,
    /// One load at a time: the tasks that find the catalog unloaded wait for the first one.
    loading: tokio::sync::Mutex<()>,
    /// What unqualified names resolve through (`search_path`, the current database) and the
    /// schemas whose tables were loaded, read with the catalog; `None` before that.
    namespace: Mutex<Option<Namespace>>,
    /// A statement changed the session's namespace: reads are no longer cached.
    namespace_changed: AtomicBool,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            source: Catalog::new_source(),
            loaded: AtomicBool::new(false),
            loading: tokio::sync::Mutex::new(()),
            namespace: Mutex::default(),
            namespace_changed: AtomicBool::new(false),
        }
    }
}

impl Loader {
    /// Loads the catalog unless it is loaded. A failure leaves the tables unknown (table level).
    pub(crate) async fn ensure<C: ConnectionTrait>(&self, conn: &C, catalog: &Catalog) {
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        let _one = self.loading.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.load_into(conn, catalog).await {
            tracing::warn!(error = %e, "cacheops: cannot read the database catalog; its tables are table-level");
        }
    }

    /// The namespace reads are keyed by; `None`: do not cache.
    pub(crate) fn namespace(&self) -> Option<String> {
        if !self.namespace_known() {
            return None;
        }
        self.namespace.lock().ok().and_then(|n| n.as_ref().map(|n| n.key.clone()))
    }

    /// Whether reads may be cached under the namespace (two atomic loads: the hot path).
    pub(crate) fn namespace_known(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && !self.namespace_changed.load(Ordering::Acquire)
    }

    /// Whether a schema qualifier names one of the loaded schemas.
    pub(crate) fn knows_schema(&self, schema: &str) -> bool {
        self.namespace.lock().is_ok_and(|n| n.as_ref().is_some_and(|n| n.schemas.iter().any(|x| x == schema)))
    }

    pub(crate) fn namespace_changed(&self) {
        self.namespace_changed.store(true, Ordering::Release);
    }

    /// Loads the catalog now.
    pub(crate) async fn load_into<C: ConnectionTrait>(&self, conn: &C, catalog: &Catalog) -> Result<(), DbErr> {
        let namespace = read_namespace(conn).await?;
        if namespace.implicit_transaction {
            tracing::warn!("cacheops: autocommit is off on this connection; its reads bypass the cache");
            self.namespace_changed();
        }
        if let Ok(mut n) = self.namespace.lock() {
            *n = Some(namespace);
        }
        let tables = load(conn).await?;
        let functions = load_functions(conn).await?;
        catalog.replace_source(self.source, tables, functions);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets what this connection loaded (after DDL): reloaded on the next statement.
    pub(crate) fn reset(&self, catalog: &Catalog) {
        self.loaded.store(false, Ordering::Release);
        catalog.remove_source(self.source);
    }
}

/// What unqualified names resolve through.
#[derive(Debug, Clone)]
struct Namespace {
    /// Part of every cached read's key.
    key: String,
    /// The schemas whose tables are loaded.
    schemas: Vec<String>,
    /// MySQL's `@@autocommit` is off: every statement runs inside one long REPEATABLE READ
    /// transaction, whose reads must not be cached.
    implicit_transaction: bool,
}

/// `search_path` and `current_schemas(false)` (PostgreSQL), the current database and
/// `@@autocommit` (MySQL), `main` (SQLite).
async fn read_namespace<C: ConnectionTrait>(conn: &C) -> Result<Namespace, DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT current_setting('search_path') AS ns, array_to_string(current_schemas(false), chr(31)) AS nss"
        }
        DbBackend::MySql => {
            "SELECT COALESCE(DATABASE(), '') AS ns, LOWER(COALESCE(DATABASE(), '')) AS nss, CAST(@@autocommit AS SIGNED) AS ac"
        }
        _ => {
            return Ok(Namespace { key: String::new(), schemas: vec!["main".to_owned()], implicit_transaction: false });
        }
    };
    match conn.query_one_raw(Statement::from_string(backend, sql)).await? {
        Some(row) => {
            let schemas: String = row.try_get("", "nss")?;
            let implicit_transaction = backend == DbBackend::MySql && row.try_get::<i64>("", "ac")? == 0;
            Ok(Namespace {
                key: row.try_get("", "ns")?,
                schemas: schemas.split('\u{1f}').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                implicit_transaction,
            })
        }
        None => Ok(Namespace { key: String::new(), schemas: Vec::new(), implicit_transaction: false }),
    }
}

/// User-defined functions and whether they may write: PostgreSQL's non-extension functions
/// outside the system schemas (VOLATILE ones may write), MySQL/MariaDB stored functions
/// (unless declared `NO SQL`/`READS SQL DATA`). SQLite's are registered by the application and
/// cannot be listed.
async fn load_functions<C: ConnectionTrait>(conn: &C) -> Result<Vec<(String, bool)>, DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT p.proname::text AS name, (p.provolatile = 'v') AS may_write FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
             AND p.prokind IN ('f', 'a', 'w') \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')"
        }
        DbBackend::MySql => {
            "SELECT ROUTINE_NAME AS name, \
             CAST(SQL_DATA_ACCESS NOT IN ('NO SQL', 'READS SQL DATA') AS SIGNED) AS may_write \
             FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'FUNCTION'"
        }
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for r in conn.query_all_raw(Statement::from_string(backend, sql)).await? {
        let name: String = r.try_get("", "name")?;
        let may_write = match backend {
            DbBackend::MySql => r.try_get::<i64>("", "may_write")? != 0,
            _ => r.try_get::<bool>("", "may_write")?,
        };
        let name = if backend == DbBackend::MySql { name.to_lowercase() } else { name };
        out.push((name, may_write));
    }
    Ok(out)
}

async fn load<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableSchema>, DbErr> {
    match conn.get_database_backend() {
        DbBackend::Postgres => load_postgres(conn).await,
        DbBackend::MySql => load_mysql(conn).await,
        DbBackend::Sqlite => load_sqlite(conn).await,
        #[allow(unreachable_patterns)]
        _ => Ok(Vec::new()),
    }
}

/// One column of the catalog: `(schema, table, column, class)`.
type ColumnRow = (String, String, String, ColumnClass);

/// What the catalog says about a relation as a whole.
#[derive(Debug, Default)]
struct Rel {
    schema: String,
    table: String,
    /// `Some(reads)` for a view (or a foreign table: `Some(None)`, never cached).
    view: Option<Option<Vec<String>>>,
    /// Triggers or rules.
    side_effects: bool,
    parents: Vec<String>,
}

/// Collects the rows of each schema's table into a [`TableSchema`] and applies what `rels` say
/// of the relations. Tables of the same name in two schemas stay two schemas here and meet in
/// [`Catalog::install`].
fn group(rows: Vec<ColumnRow>, rels: Vec<Rel>) -> Vec<TableSchema> {
    let mut out: std::collections::BTreeMap<(String, String), TableSchema> = std::collections::BTreeMap::new();
    for (schema, table, column, class) in rows {
        let key = (schema, table);
        let t = out.remove(&key).unwrap_or_else(|| TableSchema::new(key.1.clone()));
        out.insert(key, t.column(column, class));
    }
    for r in rels {
        let key = (r.schema, r.table);
        let mut t = out.remove(&key).unwrap_or_else(|| TableSchema::new(key.1.clone()));
        if let Some(reads) = r.view {
            t = t.view(reads);
        }
        let side = t.has_side_effects() || r.side_effects;
        t = t.side_effects(side);
        for p in r.parents {
            t = t.inherits(p);
        }
        out.insert(key, t);
    }
    out.into_values().collect()
}

fn opt_i64(row: &QueryResult, col: &str) -> Result<Option<i64>, DbErr> {
    row.try_get::<Option<i64>>("", col)
}

fn precision(p: Option<i64>, default: u8) -> u8 {
    p.and_then(|p| u8::try_from(p).ok()).unwrap_or(default)
}

fn max_chars(n: Option<i64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

const PG_CATALOG: &str = "SELECT c.relname::text AS tbl, n.nspname::text AS nsp, a.attname::text AS col, \
    COALESCE(bt.typname, t.typname)::text AS typ, t.typtype::text AS typtype, \
    COALESCE(co.collisdeterministic, true) AS det, \
    (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)::int8 AS tm, \
    (a.attgenerated <> '') AS generated \
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd' \
    LEFT JOIN pg_collation co ON co.oid = a.attcollation \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped \
    AND n.nspname = ANY (current_schemas(false)) \
    ORDER BY c.relname, n.nspname, a.attnum";

/// Views (with their definitions), foreign tables, triggers and rules, inheritance parents.
const PG_RELATIONS: &str = "SELECT c.relname::text AS tbl, n.nspname::text AS nsp, c.relkind::text AS kind, \
    COALESCE(CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END, '') AS def, \
    (EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal) \
     OR EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')) AS side, \
    COALESCE((SELECT string_agg(p.relname::text, chr(31)) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
              WHERE i.inhrelid = c.oid), '') AS parents \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY (current_schemas(false))";

async fn load_postgres<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableSchema>, DbErr> {
    let mut rels = Vec::new();
    for r in conn.query_all_raw(Statement::from_string(DbBackend::Postgres, PG_RELATIONS)).await? {
        let kind: String = r.try_get("", "kind")?;
        let def: String = r.try_get("", "def")?;
        let parents: String = r.try_get("", "parents")?;
        rels.push(Rel {
            schema: r.try_get("", "nsp")?,
            table: r.try_get("", "tbl")?,
            view: match kind.as_str() {
                "v" => Some(cacheops_core::analysis::definition_reads(cacheops::Dialect::PostgreSql, &def)),
                // A foreign table's rows change elsewhere: never cached.
                "f" => Some(None),
                _ => None,
            },
            side_effects: r.try_get("", "side")?,
            parents: parents.split('\u{1f}').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        });
    }
    let rows = conn.query_all_raw(Statement::from_string(DbBackend::Postgres, PG_CATALOG)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let typ: String = r.try_get("", "typ")?;
        let typtype: String = r.try_get("", "typtype")?;
        let det: bool = r.try_get("", "det")?;
        let tm = opt_i64(&r, "tm")?.filter(|t| *t >= 0);
        let generated: bool = r.try_get("", "generated")?;
        let class = if generated { ColumnClass::Opaque } else { pg_class(&typ, &typtype, det, tm) };
        out.push((
            r.try_get::<String>("", "nsp")?,
            r.try_get::<String>("", "tbl")?,
            r.try_get::<String>("", "col")?,
            class,
        ));
    }
    Ok(group(out, rels))
}

/// A PostgreSQL column's class from its (base) type name, type kind, collation and typmod.
fn pg_class(typ: &str, typtype: &str, deterministic: bool, typmod: Option<i64>) -> ColumnClass {
    if typtype == "e" {
        // Enum labels compare exactly.
        return ColumnClass::Text { fold: TextFold::Exact, max_chars: None };
    }
    match typ {
        "int2" | "int4" | "int8" => ColumnClass::Integer,
        "numeric" => {
            ColumnClass::Decimal { scale: typmod.and_then(|m| u32::try_from(m.checked_sub(4)? & 0xFFFF).ok()) }
        }
        "bool" => ColumnClass::Bool,
        "uuid" => ColumnClass::Uuid,
        "text" | "varchar" | "bpchar" if !deterministic => ColumnClass::Opaque,
        "text" => ColumnClass::Text { fold: TextFold::Exact, max_chars: None },
        "varchar" => {
            ColumnClass::Text { fold: TextFold::Exact, max_chars: max_chars(typmod.and_then(|m| m.checked_sub(4))) }
        }
        "bpchar" => ColumnClass::Text { fold: TextFold::TrimEnd, max_chars: None },
        "bytea" => ColumnClass::Bytes,
        "date" => ColumnClass::Date,
        "timestamp" => ColumnClass::Timestamp { precision: precision(typmod, 6) },
        "timestamptz" => ColumnClass::TimestampTz { precision: precision(typmod, 6) },
        // float4/8, citext, json(b), arrays, interval, time(tz), money, inet, ranges, … :
        // equality a client-side form cannot follow exactly.
        _ => ColumnClass::Opaque,
    }
}

const MYSQL_CATALOG: &str = "SELECT TABLE_NAME AS tbl, COLUMN_NAME AS col, DATA_TYPE AS typ, \
    CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS char_len, CAST(NUMERIC_SCALE AS SIGNED) AS scale, \
    CAST(DATETIME_PRECISION AS SIGNED) AS dprec, COALESCE(COLLATION_NAME, '') AS coll, EXTRA AS extra \
    FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION";

const MYSQL_RELATIONS: &str = "SELECT t.TABLE_NAME AS tbl, t.TABLE_TYPE AS kind, COALESCE(v.VIEW_DEFINITION, '') AS def, \
    CAST(EXISTS (SELECT 1 FROM information_schema.TRIGGERS tr WHERE tr.EVENT_OBJECT_SCHEMA = t.TABLE_SCHEMA \
                 AND tr.EVENT_OBJECT_TABLE = t.TABLE_NAME) AS SIGNED) AS side \
    FROM information_schema.TABLES t LEFT JOIN information_schema.VIEWS v \
    ON v.TABLE_SCHEMA = t.TABLE_SCHEMA AND v.TABLE_NAME = t.TABLE_NAME WHERE t.TABLE_SCHEMA = DATABASE()";

async fn load_mysql<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableSchema>, DbErr> {
    let mut rels = Vec::new();
    for r in conn.query_all_raw(Statement::from_string(DbBackend::MySql, MYSQL_RELATIONS)).await? {
        let kind: String = r.try_get("", "kind")?;
        let def: String = r.try_get("", "def")?;
        let table: String = r.try_get("", "tbl")?;
        rels.push(Rel {
            schema: String::new(),
            table: table.to_lowercase(),
            view: (kind == "VIEW").then(|| cacheops_core::analysis::definition_reads(cacheops::Dialect::MySql, &def)),
            side_effects: r.try_get::<i64>("", "side")? != 0,
            parents: Vec::new(),
        });
    }
    let rows = conn.query_all_raw(Statement::from_string(DbBackend::MySql, MYSQL_CATALOG)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let typ: String = r.try_get("", "typ")?;
        let coll: String = r.try_get("", "coll")?;
        let extra: String = r.try_get("", "extra")?;
        let class = if extra.to_ascii_uppercase().contains("GENERATED") {
            ColumnClass::Opaque
        } else {
            mysql_class(
                &typ.to_ascii_lowercase(),
                &coll.to_ascii_lowercase(),
                opt_i64(&r, "char_len")?,
                opt_i64(&r, "scale")?,
                opt_i64(&r, "dprec")?,
            )
        };
        let table: String = r.try_get("", "tbl")?;
        let col: String = r.try_get("", "col")?;
        out.push((String::new(), table.to_lowercase(), col.to_lowercase(), class));
    }
    Ok(group(out, rels))
}

/// A MySQL/MariaDB column's class. Only binary collations narrow text (the default `_ci`
/// collations fold case, accents and more); numbers compared with strings, FLOAT, ENUM, SET,
/// TIMESTAMP (session time zone), TIME, YEAR and BIT are opaque.
fn mysql_class(typ: &str, coll: &str, char_len: Option<i64>, scale: Option<i64>, dprec: Option<i64>) -> ColumnClass {
    match typ {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColumnClass::Integer,
        "decimal" | "numeric" => ColumnClass::Decimal { scale: scale.and_then(|s| u32::try_from(s).ok()) },
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            if coll.ends_with("_nopad_bin") {
                ColumnClass::Text { fold: TextFold::Exact, max_chars: max_chars(char_len) }
            } else if coll.ends_with("_bin") {
                ColumnClass::Text { fold: TextFold::TrimEnd, max_chars: None }
            } else {
                ColumnClass::Opaque
            }
        }
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnClass::Bytes,
        "uuid" => ColumnClass::Uuid,
        "date" => ColumnClass::Date,
        "datetime" => ColumnClass::Timestamp { precision: precision(dprec, 0) },
        _ => ColumnClass::Opaque,
    }
}

async fn load_sqlite<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableSchema>, DbErr> {
    let tables = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name, type, tbl_name, COALESCE(sql, '') AS sql FROM sqlite_master WHERE type IN ('table', 'view', 'trigger') ORDER BY name",
        ))
        .await?;
    let mut out = Vec::new();
    let mut rels: Vec<Rel> = Vec::new();
    for t in tables {
        let name: String = t.try_get("", "name")?;
        let kind: String = t.try_get("", "type")?;
        let sql: String = t.try_get("", "sql")?;
        match kind.as_str() {
            "trigger" => {
                let table: String = t.try_get("", "tbl_name")?;
                rels.push(Rel { table: table.to_ascii_lowercase(), side_effects: true, ..Rel::default() });
                continue;
            }
            "view" => rels.push(Rel {
                table: name.to_ascii_lowercase(),
                view: Some(cacheops_core::analysis::definition_reads(cacheops::Dialect::Sqlite, &sql)),
                ..Rel::default()
            }),
            _ => {}
        }
        // A view's columns carry neither affinity nor collation of their own.
        let collations = if kind == "table" {
            cacheops_core::analysis::column_collations(cacheops::Dialect::Sqlite, &sql)
        } else {
            None
        };
        let pragma = format!("SELECT name, type, hidden FROM pragma_table_xinfo('{}')", name.replace('\'', "''"));
        for c in conn.query_all_raw(Statement::from_string(DbBackend::Sqlite, pragma)).await? {
            let col: String = c.try_get("", "name")?;
            let decl: String = c.try_get("", "type")?;
            let hidden: i64 = c.try_get("", "hidden")?;
            let col = col.to_ascii_lowercase();
            let class = match &collations {
                Some(colls) if hidden == 0 => {
                    sqlite_class(&decl.to_ascii_uppercase(), colls.get(&col).map(String::as_str))
                }
                _ => ColumnClass::Opaque,
            };
            out.push((String::new(), name.to_ascii_lowercase(), col, class));
        }
    }
    Ok(group(out, rels))
}

/// A SQLite column's class from its declared type (affinity rules, sqlite.org/datatype3.html)
/// and collation. INTEGER and NUMERIC affinity narrow on integers; TEXT affinity narrows on
/// text with the BINARY, NOCASE or RTRIM collation, unless the declared type names another
/// type stored as text (dates, decimals, UUIDs, JSON), whose spellings vary; REAL, BLOB and
/// untyped columns are opaque.
fn sqlite_class(decl: &str, collation: Option<&str>) -> ColumnClass {
    if decl.contains("INT") {
        return ColumnClass::Integer;
    }
    if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        const STORED_AS_TEXT: &[&str] = &["DATE", "TIME", "DEC", "NUM", "UUID", "JSON", "BOOL", "REAL", "FLOA", "DOUB"];
        if STORED_AS_TEXT.iter().any(|k| decl.contains(k)) {
            return ColumnClass::Opaque;
        }
        let fold = match collation {
            None | Some("BINARY") => TextFold::Exact,
            Some("NOCASE") => TextFold::AsciiCase,
            Some("RTRIM") => TextFold::TrimEnd,
            Some(_) => return ColumnClass::Opaque,
        };
        return ColumnClass::Text { fold, max_chars: None };
    }
    if decl.is_empty()
        || decl.contains("BLOB")
        || decl.contains("REAL")
        || decl.contains("FLOA")
        || decl.contains("DOUB")
    {
        return ColumnClass::Opaque;
    }
    ColumnClass::Integer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_affinity() {
        assert_eq!(sqlite_class("INTEGER", None), ColumnClass::Integer);
        assert_eq!(sqlite_class("BOOLEAN", None), ColumnClass::Integer);
        assert_eq!(
            sqlite_class("VARCHAR(20)", Some("NOCASE")),
            ColumnClass::Text { fold: TextFold::AsciiCase, max_chars: None }
        );
        assert_eq!(sqlite_class("TEXT", Some("MYCOLL")), ColumnClass::Opaque);
        assert_eq!(sqlite_class("DATETIME_TEXT", None), ColumnClass::Opaque);
        assert_eq!(sqlite_class("REAL", None), ColumnClass::Opaque);
        assert_eq!(sqlite_class("", None), ColumnClass::Opaque);
    }

    #[test]
    fn mysql_collations() {
        assert_eq!(mysql_class("varchar", "utf8mb4_general_ci", Some(10), None, None), ColumnClass::Opaque);
        assert_eq!(
            mysql_class("varchar", "utf8mb4_bin", Some(10), None, None),
            ColumnClass::Text { fold: TextFold::TrimEnd, max_chars: None }
        );
        assert_eq!(mysql_class("float", "", None, None, None), ColumnClass::Opaque);
        assert_eq!(mysql_class("datetime", "", None, None, Some(3)), ColumnClass::Timestamp { precision: 3 });
    }

    #[test]
    fn postgres_types() {
        assert_eq!(pg_class("numeric", "b", true, Some((10 << 16) + 2 + 4)), ColumnClass::Decimal { scale: Some(2) });
        assert_eq!(pg_class("text", "b", false, None), ColumnClass::Opaque);
        assert_eq!(pg_class("mood", "e", true, None), ColumnClass::Text { fold: TextFold::Exact, max_chars: None });
        assert_eq!(pg_class("citext", "b", true, None), ColumnClass::Opaque);
        assert_eq!(pg_class("float8", "b", true, None), ColumnClass::Opaque);
    }
}
