//! The data each plugin instance's store carries, and the host imports
//! (`log`, `state`, `lookup`) implemented on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{log, lookup, state, types};
use crate::lookup::Lookups;

/// Store data of one plugin instance in one lane.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    plugin: Arc<str>,
    lane: Arc<str>,
    lookups: Arc<Lookups>,
    /// The plugin's keyed state in this lane.
    pub state: PluginState,
    /// Memory limit of the instance (set by the engine).
    pub(super) limits: wasmtime::StoreLimits,
    /// Epoch ticks one call may take (set by the engine).
    pub(super) deadline_ticks: u64,
}

impl PluginCtx {
    /// A context for plugin `plugin` in lane `lane`, with no ambient
    /// capabilities: no files, network, environment or arguments; clocks
    /// frozen at the epoch and randomness seeded, so runs are repeatable.
    pub fn new(
        plugin: Arc<str>,
        lane: Arc<str>,
        lookups: Arc<Lookups>,
        state: PluginState,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Seeded(0x5eed))
            .insecure_random(Seeded(0x1e57))
            .insecure_random_seed(0)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            plugin,
            lane,
            lookups,
            state,
            limits: wasmtime::StoreLimits::default(),
            deadline_ticks: u64::MAX,
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

impl PluginCtx {
    /// A fresh context for a new instance of the same plugin in the same
    /// lane, taking over this one's state (after a trap, or on upgrade).
    pub fn renew(&mut self) -> Self {
        let state = std::mem::take(&mut self.state);
        Self::new(
            self.plugin.clone(),
            self.lane.clone(),
            self.lookups.clone(),
            state,
        )
    }
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A plugin's keyed state in one lane, with the keys changed since the last
/// checkpoint.
#[derive(Debug, Default, Clone)]
pub struct PluginState {
    values: HashMap<String, Vec<u8>>,
    changed: HashSet<String>,
    /// What the current batch overwrote, oldest first: key, its value and
    /// whether it was already changed. Undone if the batch fails, so a
    /// retried batch does not count twice.
    undo: Vec<(String, Option<Vec<u8>>, bool)>,
}

/// One state entry changed since the last checkpoint: the new value, or
/// `None` where the key was deleted.
pub type StateChange = (String, Option<Vec<u8>>);

impl PluginState {
    /// State as loaded from a checkpoint.
    pub fn from_stored(values: HashMap<String, Vec<u8>>) -> Self {
        Self {
            values,
            changed: HashSet::new(),
            undo: Vec::new(),
        }
    }

    fn remember(&mut self, key: &str) {
        let old = self.values.get(key).cloned();
        self.undo
            .push((key.to_owned(), old, self.changed.contains(key)));
    }

    /// Keeps what the current batch wrote.
    pub fn commit_batch(&mut self) {
        self.undo.clear();
    }

    /// Undoes what the current batch wrote.
    pub fn roll_back_batch(&mut self) {
        self.roll_back_to(0);
    }

    /// A point of the current batch to roll back to.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes what was written since `mark`.
    pub fn roll_back_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (key, old, was_changed) = self.undo.pop().expect("above the mark");
            if !was_changed {
                self.changed.remove(&key);
            }
            match old {
                Some(value) => self.values.insert(key, value),
                None => self.values.remove(&key),
            };
        }
    }

    /// Takes the entries changed since the last call.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        self.changed
            .drain()
            .map(|key| {
                let value = self.values.get(&key).cloned();
                (key, value)
            })
            .collect()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.values.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: Vec<u8>) {
        self.state.remember(&key);
        self.state.changed.insert(key.clone());
        self.state.values.insert(key, value);
    }

    fn delete(&mut self, key: String) {
        if self.state.values.contains_key(&key) {
            self.state.remember(&key);
            self.state.values.remove(&key);
            self.state.changed.insert(key);
        }
    }
}

impl log::Host for PluginCtx {
    fn log(&mut self, level: types::LogLevel, message: String) {
        let (plugin, lane) = (&*self.plugin, &*self.lane);
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, lane, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, lane, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, lane, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, lane, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, lane, "{message}"),
        }
    }
}

impl lookup::Host for PluginCtx {
    fn get_many(
        &mut self,
        table: String,
        keys: Vec<String>,
        columns: Vec<String>,
    ) -> Result<Vec<Option<Vec<types::Value>>>, String> {
        self.lookups.get_many(&table, &keys, &columns)
    }
}

impl types::Host for PluginCtx {}

/// Wall and monotonic clock that never moves: plugins get time from event
/// fields, which keeps replays deterministic.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A small deterministic generator (splitmix64) for the WASI random imports.
struct Seeded(u64);

impl rand_core::TryRng for Seeded {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pairs: &[(&str, &[u8])]) -> PluginState {
        PluginState::from_stored(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        )
    }

    fn write(s: &mut PluginState, key: &str, value: Option<&[u8]>) {
        s.remember(key);
        s.changed.insert(key.to_owned());
        match value {
            Some(v) => s.values.insert(key.to_owned(), v.to_vec()),
            None => s.values.remove(key),
        };
    }

    #[test]
    fn a_rolled_back_batch_leaves_no_trace() {
        let mut s = state(&[("a", b"1")]);
        write(&mut s, "b", Some(b"x"));
        s.commit_batch();
        let before = (s.values.clone(), s.changed.clone());
        write(&mut s, "a", Some(b"2"));
        write(&mut s, "a", Some(b"3"));
        write(&mut s, "c", Some(b"y"));
        write(&mut s, "b", None);
        s.roll_back_batch();
        assert_eq!((s.values.clone(), s.changed.clone()), before);
    }

    #[test]
    fn a_savepoint_undoes_only_what_came_after_it() {
        let mut s = state(&[]);
        write(&mut s, "a", Some(b"1"));
        let mark = s.savepoint();
        write(&mut s, "a", Some(b"2"));
        write(&mut s, "b", Some(b"3"));
        s.roll_back_to(mark);
        assert_eq!(s.values.get("a").map(Vec::as_slice), Some(&b"1"[..]));
        assert!(!s.values.contains_key("b") && !s.changed.contains("b"));
        assert!(s.changed.contains("a"), "the kept write is still a change");
        s.commit_batch();
        s.roll_back_batch();
        assert_eq!(s.values.get("a").map(Vec::as_slice), Some(&b"1"[..]));
    }
}
