//! `[sink.sql]`: the database that holds rows, state, dead letters and
//! offsets.

use std::time::Duration;

use serde::Deserialize;

use super::default_max_retries;

/// `[sink]`: the pipeline's output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkSection {
    /// The SQL database rows are merged into.
    pub sql: SqlSink,
}

/// `[sink.sql]`: a SQL database (SQLite now; MySQL through the same keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlSink {
    /// `sqlite://path/to/file.db` (relative to the config file).
    pub url: String,
    /// Checkpoint once this many distinct rows are buffered in a lane.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Checkpoint at least this often while records flow.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Checkpoint once a lane buffers about this many bytes of row data.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Retries of a checkpoint that failed for a transient reason.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Offset from UTC, `+08:00` style, in which timestamp columns are written.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Secondary indexes on output tables, for the queries that read them
    /// (`ORDER BY total DESC LIMIT 10` on a table of millions of users).
    #[serde(default)]
    pub index: Vec<SqlIndex>,
}

/// `[[sink.sql.index]]`: a secondary index the sink creates if missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlIndex {
    /// The output table.
    pub table: String,
    /// Its columns, in index order.
    pub columns: Vec<String>,
}

fn default_max_rows() -> usize {
    5000
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_max_bytes() -> usize {
    16 << 20
}

fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
}
