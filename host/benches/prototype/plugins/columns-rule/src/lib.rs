//! `gift-type-totals` on the columnar prototype interface
//! (`../../wit/columns`): the same fold, over two columns.

wit_bindgen::generate!({ path: "../../wit/columns", world: "rule-plugin" });

use apiary::columns::types::{EventBatch, OutputRows, RuleOutput, Value};
use exports::apiary::columns::rule::Guest;
use livestream_format::GiftTypeTotals;

struct ColumnsRule;

impl Guest for ColumnsRule {
    fn process(batch: EventBatch) -> RuleOutput {
        let mut totals = GiftTypeTotals::new();
        for (&gift_type, &amount) in batch.gifts.gift_type.iter().zip(&batch.gifts.amount) {
            totals.add_amount(gift_type, amount);
        }
        let mut cells = Vec::with_capacity(2 * totals.len());
        for (gift_type, total) in totals.iter() {
            cells.extend([Value::Int(gift_type.into()), Value::Int(total)]);
        }
        RuleOutput {
            rows: vec![OutputRows {
                output: "gift_type_totals".into(),
                cells,
            }],
            rejected: Vec::new(),
        }
    }
}

export!(ColumnsRule);
