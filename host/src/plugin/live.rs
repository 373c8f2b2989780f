//! The plugins a running pipeline uses now. A reload publishes a whole new
//! set under a new generation; each lane compares generations at its batch
//! boundaries and takes the new set over between two batches, so no record
//! is processed by both versions of a plugin or by neither.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::registry::PluginSet;

/// Counts of what reloads did over a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Plugins added.
    pub loaded: u64,
    /// Plugins replaced by another version.
    pub swapped: u64,
    /// Plugins removed.
    pub removed: u64,
    /// Files rejected, each version of a file once (the running version,
    /// if any, kept).
    pub rejected: u64,
}

/// The current plugin set and its generation.
pub struct LivePlugins {
    current: RwLock<(u64, Arc<PluginSet>)>,
    generation: AtomicU64,
    counts: std::sync::Mutex<ReloadCounts>,
}

impl LivePlugins {
    /// Starts at generation 0 with `set`.
    pub fn new(set: PluginSet) -> Self {
        Self {
            current: RwLock::new((0, Arc::new(set))),
            generation: AtomicU64::new(0),
            counts: Default::default(),
        }
    }

    /// The current generation: cheap, for the check at every batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current generation and set.
    pub fn current(&self) -> (u64, Arc<PluginSet>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    /// Makes `set` current, counting what changed.
    pub fn publish(&self, set: PluginSet, changes: ReloadCounts) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let generation = current.0 + 1;
        *current = (generation, Arc::new(set));
        self.generation.store(generation, Ordering::Release);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.loaded += changes.loaded;
        counts.swapped += changes.swapped;
        counts.removed += changes.removed;
        counts.rejected += changes.rejected;
    }

    /// Counts a rejected file that changed nothing else.
    pub fn count_rejected(&self, files: u64) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rejected += files;
    }

    /// What reloads did so far.
    pub fn counts(&self) -> ReloadCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}
