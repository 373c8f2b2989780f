//! The Wasm engine: compiling plugin files and telling which world they
//! implement.

use std::path::Path;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Store};

use super::bindings::{log, lookup, state};
use super::ctx::PluginCtx;
use crate::error::PluginRejected;

/// Export that marks a parser plugin.
pub const PARSER_EXPORT: &str = "apiary:plugin/parser@0.1.0";
/// Export that marks a rule plugin.
pub const RULE_EXPORT: &str = "apiary:plugin/rule@0.1.0";

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `apiary:plugin/parser`.
    Parser,
    /// Exports `apiary:plugin/rule`.
    Rule,
}

/// The shared Wasm engine and the linker that provides the host imports.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: std::sync::Arc<Linker<PluginCtx>>,
}

impl Engine {
    /// An engine with the component model on and compiled code cached on
    /// disk, so restarts and reloads of unchanged plugins skip compilation.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
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
        Ok(Self {
            engine,
            linker: std::sync::Arc::new(linker),
        })
    }

    /// The linker with every import a plugin may use.
    pub fn linker(&self) -> &Linker<PluginCtx> {
        &self.linker
    }

    /// A store for one plugin instance.
    pub fn store(&self, ctx: PluginCtx) -> Store<PluginCtx> {
        Store::new(&self.engine, ctx)
    }

    /// Compiles a plugin file and finds its world.
    pub fn compile(&self, path: &Path) -> Result<(Component, PluginKind), PluginRejected> {
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
        let kind = self.kind_of(&component).map_err(reject)?;
        Ok((component, kind))
    }

    fn kind_of(&self, component: &Component) -> Result<PluginKind, String> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |name: &str| exports.iter().any(|n| n == name);
        match (has(PARSER_EXPORT), has(RULE_EXPORT)) {
            (true, false) => Ok(PluginKind::Parser),
            (false, true) => Ok(PluginKind::Rule),
            (true, true) => Err("exports both the parser and the rule interface; a plugin \
                                 implements one world"
                .into()),
            (false, false) => Err(format!(
                "matches no Apiary world: it exports [{}], expected `{PARSER_EXPORT}` \
                     (world parser-plugin) or `{RULE_EXPORT}` (world rule-plugin)",
                exports.join(", ")
            )),
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
