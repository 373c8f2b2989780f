//! Parser plugin for the seed's JSON topics.
//!
//! A thin adapter: the parse rules live in `livestream-format`, shared with
//! the native benchmark baseline; this crate only slices records out of the
//! batch buffer and maps the results onto the WIT types.

wit_bindgen::generate!({
    path: "../../wit",
    world: "parser-plugin",
});

use apiary::plugin::types::{Event, EventBody, Gift, RawBatch, Rejection, ViewerVisit};
use exports::apiary::plugin::parser::{Guest, ParseOutput, ParserInfo};

/// Topic of viewer visits.
const VISIT_TOPIC: &str = "live_streaming_log";
/// Topic of gifts, and the other name the seed's text gives it.
const GIFT_TOPICS: [&str; 2] = ["live_gift_total", "live_gift_log"];

// Exported only on wasm32: on a native target the export names (which hold
// `:` and `#`) break the cdylib's linker version script, and `cargo build
// --workspace` must still link. Natively the code is still type-checked.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct SeedJsonParser;

/// What the records of a batch hold, decided once per batch from its topic.
#[derive(Clone, Copy)]
enum RecordKind {
    Visit,
    Gift,
}

impl Guest for SeedJsonParser {
    fn describe() -> ParserInfo {
        ParserInfo {
            name: "seed-json-parser".into(),
            version: "0.1.0".into(),
            topics: [VISIT_TOPIC, GIFT_TOPICS[0], GIFT_TOPICS[1]]
                .map(String::from)
                .to_vec(),
        }
    }

    fn parse(batch: RawBatch) -> ParseOutput {
        let kind = match batch.topic.as_str() {
            VISIT_TOPIC => Some(RecordKind::Visit),
            t if GIFT_TOPICS.contains(&t) => Some(RecordKind::Gift),
            _ => None,
        };
        let mut events = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        for (index, record) in (0u32..).zip(&batch.records) {
            let Some(kind) = kind else {
                rejected.push(Rejection {
                    index,
                    reason: format!(
                        "unknown topic `{}`: seed-json-parser reads {VISIT_TOPIC}, {} and {}",
                        batch.topic, GIFT_TOPICS[0], GIFT_TOPICS[1]
                    ),
                });
                continue;
            };
            let (start, len) = (record.value.start as usize, record.value.len as usize);
            let Some(value) = batch.data.get(start..start.saturating_add(len)) else {
                rejected.push(Rejection {
                    index,
                    reason: format!(
                        "record value span {start}+{len} lies outside the batch's {} data bytes",
                        batch.data.len()
                    ),
                });
                continue;
            };
            let body = match kind {
                RecordKind::Visit => livestream_format::parse_visit(value).map(visit),
                RecordKind::Gift => livestream_format::parse_gift(value).map(gift),
            };
            match body {
                Ok(body) => events.push(Event {
                    record_index: index,
                    body,
                }),
                Err(e) => rejected.push(Rejection {
                    index,
                    reason: e.to_string(),
                }),
            }
        }
        ParseOutput {
            platform: "seed".into(),
            events,
            rejected,
        }
    }
}

fn visit(v: livestream_format::Visit) -> EventBody {
    EventBody::Visit(ViewerVisit {
        user_id: v.user_id,
        room_id: v.room_id,
        ip: v.ip,
        arrive_time: v.arrive_time,
        leave_time: v.leave_time,
        create_time: v.create_time,
        region_code: v.region_code,
        grade: v.grade,
        province: v.province,
    })
}

fn gift(g: livestream_format::Gift) -> EventBody {
    EventBody::Gift(Gift {
        user_id: g.user_id,
        room_id: g.room_id,
        gift_type: g.gift_type,
        amount: g.amount,
        ip: g.ip,
        create_time: g.create_time,
        update_time: g.update_time,
    })
}

#[cfg(target_arch = "wasm32")]
export!(SeedJsonParser);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary::plugin::types::{RawRecord, Span};

    fn batch(topic: &str, values: &[&str]) -> RawBatch {
        let mut data = Vec::new();
        let records = (0i64..)
            .zip(values)
            .map(|(offset, v)| {
                let start = data.len() as u32;
                data.extend_from_slice(v.as_bytes());
                RawRecord {
                    partition: 0,
                    offset,
                    timestamp: None,
                    key: None,
                    value: Span {
                        start,
                        len: v.len() as u32,
                    },
                    headers: Vec::new(),
                }
            })
            .collect();
        RawBatch {
            topic: topic.into(),
            data,
            records,
        }
    }

    #[test]
    fn describes_itself() {
        let info = SeedJsonParser::describe();
        assert_eq!(info.name, "seed-json-parser");
        assert_eq!(info.version, "0.1.0");
        assert_eq!(
            info.topics,
            ["live_streaming_log", "live_gift_total", "live_gift_log"]
        );
    }

    #[test]
    fn parses_gifts_and_rejects_bad_records() {
        let gift = r#"{"user_id": 1, "gift_type": 3, "gift_total_amount": "28", "room_id": 2}"#;
        let out = SeedJsonParser::parse(batch(
            "live_gift_log",
            &[gift, "[1]", r#"{"user_id": 1, "room_id": 2}"#, gift],
        ));
        assert_eq!(out.platform, "seed");
        let indexes: Vec<u32> = out.events.iter().map(|e| e.record_index).collect();
        assert_eq!(indexes, [0, 3]);
        let EventBody::Gift(g) = &out.events[1].body else {
            panic!("not a gift");
        };
        assert_eq!((g.gift_type, g.amount), (3, 28));
        let rejected: Vec<(u32, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [
                (1, "expected a JSON object, found an array"),
                (2, "missing field `gift_type`")
            ]
        );
    }

    #[test]
    fn parses_visits() {
        let out = SeedJsonParser::parse(batch(
            "live_streaming_log",
            &[r#"{"user_id": 1, "room_id": 2, "region": 1122, "ip": "1.2.3.4"}"#],
        ));
        assert!(out.rejected.is_empty());
        let EventBody::Visit(v) = &out.events[0].body else {
            panic!("not a visit");
        };
        assert_eq!(
            (v.region_code, v.ip.as_deref()),
            (Some(1122), Some("1.2.3.4"))
        );
    }

    #[test]
    fn unknown_topic_and_bad_span() {
        let out = SeedJsonParser::parse(batch("douyu_chat", &["{}", "{}"]));
        assert!(out.events.is_empty());
        assert_eq!(out.rejected.len(), 2);
        assert!(
            out.rejected[1]
                .reason
                .contains("unknown topic `douyu_chat`")
        );

        let mut b = batch("live_gift_total", &["{}"]);
        b.records[0].value.len = 99;
        let out = SeedJsonParser::parse(b);
        assert!(out.rejected[0].reason.contains("outside the batch"));
    }
}
