//! The data each plugin instance's store carries, and the host imports
//! (`log`, `state`, `lookup`) implemented on it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::lookup::Lookups;
use crate::model::wit::{log, lookup, state, timers, types, v1, v3};
use crate::model::{StateChange, StoredState, StoredValue, TimerChange};

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
    /// The same limit in bytes: also the most text a parser's spans may
    /// make the host copy out of one batch.
    pub(super) memory_limit: usize,
    /// Epoch ticks one call may take (set by the engine).
    pub(super) deadline_ticks: u64,
    /// Limits of the plugin's state (set by the engine).
    pub(super) state_limits: StateLimits,
    /// Log lines the plugin may still write now, and when that was counted.
    log_budget: (f64, std::time::Instant),
    /// Log lines per second (set by the engine).
    log_rate: u32,
    /// Log lines dropped since the last report.
    log_dropped: u64,
    /// The end of what the plugin wrote to stderr.
    stderr: super::stderr::StderrTail,
}

/// Longest state or timer key, in bytes: the host's tables store keys in
/// `VARCHAR(255)` columns (MySQL), so a longer key traps at once instead
/// of failing the lane's checkpoint.
pub const MAX_KEY_BYTES: usize = crate::dialect::KEY_LEN;

/// Refuses a key longer than [`MAX_KEY_BYTES`].
fn check_key(what: &str, key: &str) -> anyhow::Result<()> {
    if key.len() > MAX_KEY_BYTES {
        anyhow::bail!(
            "{what} key of {} bytes (`{}…`) is over the limit of {MAX_KEY_BYTES} bytes",
            key.len(),
            crate::text::printable(&key[..key.floor_char_boundary(32)])
        );
    }
    Ok(())
}

/// Bytes the host holds for a plugin's state, at most.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// One value.
    pub value: usize,
    /// Keys and values written between two checkpoints.
    pub written: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            value: usize::MAX,
            written: usize::MAX,
        }
    }
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
        let stderr = super::stderr::StderrTail::default();
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Seeded(0x5eed))
            .insecure_random(Seeded(0x1e57))
            .insecure_random_seed(0)
            .stderr(stderr.clone())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            plugin,
            lane,
            lookups,
            state,
            limits: wasmtime::StoreLimits::default(),
            memory_limit: usize::MAX,
            deadline_ticks: u64::MAX,
            state_limits: StateLimits::default(),
            log_budget: (f64::from(u32::MAX), std::time::Instant::now()),
            log_rate: u32::MAX,
            log_dropped: 0,
            stderr,
        }
    }

    /// A trap's message, with the plugin's panic message first when its
    /// stderr holds one.
    pub fn trap_message(&self, trap: &wasmtime::Error) -> String {
        let stderr = self.stderr.take();
        match super::stderr::StderrTail::panic_message(&stderr) {
            Some(panic) => format!("{panic}; {trap:#}"),
            None => format!("{trap:#}"),
        }
    }

    /// Sets the log lines per second the plugin may write.
    pub(super) fn set_log_rate(&mut self, rate: u32) {
        self.log_rate = rate;
        self.log_budget = (f64::from(rate), std::time::Instant::now());
    }

    /// Takes the count of log lines dropped since the last call.
    pub fn take_log_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.log_dropped)
    }

    /// Whether one more log line fits the rate now (a token bucket that
    /// holds a second's worth of lines).
    fn log_admitted(&mut self) -> bool {
        let (budget, at) = &mut self.log_budget;
        let rate = f64::from(self.log_rate);
        let now = std::time::Instant::now();
        *budget = (*budget + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *budget >= 1.0 {
            *budget -= 1.0;
            true
        } else {
            self.log_dropped += 1;
            false
        }
    }

    /// Checks a state write against the plugin's limits: over them the
    /// plugin traps.
    fn check_state_write(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        check_key("state", key)?;
        let limits = self.state_limits;
        if value.len() > limits.value {
            anyhow::bail!(
                "state value of {} bytes under key `{}` is over the plugin's state-value-limit \
                 of {} bytes",
                value.len(),
                crate::text::printable(&crate::text::bounded(key.to_owned(), 64)),
                limits.value
            );
        }
        let written = self.state.written() + key.len() + value.len();
        if written > limits.written {
            anyhow::bail!(
                "the plugin wrote {written} bytes of state in this lane since the last \
                 checkpoint, over its state-write-limit of {} bytes",
                limits.written
            );
        }
        Ok(())
    }

    /// Whether the plugin has written half its state-write-limit since the
    /// last checkpoint: the lane should checkpoint.
    pub fn state_write_due(&self) -> bool {
        self.state.written() >= self.state_limits.written / 2
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
        let mut renewed = Self::new(
            self.plugin.clone(),
            self.lane.clone(),
            self.lookups.clone(),
            state,
        );
        renewed.log_rate = self.log_rate;
        renewed.log_budget = self.log_budget;
        renewed.log_dropped = std::mem::take(&mut self.log_dropped);
        renewed
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

/// A plugin's keyed state and event-time timers in one lane, with what
/// changed since the last checkpoint.
#[derive(Debug, Default, Clone)]
pub struct PluginState {
    values: HashMap<String, StoredValue>,
    /// Entries with an expiry, by expiry.
    expiring: BTreeSet<(i64, String)>,
    changed: HashSet<String>,
    /// Timers by time, then key.
    timers: BTreeSet<(i64, String)>,
    timers_changed: HashSet<(i64, String)>,
    /// Bytes of keys and values held.
    bytes: usize,
    /// Bytes of keys and values written since the last checkpoint.
    written: usize,
    /// What the current batch overwrote, oldest first. Undone if the batch
    /// fails, so a retried batch does not count twice.
    undo: Vec<Undo>,
}

/// One write of the current batch, as it can be undone.
#[derive(Debug, Clone)]
enum Undo {
    /// A value was written or removed: what it was, whether it was
    /// already changed since the last checkpoint, and the bytes written
    /// since the checkpoint before it.
    Value(String, Option<StoredValue>, bool, usize),
    /// A timer was set or deleted: whether it was there, and whether it
    /// was already changed since the last checkpoint.
    Timer((i64, String), bool, bool),
}

impl From<StoredState> for PluginState {
    /// State and timers as loaded from a checkpoint.
    fn from(stored: StoredState) -> Self {
        let mut state = Self {
            timers: stored.timers.into_iter().collect(),
            ..Self::default()
        };
        for (key, value) in stored.values {
            state.put(key, Some(value));
        }
        state
    }
}

impl PluginState {
    /// Writes or removes `key` without recording it; returns what was there.
    fn put(&mut self, key: String, value: Option<StoredValue>) -> Option<StoredValue> {
        let old = match value {
            Some(value) => {
                self.bytes += key.len() + value.value.len();
                if let Some(at) = value.expires {
                    self.expiring.insert((at, key.clone()));
                }
                self.values.insert(key.clone(), value)
            }
            None => self.values.remove(&key),
        };
        if let Some(old) = &old {
            self.bytes -= key.len() + old.value.len();
            if let Some(at) = old.expires {
                self.expiring.remove(&(at, key));
            }
        }
        old
    }

    /// Writes or removes `key`, recording the change and how to undo it.
    fn write(&mut self, key: String, value: Option<StoredValue>) {
        let was_changed = !self.changed.insert(key.clone());
        let written = self.written;
        self.written += key.len() + value.as_ref().map_or(0, |v| v.value.len());
        let old = self.put(key.clone(), value);
        self.undo.push(Undo::Value(key, old, was_changed, written));
    }

    /// Sets or deletes a timer, recording the change and how to undo it.
    fn write_timer(&mut self, timer: (i64, String), set: bool) {
        let was_set = if set {
            !self.timers.insert(timer.clone())
        } else {
            self.timers.remove(&timer)
        };
        if was_set == set {
            return;
        }
        let was_changed = !self.timers_changed.insert(timer.clone());
        self.undo.push(Undo::Timer(timer, was_set, was_changed));
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(|v| v.value.as_slice())
    }

    /// Stores `value` under `key`, expiring at `expires` if given.
    pub fn set(&mut self, key: String, value: Vec<u8>, expires: Option<i64>) {
        self.write(key, Some(StoredValue { value, expires }));
    }

    /// Removes `key`, if present.
    pub fn delete(&mut self, key: &str) {
        if self.values.contains_key(key) {
            self.write(key.to_owned(), None);
        }
    }

    /// Sets the timer of `key` at `time`.
    pub fn set_timer(&mut self, key: String, time: i64) {
        self.write_timer((time, key), true);
    }

    /// Deletes the timer of `key` at `time`, if set.
    pub fn delete_timer(&mut self, key: String, time: i64) {
        self.write_timer((time, key), false);
    }

    /// Removes the entries whose expiry the watermark has reached.
    pub fn expire(&mut self, watermark: i64) {
        while let Some((at, key)) = self.expiring.first().cloned() {
            if at > watermark {
                break;
            }
            self.write(key, None);
        }
    }

    /// Takes the timers the watermark has reached, in time and key order,
    /// at most `max`: they have fired.
    pub fn take_due(&mut self, watermark: i64, max: usize) -> Vec<(i64, String)> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.timers.first() {
                Some((time, _)) if *time <= watermark => {
                    let timer = self.timers.first().cloned().expect("checked above");
                    self.write_timer(timer.clone(), false);
                    due.push(timer);
                }
                _ => break,
            }
        }
        due
    }

    /// Whether a timer is due at `watermark`.
    pub fn has_due(&self, watermark: i64) -> bool {
        self.timers.first().is_some_and(|(t, _)| *t <= watermark)
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
            match self.undo.pop().expect("above the mark") {
                Undo::Value(key, old, was_changed, written) => {
                    if !was_changed {
                        self.changed.remove(&key);
                    }
                    self.written = written;
                    self.put(key, old);
                }
                Undo::Timer(timer, was_set, was_changed) => {
                    if !was_changed {
                        self.timers_changed.remove(&timer);
                    }
                    if was_set {
                        self.timers.insert(timer);
                    } else {
                        self.timers.remove(&timer);
                    }
                }
            }
        }
    }

    /// Takes the entries changed since the last call (a checkpoint).
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        self.written = 0;
        self.changed
            .drain()
            .map(|key| {
                let value = self.values.get(&key).cloned();
                (key, value)
            })
            .collect()
    }

    /// Takes the timers changed since the last call.
    pub fn take_timer_changes(&mut self) -> Vec<TimerChange> {
        self.timers_changed
            .drain()
            .map(|(time, key)| {
                let set = self.timers.contains(&(time, key.clone()));
                (time, key, set)
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

    /// Bytes of the keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes of keys and values written since the last checkpoint.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Number of timers set.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

impl state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.get(&key).map(<[u8]>::to_vec)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<()> {
        self.check_state_write(&key, &value)?;
        self.state.set(key, value, None);
        Ok(())
    }

    fn set_expiring(&mut self, key: String, value: Vec<u8>, expires_at: i64) -> anyhow::Result<()> {
        self.check_state_write(&key, &value)?;
        self.state.set(key, value, Some(expires_at));
        Ok(())
    }

    fn delete(&mut self, key: String) {
        self.state.delete(&key);
    }
}

impl timers::Host for PluginCtx {
    fn set(&mut self, key: String, time: i64) -> anyhow::Result<()> {
        check_key("timer", &key)?;
        self.state.set_timer(key, time);
        Ok(())
    }

    fn delete(&mut self, key: String, time: i64) {
        self.state.delete_timer(key, time);
    }
}

/// The 0.1.0 state import is the 0.2.0 one without expiry.
impl v1::state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        state::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<()> {
        state::Host::set(self, key, value)
    }

    fn delete(&mut self, key: String) {
        state::Host::delete(self, key)
    }
}

impl v1::log::Host for PluginCtx {
    fn log(&mut self, level: v1::types::LogLevel, message: String) {
        log::Host::log(self, level.into(), message);
    }
}

impl PluginCtx {
    /// `lookup.get-many`'s rows with their values as another contract
    /// version's type.
    fn lookup_rows<V: From<types::Value>>(
        &self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Option<Vec<V>>>, String> {
        let rows = self.lookups.get_many(table, keys, columns)?;
        Ok(rows
            .into_iter()
            .map(|row| row.map(|cells| cells.into_iter().map(Into::into).collect()))
            .collect())
    }
}

impl v1::lookup::Host for PluginCtx {
    fn get_many(
        &mut self,
        table: String,
        keys: Vec<String>,
        columns: Vec<String>,
    ) -> Result<Vec<Option<Vec<v1::types::Value>>>, String> {
        self.lookup_rows(&table, &keys, &columns)
    }
}

impl v1::types::Host for PluginCtx {}

/// The 0.3.0 imports are the 0.2.0 ones.
impl v3::state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        state::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<()> {
        state::Host::set(self, key, value)
    }

    fn set_expiring(&mut self, key: String, value: Vec<u8>, expires_at: i64) -> anyhow::Result<()> {
        state::Host::set_expiring(self, key, value, expires_at)
    }

    fn delete(&mut self, key: String) {
        state::Host::delete(self, key)
    }
}

impl v3::timers::Host for PluginCtx {
    fn set(&mut self, key: String, time: i64) -> anyhow::Result<()> {
        timers::Host::set(self, key, time)
    }

    fn delete(&mut self, key: String, time: i64) {
        timers::Host::delete(self, key, time)
    }
}

impl v3::log::Host for PluginCtx {
    fn log(&mut self, level: v3::types::LogLevel, message: String) {
        log::Host::log(self, level.into(), message);
    }
}

impl v3::lookup::Host for PluginCtx {
    fn get_many(
        &mut self,
        table: String,
        keys: Vec<String>,
        columns: Vec<String>,
    ) -> Result<Vec<Option<Vec<v3::types::Value>>>, String> {
        self.lookup_rows(&table, &keys, &columns)
    }
}

impl v3::types::Host for PluginCtx {}

impl log::Host for PluginCtx {
    fn log(&mut self, level: types::LogLevel, message: String) {
        if !self.log_admitted() {
            return;
        }
        let message = crate::text::bounded(message, crate::text::MAX_LOG_BYTES);
        let message = crate::text::printable(&message);
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
        PluginState::from(StoredState {
            values: pairs
                .iter()
                .map(|(k, v)| {
                    let value = StoredValue {
                        value: v.to_vec(),
                        expires: None,
                    };
                    (k.to_string(), value)
                })
                .collect(),
            timers: Vec::new(),
        })
    }

    fn write(s: &mut PluginState, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => s.set(key.to_owned(), v.to_vec(), None),
            None => s.delete(key),
        }
    }

    fn snapshot(s: &PluginState) -> impl PartialEq + std::fmt::Debug + use<> {
        let mut values: Vec<_> = s.values.clone().into_iter().collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let mut changed: Vec<_> = s.changed.iter().cloned().collect();
        changed.sort();
        let mut timers_changed: Vec<_> = s.timers_changed.iter().cloned().collect();
        timers_changed.sort();
        (
            values,
            changed,
            s.timers.clone(),
            timers_changed,
            s.expiring.clone(),
            s.bytes,
        )
    }

    #[test]
    fn a_rolled_back_batch_leaves_no_trace() {
        let mut s = state(&[("a", b"1")]);
        write(&mut s, "b", Some(b"x"));
        s.set_timer("t".into(), 5);
        s.commit_batch();
        let before = snapshot(&s);
        write(&mut s, "a", Some(b"2"));
        write(&mut s, "a", Some(b"3"));
        write(&mut s, "c", Some(b"y"));
        s.set("e".into(), b"z".to_vec(), Some(10));
        write(&mut s, "b", None);
        s.set_timer("u".into(), 7);
        assert_eq!(s.take_due(6, 10), vec![(5, "t".to_string())]);
        s.expire(20);
        s.roll_back_batch();
        assert_eq!(snapshot(&s), before);
    }

    #[test]
    fn a_savepoint_undoes_only_what_came_after_it() {
        let mut s = state(&[]);
        write(&mut s, "a", Some(b"1"));
        let mark = s.savepoint();
        write(&mut s, "a", Some(b"2"));
        write(&mut s, "b", Some(b"3"));
        s.roll_back_to(mark);
        assert_eq!(s.get("a"), Some(&b"1"[..]));
        assert!(!s.values.contains_key("b") && !s.changed.contains("b"));
        assert!(s.changed.contains("a"), "the kept write is still a change");
        s.commit_batch();
        s.roll_back_batch();
        assert_eq!(s.get("a"), Some(&b"1"[..]));
    }

    #[test]
    fn entries_expire_with_the_watermark_and_bytes_follow() {
        let mut s = state(&[("kept", b"12345")]);
        s.set("old".into(), b"ab".to_vec(), Some(100));
        s.set("new".into(), b"cd".to_vec(), Some(200));
        assert_eq!(s.bytes(), 4 + 5 + 3 + 2 + 3 + 2);
        s.expire(99);
        assert_eq!(s.len(), 3);
        s.expire(100);
        assert_eq!(s.get("old"), None);
        assert_eq!(s.get("new"), Some(&b"cd"[..]));
        // Overwritten without an expiry, an entry no longer expires.
        s.set("new".into(), b"cd".to_vec(), None);
        s.expire(i64::MAX);
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 4 + 5 + 3 + 2);
        let mut changes = s.take_changes();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(changes[1], ("old".to_string(), None));
    }

    #[test]
    fn timers_fire_once_in_time_then_key_order() {
        let mut s = state(&[]);
        s.set_timer("b".into(), 10);
        s.set_timer("a".into(), 10);
        s.set_timer("a".into(), 10);
        s.set_timer("c".into(), 5);
        s.set_timer("d".into(), 30);
        s.delete_timer("d".into(), 30);
        assert_eq!(s.timer_count(), 3);
        let due = s.take_due(10, 100);
        assert_eq!(
            due,
            vec![(5, "c".into()), (10, "a".into()), (10, "b".into())]
        );
        assert!(s.take_due(10, 100).is_empty());
        assert!(s.take_timer_changes().iter().all(|(_, _, set)| !set));
    }
}
