//! Sinks: where rows, plugin state, dead letters and offsets are written,
//! together, one checkpoint at a time.

pub mod buffer;
mod hbase;
mod kafka;
pub mod schema;
mod sql;

use std::sync::Arc;

pub use buffer::RowBuffer;
pub use hbase::HBaseSink;
pub use kafka::KafkaDeadLetters;
pub use schema::TableSchema;
pub use sql::{SqlSink, check_index, redact as redact_url};

use crate::plugin::bindings::types::Value;
use crate::plugin::{StateChange, TimerChange};

/// Identifies a lane's position: which consumer (Kafka group, or pipeline
/// name for files), which physical stream (topic, or file path) and which
/// partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaneKey {
    /// Kafka consumer group, or the pipeline name for file sources.
    pub consumer: String,
    /// Physical topic name, or the file's path.
    pub stream: String,
    /// Partition number (0 for a file).
    pub partition: i32,
}

impl std::fmt::Display for LaneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.stream, self.partition)
    }
}

/// A record a plugin refused, kept with its bytes and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Physical stream the record came from.
    pub stream: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset (line number for files).
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, as read.
    pub value: Vec<u8>,
    /// The plugin that refused it.
    pub plugin: String,
    /// Why.
    pub reason: String,
}

/// Everything a lane has to make durable at once: after it is committed,
/// the lane resumes at `next_offset` with this state and these rows merged.
#[derive(Debug)]
pub struct Checkpoint {
    /// The lane.
    pub lane: LaneKey,
    /// Offset of the first record not yet covered.
    pub next_offset: i64,
    /// Folded rows per table: its shape, its name, its rows.
    pub rows: Vec<(Arc<TableSchema>, String, Vec<Vec<Value>>)>,
    /// Changed state entries and timers per plugin name.
    pub state: Vec<(String, Vec<StateChange>, Vec<TimerChange>)>,
    /// The lane's watermark, ms since the epoch.
    pub watermark: Option<i64>,
    /// Refused records.
    pub dead_letters: Vec<DeadLetter>,
}
