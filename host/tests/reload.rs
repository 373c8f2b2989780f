//! Hot reload while records flow: a rule swapped five times under load
//! through Kafka, a stateful rule replaced mid-stream, the parser removed
//! and returned, and broken files dropped into the plugin directory.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use livestream_example::Topic;
use support::kafka::{broker, create_topic, produce};
use support::process::{interrupt_and_wait, log_tail, spawn_run, wait_until};
use support::*;

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";

/// A plugin directory holding copies of `names` from target/plugins.
fn plugin_dir(root: &Path, names: &[&str]) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        install(&plugins_dir().join(format!("{name}.wasm")), &dir, name);
    }
    dir
}

#[test]
fn a_rule_swapped_five_times_under_load_keeps_the_totals_exact() {
    let records = 1_000_000;
    let topic = create_topic("swap", 4);
    let gifts = generate(Topic::LiveGiftTotal, records, 101, 0.0);
    produce(&topic, &gifts.lines);
    let root = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(root.path(), &["seed-json-parser", "gift-type-totals"]);
    let config = root.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {plugins:?}\n[source.kafka]\nbrokers = {:?}\ngroup = \"{topic}-g\"\n\
             topics = {{ {topic:?} = \"live_gift_total\" }}\n[sink.sql]\nurl = \"sqlite://out.db\"\n\
             interval = \"500ms\"\n",
            broker()
        ),
    )
    .unwrap();
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    let mut child = spawn_run(&config, &[], &log);

    let versions = [
        test_plugin("gift-type-totals-next"),
        plugins_dir().join("gift-type-totals.wasm"),
    ];
    for swap in 0..5 {
        // Spread the swaps over the stream.
        let due = records as i64 * (swap + 1) / 7;
        wait_until(Duration::from_secs(300), "records to flow", &log, || {
            sqlite_committed(&db) >= due
        });
        install(&versions[swap as usize % 2], &plugins, "gift-type-totals");
        wait_until(Duration::from_secs(60), "the swap", &log, || {
            count_in(&log, "plugin swapped") > swap as usize
        });
        eprintln!("swap {swap} at {} committed records", sqlite_committed(&db));
    }
    wait_until(Duration::from_secs(300), "every record", &log, || {
        sqlite_committed(&db) == records as i64
    });
    interrupt_and_wait(&mut child, &log);

    assert!(
        sqlite_committed(&db) == records as i64 && sqlite_pairs(&db, TOTALS) == gifts.gift_totals(),
        "totals differ after five swaps"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("plugin swapped").count(),
        5,
        "{}",
        log_tail(&log, 40)
    );
    assert!(
        text.contains("old_version=0.1.0 new_version=0.1.1"),
        "{text}"
    );
    assert!(
        text.contains("old_version=0.1.1 new_version=0.1.0"),
        "{text}"
    );
    let pause = text
        .lines()
        .find(|l| l.contains("longest lane pause"))
        .unwrap_or_else(|| panic!("no swap summary: {}", log_tail(&log, 20)));
    eprintln!("{pause}");
}

/// Runs `config` in the background; `step` feeds it and changes plugins.
fn file_pipeline(root: &Path, plugins: &Path, input: &Path, topic: &str) -> PathBuf {
    let config = root.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {plugins:?}\n[source.file]\npath = {input:?}\ntopic = {topic:?}\n\
             [sink.sql]\nurl = \"sqlite://out.db\"\ninterval = \"200ms\"\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_stateful_rule_replaced_mid_stream_continues_from_its_state() {
    let root = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(root.path(), &["seed-json-parser", "grade-members"]);
    let visits = generate(Topic::LiveStreamingLog, 6_000, 103, 0.0);
    let input = root.path().join("visits.jsonl");
    append_lines(&input, &visits.lines[..3_000]);
    let config = file_pipeline(root.path(), &plugins, &input, "live_streaming_log");
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(60), "the first half", &log, || {
        sqlite_committed(&db) == 3_000
    });
    install(
        &test_plugin("grade-members-next"),
        &plugins,
        "grade-members",
    );
    wait_until(Duration::from_secs(60), "the swap", &log, || {
        count_in(&log, "plugin swapped") == 1
    });
    // The lane takes the new version over with its next batch.
    append_lines(&input, &visits.lines[3_000..]);
    wait_until(Duration::from_secs(60), "the second half", &log, || {
        sqlite_committed(&db) == 6_000
    });
    interrupt_and_wait(&mut child, &log);
    assert_eq!(count_in(&log, "lane takes new plugins over"), 1);

    let expected = visits.members_per_grade();
    assert_eq!(
        sqlite_pairs(&db, "SELECT grade, members FROM grade_members"),
        expected,
        "members counted once across the swap"
    );
}

#[test]
fn broken_files_are_rejected_and_a_removed_parser_pauses_its_topic() {
    let root = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(root.path(), &["seed-json-parser", "gift-type-totals"]);
    let gifts = generate(Topic::LiveGiftTotal, 9_000, 107, 0.0);
    let input = root.path().join("gifts.jsonl");
    append_lines(&input, &gifts.lines[..3_000]);
    let config = file_pipeline(root.path(), &plugins, &input, "live_gift_total");
    let (db, log) = (root.path().join("out.db"), root.path().join("run.log"));
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(60), "the first part", &log, || {
        sqlite_committed(&db) == 3_000
    });

    // Random bytes, a component of the wrong world, and a half-written
    // copy of a new version: each rejected, the running version kept.
    std::fs::write(plugins.join("junk.wasm"), b"\0asm\x0d\0\x01\0 random bytes").unwrap();
    std::fs::copy(
        test_plugin("not-a-plugin"),
        plugins.join("not-a-plugin.wasm"),
    )
    .unwrap();
    let next = std::fs::read(test_plugin("gift-type-totals-next")).unwrap();
    std::fs::write(
        plugins.join("gift-type-totals.wasm"),
        &next[..next.len() / 2],
    )
    .unwrap();
    wait_until(Duration::from_secs(60), "three rejections", &log, || {
        count_in(&log, "rejected") >= 3
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("junk.wasm rejected"), "{text}");
    assert!(text.contains("not-a-plugin.wasm rejected"), "{text}");
    assert!(
        text.contains("`gift-type-totals` 0.1.0 keeps running"),
        "{}",
        log_tail(&log, 20)
    );
    append_lines(&input, &gifts.lines[3_000..6_000]);
    wait_until(Duration::from_secs(60), "the second part", &log, || {
        sqlite_committed(&db) == 6_000
    });
    // The rest of the file arrives: the new version loads.
    std::fs::write(plugins.join("gift-type-totals.wasm"), &next).unwrap();
    wait_until(Duration::from_secs(60), "the swap", &log, || {
        count_in(&log, "plugin swapped") == 1
    });

    // Without a parser the lane holds its records; with it back, it goes on.
    std::fs::remove_file(plugins.join("seed-json-parser.wasm")).unwrap();
    wait_until(Duration::from_secs(60), "the removal", &log, || {
        count_in(&log, "plugin removed") == 1
    });
    append_lines(&input, &gifts.lines[6_000..]);
    wait_until(Duration::from_secs(60), "the pause", &log, || {
        count_in(&log, "no plugin parses topic `live_gift_total` any more") == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sqlite_committed(&db),
        6_000,
        "nothing read without a parser"
    );
    install(
        &plugins_dir().join("seed-json-parser.wasm"),
        &plugins,
        "seed-json-parser",
    );
    wait_until(Duration::from_secs(60), "the rest", &log, || {
        sqlite_committed(&db) == 9_000
    });
    interrupt_and_wait(&mut child, &log);
    assert_eq!(sqlite_pairs(&db, TOTALS), gifts.gift_totals());
    // Three more reloads came after the junk: it was reported once.
    assert_eq!(
        count_in(&log, "junk.wasm rejected"),
        1,
        "{}",
        log_tail(&log, 40)
    );
    assert_eq!(count_in(&log, "not-a-plugin.wasm rejected"), 1);
}
