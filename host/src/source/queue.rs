//! A lane's queue: the batches its source has read and its plugins have not
//! yet processed, bounded in batches and in bytes.
//!
//! A Kafka source reads every partition of the process through one
//! librdkafka queue, which hands records over in runs of one partition
//! (a fetch response's worth, up to `max.partition.fetch.bytes`, a few
//! thousand records). A lane's queue must take such a run whole: when it
//! cannot, the source waits for that lane while the others have nothing
//! to do. So the queue is deep in batches and bounded by the bytes it
//! holds, which is what memory is.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::model::SourceBatch;

/// Batches a lane's queue holds at most.
pub const QUEUE_BATCHES: usize = 16;

/// Record bytes a lane's queued batches and the one it is processing hold
/// at most. A batch larger than this is let in alone.
pub const QUEUE_BYTES: usize = 32 << 20;

/// Budget unit: KiB, so a budget of any size fits the semaphore's `u32`.
const UNIT: usize = 1024;

/// A new lane queue: the source's sender and the lane's receiver. The
/// sender's blocking calls wait on `runtime`.
pub fn lane_queue(runtime: Handle) -> (BatchSender, mpsc::Receiver<SourceBatch>) {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let room = Arc::new(Semaphore::new(QUEUE_BYTES / UNIT));
    (BatchSender { tx, room, runtime }, rx)
}

/// The source's side of a lane's queue. Each batch sent takes its bytes
/// from the queue's budget, and gives them back when the lane drops it,
/// after processing.
#[derive(Debug, Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<SourceBatch>,
    room: Arc<Semaphore>,
    runtime: Handle,
}

/// Room reserved in a lane's queue for one batch.
pub struct Reserved<'a> {
    room: OwnedSemaphorePermit,
    slot: mpsc::Permit<'a, SourceBatch>,
}

impl Reserved<'_> {
    /// Sends the batch the room was reserved for.
    pub fn send(self, mut batch: SourceBatch) {
        batch.room = Some(self.room);
        self.slot.send(batch);
    }
}

impl BatchSender {
    /// Sends `batch` if the queue has room for it now.
    // A refused batch comes back by value, to be held without copying.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, mut batch: SourceBatch) -> Result<(), TrySendError<SourceBatch>> {
        if self.tx.is_closed() {
            return Err(TrySendError::Closed(batch));
        }
        let Ok(room) = self.room.clone().try_acquire_many_owned(units(&batch)) else {
            return Err(TrySendError::Full(batch));
        };
        batch.room = Some(room);
        self.tx.try_send(batch).map_err(|e| match e {
            TrySendError::Full(mut batch) => {
                batch.room = None;
                TrySendError::Full(batch)
            }
            TrySendError::Closed(batch) => TrySendError::Closed(batch),
        })
    }

    /// Waits for room for `batch`; `None` once the lane has stopped.
    /// Dropping the future before it is ready reserves nothing.
    pub fn reserve<'s>(
        &'s self,
        batch: &SourceBatch,
    ) -> impl Future<Output = Option<Reserved<'s>>> + use<'s> {
        let units = units(batch);
        async move {
            let room = self.room.clone().acquire_many_owned(units).await.ok()?;
            let slot = self.tx.reserve().await.ok()?;
            Some(Reserved { room, slot })
        }
    }

    /// Sends `batch`, waiting for room; never from an async task. False
    /// if the lane has stopped.
    pub fn blocking_send(&self, batch: SourceBatch) -> bool {
        match self.runtime.block_on(self.reserve(&batch)) {
            Some(reserved) => {
                reserved.send(batch);
                true
            }
            None => false,
        }
    }
}

/// The budget `batch` takes: its bytes in units, at least one, at most all.
fn units(batch: &SourceBatch) -> u32 {
    let units = batch
        .batch
        .data
        .len()
        .div_ceil(UNIT)
        .clamp(1, QUEUE_BYTES / UNIT);
    u32::try_from(units).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LaneKey;
    use crate::source::BatchBuilder;

    fn batch(bytes: usize) -> SourceBatch {
        let mut builder = BatchBuilder::new("t", 1);
        builder.push(0, 0, None, None, &vec![b'x'; bytes], &[]);
        SourceBatch {
            lane: LaneKey {
                consumer: "g".into(),
                stream: "t".into(),
                partition: 0,
            },
            batch: builder.take(),
            next_offset: 1,
            room: None,
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_batches_and_in_bytes() {
        let (tx, mut rx) = lane_queue(Handle::current());
        for _ in 0..QUEUE_BATCHES {
            tx.try_send(batch(100)).unwrap();
        }
        assert!(matches!(
            tx.try_send(batch(100)),
            Err(TrySendError::Full(_))
        ));
        drop(rx.recv().await);
        tx.try_send(batch(100)).unwrap();

        let (tx, mut rx) = lane_queue(Handle::current());
        tx.try_send(batch(QUEUE_BYTES / 2)).unwrap();
        let refused = match tx.try_send(batch(QUEUE_BYTES / 2 + 1)) {
            Err(TrySendError::Full(refused)) => refused,
            other => panic!("a batch past the byte budget was not refused: {other:?}"),
        };
        assert!(refused.room.is_none(), "a refused batch keeps no budget");
        // Received but still being processed: its bytes still count.
        let processing = rx.recv().await.unwrap();
        assert!(matches!(
            tx.try_send(batch(QUEUE_BYTES / 2 + 1)),
            Err(TrySendError::Full(_))
        ));
        drop(processing);
        tx.try_send(refused).unwrap();
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_goes_in_alone() {
        let (tx, mut rx) = lane_queue(Handle::current());
        tx.try_send(batch(QUEUE_BYTES + 1)).unwrap();
        assert!(matches!(tx.try_send(batch(1)), Err(TrySendError::Full(_))));
        let waiting = tx.reserve(&batch(1));
        drop(rx.recv().await);
        waiting
            .await
            .expect("room once the large batch is processed")
            .send(batch(1));
        assert_eq!(rx.recv().await.unwrap().batch.data.len(), 1);
    }

    #[tokio::test]
    async fn a_stopped_lane_refuses_batches() {
        let (tx, rx) = lane_queue(Handle::current());
        drop(rx);
        assert!(matches!(
            tx.try_send(batch(1)),
            Err(TrySendError::Closed(_))
        ));
        assert!(tx.reserve(&batch(1)).await.is_none());
    }
}
