//! Sources: where raw records come from, cut into batches per lane.

mod batch;
pub mod file;
pub mod kafka;

pub use batch::{BatchBuilder, span_bytes};

use crate::plugin::bindings::types::RawBatch;
use crate::sink::LaneKey;

/// A batch of one lane, ready for its plugins.
#[derive(Debug)]
pub struct SourceBatch {
    /// The lane the records belong to.
    pub lane: LaneKey,
    /// The records.
    pub batch: RawBatch,
    /// Offset of the record after the last one in the batch.
    pub next_offset: i64,
}
