//! Sources: where raw records come from, cut into batches per lane.
//!
//! A source runs no lane itself. It tells the pipeline which partitions it
//! was given and let go of, through [`Lanes`], and hands each lane its
//! batches through the channel it gets back; the pipeline opens, runs,
//! drains and collects the lanes of every source alike.

mod batch;
pub mod file;
pub mod kafka;
pub mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use batch::{BatchBuilder, span_bytes};
pub use queue::{BatchSender, lane_queue};

use crate::metrics::LaneMetrics;
use crate::model::LaneKey;

/// Called with the lane and its next offset after each committed
/// checkpoint (Kafka mirrors it to the group's offsets, for lag
/// monitoring).
pub type CommitHook = Box<dyn Fn(&LaneKey, i64) + Send + Sync>;

/// The pipeline's side of a source: where partitions become lanes. Its
/// methods block; a source calls them from its own thread.
pub trait Lanes: Send + Sync {
    /// Opens the lane of a partition the source now reads, for records of
    /// logical topic `topic`, with its plugins and stored state.
    fn open(
        &self,
        key: LaneKey,
        topic: &str,
        on_commit: Option<CommitHook>,
    ) -> anyhow::Result<LaneInput>;

    /// Closes the lane of a partition the source let go of or read to its
    /// end, once the source has dropped the lane's sender: waits until the
    /// lane has drained its queue and committed a last checkpoint. The
    /// lane's own error, if it failed.
    fn close(&self, key: &LaneKey) -> anyhow::Result<()>;

    /// Closes the lane of a partition taken from the source (a group
    /// rebalance), once the source has dropped the lane's sender: the lane
    /// finishes the batch in hand, commits, and leaves its queued batches
    /// to whoever reads the partition next, so a rebalance waits for one
    /// batch per lane rather than for every queued one. The lane's own
    /// error, if it failed.
    fn let_go(&self, key: &LaneKey) -> anyhow::Result<()>;
}

/// An open lane, as its source sees it.
pub struct LaneInput {
    /// Where the lane's last checkpoint ends, if it has one: reading
    /// starts there.
    pub start: Option<i64>,
    /// Where its batches go; dropping it tells the lane to finish.
    pub batches: BatchSender,
    /// The lane's metrics, which its source reports into too.
    pub metrics: Arc<LaneMetrics>,
}

/// When a source last read a record, shared by all sources of a run.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Notes that a record was read now.
    pub fn touch(&self) {
        let now = self.start.elapsed().as_nanos() as u64;
        self.last_nanos.store(now, Ordering::Relaxed);
    }

    /// When the last record was read, as a count that changes with each.
    pub fn last(&self) -> u64 {
        self.last_nanos.load(Ordering::Relaxed)
    }
}
