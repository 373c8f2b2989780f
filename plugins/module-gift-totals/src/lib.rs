//! Rule plugin: total gift amount per site module, the seed's
//! `SELECT b.cf.module_id, SUM(a.gift_total_amount) … LEFT JOIN dim_hbase
//! FOR SYSTEM_TIME AS OF a.proc_time ON a.room_id = b.rowkey GROUP BY
//! b.cf.module_id`.
//!
//! Each batch asks the `dim_hbase` lookup table for the `module_id` of all
//! its rooms at once, then folds one delta per module (`add` merge). A room
//! the table does not know, or whose `module_id` is empty or not a number,
//! counts under module [`UNKNOWN_MODULE`] (0) instead of being dropped:
//! the totals always add up to every gift. If the lookup itself fails, every
//! gift of the batch is refused with the reason, so it goes to the dead
//! letters and can be replayed.

use std::collections::BTreeMap;

use apiary_sdk::ColumnType::Int;
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rows, Rule, RuleInfo,
    RuleOutput, Value,
};

const OUTPUT: &str = "module_gift_totals";
/// The dimension table rooms are looked up in (row key: the room id).
pub const TABLE: &str = "dim_hbase";
/// Module of rooms the dimension table does not map.
pub const UNKNOWN_MODULE: i64 = 0;

/// The rule.
pub struct ModuleGiftTotalsRule;

impl Rule for ModuleGiftTotalsRule {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new("module-gift-totals", "0.1.0", [EventKind::Gift]).output(
            Output::new(OUTPUT)
                .key("module_id", Int)
                .add("module_gift_total_amount", Int),
        )
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        process_with(batch, |rooms| {
            host.lookup(TABLE, rooms, &["module_id".to_owned()])
        })
    }
}

/// The rule, with the lookup passed in so tests can stand in for the host.
fn process_with(
    batch: EventBatch,
    modules_of: impl FnOnce(&[String]) -> Result<Vec<Option<Vec<Value>>>, String>,
) -> RuleOutput {
    let mut gifts = Vec::new();
    let mut rejected = Vec::new();
    for (index, event) in (0u32..).zip(batch.events) {
        match event.body {
            EventBody::Gift(g) => gifts.push((index, g.room_id, g.amount)),
            _ => rejected.push(Rejection::new(
                index,
                "module-gift-totals consumes gift events only",
            )),
        }
    }
    if gifts.is_empty() {
        return RuleOutput {
            rows: Vec::new(),
            rejected,
        };
    }
    let mut rooms: Vec<i64> = gifts.iter().map(|&(_, room, _)| room).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let keys: Vec<String> = rooms.iter().map(i64::to_string).collect();
    let answers = match modules_of(&keys) {
        Ok(answers) if answers.len() == keys.len() => answers,
        Ok(answers) => {
            let reason = format!(
                "lookup in `{TABLE}` answered {} keys for {} asked",
                answers.len(),
                keys.len()
            );
            return refuse_all(&gifts, &reason, rejected);
        }
        Err(reason) => {
            let reason = format!("lookup in `{TABLE}` failed: {reason}");
            return refuse_all(&gifts, &reason, rejected);
        }
    };
    let module_of: BTreeMap<i64, i64> = rooms
        .iter()
        .zip(&answers)
        .map(|(&room, answer)| (room, module(answer)))
        .collect();
    let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, room, amount) in &gifts {
        *totals.entry(module_of[room]).or_default() += amount;
    }
    let mut rows = Rows::new(OUTPUT, 2);
    for (module, total) in totals {
        rows.push_row([Value::Int(module), Value::Int(total)]);
    }
    RuleOutput::from_rows([rows]).with_rejected(rejected)
}

/// Refuses every gift with `reason`: no rows.
fn refuse_all(gifts: &[(u32, i64, i64)], reason: &str, mut rejected: Vec<Rejection>) -> RuleOutput {
    rejected.extend(
        gifts
            .iter()
            .map(|&(index, _, _)| Rejection::new(index, reason)),
    );
    RuleOutput {
        rows: Vec::new(),
        rejected,
    }
}

/// The module of one lookup answer: an integer, or text holding one (the
/// seed stores `module_id` as a string).
fn module(answer: &Option<Vec<Value>>) -> i64 {
    match answer.as_deref() {
        Some([Value::Int(m)]) => *m,
        Some([Value::Text(t)]) => t.trim().parse().unwrap_or(UNKNOWN_MODULE),
        _ => UNKNOWN_MODULE,
    }
}

apiary_sdk::export_rule!(ModuleGiftTotalsRule);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::Gift;
    use apiary_sdk::testing::MemoryHost;

    fn batch(gifts: &[(i64, i64)]) -> EventBatch {
        apiary_sdk::testing::batch(
            gifts
                .iter()
                .map(|&(room_id, amount)| {
                    let gift = EventBody::Gift(Gift {
                        user_id: 1,
                        room_id,
                        gift_type: 1,
                        amount,
                        ip: None,
                        create_time: None,
                        update_time: None,
                    });
                    (None, gift)
                })
                .collect(),
            None,
        )
    }

    fn rows(out: &RuleOutput) -> Vec<(i64, i64)> {
        out.rows[0]
            .cells
            .chunks(2)
            .map(|c| match c {
                [Value::Int(m), Value::Int(t)] => (*m, *t),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn sums_per_module_and_counts_unknown_rooms() {
        let out = process_with(batch(&[(7, 10), (8, 5), (7, 1), (9, 4), (10, 2)]), |keys| {
            assert_eq!(keys, ["7", "8", "9", "10"], "each room once");
            Ok(keys
                .iter()
                .map(|k| match k.as_str() {
                    "7" => Some(vec![Value::Text("1001".into())]),
                    "8" => Some(vec![Value::Int(1002)]),
                    "10" => Some(vec![Value::Null]),
                    _ => None,
                })
                .collect())
        });
        assert_eq!(rows(&out), [(0, 6), (1001, 11), (1002, 5)]);
        assert!(out.rejected.is_empty());
    }

    #[test]
    fn asks_the_host() {
        let mut host =
            MemoryHost::new().with_row(TABLE, "7", &[("module_id", Value::Text("1001".into()))]);
        let out = ModuleGiftTotalsRule.process(batch(&[(7, 10), (8, 5)]), &mut host);
        assert_eq!(rows(&out), [(0, 5), (1001, 10)]);
    }

    #[test]
    fn a_failed_lookup_refuses_the_gifts_with_the_reason() {
        let out = process_with(batch(&[(7, 10), (8, 5)]), |_| Err("gateway down".into()));
        assert!(out.rows.is_empty());
        assert_eq!(out.rejected.len(), 2);
        assert!(
            out.rejected[0].reason.contains("gateway down"),
            "{}",
            out.rejected[0].reason
        );
    }
}
