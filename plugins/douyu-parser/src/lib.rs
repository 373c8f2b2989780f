//! Parser plugin for Douyu's danmaku stream.
//!
//! A collector connected to a room's danmaku server writes what it
//! receives to the topic `douyu_danmaku`: each record either one or more
//! whole frames (12-byte header and STT body, see [`stt`]) or one STT body
//! alone. The messages become common events:
//!
//! - `chatmsg` (a chat message): `rid`, `uid`, `nn` name, `txt`, `level`,
//!   `cst` send time in ms;
//! - `dgb` (a gift): `rid`, `uid`, `gfid` the gift type, `gfcnt` the
//!   count. Douyu's message carries no price, so a gift's amount is its
//!   count; a rule that needs coins looks the price up by gift type;
//! - `uenter` (a viewer entered the room): `rid`, `uid`, `level` as grade;
//! - `rss` (the room went live or off): `rid`, `ss` 1 or 0.
//!
//! Other types (heartbeats, rankings and hundreds more) carry nothing the
//! common schema has and are passed over. Events without a time of their
//! own take the record's, and that time is the event time. A record with a
//! message that cannot be read is refused whole, naming the message and
//! what is wrong.

mod stt;

use apiary_sdk::{
    ChatMessage, Event, EventBody, Gift, Params, ParseOutput, Parser, ParserInfo, RawBatch,
    RawRecord, Rejection, RoomStatus, Span, ViewerVisit,
};
use stt::Message;

/// The topic of Douyu's danmaku messages.
const TOPIC: &str = "douyu_danmaku";

/// The parser.
pub struct DouyuParser;

impl Parser for DouyuParser {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> ParserInfo {
        ParserInfo::new("douyu-parser", "0.3.0", [TOPIC])
    }

    fn parse(&self, batch: RawBatch) -> ParseOutput {
        let mut out = ParseOutput {
            platform: "douyu".into(),
            text: String::new(),
            events: Vec::with_capacity(batch.records.len()),
            rejected: Vec::new(),
        };
        for (index, record) in (0u32..).zip(&batch.records) {
            let (events, text) = (out.events.len(), out.text.len());
            if let Err(reason) = read_record(&batch.data, record, index, &mut out) {
                out.events.truncate(events);
                out.text.truncate(text);
                out.rejected.push(Rejection::new(index, reason));
            }
        }
        out
    }
}

/// Appends the events of one record, and their text, to `out`.
fn read_record(
    data: &[u8],
    record: &RawRecord,
    index: u32,
    out: &mut ParseOutput,
) -> Result<(), String> {
    let (start, len) = (record.value.start as usize, record.value.len as usize);
    let value = data.get(start..start.saturating_add(len)).ok_or_else(|| {
        format!(
            "record value span {start}+{len} lies outside the batch's {} data bytes",
            data.len()
        )
    })?;
    for (n, body) in (1..).zip(stt::bodies(value)?) {
        let message = Message::parse(body).map_err(|e| format!("message {n}: {e}"))?;
        let event = event(&message, record.timestamp, &mut out.text).map_err(|e| {
            let kind = message.optional("type").unwrap_or("untyped");
            format!("message {n} ({kind}): {e}")
        })?;
        if let Some(body) = event {
            out.events.push(Event::new(index, time_of(&body), body));
        }
    }
    Ok(())
}

/// The common event of a message, if its type has one; its text laid out
/// in `text`.
fn event(
    message: &Message,
    record_time: Option<i64>,
    text: &mut String,
) -> Result<Option<EventBody>, String> {
    let body = match message.kind()? {
        "chatmsg" => EventBody::Chat(ChatMessage {
            user_id: message.int("uid")?,
            room_id: message.int("rid")?,
            user_name: message.optional("nn").map(|name| Span::push(text, name)),
            text: Span::push(text, message.text("txt")?),
            level: small(message.optional_int("level")?),
            time: message.optional_int("cst")?.or(record_time),
        }),
        "dgb" => EventBody::Gift(Gift {
            user_id: message.int("uid")?,
            room_id: message.int("rid")?,
            gift_type: small(Some(message.int("gfid")?)).ok_or("`gfid` out of range")?,
            amount: message.optional_int("gfcnt")?.unwrap_or(1),
            ip: None,
            create_time: record_time,
            update_time: None,
        }),
        "uenter" => EventBody::Visit(ViewerVisit {
            user_id: message.int("uid")?,
            room_id: message.int("rid")?,
            ip: None,
            arrive_time: record_time,
            leave_time: None,
            create_time: record_time,
            region_code: None,
            grade: small(message.optional_int("level")?),
            province: None,
        }),
        "rss" => EventBody::RoomStatus(RoomStatus {
            room_id: message.int("rid")?,
            live: message.int("ss")? == 1,
            title: None,
            time: record_time,
        }),
        _ => return Ok(None),
    };
    Ok(Some(body))
}

/// The event time of a body: the time it carries, which is the
/// message's own or else the record's.
fn time_of(body: &EventBody) -> Option<i64> {
    match body {
        EventBody::Chat(chat) => chat.time,
        EventBody::Gift(gift) => gift.create_time,
        EventBody::Visit(visit) => visit.arrive_time,
        EventBody::RoomStatus(status) => status.time,
        EventBody::StreamerStats(stats) => stats.time,
        EventBody::RoomList(_) => None,
    }
}

/// A number that fits an `s32` field, or none.
fn small(value: Option<i64>) -> Option<i32> {
    value.and_then(|v| i32::try_from(v).ok())
}

apiary_sdk::export_parser!(DouyuParser);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::Span;

    fn batch(values: &[&[u8]]) -> RawBatch {
        let mut data = Vec::new();
        let records = (0i64..)
            .zip(values)
            .map(|(offset, v)| {
                let start = data.len() as u32;
                data.extend_from_slice(v);
                RawRecord {
                    partition: 0,
                    offset,
                    timestamp: Some(1_700_000_000_000),
                    key: None,
                    value: Span {
                        start,
                        len: v.len() as u32,
                    },
                }
            })
            .collect();
        RawBatch {
            topic: TOPIC.into(),
            data,
            records,
            headers: Vec::new(),
        }
    }

    #[test]
    fn turns_messages_into_events() {
        let out = DouyuParser.parse(batch(&[
            b"type@=chatmsg/rid@=9999/uid@=12/nn@=a@Sb/txt@=666/level@=7/cst@=1700000000123/",
            b"type@=dgb/rid@=9999/uid@=12/gfid@=824/gfcnt@=3/",
            b"type@=uenter/rid@=9999/uid@=13/level@=21/",
            b"type@=rss/rid@=9999/ss@=1/",
            b"type@=mrkl/",
        ]));
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.platform, "douyu");
        let bodies: Vec<&EventBody> = out.events.iter().map(|e| &e.body).collect();
        let [
            EventBody::Chat(chat),
            EventBody::Gift(gift),
            EventBody::Visit(visit),
            EventBody::RoomStatus(status),
        ] = bodies[..]
        else {
            panic!("{bodies:?}");
        };
        assert_eq!(
            (
                chat.user_name.map(|name| name.of(&out.text)),
                chat.text.of(&out.text),
                chat.time
            ),
            (Some("a/b"), "666", Some(1_700_000_000_123))
        );
        assert_eq!((gift.gift_type, gift.amount, gift.room_id), (824, 3, 9999));
        assert_eq!((visit.user_id, visit.grade), (13, Some(21)));
        assert!(status.live);
        let times: Vec<Option<i64>> = out.events.iter().map(|e| e.time).collect();
        let record = Some(1_700_000_000_000);
        assert_eq!(times, [Some(1_700_000_000_123), record, record, record]);
    }

    #[test]
    fn a_bad_message_refuses_its_record_whole() {
        let mut two = stt::frame("type@=chatmsg/rid@=1/uid@=2/txt@=ok/");
        two.extend(stt::frame("type@=dgb/rid@=1/gfid@=5/"));
        let out = DouyuParser.parse(batch(&[b"type@=chatmsg/rid@=1/uid@=2/txt@=ok/", &two]));
        assert_eq!(out.events.len(), 1, "only the first record's");
        assert_eq!(out.text, "ok", "the refused record's text is taken back");
        let rejected: Vec<(u32, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(rejected, [(1, "message 2 (dgb): no `uid`")]);
    }
}
