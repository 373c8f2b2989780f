//! Dimension lookups served to plugins through the `lookup` import.
//!
//! Tables come from local CSV files (the embedded default); each row is
//! keyed by one column. Cells are typed by their text: integers become
//! `int`, other numbers `float`, empty cells `null`, the rest `text`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;

use crate::config::LookupTable;
use crate::plugin::bindings::types::Value;

/// Every dimension table of a pipeline.
#[derive(Debug, Default)]
pub struct Lookups {
    tables: HashMap<String, DimensionTable>,
}

#[derive(Debug)]
struct DimensionTable {
    columns: Vec<String>,
    rows: HashMap<String, Vec<Value>>,
}

impl Lookups {
    /// Loads the configured tables.
    pub fn load(config: &BTreeMap<String, LookupTable>) -> anyhow::Result<Self> {
        let mut tables = HashMap::new();
        for (name, table) in config {
            let loaded = load_csv(table)
                .with_context(|| format!("lookup table `{name}` ({})", table.path.display()))?;
            tables.insert(name.clone(), loaded);
        }
        Ok(Self { tables })
    }

    /// Answers the `lookup.get-many` import: for each key, the requested
    /// columns of its row (`null` for a column the table lacks), or `None`.
    pub fn get_many(
        &self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Option<Vec<Value>>>, String> {
        let t = self.tables.get(table).ok_or_else(|| {
            let mut known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            known.sort();
            format!(
                "unknown lookup table `{table}` (configured: [{}])",
                known.join(", ")
            )
        })?;
        let positions: Vec<Option<usize>> = columns
            .iter()
            .map(|c| t.columns.iter().position(|k| k == c))
            .collect();
        Ok(keys
            .iter()
            .map(|key| {
                t.rows.get(key).map(|row| {
                    positions
                        .iter()
                        .map(|p| p.map_or(Value::Null, |i| row[i].clone()))
                        .collect()
                })
            })
            .collect())
    }
}

fn load_csv(config: &LookupTable) -> anyhow::Result<DimensionTable> {
    let mut reader = csv::Reader::from_path(&config.path)?;
    let columns: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let key = match &config.key {
        Some(k) => columns
            .iter()
            .position(|c| c == k)
            .with_context(|| format!("key column `{k}` is not in the header"))?,
        None => 0,
    };
    let mut rows = HashMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}", line + 2))?;
        let values: Vec<Value> = record.iter().map(typed).collect();
        let k = record.get(key).unwrap_or_default().to_owned();
        rows.insert(k, values);
    }
    Ok(DimensionTable { columns, rows })
}

fn typed(cell: &str) -> Value {
    if cell.is_empty() {
        Value::Null
    } else if let Ok(i) = cell.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(f) = cell.parse::<f64>() {
        Value::Float(f)
    } else {
        Value::Text(cell.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_rows_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.csv");
        std::fs::write(
            &path,
            "room_id,module_id,name\n20210813,1001,main\n7,,side\n",
        )
        .unwrap();
        let config = BTreeMap::from([("dim_rooms".to_owned(), LookupTable { path, key: None })]);
        let lookups = Lookups::load(&config).unwrap();
        let got = lookups
            .get_many(
                "dim_rooms",
                &["20210813".into(), "404".into(), "7".into()],
                &["module_id".into(), "absent".into()],
            )
            .unwrap();
        assert_eq!(got[0], Some(vec![Value::Int(1001), Value::Null]));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some(vec![Value::Null, Value::Null]));
        let err = lookups.get_many("nope", &[], &[]).unwrap_err();
        assert!(err.contains("nope") && err.contains("dim_rooms"), "{err}");
    }
}
