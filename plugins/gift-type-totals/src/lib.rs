//! Rule plugin: total gift amount per gift type, the seed's
//! `SELECT gift_type, SUM(gift_total_amount) … GROUP BY gift_type`.
//!
//! Each batch folds into one delta per gift type present; the store adds the
//! deltas to its totals (`gift_total_amount` merges with `add`). The fold
//! itself is `livestream_format::GiftTypeTotals`, shared with the native
//! benchmark baseline.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};
use livestream_format::GiftTypeTotals;

const OUTPUT: &str = "gift_type_totals";

// Exported only on wasm32: on a native target the export names (which hold
// `:` and `#`) break the cdylib's linker version script, and `cargo build
// --workspace` must still link. Natively the code is still type-checked.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct GiftTypeTotalsRule;

impl Guest for GiftTypeTotalsRule {
    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "gift-type-totals".into(),
            // `next-version` builds the same code under another version,
            // which the hot-reload tests swap in and out.
            version: if cfg!(feature = "next-version") {
                "0.1.1"
            } else {
                "0.1.0"
            }
            .into(),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("gift_type", MergeMode::Replace),
                    column("gift_total_amount", MergeMode::Add),
                ],
                primary_key: vec!["gift_type".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut totals = GiftTypeTotals::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(g) => totals.add(&livestream_format::Gift {
                    user_id: g.user_id,
                    room_id: g.room_id,
                    gift_type: g.gift_type,
                    amount: g.amount,
                    ip: g.ip,
                    create_time: g.create_time,
                    update_time: g.update_time,
                }),
                _ => rejected.push(Rejection {
                    index,
                    reason: "gift-type-totals consumes gift events only".into(),
                }),
            }
        }
        let rows = if totals.is_empty() {
            Vec::new()
        } else {
            let mut cells = Vec::with_capacity(totals.len() * 2);
            for (gift_type, total) in totals.iter() {
                cells.push(Value::Int(gift_type.into()));
                cells.push(Value::Int(total));
            }
            vec![OutputRows {
                output: OUTPUT.into(),
                cells,
            }]
        };
        RuleOutput { rows, rejected }
    }
}

#[cfg(target_arch = "wasm32")]
export!(GiftTypeTotalsRule);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary::plugin::types::{Event, Gift, ViewerVisit};

    fn gift(gift_type: i32, amount: i64) -> EventBody {
        EventBody::Gift(Gift {
            user_id: 1,
            room_id: 2,
            gift_type,
            amount,
            ip: None,
            create_time: None,
            update_time: None,
        })
    }

    fn batch(bodies: Vec<EventBody>) -> EventBatch {
        EventBatch {
            topic: "live_gift_total".into(),
            platform: "seed".into(),
            events: (0..)
                .zip(bodies)
                .map(|(record_index, body)| Event { record_index, body })
                .collect(),
        }
    }

    fn ints(cells: &[Value]) -> Vec<i64> {
        cells
            .iter()
            .map(|c| match c {
                Value::Int(v) => *v,
                other => panic!("not an int: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn describes_the_output() {
        let info = GiftTypeTotalsRule::describe();
        assert_eq!(info.name, "gift-type-totals");
        assert_eq!(info.version, "0.1.0");
        let output = &info.outputs[0];
        assert_eq!(output.name, "gift_type_totals");
        assert_eq!(output.primary_key, ["gift_type"]);
        assert!(matches!(output.columns[1].merge, MergeMode::Add));
    }

    #[test]
    fn folds_a_batch_into_one_row_per_type() {
        let visit = EventBody::Visit(ViewerVisit {
            user_id: 1,
            room_id: 2,
            ip: None,
            arrive_time: None,
            leave_time: None,
            create_time: None,
            region_code: None,
            grade: None,
            province: None,
        });
        let out =
            GiftTypeTotalsRule::process(batch(vec![gift(3, 10), gift(1, 5), visit, gift(3, 7)]));
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.rows[0].output, "gift_type_totals");
        assert_eq!(ints(&out.rows[0].cells), [1, 5, 3, 17]);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].index, 2);
    }

    #[test]
    fn empty_batch_has_no_rows() {
        let out = GiftTypeTotalsRule::process(batch(Vec::new()));
        assert!(out.rows.is_empty() && out.rejected.is_empty());
    }
}
