//! Rule plugin: room status from room-status events (the seed system's
//! "room open / closed" data). A room's last known status is kept in
//! plugin state, so only changes count: each batch emits, per room whose
//! status changed, whether it is live now, how many times it went live
//! (added up by the store) and when it last changed. A room seen for the
//! first time counts as a change, and as a session if it is live.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::state;
use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "room_sessions";

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct RoomSessions;

/// One room's changes within a batch.
struct Change {
    live: bool,
    sessions: i64,
    at: Option<i64>,
}

impl Guest for RoomSessions {
    fn describe() -> RuleInfo {
        let column = |name: &str, type_, merge, nullable| Column {
            name: name.into(),
            type_,
            merge,
            nullable,
        };
        RuleInfo {
            name: "room-sessions".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::RoomStatus],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("room_id", ColumnType::Int, MergeMode::Replace, false),
                    column("live", ColumnType::Boolean, MergeMode::Replace, false),
                    column("sessions", ColumnType::Int, MergeMode::Add, false),
                    column(
                        "changed_at",
                        ColumnType::Timestamp,
                        MergeMode::Replace,
                        true,
                    ),
                ],
                primary_key: vec!["room_id".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut changes: BTreeMap<i64, Change> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::RoomStatus(status) = event.body else {
                rejected.push(Rejection {
                    index,
                    reason: "room-sessions consumes room-status events only".into(),
                });
                continue;
            };
            let key = format!("live/{}", status.room_id);
            let was = state::get(&key).map(|v| v.first() == Some(&1));
            if was == Some(status.live) {
                continue;
            }
            state::set(&key, &[status.live.into()]);
            let change = changes.entry(status.room_id).or_insert(Change {
                live: status.live,
                sessions: 0,
                at: None,
            });
            change.live = status.live;
            change.sessions += i64::from(status.live);
            change.at = status.time.or(change.at);
        }
        let mut cells = Vec::with_capacity(changes.len() * 4);
        for (room, change) in changes {
            cells.extend([
                Value::Int(room),
                Value::Boolean(change.live),
                Value::Int(change.sessions),
                change.at.map_or(Value::Null, Value::Timestamp),
            ]);
        }
        let rows = if cells.is_empty() {
            Vec::new()
        } else {
            vec![OutputRows {
                output: OUTPUT.into(),
                cells,
            }]
        };
        RuleOutput { rows, rejected }
    }
}

#[cfg(target_arch = "wasm32")]
export!(RoomSessions);
