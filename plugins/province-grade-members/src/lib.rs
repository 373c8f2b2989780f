//! Rule plugin: how many distinct members each (province, grade) pair has
//! seen, for the dashboard's members-per-province-and-grade chart.
//!
//! As `grade-members`, per pair: the members already counted are one state
//! entry per pair, `pg/<grade>/<province>`, a roaring bitmap of user ids
//! read and written once per batch for each pair the batch touches; each
//! batch emits `+n` per pair for the users it saw first (`members` merges
//! with `add`). Visits without a province or a grade are passed over, and
//! a province name longer than a key column holds (255 characters) is
//! refused. State is per lane: visits must reach it keyed by user id (a
//! topic keyed that way, or `[source.kafka.repartition.live_streaming_log]
//! by = "user_id"`) to count exactly.
//!
//! Parameter `forget-after` (a duration, e.g. `30d`): a pair that sees no
//! visit for that long in event time is forgotten, and its later visitors
//! count as new members again.

use apiary_sdk::ColumnType::{Int, Text};
use apiary_sdk::distinct::{DistinctSet, Visitors, expiry};
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rows, Rule, RuleInfo,
    RuleOutput, Value,
};

const OUTPUT: &str = "province_grade_members";
/// Characters a text primary-key column holds.
const MAX_KEY_CHARS: usize = 255;

/// The rule and its `forget-after`, in ms.
pub struct ProvinceGradeMembers {
    forget_after: Option<i64>,
}

impl Rule for ProvinceGradeMembers {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&["forget-after"])?;
        Ok(Self {
            forget_after: params.optional_duration_ms("forget-after")?,
        })
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new("province-grade-members", "0.1.0", [EventKind::Visit]).output(
            Output::new(OUTPUT)
                .key("province", Text)
                .key("grade", Int)
                .add("members", Int),
        )
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        let mut pairs: Visitors<(String, i32)> = Visitors::default();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(visit) = event.body else {
                rejected.push(Rejection::new(
                    index,
                    "province-grade-members consumes visits only",
                ));
                continue;
            };
            let (Some(province), Some(grade)) = (visit.province, visit.grade) else {
                continue;
            };
            let province = province.of(&batch.text);
            if province.chars().count() > MAX_KEY_CHARS {
                rejected.push(Rejection::new(
                    index,
                    format!("province is longer than {MAX_KEY_CHARS} characters"),
                ));
                continue;
            }
            pairs.add((province.to_owned(), grade), visit.user_id, event.time);
        }
        let mut rows = Rows::new(OUTPUT, 3);
        for ((province, grade), users, latest) in pairs.into_keys() {
            let key = format!("pg/{grade}/{province}");
            let mut members = DistinctSet::load(host, &key);
            let new = users
                .into_iter()
                .filter(|&user| members.insert(user))
                .count() as i64;
            members.store(host, &key, expiry(self.forget_after, latest));
            if new > 0 {
                rows.push_row([
                    Value::Text(province),
                    Value::Int(grade.into()),
                    Value::Int(new),
                ]);
            }
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(ProvinceGradeMembers);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use apiary_sdk::ViewerVisit;
    use apiary_sdk::testing::Driver;

    fn visit(
        driver: &mut Driver<ProvinceGradeMembers>,
        user_id: i64,
        province: &str,
        grade: i32,
        time: i64,
    ) -> (Option<i64>, EventBody) {
        let body = EventBody::Visit(ViewerVisit {
            user_id,
            room_id: 1,
            ip: None,
            arrive_time: Some(time),
            leave_time: None,
            create_time: None,
            region_code: None,
            grade: Some(grade),
            province: (!province.is_empty()).then(|| driver.text(province)),
        });
        (Some(time), body)
    }

    #[test]
    fn counts_distinct_members_per_pair_exactly() {
        let provinces = ["浙江", "广东", "四川"];
        let mut driver = Driver::new(ProvinceGradeMembers::init(&Params::default()).unwrap(), 0);
        let mut expected: BTreeMap<(String, i64), BTreeSet<i64>> = BTreeMap::new();
        let mut counted: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let mut seed = 7u64;
        for batch in 0..50 {
            let mut events = Vec::new();
            for i in 0..40 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let user = 2000 + (seed >> 33) as i64 % 2000;
                let province = provinces[(seed >> 20) as usize % 3];
                let grade = 1 + (seed >> 40) as i32 % 5;
                expected
                    .entry((province.to_owned(), grade.into()))
                    .or_default()
                    .insert(user);
                events.push(visit(&mut driver, user, province, grade, batch * 100 + i));
            }
            for row in driver.batch(events).rows_of_width(OUTPUT, 3) {
                let [Value::Text(p), Value::Int(g), Value::Int(n)] = &row[..] else {
                    panic!("{row:?}");
                };
                *counted.entry((p.clone(), *g)).or_default() += n;
            }
        }
        let expected: BTreeMap<_, i64> = expected
            .into_iter()
            .map(|(k, users)| (k, users.len() as i64))
            .collect();
        assert_eq!(counted, expected);
        assert_eq!(driver.host.state_len(), expected.len());
        // 2000 users over 15 pairs: compact.
        assert!(
            driver.host.state_bytes() < 40_000,
            "{}",
            driver.host.state_bytes()
        );
    }

    #[test]
    fn passes_over_visits_without_province_and_refuses_long_names() {
        let mut driver = Driver::new(ProvinceGradeMembers::init(&Params::default()).unwrap(), 0);
        let long = "x".repeat(256);
        let events = vec![
            visit(&mut driver, 1, "", 2, 5),
            visit(&mut driver, 1, &long, 2, 6),
        ];
        let out = driver.batch(events);
        assert!(out.rows.is_empty());
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].index, 1);
    }
}

#[cfg(test)]
mod size {
    use super::*;
    use apiary_sdk::ViewerVisit;
    use apiary_sdk::testing::Driver;

    /// State bytes after a million visits over 34 provinces and 5 grades,
    /// from `users` distinct users: `cargo test -p province-grade-members
    /// -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement"]
    fn state_bytes_per_million_visits() {
        for users in [2_000u64, 100_000, 1_000_000] {
            let mut driver =
                Driver::new(ProvinceGradeMembers::init(&Params::default()).unwrap(), 0);
            let mut seed = 1u64;
            for batch in 0..1_000 {
                let events = (0..1_000)
                    .map(|i| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let body = EventBody::Visit(ViewerVisit {
                            user_id: 2_000 + ((seed >> 33) % users) as i64,
                            room_id: 1,
                            ip: None,
                            arrive_time: None,
                            leave_time: None,
                            create_time: None,
                            region_code: None,
                            grade: Some(1 + ((seed >> 20) % 5) as i32),
                            province: Some(driver.text(&format!("p{}", (seed >> 10) % 34))),
                        });
                        (Some(batch * 1_000 + i), body)
                    })
                    .collect();
                driver.batch(events);
            }
            println!(
                "{users} users, 1M visits: {} state entries, {} bytes",
                driver.host.state_len(),
                driver.host.state_bytes()
            );
        }
    }
}
