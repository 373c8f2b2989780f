//! A rule that counts gifts per user, and misbehaves on chosen users, so
//! the host's limits and isolation can be tested:
//! - user [`LOOP_USER`]: loops forever (the time limit must stop it);
//! - user [`BOMB_USER`]: allocates without end (the memory limit);
//! - user [`PANIC_USER`], and every user from [`ALWAYS_PANIC_FROM`] up:
//!   panics (a trap).
//!
//! It also writes state for every gift, so a failed batch's state must be
//! undone.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "rule-plugin",
});

use apiary::plugin::state;
use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, FiredTimer, MergeMode, OutputRows,
    OutputSchema, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

/// Loops forever.
pub const LOOP_USER: i64 = 66;
/// Allocates until the memory limit stops it.
pub const BOMB_USER: i64 = 77;
/// Panics.
pub const PANIC_USER: i64 = 13;
/// Users from here up all panic.
pub const ALWAYS_PANIC_FROM: i64 = 5000;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct HostileRule;

impl Guest for HostileRule {
    fn init(_: Vec<(String, String)>) -> Result<(), String> {
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
            name: "hostile-rule".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: "hostile_gifts".into(),
                table: None,
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
        for event in batch.events {
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
                _ => {}
            }
            cells.push(Value::Int(gift.user_id));
            cells.push(Value::Int(1));
        }
        RuleOutput {
            rows: vec![OutputRows {
                output: "hostile_gifts".into(),
                cells,
            }],
            rejected: Vec::new(),
        }
    }

    fn on_timers(_: Vec<FiredTimer>, _: i64) -> Vec<OutputRows> {
        Vec::new()
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileRule);
