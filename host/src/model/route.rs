//! Repartitioning by key: which field of an event keys it, and which
//! partition of an internal topic a key belongs to. Both stages of a
//! repartition compute the partition here, the same way.

use serde::Deserialize;

use super::wit::v3::types::{Event, EventBody};

/// The event field a topic is repartitioned by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The viewer's or sender's user id (visits, gifts, chat messages).
    UserId,
    /// The room id (every event but room lists).
    RoomId,
}

impl KeyField {
    /// The key of `event`, if its kind has the field.
    pub fn of(self, event: &Event) -> Option<i64> {
        match (self, &event.body) {
            (Self::UserId, EventBody::Visit(v)) => Some(v.user_id),
            (Self::UserId, EventBody::Gift(g)) => Some(g.user_id),
            (Self::UserId, EventBody::Chat(c)) => Some(c.user_id),
            (Self::RoomId, EventBody::Visit(v)) => Some(v.room_id),
            (Self::RoomId, EventBody::Gift(g)) => Some(g.room_id),
            (Self::RoomId, EventBody::Chat(c)) => Some(c.room_id),
            (Self::RoomId, EventBody::RoomStatus(s)) => Some(s.room_id),
            (Self::RoomId, EventBody::StreamerStats(s)) => Some(s.room_id),
            _ => None,
        }
    }

    /// The field's name, as configured.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserId => "user_id",
            Self::RoomId => "room_id",
        }
    }
}

/// The partition, of `partitions`, that `event` belongs to: by its key, or
/// partition 0 for an event without one (so such events stay together).
pub fn partition_of(by: KeyField, event: &Event, partitions: i32) -> i32 {
    match by.of(event) {
        Some(key) => key_partition(key, partitions),
        None => 0,
    }
}

/// The partition of `key`: a fixed mix of its bits (the same on every
/// machine and version), modulo `partitions`.
pub fn key_partition(key: i64, partitions: i32) -> i32 {
    // SplitMix64's finaliser: consecutive ids spread evenly.
    let mut x = key as u64;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % partitions.max(1) as u64) as i32
}

/// What a lane of a repartitioned topic does with the events it parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRoute {
    /// The first stage (a partition of the source topic): run no rule;
    /// tell which internal partitions each record's events belong to.
    Forward {
        /// The key field.
        by: KeyField,
        /// Partitions of the internal topic.
        partitions: i32,
    },
    /// The second stage (a partition of the internal topic): keep only the
    /// events that belong to it (a record whose events have several keys
    /// is forwarded to each of their partitions).
    Keep {
        /// The key field.
        by: KeyField,
        /// Partitions of the internal topic.
        partitions: i32,
        /// The lane's partition.
        partition: i32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_partition_and_stay_put() {
        let mut counts = [0u32; 8];
        for user in 0..8000 {
            counts[key_partition(user, 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // Fixed forever: both stages, and every release, must agree.
        assert_eq!(
            [
                key_partition(0, 8),
                key_partition(1, 8),
                key_partition(-1, 8),
                key_partition(1_234_567, 8)
            ],
            [0, 5, 3, 0]
        );
        assert_eq!(key_partition(42, 1), 0);
    }
}
