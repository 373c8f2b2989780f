//! HBase through its REST gateway (`hbase rest start`): the way programs
//! outside the JVM reach HBase. Rows cross as JSON CellSets with base64
//! keys, columns and values; [`codec`] turns Apiary values into HBase bytes
//! and back.
//!
//! Verified against the in-repo protocol test server
//! (`host/tests/hbase-rest-server`), and against a real gateway when
//! `HBASE_REST_URL` is set (see the README).

mod client;
pub mod codec;
mod model;

pub use client::{Client, HBaseError, RowCells};
pub use model::{Cell, CellSet, Row};
