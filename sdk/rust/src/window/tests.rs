//! The windows against brute-force computations, on the in-memory host.

use std::collections::BTreeMap;

use super::*;
use crate::testing::MemoryHost;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)) as i64
    }
}

/// One event: key, time, amount.
type Ev = (String, i64, i64);
/// Fired hopping windows: (key, end) -> sum.
type Sums = BTreeMap<(String, i64), i64>;
/// Fired sessions: (key, end) -> (start, sum).
type SessionSums = BTreeMap<(String, i64), (i64, i64)>;

/// Batches of events whose times rise by up to `step` per event and lag
/// behind that rise by up to `disorder`.
fn traffic(seed: u64, events: usize, step: u64, disorder: u64, keys: u64) -> Vec<Vec<Ev>> {
    let mut rng = Rng(seed);
    let mut base = 1_700_000_000_000i64 + rng.below(1_000_000);
    let mut batches = Vec::new();
    let mut left = events;
    while left > 0 {
        let n = (1 + rng.below(40) as usize).min(left);
        left -= n;
        let batch = (0..n)
            .map(|_| {
                base += rng.below(step);
                let key = format!("k{}", rng.below(keys));
                (key, base - rng.below(disorder + 1), 1 + rng.below(100))
            })
            .collect();
        batches.push(batch);
    }
    batches
}

/// What the host would do: per batch, the watermark before it, then the
/// timers it fires. Returns the fired windows and the refusals.
fn run_hopping(
    windows: &Hopping<Sum>,
    batches: &[Vec<Ev>],
    lateness: i64,
    host: &mut MemoryHost,
) -> (Sums, Vec<(i64, String)>) {
    let mut watermark: Option<i64> = None;
    let mut fired = BTreeMap::new();
    let mut refused = Vec::new();
    let fire = |host: &mut MemoryHost, to: i64, fired: &mut BTreeMap<(String, i64), i64>| {
        for timer in host.advance(to) {
            let f = windows.fire(host, &timer).expect("a window timer");
            assert_eq!(f.end - f.start, windows.size());
            let again = fired.insert((f.key, f.end), f.value.0);
            assert!(again.is_none(), "window fired twice");
        }
    };
    for batch in batches {
        let mut b = windows.batch(watermark);
        for (key, time, amount) in batch {
            if let Err(e) = b.add(key, *time, *amount) {
                refused.push((*time, e.to_string()));
            }
        }
        b.commit(host);
        let max = batch.iter().map(|e| e.1).max().expect("events");
        let next = max - lateness - 1;
        if watermark.is_none_or(|w| next > w) {
            watermark = Some(next);
            fire(host, next, &mut fired);
        }
    }
    fire(host, i64::MAX - 1, &mut fired);
    (fired, refused)
}

/// The same windows computed directly: each event counts in every window
/// holding it that had not fired when its batch came.
fn brute_hopping(
    size: i64,
    slide: i64,
    batches: &[Vec<Ev>],
    lateness: i64,
) -> (BTreeMap<(String, i64), i64>, Vec<i64>) {
    let mut watermark: Option<i64> = None;
    let mut sums = BTreeMap::new();
    let mut refused = Vec::new();
    for batch in batches {
        for (key, time, amount) in batch {
            let mut counted = false;
            let mut start = (time - size).div_euclid(slide) * slide;
            while start <= *time {
                let end = start + size;
                if start <= *time && *time < end && watermark.is_none_or(|w| end - 1 > w) {
                    *sums.entry((key.clone(), end)).or_insert(0) += amount;
                    counted = true;
                }
                start += slide;
            }
            if !counted {
                refused.push(*time);
            }
        }
        let next = batch.iter().map(|e| e.1).max().expect("events") - lateness - 1;
        watermark = Some(watermark.map_or(next, |w| w.max(next)));
    }
    (sums, refused)
}

#[test]
fn windows_of_a_time() {
    let w = Hopping::<Sum>::new("w", 10, 4).unwrap();
    assert_eq!(w.pane(), 2);
    assert_eq!(
        w.windows_of(9).collect::<Vec<_>>(),
        [(8, 18), (4, 14), (0, 10)]
    );
    assert_eq!(w.windows_of(-1).collect::<Vec<_>>(), [(-4, 6), (-8, 2)]);
    let t = Hopping::<Sum>::tumbling("t", 5).unwrap();
    assert_eq!(t.windows_of(14).collect::<Vec<_>>(), [(10, 15)]);
    assert_eq!(
        Hopping::<Sum>::new("w", 6 * 3_600_000, 300_000)
            .unwrap()
            .windows_of(0)
            .count(),
        72
    );
    assert_eq!(w.windows_of(i64::MAX).count(), 0);
    assert_eq!(w.windows_of(i64::MIN).count(), 0);
    assert!(Hopping::<Sum>::new("w", 4, 10).is_err());
    assert!(Hopping::<Sum>::new("a/b", 4, 2).is_err());
    assert!(Sessions::<Sum>::new("s", 0).is_err());
}

#[test]
fn hopping_sums_are_exact_under_bounded_disorder() {
    for (seed, size, slide, lateness, disorder) in [
        (1, 60_000, 5_000, 3_000, 3_000),
        (2, 21_600_000, 300_000, 600_000, 600_000),
        (3, 10_000, 10_000, 2_000, 1_500),
        (4, 9_000, 6_000, 0, 0),
    ] {
        let windows = Hopping::<Sum>::new("g", size, slide).unwrap();
        let batches = traffic(seed, 3_000, (slide / 3) as u64, disorder as u64, 3);
        let mut host = MemoryHost::new();
        let (fired, refused) = run_hopping(&windows, &batches, lateness, &mut host);
        let (expected, _) = brute_hopping(size, slide, &batches, lateness);
        assert!(refused.is_empty(), "seed {seed}: {refused:?}");
        assert_eq!(fired, expected, "seed {seed}");
        assert_eq!(host.state_len(), 0, "seed {seed}: state left");
        assert_eq!(host.timers().count(), 0, "seed {seed}: timers left");
    }
}

#[test]
fn late_events_count_in_open_windows_only_or_are_refused() {
    for seed in 10..14 {
        let (size, slide, lateness) = (20_000, 5_000, 1_000);
        let windows = Hopping::<Sum>::new("g", size, slide).unwrap();
        // Disorder up to 30 s: beyond the lateness and beyond a window.
        let batches = traffic(seed, 2_000, 2_000, 30_000, 2);
        let mut host = MemoryHost::new();
        let (fired, refused) = run_hopping(&windows, &batches, lateness, &mut host);
        let (expected, expected_refused) = brute_hopping(size, slide, &batches, lateness);
        assert_eq!(fired, expected, "seed {seed}");
        let refused_times: Vec<i64> = refused.iter().map(|(t, _)| *t).collect();
        assert_eq!(refused_times, expected_refused, "seed {seed}");
        assert!(!refused.is_empty(), "seed {seed}: some are late");
        assert!(refused.iter().all(|(_, r)| r.starts_with("late by ")));
        assert_eq!(host.state_len(), 0);
    }
}

#[test]
fn a_late_reason_says_by_how_much() {
    let windows = Hopping::<Sum>::tumbling("t", 1_000).unwrap();
    let mut batch = windows.batch(Some(2_499));
    // [1000, 2000) fired at 1999; 2400 is behind the watermark but its
    // window [2000, 3000) is open.
    assert!(batch.add("k", 2_400, 1).is_ok());
    let err = batch.add("k", 1_500, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "late by 1000 ms: event time 1500 is at or behind the watermark 2499, and its last window [1000, 2000) has fired"
    );
    assert!(matches!(
        batch.add("k", i64::MAX, 1),
        Err(Refused::OutOfRange(_))
    ));
}

#[test]
fn one_state_update_per_pane_and_batch() {
    /// Counts the host calls made.
    #[derive(Default)]
    struct Counting {
        inner: MemoryHost,
        sets: usize,
        timers: usize,
    }
    impl Host for Counting {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.inner.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8]) {
            self.sets += 1;
            self.inner.set(key, value);
        }
        fn set_expiring(&mut self, key: &str, value: &[u8], at: i64) {
            self.inner.set_expiring(key, value, at);
        }
        fn delete(&mut self, key: &str) {
            self.inner.delete(key);
        }
        fn set_timer(&mut self, key: &str, time: i64) {
            self.timers += 1;
            self.inner.set_timer(key, time);
        }
        fn delete_timer(&mut self, key: &str, time: i64) {
            self.inner.delete_timer(key, time);
        }
        fn lookup(
            &mut self,
            table: &str,
            keys: &[String],
            columns: &[String],
        ) -> Result<Vec<Option<Vec<crate::Value>>>, String> {
            self.inner.lookup(table, keys, columns)
        }
        fn log(&self, level: LogLevel, message: &str) {
            self.inner.log(level, message);
        }
    }
    let windows = Hopping::<Sum>::new("g", 6 * 3_600_000, 300_000).unwrap();
    let mut host = Counting::default();
    let mut batch = windows.batch(None);
    for i in 0..1_000 {
        batch.add("all", 1_000 + i, 1).unwrap();
    }
    batch.commit(&mut host);
    assert_eq!(
        (host.sets, host.timers),
        (1, 72),
        "one pane, its 72 windows"
    );
    let mut batch = windows.batch(Some(1_500));
    for i in 0..1_000 {
        batch.add("all", 2_000 + i, 1).unwrap();
    }
    batch.commit(&mut host);
    assert_eq!(
        (host.sets, host.timers),
        (2, 72),
        "the same pane: no new timers"
    );
}

/// Sessions per key computed directly from all the events (none late):
/// sorted times, a new session when the next starts after the current
/// end (touching windows merge).
fn brute_sessions(batches: &[Vec<Ev>], gap: i64) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut times: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (key, time, amount) in batches.iter().flatten() {
        times.entry(key.clone()).or_default().push((*time, *amount));
    }
    let mut out = BTreeMap::new();
    for (key, mut events) in times {
        events.sort_unstable();
        let mut current: Option<(i64, i64, i64)> = None;
        for (t, a) in events {
            current = match current {
                Some((s, e, sum)) if t <= e => Some((s, e.max(t + gap), sum + a)),
                Some((s, e, sum)) => {
                    out.insert((key.clone(), e), (s, sum));
                    Some((t, t + gap, a))
                }
                None => Some((t, t + gap, a)),
            };
        }
        if let Some((s, e, sum)) = current {
            out.insert((key.clone(), e), (s, sum));
        }
    }
    out
}

fn run_sessions(
    sessions: &Sessions<Sum>,
    batches: &[Vec<Ev>],
    lateness: i64,
    host: &mut MemoryHost,
) -> (SessionSums, Vec<String>) {
    let mut watermark: Option<i64> = None;
    let mut fired = BTreeMap::new();
    let mut refused = Vec::new();
    let fire = |host: &mut MemoryHost, to: i64, fired: &mut BTreeMap<_, _>| {
        for timer in host.advance(to) {
            let f = sessions.fire(host, &timer).expect("a session timer");
            assert!(fired.insert((f.key, f.end), (f.start, f.value.0)).is_none());
        }
    };
    for batch in batches {
        let mut b = sessions.batch(watermark);
        for (key, time, amount) in batch {
            if let Err(e) = b.add(host, key, *time, *amount) {
                refused.push(e.to_string());
            }
        }
        b.commit(host);
        let next = batch.iter().map(|e| e.1).max().expect("events") - lateness - 1;
        if watermark.is_none_or(|w| next > w) {
            watermark = Some(next);
            fire(host, next, &mut fired);
        }
    }
    fire(host, i64::MAX - 1, &mut fired);
    (fired, refused)
}

#[test]
fn sessions_are_exact_under_bounded_disorder() {
    for seed in 20..24 {
        let gap = 10_000;
        let sessions = Sessions::<Sum>::new("s", gap).unwrap();
        // Steps up to 25 s: sessions both merge and split.
        let batches = traffic(seed, 2_000, 25_000, 5_000, 3);
        let mut host = MemoryHost::new();
        let (fired, refused) = run_sessions(&sessions, &batches, 5_000, &mut host);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(fired, brute_sessions(&batches, gap), "seed {seed}");
        assert_eq!(host.state_len(), 0);
        assert_eq!(host.timers().count(), 0);
    }
}

#[test]
fn sessions_merge_and_move_their_timers() {
    let sessions = Sessions::<Count>::new("s", 10).unwrap();
    let mut host = MemoryHost::new();
    let mut b = sessions.batch(None);
    b.add(&host, "r", 0, ()).unwrap();
    b.add(&host, "r", 25, ()).unwrap();
    b.commit(&mut host);
    assert_eq!(host.timers().collect::<Vec<_>>(), [(9, "s/r"), (34, "s/r")]);
    // [10, 20) touches [0, 10); [16, 26) then bridges it and [25, 35).
    let mut b = sessions.batch(Some(5));
    b.add(&host, "r", 10, ()).unwrap();
    b.add(&host, "r", 16, ()).unwrap();
    b.commit(&mut host);
    assert_eq!(host.timers().collect::<Vec<_>>(), [(34, "s/r")]);
    let fired: Vec<_> = host
        .advance(40)
        .iter()
        .filter_map(|t| sessions.fire(&mut host, t))
        .collect();
    assert_eq!(
        fired,
        [Fired {
            key: "r".into(),
            start: 0,
            end: 35,
            value: Count(4)
        }]
    );
    assert_eq!(host.state_len(), 0);
}

#[test]
fn a_late_session_event_is_refused_unless_it_joins_an_open_session() {
    let sessions = Sessions::<Count>::new("s", 10).unwrap();
    let mut host = MemoryHost::new();
    let mut b = sessions.batch(None);
    b.add(&host, "r", 100, ()).unwrap();
    b.commit(&mut host);
    let mut b = sessions.batch(Some(100));
    // [95, 105) touches the open [100, 110): it joins it.
    b.add(&host, "r", 95, ()).unwrap();
    // [50, 60) fired long ago.
    let err = b.add(&host, "r", 50, ()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "late by 51 ms: event time 50 is at or behind the watermark 100, and its last window [50, 60) has fired"
    );
    b.commit(&mut host);
    let fired: Vec<_> = host
        .advance(200)
        .iter()
        .filter_map(|t| sessions.fire(&mut host, t))
        .collect();
    assert_eq!(
        (fired[0].start, fired[0].end, fired[0].value),
        (95, 110, Count(2))
    );
}

/// Flink's `allowedLateness`, by brute force: an event counts in each of
/// its windows that had not passed end - 1 + lateness when its batch
/// came; a window's result as first fired (if it fired) plus what its updates added is
/// every event it counted, and each update's value is that sum so far.
#[test]
fn hopping_windows_kept_for_lateness_count_late_events_and_report_each_change() {
    for (size, slide, lateness, seed) in [(60, 20, 50, 1), (100, 100, 30, 2), (90, 30, 60, 3)] {
        let windows = Hopping::<Sum>::new("w", size, slide)
            .unwrap()
            .with_lateness(lateness)
            .unwrap();
        let mut host = MemoryHost::new();
        let mut watermark: Option<i64> = None;
        let (mut counted, mut shown) = (Sums::new(), Sums::new());
        let (mut refused, mut updates) = (0, 0);
        // As the host does: the timers the watermark reached, then expiry.
        let advance = |host: &mut MemoryHost, to: i64, shown: &mut Sums| {
            for timer in host.take_due(to) {
                let f = windows.fire(host, &timer).expect("a window timer");
                let again = shown.insert((f.key, f.end), f.value.0);
                assert!(again.is_none(), "window fired twice");
            }
            host.expire(to);
        };
        for batch in traffic(seed, 3_000, 7, 200, 3) {
            let mut b = windows.batch(watermark);
            for (key, time, amount) in &batch {
                let kept = |end: i64| watermark.is_none_or(|w| end - 1 + lateness > w);
                let ends: Vec<i64> = windows.windows_of(*time).map(|(_, end)| end).collect();
                match b.add(key, *time, *amount) {
                    Ok(()) => {
                        for end in ends.into_iter().filter(|&end| kept(end)) {
                            *counted.entry((key.clone(), end)).or_default() += amount;
                        }
                    }
                    Err(e) => {
                        assert!(!ends.into_iter().any(kept), "{e}");
                        assert!(e.to_string().contains("allowed lateness"), "{e}");
                        refused += 1;
                    }
                }
            }
            for update in b.commit(&mut host) {
                updates += 1;
                let window = (update.key, update.end);
                // A window that had no event when the watermark passed
                // its end is first shown by its update.
                let total = shown.entry(window).or_default();
                *total += update.added.0;
                assert_eq!(update.value.0, *total);
                assert_eq!(update.end - update.start, size);
            }
            let next = batch.iter().map(|e| e.1).max().expect("events") - 1;
            if watermark.is_none_or(|w| next > w) {
                watermark = Some(next);
                advance(&mut host, next, &mut shown);
            }
        }
        advance(&mut host, i64::MAX / 2, &mut shown);
        assert_eq!(shown, counted, "size {size}, slide {slide}");
        assert!(
            refused > 0 && updates > 0,
            "{refused} refused, {updates} updates"
        );
        assert_eq!(host.state_len(), 0, "every pane expired");
    }
}

/// A rule that starts keeping its windows for lateness (a parameter
/// changed) still has the panes it wrote before go.
#[test]
fn panes_written_before_the_lateness_was_set_expire_too() {
    let before = Hopping::<Sum>::new("w", 20, 10).unwrap();
    let after = Hopping::<Sum>::new("w", 20, 10)
        .unwrap()
        .with_lateness(15)
        .unwrap();
    let mut host = MemoryHost::new();
    let mut b = before.batch(None);
    b.add("k", 3, 1).unwrap();
    b.add("k", 12, 2).unwrap();
    b.commit(&mut host);
    assert_eq!(host.state_len(), 2);
    let mut fired = Vec::new();
    for timer in host.take_due(40) {
        fired.extend(after.fire(&mut host, &timer).map(|f| (f.end, f.value.0)));
    }
    assert_eq!(fired, [(10, 1), (20, 3), (30, 2)]);
    // The last window holding each pane, plus 15.
    host.expire(33);
    assert_eq!(host.state_len(), 2);
    host.expire(34);
    assert_eq!(host.state_len(), 1);
    host.expire(44);
    assert_eq!(host.state_len(), 0);
}

#[test]
fn a_negative_lateness_is_refused() {
    let windows = Hopping::<Sum>::tumbling("t", 10).unwrap();
    assert!(windows.with_lateness(-1).is_err());
    let sessions = Sessions::<Sum>::new("s", 10).unwrap();
    assert!(sessions.with_lateness(-1).is_err());
}

#[test]
fn unreadable_state_counts_as_empty() {
    let windows = Hopping::<Sum>::tumbling("t", 10).unwrap();
    let mut host = MemoryHost::new();
    let mut b = windows.batch(None);
    b.add("k", 3, 5).unwrap();
    b.commit(&mut host);
    host.set("t/0/k", b"junk");
    let fired = windows.fire(
        &mut host,
        &FiredTimer {
            key: "t/k".into(),
            time: 9,
        },
    );
    assert_eq!(fired.map(|f| f.value), Some(Sum(0)));
    assert!(host.logged()[0].contains("cannot be read"));
    assert!(
        windows
            .fire(
                &mut host,
                &FiredTimer {
                    key: "other/k".into(),
                    time: 9
                }
            )
            .is_none()
    );
}

/// Fires the session timers due at `to` as the host does: until none is
/// due, those set while firing included. Returns what fired.
fn fire_sessions(sessions: &Sessions<Sum>, host: &mut MemoryHost, to: i64) -> Vec<Fired<Sum>> {
    let mut fired = Vec::new();
    loop {
        let due = host.take_due(to);
        if due.is_empty() {
            return fired;
        }
        for timer in due {
            fired.extend(sessions.fire(host, &timer));
        }
    }
}

/// Sessions kept for lateness, by hand: a late event within the lateness
/// updates a fired session (the same bounds, or an earlier start), one
/// that extends it past the watermark reopens it, and the session is let
/// go at end - 1 + lateness.
#[test]
fn sessions_kept_for_lateness_take_late_events() {
    let sessions = Sessions::<Count>::new("s", 10)
        .unwrap()
        .with_lateness(20)
        .unwrap();
    let mut host = MemoryHost::new();
    let mut b = sessions.batch(None);
    b.add(&host, "r", 100, ()).unwrap();
    assert!(b.commit(&mut host).is_empty());
    let fired: Vec<_> = host
        .take_due(120)
        .iter()
        .filter_map(|t| sessions.fire(&mut host, t))
        .collect();
    assert_eq!(
        fired,
        [Fired {
            key: "r".into(),
            start: 100,
            end: 110,
            value: Count(1)
        }]
    );
    assert_eq!(host.state_len(), 1, "kept for lateness");
    assert_eq!(host.timers().collect::<Vec<_>>(), [(129, "s/r")]);

    // Two late events: one that moves its end, one that moves its start.
    let mut b = sessions.batch(Some(120));
    b.add(&host, "r", 105, ()).unwrap();
    b.add(&host, "r", 95, ()).unwrap();
    let err = b.add(&host, "r", 50, ()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("[50, 60) has fired and its allowed lateness of 20 ms has passed"),
        "{err}"
    );
    assert_eq!(
        b.commit(&mut host),
        [Update {
            key: "r".into(),
            start: 95,
            end: 115,
            value: Count(3),
            added: Count(2)
        }]
    );
    assert_eq!(host.timers().collect::<Vec<_>>(), [(134, "s/r")]);

    // One that extends it past the watermark: open again, no update yet.
    let mut b = sessions.batch(Some(120));
    b.add(&host, "r", 115, ()).unwrap();
    assert!(b.commit(&mut host).is_empty());
    assert_eq!(
        host.timers().collect::<Vec<_>>(),
        [(124, "s/r"), (144, "s/r")]
    );
    let mut fired = Vec::new();
    for timer in host.take_due(143) {
        fired.extend(sessions.fire(&mut host, &timer));
    }
    assert_eq!(
        fired,
        [Fired {
            key: "r".into(),
            start: 95,
            end: 125,
            value: Count(4)
        }]
    );
    assert_eq!(host.state_len(), 1);
    for timer in host.take_due(144) {
        assert!(sessions.fire(&mut host, &timer).is_none());
    }
    assert_eq!((host.state_len(), host.timers().count()), (0, 0));
}

/// With a lateness larger than the disorder, nothing is refused, and the
/// last result shown for each session (fired or updated; a session a
/// later one took in is superseded by it) is the session of every event,
/// computed directly.
#[test]
fn sessions_kept_for_lateness_end_exact_under_disorder_past_the_watermark() {
    for seed in 40..44 {
        let (gap, disorder) = (10_000, 30_000);
        let sessions = Sessions::<Sum>::new("s", gap)
            .unwrap()
            .with_lateness(disorder + 1)
            .unwrap();
        // The watermark trails the largest time by 1 ms only: events come
        // up to 30 s behind it, into sessions that have fired.
        let batches = traffic(seed, 2_000, 25_000, disorder as u64, 3);
        let mut host = MemoryHost::new();
        let mut watermark: Option<i64> = None;
        let mut shown: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
        let mut updates = 0;
        let advance = |host: &mut MemoryHost, to: i64, shown: &mut BTreeMap<_, _>| {
            for f in fire_sessions(&sessions, host, to) {
                shown.insert((f.key, f.start, f.end), f.value.0);
            }
        };
        for batch in &batches {
            let mut b = sessions.batch(watermark);
            for (key, time, amount) in batch {
                b.add(&host, key, *time, *amount).unwrap();
            }
            for u in b.commit(&mut host) {
                updates += 1;
                let before = shown.get(&(u.key.clone(), u.start, u.end)).copied();
                if let Some(before) = before {
                    assert_eq!(u.value.0, before + u.added.0);
                }
                assert!(u.added.0 > 0 && u.end - 1 <= watermark.unwrap());
                shown.insert((u.key, u.start, u.end), u.value.0);
            }
            let next = batch.iter().map(|e| e.1).max().expect("events") - 1;
            if watermark.is_none_or(|w| next > w) {
                watermark = Some(next);
                advance(&mut host, next, &mut shown);
            }
        }
        advance(&mut host, i64::MAX - 1, &mut shown);
        let last: BTreeMap<(String, i64), (i64, i64)> = shown
            .iter()
            .filter(|((key, start, end), _)| {
                !shown
                    .keys()
                    .any(|(k, s, e)| k == key && s <= start && end <= e && (s, e) != (start, end))
            })
            .map(|((key, start, end), sum)| ((key.clone(), *end), (*start, *sum)))
            .collect();
        assert_eq!(last, brute_sessions(&batches, gap), "seed {seed}");
        assert!(updates > 0, "seed {seed}: no late event updated a session");
        assert_eq!((host.state_len(), host.timers().count()), (0, 0));
    }
}

/// Past the lateness, events are refused, each one too late even for a
/// session of its own, and every session is still let go in the end.
#[test]
fn sessions_refuse_events_past_their_lateness_and_let_every_session_go() {
    let (gap, lateness) = (10_000, 5_000);
    let sessions = Sessions::<Sum>::new("s", gap)
        .unwrap()
        .with_lateness(lateness)
        .unwrap();
    let batches = traffic(50, 3_000, 25_000, 60_000, 3);
    let mut host = MemoryHost::new();
    let mut watermark: Option<i64> = None;
    let mut refused = 0;
    for batch in &batches {
        let mut b = sessions.batch(watermark);
        for (key, time, amount) in batch {
            if let Err(e) = b.add(&host, key, *time, *amount) {
                let w = watermark.expect("only late events are refused");
                assert!(time + gap - 1 + lateness <= w, "{e}");
                refused += 1;
            }
        }
        b.commit(&mut host);
        let next = batch.iter().map(|e| e.1).max().expect("events") - 1;
        if watermark.is_none_or(|w| next > w) {
            watermark = Some(next);
            fire_sessions(&sessions, &mut host, next);
        }
    }
    fire_sessions(&sessions, &mut host, i64::MAX - 1);
    assert!(refused > 0);
    assert_eq!((host.state_len(), host.timers().count()), (0, 0));
}

/// A rule that starts keeping its sessions for lateness (a parameter
/// changed) still lets go of the sessions it wrote before.
#[test]
fn sessions_written_before_the_lateness_was_set_are_let_go_too() {
    let before = Sessions::<Count>::new("s", 10).unwrap();
    let after = Sessions::<Count>::new("s", 10)
        .unwrap()
        .with_lateness(15)
        .unwrap();
    let mut host = MemoryHost::new();
    let mut b = before.batch(None);
    b.add(&host, "r", 100, ()).unwrap();
    b.commit(&mut host);
    let mut fired = Vec::new();
    for timer in host.take_due(120) {
        fired.extend(after.fire(&mut host, &timer).map(|f| (f.end, f.value)));
    }
    assert_eq!(fired, [(110, Count(1))]);
    assert_eq!(host.state_len(), 1, "kept for lateness");
    for timer in host.take_due(124) {
        assert!(after.fire(&mut host, &timer).is_none());
    }
    assert_eq!((host.state_len(), host.timers().count()), (0, 0));
}
