//! Scale-out on a complete group coordinator: librdkafka's mock cluster,
//! started by the test on loopback, with `apiary run` processes in one
//! group that rebalances when a member dies. Visits come unkeyed, round
//! robin over their partitions (the seed's producer), and reach the
//! rules through a repartition by `user_id`, as do gifts.
//! Needs MariaDB (`scripts/services start`) and the built plugins.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use apiary::model::route::key_partition;
use livestream_example::Topic;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use support::process::{spawn_run, stop_and_wait, wait_until};
use support::sql::{Server, count, labelled, pairs};
use support::*;

const GROUP: &str = "scale";
const VISITS: &str = "live_streaming_log";
const GIFTS: &str = "live_gift_total";
/// Partitions of the gifts' topic.
const GIFT_PARTITIONS: i32 = 8;
/// Partitions of the gifts' internal topic.
const INTERNAL_GIFTS: i32 = 8;
const MEMBERS: &str = "SELECT grade, members FROM grade_members";
const PROVINCE_MEMBERS: &str =
    "SELECT CONCAT(province, '/', grade), members FROM province_grade_members";
const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";
/// Hourly windows (see the config), in time order.
const WINDOWS: &str =
    "SELECT ROW_NUMBER() OVER (ORDER BY window_end), gift_total_amount FROM gifts_6h";

fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, (), String>,
) {
    while let Err((_, back)) = producer.send(record) {
        record = back;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Produces `lines` to `topic` with no key, round robin over its
/// `partitions`, as the seed's collector does; in `chunks`, a pause after
/// each, so the pipeline is mid-stream throughout.
fn produce_round_robin(
    brokers: &str,
    topic: &str,
    partitions: i32,
    lines: &[String],
    chunks: usize,
) {
    let producer = producer(brokers);
    let per_chunk = lines.len().div_ceil(chunks);
    for (c, chunk) in lines.chunks(per_chunk).enumerate() {
        for (i, line) in chunk.iter().enumerate() {
            let at = (c * per_chunk + i) as i32;
            send(
                &producer,
                BaseRecord::to(topic)
                    .partition(at % partitions)
                    .payload(line),
            );
        }
        producer.flush(Duration::from_secs(60)).unwrap();
        if c + 1 < chunks {
            std::thread::sleep(Duration::from_millis(700));
        }
    }
}

fn config(dir: &Path, brokers: &str, url: &str) -> std::path::PathBuf {
    let text = format!(
        "[pipeline]\nname = {GROUP:?}\n[plugins]\ndir = {:?}\n\
         [plugins.params.gift-windows]\nsize = \"1h\"\nslide = \"1h\"\n{}\
         [source.kafka]\nbrokers = {brokers:?}\ngroup = {GROUP:?}\n\
         topics = [{VISITS:?}, {GIFTS:?}]\nsession-timeout = \"6s\"\n\
         [source.kafka.repartition.{VISITS}]\nby = \"user_id\"\npartitions = 8\nreplication = 1\n\
         [source.kafka.repartition.{GIFTS}]\nby = \"user_id\"\npartitions = {INTERNAL_GIFTS}\n\
         replication = 1\n\
         [sink.sql]\nurl = {url:?}\ninterval = \"300ms\"\n\
         [batch]\nmax-records = 500\n[time]\nallowed-lateness = \"3h\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether the member logging to `log` holds a first-stage lane of the
/// visits now: one opened more often than finished.
fn forwarding(log: &Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lanes = |what: &str| {
        let prefix = format!("{what} lane={VISITS}[");
        text.lines().filter(|l| l.contains(&prefix)).count()
    };
    lanes("lane opens") > lanes("lane finished")
}

/// Partitions of the source and internal topics, all read by the group.
const ALL_PARTITIONS: usize = 4 + 8 + GIFT_PARTITIONS as usize + INTERNAL_GIFTS as usize;

/// How many partitions the member logging to `log` holds now, if its last
/// word on the group was an assignment rather than a revocation.
fn holds(log: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text
        .lines()
        .rfind(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))?;
    last.contains("partitions assigned")
        .then(|| last.matches("(\"").count())
}

/// Distinct users per `province/grade` over the valid visits.
fn members_per_province_and_grade(visits: &Generated) -> BTreeMap<String, i64> {
    let mut members: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for v in visits.valid() {
        let key = format!("{}/{}", v["province"].as_str().unwrap(), v["grade"]);
        members
            .entry(key)
            .or_default()
            .insert(v["user_id"].as_i64().unwrap());
    }
    members
        .into_iter()
        .map(|(k, users)| (k, users.len() as i64))
        .collect()
}

/// Gift amounts per hour of event time, numbered in time order from 1.
fn hourly_windows(gifts: &Generated) -> BTreeMap<i64, i64> {
    let mut hours: BTreeMap<i64, i64> = BTreeMap::new();
    for g in gifts.valid() {
        let time = livestream_format::parse_timestamp(g["create_time"].as_str().unwrap()).unwrap();
        *hours.entry(time.div_euclid(3_600_000)).or_default() +=
            g["gift_total_amount"].as_i64().unwrap();
    }
    hours
        .into_values()
        .enumerate()
        .map(|(i, amount)| (i as i64 + 1, amount))
        .collect()
}

/// Gifts a day after the last, worth nothing, from each source partition
/// to each internal partition (by their users): they move every gift
/// lane's watermark, and every source partition's, past the last hour, so
/// its window closes.
fn closing_gifts(gifts: &Generated) -> Vec<String> {
    let last: serde_json::Value = serde_json::from_str(gifts.lines.last().unwrap()).unwrap();
    let time = livestream_format::parse_timestamp(last["create_time"].as_str().unwrap()).unwrap();
    let mut later = String::new();
    livestream_format::push_timestamp(&mut later, time + 86_400_000);
    let mut users: BTreeMap<i32, i64> = BTreeMap::new();
    for user in 1.. {
        users
            .entry(key_partition(user, INTERNAL_GIFTS))
            .or_insert(user);
        if users.len() == INTERNAL_GIFTS as usize {
            break;
        }
    }
    users
        .into_values()
        .flat_map(|user| std::iter::repeat_n(user, GIFT_PARTITIONS as usize))
        .map(|user| {
            let mut gift = last.clone();
            gift["user_id"] = user.into();
            gift["create_time"] = later.clone().into();
            gift["gift_total_amount"] = 0.into();
            gift.to_string()
        })
        .collect()
}

/// librdkafka's mock cluster in a process of its own (this test binary
/// again, running `mock_broker`): its group coordinator sometimes aborts
/// on an assertion (`rd_kafka_mock_cgrp_classic_member_add: !member->resp`),
/// which must not take the test's process down with it.
struct MockBroker {
    child: std::process::Child,
    servers: String,
}

impl MockBroker {
    /// A cluster of three brokers with `topics` (`name:partitions`).
    fn start(topics: &[(String, i32)]) -> Self {
        use std::io::BufRead as _;
        let spec: Vec<String> = topics.iter().map(|(t, n)| format!("{t}:{n}")).collect();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["mock_broker", "--exact", "--ignored", "--nocapture"])
            .env("APIARY_MOCK_TOPICS", spec.join(","))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let servers = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("brokers=").map(str::to_owned))
            .expect("the mock broker's address");
        // Read on: the harness around it fails on a closed stdout.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, servers }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker of the scale-out test, started by it (see [`MockBroker`]).
#[test]
#[ignore = "the scale-out test's broker, started by that test"]
fn mock_broker() {
    let Ok(topics) = std::env::var("APIARY_MOCK_TOPICS") else {
        return;
    };
    let cluster = MockCluster::new(3).unwrap();
    for spec in topics.split(',') {
        let (topic, partitions) = spec.split_once(':').unwrap();
        cluster
            .create_topic(topic, partitions.parse().unwrap(), 1)
            .unwrap();
    }
    println!("brokers={}", cluster.bootstrap_servers());
    // Until the test closes its end of stdin, or is gone.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

#[test]
fn three_processes_one_killed_count_members_totals_and_windows_exactly() {
    // The mock cannot create topics through the admin API.
    let topics = [
        (VISITS.to_owned(), 4),
        (GIFTS.to_owned(), GIFT_PARTITIONS),
        (format!("{GROUP}.repartition.{VISITS}"), 8),
        (format!("{GROUP}.repartition.{GIFTS}"), INTERNAL_GIFTS),
    ];
    // Again on a new broker if the broker aborted (its bug, not Apiary's:
    // an assertion in its group coordinator when a member rejoins before
    // it answered, which a loaded machine makes likelier), up to
    // `ATTEMPTS` times; any other failure fails the test.
    const ATTEMPTS: u32 = 4;
    for attempt in 1..=ATTEMPTS {
        let broker = std::sync::Mutex::new(MockBroker::start(&topics));
        let servers = broker.lock().unwrap().servers.clone();
        let alive = || broker.lock().unwrap().alive();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scale_out(&servers, &topics[2].0, &alive)
        }));
        match run {
            Ok(()) => return,
            Err(_) if attempt < ATTEMPTS && !alive() => {
                eprintln!("the mock broker aborted; the test runs again on a new one");
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Three members, one killed, a fourth later, on the broker at `brokers`
/// (which panics as soon as `alive` says the broker is gone).
fn scale_out(brokers: &str, internal: &str, alive: &dyn Fn() -> bool) {
    let broker_up = || assert!(alive(), "the mock broker died");
    let brokers = brokers.to_owned();
    let visits = generate(Topic::LiveStreamingLog, 120_000, 151, 0.0);
    let gifts = generate(Topic::LiveGiftTotal, 80_000, 152, 0.0);
    let mut gift_lines = gifts.lines.clone();
    gift_lines.extend(closing_gifts(&gifts));
    let expected_members = visits.members_per_grade();
    let expected_province = members_per_province_and_grade(&visits);
    let expected_totals = gifts.gift_totals();
    let expected_windows = hourly_windows(&gifts);
    // A user counted in two lanes would show here: the topic is unkeyed.
    let member_total: i64 = expected_members.values().sum();

    let url = Server::Mysql.fresh_database("scale");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &brokers, &url);
    let logs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.log")))
        .collect();
    let owns_partitions = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("lane opens"))
    };
    let members_now = || count(&url, &Server::Mysql.sum("members", "grade_members"));

    // The collectors go on producing while the processes run, so the
    // kill below finds records forwarded but not yet checkpointed. The
    // last third of the visits and the gifts come only after the kill: on
    // a loaded machine the group can take longer to settle than the
    // members take to count what was produced, and a member must die with
    // work left.
    let (after_kill, kill_done) = std::sync::mpsc::channel::<()>();
    let collectors = {
        let (brokers, visits) = (brokers.clone(), visits.lines.clone());
        std::thread::spawn(move || {
            let (before, after) = visits.split_at(visits.len() * 2 / 3);
            produce_round_robin(&brokers, VISITS, 4, before, 8);
            // Also goes on if the test failed before the kill.
            let _ = kill_done.recv();
            produce_round_robin(&brokers, VISITS, 4, after, 4);
            produce_round_robin(&brokers, GIFTS, GIFT_PARTITIONS, &gift_lines, 4);
        })
    };
    let mut members: Vec<_> = logs[..3]
        .iter()
        .map(|log| spawn_run(&config, &[], log))
        .collect();
    for log in &logs[..3] {
        wait_until(
            Duration::from_secs(120),
            "a member to get partitions",
            log,
            || {
                broker_up();
                owns_partitions(log)
            },
        );
    }
    wait_until(
        Duration::from_secs(120),
        "members to be counted",
        &logs[1],
        || {
            broker_up();
            members_now() > member_total / 10
        },
    );
    // The kill comes between rebalances: the mock coordinator aborts when
    // a group leader dies between its JoinGroup and its SyncGroup.
    wait_until(
        Duration::from_secs(120),
        "the group to settle",
        &logs[0],
        || {
            broker_up();
            let held: Option<usize> = logs[..3].iter().map(|log| holds(log)).sum();
            held == Some(ALL_PARTITIONS)
        },
    );
    // The victim forwards visits as it dies, if a member does: its first
    // stage then has records on the internal topic that its checkpoint
    // does not cover, which the member that resumes it forwards again.
    let victim = (0..3).find(|&i| forwarding(&logs[i])).unwrap_or(1);
    let mut killed = members.remove(victim);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let _ = after_kill.send(());
    // A fourth member joins later; the victim's partitions go to the
    // others once its session expires, and resume from its checkpoints.
    members.push(spawn_run(&config, &[], &logs[3]));
    let done = || {
        pairs(&url, MEMBERS) == expected_members
            && labelled(&url, PROVINCE_MEMBERS) == expected_province
            && pairs(&url, TOTALS) == expected_totals
            && pairs(&url, WINDOWS) == expected_windows
    };
    collectors.join().unwrap();
    // Until exact, or the asserts below say how far off it is.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !done() && std::time::Instant::now() < deadline {
        broker_up();
        std::thread::sleep(Duration::from_millis(500));
    }
    let survivors = (0..4).filter(|&i| i != victim);
    for (process, i) in members.iter_mut().zip(survivors) {
        stop_and_wait(process, "TERM", &logs[i]);
    }
    // Nothing more arrived with the last checkpoints.
    assert_eq!(pairs(&url, MEMBERS), expected_members);
    assert_eq!(labelled(&url, PROVINCE_MEMBERS), expected_province);
    assert_eq!(pairs(&url, TOTALS), expected_totals);
    assert_eq!(pairs(&url, WINDOWS), expected_windows);
    let forwarded = logs.iter().any(|log| count_in(log, internal) > 0);
    assert!(forwarded, "the internal topic was read");
}

/// What a first stage forwards twice (its replay after a crash before its
/// checkpoint) counts once: gifts written straight into the internal
/// topic, the second half of them twice, as such a replay leaves them.
#[test]
fn records_a_replay_forwarded_again_count_once() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic(GIFTS, 2, 1).unwrap();
    let internal = format!("replay.repartition.{GIFTS}");
    cluster.create_topic(&internal, 4, 1).unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 4_000, 153, 0.0);
    let producer = producer(&brokers);
    let forward = |range: std::ops::Range<usize>| {
        for i in range {
            let line = &gifts.lines[i];
            let gift: serde_json::Value = serde_json::from_str(line).unwrap();
            let user = gift["user_id"].as_i64().unwrap();
            let source = format!("{GIFTS}:{}:{}", i % 2, i / 2);
            let headers = OwnedHeaders::new().insert(Header {
                key: "apiary.source",
                value: Some(&source),
            });
            let record = BaseRecord::to(&internal)
                .partition(key_partition(user, 4))
                .payload(line)
                .headers(headers);
            send(&producer, record);
        }
    };
    forward(0..4_000);
    forward(2_000..4_000);
    producer.flush(Duration::from_secs(60)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    let text = format!(
        "[plugins]\ndir = {:?}\n{}[source.kafka]\nbrokers = {brokers:?}\ngroup = \"replay\"\n\
         topics = [{GIFTS:?}]\n[source.kafka.repartition.{GIFTS}]\nby = \"user_id\"\n\
         partitions = 4\nreplication = 1\n[sink.sql]\nurl = \"sqlite://out.db\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
    );
    std::fs::write(&config, text).unwrap();
    let (out, _, stderr) = run_with_limit(
        apiary()
            .env("APIARY_LOG", "info")
            .arg("run")
            .arg(&config)
            .args(["--stop-when-idle", "3s"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "apiary run failed: {stderr}");
    let db = dir.path().join("out.db");
    assert_eq!(
        sqlite_pairs(
            &db,
            "SELECT gift_type, gift_total_amount FROM gift_type_totals"
        ),
        gifts.gift_totals()
    );
    assert!(stderr.contains("passed over"), "{stderr}");
}

/// Event time across the hop when source partitions fall quiet: one gets
/// no record at all, one a few at the start and then none. Once each has
/// read nothing for `idle-timeout`, its first stage says it is idle, and
/// the internal partitions close their windows at the busy partition's
/// watermark, as a Flink operator leaves idle inputs out.
#[test]
fn silent_and_idle_source_partitions_do_not_hold_windows_back() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic(GIFTS, 3, 1).unwrap();
    cluster
        .create_topic(&format!("quiet.repartition.{GIFTS}"), 4, 1)
        .unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 6_000, 154, 0.0);
    // A gift a day after the last, worth nothing, on the busy partition:
    // its watermark then passes every window of the gifts above.
    let closing = closing_gifts(&gifts).swap_remove(0);
    let producer = producer(&brokers);
    for (i, line) in gifts.lines.iter().chain([&closing]).enumerate() {
        // Partition 1 gets the first 500 gifts; partition 2 none.
        let partition = if i < 500 { 1 } else { 0 };
        send(
            &producer,
            BaseRecord::to(GIFTS).partition(partition).payload(line),
        );
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let config = dir.path().join("pipeline.toml");
    let text = format!(
        "[plugins]\ndir = {:?}\n\
         [plugins.params.gift-windows]\nsize = \"1h\"\nslide = \"1h\"\n{}\
         [source.kafka]\nbrokers = {brokers:?}\ngroup = \"quiet\"\n\
         topics = [{GIFTS:?}]\n[source.kafka.repartition.{GIFTS}]\nby = \"user_id\"\n\
         partitions = 4\nreplication = 1\n[sink.sql]\nurl = \"sqlite://{}\"\n\
         interval = \"300ms\"\n[time]\nallowed-lateness = \"3h\"\nidle-timeout = \"2s\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
        db.display(),
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("apiary.log");
    let mut run = spawn_run(&config, &[], &log);
    let expected = hourly_windows(&gifts);
    // The tables exist once the lanes open.
    wait_until(Duration::from_secs(60), "the lanes to open", &log, || {
        count_in(&log, "lane opens") > 0
    });
    let windows = || sqlite_pairs(&db, WINDOWS);
    wait_until(
        Duration::from_secs(120),
        "every window to close",
        &log,
        || windows() == expected,
    );
    stop_and_wait(&mut run, "TERM", &log);
    // Nothing more closed with the last checkpoints: the closing gift's
    // window stays open.
    assert_eq!(windows(), expected);
}

/// A record too large for one message to the internal topic (the
/// producer's `message.max.bytes`) is a dead letter of the first stage's
/// parser, and the hop goes on. (Before, the producer refused it and the
/// run stopped, again at every restart.)
#[test]
fn a_record_too_large_to_forward_is_a_dead_letter() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic(GIFTS, 1, 1).unwrap();
    cluster
        .create_topic(&format!("large.repartition.{GIFTS}"), 4, 1)
        .unwrap();
    let gifts = generate(Topic::LiveGiftTotal, 2_000, 155, 0.0);
    let mut large: serde_json::Value = serde_json::from_str(&gifts.lines[0]).unwrap();
    large["pad"] = "x".repeat(600_000).into();
    let large = large.to_string();
    let producer = producer(&brokers);
    let (before, after) = gifts.lines.split_at(1_000);
    for line in before.iter().chain([&large]).chain(after) {
        send(&producer, BaseRecord::to(GIFTS).payload(line));
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    let text = format!(
        "[plugins]\ndir = {:?}\n{}[source.kafka]\nbrokers = {brokers:?}\ngroup = \"large\"\n\
         topics = [{GIFTS:?}]\n[source.kafka.properties]\n\"message.max.bytes\" = \"500000\"\n\
         [source.kafka.repartition.{GIFTS}]\nby = \"user_id\"\n\
         partitions = 4\nreplication = 1\n[sink.sql]\nurl = \"sqlite://out.db\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
    );
    std::fs::write(&config, text).unwrap();
    run_until_quiet(&config, "3s");
    let db = dir.path().join("out.db");
    assert_eq!(sqlite_pairs(&db, TOTALS), gifts.gift_totals());
    let dead = sqlite_text(
        &db,
        "SELECT record_offset || ' ' || plugin || ': ' || reason FROM apiary_dead_letter",
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].starts_with("1000 seed-json-parser: a record of ")
            && dead[0].contains("does not fit one message to repartition topic"),
        "{dead:?}"
    );
}
