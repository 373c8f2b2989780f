//! A rule that counts gifts per user, and misbehaves on chosen users, so
//! the host's limits and isolation can be tested:
//! - user [`LOOP_USER`]: loops forever (the time limit must stop it);
//! - user [`BOMB_USER`]: allocates without end (the memory limit);
//! - user [`PANIC_USER`], and every user from [`ALWAYS_PANIC_FROM`] up:
//!   panics (a trap).
//! - user [`STATE_USER`]: stores `state-bytes` bytes under a new key
//!   (parameter, default 0: nothing) padded to `key-bytes`;
//! - user [`REFUSE_USER`]: refused with a reason of `reason-bytes` bytes;
//! - user [`OVERFLOW_USER`]: adds `i64::MAX` to its `gifts`;
//! - user [`TIMER_USER`]: sets a timer at the gift's event time, and
//!   `on-timers` panics when it fires.
//! - user [`TIMERS_USER`]: sets a timer at each of its gifts' event time;
//!   `on-timers` panics when more than `max-timers` (parameter) fire in
//!   one call, as a rule that needs memory per timer would.
//!
//! Every event logs `log-lines` lines (default 0). Parameters `name`,
//! `version` and `table` replace the plugin's name, version and output
//! table, to try names the host must refuse or escape.
//!
//! It also writes state for every gift, so a failed batch's state must be
//! undone.

wit_bindgen::generate!({
    path: "../../../../wit/v0.2.0",
    world: "rule-plugin",
});

use std::cell::{Cell, RefCell};

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, FiredTimer, LogLevel, MergeMode,
    OutputRows, OutputSchema, Rejection, Value,
};
use apiary::plugin::{log, state, timers};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

/// Loops forever.
pub const LOOP_USER: i64 = 66;
/// Allocates until the memory limit stops it.
pub const BOMB_USER: i64 = 77;
/// Panics.
pub const PANIC_USER: i64 = 13;
/// Users from here up all panic.
pub const ALWAYS_PANIC_FROM: i64 = 5000;
/// Stores `state-bytes` bytes under a key of its own per gift.
pub const STATE_USER: i64 = 88;
/// Refused with a reason of `reason-bytes` bytes.
pub const REFUSE_USER: i64 = 44;
/// Adds `i64::MAX` gifts.
pub const OVERFLOW_USER: i64 = 99;
/// Sets a timer whose firing panics.
pub const TIMER_USER: i64 = 55;
/// Sets a timer per gift, and fails when too many fire at once.
pub const TIMERS_USER: i64 = 56;
/// The key of [`TIMER_USER`]'s timer.
const TRAP_TIMER: &str = "trap";

thread_local! {
    static PARAMS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    static STORED: Cell<u64> = const { Cell::new(0) };
}

/// The parameter `key`, if given.
fn param(key: &str) -> Option<String> {
    PARAMS.with(|p| {
        p.borrow()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// A numeric parameter, 0 when not given.
fn number(key: &str) -> usize {
    param(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct HostileRule;

impl Guest for HostileRule {
    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        PARAMS.with(|p| *p.borrow_mut() = params);
        Ok(())
    }

    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: param("name").unwrap_or_else(|| "hostile-rule".into()),
            version: param("version").unwrap_or_else(|| "0.1.0".into()),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: "hostile_gifts".into(),
                table: param("table"),
                columns: vec![
                    column("user_id", MergeMode::Replace),
                    column("gifts", MergeMode::Add),
                ],
                primary_key: vec!["user_id".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut cells = Vec::new();
        let mut rejected = Vec::new();
        let log_lines = number("log-lines");
        for (index, event) in batch.events.into_iter().enumerate() {
            for n in 0..log_lines {
                log::log(LogLevel::Warn, &format!("line {n} of a flood"));
            }
            let time = event.time;
            let EventBody::Gift(gift) = event.body else {
                continue;
            };
            // State written before misbehaving: the host must undo it.
            let key = format!("seen:{}", gift.user_id);
            let seen = state::get(&key).map_or(0, |v| v[0]);
            state::set(&key, &[seen.wrapping_add(1)]);
            match gift.user_id {
                LOOP_USER => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                BOMB_USER => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                u if u == PANIC_USER || u >= ALWAYS_PANIC_FROM => {
                    panic!("user {u} is poison")
                }
                STATE_USER => {
                    let n = STORED.with(|c| c.replace(c.get() + 1));
                    let key = format!("big:{n:0>width$}", width = number("key-bytes"));
                    state::set(&key, &vec![7; number("state-bytes")]);
                }
                TIMER_USER => {
                    if let Some(time) = time {
                        timers::set(TRAP_TIMER, time);
                    }
                }
                TIMERS_USER => {
                    if let Some(time) = time {
                        timers::set(&format!("each:{time}"), time);
                    }
                }
                REFUSE_USER => {
                    rejected.push(Rejection {
                        index: index as u32,
                        reason: "r".repeat(number("reason-bytes")),
                    });
                    continue;
                }
                _ => {}
            }
            let gifts = if gift.user_id == OVERFLOW_USER {
                i64::MAX
            } else {
                1
            };
            cells.push(Value::Int(gift.user_id));
            cells.push(Value::Int(gifts));
        }
        RuleOutput {
            rows: vec![OutputRows {
                output: "hostile_gifts".into(),
                cells,
            }],
            rejected,
        }
    }

    fn on_timers(fired: Vec<FiredTimer>, _: i64) -> Vec<OutputRows> {
        if fired.iter().any(|t| t.key == TRAP_TIMER) {
            panic!("the timer of user {TIMER_USER} is poison");
        }
        let most = number("max-timers");
        if most > 0 && fired.len() > most {
            panic!("{} timers at once, more than {most}", fired.len());
        }
        Vec::new()
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileRule);
