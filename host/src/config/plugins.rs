//! `[plugins]`: the plugin directory, limits and parameters.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::default_true;

/// `[plugins]`: where the plugin components are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsSection {
    /// Directory of `*.wasm` plugin components.
    pub dir: PathBuf,
    /// Linear memory one plugin instance may grow to, in bytes.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: u64,
    /// Time one plugin call (one batch) may take; `0s` sets no limit and
    /// turns the engine's interruption checks off (trusted plugins only).
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Wasm stack of one call, in bytes (one value for every plugin).
    #[serde(default = "default_stack_limit")]
    pub stack_limit: usize,
    /// A plugin that fails on this many records in a row is quarantined:
    /// its lanes pause until a new version of it is loaded. (A rule that
    /// fails on the timers one record made due is quarantined at once.)
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
    /// Bytes one state value may have; a plugin storing a larger one traps.
    #[serde(default = "default_state_value_limit")]
    pub state_value_limit: usize,
    /// Bytes of state (keys and values) one plugin may write in one lane
    /// between two checkpoints; a plugin writing more traps. A lane
    /// checkpoints once a plugin has written half of it.
    #[serde(default = "default_state_write_limit")]
    pub state_write_limit: usize,
    /// Log lines per second one plugin may write in one lane (bursts up to
    /// as many); the rest are dropped and counted.
    #[serde(default = "default_log_rate")]
    pub log_rate: u32,
    /// Per-plugin overrides of the limits, by plugin name.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, PluginLimits>,
    /// Whether `apiary run` loads, replaces and removes plugins as their
    /// files change.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Parameters handed to each plugin's `init`, by plugin name:
    /// `[plugins.params.gift-windows] size = "6h"`.
    #[serde(default)]
    pub params: PluginParams,
}

/// `[plugins.params.<plugin>]` tables, by plugin name.
pub type PluginParams =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, toml::Value>>;

/// `[plugins.limits.<plugin>]`: limits of one plugin, overriding
/// `[plugins]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_limit: Option<u64>,
    /// Time one call may take.
    #[serde(default, with = "humantime_serde")]
    pub batch_timeout: Option<Duration>,
    /// Bytes one state value may have.
    pub state_value_limit: Option<usize>,
    /// Bytes of state written in one lane between two checkpoints.
    pub state_write_limit: Option<usize>,
    /// Log lines per second.
    pub log_rate: Option<u32>,
}

impl PluginsSection {
    /// Plugins in `dir` with the default limits.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            memory_limit: default_memory_limit(),
            batch_timeout: default_batch_timeout(),
            stack_limit: default_stack_limit(),
            quarantine_after: default_quarantine_after(),
            state_value_limit: default_state_value_limit(),
            state_write_limit: default_state_write_limit(),
            log_rate: default_log_rate(),
            limits: Default::default(),
            watch: true,
            params: Default::default(),
        }
    }

    /// The parameters of `plugin` as `init` takes them: strings as they
    /// are, other values in TOML spelling.
    pub fn params_of(&self, plugin: &str) -> Vec<(String, String)> {
        params_of(&self.params, plugin)
    }
}

/// The parameters of `plugin` in `params`, as `init` takes them.
pub fn params_of(params: &PluginParams, plugin: &str) -> Vec<(String, String)> {
    let Some(params) = params.get(plugin) else {
        return Vec::new();
    };
    params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn default_memory_limit() -> u64 {
    256 << 20
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_stack_limit() -> usize {
    1 << 20
}

fn default_quarantine_after() -> u32 {
    10
}

fn default_state_value_limit() -> usize {
    1 << 20
}

fn default_state_write_limit() -> usize {
    64 << 20
}

fn default_log_rate() -> u32 {
    100
}
