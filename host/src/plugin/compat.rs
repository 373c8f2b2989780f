//! Plugins built against `apiary:plugin@0.1.0` run beside 0.2.0 ones: their
//! inputs are turned into 0.1.0 types and their outputs into 0.2.0 types at
//! the boundary. A 0.1.0 parser's events get the event time 0.2.0 parsers
//! set themselves: the message's own time, else the record's timestamp.

use crate::model::wit::{ParseOutput, ParserInfo, RuleInfo, RuleOutput, types, v1};

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
        rejected: output.rejected.into_iter().map(rejection).collect(),
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

/// A 0.1.0 rule's output.
pub fn rule_output(output: v1::RuleOutput) -> RuleOutput {
    RuleOutput {
        rows: output
            .rows
            .into_iter()
            .map(|r| types::OutputRows {
                output: r.output,
                cells: r.cells.into_iter().map(value).collect(),
            })
            .collect(),
        rejected: output.rejected.into_iter().map(rejection).collect(),
    }
}

fn rejection(r: v1::types::Rejection) -> types::Rejection {
    types::Rejection {
        index: r.index,
        reason: r.reason,
    }
}

/// A 0.1.0 value as a 0.2.0 one.
pub fn value(v: v1::types::Value) -> types::Value {
    use types::Value as N;
    use v1::types::Value as O;
    match v {
        O::Null => N::Null,
        O::Int(i) => N::Int(i),
        O::Float(f) => N::Float(f),
        O::Text(t) => N::Text(t),
        O::Bytes(b) => N::Bytes(b),
        O::Timestamp(t) => N::Timestamp(t),
        O::Boolean(b) => N::Boolean(b),
    }
}

/// A 0.2.0 value as a 0.1.0 one (lookup answers).
pub fn value_v1(v: types::Value) -> v1::types::Value {
    use types::Value as N;
    use v1::types::Value as O;
    match v {
        N::Null => O::Null,
        N::Int(i) => O::Int(i),
        N::Float(f) => O::Float(f),
        N::Text(t) => O::Text(t),
        N::Bytes(b) => O::Bytes(b),
        N::Timestamp(t) => O::Timestamp(t),
        N::Boolean(b) => O::Boolean(b),
    }
}

/// A 0.1.0 log level as a 0.2.0 one.
pub fn log_level(level: v1::types::LogLevel) -> types::LogLevel {
    use types::LogLevel as N;
    use v1::types::LogLevel as O;
    match level {
        O::Trace => N::Trace,
        O::Debug => N::Debug,
        O::Info => N::Info,
        O::Warn => N::Warn,
        O::Error => N::Error,
    }
}

/// What a 0.1.0 parser says of itself.
pub fn parser_info(info: v1::ParserInfo) -> ParserInfo {
    ParserInfo {
        name: info.name,
        version: info.version,
        topics: info.topics,
    }
}

/// What a 0.1.0 rule says of itself.
pub fn rule_info(info: v1::RuleInfo) -> RuleInfo {
    use types::EventKind as N;
    use v1::types::EventKind as O;
    RuleInfo {
        name: info.name,
        version: info.version,
        consumes: info
            .consumes
            .into_iter()
            .map(|k| match k {
                O::Visit => N::Visit,
                O::Gift => N::Gift,
                O::Chat => N::Chat,
                O::RoomStatus => N::RoomStatus,
                O::StreamerStats => N::StreamerStats,
            })
            .collect(),
        outputs: info
            .outputs
            .into_iter()
            .map(|o| types::OutputSchema {
                name: o.name,
                table: o.table,
                columns: o
                    .columns
                    .into_iter()
                    .map(|c| types::Column {
                        name: c.name,
                        type_: column_type(c.type_),
                        merge: merge_mode(c.merge),
                        nullable: c.nullable,
                    })
                    .collect(),
                primary_key: o.primary_key,
            })
            .collect(),
    }
}

fn column_type(t: v1::types::ColumnType) -> types::ColumnType {
    use types::ColumnType as N;
    use v1::types::ColumnType as O;
    match t {
        O::Int => N::Int,
        O::Float => N::Float,
        O::Text => N::Text,
        O::Bytes => N::Bytes,
        O::Timestamp => N::Timestamp,
        O::Boolean => N::Boolean,
    }
}

fn merge_mode(m: v1::types::MergeMode) -> types::MergeMode {
    use types::MergeMode as N;
    use v1::types::MergeMode as O;
    match m {
        O::Replace => N::Replace,
        O::Add => N::Add,
        O::Max => N::Max,
        O::Min => N::Min,
    }
}
