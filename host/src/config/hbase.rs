//! `[hbase]`: the HBase REST gateway, and the outputs routed to it.

use std::time::Duration;

use serde::Deserialize;

use super::{default_family, default_max_retries};

/// `[hbase]`: an HBase REST gateway (`hbase rest start`), used by lookup
/// tables with `hbase-table` and by the outputs under `[hbase.output]`.
/// Flush settings follow Flink's HBase sink (`sink.buffer-flush.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HBaseSection {
    /// `http://host:8080`.
    pub url: String,
    /// Retries of a request the gateway answered 503 or not at all.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_hbase_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Time limit of one request.
    #[serde(default = "default_hbase_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Rows per put request.
    #[serde(default = "default_hbase_max_rows")]
    pub max_rows: usize,
    /// Bytes (about) per put request.
    #[serde(default = "default_hbase_max_bytes")]
    pub max_bytes: usize,
    /// Buffered rows are written at least this often.
    #[serde(default = "default_hbase_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Outputs written to HBase instead of the SQL sink, by output name.
    #[serde(default)]
    pub output: std::collections::BTreeMap<String, HBaseOutput>,
}

/// `[hbase.output.<name>]`: a plugin output routed to an HBase table. The
/// row key is made of the primary-key columns; every other column is a
/// cell `family:column`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HBaseOutput {
    /// The table; defaults to the output's table name.
    pub table: Option<String>,
    /// The column family.
    #[serde(default = "default_family")]
    pub family: String,
    /// How values become bytes.
    #[serde(default)]
    pub encoding: crate::hbase::codec::Encoding,
}

fn default_hbase_backoff() -> Duration {
    Duration::from_millis(200)
}

fn default_hbase_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_hbase_max_rows() -> usize {
    1000
}

fn default_hbase_max_bytes() -> usize {
    2 << 20
}

fn default_hbase_interval() -> Duration {
    Duration::from_secs(1)
}
