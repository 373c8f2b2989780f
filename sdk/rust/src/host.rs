//! What a plugin reaches of the host: state, timers, lookups and the log,
//! behind one trait so the same code runs on the real host and on the
//! in-memory one of native tests.

use crate::imports::{log, lookup, state, timers};
use crate::{LogLevel, Value};

/// The host's services to a plugin in one lane.
///
/// State is keyed bytes, private to the plugin and the lane, checkpointed
/// with the rows; timers fire through [`crate::Rule::on_timers`] once the
/// lane's watermark reaches them. The provided methods are typed helpers
/// over the raw ones.
pub trait Host {
    /// The value stored under `key`.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key` (dropping any expiry it had).
    fn set(&mut self, key: &str, value: &[u8]);
    /// Stores `value` under `key` until the lane's watermark reaches
    /// `expires_at` (event time, ms since the epoch).
    fn set_expiring(&mut self, key: &str, value: &[u8], expires_at: i64);
    /// Removes `key`.
    fn delete(&mut self, key: &str);
    /// Sets the timer (`key`, `time`); setting it twice is one timer.
    fn set_timer(&mut self, key: &str, time: i64);
    /// Deletes the timer (`key`, `time`), if it is set.
    fn delete_timer(&mut self, key: &str, time: i64);
    /// The values of `columns` for each of `keys` in dimension `table`.
    fn lookup(
        &mut self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Option<Vec<Value>>>, String>;
    /// Writes a line to the host's log.
    fn log(&self, level: LogLevel, message: &str);

    /// An `i64` stored with [`Host::set_i64`]; `None` when absent or not
    /// eight bytes.
    fn get_i64(&self, key: &str) -> Option<i64> {
        let bytes = self.get(key)?;
        Some(i64::from_le_bytes(bytes.as_slice().try_into().ok()?))
    }

    /// Stores an `i64` (eight bytes, little-endian).
    fn set_i64(&mut self, key: &str, value: i64) {
        self.set(key, &value.to_le_bytes());
    }

    /// A `u64` stored with [`Host::set_u64`]; `None` when absent or not
    /// eight bytes.
    fn get_u64(&self, key: &str) -> Option<u64> {
        let bytes = self.get(key)?;
        Some(u64::from_le_bytes(bytes.as_slice().try_into().ok()?))
    }

    /// Stores a `u64` (eight bytes, little-endian).
    fn set_u64(&mut self, key: &str, value: u64) {
        self.set(key, &value.to_le_bytes());
    }

    /// Adds `delta` to the counter under `key` (absent: 0) and returns the
    /// new value; a counter that reaches 0 is deleted, so counters that
    /// come and go leave no state behind.
    fn add_i64(&mut self, key: &str, delta: i64) -> i64 {
        let value = self.get_i64(key).unwrap_or(0).wrapping_add(delta);
        if value == 0 {
            self.delete(key);
        } else {
            self.set_i64(key, value);
        }
        value
    }
}

/// The real host, through the component's imports. Only usable inside
/// Wasm; native tests use [`crate::testing::MemoryHost`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Imports;

impl Host for Imports {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        state::set(key, value);
    }

    fn set_expiring(&mut self, key: &str, value: &[u8], expires_at: i64) {
        state::set_expiring(key, value, expires_at);
    }

    fn delete(&mut self, key: &str) {
        state::delete(key);
    }

    fn set_timer(&mut self, key: &str, time: i64) {
        timers::set(key, time);
    }

    fn delete_timer(&mut self, key: &str, time: i64) {
        timers::delete(key, time);
    }

    fn lookup(
        &mut self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Option<Vec<Value>>>, String> {
        lookup::get_many(table, keys, columns)
    }

    fn log(&self, level: LogLevel, message: &str) {
        log::log(level, message);
    }
}
