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
            let (ip, arrive_time) = match (v.ip, v.arrive_time) {
                (Some(ip), Some(arrive_time)) => (ip, arrive_time),
                (ip, _) => {
                    let column = if ip.is_none() { "ip" } else { "arrive_time" };
                    rejected.push(Rejection::new(
                        index,
                        format!("primary key column `{column}` is missing"),
                    ));
                    continue;
                }
            };
            rows.push_row([
                Value::Int(v.user_id),
                ip.of(&batch.text).into(),
                Value::Int(v.room_id),
                Value::Timestamp(arrive_time),
                Value::timestamp_or_null(v.leave_time),
                Value::timestamp_or_null(v.create_time),
                v.region_code.into(),
                v.grade.into(),
                v.province.map(|p| p.of(&batch.text)).into(),
            ]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(ViewerLog);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::testing::{MemoryHost, batch as timed};
    use apiary_sdk::{Span, ViewerVisit};

    /// A batch of visits `(ip, arrive_time)`, all from Zhejiang.
    fn batch(visits: &[(Option<&str>, Option<i64>)]) -> EventBatch {
        let mut text = String::new();
        let events = visits
            .iter()
            .map(|&(ip, arrive_time)| {
                let visit = ViewerVisit {
                    user_id: 3165,
                    room_id: 20_210_813,
                    ip: ip.map(|ip| Span::push(&mut text, ip)),
                    arrive_time,
                    leave_time: None,
                    create_time: Some(7),
                    region_code: Some(1122),
                    grade: None,
                    province: Some(Span::push(&mut text, "浙江")),
                };
                (arrive_time, EventBody::Visit(visit))
            })
            .collect();
        let mut batch = timed(events, None);
        batch.text = text;
        batch
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
            batch(&[
                (Some("1.2.3.4"), Some(1000)),
                (None, Some(1000)),
                (Some("1.2.3.4"), None),
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
