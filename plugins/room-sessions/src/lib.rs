//! Rule plugin: room status (the seed system's "room open / closed" data),
//! from three sources:
//!
//! - room-status events say a room went live or off;
//! - room-list snapshots, which a collector publishes at a fixed interval,
//!   are diffed against the previous list held in state: a room missing
//!   from the new list has closed, a room new to it has opened;
//! - with the `timeout` parameter (a duration, e.g. `10m`), a live room
//!   that has reported nothing for that long in event time (no status
//!   event, on no list) is closed by a timer.
//!
//! A room's last known status and last report are kept in state
//! (`live/<room>`), so only changes count: each batch, and each firing of
//! timers, emits per room whose status changed whether it is live now, how
//! many times it went live (added up by the store) and when it last
//! changed. A room seen for the first time counts as a change, and as a
//! session if it is live.

use std::collections::BTreeMap;

use apiary_sdk::ColumnType::{Boolean, Int, Timestamp};
use apiary_sdk::{
    EventBatch, EventBody, EventKind, FiredTimer, Host, MergeMode, Output, OutputRows, Params,
    Rejection, Rows, Rule, RuleInfo, RuleOutput, Value,
};

const OUTPUT: &str = "room_sessions";
/// State key of the last room list.
const LIST: &str = "list";

/// The rule and its `timeout`, in ms.
pub struct RoomSessions {
    timeout: Option<i64>,
}

/// One room's changes within a batch.
struct Change {
    live: bool,
    sessions: i64,
    at: Option<i64>,
}

/// A room's state: whether it is live and when it last reported. Versions
/// before the timeout stored the first byte only.
#[derive(Clone, Copy)]
struct Room {
    live: bool,
    seen: Option<i64>,
}

impl Room {
    fn load(host: &impl Host, room: i64) -> Option<Self> {
        let bytes = host.get(&format!("live/{room}"))?;
        let seen = bytes
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes);
        Some(Self {
            live: bytes.first() == Some(&1),
            seen,
        })
    }

    fn store(self, host: &mut impl Host, room: i64) {
        let mut bytes = vec![u8::from(self.live)];
        if let Some(seen) = self.seen {
            bytes.extend(seen.to_le_bytes());
        }
        host.set(&format!("live/{room}"), &bytes);
    }
}

/// The changes of a batch or of fired timers, as rows.
#[derive(Default)]
struct Changes(BTreeMap<i64, Change>);

impl Changes {
    fn record(&mut self, room: i64, live: bool, at: Option<i64>) {
        let change = self.0.entry(room).or_insert(Change {
            live,
            sessions: 0,
            at: None,
        });
        change.live = live;
        change.sessions += i64::from(live);
        change.at = at.or(change.at);
    }

    fn rows(self) -> Rows {
        let mut rows = Rows::new(OUTPUT, 4);
        for (room, change) in self.0 {
            rows.push_row([
                Value::Int(room),
                Value::Boolean(change.live),
                Value::Int(change.sessions),
                Value::timestamp_or_null(change.at),
            ]);
        }
        rows
    }
}

impl RoomSessions {
    /// A report about `room` at `time`: the room is `live` (or, for
    /// `None`, as it was) and its timeout starts again.
    fn report(
        &self,
        host: &mut impl Host,
        changes: &mut Changes,
        room: i64,
        live: Option<bool>,
        time: Option<i64>,
    ) {
        let was = Room::load(host, room);
        let live = live.or(was.map(|w| w.live)).unwrap_or(false);
        let seen = time.or(was.and_then(|w| w.seen));
        if was.is_none_or(|w| w.live != live) {
            changes.record(room, live, time);
        }
        if let Some(timeout) = self.timeout {
            let timer = room.to_string();
            if let Some(old) = was.and_then(|w| w.seen) {
                host.delete_timer(&timer, old.saturating_add(timeout));
            }
            if let Some(seen) = seen.filter(|_| live) {
                host.set_timer(&timer, seen.saturating_add(timeout));
            }
        }
        Room { live, seen }.store(host, room);
    }

    /// A room list at `time`: the rooms on it are live, the rooms of the
    /// previous list missing from it have closed.
    fn list(&self, host: &mut impl Host, changes: &mut Changes, rooms: &[i64], time: Option<i64>) {
        let mut rooms = rooms.to_vec();
        rooms.sort_unstable();
        rooms.dedup();
        let before = host.get(LIST).map(|b| decode(&b)).unwrap_or_default();
        for &room in &rooms {
            self.report(host, changes, room, Some(true), time);
        }
        for room in before {
            if rooms.binary_search(&room).is_err() {
                self.report(host, changes, room, Some(false), time);
            }
        }
        host.set(LIST, &encode(&rooms));
    }
}

fn encode(rooms: &[i64]) -> Vec<u8> {
    rooms.iter().flat_map(|r| r.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(i64::from_le_bytes))
        .collect()
}

impl Rule for RoomSessions {
    fn init(params: &Params) -> Result<Self, String> {
        params.only(&["timeout"])?;
        let timeout = params.optional_duration_ms("timeout")?;
        if timeout.is_some_and(|t| t <= 0) {
            return Err("parameter `timeout`: it must be positive".into());
        }
        Ok(Self { timeout })
    }

    fn describe(&self) -> RuleInfo {
        RuleInfo::new(
            "room-sessions",
            "0.2.0",
            [EventKind::RoomStatus, EventKind::RoomList],
        )
        .output(
            Output::new(OUTPUT)
                .key("room_id", Int)
                .replace("live", Boolean)
                .add("sessions", Int)
                .nullable("changed_at", Timestamp, MergeMode::Replace),
        )
    }

    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput {
        let mut changes = Changes::default();
        let mut rejected = Vec::new();
        for (index, event) in (0u32..).zip(batch.events) {
            match event.body {
                EventBody::RoomStatus(status) => {
                    let time = status.time.or(event.time);
                    self.report(host, &mut changes, status.room_id, Some(status.live), time);
                }
                EventBody::RoomList(list) => {
                    self.list(host, &mut changes, &list.rooms, event.time);
                }
                _ => rejected.push(Rejection::new(
                    index,
                    "room-sessions consumes room-status and room-list events only",
                )),
            }
        }
        RuleOutput::from_rows([changes.rows()]).with_rejected(rejected)
    }

    fn on_timers(&self, timers: Vec<FiredTimer>, _: i64, host: &mut impl Host) -> Vec<OutputRows> {
        let mut changes = Changes::default();
        let Some(timeout) = self.timeout else {
            return Vec::new();
        };
        for timer in timers {
            let Ok(room) = timer.key.parse::<i64>() else {
                continue;
            };
            // Only the timer of the room's last report closes it.
            let Some(was) = Room::load(host, room) else {
                continue;
            };
            let due = was.seen.map(|s| s.saturating_add(timeout));
            if was.live && due == Some(timer.time) {
                changes.record(room, false, Some(timer.time));
                Room {
                    live: false,
                    seen: was.seen,
                }
                .store(host, room);
            }
        }
        Rows::collect([changes.rows()])
    }
}

apiary_sdk::export_rule!(RoomSessions);

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_sdk::testing::{Driver, Outcome};
    use apiary_sdk::{RoomList, RoomStatus};

    fn status(room_id: i64, live: bool, time: i64) -> (Option<i64>, EventBody) {
        let body = EventBody::RoomStatus(RoomStatus {
            room_id,
            live,
            title: None,
            time: Some(time),
        });
        (Some(time), body)
    }

    fn list(rooms: &[i64], time: i64) -> (Option<i64>, EventBody) {
        let body = EventBody::RoomList(RoomList {
            rooms: rooms.to_vec(),
        });
        (Some(time), body)
    }

    /// (room, live, sessions, changed_at) per row.
    fn rows(out: &Outcome) -> Vec<(i64, bool, i64, i64)> {
        out.rows_of_width(OUTPUT, 4)
            .into_iter()
            .map(|row| match row[..] {
                [
                    Value::Int(room),
                    Value::Boolean(live),
                    Value::Int(sessions),
                    Value::Timestamp(at),
                ] => (room, live, sessions, at),
                _ => panic!("{row:?}"),
            })
            .collect()
    }

    fn rule(params: &[(&str, &str)]) -> RoomSessions {
        RoomSessions::init(&Params::from_pairs(params.iter().copied())).unwrap()
    }

    #[test]
    fn only_changes_count() {
        let mut driver = Driver::new(rule(&[]), 0);
        let out = driver.batch(vec![
            status(1, true, 10),
            status(1, true, 11),
            status(2, false, 12),
            status(1, false, 13),
            status(1, true, 14),
        ]);
        assert_eq!(rows(&out), [(1, true, 2, 14), (2, false, 0, 12)]);
        assert!(driver.batch(vec![status(1, true, 20)]).rows.is_empty());
    }

    #[test]
    fn a_room_missing_from_the_next_list_has_closed() {
        let mut driver = Driver::new(rule(&[]), 0);
        let out = driver.batch(vec![list(&[5, 6], 60_000)]);
        assert_eq!(rows(&out), [(5, true, 1, 60_000), (6, true, 1, 60_000)]);
        let out = driver.batch(vec![list(&[6, 7, 7], 120_000)]);
        assert_eq!(rows(&out), [(5, false, 0, 120_000), (7, true, 1, 120_000)]);
        let out = driver.batch(vec![list(&[], 180_000)]);
        assert_eq!(rows(&out), [(6, false, 0, 180_000), (7, false, 0, 180_000)]);
    }

    #[test]
    fn a_silent_live_room_times_out() {
        let mut driver = Driver::new(rule(&[("timeout", "10s")]), 0);
        driver.batch(vec![status(1, true, 1_000), status(2, true, 1_000)]);
        // Room 2 reports again; room 1 stays silent past 11 s.
        assert!(driver.batch(vec![status(2, true, 8_000)]).rows.is_empty());
        let out = driver.batch(vec![status(3, false, 11_001)]);
        assert_eq!(rows(&out), [(3, false, 0, 11_001), (1, false, 0, 11_000)]);
        let out = driver.batch(vec![status(3, false, 30_000)]);
        assert_eq!(rows(&out), [(2, false, 0, 18_000)]);
        assert_eq!(driver.host.timers().count(), 0, "no timer for closed rooms");
        assert!(RoomSessions::init(&Params::from_pairs([("timeout", "0s")])).is_err());
    }

    #[test]
    fn reads_the_state_of_earlier_versions() {
        let mut driver = Driver::new(rule(&[("timeout", "1m")]), 0);
        driver.host.set("live/4", &[1]);
        assert!(driver.batch(vec![status(4, true, 5)]).rows.is_empty());
        assert_eq!(driver.host.timers().collect::<Vec<_>>(), [(60_005, "4")]);
    }
}
