//! The checkpoint store: output tables, plugin state, timers, dead letters
//! and lane offsets in one SQL database, written in one transaction per
//! checkpoint. It is the one transactional sink; side outputs
//! ([`crate::output`]) write before it commits.
//!
//! SQLite (the embedded default), MySQL/MariaDB and PostgreSQL share this
//! code through sqlx's `Any` driver; what differs is in [`dialect`].

pub mod reader;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, ConnectOptions as _, Executor as _, Row as _};

pub use reader::{Reader, Table};

use crate::config;
use crate::dialect::{self, Dialect};
use crate::error::{Fenced, SchemaMismatch};
use crate::model::schema::TableSchema;
use crate::model::wit::types::{ColumnType, Value};
use crate::model::{Checkpoint, LaneKey, StoredState, StoredValue};
use crate::text::redact_url;

/// Rows per multi-row INSERT, at most.
const MAX_ROWS_PER_STATEMENT: usize = 1000;

/// Rows per upsert from arrays, at most (a bound on one statement's size).
const MAX_ROWS_PER_ARRAY_STATEMENT: usize = 10_000;

/// Bytes of a statement besides its parameters' values, at most.
const STATEMENT_HEADER_BYTES: usize = 1024;

/// `rows` cut into statements of at most `max_rows` rows and, past the
/// first row of each, at most `max_bytes` bytes of parameters.
fn statements(
    rows: &[Vec<Value>],
    max_rows: usize,
    max_bytes: Option<usize>,
) -> impl Iterator<Item = &[Vec<Value>]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max_rows);
        if let Some(most) = max_bytes {
            let mut bytes = 0;
            end = rest[..end]
                .iter()
                .position(|row| {
                    bytes += dialect::statement_bytes(row);
                    bytes > most
                })
                .map_or(end, |past| past.max(1));
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// A connection pool to the checkpoint store's database.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: &'static dyn Dialect,
    /// The statements that write Apiary's own tables.
    own: Arc<OwnStatements>,
    utc_offset_secs: i32,
    max_retries: u32,
    retry_backoff: std::time::Duration,
    /// Tables created or checked already.
    known_tables: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// One per connection: lanes queue here for their turn to commit, so
    /// the pool's short acquire timeout means an outage, never a queue.
    commit_turns: Arc<tokio::sync::Semaphore>,
    /// The most bytes of parameters one statement carries, where the
    /// server has a limit ([`Dialect::statement_bytes_query`]).
    statement_bytes: Option<usize>,
}

/// Connections of a store's pool.
const CONNECTIONS: u32 = 4;

impl SqlStore {
    /// Connects to the configured database, creating a SQLite file if it is
    /// missing, and creates Apiary's own tables.
    pub async fn connect(config: &config::SqlSink) -> anyhow::Result<Self> {
        let sink = Self::open(config, false).await?;
        sink.create_own_tables().await?;
        Ok(sink)
    }

    /// Connects without creating or changing anything (`apiary check` and
    /// `apiary query`); a SQLite file must exist.
    pub async fn connect_read_only(config: &config::SqlSink) -> anyhow::Result<Self> {
        Self::open(config, true).await
    }

    async fn open(config: &config::SqlSink, read_only: bool) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = dialect::for_url(&config.url).with_context(|| {
            format!(
                "sink {}: not a sqlite://, mysql:// or postgres:// URL",
                redact_url(&config.url)
            )
        })?;
        let url = dialect.url(&config.url, read_only);
        // A short acquire timeout turns an outage into logged, backed-off
        // checkpoint retries instead of a silent wait inside the pool.
        let mut options = AnyPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(std::time::Duration::from_secs(5));
        let session = dialect.session(read_only);
        if !session.is_empty() {
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    for statement in session {
                        conn.execute(*statement).await?;
                    }
                    Ok(())
                })
            });
        }
        // A checkpoint's statements carry thousands of rows and take over
        // sqlx's one-second alert under a backlog, by design: its warning
        // would print each statement whole. Checkpoint times are in the
        // metrics; the statements stay at debug level (`sqlx::query=debug`).
        let connect = url
            .parse::<AnyConnectOptions>()
            .with_context(|| format!("sink {}: invalid URL", redact_url(&config.url)))?
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        let pool = options
            .connect_with(connect)
            .await
            .with_context(|| format!("cannot connect to sink {}", redact_url(&config.url)))?;
        let utc_offset_secs = match &config.time_zone {
            Some(zone) => crate::time::parse_utc_offset(zone).map_err(anyhow::Error::msg)?,
            None => 0,
        };
        let statement_bytes = match dialect.statement_bytes_query() {
            Some(query) => {
                let limit: i64 = sqlx::query_scalar(query)
                    .fetch_one(&pool)
                    .await
                    .with_context(|| {
                        format!("cannot read the limits of sink {}", redact_url(&config.url))
                    })?;
                // Room for the statement's own header.
                Some(
                    usize::try_from(limit)
                        .unwrap_or(0)
                        .saturating_sub(STATEMENT_HEADER_BYTES),
                )
            }
            None => None,
        };
        Ok(Self {
            pool,
            dialect,
            own: Arc::new(OwnStatements::new(dialect)),
            utc_offset_secs,
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
            known_tables: Arc::default(),
            commit_turns: Arc::new(tokio::sync::Semaphore::new(CONNECTIONS as usize)),
            statement_bytes,
        })
    }

    /// Seconds east of UTC that timestamps are written in.
    pub fn utc_offset_secs(&self) -> i32 {
        self.utc_offset_secs
    }

    /// What one row may hold on this sink, beyond what every sink stores.
    pub fn row_limits(&self) -> dialect::RowLimits {
        dialect::RowLimits {
            text_bytes: self.dialect.max_text_bytes(),
            row_bytes: self.statement_bytes,
        }
    }

    /// The database's SQL dialect.
    pub fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    /// The connection pool, for reading results.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn create_own_tables(&self) -> anyhow::Result<()> {
        let dialect::OwnTypes {
            blob,
            name: text,
            id,
            time,
        } = self.dialect.own_types();
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS apiary_offsets (consumer {text} NOT NULL, \
                 stream {text} NOT NULL, part INTEGER NOT NULL, next_offset BIGINT NOT NULL, \
                 watermark BIGINT, closed_until {time}, PRIMARY KEY (consumer, stream, part))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS apiary_state (consumer {text} NOT NULL, \
                 stream {text} NOT NULL, part INTEGER NOT NULL, plugin VARCHAR(64) NOT NULL, \
                 skey VARCHAR(255) NOT NULL, value {blob} NOT NULL, expires BIGINT, \
                 PRIMARY KEY (consumer, stream, part, plugin, skey))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS apiary_timers (consumer {text} NOT NULL, \
                 stream {text} NOT NULL, part INTEGER NOT NULL, plugin VARCHAR(64) NOT NULL, \
                 tkey VARCHAR(255) NOT NULL, ttime BIGINT NOT NULL, \
                 PRIMARY KEY (consumer, stream, part, plugin, ttime, tkey))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS apiary_dead_letter (id {id}, consumer {text} NOT NULL, \
                 stream {text} NOT NULL, part INTEGER NOT NULL, record_offset BIGINT NOT NULL, \
                 record_key {blob}, record_value {blob} NOT NULL, plugin VARCHAR(64) NOT NULL, \
                 reason TEXT NOT NULL)"
            ),
        ];
        for statement in statements {
            self.pool
                .execute(statement.as_str())
                .await
                .context("cannot create Apiary's bookkeeping tables")?;
        }
        // Tables made by earlier versions lack the later columns.
        let later: [(&str, &[(&str, &str)]); 2] = [
            (
                "apiary_offsets",
                &[("watermark", "BIGINT"), ("closed_until", time)],
            ),
            ("apiary_state", &[("expires", "BIGINT")]),
        ];
        for (table, columns) in later {
            let existing = self.existing_columns(table).await?.unwrap_or_default();
            for &(column, ty) in columns {
                if existing.iter().any(|c| c.name.eq_ignore_ascii_case(column)) {
                    continue;
                }
                let alter = format!("ALTER TABLE {table} ADD COLUMN {column} {ty}");
                self.pool
                    .execute(alter.as_str())
                    .await
                    .with_context(|| format!("cannot add column {column} to {table}"))?;
                tracing::info!(
                    table,
                    column,
                    "added a column that an earlier version lacked"
                );
            }
        }
        Ok(())
    }

    /// Creates each output table that is missing and checks that each one
    /// that exists has the declared columns, types and primary key.
    /// Time-partitioned tables are created on first use instead.
    pub async fn prepare_tables(&self, tables: &[Arc<TableSchema>]) -> anyhow::Result<()> {
        for table in tables.iter().filter(|t| t.partition.is_none()) {
            self.ensure_table(table, &table.table).await?;
        }
        Ok(())
    }

    /// Creates table `name` of shape `table` if it is missing, or checks
    /// its shape the first time it is seen.
    async fn ensure_table(&self, table: &TableSchema, name: &str) -> anyhow::Result<()> {
        if self
            .known_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
        {
            return Ok(());
        }
        match self.existing_columns(name).await? {
            None => {
                let ddl = self.create_table_sql(table, name);
                self.pool
                    .execute(ddl.as_str())
                    .await
                    .with_context(|| format!("cannot create table `{name}`"))?;
                tracing::info!(table = name, plugin = %table.plugin, "created table");
            }
            Some(existing) => check_existing(table, name, &existing)?,
        }
        self.known_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        Ok(())
    }

    /// Creates each configured secondary index that is missing. Tables and
    /// columns must be ones a plugin declares.
    pub async fn prepare_indexes(
        &self,
        indexes: &[config::SqlIndex],
        tables: &[Arc<TableSchema>],
    ) -> anyhow::Result<()> {
        for index in indexes {
            let name = check_index(index, tables)?;
            let exists = sqlx::query(&self.dialect.numbered(self.dialect.index_query()))
                .bind(&index.table)
                .bind(&name)
                .fetch_one(&self.pool)
                .await?
                .try_get::<i64, _>(0)?
                > 0;
            if exists {
                continue;
            }
            let columns: Vec<String> = index
                .columns
                .iter()
                .map(|c| self.dialect.quote(c))
                .collect();
            let ddl = format!(
                "CREATE INDEX {} ON {} ({})",
                self.dialect.quote(&name),
                self.dialect.quote(&index.table),
                columns.join(", ")
            );
            self.pool
                .execute(ddl.as_str())
                .await
                .with_context(|| format!("cannot create index {name}"))?;
            tracing::info!(table = %index.table, index = name, "created index");
        }
        Ok(())
    }

    /// Checks existing tables without creating any.
    pub async fn check_tables(&self, tables: &[Arc<TableSchema>]) -> anyhow::Result<()> {
        for table in tables.iter().filter(|t| t.partition.is_none()) {
            if let Some(existing) = self.existing_columns(&table.table).await? {
                check_existing(table, &table.table, &existing)?;
            }
        }
        Ok(())
    }

    /// Columns of an existing table (name, declared type, in primary key at
    /// position, nullable), or `None` if there is no such table.
    async fn existing_columns(&self, table: &str) -> anyhow::Result<Option<Vec<ExistingColumn>>> {
        let rows: Vec<AnyRow> = sqlx::query(&self.dialect.numbered(self.dialect.columns_query()))
            .bind(table)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.iter()
            .map(|r| {
                Ok(ExistingColumn {
                    name: text_at(r, 0)?,
                    ty: text_at(r, 1)?.to_ascii_uppercase(),
                    key_position: r.try_get(2)?,
                    not_null: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map(Some)
            .map_err(Into::into)
    }

    fn create_table_sql(&self, table: &TableSchema, name: &str) -> String {
        let q = |name: &str| self.dialect.quote(name);
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let null = if c.nullable { "" } else { " NOT NULL" };
                format!("{} {}{null}", q(&c.name), self.dialect.column_type(c))
            })
            .collect();
        let key = dialect::key_list(self.dialect, table);
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            q(name),
            columns.join(", "),
            key
        )
    }

    /// Binds `value` of a column of type `ty`; a null is bound with the
    /// column's type, as PostgreSQL wants.
    fn bind<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
        value: &'q Value,
        ty: ColumnType,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        match value {
            Value::Null => match ty {
                ColumnType::Int => query.bind(None::<i64>),
                ColumnType::Float => query.bind(None::<f64>),
                ColumnType::Boolean => query.bind(None::<bool>),
                ColumnType::Bytes => query.bind(None::<Vec<u8>>),
                ColumnType::Text | ColumnType::Timestamp => query.bind(None::<String>),
            },
            Value::Int(v) => query.bind(*v),
            Value::Float(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_str()),
            Value::Bytes(v) => query.bind(v.as_slice()),
            Value::Boolean(v) => query.bind(*v),
            Value::Timestamp(ms) => {
                query.bind(crate::time::format_millis(*ms, self.utc_offset_secs))
            }
        }
    }

    /// `apiary_offsets.closed_until` for a lane at `watermark`: the latest
    /// window end it has closed (`end - 1 <= watermark`), in the sink's
    /// time zone, so a query compares it with window ends as written.
    fn closed_until(&self, watermark: Option<i64>) -> Option<String> {
        let storable = crate::time::STORABLE_MILLIS;
        watermark.map(|w| {
            let until = w.saturating_add(1).clamp(storable.start, storable.end - 1);
            crate::time::format_millis(until, self.utc_offset_secs)
        })
    }

    /// Where a lane resumes, if it has a checkpoint: its next offset and
    /// its watermark, if it had one. Transient failures are retried as a
    /// checkpoint's are: a lane opening while the others' commits hold
    /// every connection waits for one.
    pub async fn load_position(
        &self,
        lane: &LaneKey,
    ) -> anyhow::Result<Option<(i64, Option<i64>)>> {
        self.retrying(lane, "reading a checkpoint", |_| {
            self.try_load_position(lane)
        })
        .await
    }

    async fn try_load_position(
        &self,
        lane: &LaneKey,
    ) -> anyhow::Result<Option<(i64, Option<i64>)>> {
        let row = sqlx::query(&self.own.select_position)
            .bind(&lane.consumer)
            .bind(&lane.stream)
            .bind(lane.partition)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("cannot read the checkpoint of lane {lane}"))?;
        let position = row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()?;
        Ok(position)
    }

    /// The stored state and timers of `plugin` in a lane, retried like
    /// [`SqlStore::load_position`].
    pub async fn load_state(&self, lane: &LaneKey, plugin: &str) -> anyhow::Result<StoredState> {
        self.retrying(lane, "reading state", |_| self.try_load_state(lane, plugin))
            .await
    }

    async fn try_load_state(&self, lane: &LaneKey, plugin: &str) -> anyhow::Result<StoredState> {
        let failed = || format!("cannot read the state of `{plugin}` in lane {lane}");
        let rows = sqlx::query(&self.own.select_state)
            .bind(&lane.consumer)
            .bind(&lane.stream)
            .bind(lane.partition)
            .bind(plugin)
            .fetch_all(&self.pool)
            .await
            .with_context(failed)?;
        let values: HashMap<String, StoredValue> = rows
            .iter()
            .map(|r| {
                let value = StoredValue {
                    value: r.try_get(1)?,
                    expires: r.try_get(2)?,
                };
                Ok((r.try_get(0)?, value))
            })
            .collect::<Result<_, sqlx::Error>>()
            .with_context(failed)?;
        let rows = sqlx::query(&self.own.select_timers)
            .bind(&lane.consumer)
            .bind(&lane.stream)
            .bind(lane.partition)
            .bind(plugin)
            .fetch_all(&self.pool)
            .await
            .with_context(failed)?;
        let timers = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .with_context(failed)?;
        Ok(StoredState { values, timers })
    }

    /// Writes a checkpoint in one transaction: rows, state, dead letters and
    /// the lane's next offset all become durable together, or none does.
    /// Transient failures (lost connection, deadlock, lock wait timeout, a
    /// restarting server) are retried with exponential backoff; the whole
    /// transaction is replayed, so nothing is lost or doubled.
    pub async fn commit(&self, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        let _turn = self
            .commit_turns
            .acquire()
            .await
            .context("the checkpoint store is closed")?;
        self.retrying(&checkpoint.lane, "checkpoint", |attempt| {
            self.try_commit(checkpoint, attempt > 0)
        })
        .await
    }

    /// Runs `attempt` (given the number of attempts before it) until it
    /// succeeds, fails for good, or has failed for a transient reason
    /// ([`is_transient`]) `max_retries` times, waiting `retry_backoff`,
    /// doubled each time, in between.
    async fn retrying<T, F>(
        &self,
        lane: &LaneKey,
        what: &str,
        mut attempt: impl FnMut(u32) -> F,
    ) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = anyhow::Result<T>>,
    {
        let mut failed = 0;
        loop {
            match attempt(failed).await {
                Ok(value) => return Ok(value),
                Err(e) if failed < self.max_retries && is_transient(self.dialect, &e) => {
                    let delay = self.retry_backoff * 2u32.pow(failed);
                    failed += 1;
                    tracing::warn!(
                        %lane,
                        "{what} failed ({e:#}); retry {failed}/{} in {delay:?}",
                        self.max_retries
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the lane's next offset if the store still holds the one the
    /// lane last stored (none, for a lane without a checkpoint); false if
    /// it holds another.
    async fn move_offset(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        checkpoint: &Checkpoint,
    ) -> anyhow::Result<bool> {
        let lane = &checkpoint.lane;
        let failed = || format!("cannot record the offset of lane {lane}");
        let Some(previous) = checkpoint.previous_offset else {
            let inserted = sqlx::query(&self.own.insert_offset)
                .bind(lane.consumer.as_str())
                .bind(lane.stream.as_str())
                .bind(lane.partition)
                .bind(checkpoint.next_offset)
                .bind(checkpoint.watermark)
                .bind(self.closed_until(checkpoint.watermark))
                .execute(&mut **tx)
                .await;
            return match inserted {
                Ok(_) => Ok(true),
                // Another process inserted it first.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(e).with_context(failed),
            };
        };
        let updated = sqlx::query(&self.own.update_offset)
            .bind(checkpoint.next_offset)
            .bind(checkpoint.watermark)
            .bind(self.closed_until(checkpoint.watermark))
            .bind(lane.consumer.as_str())
            .bind(lane.stream.as_str())
            .bind(lane.partition)
            .bind(previous)
            .execute(&mut **tx)
            .await
            .with_context(failed)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn try_commit(&self, checkpoint: &Checkpoint, retried: bool) -> anyhow::Result<()> {
        let lane = &checkpoint.lane;
        // Outside the transaction: DDL commits implicitly in MySQL.
        for (table, name, _) in &checkpoint.rows {
            self.ensure_table(table, name).await?;
        }
        let mut tx = self.pool.begin().await.context("cannot begin checkpoint")?;
        // First, so the lane's offset row stays locked until the commit.
        if !self.move_offset(&mut tx, checkpoint).await? {
            tx.rollback()
                .await
                .context("cannot roll a checkpoint back")?;
            let stored = self.try_load_position(lane).await?.map(|p| p.0);
            if retried && stored == Some(checkpoint.next_offset) {
                // The attempt that failed had committed after all.
                return Ok(());
            }
            return Err(Fenced {
                lane: lane.clone(),
                expected: checkpoint.previous_offset,
                stored,
            }
            .into());
        }
        for (table, name, rows) in &checkpoint.rows {
            if let Some(sql) = dialect::array_upsert_sql(self.dialect, table, name) {
                for chunk in rows.chunks(MAX_ROWS_PER_ARRAY_STATEMENT) {
                    let mut query = sqlx::query(&sql);
                    for column in 0..table.columns.len() {
                        let array = dialect::array_literal(chunk, column, self.utc_offset_secs);
                        query = query.bind(array);
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("cannot write rows to table `{name}`"))?;
                }
                continue;
            }
            let per_statement =
                (self.dialect.max_params() / table.columns.len()).clamp(1, MAX_ROWS_PER_STATEMENT);
            for chunk in statements(rows, per_statement, self.statement_bytes) {
                let sql = dialect::upsert_sql(self.dialect, table, name, chunk.len());
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    for (value, column) in row.iter().zip(&table.columns) {
                        query = self.bind(query, value, column.ty);
                    }
                }
                query
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("cannot write rows to table `{name}`"))?;
            }
        }
        let own = &self.own;
        for (plugin, _, timers) in &checkpoint.state {
            for (time, key, set) in timers {
                let sql = if *set {
                    &own.insert_timer
                } else {
                    &own.delete_timer
                };
                sqlx::query(sql)
                    .bind(lane.consumer.as_str())
                    .bind(lane.stream.as_str())
                    .bind(lane.partition)
                    .bind(plugin.as_str())
                    .bind(key.as_str())
                    .bind(*time)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("cannot write the timers of `{plugin}`"))?;
            }
        }
        for (plugin, changes, _) in &checkpoint.state {
            for (key, value) in changes {
                let query = match value {
                    Some(_) => sqlx::query(&own.upsert_state),
                    None => sqlx::query(&own.delete_state),
                };
                let query = query
                    .bind(lane.consumer.as_str())
                    .bind(lane.stream.as_str())
                    .bind(lane.partition)
                    .bind(plugin.as_str())
                    .bind(key.as_str());
                let query = match value {
                    Some(stored) => query.bind(stored.value.as_slice()).bind(stored.expires),
                    None => query,
                };
                query
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("cannot write the state of `{plugin}`"))?;
            }
        }
        for dead in &checkpoint.dead_letters {
            sqlx::query(&own.insert_dead_letter)
                .bind(lane.consumer.as_str())
                .bind(dead.stream.as_str())
                .bind(dead.partition)
                .bind(dead.offset)
                .bind(dead.key.as_deref())
                .bind(dead.value.as_slice())
                .bind(dead.plugin.as_str())
                .bind(dead.reason.as_str())
                .execute(&mut *tx)
                .await
                .context("cannot write a dead letter")?;
        }
        tx.commit().await.context("cannot commit checkpoint")?;
        Ok(())
    }
}

/// The name of a configured index, once its table and columns are known
/// to be declared outputs (so only checked identifiers reach the SQL).
pub fn check_index(
    index: &config::SqlIndex,
    tables: &[Arc<TableSchema>],
) -> anyhow::Result<String> {
    let Some(table) = tables.iter().find(|t| t.table == index.table) else {
        anyhow::bail!(
            "[[sink.sql.index]]: no plugin writes table `{}`",
            index.table
        );
    };
    if index.columns.is_empty() {
        anyhow::bail!("[[sink.sql.index]] on `{}` names no column", index.table);
    }
    for column in &index.columns {
        if table.column_index(column).is_none() {
            anyhow::bail!(
                "[[sink.sql.index]]: table `{}` has no column `{column}`",
                index.table
            );
        }
    }
    Ok(format!(
        "apiary_idx_{}_{}",
        index.table,
        index.columns.join("_")
    ))
}

/// The statements that read and write Apiary's own tables, in a dialect,
/// numbered once when the store opens.
struct OwnStatements {
    select_position: String,
    select_state: String,
    select_timers: String,
    upsert_state: String,
    delete_state: String,
    insert_timer: String,
    delete_timer: String,
    insert_dead_letter: String,
    insert_offset: String,
    /// Moves a lane's offset on from the one its owner last stored.
    update_offset: String,
}

impl OwnStatements {
    fn new(dialect: &dyn Dialect) -> Self {
        let upsert = |table: &str, columns: &[&str], key: &[&str], replace: &[&str]| {
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                vec!["?"; columns.len()].join(", ")
            );
            let updates: Vec<String> = replace
                .iter()
                .map(|c| format!("{c} = {}", dialect.incoming(c)))
                .collect();
            dialect.upsert(insert, &key.join(", "), &updates)
        };
        let lane = ["consumer", "stream", "part"];
        let sql = |text: String| dialect.numbered(&text).into_owned();
        let time = dialect.value(ColumnType::Timestamp);
        Self {
            select_position: sql("SELECT next_offset, watermark FROM apiary_offsets \
                 WHERE consumer = ? AND stream = ? AND part = ?"
                .into()),
            select_state: sql("SELECT skey, value, expires FROM apiary_state \
                 WHERE consumer = ? AND stream = ? AND part = ? AND plugin = ?"
                .into()),
            select_timers: sql("SELECT ttime, tkey FROM apiary_timers \
                 WHERE consumer = ? AND stream = ? AND part = ? AND plugin = ?"
                .into()),
            upsert_state: sql(upsert(
                "apiary_state",
                &[&lane[..], &["plugin", "skey", "value", "expires"]].concat(),
                &[&lane[..], &["plugin", "skey"]].concat(),
                &["value", "expires"],
            )),
            delete_state: sql(
                "DELETE FROM apiary_state WHERE consumer = ? AND stream = ? \
                 AND part = ? AND plugin = ? AND skey = ?"
                    .into(),
            ),
            insert_timer: sql(upsert(
                "apiary_timers",
                &[&lane[..], &["plugin", "tkey", "ttime"]].concat(),
                &[&lane[..], &["plugin", "ttime", "tkey"]].concat(),
                &[],
            )),
            delete_timer: sql(
                "DELETE FROM apiary_timers WHERE consumer = ? AND stream = ? \
                 AND part = ? AND plugin = ? AND tkey = ? AND ttime = ?"
                    .into(),
            ),
            insert_dead_letter: sql("INSERT INTO apiary_dead_letter (consumer, stream, part, \
                 record_offset, record_key, record_value, plugin, reason) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                .into()),
            insert_offset: sql(format!(
                "INSERT INTO apiary_offsets \
                 (consumer, stream, part, next_offset, watermark, closed_until) \
                 VALUES (?, ?, ?, ?, ?, {time})"
            )),
            update_offset: sql(format!(
                "UPDATE apiary_offsets SET next_offset = ?, watermark = ?, closed_until = {time} \
                 WHERE consumer = ? AND stream = ? AND part = ? AND next_offset = ?"
            )),
        }
    }
}

/// Whether an error is worth retrying: the connection or the server went
/// away, or the transaction lost a lock race. Bad credentials, missing
/// tables and wrong types are not.
fn is_transient(dialect: &dyn Dialect, error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
            Some(sqlx::Error::Database(db)) => dialect.is_transient(&db.code().unwrap_or_default()),
            _ => false,
        })
}

/// A text column that MariaDB may report as binary (`information_schema`).
fn text_at(row: &AnyRow, index: usize) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(index).or_else(|_| {
        row.try_get::<Vec<u8>, _>(index)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    })
}

/// What the database says about one column of an existing table.
#[derive(Debug)]
struct ExistingColumn {
    name: String,
    ty: String,
    /// 1-based position in the primary key, 0 when not in it.
    key_position: i64,
    not_null: bool,
}

fn check_existing(
    table: &TableSchema,
    name: &str,
    existing: &[ExistingColumn],
) -> Result<(), SchemaMismatch> {
    let mismatch = |message: String| SchemaMismatch {
        table: name.to_owned(),
        output: table.output.clone(),
        plugin: table.plugin.clone(),
        message,
    };
    for column in &table.columns {
        let Some(found) = existing
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&column.name))
        else {
            return Err(mismatch(format!("column `{}` is missing", column.name)));
        };
        if !type_fits(column.ty, &found.ty) {
            return Err(mismatch(format!(
                "column `{}` has type {} in the database, but the plugin declares {}",
                column.name, found.ty, column.ty
            )));
        }
    }
    let mut stored_key: Vec<&ExistingColumn> =
        existing.iter().filter(|e| e.key_position > 0).collect();
    stored_key.sort_by_key(|e| e.key_position);
    let stored: Vec<&str> = stored_key.iter().map(|e| e.name.as_str()).collect();
    let declared: Vec<&str> = table
        .key
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    if !stored
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .eq(declared.iter().map(|s| s.to_ascii_lowercase()))
    {
        return Err(mismatch(format!(
            "primary key is ({}) in the database, but the plugin declares ({})",
            stored.join(", "),
            declared.join(", ")
        )));
    }
    for extra in existing
        .iter()
        .filter(|e| table.column_index(&e.name).is_none())
    {
        if extra.not_null {
            return Err(mismatch(format!(
                "column `{}` is NOT NULL in the database but the plugin does not write it",
                extra.name
            )));
        }
    }
    Ok(())
}

/// Whether a stored column type can hold the declared one.
fn type_fits(declared: ColumnType, stored: &str) -> bool {
    let has = |s: &str| stored.contains(s);
    match declared {
        ColumnType::Int => has("INT"),
        ColumnType::Boolean => has("INT") || has("BOOL"),
        ColumnType::Float => has("REAL") || has("DOUB") || has("FLOA") || has("DECIMAL"),
        ColumnType::Text => has("TEXT") || has("CHAR") || has("CLOB"),
        ColumnType::Bytes => has("BLOB") || has("BINARY") || has("BYTEA"),
        ColumnType::Timestamp => has("DATE") || has("TIME") || has("TEXT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_by_rows_and_by_bytes() {
        let row = |bytes: usize| vec![Value::Int(1), Value::Text("x".repeat(bytes))];
        let rows: Vec<Vec<Value>> = [100, 100, 100, 5_000, 100].map(row).to_vec();
        let sizes = |max_rows, max_bytes| {
            statements(&rows, max_rows, max_bytes)
                .map(<[_]>::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(1000, None), [5]);
        assert_eq!(sizes(2, None), [2, 2, 1]);
        // 130 bytes a small row: two fit in 300 bytes; the big row goes
        // alone, as no statement can be smaller.
        assert_eq!(sizes(1000, Some(300)), [2, 1, 1, 1]);
        assert_eq!(sizes(1000, Some(100_000)), [5]);
        assert_eq!(sizes(1000, Some(0)), [1, 1, 1, 1, 1]);
    }
}
