//! Reading the store as users do (dashboard panels, `apiary query`): a
//! read-only connection, separate from the pipeline's, with a time limit
//! per query.
//!
//! SQLite is opened with `mode=ro`; MySQL and PostgreSQL sessions are
//! `READ ONLY` with a server-side statement time limit as well. Values are
//! read by their database type into JSON numbers, text or null, so
//! timestamps and decimals need no `CAST`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::{Column as _, Executor as _, Row as _, TypeInfo as _, ValueRef as _};

/// Rows a panel returns at most.
pub const MAX_ROWS: usize = 1000;

/// A query's result, as the dashboard's API returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows of JSON values: numbers, text or null.
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl Table {
    /// The rows as an aligned text table, headed by the column names.
    pub fn to_text(&self) -> String {
        if self.rows.is_empty() {
            return "(no rows)\n".into();
        }
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "NULL".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut lines = vec![self.columns.clone()];
        lines.extend(self.rows.iter().map(|r| r.iter().map(cell).collect()));
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in &lines {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out += cells.join("  ").trim_end();
            out.push('\n');
        }
        out
    }
}

/// A read-only connection pool to the sink, with a time limit per query.
#[derive(Clone)]
pub struct Reader {
    pool: Pool,
    timeout: Duration,
}

#[derive(Clone)]
enum Pool {
    /// A SQLite file opened read-only.
    Sqlite(sqlx::SqlitePool),
    /// A MySQL or MariaDB database, in read-only sessions.
    Mysql(sqlx::MySqlPool),
    /// A PostgreSQL database, in read-only sessions.
    Postgres(sqlx::PgPool),
}

impl Reader {
    /// Opens a small pool of read-only connections to the sink at `url`,
    /// whose queries may take `timeout` each.
    pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let redacted = crate::text::redact_url(url);
        if url.starts_with("sqlite:") {
            let sep = if url.contains('?') { '&' } else { '?' };
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .acquire_timeout(timeout)
                .connect(&format!("{url}{sep}mode=ro"))
                .await
                .with_context(|| format!("cannot open the sink {redacted}"))?;
            return Ok(Self {
                pool: Pool::Sqlite(pool),
                timeout,
            });
        }
        let millis = timeout.as_millis().max(1) as u64;
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .await?;
                        let limit = format!("SET statement_timeout = {millis}");
                        conn.execute(limit.as_str()).await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to the sink {redacted}"))?;
            return Ok(Self {
                pool: Pool::Postgres(pool),
                timeout,
            });
        }
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                    // MariaDB's limit, in seconds; MySQL names its own in ms.
                    let mariadb =
                        format!("SET SESSION max_statement_time = {}", millis as f64 / 1e3);
                    if conn.execute(mariadb.as_str()).await.is_err() {
                        let mysql = format!("SET SESSION max_execution_time = {millis}");
                        conn.execute(mysql.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the sink {redacted}"))?;
        Ok(Self {
            pool: Pool::Mysql(pool),
            timeout,
        })
    }

    /// Runs `sql` and returns its first [`MAX_ROWS`] rows, or the
    /// database's error; gives up after the time limit.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Table> {
        self.query_rows(sql, MAX_ROWS).await
    }

    /// Runs `sql` and returns its first `max_rows` rows, or the database's
    /// error; gives up after the time limit.
    pub async fn query_rows(&self, sql: &str, max_rows: usize) -> anyhow::Result<Table> {
        let too_long = || anyhow::anyhow!("the query took longer than {:?}", self.timeout);
        match tokio::time::timeout(self.timeout, self.query_unlimited(sql, max_rows)).await {
            // SQLite's own interruption (below) and PostgreSQL's
            // statement_timeout say so.
            Ok(Err(e))
                if e.to_string().contains("interrupted")
                    || e.to_string().contains("statement timeout") =>
            {
                Err(too_long())
            }
            Ok(result) => result,
            Err(_) => Err(too_long()),
        }
    }

    async fn query_unlimited(&self, sql: &str, max_rows: usize) -> anyhow::Result<Table> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                // Dropping a query's future does not stop SQLite: a progress
                // handler interrupts it at the deadline instead, so a slow
                // panel cannot keep a connection busy.
                let deadline = Instant::now() + self.timeout;
                conn.lock_handle()
                    .await?
                    .set_progress_handler(10_000, move || Instant::now() < deadline);
                collect(sqlx::raw_sql(sql).fetch(&mut *conn), max_rows, sqlite_row).await
            }
            // No arguments: the text protocol, where every value reads as
            // text and the column type says how to read it.
            Pool::Mysql(pool) => collect(sqlx::raw_sql(sql).fetch(pool), max_rows, mysql_row).await,
            // The simple query protocol: every value comes as text.
            Pool::Postgres(pool) => {
                collect(sqlx::raw_sql(sql).fetch(pool), max_rows, postgres_row).await
            }
        }
    }

    /// The next offset of every lane of `consumer` (the pipeline's name, or
    /// its Kafka group), from `apiary_offsets`: stream, partition, offset.
    pub async fn offsets(&self, consumer: &str) -> anyhow::Result<Table> {
        let consumer = self.literal(consumer);
        self.query(&format!(
            "SELECT stream, part, next_offset FROM apiary_offsets \
             WHERE consumer = {consumer} ORDER BY stream, part"
        ))
        .await
    }

    /// The dead letters of every lane of `consumer`: stream, partition,
    /// count.
    pub async fn dead_letters(&self, consumer: &str) -> anyhow::Result<Table> {
        let consumer = self.literal(consumer);
        self.query(&format!(
            "SELECT stream, part, COUNT(*) FROM apiary_dead_letter \
             WHERE consumer = {consumer} GROUP BY stream, part"
        ))
        .await
    }

    /// `text` as a quoted SQL string.
    fn literal(&self, text: &str) -> String {
        let mut quoted = text.replace('\'', "''");
        if matches!(self.pool, Pool::Mysql(_)) {
            quoted = quoted.replace('\\', "\\\\");
        }
        format!("'{quoted}'")
    }
}

/// The first `max_rows` rows of a result, as JSON by `to_json`.
async fn collect<R: sqlx::Row>(
    mut rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    max_rows: usize,
    to_json: fn(&R) -> anyhow::Result<Vec<serde_json::Value>>,
) -> anyhow::Result<Table> {
    let mut table = Table::default();
    while let Some(row) = rows.try_next().await? {
        if table.rows.len() == max_rows {
            break;
        }
        if table.columns.is_empty() {
            table.columns = row.columns().iter().map(|c| c.name().into()).collect();
        }
        table.rows.push(to_json(&row)?);
    }
    Ok(table)
}

/// Every cell of `row` as JSON: null, or what `cell` makes of cell `i`
/// whose value has the database type named.
fn cells<R: sqlx::Row>(
    row: &R,
    cell: impl Fn(usize, &str) -> Result<serde_json::Value, sqlx::Error>,
) -> anyhow::Result<Vec<serde_json::Value>>
where
    usize: sqlx::ColumnIndex<R>,
{
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(serde_json::Value::Null);
            }
            let ty = raw.type_info().name().to_ascii_uppercase();
            drop(raw);
            Ok(cell(i, &ty)?)
        })
        .collect()
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<Vec<serde_json::Value>> {
    // SQLite types each value, whatever the column says.
    cells(row, |i, ty| {
        Ok(match ty {
            "INTEGER" => row.try_get_unchecked::<i64, _>(i)?.into(),
            "REAL" => number(row.try_get_unchecked::<f64, _>(i)?),
            "BLOB" => String::from_utf8_lossy(&row.try_get_unchecked::<Vec<u8>, _>(i)?).into(),
            _ => row.try_get_unchecked::<String, _>(i)?.into(),
        })
    })
}

fn mysql_row(row: &sqlx::mysql::MySqlRow) -> anyhow::Result<Vec<serde_json::Value>> {
    cells(row, |i, ty| {
        let text = String::from_utf8_lossy(&row.try_get_unchecked::<Vec<u8>, _>(i)?).into_owned();
        let numeric = ["INT", "DECIMAL", "DOUBLE", "FLOAT"]
            .iter()
            .any(|n| ty.contains(n))
            || ty == "YEAR";
        Ok(from_text(text, numeric))
    })
}

fn postgres_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<Vec<serde_json::Value>> {
    cells(row, |i, ty| {
        let text = row.try_get_unchecked::<String, _>(i)?;
        Ok(match ty {
            "BOOL" => (text == "t").into(),
            "INT2" | "INT4" | "INT8" | "OID" | "FLOAT4" | "FLOAT8" | "NUMERIC" => {
                from_text(text, true)
            }
            _ => text.into(),
        })
    })
}

/// A value read as text: a JSON number where the column is numeric and
/// the text parses, else the text.
fn from_text(text: String, numeric: bool) -> serde_json::Value {
    if !numeric {
        text.into()
    } else if let Ok(n) = text.parse::<i64>() {
        n.into()
    } else {
        text.parse::<f64>().map(number).unwrap_or(text.into())
    }
}

/// A float as JSON; NaN and infinities (which JSON lacks) as null.
fn number(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into)
}
