//! Outputs written to HBase tables through the REST gateway.
//!
//! A checkpoint's rows for these outputs are put before the SQL transaction
//! that records the lane's offset commits. Puts are idempotent (a row key
//! and its cells, replaced), so when a crash makes a lane replay records
//! since its last checkpoint, the same puts land again and the table
//! converges. That is why only `replace` columns may be routed here: an
//! `add` replayed would count twice, and `max`/`min` would need a
//! read-modify-write the gateway cannot do atomically.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Output, Pending};
use crate::config::{HBaseOutput, HBaseSection, PipelineConfig};
use crate::hbase::codec::{self, Encoding};
use crate::hbase::{Cell, CellSet, Client, Row};
use crate::model::wit::types::{MergeMode, Value};
use crate::model::{TableRows, TableSchema};

/// The HBase outputs of a pipeline (`[hbase.output.<output>]`).
#[derive(Debug)]
pub struct HBase {
    client: Client,
    outputs: BTreeMap<String, HBaseOutput>,
    max_rows: usize,
    max_bytes: usize,
    interval: Duration,
    ready: Mutex<HashSet<String>>,
}

impl Output for HBase {
    fn routes(&self, output: &str) -> bool {
        self.outputs.contains_key(output)
    }

    fn check(&self, tables: &[Arc<TableSchema>]) -> anyhow::Result<()> {
        Self::check_routes(&self.outputs, tables).map_err(anyhow::Error::msg)
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn write<'a>(&'a self, pending: Pending<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.put(pending.rows, pending.utc_offset_secs))
    }
}

impl HBase {
    /// The outputs `config` routes to HBase, if any.
    pub fn from_config(config: &PipelineConfig) -> anyhow::Result<Option<Self>> {
        match config.hbase.as_ref().filter(|h| !h.output.is_empty()) {
            Some(section) => Ok(Some(Self::new(section)?)),
            None => Ok(None),
        }
    }

    /// The output for `config`'s routes.
    pub fn new(config: &HBaseSection) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::new(
                &config.url,
                config.timeout,
                config.max_retries,
                config.retry_backoff,
            )?,
            outputs: config.output.clone(),
            max_rows: config.max_rows,
            max_bytes: config.max_bytes,
            interval: config.interval,
            ready: Mutex::new(HashSet::new()),
        })
    }

    /// Checks that every routed output exists among `tables` and merges by
    /// `replace` only.
    pub fn check_routes(
        outputs: &BTreeMap<String, HBaseOutput>,
        tables: &[Arc<TableSchema>],
    ) -> Result<(), String> {
        for name in outputs.keys() {
            let Some(table) = tables.iter().find(|t| &t.output == name) else {
                let mut known: Vec<&str> = tables.iter().map(|t| t.output.as_str()).collect();
                known.sort();
                return Err(format!(
                    "`hbase.output.{name}` names no plugin output (outputs: {})",
                    known.join(", ")
                ));
            };
            if let Some(c) = table
                .columns
                .iter()
                .find(|c| !c.key && c.merge != MergeMode::Replace)
            {
                return Err(format!(
                    "output `{name}` of plugin `{}` cannot go to HBase: column `{}` merges with \
                     `{}`, and HBase outputs take `replace` columns only (puts are replayed \
                     after a crash, so an `add` would count twice)",
                    table.plugin, c.name, c.merge
                ));
            }
        }
        Ok(())
    }

    /// Puts `rows`, in requests of at most `max-rows` rows and about
    /// `max-bytes`, creating tables on first use. `offset_secs` places rows
    /// of time-partitioned outputs.
    pub async fn put(&self, rows: &[TableRows], offset_secs: i32) -> anyhow::Result<()> {
        for (schema, _, table_rows) in rows {
            let output = &self.outputs[&schema.output];
            let mut by_table: BTreeMap<String, CellSet> = BTreeMap::new();
            for row in table_rows {
                let table = output
                    .table
                    .clone()
                    .unwrap_or_else(|| schema.table_for(row, offset_secs));
                by_table.entry(table).or_default().rows.push(to_row(
                    schema,
                    row,
                    &output.family,
                    output.encoding,
                ));
            }
            for (table, set) in by_table {
                self.ensure(&table, &output.family).await?;
                for chunk in self.chunks(set) {
                    self.client.put(&table, &chunk).await?;
                }
            }
        }
        Ok(())
    }

    async fn ensure(&self, table: &str, family: &str) -> anyhow::Result<()> {
        let key = format!("{table}\u{0}{family}");
        if self.ready.lock().unwrap().contains(&key) {
            return Ok(());
        }
        self.client.ensure_table(table, &[family]).await?;
        self.ready.lock().unwrap().insert(key);
        Ok(())
    }

    /// Splits a CellSet into requests within the row and byte limits.
    fn chunks(&self, set: CellSet) -> Vec<CellSet> {
        let mut chunks = vec![CellSet::default()];
        let mut bytes = 0;
        for row in set.rows {
            let size = row.encoded_len();
            let last = chunks.last_mut().expect("one chunk");
            if !last.rows.is_empty()
                && (last.rows.len() >= self.max_rows || bytes + size > self.max_bytes)
            {
                chunks.push(CellSet::default());
                bytes = 0;
            }
            bytes += size;
            chunks.last_mut().expect("one chunk").rows.push(row);
        }
        chunks.retain(|c| !c.rows.is_empty());
        chunks
    }
}

/// A row as HBase cells: the key from the primary-key columns (joined by
/// `|` when there are several), a cell `family:column` for every other
/// non-null column.
fn to_row(schema: &TableSchema, row: &[Value], family: &str, encoding: Encoding) -> Row {
    let mut key = Vec::new();
    for (n, &i) in schema.key.iter().enumerate() {
        if n > 0 {
            key.push(b'|');
        }
        key.extend(codec::encode(&row[i], encoding).unwrap_or_default());
    }
    let cells = schema
        .columns
        .iter()
        .zip(row)
        .filter(|(c, _)| !c.key)
        .filter_map(|(c, v)| {
            codec::encode(v, encoding).map(|value| Cell {
                column: format!("{family}:{}", c.name).into_bytes(),
                timestamp: None,
                value,
            })
        })
        .collect();
    Row { key, cells }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wit::types::{Column, ColumnType, OutputSchema};

    fn schema() -> TableSchema {
        let column = |name: &str, type_, merge| Column {
            name: name.into(),
            type_,
            merge,
            nullable: true,
        };
        TableSchema::from_output(
            "p",
            &OutputSchema {
                name: "o".into(),
                table: None,
                columns: vec![
                    column("room", ColumnType::Int, MergeMode::Replace),
                    column("day", ColumnType::Text, MergeMode::Replace),
                    column("viewers", ColumnType::Int, MergeMode::Replace),
                    column("note", ColumnType::Text, MergeMode::Replace),
                ],
                primary_key: vec!["room".into(), "day".into()],
            },
        )
        .unwrap()
    }

    #[test]
    fn a_row_key_joins_its_key_columns_and_nulls_are_left_out() {
        let row = [
            Value::Int(7),
            Value::Text("2021-08-16".into()),
            Value::Int(300),
            Value::Null,
        ];
        let r = to_row(&schema(), &row, "cf", Encoding::String);
        assert_eq!(r.key, b"7|2021-08-16");
        assert_eq!(r.cells.len(), 1);
        assert_eq!(r.cells[0].column, b"cf:viewers");
        assert_eq!(r.cells[0].value, b"300");
        let r = to_row(&schema(), &row, "cf", Encoding::Binary);
        assert_eq!(&r.key[..8], 7i64.to_be_bytes());
        assert_eq!(r.cells[0].value, 300i64.to_be_bytes());
    }

    #[test]
    fn puts_are_split_by_rows_and_bytes() {
        let config: HBaseSection =
            toml::from_str("url = \"http://127.0.0.1:1\"\nmax-rows = 3\nmax-bytes = 400").unwrap();
        let sink = HBase::new(&config).unwrap();
        let row = |i: u8| Row {
            key: vec![i],
            cells: vec![Cell {
                column: b"cf:a".to_vec(),
                timestamp: None,
                value: vec![i; 60],
            }],
        };
        let chunks = sink.chunks(CellSet {
            rows: (0..7).map(row).collect(),
        });
        let sizes: Vec<usize> = chunks.iter().map(|c| c.rows.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|&n| (1..=3).contains(&n)), "{sizes:?}");
        assert!(chunks.iter().all(|c| c.encoded_len() <= 400), "{sizes:?}");
    }
}
