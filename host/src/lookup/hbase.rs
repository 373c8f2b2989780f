//! Dimension tables in HBase, read through the REST gateway with a partial
//! cache in front (Flink's `lookup.partial-cache.*`): a batch's keys are
//! answered from the cache, and its misses with one multi-get.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

use super::{Answer, DimensionSource, SharedRow, pick};
use crate::config::{HBaseSection, LookupTable};
use crate::hbase::codec::{self, CellType, Encoding};
use crate::hbase::{Client, RowCells};
use crate::model::wit::types::Value;

/// Counters of a lookup cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Keys answered from the cache.
    pub hits: u64,
    /// Keys fetched from HBase.
    pub misses: u64,
    /// Multi-get requests sent.
    pub requests: u64,
}

impl CacheStats {
    /// Hits over all keys asked, 0 when none were.
    pub fn hit_rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 {
            0.0
        } else {
            self.hits as f64 / all as f64
        }
    }
}

/// An HBase table and its cache. `None` in the cache is a key known to
/// have no row.
#[derive(Debug)]
pub struct HBaseTable {
    client: Client,
    table: String,
    family: String,
    encoding: Encoding,
    key_type: CellType,
    types: std::collections::BTreeMap<String, CellType>,
    cache: Option<moka::sync::Cache<String, Option<SharedRow>>>,
    cache_missing: bool,
    hits: AtomicU64,
    misses: AtomicU64,
    requests: AtomicU64,
}

impl HBaseTable {
    /// Connects to the table and checks it has the configured family.
    pub fn open(config: &LookupTable, gateway: &HBaseSection) -> anyhow::Result<Self> {
        let table = config.hbase_table.clone().context("no `hbase-table`")?;
        let client = Client::new(
            &gateway.url,
            gateway.timeout,
            gateway.max_retries,
            gateway.retry_backoff,
        )?;
        let families = block_on(client.families(&table))?
            .with_context(|| format!("HBase table `{table}` does not exist at {}", gateway.url))?;
        anyhow::ensure!(
            families.contains(&config.family),
            "HBase table `{table}` has no column family `{}` (it has: {})",
            config.family,
            families.join(", ")
        );
        let cache = (config.cache.max_rows > 0).then(|| {
            let mut builder = moka::sync::Cache::builder().max_capacity(config.cache.max_rows);
            if let Some(ttl) = config.cache.expire_after_write {
                builder = builder.time_to_live(ttl);
            }
            if let Some(idle) = config.cache.expire_after_access {
                builder = builder.time_to_idle(idle);
            }
            builder.build()
        });
        Ok(Self {
            client,
            table,
            family: config.family.clone(),
            encoding: config.encoding,
            key_type: config.key_type,
            types: config.types.clone(),
            cache,
            cache_missing: config.cache.cache_missing_key,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// A fetched row's cells of our family, decoded by their declared types.
    fn decode_row(&self, cells: RowCells) -> Result<HashMap<String, Value>, String> {
        let prefix = format!("{}:", self.family);
        let mut row = HashMap::new();
        for (column, bytes) in cells {
            let Some(name) = column.strip_prefix(&prefix) else {
                continue;
            };
            let kind = self.types.get(name).copied().unwrap_or_default();
            let value = codec::decode(&bytes, kind, self.encoding)
                .map_err(|e| format!("HBase `{}` column `{column}`: {e}", self.table))?;
            row.insert(name.to_owned(), value);
        }
        Ok(row)
    }

    /// Fetches `keys` (distinct, not cached) in one multi-get.
    fn fetch(&self, keys: &[&String]) -> Result<HashMap<String, Option<SharedRow>>, String> {
        let mut by_bytes = HashMap::with_capacity(keys.len());
        for key in keys {
            let bytes = codec::encode_key(key, self.key_type, self.encoding)
                .map_err(|e| format!("HBase `{}`: {e}", self.table))?;
            by_bytes.insert(bytes, (*key).clone());
        }
        let rows: Vec<Vec<u8>> = by_bytes.keys().cloned().collect();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let found = block_on(self.client.multi_get(
            &self.table,
            &rows,
            std::slice::from_ref(&self.family),
        ))
        .map_err(|e| e.to_string())?;
        let mut fetched: HashMap<String, Option<SharedRow>> =
            by_bytes.values().map(|k| (k.clone(), None)).collect();
        for (bytes, cells) in found {
            if let Some(key) = by_bytes.get(&bytes) {
                fetched.insert(key.clone(), Some(Arc::new(self.decode_row(cells)?)));
            }
        }
        Ok(fetched)
    }
}

impl DimensionSource for HBaseTable {
    fn get_many(&self, keys: &[String], columns: &[String]) -> Result<Vec<Answer>, String> {
        let mut cached: HashMap<&String, Option<SharedRow>> = HashMap::new();
        let mut missing: Vec<&String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            match self.cache.as_ref().and_then(|c| c.get(key)) {
                Some(row) => {
                    cached.insert(key, row);
                }
                None => missing.push(key),
            }
        }
        self.hits
            .fetch_add((keys.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let fetched = if missing.is_empty() {
            HashMap::new()
        } else {
            self.fetch(&missing)?
        };
        if let Some(cache) = &self.cache {
            for (key, row) in &fetched {
                if row.is_some() || self.cache_missing {
                    cache.insert(key.clone(), row.clone());
                }
            }
        }
        Ok(keys
            .iter()
            .map(|k| {
                let row = cached
                    .get(k)
                    .or_else(|| fetched.get(k))
                    .and_then(Option::as_ref);
                row.map(|row| pick(row, columns))
            })
            .collect())
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        })
    }
}

/// Runs `future` to completion from synchronous code: plugin imports are
/// called synchronously on a runtime worker (which may block in place), and
/// from tools that run no runtime at all.
fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        Ok(_) => std::thread::scope(|s| s.spawn(|| own_runtime().block_on(future)).join())
            .expect("lookup thread panicked"),
        Err(_) => own_runtime().block_on(future),
    }
}

fn own_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}
