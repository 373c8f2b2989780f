//! Plugins: the Wasm engine, loading and validating components, and the
//! per-lane instances that process batches.

pub mod bindings;
mod ctx;
mod engine;
mod instance;
mod live;
mod registry;

pub use ctx::{PluginCtx, PluginState, StateChange};
pub use engine::EPOCH_TICK;
pub use engine::{Engine, PluginKind};
pub use instance::{
    BatchFailure, BatchResult, LanePlugins, ParserInstance, Quarantined, RuleInstance,
};
pub use live::{LivePlugins, ReloadCounts};
pub use registry::{
    FileStamp, Loaded, LoadedParser, LoadedRule, PluginSet, RejectedFile, Shared, load_file,
};
