//! Plugin state and event-time timers as the checkpoint store keeps them.

use std::collections::HashMap;

/// A stored state value, and the event time it expires at, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The bytes the plugin stored.
    pub value: Vec<u8>,
    /// Removed once the lane's watermark reaches this (ms since the epoch).
    pub expires: Option<i64>,
}

/// One state entry changed since the last checkpoint: the new value, or
/// `None` where the key was deleted.
pub type StateChange = (String, Option<StoredValue>);

/// One timer changed since the last checkpoint: its time, its key and
/// whether it is set (`false`: deleted or fired).
pub type TimerChange = (i64, String, bool);

/// A plugin's state and timers in one lane, as its last checkpoint left
/// them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoredState {
    /// Values by key.
    pub values: HashMap<String, StoredValue>,
    /// Timers: (time, key).
    pub timers: Vec<(i64, String)>,
}
