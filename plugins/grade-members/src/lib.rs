//! Rule plugin: how many distinct members each grade has seen, for the
//! dashboard's members-per-grade chart.
//!
//! Whether a user was already counted in a grade is plugin state (key
//! `g<grade>/u<user>`), held and checkpointed by the host together with the
//! rows, so a restart neither forgets a member nor counts one twice. Each
//! batch emits `+n` per grade for the users it saw first (`members` merges
//! with `add`). State is per lane: a user seen in two partitions counts once
//! per partition, so route visits by user id to count exactly.

wit_bindgen::generate!({
    path: "../../wit",
    world: "rule-plugin",
});

use std::collections::BTreeMap;

use apiary::plugin::state;
use apiary::plugin::types::{
    Column, ColumnType, EventBatch, EventBody, EventKind, MergeMode, OutputRows, OutputSchema,
    Rejection, Value,
};
use exports::apiary::plugin::rule::{Guest, RuleInfo, RuleOutput};

const OUTPUT: &str = "grade_members";

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct GradeMembers;

impl Guest for GradeMembers {
    fn describe() -> RuleInfo {
        let column = |name: &str, merge| Column {
            name: name.into(),
            type_: ColumnType::Int,
            merge,
            nullable: false,
        };
        RuleInfo {
            name: "grade-members".into(),
            // `next-version` builds the same code under another version,
            // which the hot-reload tests swap in and out.
            version: if cfg!(feature = "next-version") {
                "0.1.1"
            } else {
                "0.1.0"
            }
            .into(),
            consumes: vec![EventKind::Visit],
            outputs: vec![OutputSchema {
                name: OUTPUT.into(),
                table: None,
                columns: vec![
                    column("grade", MergeMode::Replace),
                    column("members", MergeMode::Add),
                ],
                primary_key: vec!["grade".into()],
            }],
        }
    }

    fn process(batch: EventBatch) -> RuleOutput {
        let mut new_members: BTreeMap<i32, i64> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(visit) = event.body else {
                rejected.push(Rejection {
                    index,
                    reason: "grade-members consumes visits only".into(),
                });
                continue;
            };
            let Some(grade) = visit.grade else {
                continue;
            };
            let key = format!("g{grade}/u{}", visit.user_id);
            if state::get(&key).is_none() {
                state::set(&key, &[1]);
                *new_members.entry(grade).or_default() += 1;
            }
        }
        let mut cells = Vec::with_capacity(new_members.len() * 2);
        for (grade, count) in new_members {
            cells.push(Value::Int(grade.into()));
            cells.push(Value::Int(count));
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
export!(GradeMembers);
