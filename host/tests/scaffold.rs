//! `apiary plugin new` then `apiary plugin build` then `apiary replay`, for
//! each language and kind: a new plugin runs on sample data, and gives
//! the same rows in every language.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use livestream_example::Topic;
use support::*;

/// `PATH` with the Python and JavaScript guest toolchains
/// `scripts/build-kits` installs (C needs only clang and wasi-libc).
fn toolchain_path() -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let mut dirs = Vec::new();
    for (dir, tool) in [
        ("python-guest/bin", "componentize-py"),
        ("js-guest/node_modules/.bin", "componentize-qjs"),
    ] {
        let dir = target.join(dir);
        assert!(
            dir.join(tool).exists(),
            "{} has no {tool}: run ./scripts/build-kits",
            dir.display()
        );
        dirs.push(dir.display().to_string());
    }
    dirs.push(std::env::var("PATH").unwrap());
    dirs.join(":")
}

/// `apiary plugin test DIR [--bless]`: whether it passed, and its output.
fn plugin_test(dir: &Path, bless: bool) -> (bool, String) {
    let mut command = apiary();
    command
        .env("PATH", toolchain_path())
        .args(["plugin", "test"])
        .arg(dir);
    if bless {
        command.arg("--bless");
    }
    let (out, stdout, stderr) = run_with_limit(&mut command, std::time::Duration::from_secs(600));
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Every language `apiary plugin new` speaks.
const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

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
    let (out, stdout, stderr) = run_with_limit(
        apiary()
            .env("PATH", toolchain_path())
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
fn new_rules_in_every_language_build_and_count_gifts_per_room() {
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
    for lang in LANGUAGES {
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
    for (lang, rows) in LANGUAGES.iter().zip(&outputs) {
        assert_eq!(rows, &outputs[0], "{lang} gives the rows Rust gives");
    }
}

#[test]
fn new_parsers_in_every_language_refuse_what_they_cannot_read() {
    let root = tempfile::tempdir().unwrap();
    for lang in LANGUAGES {
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

        // The fixture test writes what replay printed on its first run.
        // (Python is left out: its component, rebuilt by each run, takes
        // a long compile in a debug build.)
        if lang == "python" {
            continue;
        }
        let project = root.path().join(&name);
        let (passed, said) = plugin_test(&project, false);
        assert!(passed && said.contains("wrote"), "{lang}: {said}");
        let expected = std::fs::read_to_string(project.join("sample.expected")).unwrap();
        assert_eq!(expected.lines().collect::<Vec<_>>(), refused, "{lang}");
        if lang != "c" {
            continue;
        }
        // Later runs compare; a changed sample fails on the line that
        // moved, and --bless takes the new output.
        let (passed, said) = plugin_test(&project, false);
        assert!(passed && said.contains("ok"), "{lang}: {said}");
        append_lines(&sample, &["still not a message".to_owned()]);
        let (passed, said) = plugin_test(&project, false);
        assert!(!passed, "{lang}: {said}");
        assert!(said.contains("sample.expected line 2"), "{lang}: {said}");
        let (passed, _) = plugin_test(&project, true);
        assert!(passed);
        assert!(plugin_test(&project, false).0, "{lang}: blessed");
    }
}

#[test]
fn a_new_rule_tests_its_sample_through_the_parser_named_in_its_fixture() {
    let root = tempfile::tempdir().unwrap();
    new_and_build(root.path(), "room-totals", "c", "rule");
    let project = root.path().join("room-totals");
    let (passed, said) = plugin_test(&project, false);
    assert!(!passed, "no parser for its input: {said}");
    assert!(said.contains("[test] plugins"), "{said}");

    let parser = plugins_dir().join("seed-json-parser.wasm");
    append_lines(
        &project.join("apiary-plugin.toml"),
        &[format!("plugins = [{parser:?}]")],
    );
    let (passed, said) = plugin_test(&project, false);
    assert!(passed && said.contains("wrote"), "{said}");
    // The sample's three gifts, in two rooms.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(project.join("sample.expected"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rooms: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let row = &r["row"];
            (
                row["room_id"].as_i64().unwrap(),
                row["gifts"].as_i64().unwrap(),
                row["gift_total_amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rooms, [(20210813, 2, 17), (20210901, 1, 40)]);
    assert!(plugin_test(&project, false).0);
}
