//! The Wasm engine: compiling plugin files and telling which world they
//! implement.

use std::path::Path;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Store, StoreLimitsBuilder};

use super::ctx::PluginCtx;
use crate::config::PluginsSection;
use crate::error::PluginRejected;
use crate::model::wit::{log, lookup, state, timers, v1, v3};

/// Export that marks a parser plugin.
pub const PARSER_EXPORT: &str = "apiary:plugin/parser@0.3.0";
/// Export that marks a rule plugin.
pub const RULE_EXPORT: &str = "apiary:plugin/rule@0.3.0";
/// Export that marks a parser plugin of the 0.2.0 contract.
pub const PARSER_EXPORT_V2: &str = "apiary:plugin/parser@0.2.0";
/// Export that marks a rule plugin of the 0.2.0 contract.
pub const RULE_EXPORT_V2: &str = "apiary:plugin/rule@0.2.0";
/// Export that marks a parser plugin of the 0.1.0 contract.
pub const PARSER_EXPORT_V1: &str = "apiary:plugin/parser@0.1.0";
/// Export that marks a rule plugin of the 0.1.0 contract.
pub const RULE_EXPORT_V1: &str = "apiary:plugin/rule@0.1.0";

/// The version of the contract a plugin was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `apiary:plugin@0.1.0`: no event time, timers or parameters.
    V1,
    /// `apiary:plugin@0.2.0`: text in a string per field.
    V2,
    /// `apiary:plugin@0.3.0`.
    V3,
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "0.1.0",
            Self::V2 => "0.2.0",
            Self::V3 => "0.3.0",
        })
    }
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `apiary:plugin/parser`.
    Parser,
    /// Exports `apiary:plugin/rule`.
    Rule,
}

/// How often the engine's epoch advances: the granularity of the time
/// limit of a plugin call.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The shared Wasm engine and the linker that provides the host imports.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: std::sync::Arc<Linker<PluginCtx>>,
    limits: std::sync::Arc<PluginsSection>,
    /// `[plugins.params]`, replaced when the configuration file changes.
    params: std::sync::Arc<std::sync::RwLock<crate::config::PluginParams>>,
}

impl Engine {
    /// An engine with the default limits.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_limits(PluginsSection::new(Default::default()))
    }

    /// An engine with the component model on, compiled code cached on
    /// disk (restarts and reloads of unchanged plugins skip compilation),
    /// and the limits of `plugins`: memory and time per call are set on
    /// each store, the stack here for all.
    pub fn with_limits(plugins: PluginsSection) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let timed = !plugins.batch_timeout.is_zero();
        config.epoch_interruption(timed);
        config.max_wasm_stack(plugins.stack_limit);
        // `APIARY_PERFMAP=1` names the plugins' compiled functions for
        // `perf` (in /tmp/perf-<pid>.map): a profile then shows where in a
        // plugin the time goes.
        if std::env::var_os("APIARY_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = cache_dir() {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            match Cache::new(cache) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => tracing::warn!("compiled-plugin cache disabled: {e}"),
            }
        }
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        log::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        state::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        lookup::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        timers::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v3::log::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v3::state::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v3::lookup::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v3::timers::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v1::log::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v1::state::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        v1::lookup::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
        if timed {
            // The clock of call time limits; it stops with the last engine.
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("apiary-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })?;
        }
        Ok(Self {
            engine,
            linker: std::sync::Arc::new(linker),
            params: std::sync::Arc::new(std::sync::RwLock::new(plugins.params.clone())),
            limits: std::sync::Arc::new(plugins),
        })
    }

    /// The configured consecutive failures before a plugin is quarantined.
    pub fn quarantine_after(&self) -> u32 {
        self.limits.quarantine_after
    }

    /// The parameters `[plugins.params.<plugin>]` gives `plugin`.
    pub fn params_of(&self, plugin: &str) -> Vec<(String, String)> {
        let params = self.params.read().unwrap_or_else(|e| e.into_inner());
        crate::config::params_of(&params, plugin)
    }

    /// Replaces the plugins' parameters; plugins take them when next
    /// loaded (a reload loads again each plugin whose parameters changed).
    pub fn set_params(&self, params: crate::config::PluginParams) {
        *self.params.write().unwrap_or_else(|e| e.into_inner()) = params;
    }

    /// The linker with every import a plugin may use.
    pub fn linker(&self) -> &Linker<PluginCtx> {
        &self.linker
    }

    /// A store for one plugin instance, with its plugin's memory limit and
    /// time limit per call.
    pub fn store(&self, mut ctx: PluginCtx) -> Store<PluginCtx> {
        let own = self.limits.limits.get(ctx.plugin());
        let memory = own
            .and_then(|l| l.memory_limit)
            .unwrap_or(self.limits.memory_limit);
        let timeout = own
            .and_then(|l| l.batch_timeout)
            .unwrap_or(self.limits.batch_timeout);
        ctx.state_limits = super::ctx::StateLimits {
            value: own
                .and_then(|l| l.state_value_limit)
                .unwrap_or(self.limits.state_value_limit),
            written: own
                .and_then(|l| l.state_write_limit)
                .unwrap_or(self.limits.state_write_limit),
        };
        ctx.set_log_rate(own.and_then(|l| l.log_rate).unwrap_or(self.limits.log_rate));
        ctx.memory_limit = usize::try_from(memory).unwrap_or(usize::MAX);
        ctx.limits = StoreLimitsBuilder::new()
            .memory_size(ctx.memory_limit)
            .trap_on_grow_failure(true)
            .build();
        ctx.deadline_ticks = if timeout.is_zero() {
            u64::MAX
        } else {
            (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
        };
        let ticks = ctx.deadline_ticks;
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|ctx| &mut ctx.limits);
        store.set_epoch_deadline(ticks);
        store
    }

    /// Compiles a plugin file and finds its world and contract version.
    pub fn compile(
        &self,
        path: &Path,
    ) -> Result<(Component, PluginKind, Contract), PluginRejected> {
        let reject = |reason: String| PluginRejected {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| reject(format!("cannot read: {e}")))?;
        if !wasmparser_is_component(&bytes) {
            return Err(reject(
                "not a WebAssembly component (a core module or other file); build it for \
                 wasm32-wasip2 or wrap it with `wasm-tools component new`"
                    .into(),
            ));
        }
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| reject(format!("does not compile: {e:#}")))?;
        let (kind, contract) = self.kind_of(&component).map_err(reject)?;
        Ok((component, kind, contract))
    }

    fn kind_of(&self, component: &Component) -> Result<(PluginKind, Contract), String> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |name: &str| exports.iter().any(|n| n == name);
        let found: Vec<(PluginKind, Contract)> = [
            (PARSER_EXPORT, PluginKind::Parser, Contract::V3),
            (RULE_EXPORT, PluginKind::Rule, Contract::V3),
            (PARSER_EXPORT_V2, PluginKind::Parser, Contract::V2),
            (RULE_EXPORT_V2, PluginKind::Rule, Contract::V2),
            (PARSER_EXPORT_V1, PluginKind::Parser, Contract::V1),
            (RULE_EXPORT_V1, PluginKind::Rule, Contract::V1),
        ]
        .into_iter()
        .filter(|(name, _, _)| has(name))
        .map(|(_, kind, contract)| (kind, contract))
        .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "matches no Apiary world: it exports [{}], expected `{PARSER_EXPORT}` \
                     (world parser-plugin) or `{RULE_EXPORT}` (world rule-plugin), or their \
                     0.2.0 and 0.1.0 versions",
                exports.join(", ")
            )),
            _ => Err(
                "exports more than one Apiary interface; a plugin implements one world \
                      of one contract version"
                    .into(),
            ),
        }
    }
}

/// A component's preamble carries layer 1; a core module's carries layer 0.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("apiary").join("wasmtime"))
}
