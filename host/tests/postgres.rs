//! The checkpoint store on PostgreSQL: the same file pipeline and the same
//! kill -9 test as on MariaDB, PostgreSQL's own types read back, and a
//! table of another shape named. Needs `scripts/services start`
//! (Kafka-compatible broker, PostgreSQL).

mod support;

use std::sync::Mutex;

use support::sql::{
    Server, count, file_pipeline_merges_exactly, kill_9_loses_and_repeats_nothing,
    rows_beyond_one_packet_are_written, values_no_sink_stores_are_dead_letters,
};
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
fn values_no_sink_stores_are_dead_letters_in_postgres() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    values_no_sink_stores_are_dead_letters(Server::Postgres, dir.path());
}

#[test]
fn rows_beyond_one_packet_are_written_in_postgres() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    rows_beyond_one_packet_are_written(Server::Postgres, dir.path());
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

/// Rows go to PostgreSQL as one array per column, in the arrays' text
/// form: values that look like that form (quotes, backslashes, braces,
/// commas, the word NULL, an empty string), bytes, floats PostgreSQL
/// spells its own way and timestamps come back exactly as written, and a
/// second checkpoint merges into them.
#[test]
fn rows_written_as_arrays_read_back_exactly() {
    use apiary::model::schema::TableSchema;
    use apiary::model::wit::types::{Column, ColumnType, MergeMode, OutputSchema, Value};
    use apiary::model::{Checkpoint, LaneKey};
    use sqlx::Row as _;

    let _serial = serial();
    let url = Server::Postgres.fresh_database("arrays");
    let column = |name: &str, type_, merge| Column {
        name: name.into(),
        type_,
        merge,
        nullable: true,
    };
    let table = std::sync::Arc::new(
        TableSchema::from_output(
            "test",
            &OutputSchema {
                name: "odd_values".into(),
                table: None,
                columns: vec![
                    column("id", ColumnType::Int, MergeMode::Replace),
                    column("label", ColumnType::Text, MergeMode::Replace),
                    column("raw", ColumnType::Bytes, MergeMode::Replace),
                    column("ratio", ColumnType::Float, MergeMode::Replace),
                    column("flag", ColumnType::Boolean, MergeMode::Replace),
                    column("at", ColumnType::Timestamp, MergeMode::Replace),
                    column("hits", ColumnType::Int, MergeMode::Add),
                ],
                primary_key: vec!["id".into()],
            },
        )
        .unwrap(),
    );
    let labels = [
        "plain",
        "",
        "NULL",
        "a \"quoted\" word",
        "back\\slash\\",
        "{braces},commas",
        "  spaces  ",
        "直播 😀",
        "'); DROP TABLE odd_values; --",
    ];
    let floats = [
        0.1,
        -0.0,
        1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::NEG_INFINITY,
        1.0 / 3.0,
        f64::INFINITY,
    ];
    let rows: Vec<Vec<Value>> = (0..labels.len())
        .map(|i| {
            vec![
                Value::Int(i as i64),
                Value::Text(labels[i].into()),
                Value::Bytes(vec![i as u8, b'"', b'\\', b'{', 0, 255]),
                Value::Float(floats[i]),
                Value::Boolean(i % 2 == 0),
                Value::Timestamp(1_700_000_000_123 + i as i64 * 86_400_001),
                Value::Int(1),
            ]
        })
        // A row of nulls but its key and count.
        .chain(std::iter::once({
            let mut nulls = vec![Value::Int(99)];
            nulls.extend(std::iter::repeat_n(Value::Null, 5));
            nulls.push(Value::Int(1));
            nulls
        }))
        .collect();
    let sink: apiary::config::SqlSink = toml::from_str(&format!("url = {url:?}")).unwrap();
    let lane = LaneKey {
        consumer: "arrays".into(),
        stream: "test".into(),
        partition: 0,
    };
    let checkpoint = |previous: Option<i64>, next: i64| Checkpoint {
        lane: lane.clone(),
        next_offset: next,
        previous_offset: previous,
        rows: vec![(table.clone(), "odd_values".into(), rows.clone())],
        state: Vec::new(),
        watermark: None,
        dead_letters: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let read = runtime.block_on(async {
        let store = apiary::store::SqlStore::connect(&sink).await.unwrap();
        store.commit(&checkpoint(None, 10)).await.unwrap();
        store.commit(&checkpoint(Some(10), 20)).await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(
            "SELECT id, label, raw, ratio, flag, to_char(at, 'YYYY-MM-DD HH24:MI:SS.MS'), hits \
             FROM odd_values ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    });
    assert_eq!(read.len(), rows.len());
    for (row, wrote) in read.iter().zip(&rows) {
        let id: i64 = row.get(0);
        let text = |v: &Value| match v {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        };
        assert_eq!(
            row.get::<Option<String>, _>(1),
            text(&wrote[1]),
            "label of {id}"
        );
        let bytes = match &wrote[2] {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        };
        assert_eq!(row.get::<Option<Vec<u8>>, _>(2), bytes, "raw of {id}");
        let got = row.get::<Option<f64>, _>(3);
        match wrote[3] {
            Value::Float(f) if f.is_nan() => assert!(got.is_some_and(f64::is_nan), "ratio of {id}"),
            Value::Float(f) => {
                assert_eq!(got.map(f64::to_bits), Some(f.to_bits()), "ratio of {id}")
            }
            _ => assert_eq!(got, None, "ratio of {id}"),
        }
        let flag = match wrote[4] {
            Value::Boolean(b) => Some(b),
            _ => None,
        };
        assert_eq!(row.get::<Option<bool>, _>(4), flag, "flag of {id}");
        let at = match wrote[5] {
            Value::Timestamp(ms) => Some(apiary::time::format_millis(ms, 0)),
            _ => None,
        };
        assert_eq!(row.get::<Option<String>, _>(5), at, "at of {id}");
        // Two checkpoints of the same rows: `add` merged them.
        assert_eq!(row.get::<i64, _>(6), 2, "hits of {id}");
    }
}
