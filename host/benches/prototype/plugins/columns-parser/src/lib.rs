//! `seed-json-parser`'s gift path on the columnar prototype interface
//! (`../../wit/columns`): the same parse, each gift's fields appended to
//! the batch's columns.

wit_bindgen::generate!({ path: "../../wit/columns", world: "parser-plugin" });

use apiary::columns::types::{Gifts, ParseOutput, RawBatch, Rejection, Visits};
use exports::apiary::columns::parser::Guest;

struct ColumnsParser;

/// `value` and a presence flag for it.
fn optional<T: Default>(value: Option<T>) -> (T, u8) {
    match value {
        Some(v) => (v, 1),
        None => (T::default(), 0),
    }
}

impl Guest for ColumnsParser {
    fn parse(batch: RawBatch) -> ParseOutput {
        let records = batch.values.len() / 2;
        let mut text = String::new();
        let mut g = Gifts {
            record_index: Vec::with_capacity(records),
            time: Vec::with_capacity(records),
            has_time: Vec::with_capacity(records),
            user_id: Vec::with_capacity(records),
            room_id: Vec::with_capacity(records),
            gift_type: Vec::with_capacity(records),
            amount: Vec::with_capacity(records),
            ip: Vec::with_capacity(2 * records),
            has_ip: Vec::with_capacity(records),
            create_time: Vec::with_capacity(records),
            has_create_time: Vec::with_capacity(records),
            update_time: Vec::with_capacity(records),
            has_update_time: Vec::with_capacity(records),
        };
        let mut rejected = Vec::new();
        let gifts = matches!(batch.topic.as_str(), "live_gift_total" | "live_gift_log");
        for (index, span) in (0u32..).zip(batch.values.chunks_exact(2)) {
            if !gifts {
                rejected.push(Rejection {
                    index,
                    reason: format!("unknown topic `{}`", batch.topic),
                });
                continue;
            }
            let (start, len) = (span[0] as usize, span[1] as usize);
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
                Ok(gift) => {
                    let i = index as usize;
                    let timestamp = (batch.has_timestamp.get(i).zip(batch.timestamps.get(i)))
                        .and_then(|(&has, &t)| (has == 1).then_some(t));
                    let (time, has_time) = optional(gift.create_time.or(timestamp));
                    let (ip, has_ip) = optional(gift.ip.map(|ip| {
                        let start = text.len() as u32;
                        text.push_str(&ip);
                        [start, ip.len() as u32]
                    }));
                    let (create_time, has_create_time) = optional(gift.create_time);
                    let (update_time, has_update_time) = optional(gift.update_time);
                    g.record_index.push(index);
                    g.time.push(time);
                    g.has_time.push(has_time);
                    g.user_id.push(gift.user_id);
                    g.room_id.push(gift.room_id);
                    g.gift_type.push(gift.gift_type);
                    g.amount.push(gift.amount);
                    g.ip.extend(ip);
                    g.has_ip.push(has_ip);
                    g.create_time.push(create_time);
                    g.has_create_time.push(has_create_time);
                    g.update_time.push(update_time);
                    g.has_update_time.push(has_update_time);
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
            gifts: g,
            visits: Visits {
                record_index: Vec::new(),
                time: Vec::new(),
                has_time: Vec::new(),
                user_id: Vec::new(),
                room_id: Vec::new(),
                ip: Vec::new(),
                has_ip: Vec::new(),
                arrive_time: Vec::new(),
                has_arrive_time: Vec::new(),
                leave_time: Vec::new(),
                has_leave_time: Vec::new(),
                create_time: Vec::new(),
                has_create_time: Vec::new(),
                region_code: Vec::new(),
                has_region_code: Vec::new(),
                grade: Vec::new(),
                has_grade: Vec::new(),
                province: Vec::new(),
                has_province: Vec::new(),
            },
            rejected,
        }
    }
}

export!(ColumnsParser);
