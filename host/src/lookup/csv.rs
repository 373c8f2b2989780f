//! Dimension tables from local CSV files (the embedded default); each row
//! is keyed by one column. Cells are typed by their text: integers become
//! `int`, other numbers `float`, empty cells `null`, the rest `text`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;

use super::{Answer, DimensionSource, SharedRow, pick};
use crate::model::wit::types::Value;

/// A CSV file held in memory.
#[derive(Debug)]
pub struct CsvTable {
    rows: HashMap<String, SharedRow>,
}

impl CsvTable {
    /// Reads `path`; `key` names the key column (default: the first).
    pub fn load(path: &Path, key: Option<&str>) -> anyhow::Result<Self> {
        let mut reader = ::csv::Reader::from_path(path)?;
        let columns: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        let key = match key {
            Some(k) => columns
                .iter()
                .position(|c| c == k)
                .with_context(|| format!("key column `{k}` is not in the header"))?,
            None => 0,
        };
        let mut rows = HashMap::new();
        for (line, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("row {}", line + 2))?;
            let row: HashMap<String, Value> = columns
                .iter()
                .cloned()
                .zip(record.iter().map(typed))
                .collect();
            rows.insert(record.get(key).unwrap_or_default().to_owned(), row.into());
        }
        Ok(Self { rows })
    }
}

impl DimensionSource for CsvTable {
    fn get_many(&self, keys: &[String], columns: &[String]) -> Result<Vec<Answer>, String> {
        Ok(keys
            .iter()
            .map(|k| self.rows.get(k).map(|row| pick(row, columns)))
            .collect())
    }
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
        let table: crate::config::LookupTable =
            toml::from_str(&format!("path = {path:?}")).unwrap();
        let config = std::collections::BTreeMap::from([("dim_rooms".to_owned(), table)]);
        let lookups = super::super::Lookups::load(&config, None).unwrap();
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
