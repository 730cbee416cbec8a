use futures_util::lock::Mutex;
use log::LevelFilter;
use sea_query::Values;
use std::{fmt::Write, future::Future, pin::Pin, sync::Arc};

use sqlx::{
    Connection, Executor, PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgQueryResult, PgRow},
};

use sea_query_sqlx::SqlxValues;
use tracing::instrument;

use crate::{
    AccessMode, ConnectOptions, DatabaseConnection, DatabaseConnectionType, DatabaseTransaction,
    IsolationLevel, Statement, TransactionError, debug_print, error::*, executor::*,
};

use super::sqlx_common::*;

#[cfg(feature = "stream")]
use crate::QueryStream;

/// Defines the [sqlx::postgres] connector
#[derive(Debug)]
pub struct SqlxPostgresConnector;

/// Defines a sqlx PostgreSQL pool
#[derive(Clone)]
pub struct SqlxPostgresPoolConnection {
    pub(crate) pool: PgPool,
    metric_callback: Option<crate::metric::Callback>,
    pub(crate) record_stmt_in_spans: bool,
}

impl std::fmt::Debug for SqlxPostgresPoolConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlxPostgresPoolConnection {{ pool: {:?} }}", self.pool)
    }
}

impl From<PgPool> for SqlxPostgresPoolConnection {
    fn from(pool: PgPool) -> Self {
        SqlxPostgresPoolConnection {
            pool,
            metric_callback: None,
            record_stmt_in_spans: true,
        }
    }
}

impl From<PgPool> for DatabaseConnection {
    fn from(pool: PgPool) -> Self {
        DatabaseConnectionType::SqlxPostgresPoolConnection(pool.into()).into()
    }
}

impl SqlxPostgresConnector {
    /// Check if the URI provided corresponds to `postgres://` for a PostgreSQL database
    pub fn accepts(string: &str) -> bool {
        string.starts_with("postgres://") && string.parse::<PgConnectOptions>().is_ok()
    }

    /// Add configuration options for the PostgreSQL database
    #[instrument(level = "trace")]
    pub async fn connect(options: ConnectOptions) -> Result<DatabaseConnection, DbErr> {
        let record_stmt_in_spans = options.get_record_stmt_in_spans();
        let mut sqlx_opts = options
            .url
            .parse::<PgConnectOptions>()
            .map_err(sqlx_error_to_conn_err)?;
        use sqlx::ConnectOptions;
        if !options.sqlx_logging {
            sqlx_opts = sqlx_opts.disable_statement_logging();
        } else {
            sqlx_opts = sqlx_opts.log_statements(options.sqlx_logging_level);
            if options.sqlx_slow_statements_logging_level != LevelFilter::Off {
                sqlx_opts = sqlx_opts.log_slow_statements(
                    options.sqlx_slow_statements_logging_level,
                    options.sqlx_slow_statements_logging_threshold,
                );
            }
        }

        if let Some(application_name) = &options.application_name {
            sqlx_opts = sqlx_opts.application_name(application_name);
        }

        if let Some(timeout) = options.statement_timeout {
            sqlx_opts = sqlx_opts.options([("statement_timeout", timeout.as_millis().to_string())]);
        }

        if let Some(f) = &options.pg_opts_fn {
            sqlx_opts = f(sqlx_opts);
        }

        let set_search_path_sql = options.schema_search_path.as_ref().map(|schema| {
            let mut string = "SET search_path = ".to_owned();
            if schema.starts_with('"') {
                write!(&mut string, "{schema}").expect("Infallible");
            } else {
                for (i, schema) in schema.split(',').enumerate() {
                    if i > 0 {
                        write!(&mut string, ",").expect("Infallible");
                    }
                    if schema.starts_with('"') {
                        write!(&mut string, "{schema}").expect("Infallible");
                    } else {
                        write!(&mut string, "\"{schema}\"").expect("Infallible");
                    }
                }
            }
            string
        });

        let lazy = options.connect_lazy;
        let after_connect = options.after_connect.clone();
        let pg_pool_opts_fn = options.pg_pool_opts_fn.clone();
        let pg_before_acquire = options.pg_before_acquire_fn.clone();
        let ping_after_idle = options.test_before_acquire_if_idle_for;
        let mut pool_options = options.sqlx_pool_options();
        pool_options = crate::ConnectOptions::apply_before_acquire::<sqlx::Postgres>(
            pool_options,
            ping_after_idle,
            pg_before_acquire,
        );

        if let Some(sql) = set_search_path_sql {
            pool_options = pool_options.after_connect(move |conn, _| {
                let sql = sql.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql))
                        .await
                        .map(|_| ())
                })
            });
        }
        if let Some(f) = &pg_pool_opts_fn {
            pool_options = f(pool_options);
        }
        let pool = if lazy {
            pool_options.connect_lazy_with(sqlx_opts)
        } else {
            pool_options
                .connect_with(sqlx_opts)
                .await
                .map_err(sqlx_error_to_conn_err)?
        };

        let conn: DatabaseConnection =
            DatabaseConnectionType::SqlxPostgresPoolConnection(SqlxPostgresPoolConnection {
                pool,
                metric_callback: None,
                record_stmt_in_spans,
            })
            .into();

        if let Some(cb) = after_connect {
            cb(conn.clone()).await?;
        }

        Ok(conn)
    }
}

impl SqlxPostgresConnector {
    /// Instantiate a sqlx pool connection to a [DatabaseConnection]
    pub fn from_sqlx_postgres_pool(pool: PgPool) -> DatabaseConnection {
        DatabaseConnectionType::SqlxPostgresPoolConnection(SqlxPostgresPoolConnection {
            pool,
            metric_callback: None,
            record_stmt_in_spans: true,
        })
        .into()
    }
}

impl SqlxPostgresPoolConnection {
    /// Execute a [Statement] on a PostgreSQL backend
    #[instrument(level = "trace", skip(stmt))]
    pub async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        debug_print!("{}", stmt);

        let query = sqlx_query(&stmt);
        let mut conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        crate::metric::metric!(self.metric_callback, &stmt, {
            match query.execute(&mut *conn).await {
                Ok(res) => Ok(res.into()),
                Err(err) => Err(sqlx_error_to_exec_err(err)),
            }
        })
    }

    /// Execute an unprepared SQL statement on a PostgreSQL backend
    #[instrument(level = "trace", skip(sql))]
    pub async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        debug_print!("{}", sql);

        let conn = &mut self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        match conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await {
            Ok(res) => Ok(res.into()),
            Err(err) => Err(sqlx_error_to_exec_err(err)),
        }
    }

    /// Get one result from a SQL query. Returns [Option::None] if no match was found
    #[instrument(level = "trace", skip(stmt))]
    pub async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        debug_print!("{}", stmt);

        let query = sqlx_query(&stmt);
        let mut conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        crate::metric::metric!(self.metric_callback, &stmt, {
            match query.fetch_one(&mut *conn).await {
                Ok(row) => Ok(Some(row.into())),
                Err(err) => match err {
                    sqlx::Error::RowNotFound => Ok(None),
                    _ => Err(sqlx_error_to_query_err(err)),
                },
            }
        })
    }

    /// Get the results of a query returning them as a Vec<[QueryResult]>
    #[instrument(level = "trace", skip(stmt))]
    pub async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        debug_print!("{}", stmt);

        let query = sqlx_query(&stmt);
        let mut conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        crate::metric::metric!(self.metric_callback, &stmt, {
            match query.fetch_all(&mut *conn).await {
                Ok(rows) => Ok(rows.into_iter().map(|r| r.into()).collect()),
                Err(err) => Err(sqlx_error_to_query_err(err)),
            }
        })
    }

    /// Stream the results of executing a SQL query
    #[instrument(level = "trace", skip(stmt))]
    #[cfg(feature = "stream")]
    pub async fn stream(&self, stmt: Statement) -> Result<QueryStream, DbErr> {
        debug_print!("{}", stmt);

        let conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        Ok(QueryStream::from((
            conn,
            stmt,
            self.metric_callback.clone(),
        )))
    }

    /// Bundle a set of SQL statements that execute together.
    #[instrument(level = "trace")]
    pub async fn begin(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        let conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        DatabaseTransaction::new_postgres(
            conn,
            self.metric_callback.clone(),
            self.record_stmt_in_spans,
            isolation_level,
            access_mode,
        )
        .await
    }

    /// Create a PostgreSQL transaction
    #[instrument(level = "trace", skip(callback))]
    pub async fn transaction<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'b> FnOnce(
                &'b DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'b>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let conn = self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        let transaction = DatabaseTransaction::new_postgres(
            conn,
            self.metric_callback.clone(),
            self.record_stmt_in_spans,
            isolation_level,
            access_mode,
        )
        .await
        .map_err(|e| TransactionError::Connection(e))?;
        transaction.run(callback).await
    }

    pub(crate) fn set_metric_callback<F>(&mut self, callback: F)
    where
        F: Fn(&crate::metric::Info<'_>) + Send + Sync + 'static,
    {
        self.metric_callback = Some(Arc::new(callback));
    }

    /// Checks if a connection to the database is still valid.
    pub async fn ping(&self) -> Result<(), DbErr> {
        let conn = &mut self.pool.acquire().await.map_err(sqlx_conn_acquire_err)?;
        match conn.ping().await {
            Ok(_) => Ok(()),
            Err(err) => Err(sqlx_error_to_conn_err(err)),
        }
    }

    /// Explicitly close the Postgres connection.
    /// See [`Self::close_by_ref`] for usage with references.
    pub async fn close(self) -> Result<(), DbErr> {
        self.close_by_ref().await
    }

    /// Explicitly close the Postgres connection
    pub async fn close_by_ref(&self) -> Result<(), DbErr> {
        self.pool.close().await;
        Ok(())
    }
}

impl From<PgRow> for QueryResult {
    fn from(row: PgRow) -> QueryResult {
        QueryResult {
            row: QueryResultRow::SqlxPostgres(row),
        }
    }
}

impl From<PgQueryResult> for ExecResult {
    fn from(result: PgQueryResult) -> ExecResult {
        ExecResult {
            result: ExecResultHolder::SqlxPostgres(result),
        }
    }
}

pub(crate) fn sqlx_query(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt
        .values
        .as_ref()
        .map_or(Values(Vec::new()), |values| values.clone());
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

pub(crate) async fn set_transaction_config(
    conn: &mut PoolConnection<Postgres>,
    isolation_level: Option<IsolationLevel>,
    access_mode: Option<AccessMode>,
) -> Result<(), DbErr> {
    let mut settings = Vec::new();

    if let Some(isolation_level) = isolation_level {
        settings.push(format!("ISOLATION LEVEL {isolation_level}"));
    }

    if let Some(access_mode) = access_mode {
        settings.push(access_mode.to_string());
    }

    if !settings.is_empty() {
        let sql = format!("SET TRANSACTION {}", settings.join(" "));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut **conn)
            .await
            .map_err(sqlx_error_to_exec_err)?;
    }
    Ok(())
}

#[cfg(feature = "stream")]
impl
    From<(
        PoolConnection<sqlx::Postgres>,
        Statement,
        Option<crate::metric::Callback>,
    )> for crate::QueryStream
{
    fn from(
        (conn, stmt, metric_callback): (
            PoolConnection<sqlx::Postgres>,
            Statement,
            Option<crate::metric::Callback>,
        ),
    ) -> Self {
        crate::QueryStream::build(
            stmt,
            crate::InnerConnection::Postgres(conn),
            metric_callback,
        )
    }
}

impl crate::DatabaseTransaction {
    pub(crate) async fn new_postgres(
        inner: PoolConnection<sqlx::Postgres>,
        metric_callback: Option<crate::metric::Callback>,
        record_stmt_in_spans: bool,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<crate::DatabaseTransaction, DbErr> {
        Self::begin(
            Arc::new(Mutex::new(crate::InnerConnection::Postgres(inner))),
            crate::DbBackend::Postgres,
            metric_callback,
            record_stmt_in_spans,
            isolation_level,
            access_mode,
            None,
        )
        .await
    }
}

/// Convert a Postgres row to a [crate::ProxyRow]; panics on failure.
/// Prefer [try_from_sqlx_postgres_row_to_proxy_row].
#[cfg(feature = "proxy")]
#[allow(dead_code)]
pub(crate) fn from_sqlx_postgres_row_to_proxy_row(row: &sqlx::postgres::PgRow) -> crate::ProxyRow {
    try_from_sqlx_postgres_row_to_proxy_row(row)
        .unwrap_or_else(|e| panic!("Failed to convert PgRow to ProxyRow: {e}"))
}

/// Convert a Postgres row to a [crate::ProxyRow] without panicking (PATCHED).
///
/// Keeps the column order. Returns `Err` on duplicate column names, on column
/// types without a faithful [sea_query::Value] mapping (enums, domains,
/// composite types, `interval`, `timetz`, `money`, ...) and on decode failures
/// (e.g. `numeric` NaN / out of range for `rust_decimal`).
#[cfg(feature = "proxy")]
pub fn try_from_sqlx_postgres_row_to_proxy_row(
    row: &sqlx::postgres::PgRow,
) -> Result<crate::ProxyRow, DbErr> {
    use sqlx::{Column, Row};
    let mut pairs = Vec::with_capacity(row.columns().len());
    for c in row.columns() {
        pairs.push((c.name().to_string(), pg_column_to_value(row, c)?));
    }
    crate::ProxyRow::try_from_ordered(pairs)
}

/// PATCHED: `Err` for a binary DATE / TIMESTAMP / TIMESTAMPTZ value (or array element)
/// outside chrono's range (PostgreSQL's `infinity` is the largest integer).
#[cfg(all(feature = "proxy", feature = "with-chrono"))]
fn chrono_in_range(
    row: &sqlx::postgres::PgRow,
    c: &sqlx::postgres::PgColumn,
    type_name: &str,
) -> Result<(), DbErr> {
    use sqlx::{Column, Row, ValueRef};
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
    let out_of_range = || {
        crate::error::type_err(format!(
            "ProxyRow: column `{}` of type {type_name} holds a value chrono cannot represent",
            c.name()
        ))
    };
    let raw = row.try_get_raw(c.ordinal()).map_err(|_| out_of_range())?;
    if raw.is_null() || raw.format() != sqlx::postgres::PgValueFormat::Binary {
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
    let ok = if array { array_elements(bytes).is_some_and(|els| els.into_iter().all(|e| e.is_none_or(in_range))) } else { in_range(bytes) };
    if ok { Ok(()) } else { Err(out_of_range()) }
}

/// The elements of a binary PostgreSQL array (`None` for NULL); `None` if malformed.
#[cfg(all(feature = "proxy", feature = "with-chrono"))]
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

#[cfg(feature = "proxy")]
fn pg_column_to_value(
    row: &sqlx::postgres::PgRow,
    c: &sqlx::postgres::PgColumn,
) -> Result<sea_query::Value, DbErr> {
    // https://docs.rs/sqlx-postgres/latest/sqlx_postgres/types/index.html
    use sea_query::Value;
    use sqlx::{Column, Row, TypeInfo};

    fn get<'r, T>(row: &'r sqlx::postgres::PgRow, c: &sqlx::postgres::PgColumn) -> Result<Option<T>, DbErr>
    where
        T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        row.try_get::<Option<T>, _>(c.ordinal()).map_err(|e| {
            crate::error::type_err(format!(
                "ProxyRow: cannot decode column `{}` of type {}: {e}",
                c.name(),
                c.type_info().name()
            ))
        })
    }

    #[cfg(feature = "postgres-array")]
    fn arr<'r, T>(
        row: &'r sqlx::postgres::PgRow,
        c: &sqlx::postgres::PgColumn,
        ty: sea_query::ArrayType,
        f: fn(T) -> Value,
    ) -> Result<Value, DbErr>
    where
        Vec<T>: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        Ok(Value::Array(
            ty,
            get::<Vec<T>>(row, c)?.map(|vals| Box::new(vals.into_iter().map(f).collect())),
        ))
    }
    #[cfg(feature = "postgres-array")]
    use sea_query::ArrayType as AT;

    let type_name = c.type_info().name();
    // PATCHED: sqlx panics (`NaiveDate + TimeDelta overflowed`) decoding dates and timestamps
    // chrono cannot hold ('infinity', years past 262143): refuse them as a type error first.
    #[cfg(feature = "with-chrono")]
    chrono_in_range(row, c, type_name)?;
    Ok(match type_name {
        "BOOL" => Value::Bool(get(row, c)?),
        "\"CHAR\"" => Value::TinyInt(get(row, c)?),
        "INT2" => Value::SmallInt(get(row, c)?),
        "INT4" => Value::Int(get(row, c)?),
        "INT8" => Value::BigInt(get(row, c)?),
        "OID" => Value::Unsigned(get::<sqlx::postgres::types::Oid>(row, c)?.map(|o| o.0)),
        "FLOAT4" => Value::Float(get(row, c)?),
        "FLOAT8" => Value::Double(get(row, c)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => Value::String(get(row, c)?),
        "BYTEA" => Value::Bytes(get(row, c)?),
        #[cfg(feature = "with-bigdecimal")]
        "NUMERIC" => Value::BigDecimal(get::<bigdecimal::BigDecimal>(row, c)?.map(Box::new)),
        #[cfg(all(feature = "with-rust_decimal", not(feature = "with-bigdecimal")))]
        "NUMERIC" => Value::Decimal(get(row, c)?),
        #[cfg(feature = "with-json")]
        "JSON" | "JSONB" => Value::Json(get::<serde_json::Value>(row, c)?.map(Box::new)),
        #[cfg(feature = "with-uuid")]
        "UUID" => Value::Uuid(get(row, c)?),
        #[cfg(feature = "with-ipnetwork")]
        "INET" | "CIDR" => Value::IpNetwork(get(row, c)?),
        #[cfg(feature = "with-mac_address")]
        "MACADDR" => Value::MacAddress(get(row, c)?),
        #[cfg(feature = "with-chrono")]
        "DATE" => Value::ChronoDate(get(row, c)?),
        #[cfg(feature = "with-chrono")]
        "TIME" => Value::ChronoTime(get(row, c)?),
        #[cfg(feature = "with-chrono")]
        "TIMESTAMP" => Value::ChronoDateTime(get(row, c)?),
        // PATCHED: as sqlx returns it (offset +00:00), so that `into_json` reads back alike;
        // `DateTime<Utc>` is an equivalent.
        #[cfg(feature = "with-chrono")]
        "TIMESTAMPTZ" => Value::ChronoDateTimeWithTimeZone(get(row, c)?),
        #[cfg(all(feature = "with-time", not(feature = "with-chrono")))]
        "DATE" => Value::TimeDate(get(row, c)?),
        #[cfg(all(feature = "with-time", not(feature = "with-chrono")))]
        "TIME" => Value::TimeTime(get(row, c)?),
        #[cfg(all(feature = "with-time", not(feature = "with-chrono")))]
        "TIMESTAMP" => Value::TimeDateTime(get(row, c)?),
        #[cfg(all(feature = "with-time", not(feature = "with-chrono")))]
        "TIMESTAMPTZ" => Value::TimeDateTimeWithTimeZone(get(row, c)?),

        #[cfg(feature = "postgres-array")]
        "BOOL[]" => arr::<bool>(row, c, AT::Bool, |v| Value::Bool(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "\"CHAR\"[]" => arr::<i8>(row, c, AT::TinyInt, |v| Value::TinyInt(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "INT2[]" => arr::<i16>(row, c, AT::SmallInt, |v| Value::SmallInt(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "INT4[]" => arr::<i32>(row, c, AT::Int, |v| Value::Int(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "INT8[]" => arr::<i64>(row, c, AT::BigInt, |v| Value::BigInt(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "FLOAT4[]" => arr::<f32>(row, c, AT::Float, |v| Value::Float(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "FLOAT8[]" => arr::<f64>(row, c, AT::Double, |v| Value::Double(Some(v)))?,
        #[cfg(feature = "postgres-array")]
        "TEXT[]" | "VARCHAR[]" | "CHAR[]" | "NAME[]" => {
            arr::<String>(row, c, AT::String, |v| Value::String(Some(v)))?
        }
        #[cfg(feature = "postgres-array")]
        "BYTEA[]" => arr::<Vec<u8>>(row, c, AT::Bytes, |v| Value::Bytes(Some(v)))?,
        #[cfg(all(feature = "postgres-array", feature = "with-bigdecimal"))]
        "NUMERIC[]" => arr::<bigdecimal::BigDecimal>(row, c, AT::BigDecimal, |v| {
            Value::BigDecimal(Some(Box::new(v)))
        })?,
        #[cfg(all(
            feature = "postgres-array",
            feature = "with-rust_decimal",
            not(feature = "with-bigdecimal")
        ))]
        "NUMERIC[]" => arr::<rust_decimal::Decimal>(row, c, AT::Decimal, |v| {
            Value::Decimal(Some(v))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-json"))]
        "JSON[]" | "JSONB[]" => arr::<serde_json::Value>(row, c, AT::Json, |v| {
            Value::Json(Some(Box::new(v)))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-uuid"))]
        "UUID[]" => arr::<uuid::Uuid>(row, c, AT::Uuid, |v| Value::Uuid(Some(v)))?,
        #[cfg(all(feature = "postgres-array", feature = "with-ipnetwork"))]
        "INET[]" | "CIDR[]" => {
            arr::<ipnetwork::IpNetwork>(row, c, AT::IpNetwork, |v| Value::IpNetwork(Some(v)))?
        }
        #[cfg(all(feature = "postgres-array", feature = "with-mac_address"))]
        "MACADDR[]" => arr::<mac_address::MacAddress>(row, c, AT::MacAddress, |v| {
            Value::MacAddress(Some(v))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-chrono"))]
        "DATE[]" => arr::<chrono::NaiveDate>(row, c, AT::ChronoDate, |v| {
            Value::ChronoDate(Some(v))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-chrono"))]
        "TIME[]" => arr::<chrono::NaiveTime>(row, c, AT::ChronoTime, |v| {
            Value::ChronoTime(Some(v))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-chrono"))]
        "TIMESTAMP[]" => arr::<chrono::NaiveDateTime>(row, c, AT::ChronoDateTime, |v| {
            Value::ChronoDateTime(Some(v))
        })?,
        #[cfg(all(feature = "postgres-array", feature = "with-chrono"))]
        "TIMESTAMPTZ[]" => arr::<chrono::DateTime<chrono::Utc>>(
            row,
            c,
            AT::ChronoDateTimeUtc,
            |v| Value::ChronoDateTimeUtc(Some(v)),
        )?,
        #[cfg(all(
            feature = "postgres-array",
            feature = "with-time",
            not(feature = "with-chrono")
        ))]
        "DATE[]" => arr::<time::Date>(row, c, AT::TimeDate, |v| Value::TimeDate(Some(v)))?,
        #[cfg(all(
            feature = "postgres-array",
            feature = "with-time",
            not(feature = "with-chrono")
        ))]
        "TIME[]" => arr::<time::Time>(row, c, AT::TimeTime, |v| Value::TimeTime(Some(v)))?,
        #[cfg(all(
            feature = "postgres-array",
            feature = "with-time",
            not(feature = "with-chrono")
        ))]
        "TIMESTAMP[]" => arr::<time::PrimitiveDateTime>(row, c, AT::TimeDateTime, |v| {
            Value::TimeDateTime(Some(v))
        })?,
        #[cfg(all(
            feature = "postgres-array",
            feature = "with-time",
            not(feature = "with-chrono")
        ))]
        "TIMESTAMPTZ[]" => arr::<time::OffsetDateTime>(row, c, AT::TimeDateTimeWithTimeZone, |v| {
            Value::TimeDateTimeWithTimeZone(Some(v))
        })?,

        other => {
            return Err(crate::error::type_err(format!(
                "ProxyRow: unsupported Postgres column type {other} (column `{}`)",
                c.name()
            )));
        }
    })
}
