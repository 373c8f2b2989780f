//! The REST gateway's JSON model: a CellSet holds rows, a row holds cells,
//! and every key, column and value is base64 (HBase's `CellSetModel`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of rows, as `PUT /<table>/<row>` takes and `GET` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSet {
    /// The rows.
    #[serde(rename = "Row", default)]
    pub rows: Vec<Row>,
}

/// One row and some of its cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The row key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The cells.
    #[serde(rename = "Cell", default)]
    pub cells: Vec<Cell>,
}

/// One cell: `family:qualifier`, value and, when read, its timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// `family:qualifier`.
    #[serde(with = "b64")]
    pub column: Vec<u8>,
    /// Milliseconds since the epoch; the server's time when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The value.
    #[serde(rename = "$", with = "b64")]
    pub value: Vec<u8>,
}

impl CellSet {
    /// Approximate size on the wire, for flushing by bytes.
    pub fn encoded_len(&self) -> usize {
        self.rows.iter().map(Row::encoded_len).sum()
    }
}

impl Row {
    /// Approximate size on the wire: base64 grows bytes by a third, plus
    /// the JSON around them.
    pub fn encoded_len(&self) -> usize {
        20 + self.key.len() * 4 / 3
            + self
                .cells
                .iter()
                .map(|c| 30 + (c.column.len() + c.value.len()) * 4 / 3)
                .sum::<usize>()
    }
}

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64 `{text}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CellSet of the HBase reference guide's REST chapter (made with
    /// `echo`, so each value ends in a newline).
    #[test]
    fn reads_the_reference_guide_cellset() {
        let text =
            r#"{"Row":[{"key":"cm93NQo=", "Cell": [{"column":"Y2Y6ZQo=", "$":"dmFsdWU1Cg=="}]}]}"#;
        let set: CellSet = serde_json::from_str(text).unwrap();
        assert_eq!(set.rows[0].key, b"row5\n");
        assert_eq!(set.rows[0].cells[0].column, b"cf:e\n");
        assert_eq!(set.rows[0].cells[0].value, b"value5\n");
        assert_eq!(set.rows[0].cells[0].timestamp, None);
        let again: CellSet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(again, set);
    }

    /// The rows of HBase's own REST model test (`TestCellSetModel`): two
    /// rows, three cells, with timestamps.
    #[test]
    fn reads_the_rest_model_test_fixture() {
        let text = r#"{"Row":[{"key":"dGVzdHJvdzE=","Cell":[{"column":"dGVzdGNvbHVtbjE=","timestamp":1245219839331,"$":"dGVzdHZhbHVlMQ=="}]},{"key":"dGVzdHJvdzE=","Cell":[{"column":"dGVzdGNvbHVtbjI=","timestamp":1245239813319,"$":"dGVzdHZhbHVlMg=="},{"column":"dGVzdGNvbHVtbjM=","timestamp":1245393318192,"$":"dGVzdHZhbHVlMw=="}]}]}"#;
        let set: CellSet = serde_json::from_str(text).unwrap();
        assert_eq!(set.rows.len(), 2);
        assert_eq!(set.rows[1].cells[1].column, b"testcolumn3");
        assert_eq!(set.rows[1].cells[1].value, b"testvalue3");
        assert_eq!(serde_json::to_string(&set).unwrap(), text);
    }

    #[test]
    fn bad_base64_is_named() {
        let err = serde_json::from_str::<CellSet>(r#"{"Row":[{"key":"***","Cell":[]}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid base64 `***`"), "{err}");
    }
}
