//! Platform danmaku through Kafka: a parser with `top-gifters`,
//! `room-activity` and `room-sessions` behind it, and what they must
//! arrive at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::Row as _;

use super::kafka::{broker, create_topic, produce_keyed};
use super::{plugins_dir, run_until_quiet, sqlite_committed, sqlite_rows};

/// What the parser and the rules must make of the good messages.
#[derive(Debug, Default)]
pub struct Expected {
    /// Per user: gift amount and gift count (`top_gifters`).
    pub gifts: BTreeMap<i64, (i64, i64)>,
    /// Per room: chats, entries, peak heat (`room_activity`).
    pub rooms: BTreeMap<i64, (i64, i64, i64)>,
    /// Per room: live now, and times it went live (`room_sessions`).
    pub sessions: BTreeMap<i64, (bool, i64)>,
}

/// What one record of a room holds for the rules.
#[derive(Debug, Default)]
pub struct RecordFigures {
    /// `(user, amount)` of each gift.
    pub gifts: Vec<(i64, i64)>,
    /// The room's statuses, live or not, in order.
    pub statuses: Vec<bool>,
    /// Chat messages, entries and the highest popularity.
    pub chats: i64,
    pub entries: i64,
    pub heat: i64,
    /// Whether `room-activity` sees any event of the record.
    pub active: bool,
}

impl Expected {
    /// Adds what a record of `room` that the parser accepts holds.
    pub fn add(&mut self, room: i64, record: RecordFigures) {
        for (user, amount) in record.gifts {
            let entry = self.gifts.entry(user).or_default();
            entry.0 += amount;
            entry.1 += 1;
        }
        if record.active {
            let entry = self.rooms.entry(room).or_default();
            entry.0 += record.chats;
            entry.1 += record.entries;
            entry.2 = entry.2.max(record.heat);
        }
        // Only changes of status count.
        for live in record.statuses {
            match self.sessions.get_mut(&room) {
                Some((now, _)) if *now == live => {}
                Some((now, sessions)) => {
                    *now = live;
                    *sessions += i64::from(live);
                }
                None => {
                    self.sessions.insert(room, (live, i64::from(live)));
                }
            }
        }
    }
}

/// Generated messages: `(key, value)` records, the indices of the ones a
/// parser must refuse, and the expected figures of the others.
pub struct Messages {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub bad: Vec<usize>,
    pub expected: Expected,
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Produces `messages` to a fresh topic read as `logical`, runs `parser`,
/// `top-gifters`, `room-activity` and `room-sessions` over it until idle, and checks that
/// every record was committed, the rows match what was expected and each
/// refused message is a dead letter with its bytes. Returns the dead
/// letters' reasons.
pub fn run_and_check(parser: &Path, logical: &str, messages: &Messages) -> Vec<String> {
    let topic = create_topic(logical, 2);
    produce_keyed(&topic, &messages.records);
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let rules: [PathBuf; 3] = ["top-gifters", "room-activity", "room-sessions"]
        .map(|name| plugins_dir().join(format!("{name}.wasm")));
    for plugin in rules.iter().map(PathBuf::as_path).chain([parser]) {
        std::fs::copy(plugin, plugins.join(plugin.file_name().unwrap())).unwrap();
    }
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {plugins:?}\n[source.kafka]\nbrokers = {:?}\ngroup = \"{topic}-g\"\n\
             topics = {{ {topic:?} = {logical:?} }}\n\
             [sink.sql]\nurl = \"sqlite://out.db\"\ninterval = \"500ms\"\n",
            broker(),
        ),
    )
    .unwrap();
    run_until_quiet(&config, "10s");

    let db = dir.path().join("out.db");
    assert_eq!(sqlite_committed(&db), messages.records.len() as i64);
    let gifts: BTreeMap<i64, (i64, i64)> = sqlite_rows(
        &db,
        "SELECT user_id, gift_total_amount, gifts FROM top_gifters",
        |r| (r.get(0), (r.get(1), r.get(2))),
    )
    .into_iter()
    .collect();
    assert!(!gifts.is_empty());
    assert_eq!(gifts, messages.expected.gifts);
    let rooms: BTreeMap<i64, (i64, i64, i64)> = sqlite_rows(
        &db,
        "SELECT room_id, chats, entries, peak_heat FROM room_activity",
        |r| (r.get(0), (r.get(1), r.get(2), r.get(3))),
    )
    .into_iter()
    .collect();
    assert_eq!(rooms, messages.expected.rooms);
    let sessions: BTreeMap<i64, (bool, i64)> = sqlite_rows(
        &db,
        "SELECT room_id, live, sessions FROM room_sessions",
        |r| (r.get(0), (r.get(1), r.get(2))),
    )
    .into_iter()
    .collect();
    assert!(!sessions.is_empty());
    assert_eq!(sessions, messages.expected.sessions);

    // Each refused message is a dead letter with its bytes and the reason.
    let dead: Vec<(Vec<u8>, String)> = sqlite_rows(
        &db,
        "SELECT record_value, reason FROM apiary_dead_letter",
        |r| (r.get(0), r.get(1)),
    );
    let mut values: Vec<&[u8]> = dead.iter().map(|(v, _)| v.as_slice()).collect();
    let mut expected: Vec<&[u8]> = messages
        .bad
        .iter()
        .map(|&i| messages.records[i].1.as_slice())
        .collect();
    values.sort();
    expected.sort();
    assert_eq!(values, expected);
    dead.into_iter().map(|(_, reason)| reason).collect()
}

/// Fails unless some reason in `reasons` contains each of `expected`.
pub fn assert_reasons(reasons: &[String], expected: &[&str]) {
    for reason in expected {
        assert!(
            reasons.iter().any(|r| r.contains(reason)),
            "no dead letter says `{reason}`: {reasons:?}"
        );
    }
}
