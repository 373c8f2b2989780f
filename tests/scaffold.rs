//! `apiary plugin new` then `apiary plugin build` then `apiary replay`, for
//! each language and kind: a new plugin runs on sample data.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use livestream_example::Topic;
use support::*;

/// The Python guest toolchain `scripts/build-plugins` installs.
fn componentize_py_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("python-guest/bin");
    assert!(
        bin.join("componentize-py").exists(),
        "{} has no componentize-py: run ./scripts/build-plugins",
        bin.display()
    );
    bin
}

/// `apiary plugin new NAME --lang LANG --kind KIND` then `plugin build`;
/// the built component.
fn new_and_build(root: &Path, name: &str, lang: &str, kind: &str) -> PathBuf {
    let (out, _, stderr) = output(
        apiary()
            .args([
                "plugin", "new", name, "--lang", lang, "--kind", kind, "--dir",
            ])
            .arg(root),
    );
    assert!(out.status.success(), "{stderr}");
    let path = format!(
        "{}:{}",
        componentize_py_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let (out, stdout, stderr) = run_with_limit(
        apiary()
            .env("PATH", path)
            .args(["plugin", "build"])
            .arg(root.join(name)),
        std::time::Duration::from_secs(600),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let built = root.join(name).join(format!("{name}.wasm"));
    assert!(built.exists(), "{stdout}");
    built
}

#[test]
fn new_rules_in_rust_and_python_build_and_count_gifts_per_room() {
    let root = tempfile::tempdir().unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 3_000, 121, 0.0);
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();
    let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for gift in gifts.valid() {
        let room = expected
            .entry(gift["room_id"].as_i64().unwrap())
            .or_default();
        room.0 += 1;
        room.1 += gift["gift_total_amount"].as_i64().unwrap();
    }
    let parser = plugins_dir().join("seed-json-parser.wasm");
    let mut outputs = Vec::new();
    for lang in ["rust", "python"] {
        let name = format!("room-gifts-{lang}");
        let rule = new_and_build(root.path(), &name, lang, "rule");
        let dir = root.path().join(format!("{name}-plugins"));
        let (stdout, _) = replay_plugins(&dir, &[&parser, &rule], "live_gift_total", &input);
        let mut rooms: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let mut rows = Vec::new();
        for line in stdout.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["output"], name.replace('-', "_"), "{line}");
            let room = rooms
                .entry(row["row"]["room_id"].as_i64().unwrap())
                .or_default();
            room.0 += row["row"]["gifts"].as_i64().unwrap();
            room.1 += row["row"]["gift_total_amount"].as_i64().unwrap();
            rows.push(row["row"].clone());
        }
        assert_eq!(rooms, expected, "{lang}");
        outputs.push(rows);
    }
    assert_eq!(outputs[0], outputs[1], "both languages give the same rows");
}

#[test]
fn new_parsers_in_rust_and_python_refuse_what_they_cannot_read() {
    let root = tempfile::tempdir().unwrap();
    for lang in ["rust", "python"] {
        let name = format!("chat-{lang}");
        let parser = new_and_build(root.path(), &name, lang, "parser");
        let sample = root.path().join(&name).join("sample.jsonl");
        let topic = name.replace('-', "_");
        let dir = root.path().join(format!("{name}-plugins"));
        let (stdout, stderr) = replay_plugins(&dir, &[&parser], &topic, &sample);
        assert!(stdout.is_empty(), "no rule, no rows: {stdout}");
        let refused: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
        assert_eq!(refused.len(), 1, "{lang}: {stderr}");
        assert!(
            refused[0].starts_with(&format!("line 3: {name}: ")),
            "{lang}: {stderr}"
        );
    }
}
