//! What identifies a lane, what a source hands it, and what it makes
//! durable at each checkpoint.

use std::sync::Arc;

use super::schema::TableSchema;
use super::state::{StateChange, TimerChange};
use super::wit::types::{Header, RawBatch, RawRecord, Span, Value};

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

/// A batch of one lane, ready for its plugins.
#[derive(Debug)]
pub struct SourceBatch {
    /// The lane the records belong to.
    pub lane: LaneKey,
    /// The records.
    pub batch: RawBatch,
    /// Offset of the record after the last one in the batch.
    pub next_offset: i64,
    /// The bytes the batch takes of its lane's queue budget, given back
    /// when the lane drops it (see `source::queue`); `None` outside one.
    pub room: Option<tokio::sync::OwnedSemaphorePermit>,
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

/// Folded rows of one table: its shape, its name (a time-partitioned
/// table's resolved name), its rows.
pub type TableRows = (Arc<TableSchema>, String, Vec<Vec<Value>>);

/// Everything a lane has to make durable at once: after it is committed,
/// the lane resumes at `next_offset` with this state and these rows merged.
#[derive(Debug)]
pub struct Checkpoint {
    /// The lane.
    pub lane: LaneKey,
    /// Offset of the first record not yet covered.
    pub next_offset: i64,
    /// The next offset the lane's owner last stored (`None`: the lane had
    /// no checkpoint). The commit is refused if the store holds another.
    pub previous_offset: Option<i64>,
    /// Folded rows per table.
    pub rows: Vec<TableRows>,
    /// Changed state entries and timers per plugin name.
    pub state: Vec<(String, Vec<StateChange>, Vec<TimerChange>)>,
    /// The lane's watermark, ms since the epoch.
    pub watermark: Option<i64>,
    /// Refused records.
    pub dead_letters: Vec<DeadLetter>,
}

/// A batch of `records` of `batch` that carries only their own bytes: a
/// retry of a few records does not copy the whole batch's data.
pub fn sub_batch(batch: &RawBatch, records: &[RawRecord]) -> RawBatch {
    let mut data = Vec::new();
    let mut copy = |span: Span| {
        let start = data.len() as u32;
        let from = span.start as usize;
        data.extend_from_slice(&batch.data[from..from + span.len as usize]);
        Span {
            start,
            len: span.len,
        }
    };
    let records = records
        .iter()
        .map(|r| RawRecord {
            key: r.key.map(&mut copy),
            value: copy(r.value),
            headers: r
                .headers
                .iter()
                .map(|h| Header {
                    name: copy(h.name),
                    value: copy(h.value),
                })
                .collect(),
            ..r.clone()
        })
        .collect();
    RawBatch {
        topic: batch.topic.clone(),
        data,
        records,
    }
}
