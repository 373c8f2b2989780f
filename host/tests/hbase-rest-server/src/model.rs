//! The gateway's JSON representations: CellSet and TableSchema, with bytes in
//! standard padded base64 as HBase's Jackson binding writes them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A CellSet as clients send it. Fields HBase tolerates as absent are
/// optional; unknown fields are ignored as HBase's binding does.
#[derive(Deserialize)]
pub(crate) struct CellSetIn {
    #[serde(rename = "Row", default)]
    pub rows: Vec<RowIn>,
}

#[derive(Deserialize)]
pub(crate) struct RowIn {
    /// Absent: the row from the request path is used.
    pub key: Option<String>,
    #[serde(rename = "Cell", default)]
    pub cells: Vec<CellIn>,
}

#[derive(Deserialize)]
pub(crate) struct CellIn {
    /// Absent: the path's columns are used in order.
    pub column: Option<String>,
    pub timestamp: Option<i64>,
    #[serde(rename = "$")]
    pub value: Option<String>,
}

/// A CellSet as the gateway answers it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct CellSetOut {
    #[serde(rename = "Row")]
    pub rows: Vec<RowOut>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct RowOut {
    pub key: String,
    #[serde(rename = "Cell")]
    pub cells: Vec<CellOut>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct CellOut {
    pub column: String,
    pub timestamp: u64,
    #[serde(rename = "$")]
    pub value: String,
}

/// A TableSchema in either direction. Family attributes (VERSIONS, TTL, …)
/// are accepted and not kept.
#[derive(Serialize, Deserialize)]
pub(crate) struct TableSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "ColumnSchema", default)]
    pub columns: Vec<ColumnSchema>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ColumnSchema {
    pub name: String,
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}
