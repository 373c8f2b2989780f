//! Kafka read path: a bare rdkafka consumer and Apiary (parser + rule +
//! embedded SQLite sink, exactly-once checkpoints) over the same topic, in
//! one run. Prints a table, with the CPU time each reader and the broker
//! (`tansu` processes on this machine) used.
//!
//! Needs the memory-engine test broker: `scripts/services start` (port 9094;
//! `BENCH_KAFKA` overrides). `BENCH_RECORDS` sets N (default 1,000,000).
//! `BENCH_ROWS` picks rows by name (default all: `sqlite,repartition,maria,
//! visits,pg,pg-visits`), to profile or compare one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use apiary::config::PipelineConfig;
use apiary::pipeline::{self, RunOptions};
use common::Cpu;
use livestream_example::{Generator, Topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The test broker's processes, whose CPU the table shows beside each reader's.
const BROKER: &str = "tansu";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = common::env_count("BENCH_RECORDS", 1_000_000);
    let visits: usize = common::env_count("BENCH_VISITS", 200_000);
    let broker = std::env::var("BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:9094".into());
    let (mysql, postgres) = (common::mysql_url(), common::postgres_url());
    let partitions = 4;
    let gifts_topic = format!("bench-gifts-{}", std::process::id());
    let visits_topic = format!("bench-visits-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .create()?;
    for topic in [&gifts_topic, &visits_topic] {
        admin
            .create_topics(
                [&NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await?;
    }

    // Generated as they are produced, never held: the peak RSS column is
    // the readers'.
    let started = Instant::now();
    let bytes = produce(
        &broker,
        &gifts_topic,
        Generator::new(Topic::LiveGiftTotal, 1).take(records),
    )? / records;
    println!(
        "{records} gift records of ~{bytes} bytes in {partitions} partitions, generated and produced in {:.1?}",
        started.elapsed()
    );
    produce(
        &broker,
        &visits_topic,
        Generator::new(Topic::LiveStreamingLog, 2).take(visits),
    )?;
    println!("{visits} visit records in {partitions} partitions\n");

    common::reset_peak_rss();
    let bare_start = common::rss_mib();
    let bare_cpu = Cpu::now(BROKER);
    let bare = bare_consumer(&broker, &gifts_topic, records)?;
    let bare_cpu = bare_cpu.stop();
    let bare_rss = common::peak_rss_mib();
    let dir = tempfile::tempdir()?;
    let rows = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "sqlite,repartition,maria,visits,pg,pg-visits".into());
    let wanted = |row: &str| rows.split(',').any(|r| r.trim() == row);
    let mut runs = Vec::new();
    let mut mysql_db = String::new();
    if wanted("maria") || wanted("visits") {
        mysql_db = format!("{mysql}/{}", bench_database(&mysql, false).await?);
    }
    let mut postgres_db = String::new();
    if wanted("pg") || wanted("pg-visits") {
        postgres_db = format!("{postgres}/{}", bench_database(&postgres, true).await?);
    }
    for (row, title, sink, topic, n) in [
        (
            "sqlite",
            "apiary, gifts → gift-type-totals → SQLite",
            "sqlite://out.db",
            &gifts_topic,
            records,
        ),
        (
            // The same through a repartition by user: every record is
            // read, forwarded to the internal topic and read again.
            "repartition",
            "apiary, gifts → repartition by user_id → gift-type-totals → SQLite",
            "sqlite://hop.db",
            &gifts_topic,
            records,
        ),
        (
            "maria",
            "apiary, gifts → gift-type-totals → MariaDB",
            &mysql_db,
            &gifts_topic,
            records,
        ),
        (
            "visits",
            "apiary, visits → viewer-log + grade-members → MariaDB",
            &mysql_db,
            &visits_topic,
            visits,
        ),
        (
            "pg",
            "apiary, gifts → gift-type-totals → PostgreSQL",
            &postgres_db,
            &gifts_topic,
            records,
        ),
        (
            "pg-visits",
            "apiary, visits → viewer-log + grade-members → PostgreSQL",
            &postgres_db,
            &visits_topic,
            visits,
        ),
    ] {
        if wanted(row) {
            let run = apiary_run(dir.path(), row, &broker, topic, sink, n).await?;
            runs.push((title, run, n));
        }
    }

    let bare_rate = common::rate(records, bare);
    println!(
        "| reader | records/s | × bare consumer | rows written/s | checkpoint p50 / p99 | CPU s: reader + broker | records per CPU-s (× bare) | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let bare_per_cpu = common::rate(records, bare_cpu.total());
    println!(
        "| bare rdkafka consumer (poll only), gifts | {:.0}k | 1.00 | – | – | {} | {:.0}k (1.00) | {bare_rss} MiB (from {bare_start}) |",
        bare_rate / 1e3,
        bare_cpu,
        bare_per_cpu / 1e3,
    );
    for (name, run, n) in &runs {
        let r = common::rate(*n, run.took);
        let per_cpu = common::rate(run.reads, run.cpu.total());
        println!(
            "| {name} | {:.0}k | {:.2} | {:.0}k | {:.1?} / {:.1?} | {} | {:.0}k ({:.2}) | {} MiB (from {}) |",
            r / 1e3,
            r / bare_rate,
            run.rows_written as f64 / run.took.as_secs_f64() / 1e3,
            run.p50,
            run.p99,
            run.cpu,
            per_cpu / 1e3,
            per_cpu / bare_per_cpu,
            run.peak_rss_mib,
            run.start_rss_mib,
        );
    }
    println!(
        "\nCPU s: this process's over the whole reader (for Apiary from the group join to the idle stop), \
         plus the `tansu` processes' over the same time; records per CPU-s counts every record read \
         (twice through a repartition) over both."
    );
    Ok(())
}

/// Creates a database of this run on the server at `url` (`postgres`:
/// PostgreSQL, else MariaDB); its name.
async fn bench_database(url: &str, postgres: bool) -> anyhow::Result<String> {
    let db = format!("apiary_bench_{}", std::process::id());
    let create = format!("CREATE DATABASE {db}");
    if postgres {
        let pool = sqlx::PgPool::connect(&format!("{url}/postgres")).await?;
        sqlx::query(&create).execute(&pool).await?;
    } else {
        let pool = sqlx::MySqlPool::connect(url).await?;
        sqlx::query(&create).execute(&pool).await?;
    }
    Ok(db)
}

/// Produces `lines` to `topic`; their bytes in all.
fn produce(
    broker: &str,
    topic: &str,
    lines: impl Iterator<Item = String>,
) -> anyhow::Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "2000000")
        .create()?;
    let mut bytes = 0;
    for (i, line) in lines.enumerate() {
        bytes += line.len();
        let key = (i % 4096).to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&line);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(bytes)
}

/// Poll-only consumer with the same fetch tuning Apiary uses.
fn bare_consumer(broker: &str, topic: &str, records: usize) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("{topic}-bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "45000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen = 0;
    let mut started = None;
    while seen < records {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            started.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    Ok(started.map(|s| s.elapsed()).unwrap_or_default())
}

/// What one in-process run measured.
struct Run {
    /// From the first record read to the checkpoint covering the last one.
    took: Duration,
    rows_written: u64,
    p50: Duration,
    p99: Duration,
    /// The process's peak RSS during the run, and its RSS at the start.
    peak_rss_mib: u64,
    start_rss_mib: u64,
    /// CPU used over the whole run, the group join and idle stop included.
    cpu: Cpu,
    /// Records read: every record twice through a repartition.
    reads: usize,
}

/// Runs the pipeline in-process with exactly-once checkpoints on, from a
/// fresh group, until idle.
async fn apiary_run(
    dir: &Path,
    name: &str,
    broker: &str,
    topic: &str,
    sink: &str,
    records: usize,
) -> anyhow::Result<Run> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/plugins");
    let (logical, rules): (&str, &[&str]) = if topic.contains("visits") {
        ("live_streaming_log", &["viewer-log", "grade-members"])
    } else {
        ("live_gift_total", &["gift-type-totals"])
    };
    // Only the plugins the row names: target/plugins holds more rules.
    let plugins = dir.join(format!("{name}-plugins"));
    std::fs::create_dir_all(&plugins)?;
    for plugin in std::iter::once(&"seed-json-parser").chain(rules) {
        let file = format!("{plugin}.wasm");
        std::fs::copy(shipped.join(&file), plugins.join(&file))?;
    }
    let mut text = format!(
        "[pipeline]\nname = {name:?}\n[plugins]\ndir = {plugins:?}\n[source.kafka]\nbrokers = {broker:?}\n\
         group = \"{topic}-{name}\"\ntopics = {{ {topic:?} = {logical:?} }}\n[sink.sql]\nurl = {sink:?}\n"
    );
    // Experiments: `BENCH_SOURCE` adds lines to `[source.kafka]`.
    if let Ok(extra) = std::env::var("BENCH_SOURCE") {
        text = text.replace("[sink.sql]", &format!("{extra}\n[sink.sql]"));
    }
    let repartitioned = name == "repartition";
    if repartitioned {
        // No pausing: the memory engine loses records when a paused
        // partition resumes mid-batch, and with twice the lanes on two
        // cores, lanes do fill up.
        text = text.replace("[sink.sql]", "pause-after = \"1h\"\n[sink.sql]");
        text += &format!(
            "[source.kafka.repartition.{logical}]\nby = \"user_id\"\npartitions = 4\nreplication = 1\n"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    let config = PipelineConfig::load(&path)?;
    common::reset_peak_rss();
    let start_rss_mib = common::rss_mib();
    let cpu = Cpu::now(BROKER);
    let summary = pipeline::run(
        config,
        RunOptions {
            stop_when_idle: Some(Duration::from_secs(3)),
            until_end: false,
        },
    )
    .await?;
    let cpu = cpu.stop();
    let read: u64 = summary.lanes.iter().map(|(_, s)| s.records).sum();
    let reads = if repartitioned { 2 * records } else { records };
    anyhow::ensure!(read as usize == reads, "apiary read {read} of {reads}");
    let (times, _) = common::checkpoint_times(&summary);
    let at = |q| common::quantile(&times, q);
    Ok(Run {
        took: summary.busy_time().unwrap_or_default(),
        rows_written: summary.lanes.iter().map(|(_, s)| s.rows_written).sum(),
        p50: at(0.5),
        p99: at(0.99),
        peak_rss_mib: common::peak_rss_mib(),
        start_rss_mib,
        cpu,
        reads,
    })
}
