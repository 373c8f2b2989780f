//! `seed-json-parser`'s gift path on the prototype interface
//! (`../wit/plugin.wit`): the same parse, each event's IP appended to the
//! batch's one `text` string instead of a string of its own.

wit_bindgen::generate!({ path: "../../wit/spans", world: "parser-plugin" });

use apiary::spans::types::{Event, EventBody, Gift, ParseOutput, RawBatch, Rejection, Span};
use exports::apiary::spans::parser::Guest;

struct PrototypeParser;

impl Guest for PrototypeParser {
    fn parse(batch: RawBatch) -> ParseOutput {
        let mut text = String::new();
        let mut events = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        let gifts = matches!(batch.topic.as_str(), "live_gift_total" | "live_gift_log");
        for (index, record) in (0u32..).zip(&batch.records) {
            if !gifts {
                rejected.push(Rejection {
                    index,
                    reason: format!("unknown topic `{}`", batch.topic),
                });
                continue;
            }
            let (start, len) = (record.value.start as usize, record.value.len as usize);
            let value = start
                .checked_add(len)
                .and_then(|end| batch.data.get(start..end));
            let Some(value) = value else {
                rejected.push(Rejection {
                    index,
                    reason: "value outside the batch".into(),
                });
                continue;
            };
            match livestream_format::parse_gift_ref(value) {
                Ok(g) => {
                    let ip = g.ip.map(|ip| {
                        let start = text.len() as u32;
                        text.push_str(&ip);
                        Span {
                            start,
                            len: ip.len() as u32,
                        }
                    });
                    events.push(Event {
                        record_index: index,
                        time: g.create_time.or(record.timestamp),
                        body: EventBody::Gift(Gift {
                            user_id: g.user_id,
                            room_id: g.room_id,
                            gift_type: g.gift_type,
                            amount: g.amount,
                            ip,
                            create_time: g.create_time,
                            update_time: g.update_time,
                        }),
                    });
                }
                Err(e) => rejected.push(Rejection {
                    index,
                    reason: e.to_string(),
                }),
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

export!(PrototypeParser);
