//! Hostile plugins: an infinite loop, a memory bomb and panics on chosen
//! records are stopped by the limits and isolated to those records and to
//! the rule that failed (the other rules still get their events); a
//! plugin that fails on every record is quarantined and its lane pauses
//! without skipping anything; with Kafka, only its partition pauses.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use livestream_example::Topic;
use support::kafka::{broker, create_topic, produce};
use support::process::{interrupt_and_wait, spawn_run, wait_until};
use support::*;

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";
const COMMITTED: &str = "SELECT COALESCE(SUM(next_offset), 0) FROM apiary_offsets";

/// A plugin directory with the gift parser, gift-type-totals and, if asked,
/// the hostile rule.
fn plugin_dir(root: &Path, hostile: bool) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["seed-json-parser", "gift-type-totals"] {
        let file = format!("{name}.wasm");
        std::fs::copy(plugins_dir().join(&file), dir.join(&file)).unwrap();
    }
    let hostile_file = dir.join("hostile-rule.wasm");
    if hostile {
        std::fs::copy(test_plugin("hostile-rule"), &hostile_file).unwrap();
    } else {
        let _ = std::fs::remove_file(&hostile_file);
    }
    dir
}

fn config(root: &Path, plugins: &Path, input: &Path, limits: &str) -> PathBuf {
    let path = root.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "[plugins]\ndir = {plugins:?}\n{limits}\n[source.file]\npath = {input:?}\n\
             topic = \"live_gift_total\"\n[sink.sql]\nurl = \"sqlite://out.db\"\n\
             [batch]\nmax-records = 64\n"
        ),
    )
    .unwrap();
    path
}

/// The offsets committed for `topic`'s partitions.
fn committed_of(db: &Path, topic: &str) -> i64 {
    if sqlite_committed(db) == 0 {
        return 0; // no checkpoint, perhaps no table yet
    }
    sqlite_count(
        db,
        &format!(
            "SELECT COALESCE(SUM(next_offset), 0) FROM apiary_offsets WHERE stream = '{topic}'"
        ),
    )
}

#[test]
fn a_loop_a_memory_bomb_and_a_panic_are_isolated_to_their_records() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = generate(Topic::LiveGiftTotal, 3_000, 41, 0.0).lines;
    let poison = [(100, 66), (1_500, 77), (2_900, 13)];
    for (at, user) in poison {
        lines[at] = as_user(&lines[at], user);
    }
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let plugins = plugin_dir(root.path(), true);
    let config = config(
        root.path(),
        &plugins,
        &input,
        "memory-limit = 33554432\nbatch-timeout = \"300ms\"",
    );
    run_until_idle(&config);

    let db = root.path().join("out.db");
    // The other rule got every record's events, the poison ones included.
    assert_eq!(sqlite_pairs(&db, TOTALS), gift_totals_of(lines.iter()));
    assert_eq!(sqlite_count(&db, COMMITTED), 3_000);
    // The hostile rule itself counted every gift but the poison ones.
    let mut counted: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        if !poison.iter().any(|(at, _)| *at == i) {
            let gift: serde_json::Value = serde_json::from_str(line).unwrap();
            *counted
                .entry(gift["user_id"].as_i64().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(
        sqlite_pairs(&db, "SELECT user_id, gifts FROM hostile_gifts"),
        counted
    );
    let dead = sqlite_pairs(
        &db,
        "SELECT record_offset, LENGTH(reason) FROM apiary_dead_letter WHERE plugin = 'hostile-rule'",
    );
    let everyone = sqlite_count(&db, "SELECT COUNT(*) FROM apiary_dead_letter");
    assert_eq!(everyone, 3, "dead letters of the hostile rule only");
    let offsets: Vec<i64> = dead.keys().copied().collect();
    assert_eq!(offsets, [100, 1_500, 2_900], "only the poison records");
    let reasons = sqlite_text(
        &db,
        "SELECT reason FROM apiary_dead_letter ORDER BY record_offset",
    );
    assert!(
        reasons[0].contains("interrupt"),
        "time limit: {}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("memory"),
        "memory limit: {}",
        reasons[1]
    );
    assert!(reasons[2].contains("unreachable"), "panic: {}", reasons[2]);
    // The panic's own message comes first, before the Wasm backtrace.
    assert!(
        reasons[2].starts_with("rule `hostile-rule` trapped: panicked at ")
            && reasons[2].contains(": user 13 is poison; "),
        "panic message first: {}",
        reasons[2]
    );
    // The state the poison records wrote before failing was undone.
    for (_, user) in poison {
        let kept = sqlite_count(
            &db,
            &format!("SELECT COUNT(*) FROM apiary_state WHERE skey = 'seen:{user}'"),
        );
        assert_eq!(kept, 0, "state of user {user} rolled back");
    }
    let seen = sqlite_count(
        &db,
        "SELECT COUNT(*) FROM apiary_state WHERE plugin = 'hostile-rule'",
    );
    assert!(seen > 100, "the other users' state is kept ({seen})");
}

#[test]
fn a_plugin_failing_on_every_record_is_quarantined_and_nothing_is_skipped() {
    let root = tempfile::tempdir().unwrap();
    let generated = generate(Topic::LiveGiftTotal, 400, 43, 0.0).lines;
    let mut lines = generated.clone();
    for line in &mut lines[200..260] {
        *line = as_user(line, 5_000);
    }
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let db = root.path().join("out.db");

    let plugins = plugin_dir(root.path(), true);
    let config = config(root.path(), &plugins, &input, "quarantine-after = 5");
    // A run asked to finish says it did not: the lane holds records back.
    for mode in [&["--stop-when-idle", "300ms"][..], &["--until-end"]] {
        let (out, _, stderr) = run_with_limit(
            apiary().arg("run").arg(&config).args(mode),
            Duration::from_secs(120),
        );
        assert!(!out.status.success(), "{mode:?}: {stderr}");
        let named = format!("lane {}[0] stopped before the end", input.display());
        assert!(stderr.contains(&named), "{stderr}");
        assert!(stderr.contains("quarantined"), "{stderr}");
    }
    let (_, _, stderr) = run_with_limit(
        apiary()
            .env("APIARY_LOG", "warn")
            .arg("run")
            .arg(&config)
            .arg("--until-end"),
        Duration::from_secs(120),
    );
    assert!(
        stderr.contains("plugin `hostile-rule` quarantined after failing on 5 records in a row"),
        "{stderr}"
    );
    assert!(stderr.contains("the lane pauses at offset"), "{stderr}");
    let paused_at = sqlite_count(&db, COMMITTED);
    assert!(
        (128..=200).contains(&paused_at),
        "the lane stopped before the held batch: {paused_at}"
    );

    // Without the broken plugin the lane resumes where it paused.
    plugin_dir(root.path(), false);
    let (out, _, stderr) = run_with_limit(
        apiary().arg("run").arg(&config).arg("--until-end"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(sqlite_count(&db, COMMITTED), 400);
    assert_eq!(sqlite_pairs(&db, TOTALS), gift_totals_of(lines.iter()));
}

#[test]
fn a_quarantined_kafka_partition_pauses_alone_while_the_others_go_on() {
    let root = tempfile::tempdir().unwrap();
    let (poisoned, clean) = (create_topic("poisoned", 1), create_topic("clean", 1));
    let mut first = generate(Topic::LiveGiftTotal, 3_000, 47, 0.0).lines;
    for line in &mut first[500..560] {
        *line = as_user(line, 5_000);
    }
    let second = generate(Topic::LiveGiftTotal, 20_000, 53, 0.0).lines;
    produce(&poisoned, &first);
    let plugins = plugin_dir(root.path(), true);
    let config = root.path().join("pipeline.toml");
    let address = free_address();
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = {address:?}\n\
             [plugins]\ndir = {plugins:?}\nquarantine-after = 5\n[source.kafka]\n\
             brokers = {:?}\ngroup = \"{poisoned}-g\"\n\
             topics = {{ {poisoned:?} = \"live_gift_total\", {clean:?} = \"live_gift_total\" }}\n\
             [sink.sql]\nurl = \"sqlite://out.db\"\ninterval = \"200ms\"\n\
             [batch]\nmax-records = 64\n",
            broker()
        ),
    )
    .unwrap();
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    let committed = |topic: &str| committed_of(&db, topic);
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(120), "the quarantine", &log, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("plugin `hostile-rule` quarantined")
    });

    // The poisoned lane's queue is full (2,500 records wait behind the
    // held batch); the other topic is read all the same.
    produce(&clean, &second);
    wait_until(Duration::from_secs(120), "the clean topic", &log, || {
        committed(&clean) == 20_000
    });
    let paused_at = committed(&poisoned);
    assert!(
        (1..=500).contains(&paused_at),
        "the poisoned lane stops before the held batch: {paused_at}"
    );
    // The metrics say which partition waits, and how much behind it.
    let gauges = |topic: &str| {
        let samples = scrape(&address);
        let lane = format!("{{lane=\"{topic}[0]\"}}");
        let get = |name: &str| samples.get(&format!("{name}{lane}")).copied();
        (get("apiary_consumer_lag"), get("apiary_partition_paused"))
    };
    let expected = (Some((3_000 - paused_at) as f64), Some(1.0));
    wait_until(Duration::from_secs(30), "lag metrics", &log, || {
        gauges(&poisoned) == expected && gauges(&clean) == (Some(0.0), Some(0.0))
    });
    // And which plugin it waits for.
    let held = |topic: &str| {
        let samples = scrape(&address);
        let quarantined =
            format!("apiary_plugin_quarantined{{lane=\"{topic}[0]\",plugin=\"hostile-rule\"}}");
        (
            samples
                .get(&format!("apiary_lane_held{{lane=\"{topic}[0]\"}}"))
                .copied(),
            samples.get(&quarantined).copied(),
        )
    };
    assert_eq!(held(&poisoned), (Some(1.0), Some(1.0)));
    assert_eq!(held(&clean), (Some(0.0), None));

    // Without the broken plugin the paused partition resumes where it
    // stopped: nothing skipped, nothing twice.
    std::fs::remove_file(plugins.join("hostile-rule.wasm")).unwrap();
    wait_until(Duration::from_secs(120), "the poisoned topic", &log, || {
        committed(&poisoned) == 3_000
    });
    wait_until(Duration::from_secs(30), "no lag", &log, || {
        gauges(&poisoned) == (Some(0.0), Some(0.0))
    });
    assert_eq!(held(&poisoned), (Some(0.0), None));
    interrupt_and_wait(&mut child, &log);
    assert_eq!(
        sqlite_pairs(&db, TOTALS),
        gift_totals_of(first.iter().chain(&second))
    );
}
