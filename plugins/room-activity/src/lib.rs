//! Rule plugin: a room's activity, the figures a platform's room ranking
//! shows: danmaku (chat) messages, viewers entering, and the peak
//! popularity reported by the platform. Each batch folds into one delta row
//! per room; the store adds the counts and keeps the larger peak. Fed by
//! any parser that emits chat, visit or streamer-stats events, such as the
//! Bilibili parser in `kits/c/bilibili-parser`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "room_activity";

/// One room's figures within a batch.
#[derive(Default)]
struct Activity {
    chats: i64,
    entries: i64,
    peak_heat: i64,
}

// Exported only on wasm32 (see gift-type-totals for why).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct RoomActivity;

impl Guest for RoomActivity {
    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "room-activity".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Chat, EventKind::Visit, EventKind::StreamerStats],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("room_id", MergeMode::Replace),
                    column("chats", MergeMode::Add),
                    column("entries", MergeMode::Add),
                    column("peak_heat", MergeMode::Max),
                ],
                primary_key: vec!["room_id".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut rooms: BTreeMap<i64, Activity> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Chat(chat) => rooms.entry(chat.room_id).or_default().chats += 1,
                EventBody::Visit(visit) => rooms.entry(visit.room_id).or_default().entries += 1,
                EventBody::StreamerStats(stats) => {
                    let room = rooms.entry(stats.room_id).or_default();
                    room.peak_heat = room.peak_heat.max(stats.heat.unwrap_or(0));
                }
                _ => rejected.push(Rejection {
                    index,
                    reason: "room-activity consumes chat, visit and streamer-stats events only"
                        .into(),
                }),
            }
        }
        let mut cells = Vec::with_capacity(rooms.len() * 4);
        for (room, activity) in rooms {
            cells.extend([
                Value::Int(room),
                Value::Int(activity.chats),
                Value::Int(activity.entries),
                Value::Int(activity.peak_heat),
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
export!(RoomActivity);
