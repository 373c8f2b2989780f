//! Rule plugin: copies every viewer visit into the `live_streaming_log`
//! table, upserting on (`user_id`, `ip`, `room_id`, `arrive_time`), as the
//! seed's first Flink job does.
//!
//! A visit without `ip` or `arrive_time` is rejected: a primary-key column
//! can't be null, and dropping it silently would hide bad input.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "live_streaming_log";

/// The output's columns, in the order of each row's cells.
const COLUMNS: [(&str, ColumnType, bool); 9] = [
    ("user_id", ColumnType::Int, false),
    ("ip", ColumnType::Text, false),
    ("room_id", ColumnType::Int, false),
    ("arrive_time", ColumnType::Timestamp, false),
    ("leave_time", ColumnType::Timestamp, true),
    ("create_time", ColumnType::Timestamp, true),
    ("region_code", ColumnType::Int, true),
    ("grade", ColumnType::Int, true),
    ("province", ColumnType::Text, true),
];

// Exported only on wasm32: on a native target the export names (which hold
// `:` and `#`) break the cdylib's linker version script, and `cargo build
// --workspace` must still link. Natively the code is still type-checked.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct ViewerLog;

impl Guest for ViewerLog {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "viewer-log".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Visit],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: COLUMNS
                    .iter()
                    .map(|&(name, type_, nullable)| Column {
                        name: name.into(),
                        type_,
                        merge: MergeMode::Replace,
                        nullable,
                    })
                    .collect(),
                primary_key: ["user_id", "ip", "room_id", "arrive_time"]
                    .map(String::from)
                    .to_vec(),
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut cells = Vec::with_capacity(batch.events.len() * COLUMNS.len());
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(v) = event.body else {
                rejected.push(Rejection {
                    index,
                    reason: "viewer-log consumes visit events only".into(),
                });
                continue;
            };
            let visit = livestream_format::Visit {
                user_id: v.user_id,
                room_id: v.room_id,
                ip: v.ip,
                arrive_time: v.arrive_time,
                leave_time: v.leave_time,
                create_time: v.create_time,
                region_code: v.region_code,
                grade: v.grade,
                province: v.province,
            };
            if let Some(column) = visit.missing_primary_key() {
                rejected.push(Rejection {
                    index,
                    reason: format!("primary key column `{column}` is missing"),
                });
                continue;
            }
            // Both present: `missing_primary_key` just said so.
            let (Some(ip), Some(arrive_time)) = (visit.ip, visit.arrive_time) else {
                continue;
            };
            cells.extend([
                Value::Int(visit.user_id),
                Value::Text(ip),
                Value::Int(visit.room_id),
                Value::Timestamp(arrive_time),
                visit.leave_time.map_or(Value::Null, Value::Timestamp),
                visit.create_time.map_or(Value::Null, Value::Timestamp),
                visit
                    .region_code
                    .map_or(Value::Null, |c| Value::Int(c.into())),
                visit.grade.map_or(Value::Null, |g| Value::Int(g.into())),
                visit.province.map_or(Value::Null, Value::Text),
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
export!(ViewerLog);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary::plugin::types::{Event, ViewerVisit};

    fn visit(ip: Option<&str>, arrive_time: Option<i64>) -> ViewerVisit {
        ViewerVisit {
            user_id: 3165,
            room_id: 20_210_813,
            ip: ip.map(String::from),
            arrive_time,
            leave_time: None,
            create_time: Some(7),
            region_code: Some(1122),
            grade: None,
            province: Some("浙江".into()),
        }
    }

    fn batch(visits: Vec<ViewerVisit>) -> EventBatch {
        EventBatch {
            topic: "live_streaming_log".into(),
            platform: "seed".into(),
            events: (0..)
                .zip(visits)
                .map(|(record_index, v)| Event {
                    record_index,
                    body: EventBody::Visit(v),
                })
                .collect(),
        }
    }

    #[test]
    fn describes_the_output() {
        let info = ViewerLog::describe();
        assert_eq!(info.name, "viewer-log");
        assert_eq!(info.version, "0.1.0");
        let output = &info.outputs[0];
        assert_eq!(output.columns.len(), 9);
        assert_eq!(
            output.primary_key,
            ["user_id", "ip", "room_id", "arrive_time"]
        );
        for column in &output.columns {
            let in_key = output.primary_key.contains(&column.name);
            assert_eq!(column.nullable, !in_key, "{}", column.name);
        }
    }

    #[test]
    fn one_row_per_visit_and_rejects_missing_keys() {
        let out = ViewerLog::process(batch(vec![
            visit(Some("1.2.3.4"), Some(1000)),
            visit(None, Some(1000)),
            visit(Some("1.2.3.4"), None),
        ]));
        assert_eq!(out.rows.len(), 1);
        let cells = &out.rows[0].cells;
        assert_eq!(cells.len(), 9);
        assert!(matches!(cells[0], Value::Int(3165)));
        assert!(matches!(&cells[1], Value::Text(ip) if ip == "1.2.3.4"));
        assert!(matches!(cells[3], Value::Timestamp(1000)));
        assert!(matches!(cells[4], Value::Null));
        assert!(matches!(cells[5], Value::Timestamp(7)));
        assert!(matches!(cells[6], Value::Int(1122)));
        assert!(matches!(cells[7], Value::Null));
        assert!(matches!(&cells[8], Value::Text(p) if p == "浙江"));
        let rejected: Vec<(u32, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [
                (1, "primary key column `ip` is missing"),
                (2, "primary key column `arrive_time` is missing")
            ]
        );
    }
}
