//! Hot reload: watches the plugin directory and publishes a new plugin set
//! when its `*.wasm` files change, or when the pipeline's configuration
//! changes the parameters of a plugin (which is then loaded again with
//! them, keeping its state and timers).
//!
//! Changes are debounced until the directory has been quiet for a moment
//! and every file's size and modification time hold still, so a file being
//! copied is not loaded half-written (a half-written file that slips
//! through fails to compile and is rejected, and the complete one loads on
//! the next change). Loading runs on a blocking thread: compiling a large
//! component can take seconds and must never stall a lane.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use notify::Watcher as _;

use crate::lookup::Lookups;
use crate::output::Output;
use crate::plugin::{
    Engine, FileStamp, LivePlugins, PluginSet, RejectedFile, ReloadCounts, Shared,
};
use crate::store::SqlStore;

/// How long the directory must stay quiet before a reload.
const QUIET: Duration = Duration::from_millis(300);

/// What a reload needs besides the directory.
pub struct Reloader {
    /// The plugin directory.
    pub dir: PathBuf,
    /// Compiles and instantiates plugins.
    pub engine: Engine,
    /// Served to plugins' `describe()`.
    pub lookups: Arc<Lookups>,
    /// Where the set is published.
    pub live: Arc<LivePlugins>,
    /// Creates the tables of new outputs before lanes write them.
    pub store: SqlStore,
    /// Side outputs, whose routes a new plugin set must fit.
    pub outputs: Vec<Arc<dyn Output>>,
    /// The pipeline's configuration file, whose `[plugins.params]` are
    /// followed.
    pub config: Option<PathBuf>,
}

impl Reloader {
    /// Watches until `stop` is set.
    pub async fn run(self, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let config_name = self
            .config
            .as_ref()
            .and_then(|c| c.file_name())
            .map(ToOwned::to_owned);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Reads (our own included) are no change; only plugin files
                // and the configuration file count.
                if let Ok(event) = event
                    && !matches!(event.kind, notify::EventKind::Access(_))
                    && event.paths.iter().any(|p| {
                        p.extension().is_some_and(|x| x == "wasm")
                            || config_name
                                .as_deref()
                                .is_some_and(|c| p.file_name() == Some(c))
                    })
                {
                    let _ = tx.try_send(());
                }
            })
            .context("cannot watch the plugin directory")?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch plugin dir {}", self.dir.display()))?;
        // Editors replace a file rather than write it: watch its directory.
        if let Some(dir) = self.config.as_ref().and_then(|c| c.parent()) {
            watcher
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        tracing::info!(dir = %self.dir.display(), "watching plugins");
        // Rejections already logged, so a bad file that stays in the
        // directory is not reported again at every reload.
        let mut reported = self.live.current().1.rejected.clone();
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(_) => continue,
            }
            self.settle(&mut rx).await;
            self.read_params();
            if let Err(e) = self.reload(&mut reported).await {
                tracing::error!("plugin reload failed, the running plugins stay: {e:#}");
            }
        }
        Ok(())
    }

    /// Takes the configuration's current `[plugins.params]`; a file that no
    /// longer parses leaves the running parameters as they are.
    fn read_params(&self) {
        let Some(path) = &self.config else {
            return;
        };
        match crate::config::PipelineConfig::load(path) {
            Ok(config) => self.engine.set_params(config.plugins.params),
            Err(e) => tracing::error!("{e}; plugin parameters stay as they were"),
        }
    }

    /// Waits until no change came for [`QUIET`] and the files hold still.
    async fn settle(&self, rx: &mut tokio::sync::mpsc::Receiver<()>) {
        loop {
            let before = stamps(&self.dir);
            if let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {
                continue;
            }
            if stamps(&self.dir) == before {
                return;
            }
        }
    }

    async fn reload(&self, reported: &mut Vec<RejectedFile>) -> anyhow::Result<()> {
        let (_, current) = self.live.current();
        let (engine, dir, lookups) = (self.engine.clone(), self.dir.clone(), self.lookups.clone());
        let previous = current.clone();
        let set = tokio::task::spawn_blocking(move || {
            PluginSet::reload(&engine, &dir, &lookups, &previous)
        })
        .await??;
        let changes = log_changes(&current, &set, reported);
        reported.clone_from(&set.rejected);
        if changes
            == (ReloadCounts {
                rejected: changes.rejected,
                ..Default::default()
            })
        {
            self.live.count_rejected(changes.rejected);
            return Ok(());
        }
        let tables = crate::assembly::routes(&set, &self.outputs)?;
        self.store.prepare_tables(&tables).await?;
        self.live.publish(set, changes);
        Ok(())
    }
}

/// Logs what `new` changes against `old`, and counts it; of its rejected
/// files, only those not already `reported`.
fn log_changes(old: &PluginSet, new: &PluginSet, reported: &[RejectedFile]) -> ReloadCounts {
    let mut counts = ReloadCounts::default();
    for plugin in new.all() {
        match old.all().find(|o| o.name() == plugin.name()) {
            None => {
                counts.loaded += 1;
                tracing::info!(
                    plugin = %plugin.name(),
                    version = %plugin.version(),
                    file = %plugin.path().display(),
                    "plugin loaded"
                );
            }
            Some(previous) if !previous.same(&plugin) => {
                counts.swapped += 1;
                tracing::info!(
                    plugin = %plugin.name(),
                    old_version = %previous.version(),
                    new_version = %plugin.version(),
                    file = %plugin.path().display(),
                    "plugin swapped"
                );
            }
            Some(_) => {}
        }
    }
    for plugin in old.all() {
        if !new.all().any(|n| n.name() == plugin.name()) {
            counts.removed += 1;
            tracing::info!(
                plugin = %plugin.name(),
                version = %plugin.version(),
                "plugin removed"
            );
        }
    }
    for rejected in &new.rejected {
        if reported.iter().any(|r| r.same(rejected)) {
            continue;
        }
        counts.rejected += 1;
        let kept = new
            .all()
            .find(|p| p.path() == rejected.error.path)
            .map(|p: Shared| format!("; `{}` {} keeps running", p.name(), p.version()))
            .unwrap_or_default();
        tracing::warn!("{rejected}{kept}");
    }
    counts
}

/// The stamps of the directory's plugin files, to tell when copying ends.
fn stamps(dir: &Path) -> Vec<(PathBuf, Option<FileStamp>)> {
    let mut stamps: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .map(|p| {
            let stamp = FileStamp::of(&p);
            (p, stamp)
        })
        .collect();
    stamps.sort_by(|a, b| a.0.cmp(&b.0));
    stamps
}
