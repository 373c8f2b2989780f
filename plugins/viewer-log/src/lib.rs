//! Rule plugin: copies every viewer visit into the `live_streaming_log`
//! table, upserting on (`user_id`, `ip`, `room_id`, `arrive_time`), as the
//! seed's first Flink job does.
//!
//! A visit without `ip` or `arrive_time` is rejected: a primary-key column
//! can't be null, and dropping it silently would hide bad input.

use apiary_sdk::ColumnType::{Int, Text, Timestamp};
use apiary_sdk::{
    ColumnType, EventBatch, EventBody, EventKind, Host, MergeMode, Output, Params, Rejection, Rows,
    Rule, RuleInfo, RuleOutput, Value,
};

const OUTPUT: &str = "live_streaming_log";

/// The output's columns after the key, in the order of each row's cells;
/// all nullable.
const VALUES: [(&str, ColumnType); 5] = [
    ("leave_time", Timestamp),
    ("create_time", Timestamp),
    ("region_code", Int),
    ("grade", Int),
    ("province", Text),
];

/// The rule.
pub struct ViewerLog;

impl Rule for ViewerLog {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        let output = Output::new(OUTPUT)
            .key("user_id", Int)
            .key("ip", Text)
            .key("room_id", Int)
            .key("arrive_time", Timestamp);
        let output = VALUES.iter().fold(output, |out, &(name, ty)| {
            out.nullable(name, ty, MergeMode::Replace)
        });
        RuleInfo::new("viewer-log", "0.1.0", [EventKind::Visit]).output(output)
    }

    fn process(&self, batch: EventBatch, _: &mut impl Host) -> RuleOutput {
        let mut rows = Rows::new(OUTPUT, 4 + VALUES.len());
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(v) = event.body else {
                rejected.push(Rejection::new(
                    index,
                    "viewer-log consumes visit events only",
                ));
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
                rejected.push(Rejection::new(
                    index,
                    format!("primary key column `{column}` is missing"),
                ));
                continue;
            }
            // Both present: `missing_primary_key` just said so.
            let (Some(ip), Some(arrive_time)) = (visit.ip, visit.arrive_time) else {
                continue;
            };
            rows.push_row([
                Value::Int(visit.user_id),
                Value::Text(ip),
                Value::Int(visit.room_id),
                Value::Timestamp(arrive_time),
                Value::timestamp_or_null(visit.leave_time),
                Value::timestamp_or_null(visit.create_time),
                visit.region_code.into(),
                visit.grade.into(),
                visit.province.into(),
            ]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(ViewerLog);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::ViewerVisit;
    use apiary_sdk::testing::{MemoryHost, batch as timed};

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
        timed(
            visits
                .into_iter()
                .map(|v| (v.arrive_time, EventBody::Visit(v)))
                .collect(),
            None,
        )
    }

    #[test]
    fn describes_the_output() {
        let info = ViewerLog.describe();
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
        let out = ViewerLog.process(
            batch(vec![
                visit(Some("1.2.3.4"), Some(1000)),
                visit(None, Some(1000)),
                visit(Some("1.2.3.4"), None),
            ]),
            &mut MemoryHost::new(),
        );
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
