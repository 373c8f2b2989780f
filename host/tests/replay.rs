//! `apiary replay` over generated input: printed rows against totals
//! computed from the same input.

mod support;

use std::collections::BTreeMap;

use livestream_example::Topic;
use support::*;

#[test]
fn replay_sums_gift_types_and_reports_malformed_lines() {
    let input = generate(Topic::LiveGiftTotal, 12_000, 7, 0.01);
    assert!(
        input.malformed.len() > 50,
        "the input should hold malformed lines"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gifts.jsonl");
    std::fs::write(&path, input.text()).unwrap();

    let (out, stdout, stderr) = output(
        apiary()
            .args(["replay", "--plugins"])
            .arg(plugins_dir())
            .args(["--topic", "live_gift_total", "--input"])
            .arg(&path)
            .arg("--lookup")
            .arg(format!("dim_hbase={}", dim_rooms_csv().display())),
    );
    assert!(out.status.success(), "replay failed: {stderr}");

    let (mut per_type, mut per_module, mut per_user) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut in_windows = 0;
    for line in stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["output"] == "gifts_6h" {
            in_windows += row["row"]["gift_total_amount"].as_i64().unwrap();
            continue;
        }
        let (totals, key, amount) = match row["output"].as_str() {
            Some("gift_type_totals") => (&mut per_type, "gift_type", "gift_total_amount"),
            Some("module_gift_totals") => {
                (&mut per_module, "module_id", "module_gift_total_amount")
            }
            Some("top_gifters") => (&mut per_user, "user_id", "gift_total_amount"),
            _ => panic!("unexpected row {line}"),
        };
        *totals.entry(row["row"][key].as_i64().unwrap()).or_default() +=
            row["row"][amount].as_i64().unwrap();
    }
    assert_eq!(per_type, input.gift_totals());
    // The input is bounded: at its end every window closes, and each gift
    // is in 72 of them (6 h windows every 5 min).
    let amount: i64 = input.gift_totals().values().sum();
    assert_eq!(in_windows, 72 * amount);
    let mut users: BTreeMap<i64, i64> = BTreeMap::new();
    for gift in input.valid() {
        *users.entry(gift["user_id"].as_i64().unwrap()).or_default() +=
            gift["gift_total_amount"].as_i64().unwrap();
    }
    assert_eq!(per_user, users);
    assert_eq!(per_module, input.module_totals(&dim_rooms()));
    assert!(
        per_module.contains_key(&0),
        "an unmapped room counts under 0"
    );

    let reported: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.split(':').next()?.parse().ok())
        .collect();
    let expected: Vec<usize> = input.malformed.iter().map(|i| i + 1).collect();
    assert_eq!(reported, expected, "stderr: {stderr}");
    assert!(
        stderr.lines().all(|l| l.contains("seed-json-parser: ")),
        "{stderr}"
    );
}

#[test]
fn replay_prints_one_visit_row_per_valid_visit_from_stdin() {
    let input = generate(Topic::LiveStreamingLog, 3_000, 11, 0.02);
    let mut child = apiary()
        .args(["replay", "--plugins"])
        .arg(plugins_dir())
        .args(["--topic", "live_streaming_log", "--input", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from a thread: apiary writes rows while it reads.
    let mut stdin = child.stdin.take().unwrap();
    let text = input.text();
    let feeder = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(text.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|row| row["output"] == "live_streaming_log")
        .collect();
    let valid: Vec<serde_json::Value> = input.valid().collect();
    assert_eq!(rows.len(), valid.len());
    // Rows come in input order, columns in declared order.
    for (row, visit) in rows.iter().zip(&valid) {
        assert_eq!(row["output"], "live_streaming_log");
        let cells = row["row"].as_object().unwrap();
        let columns: Vec<&str> = cells.keys().map(String::as_str).collect();
        assert_eq!(
            columns,
            [
                "user_id",
                "ip",
                "room_id",
                "arrive_time",
                "leave_time",
                "create_time",
                "region_code",
                "grade",
                "province"
            ]
        );
        assert_eq!(cells["user_id"], visit["user_id"]);
        assert_eq!(cells["province"], visit["province"]);
        assert_eq!(cells["region_code"], visit["region"]);
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("line ")).count(),
        input.malformed.len()
    );
}

#[test]
fn replay_is_deterministic() {
    let input = generate(Topic::LiveStreamingLog, 2_000, 3, 0.01);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.jsonl");
    std::fs::write(&path, input.text()).unwrap();
    let run = || {
        output(
            apiary()
                .args(["replay", "--batch-size", "100", "--plugins"])
                .arg(plugins_dir())
                .args(["--topic", "live_streaming_log", "--input"])
                .arg(&path),
        )
    };
    let (_, first, first_err) = run();
    let (_, second, second_err) = run();
    assert!(!first.is_empty());
    assert_eq!(first, second);
    assert_eq!(first_err, second_err);
}
