//! HBase through its REST gateway: the client against the in-repo protocol
//! test server (and against a real gateway when `HBASE_REST_URL` is set),
//! dimension lookups feeding module totals from Kafka into MariaDB, and
//! outputs written to HBase. Needs `scripts/services start` for the Kafka
//! and MariaDB tests.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use apiary::hbase::{Cell, CellSet, Client, HBaseError, Row};
use hbase_rest_server::TestServer;
use livestream_example::Topic;
use support::kafka::{broker, create_topic, produce};
use support::sql::{Server, count, pairs};
use support::*;

const MODULES: &str = "SELECT module_id, module_gift_total_amount FROM module_gift_totals";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(url: &str) -> Client {
    Client::new(url, Duration::from_secs(10), 3, Duration::from_millis(20)).unwrap()
}

/// What every gateway must do for Apiary: create a table without touching
/// an existing one, batched puts, gets and multi-gets with reserved
/// characters in keys, and 404s as HBase answers them.
async fn client_suite(url: &str) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("apiary_suite_{}", nanos % 1_000_000_000);
    let c = client(url);
    assert_eq!(c.families(&table).await.unwrap(), None);
    c.ensure_table(&table, &["cf"]).await.unwrap();
    c.ensure_table(&table, &["cf", "meta"]).await.unwrap();
    let mut families = c.families(&table).await.unwrap().unwrap();
    families.sort();
    assert_eq!(families, ["cf", "meta"], "POST adds a family, drops none");

    let keys: [&[u8]; 3] = [b"room/1", b"a:b,c", b"20210813"];
    let set = CellSet {
        rows: keys
            .iter()
            .enumerate()
            .map(|(i, k)| Row {
                key: k.to_vec(),
                cells: vec![Cell {
                    column: b"cf:module_id".to_vec(),
                    timestamp: None,
                    value: format!("{}", 1001 + i).into_bytes(),
                }],
            })
            .collect(),
    };
    c.put(&table, &set).await.unwrap();

    let one = c
        .get(&table, b"a:b,c", &["cf:module_id".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one["cf:module_id"], b"1002");
    assert_eq!(c.get(&table, b"absent", &[]).await.unwrap(), None);

    let rows: Vec<Vec<u8>> = vec![b"room/1".to_vec(), b"absent".to_vec(), b"20210813".to_vec()];
    let got = c.multi_get(&table, &rows, &["cf".into()]).await.unwrap();
    assert_eq!(got.len(), 2, "the missing row is skipped");
    assert_eq!(got[&b"room/1".to_vec()]["cf:module_id"], b"1001");
    assert_eq!(got[&b"20210813".to_vec()]["cf:module_id"], b"1003");
    let none = c.multi_get(&table, &[b"x".to_vec()], &[]).await.unwrap();
    assert!(none.is_empty());

    let bad = CellSet {
        rows: vec![Row {
            key: b"r".to_vec(),
            cells: vec![Cell {
                column: b"nofamily:x".to_vec(),
                timestamp: None,
                value: b"1".to_vec(),
            }],
        }],
    };
    let err = c.put(&table, &bad).await.unwrap_err();
    assert!(matches!(err, HBaseError::NotFound { .. }), "{err}");
    let err = c.put("apiary_no_such_table", &set).await.unwrap_err();
    assert!(matches!(err, HBaseError::NotFound { .. }), "{err}");
}

#[test]
fn client_speaks_the_rest_protocol_to_the_test_server() {
    let server = TestServer::start();
    runtime().block_on(client_suite(&server.url()));
}

/// The same suite against a real gateway: `HBASE_REST_URL=http://host:8080
/// cargo test -p apiary --test hbase real_gateway`.
#[test]
fn client_speaks_the_rest_protocol_to_a_real_gateway() {
    let Ok(url) = std::env::var("HBASE_REST_URL") else {
        eprintln!("HBASE_REST_URL is not set: skipped");
        return;
    };
    runtime().block_on(client_suite(&url));
}

#[test]
fn busy_gateways_are_retried_and_read_only_ones_named() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    let c = client(&server.url());
    let rt = runtime();
    server.fail_next(2);
    rt.block_on(c.ensure_table("t", &["cf"])).unwrap();
    assert_eq!(server.requests().unavailable, 2);

    server.fail_next(10);
    let err = rt.block_on(c.families("t")).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");

    server.fail_next(0);
    server.set_read_only(true);
    let set = CellSet {
        rows: vec![Row {
            key: b"r".to_vec(),
            cells: vec![Cell {
                column: b"cf:a".to_vec(),
                timestamp: None,
                value: b"1".to_vec(),
            }],
        }],
    };
    let err = rt.block_on(c.put("t", &set)).unwrap_err();
    assert!(err.to_string().contains("read-only (403)"), "{err}");
}

/// The seed's third job: gifts from Kafka, rooms looked up in `dim_hbase`
/// (row key the room id as text, `cf:module_id` a string, as Flink wrote
/// them), totals per module in MariaDB.
#[test]
fn module_totals_from_kafka_with_hbase_lookups_match_the_input() {
    let server = TestServer::start();
    server.create_table("dim_hbase", &["cf"]);
    let modules = dim_rooms();
    for (room, module) in &modules {
        server.put(
            "dim_hbase",
            room.to_string().as_bytes(),
            "cf:module_id",
            module.to_string().as_bytes(),
        );
    }
    let topic = create_topic("modules", 4);
    let gifts = generate(Topic::LiveGiftTotal, 50_000, 91, 0.001);
    produce(&topic, &gifts.lines);
    let url = Server::Mysql.fresh_database("modules");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {:?}\n[source.kafka]\nbrokers = {:?}\ngroup = \"{topic}-g\"\n\
             topics = {{ {topic:?} = \"live_gift_total\" }}\n[sink.sql]\nurl = {url:?}\n\
             interval = \"300ms\"\n[hbase]\nurl = {:?}\n\
             [lookup.dim_hbase]\nhbase-table = \"dim_hbase\"\n\
             [lookup.dim_hbase.cache]\nmax-rows = 1000\nexpire-after-write = \"10m\"\n",
            plugins_dir(),
            broker(),
            server.url(),
        ),
    )
    .unwrap();
    let (out, _, stderr) = run_with_limit(
        apiary()
            .env("APIARY_LOG", "info,librdkafka=warn")
            .arg("run")
            .arg(&config)
            .args(["--stop-when-idle", "10s"]),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(pairs(&url, MODULES), gifts.module_totals(&modules));
    assert!(
        pairs(&url, MODULES).contains_key(&0),
        "the unmapped room counts under module 0"
    );
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"),
        gifts.malformed.len() as i64
    );
    // Five rooms, four lanes: the cache leaves HBase a handful of requests.
    let multigets = server.requests().multigets;
    assert!((1..=20).contains(&multigets), "{multigets} multi-gets");
    let line = stderr
        .lines()
        .find(|l| l.contains("lookup cache hit rate"))
        .unwrap_or_else(|| panic!("no cache metrics in the log: {stderr}"));
    let field = |name: &str| -> u64 {
        let rest = &line[line.find(&format!("{name}=")).expect(name) + name.len() + 1..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(line.contains("table=\"dim_hbase\""), "{line}");
    // Lanes that start together may each miss a room once.
    assert!((5..=20).contains(&field("misses")), "{line}");
    assert!(field("hits") > 10 * field("misses"), "{line}");
}

fn hbase_output_config(
    dir: &Path,
    input: &Path,
    server: &TestServer,
    route: &str,
) -> std::path::PathBuf {
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {:?}\n{}[[source.file]]\npath = {input:?}\ntopic = \"live_streaming_log\"\n\
             [sink.sql]\nurl = \"sqlite://out.db\"\n[hbase]\nurl = {:?}\nmax-rows = 2\n\
             [hbase.output.{route}]\ntable = \"apiary_{route}\"\nfamily = \"stats\"\n",
            plugins_dir(),
            dim_rooms_lookup(),
            server.url(),
        ),
    )
    .unwrap();
    config
}

/// The viewer log (`replace` columns only) goes to HBase: a row per visit
/// key, a `stats:<column>` cell per other column. A second run from scratch
/// (the SQL checkpoint lost, so every record is replayed) puts the same
/// rows again: the table converges to the same content.
#[test]
fn outputs_routed_to_hbase_are_put_and_a_replay_converges() {
    let server = TestServer::start();
    let visits = generate(Topic::LiveStreamingLog, 5_000, 93, 0.0);
    let mut keys = std::collections::BTreeSet::new();
    let mut per_province: BTreeMap<String, usize> = BTreeMap::new();
    for v in visits.valid() {
        let key = format!(
            "{}|{}|{}|{}",
            v["user_id"], v["ip"], v["room_id"], v["arrive_time"]
        );
        if keys.insert(key) {
            *per_province
                .entry(v["province"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("visits.jsonl");
    std::fs::write(&input, visits.text()).unwrap();
    let config = hbase_output_config(dir.path(), &input, &server, "live_streaming_log");

    run_until_idle(&config);
    let first = server.rows("apiary_live_streaming_log");
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for cells in first.values() {
        let province = String::from_utf8(cells["stats:province"].clone()).unwrap();
        *got.entry(province).or_default() += 1;
        // `grade` is an int column: Bytes.toBytes(long), 8 bytes.
        assert_eq!(cells["stats:grade"].len(), 8);
    }
    assert_eq!(got, per_province);
    assert_eq!(
        server.families("apiary_live_streaming_log").unwrap(),
        ["stats"]
    );
    let puts = server.requests().puts;
    assert!(
        puts as usize >= first.len() / 2,
        "{puts} puts for {} rows with max-rows = 2",
        first.len()
    );

    std::fs::remove_file(dir.path().join("out.db")).unwrap();
    run_until_idle(&config);
    assert!(
        server.rows("apiary_live_streaming_log") == first,
        "a replay converges"
    );
    // The SQL sink does not hold the routed table.
    let tables = sqlite_count(
        &dir.path().join("out.db"),
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'live_streaming_log'",
    );
    assert_eq!(tables, 0);
}

#[test]
fn an_add_output_cannot_go_to_hbase_and_missing_tables_are_named() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("visits.jsonl");
    std::fs::write(&input, generate(Topic::LiveStreamingLog, 10, 1, 0.0).text()).unwrap();
    let config = hbase_output_config(dir.path(), &input, &server, "gift_type_totals");
    let (out, _, stderr) = output(apiary().arg("check").arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr.contains("output `gift_type_totals` of plugin `gift-type-totals` cannot go to HBase: column `gift_total_amount` merges with `add`"),
        "{stderr}"
    );

    let config = hbase_output_config(dir.path(), &input, &server, "no_such_output");
    let (out, _, stderr) = output(apiary().arg("check").arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr.contains("`hbase.output.no_such_output` names no plugin output"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("[hbase.output.no_such_output]\ntable = \"apiary_no_such_output\"\nfamily = \"stats\"\n", "")
        .replace(
            &format!("[lookup.dim_hbase]\npath = {:?}\n", dim_rooms_csv()),
            "[lookup.dim_hbase]\nhbase-table = \"dim_missing\"\n",
        );
    std::fs::write(&config, text).unwrap();
    let (out, _, stderr) = output(apiary().arg("check").arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr.contains("HBase table `dim_missing` does not exist at http://127.0.0.1:"),
        "{stderr}"
    );
}
