//! Plugins: the Wasm engine, loading and validating components, and the
//! per-lane instances that process batches.

pub mod bindings;
mod ctx;
mod engine;
mod instance;
mod registry;

pub use ctx::{PluginCtx, PluginState, StateChange};
pub use engine::{Engine, PluginKind};
pub use instance::{BatchFailure, BatchResult, LanePlugins, ParserInstance, RuleInstance};
pub use registry::{Loaded, LoadedParser, LoadedRule, PluginSet, load_file};
