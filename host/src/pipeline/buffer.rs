//! The checkpoint buffer: rows folded by primary key with their columns'
//! merge modes, so a batch of deltas becomes one row per key before it
//! reaches the database. Folding first and merging in SQL give the same
//! result, because each merge mode is associative.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::model::TableSchema;
use crate::model::wit::types::{MergeMode, Value};

/// Folded rows of every table a lane writes.
#[derive(Default)]
pub struct RowBuffer {
    tables: HashMap<String, TableRows>,
    rows: usize,
    bytes: usize,
    utc_offset_secs: i32,
}

struct TableRows {
    schema: Arc<TableSchema>,
    rows: HashMap<Vec<u8>, Vec<Value>>,
}

impl RowBuffer {
    /// A buffer whose time-partitioned tables are picked in the time zone
    /// `utc_offset_secs` east of UTC (the sink's).
    pub fn new(utc_offset_secs: i32) -> Self {
        Self {
            utc_offset_secs,
            ..Self::default()
        }
    }

    /// Folds flattened rows (`cells` holds whole rows of `schema`, in column
    /// order, as validated by the lane) into the buffer.
    pub fn merge(&mut self, schema: &Arc<TableSchema>, cells: Vec<Value>) {
        let width = schema.columns.len();
        let mut cells = cells.into_iter();
        loop {
            let row: Vec<Value> = cells.by_ref().take(width).collect();
            if row.len() < width {
                break;
            }
            let name = match schema.partition {
                None => std::borrow::Cow::Borrowed(&schema.table),
                Some(_) => std::borrow::Cow::Owned(schema.table_for(&row, self.utc_offset_secs)),
            };
            if !self.tables.contains_key(&*name) {
                let rows = TableRows {
                    schema: schema.clone(),
                    rows: HashMap::new(),
                };
                self.tables.insert(name.to_string(), rows);
            }
            let Some(table) = self.tables.get_mut(&*name) else {
                continue;
            };
            match table.rows.entry(key_bytes(schema, &row)) {
                Entry::Vacant(slot) => {
                    self.bytes += row.iter().map(value_size).sum::<usize>();
                    slot.insert(row);
                    self.rows += 1;
                }
                Entry::Occupied(mut slot) => merge_row(schema, slot.get_mut(), row),
            }
        }
    }

    /// Number of distinct rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Roughly how many bytes of values are held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Takes every row, grouped by table: shape, name, rows. Tables come
    /// by name and rows by key, an order every lane shares: lanes upserting
    /// the same keys then lock them in the same order, so a database never
    /// finds them deadlocked on each other.
    pub fn take(&mut self) -> Vec<(Arc<TableSchema>, String, Vec<Vec<Value>>)> {
        self.rows = 0;
        self.bytes = 0;
        let mut tables: Vec<(String, TableRows)> = self.tables.drain().collect();
        tables.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        tables
            .into_iter()
            .map(|(name, table)| {
                let mut rows: Vec<(Vec<u8>, Vec<Value>)> = table.rows.into_iter().collect();
                rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let rows = rows.into_iter().map(|(_, row)| row).collect();
                (table.schema, name, rows)
            })
            .collect()
    }
}

/// Merges `new` into `stored` column by column. Nulls never win a merge
/// except under `replace`, matching the SQL the sinks generate.
pub fn merge_row(schema: &TableSchema, stored: &mut [Value], new: Vec<Value>) {
    for ((column, old), new) in schema.columns.iter().zip(stored.iter_mut()).zip(new) {
        if column.key {
            continue;
        }
        match (column.merge, &*old, &new) {
            (MergeMode::Replace, _, _) | (_, Value::Null, _) => *old = new,
            (_, _, Value::Null) => {}
            // Saturates, as the sinks' SQL does (see store::upsert_sql).
            (MergeMode::Add, Value::Int(a), Value::Int(b)) => {
                *old = Value::Int(a.saturating_add(*b))
            }
            (MergeMode::Add, Value::Float(a), Value::Float(b)) => *old = Value::Float(a + b),
            (MergeMode::Max, _, _) => {
                if compare(&new, old).is_gt() {
                    *old = new
                }
            }
            (MergeMode::Min, _, _) => {
                if compare(&new, old).is_lt() {
                    *old = new
                }
            }
            (MergeMode::Add, _, _) => *old = new,
        }
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Text(s) => 8 + s.len(),
        Value::Bytes(b) => 8 + b.len(),
        _ => 8,
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    match (a, b) {
        (Value::Int(a), Value::Int(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b).unwrap_or(Equal),
        (Value::Text(a), Value::Text(b)) => a.cmp(b),
        _ => Equal,
    }
}

/// A byte string that is equal for equal primary keys.
fn key_bytes(schema: &TableSchema, row: &[Value]) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 * schema.key.len());
    for &i in &schema.key {
        match &row[i] {
            Value::Null => key.push(0),
            Value::Int(v) | Value::Timestamp(v) => {
                key.push(1);
                key.extend_from_slice(&v.to_le_bytes());
            }
            Value::Float(v) => {
                key.push(2);
                key.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Boolean(v) => key.extend_from_slice(&[3, *v as u8]),
            Value::Text(s) => {
                key.push(4);
                key.extend_from_slice(&(s.len() as u32).to_le_bytes());
                key.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                key.push(5);
                key.extend_from_slice(&(b.len() as u32).to_le_bytes());
                key.extend_from_slice(b);
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wit::types::{Column, ColumnType, OutputSchema};

    fn schema() -> Arc<TableSchema> {
        let col = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: true,
        };
        Arc::new(
            TableSchema::from_output(
                "t",
                &OutputSchema {
                    name: "t".into(),
                    table: None,
                    columns: vec![
                        col("k", MergeMode::Replace),
                        col("sum", MergeMode::Add),
                        col("hi", MergeMode::Max),
                        col("lo", MergeMode::Min),
                        col("last", MergeMode::Replace),
                    ],
                    primary_key: vec!["k".into()],
                },
            )
            .unwrap(),
        )
    }

    #[test]
    fn folds_rows_by_key_with_each_merge_mode() {
        let s = schema();
        let mut buffer = RowBuffer::default();
        let row = |k, sum, hi, lo, last: Value| {
            vec![
                Value::Int(k),
                Value::Int(sum),
                Value::Int(hi),
                Value::Int(lo),
                last,
            ]
        };
        let mut cells = row(1, 5, 5, 5, Value::Int(1));
        cells.extend(row(2, 1, 1, 1, Value::Int(1)));
        cells.extend(row(1, 7, 9, 2, Value::Null));
        buffer.merge(&s, cells);
        buffer.merge(
            &s,
            vec![
                Value::Int(1),
                Value::Null,
                Value::Int(3),
                Value::Null,
                Value::Int(4),
            ],
        );
        assert_eq!(buffer.len(), 2);
        let mut rows = buffer.take().pop().unwrap().2;
        rows.sort_by_key(|r| match r[0] {
            Value::Int(k) => k,
            _ => 0,
        });
        assert_eq!(
            rows[0],
            vec![
                Value::Int(1),
                Value::Int(12),
                Value::Int(9),
                Value::Int(2),
                Value::Int(4)
            ]
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn rows_come_out_in_one_order_whatever_order_they_went_in() {
        let s = schema();
        let row = |k| {
            vec![
                Value::Int(k),
                Value::Int(1),
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        };
        let keys: Vec<i64> = (0..200).map(|i| (i * 7919) % 1000 - 500).collect();
        let mut forward = RowBuffer::default();
        let mut backward = RowBuffer::default();
        forward.merge(&s, keys.iter().flat_map(|&k| row(k)).collect());
        backward.merge(&s, keys.iter().rev().flat_map(|&k| row(k)).collect());
        let (forward, backward) = (forward.take(), backward.take());
        assert_eq!(forward[0].2.len(), 200);
        assert_eq!(forward[0].2, backward[0].2);
    }
}
