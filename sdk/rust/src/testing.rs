//! An in-memory host, and a driver that runs a rule over batches the way
//! Apiary does (watermarks, timers, expiring state), for native tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    Event, EventBatch, EventBody, FiredTimer, Host, LogLevel, OutputRows, Rejection, Rule, Span,
    Value,
};

/// State, timers and lookup tables in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryHost {
    state: BTreeMap<String, (Vec<u8>, Option<i64>)>,
    timers: BTreeSet<(i64, String)>,
    tables: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    logged: RefCell<Vec<String>>,
}

impl MemoryHost {
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row to dimension table `table` for [`Host::lookup`].
    pub fn with_row(mut self, table: &str, key: &str, columns: &[(&str, Value)]) -> Self {
        let row = columns
            .iter()
            .map(|(c, v)| ((*c).to_owned(), v.clone()))
            .collect();
        self.tables
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_owned(), row);
        self
    }

    /// The state keys, in order.
    pub fn state_keys(&self) -> impl Iterator<Item = &str> {
        self.state.keys().map(String::as_str)
    }

    /// How many state entries there are.
    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    /// Keys and values of all state entries, in bytes.
    pub fn state_bytes(&self) -> usize {
        self.state.iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }

    /// The expiry of `key`, if it has one.
    pub fn expiry(&self, key: &str) -> Option<i64> {
        self.state.get(key).and_then(|(_, e)| *e)
    }

    /// The timers set, in time order.
    pub fn timers(&self) -> impl Iterator<Item = (i64, &str)> {
        self.timers.iter().map(|(t, k)| (*t, k.as_str()))
    }

    /// What was logged, as `LEVEL message` lines.
    pub fn logged(&self) -> Vec<String> {
        self.logged.borrow().clone()
    }

    /// Moves to `watermark`: removes the state entries it expires and
    /// returns the timers it fires, in time then key order. The host fires
    /// timers before it expires state: a rule whose `on-timers` reads
    /// entries expiring at the same watermark is tested with
    /// [`MemoryHost::take_due`], then [`MemoryHost::expire`] (as
    /// [`Driver`] does).
    pub fn advance(&mut self, watermark: i64) -> Vec<FiredTimer> {
        self.expire(watermark);
        self.take_due(watermark)
    }

    /// Removes the state entries that expire at or before `watermark`.
    pub fn expire(&mut self, watermark: i64) {
        self.state
            .retain(|_, (_, expiry)| expiry.is_none_or(|at| at > watermark));
    }

    /// Removes and returns the timers at or before `watermark`, in time
    /// then key order.
    pub fn take_due(&mut self, watermark: i64) -> Vec<FiredTimer> {
        let due: Vec<(i64, String)> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= watermark)
            .cloned()
            .collect();
        for timer in &due {
            self.timers.remove(timer);
        }
        due.into_iter()
            .map(|(time, key)| FiredTimer { key, time })
            .collect()
    }
}

impl Host for MemoryHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).map(|(v, _)| v.clone())
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        self.state.insert(key.to_owned(), (value.to_vec(), None));
    }

    fn set_expiring(&mut self, key: &str, value: &[u8], expires_at: i64) {
        self.state
            .insert(key.to_owned(), (value.to_vec(), Some(expires_at)));
    }

    fn delete(&mut self, key: &str) {
        self.state.remove(key);
    }

    fn set_timer(&mut self, key: &str, time: i64) {
        self.timers.insert((time, key.to_owned()));
    }

    fn delete_timer(&mut self, key: &str, time: i64) {
        self.timers.remove(&(time, key.to_owned()));
    }

    fn lookup(
        &mut self,
        table: &str,
        keys: &[String],
        columns: &[String],
    ) -> Result<Vec<Option<Vec<Value>>>, String> {
        let rows = self
            .tables
            .get(table)
            .ok_or_else(|| format!("no lookup table `{table}`"))?;
        Ok(keys
            .iter()
            .map(|k| {
                rows.get(k).map(|row| {
                    columns
                        .iter()
                        .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
                        .collect()
                })
            })
            .collect())
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logged
            .borrow_mut()
            .push(format!("{level:?} {message}"));
    }
}

/// What a batch, or a move of the watermark, produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows from `process`, then from `on-timers`, per output.
    pub rows: Vec<OutputRows>,
    /// Events refused by `process`.
    pub rejected: Vec<Rejection>,
}

impl Outcome {
    /// The rows of `output`, split into rows of `width` cells.
    pub fn rows_of_width(&self, output: &str, width: usize) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .filter(|r| r.output == output)
            .flat_map(|r| r.cells.chunks(width.max(1)).map(<[Value]>::to_vec))
            .collect()
    }
}

/// Runs a rule over batches as the host does: each batch is processed
/// with the lane's watermark before it; the watermark then moves to the
/// batch's largest event time minus the allowed lateness minus 1 ms (never
/// backward), due timers fire, again while `on_timers` sets timers that
/// are already due, and then expired state goes.
pub struct Driver<R: Rule> {
    /// The rule under test.
    pub rule: R,
    /// Its host.
    pub host: MemoryHost,
    /// The lane's watermark.
    pub watermark: Option<i64>,
    lateness: i64,
    /// The text of the next batch's events.
    text: String,
}

impl<R: Rule> Driver<R> {
    /// A driver for `rule` with `lateness` ms of allowed lateness.
    pub fn new(rule: R, lateness: i64) -> Self {
        Self {
            rule,
            host: MemoryHost::new(),
            watermark: None,
            lateness,
            text: String::new(),
        }
    }

    /// Lays out `s` in the next batch's text: the span an event of that
    /// batch reads it by.
    pub fn text(&mut self, s: &str) -> Span {
        Span::push(&mut self.text, s)
    }

    /// Processes one batch of `(event time, body)` events, with the text
    /// laid out by [`Driver::text`] since the last batch.
    pub fn batch(&mut self, events: Vec<(Option<i64>, EventBody)>) -> Outcome {
        let mut batch = batch(events, self.watermark);
        batch.text = std::mem::take(&mut self.text);
        let max_time = batch.events.iter().filter_map(|e| e.time).max();
        let out = self.rule.process(batch, &mut self.host);
        let mut outcome = Outcome {
            rows: out.rows,
            rejected: out.rejected,
        };
        if let Some(max) = max_time {
            let candidate = max.saturating_sub(self.lateness).saturating_sub(1);
            if self.watermark.is_none_or(|w| candidate > w) {
                outcome.rows.extend(self.advance_to(candidate).rows);
            }
        }
        outcome
    }

    /// Moves the watermark to `watermark` (if ahead) and fires what is due.
    pub fn advance_to(&mut self, watermark: i64) -> Outcome {
        let mut outcome = Outcome::default();
        if self.watermark.is_some_and(|w| w >= watermark) {
            return outcome;
        }
        self.watermark = Some(watermark);
        loop {
            let fired = self.host.take_due(watermark);
            if fired.is_empty() {
                self.host.expire(watermark);
                return outcome;
            }
            outcome
                .rows
                .extend(self.rule.on_timers(fired, watermark, &mut self.host));
        }
    }
}

/// An event batch of `(event time, body)` events, record indexes from 0,
/// with no text.
pub fn batch(events: Vec<(Option<i64>, EventBody)>, watermark: Option<i64>) -> EventBatch {
    EventBatch {
        topic: "test".into(),
        platform: "test".into(),
        text: String::new(),
        events: (0..)
            .zip(events)
            .map(|(record_index, (time, body))| Event {
                record_index,
                time,
                body,
            })
            .collect(),
        watermark,
    }
}
