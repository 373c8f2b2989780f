//! Rule plugin: gifts received in the last 6 hours, as the seed's
//! dashboard charts them: the total gift amount of every hopping window
//! of 6 h sliding every 5 min over the gifts' event time. A window is
//! `[start, end)`, its start a multiple of 5 min since the epoch, and its
//! row (`window_end`, `gift_total_amount`) is written once the lane's
//! watermark passes its end. Each gift is in 72 windows but updates one
//! state entry (its 5-minute pane); see `apiary_sdk::window`.
//!
//! A gift whose windows have all fired when it arrives is refused as late,
//! with by how much; one still inside some open windows counts in those.
//! With `lateness`, a window is kept that long after it fires: a late gift
//! still counts in it, and its row gets the gift's amount added (Flink's
//! `allowedLateness`; the dashboard's chart shows the corrected total).
//! A gift without event time is refused.
//!
//! Parameters: `size` (default `6h`), `slide` (default `5m`) and
//! `lateness` (default `0s`), durations. The table stays `gifts_6h`;
//! changing `size` or `slide` for a running pipeline leaves the open
//! windows of the old layout behind.

use apiary_sdk::ColumnType::{Int, Timestamp};
use apiary_sdk::window::{Hopping, NO_EVENT_TIME, Sum};
use apiary_sdk::{
    EventBatch, EventBody, EventKind, FiredTimer, Host, Output, OutputRows, Params, Rejection,
    Rows, Rule, RuleInfo, RuleOutput, Value,
};

const OUTPUT: &str = "gifts_6h";
/// Every gift goes under this one window key.
const ALL: &str = "all";

/// The rule and its windows.
pub struct GiftWindows {
    windows: Hopping<Sum>,
}

impl Rule for GiftWindows {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&["size", "slide", "lateness"])?;
        let size = params.duration_ms("size", 6 * 3_600_000)?;
        let slide = params.duration_ms("slide", 5 * 60_000)?;
        let lateness = params.duration_ms("lateness", 0)?;
        Ok(Self {
            windows: Hopping::new("w", size, slide)?.with_lateness(lateness)?,
        })
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new("gift-windows", "0.1.0", [EventKind::Gift]).output(
            Output::new(OUTPUT)
                .key("window_end", Timestamp)
                .add("gift_total_amount", Int),
        )
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        let mut windows = self.windows.batch(batch.watermark);
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            let EventBody::Gift(gift) = event.body else {
                rejected.push(Rejection::new(index, "gift-windows consumes gifts only"));
                continue;
            };
            let Some(time) = event.time else {
                rejected.push(Rejection::new(index, NO_EVENT_TIME));
                continue;
            };
            if let Err(refused) = windows.add(ALL, time, gift.amount) {
                rejected.push(Rejection::new(index, refused.to_string()));
            }
        }
        // Windows kept for lateness that late gifts changed: their rows
        // get what the gifts added (the column adds).
        let mut rows = Rows::new(OUTPUT, 2);
        for update in windows.commit(host) {
            rows.push_row([Value::Timestamp(update.end), Value::Int(update.added.0)]);
        }
        RuleOutput::from_rows([rows]).with_rejected(rejected)
    }

    fn on_timers(&self, timers: Vec<FiredTimer>, _: i64, host: &mut impl Host) -> Vec<OutputRows> {
        let mut rows = Rows::new(OUTPUT, 2);
        for timer in &timers {
            if let Some(window) = self.windows.fire(host, timer) {
                rows.push_row([Value::Timestamp(window.end), Value::Int(window.value.0)]);
            }
        }
        Rows::collect([rows])
    }
}

apiary_sdk::export_rule!(GiftWindows);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use apiary_sdk::Gift;
    use apiary_sdk::testing::{Driver, Outcome};

    const MIN: i64 = 60_000;

    fn gift(time: Option<i64>, amount: i64) -> (Option<i64>, EventBody) {
        let body = EventBody::Gift(Gift {
            user_id: 1,
            room_id: 2,
            gift_type: 1,
            amount,
            ip: None,
            create_time: time,
            update_time: None,
        });
        (time, body)
    }

    fn windows(out: &Outcome) -> BTreeMap<i64, i64> {
        out.rows_of_width(OUTPUT, 2)
            .into_iter()
            .map(|row| match row[..] {
                [Value::Timestamp(end), Value::Int(total)] => (end, total),
                _ => panic!("{row:?}"),
            })
            .collect()
    }

    #[test]
    fn six_hour_windows_every_five_minutes() {
        let rule = GiftWindows::init(&Params::default()).unwrap();
        let mut driver = Driver::new(rule, 0);
        let t0 = 1_700_000_000_000 / (5 * MIN) * (5 * MIN);
        assert!(windows(&driver.batch(vec![gift(Some(t0 + 1), 10)])).is_empty());
        // 6 h later the first window holding t0 + 1, [t0 - 6h + 5m, t0 + 5m),
        // and the 71 after it have fired; the gift at t0 + 6h + 5m closes
        // the last, [t0, t0 + 6h).
        let out = driver.batch(vec![gift(Some(t0 + 6 * 60 * MIN + 5 * MIN), 1)]);
        let fired = windows(&out);
        assert_eq!(fired.len(), 72);
        assert!(fired.values().all(|&total| total == 10));
        assert_eq!(fired.keys().next(), Some(&(t0 + 5 * MIN)));
        assert_eq!(fired.keys().last(), Some(&(t0 + 6 * 60 * MIN)));
        assert!(driver.host.state_len() <= 1, "only the last gift's pane");
    }

    #[test]
    fn refuses_late_and_untimed_gifts() {
        let params = Params::from_pairs([("size", "10m"), ("slide", "5m")]);
        let mut driver = Driver::new(GiftWindows::init(&params).unwrap(), 0);
        driver.batch(vec![gift(Some(30 * MIN), 1)]);
        let out = driver.batch(vec![
            // [20m, 30m) has fired; [25m, 35m) is open.
            gift(Some(26 * MIN), 2),
            gift(Some(3 * MIN), 4),
            gift(None, 8),
        ]);
        let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("late by 1620000 ms"),
            "{}",
            reasons[0]
        );
        assert_eq!(reasons[1], NO_EVENT_TIME);
        let out = driver.advance_to(i64::MAX - 1);
        assert_eq!(
            windows(&out),
            BTreeMap::from([(35 * MIN, 3), (40 * MIN, 1)])
        );
        assert_eq!(driver.host.state_len(), 0);
        assert!(GiftWindows::init(&Params::from_pairs([("slide", "7h")])).is_err());
    }

    #[test]
    fn a_late_gift_within_the_lateness_adds_to_its_fired_windows_row() {
        let params = Params::from_pairs([("size", "10m"), ("slide", "5m"), ("lateness", "10m")]);
        let mut driver = Driver::new(GiftWindows::init(&params).unwrap(), 0);
        driver.batch(vec![gift(Some(3 * MIN), 1)]);
        let out = driver.batch(vec![gift(Some(16 * MIN), 2)]);
        // [0m, 10m) and [-5m, 5m) fired with the first gift.
        assert_eq!(windows(&out), BTreeMap::from([(5 * MIN, 1), (10 * MIN, 1)]));
        // [0m, 10m) is kept until 20m - 1: a gift at 4m adds to it and to
        // [-5m, 5m), kept until 15m - 1, which the watermark passed.
        let out = driver.batch(vec![gift(Some(4 * MIN), 4)]);
        assert_eq!(windows(&out), BTreeMap::from([(10 * MIN, 4)]));
        assert!(out.rejected.is_empty());
        // Past 10m + 10m - 1 the gift at 4m is refused.
        driver.batch(vec![gift(Some(30 * MIN), 8)]);
        let out = driver.batch(vec![gift(Some(4 * MIN), 16)]);
        assert!(windows(&out).is_empty());
        assert!(
            out.rejected[0]
                .reason
                .ends_with("and its allowed lateness of 600000 ms has passed"),
            "{}",
            out.rejected[0].reason
        );
        driver.advance_to(i64::MAX - 1);
        assert_eq!(driver.host.state_len(), 0);
    }
}
