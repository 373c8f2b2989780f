//! Rule plugin: gift totals and counts per user, the seed dashboard's "top
//! 10 gifting users" (`SELECT … ORDER BY gift_total_amount DESC LIMIT 10`
//! on the output). Each batch folds into one delta row per user; the store
//! adds them up. `kits/<python|js|c>/top-gifters` is the same rule in
//! Python, JavaScript and C, and must produce the same rows.

use std::collections::BTreeMap;

use apiary_sdk::ColumnType::Int;
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rows, Rule, RuleInfo,
    RuleOutput, Value,
};

const OUTPUT: &str = "top_gifters";

/// The rule.
pub struct TopGifters;

impl Rule for TopGifters {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new("top-gifters", "0.1.0", [EventKind::Gift]).output(
            Output::new(OUTPUT)
                .key("user_id", Int)
                .add("gift_total_amount", Int)
                .add("gifts", Int),
        )
    }

    fn process(&self, batch: EventBatch, _: &mut impl Host) -> RuleOutput {
        let mut totals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(g) => {
                    let entry = totals.entry(g.user_id).or_default();
                    entry.0 += g.amount;
                    entry.1 += 1;
                }
                _ => rejected.push(Rejection::new(
                    index,
                    "top-gifters consumes gift events only",
                )),
            }
        }
        let mut rows = Rows::new(OUTPUT, 3);
        for (user, (amount, gifts)) in totals {
            rows.push_row([Value::Int(user), Value::Int(amount), Value::Int(gifts)]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(TopGifters);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::Gift;
    use apiary_sdk::testing::{MemoryHost, batch};

    #[test]
    fn one_row_per_user_in_user_order() {
        let gift = |user_id, amount| {
            let body = EventBody::Gift(Gift {
                user_id,
                room_id: 1,
                gift_type: 1,
                amount,
                ip: None,
                create_time: None,
                update_time: None,
            });
            (None, body)
        };
        let out = TopGifters.process(
            batch(vec![gift(9, 5), gift(2, 1), gift(9, 7)], None),
            &mut MemoryHost::new(),
        );
        assert_eq!(
            out.rows[0].cells,
            [2, 1, 1, 9, 12, 2].map(Value::Int).to_vec()
        );
    }
}
