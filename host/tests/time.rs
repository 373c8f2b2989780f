//! Event time on the embedded default: watermarks, hopping windows
//! (`gift-windows`), timers (`online-viewers`), late events, and windows
//! that carry on across runs. Expected figures are computed here from the
//! generated input, the way Flink defines them.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use livestream_example::SplitMix64;
use support::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// 2021-08-13 00:00:00 UTC, near the seed's own data.
const START: i64 = 1_628_812_800_000;

/// A gift at event time `time`.
struct Gift {
    time: i64,
    amount: i64,
}

impl Gift {
    fn line(&self, user: i64) -> String {
        format!(
            "{{\"user_id\": {user}, \"gift_type\": {}, \"gift_total_amount\": {}, \
             \"room_id\": 20210813, \"ip\": \"1.2.3.4\", \"create_time\": \"{}\"}}",
            user % 10 + 1,
            self.amount,
            livestream_format::format_timestamp(self.time)
        )
    }
}

/// The gifts as the seed's JSON lines, user ids by position.
fn gift_lines(gifts: &[Gift]) -> Vec<String> {
    gifts
        .iter()
        .enumerate()
        .map(|(i, g)| g.line(i as i64))
        .collect()
}

/// `count` gifts about `step` apart (whole seconds, as the seed's
/// timestamps are) whose times are out of order by up to `disorder`: each
/// is moved by up to half of it either way.
fn disordered_gifts(count: usize, step: i64, disorder: i64, seed: u64) -> Vec<Gift> {
    let mut rng = SplitMix64::new(seed);
    let half = disorder / 2000;
    (0..count as i64)
        .map(|i| {
            let jitter = (rng.below(2 * half as u64 + 1) as i64 - half) * 1000;
            Gift {
                time: (START + i * step) / 1000 * 1000 + jitter,
                amount: rng.between(1, 100),
            }
        })
        .collect()
}

/// Hopping windows `[end - size, end)`, starts aligned to `slide`, as Flink
/// computes them in event time: an event counts in the windows that had not
/// fired when it came (a window fires once the watermark reaches `end - 1`),
/// or that were still kept `kept` ms after firing (Flink's
/// `allowedLateness`, each late event then updating the window's result);
/// one whose every window was past that is late. Watermarks move per batch
/// of `batch` events: max time seen − `lateness` − 1 ms. Returns the
/// totals of the windows whose end the watermark passed, by end, and the
/// indices of the late events.
fn hopping_sums(
    gifts: &[Gift],
    size: i64,
    slide: i64,
    lateness: i64,
    kept: i64,
    batch: usize,
) -> (BTreeMap<i64, i64>, Vec<usize>) {
    let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    for (b, chunk) in gifts.chunks(batch).enumerate() {
        for (i, gift) in chunk.iter().enumerate() {
            let last_start = gift.time.div_euclid(slide) * slide;
            if last_start + size - 1 + kept <= watermark {
                late.push(b * batch + i);
                continue;
            }
            let mut start = last_start;
            while start > gift.time - size {
                let end = start + size;
                if end - 1 + kept > watermark {
                    *totals.entry(end).or_default() += gift.amount;
                }
                start -= slide;
            }
        }
        let latest = chunk.iter().map(|g| g.time).max().unwrap();
        watermark = watermark.max(latest - lateness - 1);
    }
    totals.retain(|end, _| end - 1 <= watermark);
    (totals, late)
}

/// `window_end` as the sink writes a timestamp (UTC by default).
fn sink_time(ms: i64) -> String {
    apiary::time::format_millis(ms, 0)
}

fn window_rows(db: &Path) -> BTreeMap<String, i64> {
    use sqlx::Row as _;
    sqlite_rows(
        db,
        "SELECT CAST(window_end AS TEXT), gift_total_amount FROM gifts_6h",
        |r| (r.get::<String, _>(0), r.get::<i64, _>(1)),
    )
    .into_iter()
    .collect()
}

fn expected_rows(fired: &BTreeMap<i64, i64>) -> BTreeMap<String, i64> {
    fired.iter().map(|(e, v)| (sink_time(*e), *v)).collect()
}

/// A pipeline over `gifts` with `extra` sections appended.
fn gifts_pipeline(dir: &Path, gifts: &Path, extra: &str) -> std::path::PathBuf {
    let config = embedded_config(dir, &[(gifts, "live_gift_total")]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += extra;
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn six_hour_windows_are_exact_under_disorder_within_the_lateness_and_go_on_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    // 30 h of gifts, out of order by up to 10 min; 15 min allowed.
    let gifts = disordered_gifts(20_000, 5_400, 10 * MINUTE, 11);
    let lines = gift_lines(&gifts);
    let input = dir.path().join("gifts.jsonl");
    let extra = "[time]\nallowed-lateness = \"15m\"\n";
    let config = gifts_pipeline(dir.path(), &input, extra);

    // Two runs over two halves: the second continues the open windows.
    let half = lines.len() / 2;
    append_lines(&input, &lines[..half]);
    run_until_idle(&config);
    let (fired, late) = hopping_sums(&gifts[..half], 6 * HOUR, 5 * MINUTE, 15 * MINUTE, 0, 1);
    assert!(late.is_empty());
    assert_eq!(window_rows(&db), expected_rows(&fired));
    assert!(fired.len() > 100, "{} windows closed", fired.len());

    append_lines(&input, &lines[half..]);
    run_until_idle(&config);
    let (fired, late) = hopping_sums(&gifts, 6 * HOUR, 5 * MINUTE, 15 * MINUTE, 0, 1);
    assert!(late.is_empty());
    assert_eq!(window_rows(&db), expected_rows(&fired));
    // 30 h of data, 6 h windows every 5 min: about 288 windows closed.
    assert!(fired.len() > 250, "{} windows closed", fired.len());
    let watermark = sqlite_count(&db, "SELECT watermark FROM apiary_offsets");
    let latest = gifts.iter().map(|g| g.time).max().unwrap();
    assert_eq!(watermark, latest - 15 * MINUTE - 1);
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM apiary_dead_letter"),
        0
    );
}

#[test]
fn events_behind_every_window_are_dead_letters_saying_how_late() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    // One record per batch, so the watermark moves after every event and
    // the test can follow it exactly. Windows of 1 h every 10 min, no
    // lateness allowed, events out of order by up to 2 h: some are late
    // for some windows, some for all.
    let gifts = disordered_gifts(600, 20_000, 2 * HOUR, 12);
    let lines = gift_lines(&gifts);
    let input = dir.path().join("gifts.jsonl");
    append_lines(&input, &lines);
    let extra = "[batch]\nmax-records = 1\n\
                 [plugins.params.gift-windows]\nsize = \"1h\"\nslide = \"10m\"\n";
    let config = gifts_pipeline(dir.path(), &input, extra);
    run_until_idle(&config);

    let (fired, late) = hopping_sums(&gifts, HOUR, 10 * MINUTE, 0, 0, 1);
    assert!(late.len() > 20, "only {} late events", late.len());
    assert_eq!(window_rows(&db), expected_rows(&fired));
    use sqlx::Row as _;
    let dead: Vec<(i64, String, String)> = sqlite_rows(
        &db,
        "SELECT record_offset, plugin, reason FROM apiary_dead_letter ORDER BY record_offset",
        |r| (r.get(0), r.get(1), r.get(2)),
    );
    let offsets: Vec<usize> = dead.iter().map(|(o, _, _)| *o as usize).collect();
    assert_eq!(offsets, late);
    for (offset, plugin, reason) in &dead {
        assert_eq!(plugin, "gift-windows");
        assert!(reason.contains("late by"), "record {offset}: {reason}");
        // The reason says by how much the event missed the watermark.
        let gift = &gifts[*offset as usize];
        let watermark = gifts[..*offset as usize]
            .iter()
            .map(|g| g.time)
            .max()
            .unwrap()
            - 1;
        let behind = watermark - gift.time + 1;
        assert!(
            reason.contains(&format!("late by {behind} ms")),
            "record {offset}: {reason}, expected late by {behind} ms"
        );
    }
}

/// `gift-windows` with `lateness`: a window fires on time, and a gift late
/// for it within the lateness adds to its row (Flink's `allowedLateness`).
/// Every row ends at the total of the gifts the window counted, and only
/// gifts past every window's lateness are dead letters.
#[test]
fn windows_kept_for_lateness_take_late_gifts_into_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    // One record per batch, as above: 1 h windows every 10 min, kept 30
    // min after they fire, gifts out of order by up to 2 h.
    let gifts = disordered_gifts(600, 20_000, 2 * HOUR, 14);
    let input = dir.path().join("gifts.jsonl");
    append_lines(&input, &gift_lines(&gifts));
    let extra = "[batch]\nmax-records = 1\n\
                 [plugins.params.gift-windows]\nsize = \"1h\"\nslide = \"10m\"\nlateness = \"30m\"\n";
    run_until_idle(&gifts_pipeline(dir.path(), &input, extra));

    let (totals, late) = hopping_sums(&gifts, HOUR, 10 * MINUTE, 0, 30 * MINUTE, 1);
    let (on_time, refused) = hopping_sums(&gifts, HOUR, 10 * MINUTE, 0, 0, 1);
    assert!(
        late.len() < refused.len() && totals != on_time,
        "late gifts counted"
    );
    assert!(!late.is_empty(), "some gifts are past the lateness");
    assert_eq!(window_rows(&db), expected_rows(&totals));
    use sqlx::Row as _;
    let dead: Vec<(i64, String)> = sqlite_rows(
        &db,
        "SELECT record_offset, reason FROM apiary_dead_letter ORDER BY record_offset",
        |r| (r.get(0), r.get(1)),
    );
    let offsets: Vec<usize> = dead.iter().map(|(o, _)| *o as usize).collect();
    assert_eq!(offsets, late);
    for (offset, reason) in &dead {
        assert!(
            reason.ends_with("and its allowed lateness of 1800000 ms has passed"),
            "record {offset}: {reason}"
        );
    }
}

/// A gift stamped decades ahead (a collector with a wrong clock) is a dead
/// letter of the parser, saying so, and leaves the watermark alone: every
/// other gift's windows close as if it had not come. With the check off,
/// the same gift closes every window at once and the gifts after it are
/// all late.
#[test]
fn an_event_far_ahead_of_the_clock_is_refused_and_leaves_the_watermark_alone() {
    let mut gifts = disordered_gifts(2_000, 20_000, 0, 13);
    let far = 4_102_444_800_000; // 2100-01-01
    gifts.insert(
        100,
        Gift {
            time: far,
            amount: 7,
        },
    );
    let lines = gift_lines(&gifts);
    let others: Vec<Gift> = gifts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 100)
        .map(|(_, g)| Gift {
            time: g.time,
            amount: g.amount,
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let input = dir.path().join("gifts.jsonl");
    append_lines(&input, &lines);
    run_until_idle(&gifts_pipeline(dir.path(), &input, ""));
    let (fired, late) = hopping_sums(&others, 6 * HOUR, 5 * MINUTE, 0, 0, 1);
    assert!(late.is_empty());
    assert!(fired.len() > 50, "{} windows closed", fired.len());
    assert_eq!(window_rows(&db), expected_rows(&fired));
    let latest = others.iter().map(|g| g.time).max().unwrap();
    assert_eq!(
        sqlite_count(&db, "SELECT watermark FROM apiary_offsets"),
        latest - 1
    );
    use sqlx::Row as _;
    let dead: Vec<(i64, String, String)> = sqlite_rows(
        &db,
        "SELECT record_offset, plugin, reason FROM apiary_dead_letter",
        |r| (r.get(0), r.get(1), r.get(2)),
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (offset, plugin, reason) = &dead[0];
    assert_eq!((*offset, plugin.as_str()), (100, "seed-json-parser"));
    assert!(
        reason.starts_with(&format!("event time {far} is "))
            && reason.ends_with("ahead of the clock, more than [time] max-ahead (1day)"),
        "{reason}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let input = dir.path().join("gifts.jsonl");
    append_lines(&input, &lines);
    let off = "[time]\nmax-ahead = \"0s\"\n";
    run_until_idle(&gifts_pipeline(dir.path(), &input, off));
    assert_eq!(
        sqlite_count(&db, "SELECT watermark FROM apiary_offsets"),
        far - 1
    );
    // Its batch of up to 1024 gifts counted; every gift after that is late.
    let late = sqlite_count(
        &db,
        "SELECT COUNT(*) FROM apiary_dead_letter WHERE reason LIKE 'late by%'",
    );
    assert!(late >= lines.len() as i64 - 1024, "{late} late");
}

/// A visit from `arrive` (inclusive) to `leave` (exclusive).
struct Visit {
    room: i64,
    arrive: i64,
    leave: i64,
}

impl Visit {
    fn line(&self, user: i64) -> String {
        format!(
            "{{\"user_id\": {user}, \"ip\": \"1.2.3.4\", \"room_id\": {}, \
             \"arrive_time\": \"{}\", \"leave_time\": \"{}\", \"create_time\": \"{}\", \
             \"region\": 110000, \"grade\": {}, \"province\": \"北京\"}}",
            self.room,
            livestream_format::format_timestamp(self.arrive),
            livestream_format::format_timestamp(self.leave),
            livestream_format::format_timestamp(self.arrive),
            user % 5 + 1,
        )
    }
}

/// `count` visits arriving `step` ms apart in order, staying 1 min to 2 h,
/// in rooms 100 to 104.
fn visits_in_rooms(count: i64, step: i64, seed: u64) -> Vec<Visit> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|i| {
            let arrive = START + i * step;
            Visit {
                room: 100 + rng.below(5) as i64,
                arrive,
                leave: arrive + rng.between(60, 7_200) * 1000,
            }
        })
        .collect()
}

/// The visits as JSON lines, user ids by position.
fn visit_lines(visits: &[Visit]) -> Vec<String> {
    visits
        .iter()
        .enumerate()
        .map(|(i, v)| v.line(i as i64))
        .collect()
}

/// Viewers per room (100 to 104) online at `watermark`: arrived at or
/// before it, not yet left.
fn online_at(visits: &[Visit], watermark: i64) -> BTreeMap<i64, i64> {
    let mut rooms: BTreeMap<i64, i64> = (100..105).map(|r| (r, 0)).collect();
    for v in visits {
        if v.arrive <= watermark && watermark < v.leave {
            *rooms.get_mut(&v.room).unwrap() += 1;
        }
    }
    rooms
}

#[test]
fn online_viewers_follow_the_watermark_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let visits = visits_in_rooms(6_000, 3_000, 13);
    let lines = visit_lines(&visits);
    let input = dir.path().join("visits.jsonl");
    let config = embedded_config(dir.path(), &[(&input, "live_streaming_log")]);
    // No lateness: the watermark is the latest arrival - 1 ms.
    let online =
        |visits: &[Visit]| online_at(visits, visits.iter().map(|v| v.arrive).max().unwrap() - 1);
    let viewers = || {
        let mut rooms: BTreeMap<i64, i64> = (100..105).map(|r| (r, 0)).collect();
        rooms.extend(sqlite_pairs(
            &db,
            "SELECT room_id, viewers FROM online_viewers",
        ));
        rooms
    };
    append_lines(&input, &lines[..4_000]);
    run_until_idle(&config);
    assert_eq!(viewers(), online(&visits[..4_000]));
    append_lines(&input, &lines[4_000..]);
    run_until_idle(&config);
    let expected = online(&visits);
    assert!(expected.values().sum::<i64>() > 100, "{expected:?}");
    assert_eq!(viewers(), expected);
}

/// Five kill -9 while windows and viewers are open, over Kafka into
/// MariaDB: every window and every room's viewers come out exact, so no
/// timer was lost or fired twice, and no event counted twice.
#[test]
fn kill_9_five_times_during_a_windowed_run_over_kafka_loses_and_repeats_nothing() {
    use std::time::Duration;
    use support::kafka::{create_topic, produce};
    use support::process::{interrupt_and_wait, kill_five_times, spawn_run, wait_until};
    use support::sql::{Server, count, pairs};

    // One partition each: windows and viewers are per lane, and the test
    // computes them from the whole topic.
    let gifts_topic = create_topic("time-gifts", 1);
    let visits_topic = create_topic("time-visits", 1);
    let gifts = disordered_gifts(60_000, 1_800, 10 * MINUTE, 14);
    let gift_lines = gift_lines(&gifts);
    let visits = visits_in_rooms(30_000, 3_600, 15);
    let visit_lines = visit_lines(&visits);
    produce(&gifts_topic, &gift_lines);
    produce(&visits_topic, &visit_lines);

    let url = Server::Mysql.fresh_database("time");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[plugins]\ndir = {:?}\n{}[source.kafka]\nbrokers = {:?}\ngroup = \"{gifts_topic}-g\"\n\
         topics = {{ {gifts_topic:?} = \"live_gift_total\", {visits_topic:?} = \"live_streaming_log\" }}\n\
         assignment = \"all\"\n\
         [sink.sql]\nurl = {url:?}\ninterval = \"300ms\"\n[batch]\nmax-records = 500\n\
         [time]\nallowed-lateness = \"15m\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
        support::kafka::broker(),
    );
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("run.log");
    let committed = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM apiary_offsets";
    let total = (gifts.len() + visits.len()) as i64;
    kill_five_times(&config, &log, total, 16, || count(&url, committed));
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(300), "every record", &log, || {
        count(&url, committed) == total
    });
    interrupt_and_wait(&mut child, &log);

    let (fired, _) = hopping_sums(&gifts, 6 * HOUR, 5 * MINUTE, 15 * MINUTE, 0, 1);
    let windows: BTreeMap<String, i64> = {
        use sqlx::Row as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
            sqlx::query("SELECT CAST(window_end AS CHAR), gift_total_amount FROM gifts_6h")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                .collect()
        })
    };
    assert!(fired.len() > 250, "{} windows", fired.len());
    assert_eq!(windows, expected_rows(&fired));
    let watermark = visits.iter().map(|v| v.arrive).max().unwrap() - 15 * MINUTE - 1;
    let expected = online_at(&visits, watermark);
    let mut viewers: BTreeMap<i64, i64> = (100..105).map(|r| (r, 0)).collect();
    viewers.extend(pairs(&url, "SELECT room_id, viewers FROM online_viewers"));
    assert_eq!(viewers, expected);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"), 0);
}

#[test]
fn a_windowed_rule_swapped_mid_stream_keeps_its_windows_and_timers() {
    use std::time::Duration;
    use support::process::{interrupt_and_wait, log_tail, spawn_run, wait_until};

    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["seed-json-parser", "gift-windows"] {
        install(&plugins_dir().join(format!("{name}.wasm")), &plugins, name);
    }
    let input = root.path().join("gifts.jsonl");
    let config = root.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {plugins:?}\n[source.file]\npath = {input:?}\n\
             topic = \"live_gift_total\"\n[sink.sql]\nurl = \"sqlite://out.db\"\n\
             interval = \"200ms\"\n[time]\nallowed-lateness = \"15m\"\n"
        ),
    )
    .unwrap();
    let gifts = disordered_gifts(12_000, 9_000, 10 * MINUTE, 17);
    let lines = gift_lines(&gifts);
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    append_lines(&input, &lines[..4_000]);
    let mut child = spawn_run(&config, &[], &log);
    for (swap, upto) in [(0, 8_000), (1, 12_000)] {
        let done = lines[..upto - 4_000].len() as i64;
        wait_until(Duration::from_secs(120), "records to flow", &log, || {
            sqlite_committed(&db) >= done
        });
        // Open windows and pending timers are in the lane when it swaps;
        // the lane takes the new instance over at its next batch.
        install(
            &plugins_dir().join("gift-windows.wasm"),
            &plugins,
            "gift-windows",
        );
        wait_until(Duration::from_secs(60), "the swap", &log, || {
            count_in(&log, "plugin swapped") > swap
        });
        append_lines(&input, &lines[upto - 4_000..upto]);
    }
    wait_until(Duration::from_secs(120), "every record", &log, || {
        sqlite_committed(&db) == lines.len() as i64
    });
    interrupt_and_wait(&mut child, &log);
    assert_eq!(count_in(&log, "lane takes new plugins over"), 2);
    let (fired, _) = hopping_sums(&gifts, 6 * HOUR, 5 * MINUTE, 15 * MINUTE, 0, 1);
    assert!(fired.len() > 250, "{} windows", fired.len());
    assert_eq!(
        window_rows(&db),
        expected_rows(&fired),
        "{}",
        log_tail(&log, 30)
    );
}

#[test]
fn an_idle_lane_closes_its_windows_by_processing_time_only_when_asked() {
    let run = |idle: bool| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("out.db");
        // One gift a second up to 1 s before the end of a 1-minute window:
        // the watermark stops just short of closing it.
        let base = START + 10 * MINUTE;
        let gifts: Vec<Gift> = (0..60)
            .map(|i| Gift {
                time: base + i * 1_000,
                amount: 1,
            })
            .collect();
        let lines: Vec<String> = gifts
            .iter()
            .enumerate()
            .map(|(i, g)| g.line(i as i64))
            .collect();
        let input = dir.path().join("gifts.jsonl");
        append_lines(&input, &lines);
        let extra = format!(
            "[plugins.params.gift-windows]\nsize = \"1m\"\nslide = \"1m\"\n[time]\n{}",
            if idle {
                "idle-timeout = \"300ms\"\n"
            } else {
                ""
            }
        );
        let config = gifts_pipeline(dir.path(), &input, &extra);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[sink.sql]\n", "[sink.sql]\ninterval = \"100ms\"\n");
        std::fs::write(&config, text).unwrap();
        let (out, _, stderr) = run_with_limit(
            apiary()
                .arg("run")
                .arg(&config)
                .args(["--stop-when-idle", "2s"]),
            std::time::Duration::from_secs(60),
        );
        assert!(out.status.success(), "{stderr}");
        window_rows(&db)
    };
    // Without idle-timeout the last window stays open: it is state.
    let closed_by_events = run(false);
    let closed_when_idle = run(true);
    let last_end = sink_time(START + 11 * MINUTE);
    assert!(
        !closed_by_events.contains_key(&last_end),
        "{closed_by_events:?}"
    );
    assert_eq!(
        closed_when_idle.get(&last_end),
        Some(&60),
        "{closed_when_idle:?}"
    );
}

/// Two lanes of one topic (two files, as two partitions would be), one
/// ahead of the other. Each adds its share of a window when its own
/// watermark passes the window's end, so the newest rows lack the lagging
/// lane's share; the windows ending at or before every lane's
/// `apiary_offsets.closed_until` (in the sink's time zone, as `window_end`)
/// are whole. Once the lagging lane catches up, so are the rest.
#[test]
fn windows_up_to_every_lanes_closed_until_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let gift = |time: i64, amount: i64| Gift { time, amount };
    // Ahead: a gift a minute for 10 h. Behind: one every 2 min for 4 h 8 min.
    let ahead: Vec<Gift> = (0..600)
        .map(|i| gift(START + i * MINUTE, i % 7 + 1))
        .collect();
    let behind: Vec<Gift> = (0..125)
        .map(|i| gift(START + 30_000 + i * 2 * MINUTE, i % 5 + 1))
        .collect();
    let (ahead_file, behind_file) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    append_lines(&ahead_file, &gift_lines(&ahead));
    append_lines(&behind_file, &gift_lines(&behind));
    let config = embedded_config(
        dir.path(),
        &[
            (&ahead_file, "live_gift_total"),
            (&behind_file, "live_gift_total"),
        ],
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "time-zone = \"+08:00\"\n\
             [plugins.params.gift-windows]\nsize = \"1h\"\nslide = \"1h\"\n";
    std::fs::write(&config, text).unwrap();
    let east = 8 * 3600;
    // Whole hourly windows ending at or before `until`, as written.
    let whole = |gifts: &[&[Gift]], until: i64| -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for g in gifts.iter().flat_map(|g| g.iter()) {
            let end = g.time.div_euclid(HOUR) * HOUR + HOUR;
            if end <= until {
                *totals
                    .entry(apiary::time::format_millis(end, east))
                    .or_default() += g.amount;
            }
        }
        totals
    };
    let whole_rows = || -> BTreeMap<String, i64> {
        use sqlx::Row as _;
        sqlite_rows(
            &db,
            "SELECT CAST(window_end AS TEXT), gift_total_amount FROM gifts_6h \
             WHERE window_end <= (SELECT MIN(closed_until) FROM apiary_offsets)",
            |r| (r.get::<String, _>(0), r.get::<i64, _>(1)),
        )
        .into_iter()
        .collect()
    };

    run_until_idle(&config);
    let behind_latest = behind.last().unwrap().time;
    let until = sqlite_text(&db, "SELECT MIN(closed_until) FROM apiary_offsets");
    assert_eq!(until, [apiary::time::format_millis(behind_latest, east)]);
    assert_eq!(whole_rows(), whole(&[&ahead, &behind], behind_latest));
    // The window the lagging lane is inside has the other lane's share only.
    let open_end = behind_latest.div_euclid(HOUR) * HOUR + HOUR;
    let open = apiary::time::format_millis(open_end, east);
    let rows = sqlite_rows(
        &db,
        "SELECT CAST(window_end AS TEXT), gift_total_amount FROM gifts_6h",
        |r| {
            use sqlx::Row as _;
            (r.get::<String, _>(0), r.get::<i64, _>(1))
        },
    );
    let partial = rows.iter().find(|(end, _)| *end == open).map(|r| r.1);
    assert_eq!(partial, whole(&[&ahead], open_end).get(&open).copied());
    assert_ne!(
        partial,
        whole(&[&ahead, &behind], open_end).get(&open).copied()
    );

    // The lagging lane passes the other: every window the other closed is whole.
    let last = gift(START + 11 * HOUR, 1);
    append_lines(&behind_file, &gift_lines(std::slice::from_ref(&last)));
    run_until_idle(&config);
    let ahead_latest = ahead.last().unwrap().time;
    let until = sqlite_text(&db, "SELECT MIN(closed_until) FROM apiary_offsets");
    assert_eq!(until, [apiary::time::format_millis(ahead_latest, east)]);
    let all: Vec<&[Gift]> = vec![&ahead, &behind, std::slice::from_ref(&last)];
    assert_eq!(whole_rows(), whole(&all, ahead_latest));
    assert!(whole_rows().len() >= 9, "{:?}", whole_rows());
}

/// A sink whose bookkeeping tables an earlier version made, before event
/// time (no `watermark`, `expires` or `closed_until`): the columns are
/// added, and the lane resumes at its stored offset.
#[test]
fn bookkeeping_tables_of_an_earlier_version_get_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let gifts: Vec<Gift> = (0..100)
        .map(|i| Gift {
            time: START + i * MINUTE,
            amount: i + 1,
        })
        .collect();
    let input = dir.path().join("gifts.jsonl");
    append_lines(&input, &gift_lines(&gifts));
    let config = gifts_pipeline(dir.path(), &input, "");
    let stored = format!(
        "INSERT INTO apiary_offsets VALUES ('pipeline', '{}', 0, 40)",
        input.display()
    );
    support::sql::execute(
        &format!("sqlite://{}?mode=rwc", db.display()),
        &[
            "CREATE TABLE apiary_offsets (consumer TEXT NOT NULL, stream TEXT NOT NULL, \
             part INTEGER NOT NULL, next_offset BIGINT NOT NULL, \
             PRIMARY KEY (consumer, stream, part))",
            "CREATE TABLE apiary_state (consumer TEXT NOT NULL, stream TEXT NOT NULL, \
             part INTEGER NOT NULL, plugin VARCHAR(64) NOT NULL, skey VARCHAR(255) NOT NULL, \
             value BLOB NOT NULL, PRIMARY KEY (consumer, stream, part, plugin, skey))",
            &stored,
        ],
    );
    run_until_idle(&config);
    let read = "SELECT COUNT(*) FROM apiary_offsets \
                WHERE next_offset = 100 AND watermark IS NOT NULL";
    assert_eq!(sqlite_count(&db, read), 1);
    let total = sqlite_count(&db, "SELECT SUM(gift_total_amount) FROM gift_type_totals");
    assert_eq!(total, (41..=100).sum::<i64>());
    let latest = gifts.last().unwrap().time;
    assert_eq!(
        sqlite_text(&db, "SELECT closed_until FROM apiary_offsets"),
        [sink_time(latest)]
    );
    let expires = "SELECT COUNT(*) FROM pragma_table_info('apiary_state') WHERE name = 'expires'";
    assert_eq!(sqlite_count(&db, expires), 1);
}

/// A visit of `user` in `grade` at event time `time`.
fn graded_visit(user: i64, grade: i64, time: i64) -> String {
    format!(
        "{{\"user_id\": {user}, \"ip\": \"1.2.3.4\", \"room_id\": 100, \
         \"arrive_time\": \"{t}\", \"leave_time\": \"{t}\", \"create_time\": \"{t}\", \
         \"region\": 110000, \"grade\": {grade}, \"province\": \"北京\"}}",
        t = livestream_format::format_timestamp(time)
    )
}

#[test]
fn expiring_state_is_removed_once_the_watermark_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let input = dir.path().join("visits.jsonl");
    let config = embedded_config(dir.path(), &[(&input, "live_streaming_log")]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "[plugins.params.grade-members]\nforget-after = \"1h\"\n";
    std::fs::write(&config, text).unwrap();
    let state_keys = || {
        sqlite_text(
            &db,
            "SELECT skey FROM apiary_state WHERE plugin = 'grade-members' ORDER BY skey",
        )
    };
    let members = || sqlite_pairs(&db, "SELECT grade, members FROM grade_members");

    // Users 1-100 visit grades 1 and 2; then only grade 1 for 2 h.
    let mut lines: Vec<String> = (1..=100)
        .flat_map(|u| [graded_visit(u, 1, START + u), graded_visit(u, 2, START + u)])
        .collect();
    lines.extend((0..120).map(|m| graded_visit(1, 1, START + (m + 1) * MINUTE)));
    append_lines(&input, &lines);
    run_until_idle(&config);
    assert_eq!(members(), BTreeMap::from([(1, 100), (2, 100)]));
    // Grade 2 saw nothing for over an hour of event time: its entry is gone,
    // grade 1's stays.
    assert_eq!(state_keys(), vec!["grade/1".to_string()]);
    let expires = sqlite_count(
        &db,
        "SELECT expires FROM apiary_state WHERE plugin = 'grade-members'",
    );
    assert_eq!(expires, START + 120 * MINUTE + HOUR);

    // The same users in grade 2 again: forgotten, so counted again; grade
    // 1 remembers them.
    let later = START + 3 * HOUR;
    let again: Vec<String> = (1..=50)
        .flat_map(|u| [graded_visit(u, 1, later + u), graded_visit(u, 2, later + u)])
        .collect();
    append_lines(&input, &again);
    run_until_idle(&config);
    assert_eq!(members(), BTreeMap::from([(1, 100), (2, 150)]));
    assert_eq!(
        state_keys(),
        vec!["grade/1".to_string(), "grade/2".to_string()]
    );
}

#[test]
fn changed_parameters_reload_the_plugin_with_its_state_and_bad_ones_leave_it_running() {
    use std::time::Duration;
    use support::process::{interrupt_and_wait, log_tail, spawn_run, wait_until};

    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["seed-json-parser", "grade-members"] {
        install(&plugins_dir().join(format!("{name}.wasm")), &plugins, name);
    }
    let input = root.path().join("visits.jsonl");
    let config = root.path().join("pipeline.toml");
    let base = format!(
        "[plugins]\ndir = {plugins:?}\n[source.file]\npath = {input:?}\n\
         topic = \"live_streaming_log\"\n[sink.sql]\nurl = \"sqlite://out.db\"\n\
         interval = \"200ms\"\n"
    );
    std::fs::write(&config, &base).unwrap();
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    let visits = |users: std::ops::RangeInclusive<i64>, at: i64| -> Vec<String> {
        users.map(|u| graded_visit(u, 1, at + u)).collect()
    };
    append_lines(&input, &visits(1..=100, START));
    let mut child = spawn_run(&config, &[], &log);
    let committed = |n: i64| {
        let db = db.clone();
        move || sqlite_committed(&db) >= n
    };
    wait_until(
        Duration::from_secs(60),
        "the first visits",
        &log,
        committed(100),
    );

    // A value the plugin refuses: it is rejected, the running version goes on.
    let bad = format!("{base}[plugins.params.grade-members]\nforget-after = \"soon\"\n");
    std::fs::write(&config, bad).unwrap();
    wait_until(Duration::from_secs(60), "the refusal", &log, || {
        count_in(&log, "init failed") > 0
    });
    append_lines(&input, &visits(1..=150, START + HOUR));
    wait_until(Duration::from_secs(60), "more visits", &log, committed(250));

    // A good value: the plugin is loaded again with it, keeping its state.
    let good = format!("{base}[plugins.params.grade-members]\nforget-after = \"1d\"\n");
    std::fs::write(&config, good).unwrap();
    wait_until(Duration::from_secs(60), "the reload", &log, || {
        count_in(&log, "plugin swapped") > 0
    });
    append_lines(&input, &visits(1..=200, START + 2 * HOUR));
    wait_until(
        Duration::from_secs(60),
        "the last visits",
        &log,
        committed(450),
    );
    interrupt_and_wait(&mut child, &log);

    // Members already counted stayed counted across the reload.
    assert_eq!(
        sqlite_pairs(&db, "SELECT grade, members FROM grade_members"),
        BTreeMap::from([(1, 200)]),
        "{}",
        log_tail(&log, 20)
    );
    // And the new parameter took effect: the entry now expires.
    assert_eq!(
        sqlite_count(
            &db,
            "SELECT expires FROM apiary_state WHERE plugin = 'grade-members'"
        ),
        START + 2 * HOUR + 24 * HOUR
    );
    assert_eq!(count_in(&log, "lane takes new plugins over"), 1);
}
