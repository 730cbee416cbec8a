//! `cacheops`: the command line.
//!
//! ```text
//! cacheops invalidate all | TABLE | TABLE.PK | TABLE.COLUMN=VALUE ...
//! cacheops cleanfilecache [DIR ...]
//! cacheops explain [--dialect postgres|sqlite|mysql] SQL [PARAM ...]
//! cacheops stats
//! ```
//!
//! The cache comes from the environment: `CACHEOPS_REDIS` (Redis URL; without it the in-process
//! cache of this very process would be meaningless, so `invalidate` requires it) and
//! `CACHEOPS_PREFIX`. `TABLE.PK` reads the row from `DATABASE_URL` (column `id`) to invalidate
//! every cached query its column values match, as the original does.

use std::process::ExitCode;

use cacheops::{AnalyzerConfig, Cache, Dialect, Row, Value};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

const USAGE: &str = "usage:
  cacheops invalidate all | TABLE | TABLE.PK | TABLE.COLUMN=VALUE ...
  cacheops cleanfilecache [DIR ...]          (default: $CACHEOPS_FILE_CACHE_DIR)
  cacheops explain [--dialect postgres|sqlite|mysql] SQL [PARAM ...]
  cacheops stats

environment: CACHEOPS_REDIS (Redis URL), CACHEOPS_PREFIX, DATABASE_URL (for TABLE.PK)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cacheops: {e}");
            ExitCode::from(2)
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn cache() -> Result<Cache, String> {
    let url = env("CACHEOPS_REDIS")
        .ok_or("CACHEOPS_REDIS is not set: the command line can only reach a shared (Redis) cache")?;
    Cache::builder().from_env().redis_url(url).degrade(false).build().await.map_err(|e| e.to_string())
}

/// Parses a literal parameter: integers, floats, true/false, null, else text.
fn param(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return Value::Int(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Value::Float(f);
    }
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "NULL" => Value::Null,
        _ => Value::Text(s.to_owned()),
    }
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn run(args: &[String]) -> Result<String, String> {
    let Some((cmd, rest)) = args.split_first() else { return Err(USAGE.to_owned()) };
    match cmd.as_str() {
        "invalidate" => invalidate(rest).await,
        "cleanfilecache" => {
            let dirs: Vec<String> = if rest.is_empty() {
                vec![
                    env("CACHEOPS_FILE_CACHE_DIR")
                        .ok_or("no directory given and CACHEOPS_FILE_CACHE_DIR is not set")?,
                ]
            } else {
                rest.to_vec()
            };
            let mut out = Vec::new();
            for d in dirs {
                let n = cacheops::cleanfilecache(&d).map_err(|e| format!("{d}: {e}"))?;
                out.push(format!("{d}: removed {n} expired entries"));
            }
            Ok(out.join("\n"))
        }
        "explain" => explain(rest),
        "stats" => stats().await,
        "-h" | "--help" | "help" => Ok(USAGE.to_owned()),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

async fn invalidate(targets: &[String]) -> Result<String, String> {
    if targets.is_empty() {
        return Err(format!("invalidate: nothing to invalidate\n{USAGE}"));
    }
    let cache = cache().await?;
    let mut out = Vec::new();
    for t in targets {
        if t == "all" {
            cache.invalidate_all().await.map_err(|e| e.to_string())?;
            out.push(format!("invalidated everything under prefix {:?}", cache.keys().base()));
        } else if let Some((table, cond)) = t.split_once('.') {
            if !valid_ident(table) {
                return Err(format!("invalid table name {table:?}"));
            }
            let row = match cond.split_once('=') {
                Some((col, val)) if valid_ident(col) => fetch_row(&cache, table, col, val).await?,
                Some(_) => return Err(format!("invalid column in {t:?}")),
                None => fetch_row(&cache, table, "id", cond).await?,
            };
            let Some(row) = row else { return Err(format!("no {table} row matches {cond:?}")) };
            cache.invalidate_obj(table, &row).await.map_err(|e| e.to_string())?;
            out.push(format!("invalidated {table} row {cond}"));
        } else if valid_ident(t) {
            cache.invalidate_model(t).await.map_err(|e| e.to_string())?;
            out.push(format!("invalidated table {t}"));
        } else {
            return Err(format!("invalid target {t:?} (expected all, TABLE, TABLE.PK or TABLE.COLUMN=VALUE)"));
        }
    }
    Ok(out.join("\n"))
}

/// The row's values, and the column classes of the database's catalog in `cache` (so that the
/// row is rendered the way the application's reads are).
async fn fetch_row(cache: &cacheops::Cache, table: &str, column: &str, value: &str) -> Result<Option<Row>, String> {
    let url = env("DATABASE_URL").ok_or("DATABASE_URL is not set: TABLE.PK needs the row's values")?;
    let db = Database::connect(&url).await.map_err(|e| format!("database: {e}"))?;
    cacheops_sea_orm::CachedConnection::new(db.clone(), cache.clone())
        .load_catalog()
        .await
        .map_err(|e| format!("database catalog: {e}"))?;
    let backend = db.get_database_backend();
    let placeholder = if backend == DbBackend::Postgres { "$1" } else { "?" };
    let sql = format!("SELECT * FROM {table} WHERE {column} = {placeholder}");
    let v: sea_orm::Value = match param(value) {
        Value::Int(i) => i.into(),
        _ => value.to_owned().into(),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, &sql, [v]))
        .await
        .map_err(|e| format!("database: {e}"))?;
    match rows.first() {
        Some(r) => {
            cacheops_sea_orm::CachedRow::from_query_result(r).map(|c| Some(c.to_row())).map_err(|e| e.to_string())
        }
        None => Ok(None),
    }
}

fn explain(args: &[String]) -> Result<String, String> {
    let mut dialect = Dialect::PostgreSql;
    let mut rest = args;
    if let Some((flag, more)) = rest.split_first()
        && flag == "--dialect"
    {
        let Some((d, more)) = more.split_first() else { return Err("--dialect needs a value".into()) };
        dialect = match d.as_str() {
            "postgres" | "postgresql" => Dialect::PostgreSql,
            "sqlite" => Dialect::Sqlite,
            "mysql" | "mariadb" => Dialect::MySql,
            other => return Err(format!("unknown dialect {other:?} (postgres, sqlite, mysql)")),
        };
        rest = more;
    }
    let Some((sql, params)) = rest.split_first() else { return Err(format!("explain: no SQL given\n{USAGE}")) };
    let params: Vec<Value> = params.iter().map(|p| param(p)).collect();
    let analyzer = cacheops::Analyzer::new(AnalyzerConfig::new(dialect));
    let a = analyzer.analyze(sql, &params).map_err(|e| e.to_string())?;
    let mut out = vec![format!("kind: {:?}", a.kind)];
    if a.locking || a.volatile {
        out.push(format!("not cacheable: locking={} volatile={}", a.locking, a.volatile));
    }
    if a.reads.is_empty() {
        out.push("depends on: nothing (never invalidated)".into());
    }
    for (table, dnf) in a.reads.iter() {
        if dnf.is_any() {
            out.push(format!("depends on {table}: any change"));
        } else {
            let conjs: Vec<String> = dnf.conjs().iter().map(|c| format!("{{{}}}", c.rendered())).collect();
            out.push(format!("depends on {table}: rows matching {}", conjs.join(" or ")));
        }
    }
    if let Some(w) = &a.write {
        out.push(format!("writes {}: columns {:?}", w.table, w.columns));
    }
    Ok(out.join("\n"))
}

async fn stats() -> Result<String, String> {
    let cache = cache().await?;
    let backend = cache.backend().clone();
    backend.ping().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "backend reachable; prefix {:?}\n(per-process hit/miss counters are in Cache::stats() and the `metrics` counters cacheops_*_total)",
        cache.keys().base()
    ))
}
