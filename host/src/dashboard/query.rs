//! Panel queries: a read-only connection to the sink, separate from the
//! pipeline's, with a time limit per query.
//!
//! SQLite is opened with `mode=ro`; MySQL sessions are `READ ONLY` with a
//! server-side statement time limit as well. Values are read by their
//! database type into JSON numbers, text or null, so timestamps and
//! decimals need no `CAST`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::{Column as _, Executor as _, Row as _, TypeInfo as _, ValueRef as _};

/// Rows a panel returns at most.
pub const MAX_ROWS: usize = 1000;

/// A query's result as the API returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows of JSON values: numbers, text or null.
    pub rows: Vec<Vec<serde_json::Value>>,
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
}

impl Reader {
    /// Opens a small pool of read-only connections to the sink at `url`,
    /// whose queries may take `timeout` each.
    pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let redacted = crate::sink::redact_url(url);
        if url.starts_with("sqlite:") {
            let sep = if url.contains('?') { '&' } else { '?' };
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .acquire_timeout(timeout)
                .connect(&format!("{url}{sep}mode=ro"))
                .await
                .with_context(|| format!("dashboard: cannot open the sink {redacted}"))?;
            return Ok(Self {
                pool: Pool::Sqlite(pool),
                timeout,
            });
        }
        let millis = timeout.as_millis().max(1) as u64;
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
            .with_context(|| format!("dashboard: cannot connect to the sink {redacted}"))?;
        Ok(Self {
            pool: Pool::Mysql(pool),
            timeout,
        })
    }

    /// Runs `sql` and returns its first [`MAX_ROWS`] rows, or the
    /// database's error; gives up after the time limit.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Table> {
        let too_long = || anyhow::anyhow!("the query took longer than {:?}", self.timeout);
        match tokio::time::timeout(self.timeout, self.query_unlimited(sql)).await {
            // SQLite's own interruption (below) says "interrupted".
            Ok(Err(e)) if e.to_string().contains("interrupted") => Err(too_long()),
            Ok(result) => result,
            Err(_) => Err(too_long()),
        }
    }

    async fn query_unlimited(&self, sql: &str) -> anyhow::Result<Table> {
        let mut table = Table::default();
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
                let mut rows = sqlx::raw_sql(sql).fetch(&mut *conn);
                while let Some(row) = rows.try_next().await? {
                    if table.rows.len() == MAX_ROWS {
                        break;
                    }
                    if table.columns.is_empty() {
                        table.columns = row.columns().iter().map(|c| c.name().into()).collect();
                    }
                    table.rows.push(sqlite_row(&row)?);
                }
            }
            Pool::Mysql(pool) => {
                // No arguments: the text protocol, where every value reads as
                // text and the column type says how to read it.
                let mut rows = sqlx::raw_sql(sql).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    if table.rows.len() == MAX_ROWS {
                        break;
                    }
                    if table.columns.is_empty() {
                        table.columns = row.columns().iter().map(|c| c.name().into()).collect();
                    }
                    table.rows.push(mysql_row(&row)?);
                }
            }
        }
        Ok(table)
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

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<Vec<serde_json::Value>> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(serde_json::Value::Null);
            }
            // SQLite types each value, whatever the column says.
            Ok(match raw.type_info().name() {
                "INTEGER" => row.try_get_unchecked::<i64, _>(i)?.into(),
                "REAL" => number(row.try_get_unchecked::<f64, _>(i)?),
                "BLOB" => String::from_utf8_lossy(&row.try_get_unchecked::<Vec<u8>, _>(i)?).into(),
                _ => row.try_get_unchecked::<String, _>(i)?.into(),
            })
        })
        .collect()
}

fn mysql_row(row: &sqlx::mysql::MySqlRow) -> anyhow::Result<Vec<serde_json::Value>> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(serde_json::Value::Null);
            }
            let ty = raw.type_info().name().to_ascii_uppercase();
            let text =
                String::from_utf8_lossy(&row.try_get_unchecked::<Vec<u8>, _>(i)?).into_owned();
            let numeric = ty.contains("INT")
                || ty.contains("DECIMAL")
                || ty.contains("DOUBLE")
                || ty.contains("FLOAT")
                || ty == "YEAR";
            Ok(if !numeric {
                text.into()
            } else if let Ok(n) = text.parse::<i64>() {
                n.into()
            } else {
                text.parse::<f64>().map(number).unwrap_or(text.into())
            })
        })
        .collect()
}

/// A float as JSON; NaN and infinities (which JSON lacks) as null.
fn number(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into)
}
