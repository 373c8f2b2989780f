//! Dimension lookups served to plugins through the `lookup` import.
//!
//! Each configured table has a source: a local CSV file ([`csv`], the
//! embedded default) or an HBase table behind the REST gateway ([`hbase`],
//! with a partial cache). Plugins ask for many keys at once, so an HBase
//! table answers a whole event batch with one multi-get for its cache
//! misses.

mod csv;
mod hbase;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{HBaseSection, LookupTable};
use crate::model::wit::types::Value;

pub use hbase::CacheStats;

/// One key's answer: the requested columns in order, or `None` (no row).
pub type Answer = Option<Vec<Value>>;

/// A dimension table's backend.
trait DimensionSource: Send + Sync + std::fmt::Debug {
    /// For each key, the `columns` of its row (`null` where the row lacks
    /// one), or `None`.
    fn get_many(&self, keys: &[String], columns: &[String]) -> Result<Vec<Answer>, String>;

    /// Cache counters, for sources that cache.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}

/// Every dimension table of a pipeline.
#[derive(Debug, Default)]
pub struct Lookups {
    tables: HashMap<String, Box<dyn DimensionSource>>,
}

impl Lookups {
    /// Opens the configured tables; HBase tables are checked to exist with
    /// their column family.
    pub fn load(
        config: &BTreeMap<String, LookupTable>,
        hbase: Option<&HBaseSection>,
    ) -> anyhow::Result<Self> {
        let mut tables: HashMap<String, Box<dyn DimensionSource>> = HashMap::new();
        for (name, table) in config {
            let source: Box<dyn DimensionSource> = match (&table.path, &table.hbase_table, hbase) {
                (Some(path), _, _) => Box::new(
                    csv::CsvTable::load(path, table.key.as_deref())
                        .with_context(|| format!("lookup table `{name}` ({})", path.display()))?,
                ),
                (None, Some(_), Some(gateway)) => Box::new(
                    hbase::HBaseTable::open(table, gateway)
                        .with_context(|| format!("lookup table `{name}`"))?,
                ),
                _ => anyhow::bail!("lookup table `{name}` has no source (`path` or `hbase-table`)"),
            };
            tables.insert(name.clone(), source);
        }
        Ok(Self { tables })
    }

    /// Answers the `lookup.get-many` import: for each key, the requested
    /// columns of its row (`null` for a column the row lacks), or `None`.
    pub fn get_many(
        &self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Answer>, String> {
        let source = self.tables.get(table).ok_or_else(|| {
            let mut known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            known.sort();
            format!(
                "unknown lookup table `{table}` (configured: [{}])",
                known.join(", ")
            )
        })?;
        source.get_many(keys, columns)
    }

    /// Cache counters of the tables that cache, by table name.
    pub fn cache_stats(&self) -> BTreeMap<String, CacheStats> {
        self.tables
            .iter()
            .filter_map(|(name, t)| t.cache_stats().map(|s| (name.clone(), s)))
            .collect()
    }
}

/// Picks `columns` out of a row given as column → value.
fn pick(row: &HashMap<String, Value>, columns: &[String]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Shares one row among many answers without copying it per key.
type SharedRow = Arc<HashMap<String, Value>>;
