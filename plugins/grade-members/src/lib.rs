//! Rule plugin: how many distinct members each grade has seen, for the
//! dashboard's members-per-grade chart.
//!
//! The members already counted in a grade are one state entry per grade,
//! `grade/<grade>`: a roaring bitmap of user ids (a few bytes per member),
//! read and written once per batch for each grade the batch touches, and
//! checkpointed by the host with the rows, so a restart neither forgets a
//! member nor counts one twice. Each batch emits `+n` per grade for the
//! users it saw first (`members` merges with `add`). State is per lane: a
//! user seen in two lanes counts once per lane, so visits must reach it
//! keyed by user id: from a topic keyed that way, or through
//! `[source.kafka.repartition.live_streaming_log] by = "user_id"`.
//!
//! Versions before the bitmaps kept one entry per member, `g<grade>/u<user>`.
//! A user missing from the bitmap is looked up under that key once: if it
//! is there, the user was counted already, joins the bitmap and the old
//! entry is deleted. Old entries of users who never come back stay.
//!
//! Parameter `forget-after` (a duration, e.g. `30d`): a grade that sees no
//! visit for that long in event time is forgotten (its entry expires with
//! the watermark), and its later visitors count as new members again: a
//! bound on state for grades that stop appearing, at that price.

use apiary_sdk::ColumnType::Int;
use apiary_sdk::distinct::{DistinctSet, Visitors, expiry};
use apiary_sdk::{
    EventBatch, EventBody, EventKind, Host, Output, Params, Rejection, Rows, Rule, RuleInfo,
    RuleOutput, Value,
};

const OUTPUT: &str = "grade_members";

/// The rule and its `forget-after`, in ms.
pub struct GradeMembers {
    forget_after: Option<i64>,
}

impl Rule for GradeMembers {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&["forget-after"])?;
        Ok(Self {
            forget_after: params.optional_duration_ms("forget-after")?,
        })
    }

    fn describe(&self) -> RuleInfo {
        // `next-version` builds the same code under another version, which
        // the hot-reload tests swap in and out.
        let version = if cfg!(feature = "next-version") {
            "0.1.1"
        } else {
            "0.1.0"
        };
        RuleInfo::new("grade-members", version, [EventKind::Visit])
            .output(Output::new(OUTPUT).key("grade", Int).add("members", Int))
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        let mut grades: Visitors<i32> = Visitors::default();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(visit) = event.body else {
                rejected.push(Rejection::new(index, "grade-members consumes visits only"));
                continue;
            };
            let Some(grade) = visit.grade else {
                continue;
            };
            grades.add(grade, visit.user_id, event.time);
        }
        let mut rows = Rows::new(OUTPUT, 2);
        for (grade, users, latest) in grades.into_keys() {
            let key = format!("grade/{grade}");
            let mut members = DistinctSet::load(host, &key);
            let mut new = 0;
            for user in users {
                if members.contains(user) {
                    continue;
                }
                members.insert(user);
                let legacy = format!("g{grade}/u{user}");
                if host.get(&legacy).is_some() {
                    host.delete(&legacy);
                } else {
                    new += 1;
                }
            }
            members.store(host, &key, expiry(self.forget_after, latest));
            if new > 0 {
                rows.push_row([Value::Int(grade.into()), Value::Int(new)]);
            }
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }
}

apiary_sdk::export_rule!(GradeMembers);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::ViewerVisit;
    use apiary_sdk::testing::Driver;

    fn visit(user_id: i64, grade: Option<i32>, time: i64) -> (Option<i64>, EventBody) {
        let body = EventBody::Visit(ViewerVisit {
            user_id,
            room_id: 1,
            ip: None,
            arrive_time: Some(time),
            leave_time: None,
            create_time: None,
            region_code: None,
            grade,
            province: None,
        });
        (Some(time), body)
    }

    fn rows(out: &apiary_sdk::testing::Outcome) -> Vec<Vec<Value>> {
        out.rows_of_width(OUTPUT, 2)
    }

    #[test]
    fn counts_each_member_once_per_grade() {
        let rule = GradeMembers::init(&Params::default()).unwrap();
        let mut driver = Driver::new(rule, 0);
        let out = driver.batch(vec![
            visit(1, Some(3), 10),
            visit(2, Some(3), 11),
            visit(1, Some(3), 12),
            visit(1, Some(4), 13),
            visit(9, None, 14),
        ]);
        assert_eq!(
            rows(&out),
            [
                [Value::Int(3), Value::Int(2)].to_vec(),
                [Value::Int(4), Value::Int(1)].to_vec()
            ]
        );
        let out = driver.batch(vec![visit(2, Some(3), 20), visit(5, Some(3), 21)]);
        assert_eq!(rows(&out), [[Value::Int(3), Value::Int(1)].to_vec()]);
        assert_eq!(driver.host.state_len(), 2, "one entry per grade");
    }

    #[test]
    fn members_kept_the_old_way_are_moved_not_counted_again() {
        let rule = GradeMembers::init(&Params::default()).unwrap();
        let mut driver = Driver::new(rule, 0);
        driver.host.set("g3/u1", &[1]);
        let out = driver.batch(vec![visit(1, Some(3), 10), visit(2, Some(3), 11)]);
        assert_eq!(rows(&out), [[Value::Int(3), Value::Int(1)].to_vec()]);
        assert_eq!(driver.host.state_keys().collect::<Vec<_>>(), ["grade/3"]);
    }

    #[test]
    fn forget_after_expires_an_idle_grade() {
        let params = Params::from_pairs([("forget-after", "1m")]);
        let mut driver = Driver::new(GradeMembers::init(&params).unwrap(), 0);
        driver.batch(vec![visit(1, Some(3), 1_000)]);
        assert_eq!(driver.host.expiry("grade/3"), Some(61_000));
        driver.batch(vec![visit(7, Some(4), 70_000)]);
        assert_eq!(driver.host.state_keys().collect::<Vec<_>>(), ["grade/4"]);
        let out = driver.batch(vec![visit(1, Some(3), 70_001)]);
        assert_eq!(rows(&out), [[Value::Int(3), Value::Int(1)].to_vec()]);
        assert!(GradeMembers::init(&Params::from_pairs([("forget-after", "x")])).is_err());
    }
}
