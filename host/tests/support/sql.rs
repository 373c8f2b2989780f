//! The SQL servers of the tests (MariaDB and PostgreSQL on loopback,
//! started by `scripts/services start`): a fresh database per test, reads
//! as integers, and the checks every dialect must pass alike.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use livestream_example::Topic;
use sqlx::Row as _;

use super::kafka::{broker, create_topic, produce};
use super::process::{interrupt_and_wait, kill_five_times, spawn_run, wait_until};
use super::*;

/// A database server the tests write into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// MariaDB (root, empty password).
    Mysql,
    /// PostgreSQL (postgres, trust auth).
    Postgres,
}

impl Server {
    /// The server's URL, without a database.
    pub fn url(self) -> String {
        match self {
            Server::Mysql => std::env::var("APIARY_TEST_MYSQL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
            Server::Postgres => std::env::var("APIARY_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
        }
    }

    /// Creates an empty database named after `prefix`; returns its URL.
    pub fn fresh_database(self, prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "apiary_{prefix}_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000
        );
        // PostgreSQL connects to a database: its maintenance one.
        let admin = match self {
            Server::Mysql => self.url(),
            Server::Postgres => format!("{}/postgres", self.url()),
        };
        runtime().block_on(async {
            let pool = connect(&admin).await.unwrap_or_else(|e| {
                panic!("cannot reach {admin} (run scripts/services start): {e}")
            });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
        });
        format!("{}/{name}", self.url())
    }

    /// The sum of `column` over `table` as a BIGINT (sums are DECIMAL in
    /// MySQL, NUMERIC in PostgreSQL).
    pub fn sum(self, column: &str, table: &str) -> String {
        match self {
            Server::Mysql => {
                format!("SELECT CAST(COALESCE(SUM({column}), 0) AS SIGNED) FROM {table}")
            }
            Server::Postgres => format!("SELECT COALESCE(SUM({column}), 0)::bigint FROM {table}"),
        }
    }

    /// How a query names the database it runs in.
    pub fn current_schema(self) -> &'static str {
        match self {
            Server::Mysql => "DATABASE()",
            Server::Postgres => "current_schema()",
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await
}

/// Runs SQL statements against a database.
pub fn execute(url: &str, statements: &[&str]) {
    runtime().block_on(async {
        let pool = connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
    });
}

/// Rows of a two-integer query, e.g. totals per key.
pub fn pairs(url: &str, sql: &str) -> BTreeMap<i64, i64> {
    runtime().block_on(async {
        let pool = connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        rows.iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
            .collect()
    })
}

/// Rows of a text-and-integer query, e.g. members per province and grade
/// (`CONCAT(province, '/', grade), members`).
pub fn labelled(url: &str, sql: &str) -> BTreeMap<String, i64> {
    runtime().block_on(async {
        let pool = connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        rows.iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect()
    })
}

/// A one-number query (see [`Server::sum`]); 0 if the database cannot
/// answer (yet).
pub fn count(url: &str, sql: &str) -> i64 {
    runtime().block_on(async {
        let Ok(pool) = connect(url).await else {
            return 0;
        };
        match sqlx::query(sql).fetch_one(&pool).await {
            Ok(row) => row.try_get::<i64, _>(0).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";
const MODULES: &str = "SELECT module_id, module_gift_total_amount FROM module_gift_totals";
const MEMBERS: &str = "SELECT grade, members FROM grade_members";

/// The example's file pipeline into a fresh database of `server`: `check`
/// writes nothing, and a run merges every total exactly, refuses the
/// malformed records and writes each visit once. Returns the database's
/// URL, the pipeline's config and the gifts it read.
pub fn file_pipeline_merges_exactly(
    server: Server,
    dir: &Path,
) -> (String, std::path::PathBuf, Generated) {
    let url = server.fresh_database("file");
    let gifts = generate(Topic::LiveGiftTotal, 20_000, 51, 0.005);
    let visits = generate(Topic::LiveStreamingLog, 10_000, 52, 0.005);
    let (g, v) = (dir.join("g.jsonl"), dir.join("v.jsonl"));
    std::fs::write(&g, gifts.text()).unwrap();
    std::fs::write(&v, visits.text()).unwrap();
    let config = embedded_config(dir, &[(&g, "live_gift_total"), (&v, "live_streaming_log")]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sqlite://out.db", &url);
    std::fs::write(&config, text).unwrap();
    let (out, _, stderr) = output(apiary().arg("check").arg(&config));
    assert!(out.status.success(), "{stderr}");
    let tables = format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {}",
        server.current_schema()
    );
    assert_eq!(count(&url, &tables), 0, "check writes nothing");
    run_until_idle(&config);
    assert_eq!(pairs(&url, TOTALS), gifts.gift_totals());
    assert_eq!(pairs(&url, MODULES), gifts.module_totals(&dim_rooms()));
    assert_eq!(pairs(&url, MEMBERS), visits.members_per_grade());
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"),
        (gifts.malformed.len() + visits.malformed.len()) as i64
    );
    let keys = visits.distinct_visits();
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM live_streaming_log"),
        keys.len() as i64
    );
    (url, config, gifts)
}

/// Visits whose rows some database would refuse: leaving in year 0 (which
/// PostgreSQL has not), an IP longer than MySQL's 255-character keys, a
/// province with a NUL (which PostgreSQL's text has not), a province of
/// 70,000 bytes (more than MySQL's `TEXT` holds). Each is a dead letter of
/// the rules whose rows hold it; before the checks, such a row made every
/// checkpoint of its batch fail and the run stopped. Every other visit is
/// written.
pub fn values_no_sink_stores_are_dead_letters(server: Server, dir: &Path) {
    let url = server.fresh_database("unstorable");
    let visits = generate(Topic::LiveStreamingLog, 3_000, 53, 0.0);
    let mut lines = visits.lines.clone();
    let bad = |user: i64, field: &str, value: String| {
        let mut visit: serde_json::Value = serde_json::from_str(&visits.lines[0]).unwrap();
        visit["user_id"] = user.into();
        visit[field] = value.into();
        visit.to_string()
    };
    lines.insert(2_800, bad(999_999_004, "province", "x".repeat(70_000)));
    lines.insert(2_500, bad(999_999_003, "province", "北\0京".into()));
    lines.insert(1_500, bad(999_999_002, "ip", "1".repeat(300)));
    lines.insert(
        500,
        bad(999_999_001, "leave_time", "0000-06-01 00:00:00".into()),
    );
    let path = dir.join("v.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let config = embedded_config(dir, &[(&path, "live_streaming_log")]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sqlite://out.db", &url);
    std::fs::write(&config, text).unwrap();
    run_until_idle(&config);
    // Only MySQL refuses the long province outside a key.
    let long_text_refused = server == Server::Mysql;
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM live_streaming_log"),
        visits.distinct_visits().len() as i64 + i64::from(!long_text_refused)
    );
    let refused = |plugin: &str, reason: &str| {
        let sql = format!(
            "SELECT COUNT(*) FROM apiary_dead_letter WHERE plugin = '{plugin}' \
             AND reason LIKE '%{reason}%'"
        );
        count(&url, &sql)
    };
    let year_0 = "`leave_time`: timestamp % is outside the years 0001 to 9999";
    assert_eq!(refused("viewer-log", year_0), 1);
    assert_eq!(refused("viewer-log", "`ip`: key text of 300 characters"), 1);
    assert_eq!(refused("viewer-log", "`province`: text with a NUL"), 1);
    let too_long = "`province`: text of 70000 bytes; the sink_s text column holds 65535";
    assert_eq!(
        refused("viewer-log", too_long),
        i64::from(long_text_refused)
    );
    // Province and grade are its key: it refuses both provinces.
    assert_eq!(
        refused("province-grade-members", "`province`: text with a NUL"),
        1
    );
    assert_eq!(refused("province-grade-members", ""), 2);
    // And `online-viewers` refuses the visit that leaves before it arrived.
    assert_eq!(refused("online-viewers", "leaves"), 1);
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"),
        6 + i64::from(long_text_refused)
    );
}

/// Rows of 30 kB each, checkpointed together: 21 MB of rows, more than
/// MySQL's default `max_allowed_packet` (16 MiB) holds in one statement.
/// Every row is written; before statements were cut by bytes, the server
/// refused every retry of the checkpoint and the run stopped.
pub fn rows_beyond_one_packet_are_written(server: Server, dir: &Path) {
    let url = server.fresh_database("packet");
    let visits = generate(Topic::LiveStreamingLog, 700, 59, 0.0);
    let lines: Vec<String> = visits
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut visit: serde_json::Value = serde_json::from_str(line).unwrap();
            visit["province"] = format!("{i:03}{}", "省".repeat(10_000)).into();
            visit.to_string()
        })
        .collect();
    let path = dir.join("v.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let config = embedded_config(dir, &[(&path, "live_streaming_log")]);
    // One checkpoint at the end holds every row.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[sink.sql]\nurl = \"sqlite://out.db\"",
        &format!("[sink.sql]\nurl = \"{url}\"\nmax-bytes = 268435456\ninterval = \"1h\""),
    );
    std::fs::write(&config, text).unwrap();
    run_until_idle(&config);
    let long = "SELECT COUNT(*) FROM live_streaming_log WHERE LENGTH(province) >= 10003";
    assert_eq!(count(&url, long), visits.distinct_visits().len() as i64);
    // Each province is a key text too long for `province-grade-members`.
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"),
        lines.len() as i64
    );
}

/// Writes a pipeline config in `dir` reading every partition of `topics`
/// (physical, logical) from the test broker into the database `url`, with
/// `sink_extra` lines added to `[sink.sql]`, and returns its path. The one
/// process assigns itself the partitions, without the group protocol: the
/// tests using it are about the checkpoints, and the test broker's group
/// coordinator can stop answering under load and lose the group (see the
/// README's test services).
pub fn self_assigned_config(
    dir: &Path,
    topics: &[(&str, &str)],
    url: &str,
    sink_extra: &str,
) -> std::path::PathBuf {
    let mapping: Vec<String> = topics
        .iter()
        .map(|(physical, logical)| format!("{physical:?} = {logical:?}"))
        .collect();
    let text = format!(
        "[plugins]\ndir = {:?}\n{}[source.kafka]\nbrokers = {:?}\ngroup = \"{}-g\"\n\
         topics = {{ {} }}\nassignment = \"all\"\n\
         [sink.sql]\nurl = {url:?}\ninterval = \"300ms\"\n{sink_extra}\n\
         [batch]\nmax-records = 500\n",
        plugins_dir(),
        dim_rooms_lookup(),
        broker(),
        topics[0].0,
        mapping.join(", "),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Kafka into a fresh database of `server`, one process restarted in
/// place after each of five kill -9 at pseudo-random points, then run to
/// the end: every total exact, every malformed record refused once.
pub fn kill_9_loses_and_repeats_nothing(server: Server, name: &str, seed: u64) {
    let gifts_topic = create_topic(&format!("{name}-gifts"), 4);
    // One partition: grade-members' state is per lane (see its docs).
    let visits_topic = create_topic(&format!("{name}-visits"), 1);
    let gifts = generate(Topic::LiveGiftTotal, 200_000, seed, 0.001);
    let visits = generate(Topic::LiveStreamingLog, 20_000, seed + 1, 0.0);
    produce(&gifts_topic, &gifts.lines);
    produce(&visits_topic, &visits.lines);
    let url = server.fresh_database("kill");
    let dir = tempfile::tempdir().unwrap();
    let config = self_assigned_config(
        dir.path(),
        &[
            (&gifts_topic, "live_gift_total"),
            (&visits_topic, "live_streaming_log"),
        ],
        &url,
        "",
    );
    let log = dir.path().join("run.log");
    let total: i64 = 220_000;
    let committed = server.sum("next_offset", "apiary_offsets");
    kill_five_times(&config, &log, total, seed, || count(&url, &committed));
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(300), "every record", &log, || {
        count(&url, &committed) == total
    });
    interrupt_and_wait(&mut child, &log);

    assert_eq!(pairs(&url, TOTALS), gifts.gift_totals());
    assert_eq!(pairs(&url, MODULES), gifts.module_totals(&dim_rooms()));
    assert_eq!(pairs(&url, MEMBERS), visits.members_per_grade());
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM apiary_dead_letter"),
        gifts.malformed.len() as i64
    );
}

/// A `gift_type_totals` of another shape made in a fresh database of
/// `server`: the run stops, naming the table and the column's stored type
/// `stored`. Returns the config and its text, for more runs.
pub fn a_table_of_another_shape_is_named(
    server: Server,
    dir: &Path,
    stored: &str,
) -> (std::path::PathBuf, String, String) {
    let url = server.fresh_database("schema");
    execute(
        &url,
        &["CREATE TABLE gift_type_totals \
           (gift_type BIGINT NOT NULL PRIMARY KEY, gift_total_amount VARCHAR(20))"],
    );
    let input = dir.join("in.jsonl");
    std::fs::write(&input, generate(Topic::LiveGiftTotal, 10, 1, 0.0).text()).unwrap();
    let config = embedded_config(dir, &[(&input, "live_gift_total")]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("sqlite://out.db", &url)).unwrap();
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(stderr.contains("table `gift_type_totals`"), "{stderr}");
    assert!(
        stderr.contains(&format!("column `gift_total_amount` has type {stored}")),
        "{stderr}"
    );
    (config, text, url)
}
