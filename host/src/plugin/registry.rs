//! Loading a directory of plugin components: compile, check the world,
//! `describe()`, validate, and index parsers by topic and rules by output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ctx::{PluginCtx, PluginState};
use super::engine::{Contract, Engine, PluginKind};
use crate::error::PluginRejected;
use crate::lookup::Lookups;
use crate::model::schema::TableSchema;
use crate::model::wit::types::EventKind;
use crate::model::wit::{ParserInfo, ParserPluginPre, RuleInfo, RulePluginPre, v1, v3};

/// Size and modification time of a plugin file when it was loaded: a
/// reload reuses a plugin whose file still has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    /// The stamp of `path` now, if it can be read.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// A parser that compiled, matched its world and described itself.
pub struct LoadedParser {
    /// The file it came from.
    pub path: PathBuf,
    /// The file's stamp when it was read.
    pub stamp: Option<FileStamp>,
    /// What `describe()` returned.
    pub info: ParserInfo,
    /// The parameters its `init` was given.
    pub params: Vec<(String, String)>,
    /// Ready to instantiate, once per lane.
    pub pre: ParserPre,
}

/// A parser component ready to instantiate, by contract version.
#[derive(Clone)]
pub enum ParserPre {
    /// Built against 0.1.0.
    V1(v1::ParserPluginPre<PluginCtx>),
    /// Built against 0.2.0.
    V2(ParserPluginPre<PluginCtx>),
    /// Built against 0.3.0.
    V3(v3::ParserPluginPre<PluginCtx>),
}

/// A rule component ready to instantiate, by contract version.
#[derive(Clone)]
pub enum RulePre {
    /// Built against 0.1.0.
    V1(v1::RulePluginPre<PluginCtx>),
    /// Built against 0.2.0.
    V2(RulePluginPre<PluginCtx>),
    /// Built against 0.3.0.
    V3(v3::RulePluginPre<PluginCtx>),
}

/// A rule that compiled, matched its world and described valid outputs.
pub struct LoadedRule {
    /// The file it came from.
    pub path: PathBuf,
    /// The file's stamp when it was read.
    pub stamp: Option<FileStamp>,
    /// What `describe()` returned.
    pub info: RuleInfo,
    /// Its outputs, validated, in declaration order.
    pub tables: Vec<Arc<TableSchema>>,
    /// The parameters its `init` was given.
    pub params: Vec<(String, String)>,
    /// Ready to instantiate, once per lane.
    pub pre: RulePre,
}

impl LoadedRule {
    /// The table of output `output`.
    pub fn table(&self, output: &str) -> Option<&Arc<TableSchema>> {
        self.tables.iter().find(|t| t.output == output)
    }

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

/// Either kind of plugin, as a set holds it.
#[derive(Clone)]
pub enum Shared {
    /// A parser.
    Parser(Arc<LoadedParser>),
    /// A rule.
    Rule(Arc<LoadedRule>),
}

impl From<Loaded> for Shared {
    fn from(loaded: Loaded) -> Self {
        match loaded {
            Loaded::Parser(p) => Self::Parser(Arc::new(p)),
            Loaded::Rule(r) => Self::Rule(Arc::new(r)),
        }
    }
}

impl Shared {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Parser(p) => &p.info.name,
            Self::Rule(r) => &r.info.name,
        }
    }

    /// The contract version it was built against.
    pub fn contract(&self) -> Contract {
        match self {
            Self::Parser(p) => p.pre.contract(),
            Self::Rule(r) => r.pre.contract(),
        }
    }

    /// The parameters its `init` was given.
    pub fn params(&self) -> &[(String, String)] {
        match self {
            Self::Parser(p) => &p.params,
            Self::Rule(r) => &r.params,
        }
    }

    /// Its version.
    pub fn version(&self) -> &str {
        match self {
            Self::Parser(p) => &p.info.version,
            Self::Rule(r) => &r.info.version,
        }
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        match self {
            Self::Parser(p) => &p.path,
            Self::Rule(r) => &r.path,
        }
    }

    fn stamp(&self) -> Option<FileStamp> {
        match self {
            Self::Parser(p) => p.stamp,
            Self::Rule(r) => r.stamp,
        }
    }

    /// Whether both are the same loaded plugin (not merely the same name).
    pub fn same(&self, other: &Shared) -> bool {
        match (self, other) {
            (Self::Parser(a), Self::Parser(b)) => Arc::ptr_eq(a, b),
            (Self::Rule(a), Self::Rule(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The `*.wasm` files of `dir`, in name order; editors' and copiers'
/// temporary names (anything not ending in `.wasm`) are left alone. A
/// `*.wasm` entry that is not a regular file (a directory, a FIFO, a
/// dangling symlink, a symlink loop) is skipped with a warning, once per
/// path; it is never opened, so a FIFO cannot block the loader.
fn plugin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read plugin dir {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "wasm") {
            continue;
        }
        // `metadata` follows symlinks without opening the file.
        let what = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {
                paths.push(path);
                continue;
            }
            Ok(meta) if meta.is_dir() => "a directory".to_owned(),
            Ok(_) => "not a regular file (a FIFO, socket or device)".to_owned(),
            Err(e) => format!("unreadable ({e}; a dangling symlink or a symlink loop?)"),
        };
        warn_once(&path, &what);
    }
    paths.sort();
    Ok(paths)
}

/// Warns that `path` is skipped, the first time only: reloads list the
/// directory again and again.
fn warn_once(path: &Path, what: &str) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|p| p == path) {
        warned.push(path.to_owned());
        tracing::warn!("plugin dir entry {} skipped: {what}", path.display());
    }
}

/// A file a set could not use, with the file's stamp when it was tried:
/// a reload tells the same file rejected again from a new one.
#[derive(Debug, Clone)]
pub struct RejectedFile {
    /// Which file, and why.
    pub error: PluginRejected,
    /// Its size and modification time then.
    pub stamp: Option<FileStamp>,
}

impl RejectedFile {
    /// Whether `other` is this file, unchanged, rejected for the same reason.
    pub fn same(&self, other: &RejectedFile) -> bool {
        self.error.path == other.error.path
            && self.stamp == other.stamp
            && self.error.reason == other.error.reason
    }
}

impl std::fmt::Display for RejectedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The plugins of a directory, with the files that were rejected.
#[derive(Default)]
pub struct PluginSet {
    /// Parsers, at most one per topic.
    pub parsers: Vec<Arc<LoadedParser>>,
    /// Rules, each output table declared once.
    pub rules: Vec<Arc<LoadedRule>>,
    /// Files that could not be used, with the reason.
    pub rejected: Vec<RejectedFile>,
}

impl PluginSet {
    /// Loads every `*.wasm` file in `dir`, in name order. Files that cannot
    /// be used are recorded in `rejected`; the others load. Fails only when
    /// the directory itself cannot be read.
    pub fn load_dir(engine: &Engine, dir: &Path, lookups: &Arc<Lookups>) -> anyhow::Result<Self> {
        Self::reload(engine, dir, lookups, &PluginSet::default())
    }

    /// Loads `dir` again after `current`: plugins whose file is unchanged
    /// are kept as they are (lanes keep their instances), changed and new
    /// files are loaded, and a file that cannot be used leaves the plugin
    /// it held before running.
    pub fn reload(
        engine: &Engine,
        dir: &Path,
        lookups: &Arc<Lookups>,
        current: &PluginSet,
    ) -> anyhow::Result<Self> {
        let mut set = PluginSet::default();
        for path in plugin_files(dir)? {
            // Same file, same parameters: the loaded plugin stays.
            let unchanged = current.all().find(|p| {
                p.path() == path
                    && p.stamp().is_some()
                    && p.stamp() == FileStamp::of(&path)
                    && (p.contract() == Contract::V1 || p.params() == engine.params_of(p.name()))
            });
            let loaded = match unchanged {
                Some(plugin) => set.admit(plugin),
                None => load_file(engine, &path, lookups).and_then(|l| set.admit(l.into())),
            };
            if let Err(rejected) = loaded {
                if let Some(previous) = current.all().find(|p| p.path() == path) {
                    // The running version stays, unless the set has moved on.
                    let _ = set.admit(previous);
                }
                set.rejected.push(RejectedFile {
                    error: rejected,
                    stamp: FileStamp::of(&path),
                });
            }
        }
        Ok(set)
    }

    /// Every plugin, parsers first.
    pub fn all(&self) -> impl Iterator<Item = Shared> + '_ {
        self.parsers
            .iter()
            .cloned()
            .map(Shared::Parser)
            .chain(self.rules.iter().cloned().map(Shared::Rule))
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
    fn admit(&mut self, loaded: Shared) -> Result<(), PluginRejected> {
        let (path, name) = (loaded.path().to_owned(), loaded.name().to_owned());
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
            Shared::Parser(parser) => {
                for topic in &parser.info.topics {
                    if let Some(other) = self.parser_for(topic) {
                        return Err(reject(format!(
                            "topic `{topic}` is already parsed by `{}` ({})",
                            other.info.name,
                            other.path.display()
                        )));
                    }
                }
                self.parsers.push(parser);
            }
            Shared::Rule(rule) => {
                for table in &rule.tables {
                    let taken = self
                        .tables()
                        .find(|t| crate::model::schema::same_table(&t.table, &table.table));
                    if let Some(other) = taken {
                        return Err(reject(format!(
                            "table `{}` is already written by `{}` (as `{}`; table names \
                             are compared without letter case)",
                            table.table, other.plugin, other.table
                        )));
                    }
                }
                self.rules.push(rule);
            }
        }
        Ok(())
    }
}

impl ParserPre {
    /// The contract version.
    pub fn contract(&self) -> Contract {
        match self {
            Self::V1(_) => Contract::V1,
            Self::V2(_) => Contract::V2,
            Self::V3(_) => Contract::V3,
        }
    }
}

impl RulePre {
    /// The contract version.
    pub fn contract(&self) -> Contract {
        match self {
            Self::V1(_) => Contract::V1,
            Self::V2(_) => Contract::V2,
            Self::V3(_) => Contract::V3,
        }
    }
}

/// Compiles `path`, checks it against the worlds, and validates what
/// `describe()` says. A plugin of 0.2.0 or later describes itself once to tell its
/// name, then, in a fresh instance given that name's parameters through
/// `init`, again: the second answer is the one that counts.
pub fn load_file(
    engine: &Engine,
    path: &Path,
    lookups: &Arc<Lookups>,
) -> Result<Loaded, PluginRejected> {
    let reject = |reason: String| PluginRejected {
        path: path.to_owned(),
        reason,
    };
    // Stamped before reading: a file changed meanwhile is reloaded again.
    let stamp = FileStamp::of(path);
    let (component, kind, contract) = engine.compile(path)?;
    let pre = engine
        .linker()
        .instantiate_pre(&component)
        .map_err(|e| reject(format!("needs imports Apiary does not grant: {e:#}")))?;
    let file_name: Arc<str> = path
        .file_name()
        .map(|n| n.to_string_lossy().into())
        .unwrap_or_else(|| "plugin".into());
    let store = || {
        engine.store(PluginCtx::new(
            file_name.clone(),
            "describe".into(),
            lookups.clone(),
            PluginState::default(),
        ))
    };
    let world = |kind: &str, e: wasmtime::Error| {
        reject(format!(
            "does not match world {kind}-plugin {contract}: {e:#}"
        ))
    };
    let init_failed = |name: &str, e: String| reject(format!("plugin `{name}` init failed: {e}"));
    // What a plugin of 0.2.0 or later describes, given its parameters.
    macro_rules! described {
        ($pre:expr, $export:ident) => {{
            let describe = |params: Option<&[(String, String)]>| {
                let mut store = store();
                let instance = $pre
                    .instantiate(&mut store)
                    .map_err(|e| reject(format!("failed to initialise: {e:#}")))?;
                let export = instance.$export();
                if let Some(params) = params {
                    export
                        .call_init(&mut store, params)
                        .map_err(|e| reject(format!("init() failed: {e:#}")))?
                        .map_err(|e| reject(format!("init() refused: {e}")))?;
                }
                export
                    .call_describe(&mut store)
                    .map_err(|e| reject(format!("describe() failed: {e:#}")))
            };
            let name = describe(None)?.name;
            let params = engine.params_of(&name);
            let info = describe(Some(&params)).map_err(|e| init_failed(&name, e.reason))?;
            (info, params)
        }};
    }
    match kind {
        PluginKind::Parser => {
            let (pre, info, params) = match contract {
                Contract::V1 => {
                    let pre = v1::ParserPluginPre::new(pre).map_err(|e| world("parser", e))?;
                    let mut store = store();
                    let info = pre
                        .instantiate(&mut store)
                        .map_err(|e| reject(format!("failed to initialise: {e:#}")))?
                        .apiary_plugin_parser()
                        .call_describe(&mut store)
                        .map_err(|e| reject(format!("describe() failed: {e:#}")))?;
                    (ParserPre::V1(pre), info.into(), Vec::new())
                }
                Contract::V2 => {
                    let pre = ParserPluginPre::new(pre).map_err(|e| world("parser", e))?;
                    let (info, params) = described!(pre, apiary_plugin_parser);
                    (ParserPre::V2(pre), info, params)
                }
                Contract::V3 => {
                    let pre = v3::ParserPluginPre::new(pre).map_err(|e| world("parser", e))?;
                    let (info, params) = described!(pre, apiary_plugin_parser);
                    (ParserPre::V3(pre), info.into(), params)
                }
            };
            check_name(&info.name, &info.version).map_err(reject)?;
            let mut info = info;
            info.version = shown_version(info.version);
            if info.topics.is_empty() || info.topics.iter().any(|t| t.is_empty()) {
                return Err(reject(format!(
                    "parser `{}` declares no topics (or an empty topic name)",
                    info.name
                )));
            }
            Ok(Loaded::Parser(LoadedParser {
                path: path.to_owned(),
                stamp,
                info,
                params,
                pre,
            }))
        }
        PluginKind::Rule => {
            let (pre, info, params) = match contract {
                Contract::V1 => {
                    let pre = v1::RulePluginPre::new(pre).map_err(|e| world("rule", e))?;
                    let mut store = store();
                    let info = pre
                        .instantiate(&mut store)
                        .map_err(|e| reject(format!("failed to initialise: {e:#}")))?
                        .apiary_plugin_rule()
                        .call_describe(&mut store)
                        .map_err(|e| reject(format!("describe() failed: {e:#}")))?;
                    (RulePre::V1(pre), info.into(), Vec::new())
                }
                Contract::V2 => {
                    let pre = RulePluginPre::new(pre).map_err(|e| world("rule", e))?;
                    let (info, params) = described!(pre, apiary_plugin_rule);
                    (RulePre::V2(pre), info, params)
                }
                Contract::V3 => {
                    let pre = v3::RulePluginPre::new(pre).map_err(|e| world("rule", e))?;
                    let (info, params) = described!(pre, apiary_plugin_rule);
                    (RulePre::V3(pre), info.into(), params)
                }
            };
            check_name(&info.name, &info.version).map_err(reject)?;
            let mut info = info;
            info.version = shown_version(info.version);
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
                if tables.iter().any(|t| {
                    crate::model::schema::same_table(&t.table, &table.table)
                        || t.output == table.output
                }) {
                    return Err(reject(format!(
                        "rule `{}` declares output `{}` twice",
                        info.name, table.output
                    )));
                }
                tables.push(Arc::new(table));
            }
            Ok(Loaded::Rule(LoadedRule {
                path: path.to_owned(),
                stamp,
                info,
                tables,
                params,
                pre,
            }))
        }
    }
}

/// A plugin's version as the host shows it in logs and `inspect`: control
/// characters escaped (no forged log lines), at most 64 bytes.
fn shown_version(version: String) -> String {
    let version = crate::text::bounded(version, 64);
    crate::text::printable(&version).into_owned()
}

fn check_name(name: &str, version: &str) -> Result<(), String> {
    // 64: the host's tables store plugin names in `VARCHAR(64)` columns.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(format!(
            "plugin name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
            crate::text::printable(name)
        ));
    }
    if version.is_empty() {
        return Err(format!("plugin `{name}` declares an empty version"));
    }
    Ok(())
}
