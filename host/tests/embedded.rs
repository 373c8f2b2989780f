//! `apiary run` on the embedded default: files in, SQLite out.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use livestream_example::Topic;
use support::*;

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";

#[test]
fn run_merges_totals_and_adds_up_across_runs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let first = generate(Topic::LiveGiftTotal, 20_000, 1, 0.005);
    let second = generate(Topic::LiveGiftTotal, 15_000, 2, 0.005);
    let appended = generate(Topic::LiveGiftTotal, 5_000, 3, 0.005);
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&a, first.text()).unwrap();
    std::fs::write(&b, second.text()).unwrap();

    let config_a = embedded_config(dir.path(), &[(&a, "live_gift_total")]);
    run_until_idle(&config_a);
    assert_eq!(sqlite_pairs(&db, TOTALS), first.gift_totals());
    let dead = "SELECT COUNT(*) FROM apiary_dead_letter";
    assert_eq!(sqlite_count(&db, dead), first.malformed.len() as i64);

    // A second input merges into the same table: `add` adds up.
    let config_b = embedded_config(dir.path(), &[(&b, "live_gift_total")]);
    run_until_idle(&config_b);
    let expected = add_totals(first.gift_totals(), second.gift_totals());
    assert_eq!(sqlite_pairs(&db, TOTALS), expected);

    // Lines appended to the first file: only they are read on the next run.
    let mut file = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    file.write_all(appended.text().as_bytes()).unwrap();
    let config_a = embedded_config(dir.path(), &[(&a, "live_gift_total")]);
    run_until_idle(&config_a);
    let expected = add_totals(expected, appended.gift_totals());
    assert_eq!(sqlite_pairs(&db, TOTALS), expected);
    let malformed = first.malformed.len() + second.malformed.len() + appended.malformed.len();
    assert_eq!(sqlite_count(&db, dead), malformed as i64);
    assert_eq!(
        sqlite_count(
            &db,
            "SELECT next_offset FROM apiary_offsets WHERE stream LIKE '%a.jsonl'"
        ),
        25_000
    );
}

#[test]
fn run_writes_both_topics_of_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let gifts = generate(Topic::LiveGiftTotal, 8_000, 4, 0.01);
    let visits = generate(Topic::LiveStreamingLog, 8_000, 5, 0.01);
    let (g, v) = (dir.path().join("g.jsonl"), dir.path().join("v.jsonl"));
    std::fs::write(&g, gifts.text()).unwrap();
    std::fs::write(&v, visits.text()).unwrap();
    let config = embedded_config(
        dir.path(),
        &[(&g, "live_gift_total"), (&v, "live_streaming_log")],
    );
    run_until_idle(&config);

    assert_eq!(sqlite_pairs(&db, TOTALS), gifts.gift_totals());
    // One row per distinct primary key (user_id, ip, room_id, arrive_time).
    let keys = visits.distinct_visits();
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM live_streaming_log"),
        keys.len() as i64
    );
    let mut grades: BTreeMap<i64, i64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in visits.valid() {
        if seen.insert((r["user_id"].as_i64().unwrap(), r["grade"].as_i64().unwrap())) {
            *grades.entry(r["grade"].as_i64().unwrap()).or_default() += 1;
        }
    }
    let members = "SELECT grade, COUNT(DISTINCT user_id) FROM live_streaming_log GROUP BY grade";
    assert_eq!(sqlite_pairs(&db, members), grades);
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM apiary_dead_letter"),
        (gifts.malformed.len() + visits.malformed.len()) as i64
    );
}

#[test]
fn stateful_rule_counts_each_member_once_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let visits = generate(Topic::LiveStreamingLog, 12_000, 8, 0.0);
    let path = dir.path().join("v.jsonl");
    let (first, second) = visits.lines.split_at(5_000);
    std::fs::write(&path, first.join("\n") + "\n").unwrap();
    let config = embedded_config(dir.path(), &[(&path, "live_streaming_log")]);
    run_until_idle(&config);
    // The second run starts from the stored state: members seen in the
    // first run are not counted again.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all((second.join("\n") + "\n").as_bytes())
        .unwrap();
    run_until_idle(&config);

    let expected = visits.members_per_grade();
    assert_eq!(
        sqlite_pairs(&db, "SELECT grade, members FROM grade_members"),
        expected
    );
}

/// `daily-gift-totals` is built against the 0.1.0 contract: it runs beside
/// the 0.3.0 parser and a 0.3.0 windowed rule.
#[test]
fn time_partitioned_output_creates_a_table_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in ["seed-json-parser.wasm", "gift-windows.wasm"] {
        std::fs::copy(plugins_dir().join(name), plugins.join(name)).unwrap();
    }
    std::fs::copy(
        test_plugin("daily-gift-totals"),
        plugins.join("daily-gift-totals.wasm"),
    )
    .unwrap();
    for (name, contract) in [
        ("daily-gift-totals.wasm", "0.1.0"),
        ("gift-windows.wasm", "0.3.0"),
        ("seed-json-parser.wasm", "0.3.0"),
    ] {
        let (out, stdout, stderr) = output(apiary().arg("inspect").arg(plugins.join(name)));
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains(&format!("contract: apiary:plugin@{contract}")),
            "{name}: {stdout}"
        );
    }
    // ~28 hours of traffic from 2021-08-16 01:00 UTC: three UTC days.
    let gifts = generate(Topic::LiveGiftTotal, 100_000, 12, 0.0);
    let input = dir.path().join("g.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();
    let config = embedded_config(dir.path(), &[(&input, "live_gift_total")]);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(&format!("{:?}", plugins_dir()), &format!("{plugins:?}"), 1);
    std::fs::write(&config, text).unwrap();
    run_until_idle(&config);

    let mut expected: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    for gift in gifts.valid() {
        let shanghai =
            livestream_format::parse_timestamp(gift["create_time"].as_str().unwrap()).unwrap();
        // The tables follow UTC days (the sink's default time zone).
        let utc_text = livestream_format::format_timestamp(shanghai - 8 * 3_600_000);
        let day: String = utc_text[..10]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        *expected
            .entry(format!("daily_gift_totals_{day}"))
            .or_default()
            .entry(gift["gift_type"].as_i64().unwrap())
            .or_default() += gift["gift_total_amount"].as_i64().unwrap();
    }
    assert!(expected.len() >= 2, "the input spans several days");
    let db = dir.path().join("out.db");
    for (table, totals) in &expected {
        let got = sqlite_pairs(
            &db,
            &format!("SELECT gift_type, gift_total_amount FROM {table}"),
        );
        assert_eq!(&got, totals, "{table}");
    }
    let tables = sqlite_count(
        &db,
        "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'daily_gift_totals_%'",
    );
    assert_eq!(tables, expected.len() as i64);
    assert!(sqlite_count(&db, "SELECT COUNT(*) FROM gifts_6h") > 100);
}

#[test]
fn metrics_are_served_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gifts.jsonl");
    let gifts = generate(Topic::LiveGiftTotal, 5_000, 17, 0.01);
    std::fs::write(&input, gifts.text()).unwrap();
    let config = embedded_config(dir.path(), &[(&input, "live_gift_total")]);
    let address = free_address();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("[metrics]\nlisten = {address:?}\n{text}")).unwrap();
    let log = dir.path().join("run.log");
    let mut child = support::process::spawn_run(&config, &[], &log);
    let db = dir.path().join("out.db");
    support::process::wait_until(
        std::time::Duration::from_secs(60),
        "every record",
        &log,
        || sqlite_committed(&db) == 5_000,
    );
    let samples = scrape(&address);
    support::process::interrupt_and_wait(&mut child, &log);

    let lane = format!(
        "{{lane=\"{}[0]\"}}",
        input.canonicalize().unwrap().display()
    );
    assert_eq!(samples[&format!("apiary_records_total{lane}")], 5_000.0);
    assert_eq!(samples[&format!("apiary_committed_offset{lane}")], 5_000.0);
    assert!(samples[&format!("apiary_checkpoints_total{lane}")] >= 1.0);
    let dead = format!(
        "apiary_dead_letters_total{{lane=\"{}[0]\",plugin=\"seed-json-parser\"}}",
        input.canonicalize().unwrap().display()
    );
    assert_eq!(samples[&dead], gifts.malformed.len() as f64, "{samples:?}");
    assert_eq!(
        samples["apiary_plugin_reloads_total{kind=\"swapped\"}"],
        0.0
    );
}
