//! Loading a directory of plugin components: compile, check the world,
//! `describe()`, validate, and index parsers by topic and rules by output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bindings::types::EventKind;
use super::bindings::{ParserInfo, ParserPluginPre, RuleInfo, RulePluginPre};
use super::ctx::{PluginCtx, PluginState};
use super::engine::{Engine, PluginKind};
use crate::error::PluginRejected;
use crate::lookup::Lookups;
use crate::sink::schema::TableSchema;

/// A parser that compiled, matched its world and described itself.
pub struct LoadedParser {
    /// The file it came from.
    pub path: PathBuf,
    /// What `describe()` returned.
    pub info: ParserInfo,
    /// Ready to instantiate, once per lane.
    pub pre: ParserPluginPre<PluginCtx>,
}

/// A rule that compiled, matched its world and described valid outputs.
pub struct LoadedRule {
    /// The file it came from.
    pub path: PathBuf,
    /// What `describe()` returned.
    pub info: RuleInfo,
    /// Its outputs, validated, in declaration order.
    pub tables: Vec<Arc<TableSchema>>,
    /// Ready to instantiate, once per lane.
    pub pre: RulePluginPre<PluginCtx>,
}

impl LoadedRule {
    /// Whether the rule consumes events of `kind`.
    pub fn consumes(&self, kind: EventKind) -> bool {
        self.info.consumes.contains(&kind)
    }
}

/// Either kind of loaded plugin.
pub enum Loaded {
    /// A parser.
    Parser(LoadedParser),
    /// A rule.
    Rule(LoadedRule),
}

/// The plugins of a directory, with the files that were rejected.
#[derive(Default)]
pub struct PluginSet {
    /// Parsers, at most one per topic.
    pub parsers: Vec<Arc<LoadedParser>>,
    /// Rules, each output table declared once.
    pub rules: Vec<Arc<LoadedRule>>,
    /// Files that could not be used, with the reason.
    pub rejected: Vec<PluginRejected>,
}

impl PluginSet {
    /// Loads every `*.wasm` file in `dir`, in name order. Files that cannot
    /// be used are recorded in `rejected`; the others load. Fails only when
    /// the directory itself cannot be read.
    pub fn load_dir(engine: &Engine, dir: &Path, lookups: &Arc<Lookups>) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read plugin dir {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        paths.sort();
        let mut set = PluginSet::default();
        for path in paths {
            let loaded = load_file(engine, &path, lookups).and_then(|l| set.admit(l));
            if let Err(rejected) = loaded {
                set.rejected.push(rejected);
            }
        }
        Ok(set)
    }

    /// The parser for `topic`, if one declares it.
    pub fn parser_for(&self, topic: &str) -> Option<&Arc<LoadedParser>> {
        self.parsers
            .iter()
            .find(|p| p.info.topics.iter().any(|t| t == topic))
    }

    /// Every output table of every rule.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableSchema>> {
        self.rules.iter().flat_map(|r| r.tables.iter())
    }

    /// Adds a loaded plugin unless its name, a topic or an output table is
    /// already taken.
    fn admit(&mut self, loaded: Loaded) -> Result<(), PluginRejected> {
        let (path, name) = match &loaded {
            Loaded::Parser(p) => (p.path.clone(), p.info.name.clone()),
            Loaded::Rule(r) => (r.path.clone(), r.info.name.clone()),
        };
        let reject = |reason: String| PluginRejected {
            path: path.clone(),
            reason,
        };
        let taken = self
            .parsers
            .iter()
            .map(|p| (&p.info.name, &p.path))
            .chain(self.rules.iter().map(|r| (&r.info.name, &r.path)))
            .find(|(n, _)| **n == name);
        if let Some((_, other)) = taken {
            return Err(reject(format!(
                "plugin name `{name}` is already used by {}",
                other.display()
            )));
        }
        match loaded {
            Loaded::Parser(parser) => {
                for topic in &parser.info.topics {
                    if let Some(other) = self.parser_for(topic) {
                        return Err(reject(format!(
                            "topic `{topic}` is already parsed by `{}` ({})",
                            other.info.name,
                            other.path.display()
                        )));
                    }
                }
                self.parsers.push(Arc::new(parser));
            }
            Loaded::Rule(rule) => {
                for table in &rule.tables {
                    if let Some(other) = self.tables().find(|t| t.table == table.table) {
                        return Err(reject(format!(
                            "table `{}` is already written by `{}`",
                            table.table, other.plugin
                        )));
                    }
                }
                self.rules.push(Arc::new(rule));
            }
        }
        Ok(())
    }
}

/// Compiles `path`, checks it against the worlds, instantiates it once and
/// validates what `describe()` says.
pub fn load_file(
    engine: &Engine,
    path: &Path,
    lookups: &Arc<Lookups>,
) -> Result<Loaded, PluginRejected> {
    let reject = |reason: String| PluginRejected {
        path: path.to_owned(),
        reason,
    };
    let (component, kind) = engine.compile(path)?;
    let pre = engine
        .linker()
        .instantiate_pre(&component)
        .map_err(|e| reject(format!("needs imports Apiary does not grant: {e:#}")))?;
    let file_name: Arc<str> = path
        .file_name()
        .map(|n| n.to_string_lossy().into())
        .unwrap_or_else(|| "plugin".into());
    let mut store = engine.store(PluginCtx::new(
        file_name,
        "describe".into(),
        lookups.clone(),
        PluginState::default(),
    ));
    match kind {
        PluginKind::Parser => {
            let pre = ParserPluginPre::new(pre)
                .map_err(|e| reject(format!("does not match world parser-plugin: {e:#}")))?;
            let instance = pre
                .instantiate(&mut store)
                .map_err(|e| reject(format!("failed to initialise: {e:#}")))?;
            let info = instance
                .apiary_plugin_parser()
                .call_describe(&mut store)
                .map_err(|e| reject(format!("describe() failed: {e:#}")))?;
            check_name(&info.name, &info.version).map_err(reject)?;
            if info.topics.is_empty() || info.topics.iter().any(|t| t.is_empty()) {
                return Err(reject(format!(
                    "parser `{}` declares no topics (or an empty topic name)",
                    info.name
                )));
            }
            Ok(Loaded::Parser(LoadedParser {
                path: path.to_owned(),
                info,
                pre,
            }))
        }
        PluginKind::Rule => {
            let pre = RulePluginPre::new(pre)
                .map_err(|e| reject(format!("does not match world rule-plugin: {e:#}")))?;
            let instance = pre
                .instantiate(&mut store)
                .map_err(|e| reject(format!("failed to initialise: {e:#}")))?;
            let info = instance
                .apiary_plugin_rule()
                .call_describe(&mut store)
                .map_err(|e| reject(format!("describe() failed: {e:#}")))?;
            check_name(&info.name, &info.version).map_err(reject)?;
            if info.consumes.is_empty() {
                return Err(reject(format!(
                    "rule `{}` consumes no event kind",
                    info.name
                )));
            }
            let mut tables: Vec<Arc<TableSchema>> = Vec::new();
            for output in &info.outputs {
                let table = TableSchema::from_output(&info.name, output)
                    .map_err(|e| reject(format!("rule `{}`: {e}", info.name)))?;
                if tables
                    .iter()
                    .any(|t| t.table == table.table || t.output == table.output)
                {
                    return Err(reject(format!(
                        "rule `{}` declares output `{}` twice",
                        info.name, table.output
                    )));
                }
                tables.push(Arc::new(table));
            }
            Ok(Loaded::Rule(LoadedRule {
                path: path.to_owned(),
                info,
                tables,
                pre,
            }))
        }
    }
}

fn check_name(name: &str, version: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(format!(
            "plugin name `{name}` must be non-empty letters, digits, `-`, `_` or `.`"
        ));
    }
    if version.is_empty() {
        return Err(format!("plugin `{name}` declares an empty version"));
    }
    Ok(())
}
