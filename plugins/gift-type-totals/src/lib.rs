//! Rule plugin: total gift amount per gift type, the seed's
//! `SELECT gift_type, SUM(gift_total_amount) … GROUP BY gift_type`.
//!
//! Each batch folds into one delta per gift type present; the store adds the
//! deltas to its totals (`gift_total_amount` merges with `add`). The fold
//! itself is `livestream_format::GiftTypeTotals`, shared with the native
//! benchmark baseline.

use apiary_sdk::ColumnType::Int;
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rule, RuleInfo, RuleOutput,
    Value,
};
use livestream_format::GiftTypeTotals;

const OUTPUT: &str = "gift_type_totals";

/// The rule.
pub struct GiftTypeTotalsRule;

impl Rule for GiftTypeTotalsRule {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        // `next-version` builds the same code under another version, which
        // the hot-reload tests swap in and out.
        let version = if cfg!(feature = "next-version") {
            "0.1.1"
        } else {
            "0.1.0"
        };
        RuleInfo::new("gift-type-totals", version, [EventKind::Gift]).output(
            Output::new(OUTPUT)
                .key("gift_type", Int)
                .add("gift_total_amount", Int),
        )
    }

    fn process(&self, batch: EventBatch, _: &mut impl Host) -> RuleOutput {
        let mut totals = GiftTypeTotals::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::Gift(g) => totals.add_amount(g.gift_type, g.amount),
                _ => rejected.push(Rejection::new(
                    index,
                    "gift-type-totals consumes gift events only",
                )),
            }
        }
        let mut rows = apiary_sdk::Rows::new(OUTPUT, 2);
        for (gift_type, total) in totals.iter() {
            rows.push_row([Value::Int(gift_type.into()), Value::Int(total)]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(GiftTypeTotalsRule);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::testing::{MemoryHost, batch};
    use apiary_sdk::{Gift, MergeMode, ViewerVisit};

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

    fn ints(cells: &[Value]) -> Vec<i64> {
        cells
            .iter()
            .map(|c| match c {
                Value::Int(v) => *v,
                other => panic!("not an int: {other:?}"),
            })
            .collect()
    }

    fn process(bodies: Vec<EventBody>) -> RuleOutput {
        let rule = GiftTypeTotalsRule::init(&Params::default()).unwrap();
        let events = bodies.into_iter().map(|b| (None, b)).collect();
        rule.process(batch(events, None), &mut MemoryHost::new())
    }

    #[test]
    fn describes_the_output() {
        let info = GiftTypeTotalsRule.describe();
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
        let out = process(vec![gift(3, 10), gift(1, 5), visit, gift(3, 7)]);
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.rows[0].output, "gift_type_totals");
        assert_eq!(ints(&out.rows[0].cells), [1, 5, 3, 17]);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].index, 2);
    }

    #[test]
    fn empty_batch_has_no_rows() {
        let out = process(Vec::new());
        assert!(out.rows.is_empty() && out.rejected.is_empty());
    }

    #[test]
    fn refuses_unknown_parameters() {
        let err = GiftTypeTotalsRule::init(&Params::from_pairs([("size", "1")]));
        assert!(err.is_err());
    }
}
