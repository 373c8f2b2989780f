//! Rule plugin: a room's activity, the figures a platform's room ranking
//! shows: danmaku (chat) messages, viewers entering, and the peak
//! popularity reported by the platform. Each batch folds into one delta row
//! per room; the store adds the counts and keeps the larger peak. Fed by
//! any parser that emits chat, visit or streamer-stats events, such as the
//! Bilibili parser in `kits/c/bilibili-parser`.

use std::collections::BTreeMap;

use apiary_sdk::ColumnType::Int;
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rows, Rule, RuleInfo,
    RuleOutput, Value,
};

const OUTPUT: &str = "room_activity";

/// One room's figures within a batch.
#[derive(Default)]
struct Activity {
    chats: i64,
    entries: i64,
    peak_heat: i64,
}

/// The rule.
pub struct RoomActivity;

impl Rule for RoomActivity {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new(
            "room-activity",
            "0.1.0",
            [EventKind::Chat, EventKind::Visit, EventKind::StreamerStats],
        )
        .output(
            Output::new(OUTPUT)
                .key("room_id", Int)
                .add("chats", Int)
                .add("entries", Int)
                .max("peak_heat", Int),
        )
    }

    fn process(&self, batch: EventBatch, _: &mut impl Host) -> RuleOutput {
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
                _ => rejected.push(Rejection::new(
                    index,
                    "room-activity consumes chat, visit and streamer-stats events only",
                )),
            }
        }
        let mut rows = Rows::new(OUTPUT, 4);
        for (room, activity) in rooms {
            rows.push_row([
                Value::Int(room),
                Value::Int(activity.chats),
                Value::Int(activity.entries),
                Value::Int(activity.peak_heat),
            ]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(RoomActivity);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::testing::{MemoryHost, batch};
    use apiary_sdk::{ChatMessage, Span, StreamerStats};

    #[test]
    fn counts_chats_and_keeps_the_peak() {
        let chat = |room_id| {
            EventBody::Chat(ChatMessage {
                user_id: 1,
                room_id,
                user_name: None,
                // The rule does not read the text: an empty span.
                text: Span { start: 0, len: 0 },
                level: None,
                time: None,
            })
        };
        let stats = |heat| {
            EventBody::StreamerStats(StreamerStats {
                room_id: 5,
                heat: Some(heat),
                followers: None,
                online: None,
                time: None,
            })
        };
        let events = [chat(5), stats(70), chat(5), stats(30), chat(6)];
        let out = RoomActivity.process(
            batch(events.into_iter().map(|e| (None, e)).collect(), None),
            &mut MemoryHost::new(),
        );
        assert!(out.rejected.is_empty());
        let cells: Vec<i64> = out.rows[0]
            .cells
            .iter()
            .map(|c| match c {
                Value::Int(v) => *v,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(cells, [5, 2, 0, 70, 6, 1, 0, 0]);
    }
}
