//! Rule plugin: gift totals and counts per user, the seed dashboard's "top
//! 10 gifting users" (`SELECT … ORDER BY gift_total_amount DESC LIMIT 10`
//! on the output). Each batch folds into one delta row per user; the store
//! adds them up. `kits/<python|js|c>/top-gifters` is the same rule in
//! Python, JavaScript and C, and must produce the same rows.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "top_gifters";

// Exported only on wasm32 (see gift-type-totals for why).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct TopGifters;

impl Guest for TopGifters {
    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "top-gifters".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("user_id", MergeMode::Replace),
                    column("gift_total_amount", MergeMode::Add),
                    column("gifts", MergeMode::Add),
                ],
                primary_key: vec!["user_id".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut totals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(g) => {
                    let entry = totals.entry(g.user_id).or_default();
                    entry.0 += g.amount;
                    entry.1 += 1;
                }
                _ => rejected.push(Rejection {
                    index,
                    reason: "top-gifters consumes gift events only".into(),
                }),
            }
        }
        let mut cells = Vec::with_capacity(totals.len() * 3);
        for (user, (amount, gifts)) in totals {
            cells.extend([Value::Int(user), Value::Int(amount), Value::Int(gifts)]);
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
export!(TopGifters);
