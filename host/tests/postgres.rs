//! The checkpoint store on PostgreSQL: the same file pipeline and the same
//! kill -9 test as on MariaDB, PostgreSQL's own types read back, and a
//! table of another shape named. Needs `scripts/services start`
//! (Kafka-compatible broker, PostgreSQL).

mod support;

use std::sync::Mutex;

use support::sql::{Server, count, file_pipeline_merges_exactly, kill_9_loses_and_repeats_nothing};
use support::*;

/// The kill test shares the broker: tests here run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn file_pipeline_merges_into_postgres() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (url, config, gifts) = file_pipeline_merges_exactly(Server::Postgres, dir.path());
    // Timestamps land as TIMESTAMP(3).
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM information_schema.columns \
             WHERE table_name = 'gifts_6h' AND data_type LIKE 'timestamp%'"
        ),
        1
    );
    // `apiary query` reads PostgreSQL's own types: a sum is NUMERIC, a
    // window's end TIMESTAMP.
    let (out, stdout, stderr) = output(apiary().arg("query").arg(&config).arg(
        "SELECT SUM(gift_total_amount) AS total, \
         (SELECT MIN(window_end) FROM gifts_6h) AS first FROM gift_type_totals",
    ));
    assert!(out.status.success(), "{stderr}");
    let total: i64 = gifts.gift_totals().values().sum();
    assert!(stdout.contains(&total.to_string()), "{stdout}");
    // A second run finds its tables and its checkpoints: nothing is added.
    run_until_idle(&config);
    assert_eq!(
        count(
            &url,
            &Server::Postgres.sum("gift_total_amount", "gift_type_totals")
        ),
        total
    );
}

#[test]
fn a_table_of_another_shape_is_named() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    support::sql::a_table_of_another_shape_is_named(
        Server::Postgres,
        dir.path(),
        "CHARACTER VARYING",
    );
}

#[test]
fn kill_9_at_random_points_loses_and_repeats_nothing() {
    let _serial = serial();
    kill_9_loses_and_repeats_nothing(Server::Postgres, "pg-kill", 71);
}
