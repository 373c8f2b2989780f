//! Parser plugin for the seed's JSON topics.
//!
//! A thin adapter: the parse rules live in `livestream-format`, shared with
//! the native benchmark baseline; this crate only slices records out of the
//! batch buffer and maps the results onto the WIT types, the events' text
//! copied once, from the record into the output's `text`. Each event's time
//! is the record's own: a gift's `create_time`, a visit's `arrive_time`, a
//! room list's `time`; else the record's timestamp.

use apiary_sdk::{
    Event, EventBody, Gift, Params, ParseOutput, Parser, ParserInfo, RawBatch, Rejection, RoomList,
    Span, ViewerVisit,
};

/// Topic of viewer visits.
const VISIT_TOPIC: &str = "live_streaming_log";
/// Topic of gifts, and the other name the seed's text gives it.
const GIFT_TOPICS: [&str; 2] = ["live_gift_total", "live_gift_log"];
/// Topic of the collectors' snapshots of the rooms live.
const ROOM_LIST_TOPIC: &str = "live_room_list";

/// The parser.
pub struct SeedJsonParser;

/// What the records of a batch hold, decided once per batch from its topic.
#[derive(Clone, Copy)]
enum RecordKind {
    Visit,
    Gift,
    RoomList,
}

impl Parser for SeedJsonParser {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> ParserInfo {
        ParserInfo::new(
            "seed-json-parser",
            "0.3.0",
            [VISIT_TOPIC, GIFT_TOPICS[0], GIFT_TOPICS[1], ROOM_LIST_TOPIC],
        )
    }

    fn parse(&self, batch: RawBatch) -> ParseOutput {
        let kind = match batch.topic.as_str() {
            VISIT_TOPIC => Some(RecordKind::Visit),
            ROOM_LIST_TOPIC => Some(RecordKind::RoomList),
            t if GIFT_TOPICS.contains(&t) => Some(RecordKind::Gift),
            _ => None,
        };
        let mut events = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        let mut text = String::new();
        for (index, record) in (0u32..).zip(&batch.records) {
            let Some(kind) = kind else {
                rejected.push(Rejection::new(
                    index,
                    format!(
                        "unknown topic `{}`: seed-json-parser reads {VISIT_TOPIC}, {}, {} and {ROOM_LIST_TOPIC}",
                        batch.topic, GIFT_TOPICS[0], GIFT_TOPICS[1]
                    ),
                ));
                continue;
            };
            let value = match batch.bytes(record.value) {
                Ok(value) => value,
                Err(reason) => {
                    rejected.push(Rejection::new(index, reason));
                    continue;
                }
            };
            let parsed = match kind {
                RecordKind::Visit => {
                    livestream_format::parse_visit_ref(value).map(|v| visit(v, &mut text))
                }
                RecordKind::Gift => {
                    livestream_format::parse_gift_ref(value).map(|g| gift(g, &mut text))
                }
                RecordKind::RoomList => livestream_format::parse_room_list(value).map(room_list),
            };
            match parsed {
                Ok((time, body)) => {
                    events.push(Event::new(index, time.or(record.timestamp), body));
                }
                Err(e) => rejected.push(Rejection::new(index, e.to_string())),
            }
        }
        ParseOutput {
            platform: "seed".into(),
            text,
            events,
            rejected,
        }
    }
}

/// A visit, at its arrival; its text laid out in `text`.
fn visit(v: livestream_format::VisitRef<'_>, text: &mut String) -> (Option<i64>, EventBody) {
    let body = EventBody::Visit(ViewerVisit {
        user_id: v.user_id,
        room_id: v.room_id,
        ip: v.ip.map(|ip| Span::push(text, &ip)),
        arrive_time: v.arrive_time,
        leave_time: v.leave_time,
        create_time: v.create_time,
        region_code: v.region_code,
        grade: v.grade,
        province: v.province.map(|p| Span::push(text, &p)),
    });
    (v.arrive_time, body)
}

/// A gift, when it was sent; its IP laid out in `text`.
fn gift(g: livestream_format::GiftRef<'_>, text: &mut String) -> (Option<i64>, EventBody) {
    let body = EventBody::Gift(Gift {
        user_id: g.user_id,
        room_id: g.room_id,
        gift_type: g.gift_type,
        amount: g.amount,
        ip: g.ip.map(|ip| Span::push(text, &ip)),
        create_time: g.create_time,
        update_time: g.update_time,
    });
    (g.create_time, body)
}

/// A room list, when it was taken.
fn room_list(list: livestream_format::RoomList) -> (Option<i64>, EventBody) {
    (
        list.time,
        EventBody::RoomList(RoomList { rooms: list.rooms }),
    )
}

apiary_sdk::export_parser!(SeedJsonParser);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::{RawRecord, Span};

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
                }
            })
            .collect();
        RawBatch {
            topic: topic.into(),
            data,
            records,
            headers: Vec::new(),
        }
    }

    #[test]
    fn describes_itself() {
        let info = SeedJsonParser.describe();
        assert_eq!(info.name, "seed-json-parser");
        assert_eq!(info.version, "0.3.0");
        assert_eq!(
            info.topics,
            [
                "live_streaming_log",
                "live_gift_total",
                "live_gift_log",
                "live_room_list"
            ]
        );
    }

    #[test]
    fn parses_gifts_and_rejects_bad_records() {
        let gift = r#"{"user_id": 1, "gift_type": 3, "gift_total_amount": "28", "room_id": 2}"#;
        let out = SeedJsonParser.parse(batch(
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
        let out = SeedJsonParser.parse(batch(
            "live_streaming_log",
            &[r#"{"user_id": 1, "room_id": 2, "region": 1122, "ip": "1.2.3.4"}"#],
        ));
        assert!(out.rejected.is_empty());
        let EventBody::Visit(v) = &out.events[0].body else {
            panic!("not a visit");
        };
        assert_eq!(
            (v.region_code, v.ip.map(|ip| ip.of(&out.text))),
            (Some(1122), Some("1.2.3.4"))
        );
    }

    #[test]
    fn unknown_topic_and_bad_span() {
        let out = SeedJsonParser.parse(batch("douyu_chat", &["{}", "{}"]));
        assert!(out.events.is_empty());
        assert_eq!(out.rejected.len(), 2);
        assert!(
            out.rejected[1]
                .reason
                .contains("unknown topic `douyu_chat`")
        );

        let mut b = batch("live_gift_total", &["{}"]);
        b.records[0].value.len = 99;
        let out = SeedJsonParser.parse(b);
        assert!(out.rejected[0].reason.contains("outside the batch"));
    }

    #[test]
    fn event_times() {
        let gift = r#"{"user_id": 1, "gift_type": 3, "gift_total_amount": 2, "room_id": 2, "create_time": "1970-01-01 08:00:01"}"#;
        let bare = r#"{"user_id": 1, "gift_type": 3, "gift_total_amount": 2, "room_id": 2}"#;
        let mut b = batch("live_gift_total", &[gift, bare, bare]);
        b.records[1].timestamp = Some(77);
        let out = SeedJsonParser.parse(b);
        let times: Vec<Option<i64>> = out.events.iter().map(|e| e.time).collect();
        assert_eq!(times, [Some(1000), Some(77), None]);

        let visit = r#"{"user_id": 1, "room_id": 2, "arrive_time": "1970-01-01 08:00:02", "create_time": "1970-01-01 08:00:09"}"#;
        let out = SeedJsonParser.parse(batch("live_streaming_log", &[visit]));
        assert_eq!(out.events[0].time, Some(2000));
    }

    #[test]
    fn parses_room_lists() {
        let out = SeedJsonParser.parse(batch(
            "live_room_list",
            &[
                r#"{"rooms": [20210813, 20210901], "time": "1970-01-01 08:01:00"}"#,
                r#"{"rooms": "none"}"#,
            ],
        ));
        let EventBody::RoomList(list) = &out.events[0].body else {
            panic!("not a room list");
        };
        assert_eq!(list.rooms, [20_210_813, 20_210_901]);
        assert_eq!(out.events[0].time, Some(60_000));
        assert_eq!(out.rejected.len(), 1);
        assert!(out.rejected[0].reason.starts_with("field `rooms`"));
    }
}
