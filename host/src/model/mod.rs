//! The ground floor: the vocabulary every other module speaks. Sources,
//! plugins, the checkpoint store, outputs and the pipeline import it; it
//! imports none of them.
//!
//! - [`wit`]: the plugin contract's types (`Value`, `RawBatch`, …), as
//!   generated from `wit/`;
//! - [`schema`]: output tables as the host sees them;
//! - [`lane`]: what identifies a lane and what flows through it;
//! - [`state`]: plugin state and timers as they are stored;
//! - [`route`]: repartitioning by key.

pub mod lane;
pub mod route;
pub mod schema;
pub mod state;
pub mod wit;

pub use lane::{Checkpoint, DeadLetter, LaneKey, SourceBatch, TableRows};
pub use route::{EventRoute, KeyField};
pub use schema::TableSchema;
pub use state::{StateChange, StoredState, StoredValue, TimerChange};
