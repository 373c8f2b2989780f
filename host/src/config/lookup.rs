//! `[lookup.<table>]`: dimension tables served to plugins, from CSV files
//! or HBase, and their caches.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{default_family, default_true};

/// `[lookup.<table>.cache]`: the partial cache of an HBase lookup table,
/// named after Flink's `lookup.partial-cache.*` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LookupCache {
    /// Rows kept at most; 0 turns the cache off.
    #[serde(default = "default_cache_rows")]
    pub max_rows: u64,
    /// A cached row is fetched again this long after it was fetched.
    #[serde(default, with = "humantime_serde")]
    pub expire_after_write: Option<Duration>,
    /// A cached row not read for this long is dropped.
    #[serde(default, with = "humantime_serde")]
    pub expire_after_access: Option<Duration>,
    /// Whether a key with no row is cached too (as missing).
    #[serde(default = "default_true")]
    pub cache_missing_key: bool,
}

impl Default for LookupCache {
    fn default() -> Self {
        Self {
            max_rows: default_cache_rows(),
            expire_after_write: None,
            expire_after_access: None,
            cache_missing_key: true,
        }
    }
}

/// `[lookup.<table>]`: a dimension table, either a local CSV file with a
/// header line (`path`; the `key` column identifies a row) or an HBase
/// table read through `[hbase]` (`hbase-table`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LookupTable {
    /// The CSV file.
    pub path: Option<PathBuf>,
    /// CSV: the column holding the row key; defaults to the first column.
    pub key: Option<String>,
    /// HBase: the table.
    pub hbase_table: Option<String>,
    /// HBase: the column family the columns are read from.
    #[serde(default = "default_family")]
    pub family: String,
    /// HBase: how the cells were written.
    #[serde(default)]
    pub encoding: crate::hbase::codec::Encoding,
    /// HBase: what the row key holds; plugins pass keys as text.
    #[serde(default)]
    pub key_type: crate::hbase::codec::CellType,
    /// HBase: what each column holds (default `string`).
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, crate::hbase::codec::CellType>,
    /// HBase: the partial cache.
    #[serde(default)]
    pub cache: LookupCache,
}

impl LookupTable {
    /// A table read from the CSV file `path`, keyed by its first column.
    pub fn csv(path: PathBuf) -> Self {
        Self {
            path: Some(path),
            key: None,
            hbase_table: None,
            family: default_family(),
            encoding: Default::default(),
            key_type: Default::default(),
            types: Default::default(),
            cache: Default::default(),
        }
    }
}

fn default_cache_rows() -> u64 {
    10_000
}
