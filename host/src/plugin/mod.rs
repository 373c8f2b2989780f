//! Plugins: the Wasm engine, loading and validating components, and the
//! per-lane instances that process batches.

mod compat;
mod ctx;
mod engine;
mod instance;
mod live;
mod registry;
mod stderr;

pub use ctx::{PluginCtx, PluginState};
pub use engine::EPOCH_TICK;
pub use engine::{Contract, Engine, PluginKind};
pub use instance::{
    BatchFailure, BatchResult, Fault, Held, LanePlugins, ParserInstance, Quarantined, RuleInstance,
};
pub use live::{LivePlugins, ReloadCounts};
pub use registry::{
    FileStamp, Loaded, LoadedParser, LoadedRule, ParserPre, PluginSet, RejectedFile, RulePre,
    Shared, load_file,
};
