//! Plugins in other languages: the Python twin of `top-gifters` (built by
//! `scripts/build-plugins` from kits/python) gives the same rows as the
//! Rust one on the same input, and both match totals computed here.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use livestream_example::Topic;
use support::*;

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
fn top_gifters_in_python_gives_the_rows_of_top_gifters_in_rust() {
    let root = tempfile::tempdir().unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 5_000, 111, 0.01);
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();
    let python = repo_root().join("target/plugins-python/top-gifters.wasm");
    assert!(
        python.exists(),
        "{} missing: run ./scripts/build-plugins",
        python.display()
    );

    let rust = plugins_dir().join("top-gifters.wasm");
    let rust_rows = replay_rows(&root.path().join("rust"), &rust, &input);
    let python_rows = replay_rows(&root.path().join("python"), &python, &input);
    assert!(!rust_rows.is_empty());
    assert_eq!(python_rows, rust_rows, "the same rows, in the same order");

    let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for gift in gifts.valid() {
        let entry = expected
            .entry(gift["user_id"].as_i64().unwrap())
            .or_default();
        entry.0 += gift["gift_total_amount"].as_i64().unwrap();
        entry.1 += 1;
    }
    let mut got: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for line in &python_rows {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = got
            .entry(row["row"]["user_id"].as_i64().unwrap())
            .or_default();
        entry.0 += row["row"]["gift_total_amount"].as_i64().unwrap();
        entry.1 += row["row"]["gifts"].as_i64().unwrap();
    }
    assert_eq!(got, expected);
}
