//! Exact distinct counts in compact state: a set of `i64` ids under one
//! state key, held as a roaring bitmap (ids that cluster, such as user
//! ids, cost a few bytes each), read once and written once per batch.
//! Enabled by the `distinct` feature.

use std::collections::BTreeMap;
use std::io::Cursor;

use roaring::RoaringTreemap;

use crate::{Host, LogLevel};

/// A set of ids kept under one state key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistinctSet {
    ids: RoaringTreemap,
    changed: bool,
}

impl DistinctSet {
    /// The set stored under `key`; empty when there is none. An entry that
    /// cannot be read is logged and counts as empty.
    pub fn load(host: &impl Host, key: &str) -> Self {
        let Some(bytes) = host.get(key) else {
            return Self::default();
        };
        match RoaringTreemap::deserialize_from(Cursor::new(&bytes)) {
            Ok(ids) => Self {
                ids,
                changed: false,
            },
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("distinct set `{key}` cannot be read ({e}); starting it again"),
                );
                Self::default()
            }
        }
    }

    /// Adds `id`; whether it was new.
    pub fn insert(&mut self, id: i64) -> bool {
        // A bit-for-bit map from i64 to u64 keeps ids distinct.
        let new = self.ids.insert(id as u64);
        self.changed |= new;
        new
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: i64) -> bool {
        self.ids.contains(id as u64)
    }

    /// How many ids the set holds.
    pub fn len(&self) -> u64 {
        self.ids.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The bytes stored in state.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.ids.serialized_size());
        // Writing into a Vec cannot fail.
        let _ = self.ids.serialize_into(&mut bytes);
        bytes
    }

    /// Writes the set under `key` if it changed; with `expires_at`, always
    /// (the expiry moves on with every batch that touches the set), as an
    /// entry the host removes once the watermark reaches that time.
    pub fn store(&mut self, host: &mut impl Host, key: &str, expires_at: Option<i64>) {
        match expires_at {
            Some(at) => host.set_expiring(key, &self.encode(), at),
            None if self.changed => host.set(key, &self.encode()),
            None => {}
        }
        self.changed = false;
    }
}

/// The ids a batch saw per key, and the latest event time of each key:
/// what a distinct-count rule folds before it touches state.
#[derive(Debug, Clone)]
pub struct Visitors<K> {
    by_key: BTreeMap<K, (Vec<i64>, Option<i64>)>,
}

impl<K> Default for Visitors<K> {
    fn default() -> Self {
        Self {
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Visitors<K> {
    /// Notes `id` under `key` at event time `time`.
    pub fn add(&mut self, key: K, id: i64, time: Option<i64>) {
        let (ids, latest) = self.by_key.entry(key).or_default();
        ids.push(id);
        *latest = (*latest).max(time);
    }

    /// Each key, in order, with its ids and their latest event time.
    pub fn into_keys(self) -> impl Iterator<Item = (K, Vec<i64>, Option<i64>)> {
        self.by_key
            .into_iter()
            .map(|(key, (ids, latest))| (key, ids, latest))
    }
}

/// When a set last touched at `latest` expires with `forget_after` (ms):
/// `None` when either is unknown, or past the end of time.
pub fn expiry(forget_after: Option<i64>, latest: Option<i64>) -> Option<i64> {
    forget_after
        .zip(latest)
        .and_then(|(after, latest)| latest.checked_add(after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn round_trips_and_stays_small() {
        let mut host = MemoryHost::new();
        let mut set = DistinctSet::load(&host, "s");
        assert!(set.insert(2001) && !set.insert(2001) && set.insert(-5));
        for id in 0..100_000 {
            set.insert(1_000_000 + id);
        }
        set.store(&mut host, "s", None);
        let again = DistinctSet::load(&host, "s");
        assert_eq!(again.len(), 100_002);
        assert!(again.contains(-5) && !again.contains(7));
        assert!(host.state_bytes() < 20_000, "{} bytes", host.state_bytes());
    }

    #[test]
    fn unreadable_state_starts_again_and_expiry_is_set() {
        let mut host = MemoryHost::new();
        host.set("s", b"junk");
        let mut set = DistinctSet::load(&host, "s");
        assert!(set.is_empty());
        assert!(host.logged()[0].contains("cannot be read"));
        set.store(&mut host, "s", Some(99));
        assert_eq!(host.expiry("s"), Some(99));
    }
}
