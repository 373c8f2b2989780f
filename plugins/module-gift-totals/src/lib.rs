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

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::lookup;
use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "module_gift_totals";
/// The dimension table rooms are looked up in (row key: the room id).
pub const TABLE: &str = "dim_hbase";
/// Module of rooms the dimension table does not map.
pub const UNKNOWN_MODULE: i64 = 0;

// Exported only on wasm32 (see gift-type-totals for why).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct ModuleGiftTotalsRule;

impl Guest for ModuleGiftTotalsRule {
    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "module-gift-totals".into(),
            version: "0.1.0".into(),
            consumes: vec![EventKind::Gift],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("module_id", MergeMode::Replace),
                    column("module_gift_total_amount", MergeMode::Add),
                ],
                primary_key: vec!["module_id".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        process_with(batch, |rooms| {
            lookup::get_many(TABLE, rooms, &["module_id".to_owned()])
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
            _ => rejected.push(Rejection {
                index,
                reason: "module-gift-totals consumes gift events only".into(),
            }),
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
    let mut cells = Vec::with_capacity(totals.len() * 2);
    for (module, total) in totals {
        cells.push(Value::Int(module));
        cells.push(Value::Int(total));
    }
    RuleOutput {
        rows: vec![OutputRows {
            output: OUTPUT.into(),
            cells,
        }],
        rejected,
    }
}

/// Refuses every gift with `reason`: no rows.
fn refuse_all(gifts: &[(u32, i64, i64)], reason: &str, mut rejected: Vec<Rejection>) -> RuleOutput {
    rejected.extend(gifts.iter().map(|&(index, _, _)| Rejection {
        index,
        reason: reason.to_owned(),
    }));
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

#[cfg(target_arch = "wasm32")]
export!(ModuleGiftTotalsRule);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary::plugin::types::{Event, Gift};

    fn batch(gifts: &[(i64, i64)]) -> EventBatch {
        EventBatch {
            topic: "live_gift_total".into(),
            platform: "seed".into(),
            events: (0..)
                .zip(gifts)
                .map(|(record_index, &(room_id, amount))| Event {
                    record_index,
                    body: EventBody::Gift(Gift {
                        user_id: 1,
                        room_id,
                        gift_type: 1,
                        amount,
                        ip: None,
                        create_time: None,
                        update_time: None,
                    }),
                })
                .collect(),
        }
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
