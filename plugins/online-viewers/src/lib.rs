//! Rule plugin: viewers online per room, as of the lane's watermark. A
//! visit is online from its `arrive_time` (inclusive) to its `leave_time`
//! (exclusive); both take effect when the watermark reaches them, so the
//! table says who was in each room at the watermark, whatever order the
//! visits came in.
//!
//! Each visit adds +1 at its arrival and -1 at its departure to a delta
//! per (room, time) in state, folded per batch, with a timer per (room,
//! time); when the watermark reaches a time, its timers fire and the
//! deltas become rows (`viewers` merges with `add`), and their state goes.
//! A visit that arrived at or before the watermark counts at once; one
//! that has also left by then changes nothing and is passed over. A visit
//! without `arrive_time` or `leave_time` (Douyu's `uenter` and Bilibili's
//! `INTERACT_WORD` say only that someone came in) is passed over too: it
//! is a valid event this rule has nothing to count from. One that leaves
//! before it arrives is refused.

use std::collections::BTreeMap;

use apiary_sdk::ColumnType::Int;
use apiary_sdk::{
    EventBatch, EventBody, EventKind, FiredTimer, Host, Output, OutputRows, Params, Rejection,
    Rows, Rule, RuleInfo, RuleOutput, Value,
};

const OUTPUT: &str = "online_viewers";

/// The rule.
pub struct OnlineViewers;

/// State key of the delta of `room` at `time`.
fn delta_key(room: i64, time: i64) -> String {
    format!("d/{room}/{time}")
}

/// Rows of per-room deltas, leaving out zeros.
fn rows(deltas: BTreeMap<i64, i64>) -> Rows {
    let mut rows = Rows::new(OUTPUT, 2);
    for (room, delta) in deltas.into_iter().filter(|&(_, d)| d != 0) {
        rows.push_row([Value::Int(room), Value::Int(delta)]);
    }
    rows
}

impl Rule for OnlineViewers {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&[])?;
        Ok(Self)
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new("online-viewers", "0.1.0", [EventKind::Visit])
            .output(Output::new(OUTPUT).key("room_id", Int).add("viewers", Int))
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        let watermark = batch.watermark;
        let passed = |time: i64| watermark.is_some_and(|w| time <= w);
        // Deltas now (times the watermark has passed) and to come.
        let mut now: BTreeMap<i64, i64> = BTreeMap::new();
        let mut later: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Visit(visit) = event.body else {
                rejected.push(Rejection::new(index, "online-viewers consumes visits only"));
                continue;
            };
            let (Some(arrive), Some(leave)) = (visit.arrive_time, visit.leave_time) else {
                continue;
            };
            if leave < arrive {
                rejected.push(Rejection::new(
                    index,
                    format!("the visit leaves ({leave}) before it arrives ({arrive})"),
                ));
                continue;
            }
            let room = visit.room_id;
            for (time, delta) in [(arrive, 1), (leave, -1)] {
                if passed(time) {
                    *now.entry(room).or_default() += delta;
                } else {
                    *later.entry((room, time)).or_default() += delta;
                }
            }
        }
        for ((room, time), delta) in later {
            if delta == 0 {
                continue;
            }
            let timer = room.to_string();
            if host.add_i64(&delta_key(room, time), delta) == 0 {
                host.delete_timer(&timer, time);
            } else {
                host.set_timer(&timer, time);
            }
        }
        RuleOutput::from_rows([rows(now)]).with_rejected(rejected)
    }

    fn on_timers(&self, timers: Vec<FiredTimer>, _: i64, host: &mut impl Host) -> Vec<OutputRows> {
        let mut deltas: BTreeMap<i64, i64> = BTreeMap::new();
        for timer in timers {
            let Ok(room) = timer.key.parse::<i64>() else {
                continue;
            };
            let key = delta_key(room, timer.time);
            if let Some(delta) = host.get_i64(&key) {
                *deltas.entry(room).or_default() += delta;
                host.delete(&key);
            }
        }
        Rows::collect([rows(deltas)])
    }
}

apiary_sdk::export_rule!(OnlineViewers);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use apiary_sdk::ViewerVisit;
    use apiary_sdk::testing::{Driver, Outcome};

    fn visit(room_id: i64, arrive: i64, leave: i64) -> (Option<i64>, EventBody) {
        let body = EventBody::Visit(ViewerVisit {
            user_id: 1,
            room_id,
            ip: None,
            arrive_time: Some(arrive),
            leave_time: Some(leave),
            create_time: None,
            region_code: None,
            grade: None,
            province: None,
        });
        (Some(arrive), body)
    }

    /// Adds the rows' deltas to `table`.
    fn apply(table: &mut BTreeMap<i64, i64>, out: &Outcome) {
        for row in out.rows_of_width(OUTPUT, 2) {
            let [Value::Int(room), Value::Int(delta)] = row[..] else {
                panic!("{row:?}");
            };
            *table.entry(room).or_default() += delta;
        }
    }

    #[test]
    fn online_as_of_the_watermark_under_disorder() {
        let lateness = 5_000;
        let mut driver = Driver::new(OnlineViewers::init(&Params::default()).unwrap(), lateness);
        let mut table = BTreeMap::new();
        let mut visits = Vec::new();
        let mut seed = 99u64;
        let mut base = 1_000_000i64;
        for _ in 0..100 {
            let mut batch = Vec::new();
            for _ in 0..20 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                base += (seed >> 60) as i64 * 100;
                let arrive = base - (seed >> 40) as i64 % 4_000;
                let leave = arrive + (seed >> 20) as i64 % 60_000;
                let room = (seed >> 50) as i64 % 3;
                visits.push((room, arrive, leave));
                batch.push(visit(room, arrive, leave));
            }
            apply(&mut table, &driver.batch(batch));
            let w = driver.watermark.expect("a watermark");
            let mut expected = BTreeMap::new();
            for &(room, arrive, leave) in &visits {
                if arrive <= w && w < leave {
                    *expected.entry(room).or_insert(0) += 1;
                }
            }
            table.retain(|_, v| *v != 0);
            assert_eq!(table, expected, "as of {w}");
        }
        apply(&mut table, &driver.advance_to(i64::MAX - 1));
        table.retain(|_, v| *v != 0);
        assert!(table.is_empty(), "everyone left: {table:?}");
        assert_eq!(driver.host.state_len(), 0);
        assert_eq!(driver.host.timers().count(), 0);
    }

    #[test]
    fn late_visits_count_at_once_bad_ones_are_refused_and_open_ones_passed_over() {
        let mut driver = Driver::new(OnlineViewers, 0);
        driver.batch(vec![visit(1, 100, 200)]);
        let out = driver.batch(vec![visit(7, 50, 500), visit(7, 10, 20)]);
        assert_eq!(
            out.rows_of_width(OUTPUT, 2),
            [[Value::Int(7), Value::Int(1)].to_vec()]
        );
        let mut bad = visit(7, 10, 5);
        let out = driver.batch(vec![bad.clone()]);
        assert!(
            out.rejected[0]
                .reason
                .contains("leaves (5) before it arrives (10)")
        );
        if let EventBody::Visit(v) = &mut bad.1 {
            v.leave_time = None;
        }
        let out = driver.batch(vec![bad]);
        assert!(out.rejected.is_empty() && out.rows_of_width(OUTPUT, 2).is_empty());
    }
}
