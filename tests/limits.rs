//! Hostile plugins: an infinite loop, a memory bomb and panics on chosen
//! records are stopped by the limits and isolated to those records; a
//! plugin that fails on every record is quarantined and its lane pauses
//! without skipping anything.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use livestream_example::Topic;
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

/// `line` with its `user_id` replaced.
fn as_user(line: &str, user: i64) -> String {
    let mut gift: serde_json::Value = serde_json::from_str(line).unwrap();
    gift["user_id"] = user.into();
    gift.to_string()
}

fn totals<'a>(lines: impl Iterator<Item = &'a String>) -> BTreeMap<i64, i64> {
    let mut totals = BTreeMap::new();
    for line in lines {
        let gift: serde_json::Value = serde_json::from_str(line).unwrap();
        *totals
            .entry(gift["gift_type"].as_i64().unwrap())
            .or_default() += gift["gift_total_amount"].as_i64().unwrap();
    }
    totals
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
    let clean = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !poison.iter().any(|(at, _)| at == i))
        .map(|(_, l)| l);
    assert_eq!(sqlite_pairs(&db, TOTALS), totals(clean));
    assert_eq!(sqlite_count(&db, COMMITTED), 3_000);
    let dead = sqlite_pairs(
        &db,
        "SELECT record_offset, LENGTH(reason) FROM apiary_dead_letter WHERE plugin = 'hostile-rule'",
    );
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
    let stderr = run_until_idle(&config);
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
    run_until_idle(&config);
    assert_eq!(sqlite_count(&db, COMMITTED), 400);
    assert_eq!(sqlite_pairs(&db, TOTALS), totals(lines.iter()));
}
