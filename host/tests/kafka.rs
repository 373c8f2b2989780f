//! The Kafka source against a real broker (tansu, sqlite engine, from
//! `scripts/services start`): totals, restarts, the dead-letter topic, an
//! unreachable broker. Crashes are tested in `mysql.rs` and `postgres.rs`
//! (kill -9) and `scale_out.rs` (processes of one group).

mod support;

use std::time::Duration;

use livestream_example::Topic;
use rdkafka::Message as _;
use support::kafka::{create_topic, create_topic_with, header, produce, read_topic, topic_config};
use support::process::{interrupt_and_wait, signal, spawn_run, wait_exit, wait_until};
use support::*;

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";

#[test]
fn totals_match_what_was_produced_and_bad_records_reach_the_dead_letter_topic() {
    let topic = create_topic("gifts", 4);
    let dead_topic = create_topic("dead", 1);
    let input = generate(Topic::LiveGiftTotal, 100_000, 21, 0.002);
    produce(&topic, &input.lines);

    let dir = tempfile::tempdir().unwrap();
    let extra = format!("dead-letter-topic = {dead_topic:?}");
    let config = kafka_config(dir.path(), &topic, &format!("{topic}-g"), &extra);
    run_until_quiet(&config, "15s");
    let db = dir.path().join("out.db");
    assert_eq!(sqlite_pairs(&db, TOTALS), input.gift_totals());
    assert_eq!(sqlite_committed(&db), 100_000);
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM apiary_dead_letter"),
        input.malformed.len() as i64
    );

    let dead = read_topic(&dead_topic, input.malformed.len(), Duration::from_secs(60));
    assert_eq!(dead.len(), input.malformed.len());
    let mut values: Vec<String> = dead
        .iter()
        .map(|m| {
            String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default()).into_owned()
        })
        .collect();
    let mut expected: Vec<String> = input
        .malformed
        .iter()
        .map(|&i| input.lines[i].clone())
        .collect();
    values.sort();
    expected.sort();
    assert_eq!(values, expected, "dead letters carry the original bytes");
    for message in &dead {
        assert_eq!(
            header(message, "apiary.topic").as_deref(),
            Some(topic.as_str())
        );
        assert_eq!(
            header(message, "apiary.plugin").as_deref(),
            Some("seed-json-parser")
        );
        assert!(
            !header(message, "apiary.reason")
                .unwrap_or_default()
                .is_empty()
        );
        assert!(
            header(message, "apiary.offset").is_some()
                && header(message, "apiary.partition").is_some()
        );
    }
}

/// A one-partition topic of `gifts` gifts keyed by their line number, with
/// a record of `bytes` bytes (not JSON, keyed `big`) at offset `gifts / 2`;
/// the topic, the gifts and the big record's value.
fn gifts_around_a_big_record(
    prefix: &str,
    gifts: usize,
    bytes: usize,
) -> (String, Generated, Vec<u8>) {
    let topic = create_topic(prefix, 1);
    let input = generate(Topic::LiveGiftTotal, gifts, 23, 0.0);
    let big: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = input
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| (i.to_string().into_bytes(), line.as_bytes().to_vec()))
        .collect();
    records.insert(gifts / 2, (b"big".to_vec(), big.clone()));
    support::kafka::produce_keyed(&topic, &records);
    (topic, input, big)
}

/// A refused record larger than the dead-letter producer's
/// `message.max.bytes` reaches the topic cut to its first bytes, with its
/// whole length in a header, and the run goes on; the table keeps it whole.
/// (Before the cut, the producer refused it and every checkpoint failed.)
#[test]
fn a_dead_letter_larger_than_a_message_reaches_the_topic_cut() {
    let (topic, input, big) = gifts_around_a_big_record("big-dead", 2_000, 800_000);
    let dead_topic = create_topic("big-dead-out", 1);

    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "dead-letter-topic = {dead_topic:?}\n\
         [source.kafka.properties]\n\"message.max.bytes\" = \"500000\""
    );
    let config = kafka_config(dir.path(), &topic, &format!("{topic}-g"), &extra);
    run_until_quiet(&config, "10s");
    let db = dir.path().join("out.db");
    assert_eq!(sqlite_pairs(&db, TOTALS), input.gift_totals());
    assert_eq!(sqlite_committed(&db), 2_001);
    assert_eq!(
        sqlite_count(
            &db,
            "SELECT LENGTH(record_value) FROM apiary_dead_letter WHERE record_offset = 1000"
        ),
        800_000
    );

    let dead = read_topic(&dead_topic, 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1);
    let message = &dead[0];
    let value = message.payload().unwrap_or_default();
    assert!(
        value.len() > 490_000 && value.len() < 500_000,
        "{} bytes",
        value.len()
    );
    assert_eq!(value, &big[..value.len()], "the first bytes, as read");
    assert_eq!(message.key(), Some(&b"big"[..]));
    assert_eq!(
        header(message, "apiary.value-bytes").as_deref(),
        Some("800000")
    );
    assert_eq!(header(message, "apiary.key-bytes"), None);
    assert_eq!(header(message, "apiary.offset").as_deref(), Some("1000"));
}

/// A dead-letter topic that allows less than the producer
/// (`max.message.bytes` set on the topic) gets letters cut to its own
/// limit, which the broker describes. (The test broker does not enforce the
/// limit; a Kafka broker refuses a larger message, and every checkpoint
/// after it would fail.)
#[test]
fn a_dead_letter_is_cut_to_the_topics_own_limit() {
    let (topic, input, big) = gifts_around_a_big_record("small-dead", 200, 400_000);
    let dead_topic = create_topic_with("small-dead-out", 1, &[("max.message.bytes", "100000")]);

    let dir = tempfile::tempdir().unwrap();
    let extra = format!("dead-letter-topic = {dead_topic:?}");
    let config = kafka_config(dir.path(), &topic, &format!("{topic}-g"), &extra);
    run_until_quiet(&config, "5s");
    let db = dir.path().join("out.db");
    assert_eq!(sqlite_pairs(&db, TOTALS), input.gift_totals());

    let dead = read_topic(&dead_topic, 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1);
    let value = dead[0].payload().unwrap_or_default();
    assert!(
        value.len() > 90_000 && value.len() < 100_000,
        "{} bytes",
        value.len()
    );
    assert_eq!(value, &big[..value.len()]);
    assert_eq!(
        header(&dead[0], "apiary.value-bytes").as_deref(),
        Some("400000")
    );
}

/// A repartition whose producer sends larger messages than a Kafka topic
/// takes by default creates its internal topic to take them too.
#[test]
fn a_repartition_topic_takes_what_its_producer_sends() {
    let topic = create_topic("wide", 2);
    let input = generate(Topic::LiveGiftTotal, 500, 25, 0.0);
    produce(&topic, &input.lines);
    let dir = tempfile::tempdir().unwrap();
    let group = format!("{topic}-g");
    let extra = "[source.kafka.repartition.live_gift_total]\n\
                 by = \"user_id\"\npartitions = 2\nreplication = 1\n\
                 [source.kafka.properties]\n\"message.max.bytes\" = \"5000000\"";
    let config = kafka_config(dir.path(), &topic, &group, extra);
    run_until_quiet(&config, "5s");
    assert_eq!(
        sqlite_pairs(&dir.path().join("out.db"), TOTALS),
        input.gift_totals()
    );
    let internal = format!("{group}.repartition.live_gift_total");
    assert_eq!(
        topic_config(&internal, "max.message.bytes").as_deref(),
        Some("5000000")
    );
}

#[test]
fn partitions_paused_and_resumed_at_every_stall_count_every_record_once() {
    let topic = create_topic("stalls", 4);
    let input = generate(Topic::LiveGiftTotal, 100_000, 27, 0.0);
    produce(&topic, &input.lines);
    let dir = tempfile::tempdir().unwrap();
    // A lane with no room at once has its partition paused: here, every
    // time its queue is full, so each resume must continue at the right
    // record. Small batches fill the queue (`QUEUE_BATCHES` of them) often.
    let config = kafka_config(
        dir.path(),
        &topic,
        &format!("{topic}-g"),
        "pause-after = \"0s\"\n[batch]\nmax-records = 256",
    );
    let address = free_address();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("[metrics]\nlisten = {address:?}\n{text}")).unwrap();
    let (db, log) = (dir.path().join("out.db"), dir.path().join("run.log"));
    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(300), "every record", &log, || {
        sqlite_committed(&db) == 100_000
    });
    let samples = scrape(&address);
    interrupt_and_wait(&mut child, &log);

    assert_eq!(sqlite_pairs(&db, TOTALS), input.gift_totals());
    let pauses: f64 = (0..4)
        .map(|p| samples[&format!("apiary_partition_pauses_total{{lane=\"{topic}[{p}]\"}}")])
        .sum();
    eprintln!("{pauses} partition pauses");
    assert!(pauses >= 4.0, "the partitions were paused {pauses} times");
}

#[test]
fn a_clean_stop_and_restart_counts_every_record_once() {
    let topic = create_topic("restart", 4);
    let first = generate(Topic::LiveGiftTotal, 60_000, 31, 0.0);
    let second = generate(Topic::LiveGiftTotal, 40_000, 32, 0.0);
    produce(&topic, &first.lines);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let config = kafka_config(dir.path(), &topic, &format!("{topic}-g"), "");
    let log = dir.path().join("first.log");

    let mut child = spawn_run(&config, &[], &log);
    wait_until(Duration::from_secs(120), "a first checkpoint", &log, || {
        sqlite_committed(&db) > 0
    });
    interrupt_and_wait(&mut child, &log);
    let stopped_at = sqlite_committed(&db);
    assert!(stopped_at > 0);

    produce(&topic, &second.lines);
    run_until_quiet(&config, "15s");
    assert_eq!(sqlite_committed(&db), 100_000);
    assert_eq!(
        sqlite_pairs(&db, TOTALS),
        add_totals(first.gift_totals(), second.gift_totals())
    );
}

#[test]
fn an_unreachable_broker_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(dir.path(), "live_gift_total", "g", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&support::kafka::broker(), "127.0.0.1:1");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&config, &[], &log);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(60),
        "the broker error twice",
        &log,
        || {
            read()
                .matches("cannot reach Kafka brokers at 127.0.0.1:1")
                .count()
                >= 2
        },
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "apiary keeps retrying: {}",
        read()
    );
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(30), &log);
    assert!(status.success(), "{}", read());
    assert!(!read().contains("panicked"));
}

#[test]
fn an_output_routed_to_kafka_carries_each_rows_changes_under_its_key() {
    let topic = create_topic("top-gifters", 2);
    let gifts = generate(Topic::LiveGiftTotal, 5_000, 171, 0.0);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gifts.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();
    let config = embedded_config(dir.path(), &[(&input, "live_gift_total")]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!(
        "interval = \"200ms\"\n[output.kafka.top_gifters]\ntopic = {topic:?}\nbrokers = {:?}\n",
        support::kafka::broker()
    );
    std::fs::write(&config, text).unwrap();
    run_until_idle(&config);

    // Every record is one user's change over one checkpoint; they add up
    // to the user's total.
    let records = read_topic(&topic, usize::MAX, Duration::from_secs(8));
    assert!(!records.is_empty(), "nothing reached {topic}");
    let mut totals: std::collections::BTreeMap<i64, i64> = Default::default();
    for record in &records {
        let key: serde_json::Value = serde_json::from_slice(record.key().unwrap()).unwrap();
        let row: serde_json::Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
        assert_eq!(key, serde_json::json!({"user_id": row["user_id"]}));
        assert!(
            header(record, "apiary.lane")
                .unwrap()
                .ends_with("gifts.jsonl[0]")
        );
        *totals.entry(row["user_id"].as_i64().unwrap()).or_default() +=
            row["gift_total_amount"].as_i64().unwrap();
    }
    let mut expected: std::collections::BTreeMap<i64, i64> = Default::default();
    for gift in gifts.valid() {
        *expected
            .entry(gift["user_id"].as_i64().unwrap())
            .or_default() += gift["gift_total_amount"].as_i64().unwrap();
    }
    assert_eq!(totals, expected);
    // Routed to Kafka, the output has no table.
    let db = dir.path().join("out.db");
    let tables = sqlite_text(&db, "SELECT name FROM sqlite_master WHERE type = 'table'");
    assert!(!tables.iter().any(|t| t == "top_gifters"), "{tables:?}");
}
