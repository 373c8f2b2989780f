//! Outputs: the non-transactional writes a lane makes before each
//! checkpoint commits (HBase puts, Kafka topics, the Kafka dead-letter
//! topic).
//!
//! The checkpoint store ([`crate::store`]) is the one transactional sink:
//! rows, state, dead letters and offsets commit there together. An output
//! writes first, idempotently or at least once, so a crash before the
//! commit makes the lane replay and write the same again.
//!
//! Adding an output is a module here that implements [`Output`], its
//! config section, and one line in [`from_config`].

mod dead_letter_topic;
mod hbase;
mod kafka;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use dead_letter_topic::DeadLetterTopic;
pub use hbase::HBase;
pub use kafka::{KafkaOutputs, idempotent, message_bytes, wire_bytes};

use crate::config::PipelineConfig;
use crate::model::{DeadLetter, LaneKey, TableRows, TableSchema};

/// What a lane hands each output before its checkpoint commits.
pub struct Pending<'a> {
    /// The lane.
    pub lane: &'a LaneKey,
    /// Where the checkpoint these writes precede ends.
    pub next_offset: i64,
    /// The folded rows of the outputs this output routes.
    pub rows: &'a [TableRows],
    /// Every record refused since the last checkpoint.
    pub dead_letters: &'a [DeadLetter],
    /// Seconds east of UTC that timestamps are written in.
    pub utc_offset_secs: i32,
}

/// A side output of every lane.
pub trait Output: Send + Sync {
    /// Whether the rows of rule output `output` go here (and not to the
    /// checkpoint store).
    fn routes(&self, output: &str) -> bool {
        let _ = output;
        false
    }

    /// Checks the outputs it routes against the plugins' tables; at start
    /// and before a reload publishes new plugins.
    fn check(&self, tables: &[Arc<TableSchema>]) -> anyhow::Result<()> {
        let _ = tables;
        Ok(())
    }

    /// Lanes checkpoint at least this often, so rows reach it in time.
    fn interval(&self) -> Option<Duration> {
        None
    }

    /// Writes what the lane made since its last checkpoint; the checkpoint
    /// commits only once every output has returned `Ok`.
    fn write<'a>(&'a self, pending: Pending<'a>) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// The outputs `config` declares (checked against the plugins' tables by
/// `assembly::routes`).
pub fn from_config(config: &PipelineConfig) -> anyhow::Result<Vec<Arc<dyn Output>>> {
    let mut outputs: Vec<Arc<dyn Output>> = Vec::new();
    outputs.extend(DeadLetterTopic::from_config(config)?.map(|o| Arc::new(o) as _));
    outputs.extend(HBase::from_config(config)?.map(|o| Arc::new(o) as _));
    outputs.extend(KafkaOutputs::from_config(config)?.map(|o| Arc::new(o) as _));
    Ok(outputs)
}

/// The tables the checkpoint store holds: those no output routes.
pub fn store_tables(
    tables: &[Arc<TableSchema>],
    outputs: &[Arc<dyn Output>],
) -> Vec<Arc<TableSchema>> {
    tables
        .iter()
        .filter(|t| !outputs.iter().any(|o| o.routes(&t.output)))
        .cloned()
        .collect()
}
