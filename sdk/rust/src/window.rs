//! Event-time windows on state and timers, with Flink's semantics.
//!
//! A window is `[start, end)` in event time (ms since the epoch). It fires
//! once, when the lane's watermark reaches `end - 1`: its timer is set for
//! that time and [`crate::Rule::on_timers`] hands it to [`Hopping::fire`]
//! or [`Sessions::fire`], which return the window's result and remove its
//! state. An event is late for a window that has fired; it counts in the
//! windows it belongs to that are still open, and is refused only when it
//! is late for all of them, with a [`Late`] reason saying by how much.
//!
//! - [`Hopping`] (sliding) windows of `size` every `slide`, starts aligned
//!   to multiples of `slide` since the epoch; [`Hopping::tumbling`] is the
//!   case `slide == size`. They keep one state entry per *pane*, a slice
//!   of `gcd(size, slide)`: an event updates its one pane, a window's
//!   result is its panes merged when it fires, and a pane goes when the
//!   last window containing it fires. A 6 h window sliding every 5 min
//!   thus costs one state update per event, not 72.
//! - [`Sessions`] of activity separated by at least `gap`: an event opens
//!   `[time, time + gap)`, and windows that overlap or touch merge.
//!
//! Windows can also be kept for a while after they fire
//! ([`Hopping::with_lateness`], [`Sessions::with_lateness`], Flink's
//! `allowedLateness`): an event late for a fired window within that time
//! still counts, and the batch's `commit` returns the window's [`Update`],
//! its value now and what the late events added, so a result can be
//! corrected after it was shown.
//!
//! Each window set works on a [`Host`] in a batch: [`Hopping::batch`] or
//! [`Sessions::batch`] takes the batch's events and `commit` writes the
//! state and timers once per touched pane or key. The state and timer
//! keys start with the window set's name, so a rule may have several.
//!
//! Changing `size`, `slide` or `gap` of a running rule leaves its stored
//! panes and timers under the old layout: give the new windows another
//! name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use crate::{FiredTimer, Host, LogLevel};

/// A mergeable aggregate kept in state: a pane's or a window's value.
pub trait Accumulator: Default + Sized {
    /// What one event adds.
    type Input;
    /// Adds one event's input.
    fn add(&mut self, input: Self::Input);
    /// Adds another accumulator's contents.
    fn merge(&mut self, other: &Self);
    /// The bytes stored in state.
    fn encode(&self) -> Vec<u8>;
    /// Reads what [`Accumulator::encode`] wrote; `None` if it is not that.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// A sum of `i64` values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sum(pub i64);

impl Accumulator for Sum {
    type Input = i64;

    fn add(&mut self, input: i64) {
        self.0 = self.0.wrapping_add(input);
    }

    fn merge(&mut self, other: &Self) {
        self.0 = self.0.wrapping_add(other.0);
    }

    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self(i64::from_le_bytes(bytes.try_into().ok()?)))
    }
}

/// A count of events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub i64);

impl Accumulator for Count {
    type Input = ();

    fn add(&mut self, (): ()) {
        self.0 = self.0.wrapping_add(1);
    }

    fn merge(&mut self, other: &Self) {
        self.0 = self.0.wrapping_add(other.0);
    }

    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self(i64::from_le_bytes(bytes.try_into().ok()?)))
    }
}

/// Why an event counts in no window: every window it belongs to has
/// fired. Its text is the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// The event's time.
    pub time: i64,
    /// The lane's watermark when it arrived.
    pub watermark: i64,
    /// The last window it belonged to, `[start, end)`, which has fired.
    pub window: (i64, i64),
    /// How long, in ms of event time, that window was kept after it fired
    /// ([`Hopping::with_lateness`]); 0 for most windows.
    pub lateness: i64,
}

impl Late {
    /// How late the event is, in ms: `watermark + 1 - time`, i.e. how much
    /// more out of order it came than the allowed lateness lets through
    /// (the watermark trails the largest event time by the lateness + 1).
    pub fn by(&self) -> i64 {
        self.watermark.saturating_add(1).saturating_sub(self.time)
    }
}

impl fmt::Display for Late {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "late by {} ms: event time {} is at or behind the watermark {}, and its last window [{}, {}) has fired",
            self.by(),
            self.time,
            self.watermark,
            self.window.0,
            self.window.1
        )?;
        if self.lateness > 0 {
            write!(
                f,
                " and its allowed lateness of {} ms has passed",
                self.lateness
            )?;
        }
        Ok(())
    }
}

/// Why an event cannot be placed in any window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Every window it belongs to has fired.
    Late(Late),
    /// Its time is so close to the ends of `i64` that a window around it
    /// cannot be expressed.
    OutOfRange(i64),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Late(late) => late.fmt(f),
            Refused::OutOfRange(time) => {
                write!(f, "event time {time} is out of range for windows")
            }
        }
    }
}

/// A window that late events changed after the watermark passed its end,
/// within its allowed lateness ([`Hopping::with_lateness`],
/// [`Sessions::with_lateness`]). A window that had no event then never
/// fired: its first update is its first result (`value` and `added` are
/// then the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<A> {
    /// The key the events were added under.
    pub key: String,
    /// The window's start (inclusive).
    pub start: i64,
    /// The window's end (exclusive).
    pub end: i64,
    /// Its merged value now, the late events included: what a `replace`
    /// column writes.
    pub value: A,
    /// What the batch's late events added to it: what an `add` column
    /// writes.
    pub added: A,
}

/// The reason windowed rules give for an event without a time.
pub const NO_EVENT_TIME: &str = "the event has no event time, so it belongs to no window";

/// A window that fired: its key, bounds and merged value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired<A> {
    /// The key the events were added under.
    pub key: String,
    /// The window's start (inclusive).
    pub start: i64,
    /// The window's end (exclusive).
    pub end: i64,
    /// The events' merged value.
    pub value: A,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') {
        Err(format!(
            "window name {name:?}: use a non-empty name without `/`"
        ))
    } else {
        Ok(())
    }
}

/// `lateness` if it can be an allowed lateness (not negative).
fn check_lateness(lateness: i64) -> Result<i64, String> {
    if lateness < 0 {
        Err(format!(
            "allowed lateness of {lateness} ms: it must not be negative"
        ))
    } else {
        Ok(lateness)
    }
}

/// The watermark at which a window ending at `end` and kept `lateness` ms
/// after it fires is let go: it takes late events while the watermark is
/// below it.
fn kept_until(end: i64, lateness: i64) -> i64 {
    (end - 1).saturating_add(lateness)
}

/// Reads an accumulator from state; what cannot be read is logged and
/// counts as empty, so a corrupt entry costs its own value only.
fn load<A: Accumulator>(host: &impl Host, key: &str) -> Option<A> {
    let bytes = host.get(key)?;
    match A::decode(&bytes) {
        Some(acc) => Some(acc),
        None => {
            host.log(
                LogLevel::Warn,
                &format!("window state `{key}` cannot be read; counted as empty"),
            );
            Some(A::default())
        }
    }
}

/// Hopping (sliding) windows of `size` ms starting every `slide` ms, over
/// panes of `gcd(size, slide)` ms. Tumbling windows are hopping windows
/// whose slide is their size.
#[derive(Debug, Clone)]
pub struct Hopping<A> {
    name: String,
    size: i64,
    slide: i64,
    pane: i64,
    lateness: i64,
    acc: PhantomData<fn() -> A>,
}

impl<A: Accumulator> Hopping<A> {
    /// Windows `[k * slide, k * slide + size)`, named `name` in state and
    /// timer keys. `size` and `slide` are positive and `slide <= size`.
    pub fn new(name: &str, size: i64, slide: i64) -> Result<Self, String> {
        check_name(name)?;
        if size <= 0 || slide <= 0 || slide > size {
            return Err(format!(
                "windows of {size} ms every {slide} ms: the size and slide must be positive and the slide at most the size"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            size,
            slide,
            pane: gcd(size, slide),
            lateness: 0,
            acc: PhantomData,
        })
    }

    /// Keeps each window `lateness` ms of event time after it fires, as
    /// Flink's `allowedLateness`: until the watermark passes its end - 1 +
    /// `lateness`, an event late for it still counts in it, and the batch's
    /// [`HoppingBatch::commit`] returns the window's [`Update`]. Its panes
    /// are then state that expires with the watermark.
    pub fn with_lateness(mut self, lateness: i64) -> Result<Self, String> {
        self.lateness = check_lateness(lateness)?;
        Ok(self)
    }

    /// How long a window is kept after it fires, in ms.
    pub fn lateness(&self) -> i64 {
        self.lateness
    }

    /// Tumbling windows `[k * size, (k + 1) * size)`.
    pub fn tumbling(name: &str, size: i64) -> Result<Self, String> {
        Self::new(name, size, size)
    }

    /// The window size in ms.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The slide in ms.
    pub fn slide(&self) -> i64 {
        self.slide
    }

    /// The pane length in ms: `gcd(size, slide)`.
    pub fn pane(&self) -> i64 {
        self.pane
    }

    /// The windows containing `time`, latest start first, as
    /// `(start, end)`; none if `time` is too close to the ends of `i64`.
    pub fn windows_of(&self, time: i64) -> impl Iterator<Item = (i64, i64)> + use<A> {
        let (size, slide) = (self.size, self.slide);
        let last = time.div_euclid(slide).checked_mul(slide);
        let first = time.checked_sub(size);
        let starts = match (last, first) {
            (Some(last), Some(_)) if last.checked_add(size).is_some() => Some(last),
            _ => None,
        };
        let mut next = starts;
        std::iter::from_fn(move || {
            let start = next?;
            // Starts go down by `slide` while the window still holds `time`.
            next = start.checked_sub(slide).filter(|&s| s > time - size);
            Some((start, start + size))
        })
    }

    /// Starts a batch; `watermark` is the batch's (the lane's before it).
    pub fn batch(&self, watermark: Option<i64>) -> HoppingBatch<'_, A> {
        HoppingBatch {
            windows: self,
            watermark,
            panes: BTreeMap::new(),
            updated: BTreeSet::new(),
        }
    }

    fn timer_key(&self, key: &str) -> String {
        format!("{}/{key}", self.name)
    }

    fn pane_key(&self, key: &str, pane: i64) -> String {
        format!("{}/{pane}/{key}", self.name)
    }

    /// The merged panes of `key`'s window `[start, end)`.
    fn merged(&self, host: &impl Host, key: &str, start: i64, end: i64) -> A {
        let mut value = A::default();
        let mut pane = start.div_euclid(self.pane) * self.pane;
        while pane < end {
            if let Some(acc) = load::<A>(host, &self.pane_key(key, pane)) {
                value.merge(&acc);
            }
            pane += self.pane;
        }
        value
    }

    /// With lateness, when pane `pane` expires: once the last window
    /// holding it (the one starting in the same slide) can take no more
    /// late events.
    fn pane_expires(&self, pane: i64) -> i64 {
        let last_end = (pane.div_euclid(self.slide) * self.slide).saturating_add(self.size);
        kept_until(last_end, self.lateness)
    }

    /// Writes pane `pane` under `state_key`; with lateness, as expiring.
    fn store_pane(&self, host: &mut impl Host, state_key: &str, pane: i64, value: &A) {
        if self.lateness == 0 {
            host.set(state_key, &value.encode());
        } else {
            host.set_expiring(state_key, &value.encode(), self.pane_expires(pane));
        }
    }

    /// The window of a fired timer, if the timer is one of this set's:
    /// merges its panes, deletes the panes no later window contains (with
    /// lateness: has them expire), and returns the result.
    pub fn fire(&self, host: &mut impl Host, timer: &FiredTimer) -> Option<Fired<A>> {
        let key = timer
            .key
            .strip_prefix(self.name.as_str())?
            .strip_prefix('/')?;
        let end = timer.time.checked_add(1)?;
        let start = end.checked_sub(self.size)?;
        let value = self.merged(host, key, start, end);
        // Panes in the first slide of this window are in no later one.
        // Kept for lateness, they expire with it instead: set again here,
        // as panes written before the lateness was set do not expire.
        let mut pane = start.div_euclid(self.pane) * self.pane;
        while pane < start.saturating_add(self.slide) {
            let state_key = self.pane_key(key, pane);
            if self.lateness == 0 {
                host.delete(&state_key);
            } else if let Some(bytes) = host.get(&state_key) {
                host.set_expiring(&state_key, &bytes, self.pane_expires(pane));
            }
            pane += self.pane;
        }
        Some(Fired {
            key: key.to_owned(),
            start,
            end,
            value,
        })
    }
}

/// The events of one batch for a [`Hopping`] window set, folded per key
/// and pane before they touch state.
pub struct HoppingBatch<'a, A: Accumulator> {
    windows: &'a Hopping<A>,
    watermark: Option<i64>,
    panes: BTreeMap<(String, i64), A>,
    /// Fired windows, kept for lateness, that late events changed: (key,
    /// end).
    updated: BTreeSet<(String, i64)>,
}

impl<A: Accumulator> HoppingBatch<'_, A> {
    /// Adds an event at `time` under `key`; refuses it when every window
    /// holding it has fired (and passed its lateness).
    pub fn add(&mut self, key: &str, time: i64, input: A::Input) -> Result<(), Refused> {
        let Some((start, end)) = self.windows.windows_of(time).next() else {
            return Err(Refused::OutOfRange(time));
        };
        let lateness = self.windows.lateness;
        if let Some(watermark) = self.watermark.filter(|&w| kept_until(end, lateness) <= w) {
            return Err(Refused::Late(Late {
                time,
                watermark,
                window: (start, end),
                lateness,
            }));
        }
        if let Some(w) = self.watermark.filter(|_| lateness > 0) {
            for (_, end) in self.windows.windows_of(time) {
                if end - 1 <= w && kept_until(end, lateness) > w {
                    self.updated.insert((key.to_owned(), end));
                }
            }
        }
        let pane = time.div_euclid(self.windows.pane) * self.windows.pane;
        self.panes
            .entry((key.to_owned(), pane))
            .or_default()
            .add(input);
        Ok(())
    }

    /// Writes the batch: one update per touched pane, and for a new pane
    /// the timers of its windows still open. Returns the fired windows
    /// that late events changed (only with [`Hopping::with_lateness`]),
    /// in key then end order.
    pub fn commit(self, host: &mut impl Host) -> Vec<Update<A>> {
        let windows = self.windows;
        for ((key, pane), acc) in &self.panes {
            let state_key = windows.pane_key(key, *pane);
            match load::<A>(host, &state_key) {
                Some(mut stored) => {
                    stored.merge(acc);
                    windows.store_pane(host, &state_key, *pane, &stored);
                }
                None => {
                    windows.store_pane(host, &state_key, *pane, acc);
                    let timer_key = windows.timer_key(key);
                    for (_, end) in windows.windows_of(*pane) {
                        if self.watermark.is_none_or(|w| end - 1 > w) {
                            host.set_timer(&timer_key, end - 1);
                        }
                    }
                }
            }
        }
        self.updated
            .into_iter()
            .map(|(key, end)| {
                let start = end - windows.size;
                let value = windows.merged(host, &key, start, end);
                // Every event of the batch in a pane of a fired window was
                // late for it.
                let mut added = A::default();
                let panes = (key.clone(), start)..(key.clone(), end);
                for (_, acc) in self.panes.range(panes) {
                    added.merge(acc);
                }
                Update {
                    key,
                    start,
                    end,
                    value,
                    added,
                }
            })
            .collect()
    }
}

/// Session windows: activity of a key separated by gaps of at least `gap`
/// ms. An event at `t` opens `[t, t + gap)`; windows that overlap or touch
/// merge (as Flink's do), and a session fires when the watermark reaches
/// its end - 1.
#[derive(Debug, Clone)]
pub struct Sessions<A> {
    name: String,
    gap: i64,
    lateness: i64,
    acc: PhantomData<fn() -> A>,
}

/// One session in state: open, or fired and kept for lateness.
#[derive(Debug, Clone)]
struct Session<A> {
    start: i64,
    end: i64,
    value: A,
    /// What the batch's events added, while a batch holds it (not stored).
    added: Option<A>,
}

impl<A: Accumulator> Sessions<A> {
    /// Sessions with inactivity gap `gap` ms (positive), named `name` in
    /// state and timer keys.
    pub fn new(name: &str, gap: i64) -> Result<Self, String> {
        check_name(name)?;
        if gap <= 0 {
            return Err(format!("session gap of {gap} ms: it must be positive"));
        }
        Ok(Self {
            name: name.to_owned(),
            gap,
            lateness: 0,
            acc: PhantomData,
        })
    }

    /// Keeps each session `lateness` ms of event time after it fires, as
    /// Flink's `allowedLateness` does for merging windows: until the
    /// watermark passes its end - 1 + `lateness`, a late event that
    /// overlaps or touches it merges into it, and the batch's
    /// [`SessionBatch::commit`] returns the session's [`Update`]. A late
    /// event can move a fired session's bounds (an earlier start, or two
    /// fired sessions joined into one): the update then has the new
    /// bounds, and supersedes the results shown for the sessions it took
    /// in. A late event that extends a session past the watermark reopens
    /// it: it fires again when the watermark reaches its new end - 1.
    pub fn with_lateness(mut self, lateness: i64) -> Result<Self, String> {
        self.lateness = check_lateness(lateness)?;
        Ok(self)
    }

    /// The gap in ms.
    pub fn gap(&self) -> i64 {
        self.gap
    }

    /// How long a session is kept after it fires, in ms.
    pub fn lateness(&self) -> i64 {
        self.lateness
    }

    /// The watermark at which a session ending at `end` is let go.
    fn kept_until(&self, end: i64) -> i64 {
        kept_until(end, self.lateness)
    }

    /// The timers `sessions` need at `watermark`: each one's end - 1 until
    /// it fires, and with lateness the time it is let go.
    fn timers(&self, sessions: &[Session<A>], watermark: Option<i64>) -> BTreeSet<i64> {
        let mut times = BTreeSet::new();
        for s in sessions {
            if watermark.is_none_or(|w| s.end - 1 > w) {
                times.insert(s.end - 1);
            }
            if self.lateness > 0 {
                times.insert(self.kept_until(s.end));
            }
        }
        times
    }

    /// Starts a batch; `watermark` is the batch's.
    pub fn batch(&self, watermark: Option<i64>) -> SessionBatch<'_, A> {
        SessionBatch {
            windows: self,
            watermark,
            keys: BTreeMap::new(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.name)
    }

    fn load(&self, host: &impl Host, key: &str) -> Vec<Session<A>> {
        let state_key = self.key(key);
        let Some(bytes) = host.get(&state_key) else {
            return Vec::new();
        };
        decode_sessions(&bytes).unwrap_or_else(|| {
            host.log(
                LogLevel::Warn,
                &format!("session state `{state_key}` cannot be read; its sessions are dropped"),
            );
            Vec::new()
        })
    }

    fn store(&self, host: &mut impl Host, key: &str, sessions: &[Session<A>]) {
        let state_key = self.key(key);
        if sessions.is_empty() {
            host.delete(&state_key);
        } else {
            host.set(&state_key, &encode_sessions(sessions));
        }
    }

    /// The session of a fired timer, if the timer is one of this set's
    /// and a session ends there: returns it, and removes it from state
    /// (with lateness: removes the sessions whose lateness has passed, and
    /// keeps this one).
    pub fn fire(&self, host: &mut impl Host, timer: &FiredTimer) -> Option<Fired<A>> {
        let key = timer
            .key
            .strip_prefix(self.name.as_str())?
            .strip_prefix('/')?;
        let mut sessions = self.load(host, key);
        let before = sessions.len();
        let fired = sessions
            .iter()
            .position(|s| s.end - 1 == timer.time)
            .map(|at| {
                let s = &sessions[at];
                let mut value = A::default();
                value.merge(&s.value);
                Fired {
                    key: key.to_owned(),
                    start: s.start,
                    end: s.end,
                    value,
                }
            });
        // Timers fire in time order, so a session let go at or before this
        // one has no other timer left.
        sessions.retain(|s| self.kept_until(s.end) > timer.time);
        if fired.is_some() && self.lateness > 0 {
            // Set again here: a session written before the lateness was
            // set has no timer to let it go.
            host.set_timer(&timer.key, self.kept_until(timer.time + 1));
        }
        if sessions.len() != before {
            self.store(host, key, &sessions);
        }
        fired
    }
}

/// A key's sessions as a batch changes them, and the timers they had
/// before.
struct Touched<A> {
    sessions: Vec<Session<A>>,
    timers_before: BTreeSet<i64>,
}

/// The events of one batch for a [`Sessions`] window set.
pub struct SessionBatch<'a, A: Accumulator> {
    windows: &'a Sessions<A>,
    watermark: Option<i64>,
    keys: BTreeMap<String, Touched<A>>,
}

impl<A: Accumulator> SessionBatch<'_, A> {
    /// Adds an event at `time` under `key`: merges it into the sessions it
    /// overlaps or touches, or opens one; refuses it when the resulting
    /// session has already fired (and passed its lateness).
    pub fn add(
        &mut self,
        host: &impl Host,
        key: &str,
        time: i64,
        input: A::Input,
    ) -> Result<(), Refused> {
        let end = time
            .checked_add(self.windows.gap)
            .ok_or(Refused::OutOfRange(time))?;
        let (windows, watermark) = (self.windows, self.watermark);
        let touched = self.keys.entry(key.to_owned()).or_insert_with(|| {
            let sessions = windows.load(host, key);
            let timers_before = windows.timers(&sessions, watermark);
            Touched {
                sessions,
                timers_before,
            }
        });
        let mut merged = Session {
            start: time,
            end,
            value: A::default(),
            added: Some(A::default()),
        };
        let mut overlapping = Vec::new();
        for (i, s) in touched.sessions.iter().enumerate() {
            if s.start <= merged.end && merged.start <= s.end {
                overlapping.push(i);
            }
        }
        for &i in &overlapping {
            let s = &touched.sessions[i];
            merged.start = merged.start.min(s.start);
            merged.end = merged.end.max(s.end);
        }
        if let Some(watermark) = watermark.filter(|&w| windows.kept_until(merged.end) <= w) {
            return Err(Refused::Late(Late {
                time,
                watermark,
                window: (merged.start, merged.end),
                lateness: windows.lateness,
            }));
        }
        let mut added = A::default();
        for &i in overlapping.iter().rev() {
            let s = touched.sessions.remove(i);
            merged.value.merge(&s.value);
            if let Some(a) = &s.added {
                added.merge(a);
            }
        }
        let mut one = A::default();
        one.add(input);
        merged.value.merge(&one);
        added.merge(&one);
        merged.added = Some(added);
        let at = touched.sessions.partition_point(|s| s.start < merged.start);
        touched.sessions.insert(at, merged);
        Ok(())
    }

    /// Writes each touched key's sessions once, and moves their timers.
    /// Returns the fired sessions that late events changed (only with
    /// [`Sessions::with_lateness`]), in key then end order.
    pub fn commit(self, host: &mut impl Host) -> Vec<Update<A>> {
        let mut updates = Vec::new();
        for (key, touched) in self.keys {
            self.windows.store(host, &key, &touched.sessions);
            let timer_key = self.windows.key(&key);
            let timers = self.windows.timers(&touched.sessions, self.watermark);
            for gone in touched.timers_before.difference(&timers) {
                host.delete_timer(&timer_key, *gone);
            }
            for new in timers.difference(&touched.timers_before) {
                host.set_timer(&timer_key, *new);
            }
            let Some(watermark) = self.watermark else {
                continue;
            };
            for s in touched.sessions {
                // Past the watermark, every event the batch added was late.
                if let Some(added) = s.added.filter(|_| s.end - 1 <= watermark) {
                    updates.push(Update {
                        key: key.clone(),
                        start: s.start,
                        end: s.end,
                        value: s.value,
                        added,
                    });
                }
            }
        }
        updates
    }
}

fn encode_sessions<A: Accumulator>(sessions: &[Session<A>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sessions {
        let value = s.value.encode();
        out.extend(s.start.to_le_bytes());
        out.extend(s.end.to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
        out.extend(value);
    }
    out
}

fn decode_sessions<A: Accumulator>(mut bytes: &[u8]) -> Option<Vec<Session<A>>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    let mut sessions = Vec::new();
    while !bytes.is_empty() {
        let start = i64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let end = i64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?);
        let value = A::decode(take(&mut bytes, len as usize)?)?;
        sessions.push(Session {
            start,
            end,
            value,
            added: None,
        });
    }
    Some(sessions)
}

#[cfg(test)]
mod tests;
