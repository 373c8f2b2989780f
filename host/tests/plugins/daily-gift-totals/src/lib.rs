//! Gift totals per UTC day and gift type, written to one table per day
//! (`daily_gift_totals_{yyyyMMdd}`): exercises time-partitioned outputs.
//! Built against the 0.1.0 contract on purpose: it proves that plugins
//! made before event time still load and run.

wit_bindgen::generate!({
    path: "../../../../wit/v0.1.0",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const DAY_MS: i64 = 86_400_000;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct DailyGiftTotals;

impl Guest for DailyGiftTotals {
    fn describe() -> RuleInfo {
        let column = |name: &str, ty, merge| Column {
            name: name.into(),
            type_: ty,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "daily-gift-totals".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: "daily_gift_totals".into(),
                table: Some("daily_gift_totals_{yyyyMMdd}".into()),
                columns: vec![
                    column("day", ColumnType::Timestamp, MergeMode::Replace),
                    column("gift_type", ColumnType::Int, MergeMode::Replace),
                    column("gift_total_amount", ColumnType::Int, MergeMode::Add),
                ],
                primary_key: vec!["day".into(), "gift_type".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut totals: BTreeMap<(i64, i32), i64> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(gift) => match gift.create_time {
                    Some(time) => {
                        let day = time.div_euclid(DAY_MS) * DAY_MS;
                        *totals.entry((day, gift.gift_type)).or_default() += gift.amount;
                    }
                    None => rejected.push(Rejection {
                        index,
                        reason: "gift has no create_time: no daily table to count it in".into(),
                    }),
                },
                _ => rejected.push(Rejection {
                    index,
                    reason: "gifts only".into(),
                }),
            }
        }
        let mut cells = Vec::with_capacity(totals.len() * 3);
        for ((day, gift_type), total) in totals {
            cells.extend([
                Value::Timestamp(day),
                Value::Int(gift_type.into()),
                Value::Int(total),
            ]);
        }
        RuleOutput {
            rows: vec![OutputRows {
                output: "daily_gift_totals".into(),
                cells,
            }],
            rejected,
        }
    }
}

#[cfg(target_arch = "wasm32")]
export!(DailyGiftTotals);
