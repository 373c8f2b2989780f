//! The SQL sink on MariaDB, and exactly-once across crashes: kill -9 at
//! random points, a database restart mid-run. Processes of one group
//! killed mid-run are `scale_out.rs`'s, on a complete group coordinator.
//! Needs `scripts/services start` (Kafka-compatible broker, MariaDB).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use livestream_example::Topic;
use support::kafka::{create_topic, produce};
use support::process::{interrupt_and_wait, spawn_run, wait_until};
use support::sql::{Server, count, pairs};
use support::sql::{
    a_table_of_another_shape_is_named, file_pipeline_merges_exactly,
    kill_9_loses_and_repeats_nothing, rows_beyond_one_packet_are_written, self_assigned_config,
    values_no_sink_stores_are_dead_letters,
};
use support::*;

/// The restart test stops the shared server: tests here run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";
const COMMITTED: &str = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM apiary_offsets";

#[test]
fn file_pipeline_merges_into_mysql() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    file_pipeline_merges_exactly(Server::Mysql, dir.path());
}

#[test]
fn values_no_sink_stores_are_dead_letters_in_mysql() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    values_no_sink_stores_are_dead_letters(Server::Mysql, dir.path());
}

#[test]
fn rows_beyond_one_packet_are_written_in_mysql() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    rows_beyond_one_packet_are_written(Server::Mysql, dir.path());
}

#[test]
fn table_of_another_shape_and_bad_credentials_stop_with_clear_errors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (config, text, url) =
        a_table_of_another_shape_is_named(Server::Mysql, dir.path(), "VARCHAR(20)");

    let wrong = url.replacen("root@", "root:wrong-password@", 1);
    std::fs::write(&config, text.replace("sqlite://out.db", &wrong)).unwrap();
    let started = Instant::now();
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(stderr.contains("Access denied"), "{stderr}");
    assert!(
        stderr.contains("root:***@"),
        "the URL is named without its password: {stderr}"
    );
    assert!(!stderr.contains("wrong-password"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bad credentials are not retried for long"
    );
}

#[test]
fn kill_9_at_random_points_loses_and_repeats_nothing() {
    let _serial = serial();
    kill_9_loses_and_repeats_nothing(Server::Mysql, "kill", 61);
}

#[test]
fn a_database_restart_mid_run_is_retried_and_totals_stay_exact() {
    let _serial = serial();
    let topic = create_topic("restart-db", 4);
    let first = generate(Topic::LiveGiftTotal, 50_000, 71, 0.0);
    let during = generate(Topic::LiveGiftTotal, 50_000, 72, 0.0);
    produce(&topic, &first.lines);
    let url = Server::Mysql.fresh_database("restart");
    let dir = tempfile::tempdir().unwrap();
    let config = self_assigned_config(
        dir.path(),
        &[(&topic, "live_gift_total")],
        &url,
        "max-retries = 6",
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&config, &[], &log);
    wait_until(
        Duration::from_secs(180),
        "the first records committed",
        &log,
        || count(&url, COMMITTED) == 50_000,
    );

    // Records arrive while the database is down: their checkpoints must
    // wait for it, retrying, and then land exactly once.
    let shutdown = std::process::Command::new("mariadb-admin")
        .args(["-uroot", "shutdown"])
        .status()
        .unwrap();
    assert!(shutdown.success());
    produce(&topic, &during.lines);
    std::thread::sleep(Duration::from_secs(8));
    let start = std::process::Command::new("start-stop-daemon")
        .args([
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ])
        .status()
        .unwrap();
    assert!(start.success());

    wait_until(
        Duration::from_secs(240),
        "every record committed",
        &log,
        || count(&url, COMMITTED) == 100_000,
    );
    interrupt_and_wait(&mut child, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("retry 1/6"), "the outage was retried: {text}");
    let expected = {
        let mut t = first.gift_totals();
        for (k, v) in during.gift_totals() {
            *t.entry(k).or_default() += v;
        }
        t
    };
    assert_eq!(pairs(&url, TOTALS), expected);
}
