//! `gift-type-totals` on the prototype interface (`../wit/plugin.wit`):
//! the same fold into one delta per gift type.

wit_bindgen::generate!({ path: "../../wit/spans", world: "rule-plugin" });

use apiary::spans::types::{EventBatch, EventBody, OutputRows, Rejection, RuleOutput, Value};
use exports::apiary::spans::rule::Guest;
use livestream_format::GiftTypeTotals;

struct PrototypeRule;

impl Guest for PrototypeRule {
    fn process(batch: EventBatch) -> RuleOutput {
        let mut totals = GiftTypeTotals::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(g) => totals.add_amount(g.gift_type, g.amount),
                _ => rejected.push(Rejection {
                    index,
                    reason: "gift-type-totals consumes gift events only".into(),
                }),
            }
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
            rejected,
        }
    }
}

export!(PrototypeRule);
