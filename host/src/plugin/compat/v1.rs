//! Plugins built against `apiary:plugin@0.1.0`: their inputs are turned
//! into 0.1.0 types and their outputs into the host's 0.2.0 types at the
//! boundary. A 0.1.0 parser's events get the event time 0.2.0 parsers
//! set themselves: the message's own time, else the record's timestamp.

use crate::model::wit::{ParseOutput, types, v1};

/// A raw batch as a 0.1.0 parser takes it.
pub fn raw_batch(batch: &types::RawBatch) -> v1::types::RawBatch {
    let span = |s: types::Span| v1::types::Span {
        start: s.start,
        len: s.len,
    };
    v1::types::RawBatch {
        topic: batch.topic.clone(),
        data: batch.data.clone(),
        records: batch
            .records
            .iter()
            .map(|r| v1::types::RawRecord {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(span),
                value: span(r.value),
                headers: r
                    .headers
                    .iter()
                    .map(|h| v1::types::Header {
                        name: span(h.name),
                        value: span(h.value),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A 0.1.0 parser's output, its events timed.
pub fn parse_output(output: v1::ParseOutput, batch: &types::RawBatch) -> ParseOutput {
    ParseOutput {
        platform: output.platform,
        events: output
            .events
            .into_iter()
            .map(|e| {
                let record_time = batch
                    .records
                    .get(e.record_index as usize)
                    .and_then(|r| r.timestamp);
                let body = event_body(e.body);
                types::Event {
                    record_index: e.record_index,
                    time: body_time(&body).or(record_time),
                    body,
                }
            })
            .collect(),
        rejected: output.rejected.into_iter().map(Into::into).collect(),
    }
}

/// The time a 0.1.0 event body carries, if any.
fn body_time(body: &types::EventBody) -> Option<i64> {
    use types::EventBody as B;
    match body {
        B::Visit(v) => v.arrive_time.or(v.create_time),
        B::Gift(g) => g.create_time,
        B::Chat(c) => c.time,
        B::RoomStatus(s) => s.time,
        B::StreamerStats(s) => s.time,
        B::RoomList(_) => None,
    }
}

fn event_body(body: v1::types::EventBody) -> types::EventBody {
    use types::EventBody as B;
    use v1::types::EventBody as O;
    match body {
        O::Visit(v) => B::Visit(types::ViewerVisit {
            user_id: v.user_id,
            room_id: v.room_id,
            ip: v.ip,
            arrive_time: v.arrive_time,
            leave_time: v.leave_time,
            create_time: v.create_time,
            region_code: v.region_code,
            grade: v.grade,
            province: v.province,
        }),
        O::Gift(g) => B::Gift(types::Gift {
            user_id: g.user_id,
            room_id: g.room_id,
            gift_type: g.gift_type,
            amount: g.amount,
            ip: g.ip,
            create_time: g.create_time,
            update_time: g.update_time,
        }),
        O::Chat(c) => B::Chat(types::ChatMessage {
            user_id: c.user_id,
            room_id: c.room_id,
            user_name: c.user_name,
            text: c.text,
            level: c.level,
            time: c.time,
        }),
        O::RoomStatus(s) => B::RoomStatus(types::RoomStatus {
            room_id: s.room_id,
            live: s.live,
            title: s.title,
            time: s.time,
        }),
        O::StreamerStats(s) => B::StreamerStats(types::StreamerStats {
            room_id: s.room_id,
            heat: s.heat,
            followers: s.followers,
            online: s.online,
            time: s.time,
        }),
    }
}

/// Events as a 0.1.0 rule takes them. A 0.1.0 rule cannot consume kinds
/// added later, so none reaches it.
pub fn event_batch(batch: &types::EventBatch) -> v1::types::EventBatch {
    use types::EventBody as B;
    use v1::types::EventBody as O;
    let events = batch
        .events
        .iter()
        .filter_map(|e| {
            let body = match e.body.clone() {
                B::Visit(v) => O::Visit(v1::types::ViewerVisit {
                    user_id: v.user_id,
                    room_id: v.room_id,
                    ip: v.ip,
                    arrive_time: v.arrive_time,
                    leave_time: v.leave_time,
                    create_time: v.create_time,
                    region_code: v.region_code,
                    grade: v.grade,
                    province: v.province,
                }),
                B::Gift(g) => O::Gift(v1::types::Gift {
                    user_id: g.user_id,
                    room_id: g.room_id,
                    gift_type: g.gift_type,
                    amount: g.amount,
                    ip: g.ip,
                    create_time: g.create_time,
                    update_time: g.update_time,
                }),
                B::Chat(c) => O::Chat(v1::types::ChatMessage {
                    user_id: c.user_id,
                    room_id: c.room_id,
                    user_name: c.user_name,
                    text: c.text,
                    level: c.level,
                    time: c.time,
                }),
                B::RoomStatus(s) => O::RoomStatus(v1::types::RoomStatus {
                    room_id: s.room_id,
                    live: s.live,
                    title: s.title,
                    time: s.time,
                }),
                B::StreamerStats(s) => O::StreamerStats(v1::types::StreamerStats {
                    room_id: s.room_id,
                    heat: s.heat,
                    followers: s.followers,
                    online: s.online,
                    time: s.time,
                }),
                B::RoomList(_) => return None,
            };
            Some(v1::types::Event {
                record_index: e.record_index,
                body,
            })
        })
        .collect();
    v1::types::EventBatch {
        topic: batch.topic.clone(),
        platform: batch.platform.clone(),
        events,
    }
}
