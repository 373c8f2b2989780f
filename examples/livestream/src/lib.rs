//! Seed-like live-streaming traffic: JSON records for the topics
//! `live_streaming_log` and `live_gift_total`, shaped like the seed's Python
//! generator writes them (`json.dumps`, so `", "` / `": "` separators and
//! `\uXXXX` escapes for Chinese province names).
//!
//! Generation is deterministic from a seed, so tests, benchmarks and example
//! pipelines can be rerun on the very same input. A fraction of the records
//! can be made malformed on purpose, to show dead-letter handling.

use std::fmt::{self, Write as _};
use std::io;
use std::str::FromStr;

/// The 34 province-level divisions of China as the seed names them, with
/// their administrative division codes (GB/T 2260), sent as `region`.
pub const PROVINCES: [(&str, i32); 34] = [
    ("北京", 110000),
    ("广东", 440000),
    ("山东", 370000),
    ("江苏", 320000),
    ("河南", 410000),
    ("上海", 310000),
    ("河北", 130000),
    ("浙江", 330000),
    ("香港", 810000),
    ("陕西", 610000),
    ("湖南", 430000),
    ("重庆", 500000),
    ("福建", 350000),
    ("天津", 120000),
    ("云南", 530000),
    ("四川", 510000),
    ("广西", 450000),
    ("安徽", 340000),
    ("海南", 460000),
    ("江西", 360000),
    ("湖北", 420000),
    ("山西", 140000),
    ("辽宁", 210000),
    ("台湾", 710000),
    ("黑龙江", 230000),
    ("内蒙古", 150000),
    ("澳门", 820000),
    ("贵州", 520000),
    ("甘肃", 620000),
    ("青海", 630000),
    ("新疆", 650000),
    ("西藏", 540000),
    ("吉林", 220000),
    ("宁夏", 640000),
];

/// The seed's room, which gets most of the traffic.
pub const MAIN_ROOM: i64 = 20_210_813;
/// Other rooms, so per-room and per-module figures have something to split.
pub const OTHER_ROOMS: [i64; 4] = [20_210_814, 20_210_901, 20_211_001, 20_211_111];
/// Lowest and highest user id, as in the seed's generator.
pub const USER_IDS: (i64, i64) = (2000, 4000);
/// Where the generator's clock starts by default: the seed's sample date.
pub const DEFAULT_START: &str = "2021-08-16 09:00:00";

/// A topic the generator can write records for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Viewer visits.
    LiveStreamingLog,
    /// Gifts.
    LiveGiftTotal,
}

impl Topic {
    /// Every topic's name, as given on the command line and in Kafka.
    pub const NAMES: [&str; 2] = ["live_streaming_log", "live_gift_total"];

    pub const fn name(self) -> &'static str {
        match self {
            Self::LiveStreamingLog => Self::NAMES[0],
            Self::LiveGiftTotal => Self::NAMES[1],
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A topic name the generator doesn't know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTopic(pub String);

impl fmt::Display for UnknownTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown topic `{}` (expected one of: {})",
            self.0,
            Topic::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownTopic {}

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live_streaming_log" => Ok(Self::LiveStreamingLog),
            "live_gift_total" => Ok(Self::LiveGiftTotal),
            _ => Err(UnknownTopic(s.to_owned())),
        }
    }
}

/// How a deliberately malformed record is broken. Each one must be refused
/// by the seed's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformation {
    /// A valid record cut short: not JSON at all.
    BrokenJson,
    /// Valid JSON, but an array instead of an object.
    NotAnObject,
    /// A number field holding a non-numeric string (`grade` of a visit,
    /// `gift_total_amount` of a gift).
    NonNumericString,
    /// A field the record means nothing without is left out (`gift_type` of
    /// a gift, `room_id` of a visit).
    MissingIdentityField,
}

impl Malformation {
    pub const ALL: [Malformation; 4] = [
        Self::BrokenJson,
        Self::NotAnObject,
        Self::NonNumericString,
        Self::MissingIdentityField,
    ];
}

/// SplitMix64 (Steele, Lea and Flood): a tiny, fast PRNG with a full 2^64
/// period, plenty for test traffic. Hand-written so the output stays the
/// same for a seed whatever crate versions do.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift; the bias is below
    /// 2^-40 for the small ranges used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below(high.abs_diff(low) + 1) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's output function, also used as a hash of a user id.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the records of one topic.
///
/// Each record moves the clock on by 0 to 2 seconds (one a second on
/// average). A user's ip, grade and province stay the same across records,
/// so per-user and per-province figures are consistent; the ip and grade
/// follow the seed's formulas (`123.0.0.{user_id % 255}`,
/// `user_id % 5 + 1`).
#[derive(Debug, Clone)]
pub struct Generator {
    topic: Topic,
    rng: SplitMix64,
    malformed_ratio: f64,
    clock_ms: i64,
    /// A fixed step between records' times, in ms; `None`: 0 to 2 s at
    /// random, as the seed's generator does.
    step_ms: Option<i64>,
}

impl Generator {
    pub fn new(topic: Topic, seed: u64) -> Self {
        Self {
            topic,
            rng: SplitMix64::new(seed),
            malformed_ratio: 0.0,
            clock_ms: livestream_format::parse_timestamp(DEFAULT_START)
                .expect("DEFAULT_START is a valid timestamp"),
            step_ms: None,
        }
    }

    /// Makes about `ratio` of the records malformed, each in one of the
    /// [`Malformation`] ways. The ratio is clamped to `0.0..=1.0`.
    pub fn with_malformed_ratio(mut self, ratio: f64) -> Self {
        self.malformed_ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self
    }

    /// Starts the clock at `epoch_ms` instead of [`DEFAULT_START`].
    pub fn with_start_time(mut self, epoch_ms: i64) -> Self {
        self.clock_ms = epoch_ms;
        self
    }

    /// Spaces records `step_ms` apart in time instead of 0 to 2 s at random
    /// (live traffic stamped as it happens).
    pub fn with_step_ms(mut self, step_ms: i64) -> Self {
        self.step_ms = Some(step_ms.max(0));
        self
    }

    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// Appends one record (without a line break) to `out`, and tells how it
    /// was broken, if it was.
    pub fn write_record(&mut self, out: &mut String) -> Option<Malformation> {
        self.clock_ms += match self.step_ms {
            Some(step) => step,
            None => self.rng.between(0, 2) * 1000,
        };
        let malformed = self.rng.next_f64() < self.malformed_ratio;
        let malformation = malformed.then(|| Malformation::ALL[self.rng.below(4) as usize]);
        let start = out.len();
        match malformation {
            Some(Malformation::NotAnObject) => {
                let user_id = self.user_id();
                let _ = write!(out, "[{user_id}, {}]", self.room_id());
            }
            _ => match self.topic {
                Topic::LiveStreamingLog => self.write_visit(out, malformation),
                Topic::LiveGiftTotal => self.write_gift(out, malformation),
            },
        }
        if malformation == Some(Malformation::BrokenJson) {
            // Any strict prefix of an object is invalid JSON. Records are
            // ASCII, so every byte offset is a char boundary.
            let len = out.len() - start;
            out.truncate(start + 1 + self.rng.below(len as u64 - 1) as usize);
        }
        malformation
    }

    /// One record as a new string, with how it was broken, if it was.
    pub fn next_record(&mut self) -> (String, Option<Malformation>) {
        let mut out = String::with_capacity(256);
        let malformation = self.write_record(&mut out);
        (out, malformation)
    }

    /// Writes `count` records as JSON lines to `out`, in large chunks: no
    /// `BufWriter` needed.
    pub fn write_lines<W: io::Write>(&mut self, count: u64, mut out: W) -> io::Result<()> {
        const CHUNK: usize = 1 << 16;
        let mut buf = String::with_capacity(CHUNK + 512);
        for _ in 0..count {
            self.write_record(&mut buf);
            buf.push('\n');
            if buf.len() >= CHUNK {
                out.write_all(buf.as_bytes())?;
                buf.clear();
            }
        }
        out.write_all(buf.as_bytes())?;
        out.flush()
    }

    fn user_id(&mut self) -> i64 {
        self.rng.between(USER_IDS.0, USER_IDS.1)
    }

    fn room_id(&mut self) -> i64 {
        if self.rng.below(10) < 6 {
            MAIN_ROOM
        } else {
            OTHER_ROOMS[self.rng.below(OTHER_ROOMS.len() as u64) as usize]
        }
    }

    // `write!` to a String can't fail; its `fmt::Result` is ignored below.

    fn write_visit(&mut self, out: &mut String, malformation: Option<Malformation>) {
        let user_id = self.user_id();
        let room_id = self.room_id();
        let stay_ms = self.rng.between(10, 7200) * 1000;
        let (province, region) = PROVINCES[(mix(user_id as u64) % 34) as usize];
        let _ = write!(
            out,
            "{{\"user_id\": {user_id}, \"ip\": \"123.0.0.{}\", ",
            user_id % 255
        );
        if malformation != Some(Malformation::MissingIdentityField) {
            let _ = write!(out, "\"room_id\": {room_id}, ");
        }
        push_time(out, "arrive_time", self.clock_ms - stay_ms);
        push_time(out, "create_time", self.clock_ms);
        push_time(out, "leave_time", self.clock_ms);
        let _ = write!(out, "\"region\": {region}, ");
        if malformation == Some(Malformation::NonNumericString) {
            out.push_str("\"grade\": \"vip\", ");
        } else {
            let _ = write!(out, "\"grade\": {}, ", user_id % 5 + 1);
        }
        out.push_str("\"province\": \"");
        for c in province.chars() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        out.push_str("\"}");
    }

    fn write_gift(&mut self, out: &mut String, malformation: Option<Malformation>) {
        let user_id = self.user_id();
        let room_id = self.room_id();
        let gift_type = self.rng.between(1, 10);
        let amount = self.rng.between(1, 100);
        let _ = write!(out, "{{\"user_id\": {user_id}, ");
        if malformation != Some(Malformation::MissingIdentityField) {
            let _ = write!(out, "\"gift_type\": {gift_type}, ");
        }
        if malformation == Some(Malformation::NonNumericString) {
            out.push_str("\"gift_total_amount\": \"lots\", ");
        } else {
            let _ = write!(out, "\"gift_total_amount\": {amount}, ");
        }
        let _ = write!(
            out,
            "\"room_id\": {room_id}, \"ip\": \"123.0.0.{}\", ",
            user_id % 255
        );
        push_time(out, "create_time", self.clock_ms);
        out.push_str("\"update_time\": \"");
        livestream_format::push_timestamp(out, self.clock_ms);
        out.push_str("\"}");
    }
}

impl Iterator for Generator {
    type Item = String;

    /// The next record, without a line break; never ends.
    fn next(&mut self) -> Option<String> {
        Some(self.next_record().0)
    }
}

/// Appends `"name": "YYYY-MM-DD HH:MM:SS", `.
fn push_time(out: &mut String, name: &str, epoch_ms: i64) {
    out.push('"');
    out.push_str(name);
    out.push_str("\": \"");
    livestream_format::push_timestamp(out, epoch_ms);
    out.push_str("\", ");
}

#[cfg(test)]
mod tests;
