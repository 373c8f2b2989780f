//! Plugins in other languages, from kits/ (built by `scripts/build-kits`):
//! the same rule in Rust, Python, JavaScript and C gives the same rows on
//! the same input, matching totals computed here; and the C Bilibili
//! parser reads packet-framed, partly compressed messages from Kafka.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use livestream_example::Topic;
use support::*;

/// A kit's component, `target/plugins-<lang>/<name>.wasm`.
fn kit(lang: &str, name: &str) -> PathBuf {
    let path = repo_root().join(format!("target/plugins-{lang}/{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run ./scripts/build-kits",
        path.display()
    );
    path
}

/// The `top_gifters` rows `apiary replay` prints with the gift parser and
/// `rule` in `dir`.
fn replay_rows(dir: &Path, rule: &Path, input: &Path) -> Vec<String> {
    let parser = plugins_dir().join("seed-json-parser.wasm");
    let (stdout, _) = replay_plugins(dir, &[&parser, rule], "live_gift_total", input);
    stdout
        .lines()
        .filter(|l| l.contains("\"output\":\"top_gifters\""))
        .map(str::to_owned)
        .collect()
}

#[test]
fn top_gifters_gives_the_same_rows_in_rust_python_javascript_and_c() {
    let root = tempfile::tempdir().unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 5_000, 111, 0.01);
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();

    let rust = plugins_dir().join("top-gifters.wasm");
    let rust_rows = replay_rows(&root.path().join("rust"), &rust, &input);
    let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for gift in gifts.valid() {
        let entry = expected
            .entry(gift["user_id"].as_i64().unwrap())
            .or_default();
        entry.0 += gift["gift_total_amount"].as_i64().unwrap();
        entry.1 += 1;
    }
    let mut got: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for line in &rust_rows {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = got
            .entry(row["row"]["user_id"].as_i64().unwrap())
            .or_default();
        entry.0 += row["row"]["gift_total_amount"].as_i64().unwrap();
        entry.1 += row["row"]["gifts"].as_i64().unwrap();
    }
    assert_eq!(got, expected);

    for lang in ["python", "js", "c"] {
        let rows = replay_rows(&root.path().join(lang), &kit(lang, "top-gifters"), &input);
        assert_eq!(rows, rust_rows, "{lang}: the same rows, in the same order");
    }
}

#[test]
fn bilibili_parser_in_c_reads_danmaku_packets_from_kafka() {
    let messages = support::bilibili::generate(3_000, 7, 40);
    let reasons = support::danmaku::run_and_check(
        &kit("c", "bilibili-parser"),
        "bilibili_danmaku",
        &messages,
    );
    support::danmaku::assert_reasons(
        &reasons,
        &[
            "shorter than the 16-byte header",
            "length fields do not fit the message",
            "checksum mismatch",
            "brotli stream ends early",
            "record key must be the room id",
            "DANMU_MSG without info[1]",
            "not a JSON object",
        ],
    );
}
