//! Kafka helpers for the tests: topics on the test broker, producing
//! generated records, reading a topic back.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The test broker (tansu, sqlite engine, started by `scripts/services`).
pub fn broker() -> String {
    std::env::var("APIARY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An admin client of the test broker.
fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .expect("admin client")
}

/// A fresh topic with `partitions` partitions, named after `prefix`.
pub fn create_topic(prefix: &str, partitions: i32) -> String {
    create_topic_with(prefix, partitions, &[])
}

/// [`create_topic`] with topic `configs` (name, value).
pub fn create_topic_with(prefix: &str, partitions: i32, configs: &[(&str, &str)]) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000);
    let admin = admin();
    let topic = configs.iter().fold(
        NewTopic::new(&name, partitions, TopicReplication::Fixed(1)),
        |topic, (key, value)| topic.set(key, value),
    );
    let results = runtime()
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test broker at {} (run scripts/services start): {e}",
                broker()
            )
        });
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("broker refused to create topic {t}: {e}"));
    }
    name
}

/// Topic `topic`'s configuration `name`, as the broker describes it.
pub fn topic_config(topic: &str, name: &str) -> Option<String> {
    let admin = admin();
    let results = runtime()
        .block_on(admin.describe_configs(
            [&rdkafka::admin::ResourceSpecifier::Topic(topic)],
            &AdminOptions::new(),
        ))
        .unwrap();
    results
        .into_iter()
        .find_map(|r| r.unwrap().get(name).and_then(|e| e.value.clone()))
}

/// Produces `lines` to `topic`, keyed by line number so they spread over
/// the partitions, and waits until the broker has them all.
pub fn produce(topic: &str, lines: &[String]) {
    let records: Vec<(Vec<u8>, Vec<u8>)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| (i.to_string().into_bytes(), line.as_bytes().to_vec()))
        .collect();
    produce_keyed(topic, &records);
}

/// Produces `(key, value)` records to `topic` and waits until the broker
/// has them all.
pub fn produce_keyed(topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("all records delivered");
}

/// Reads `topic` from the start until `count` records arrived or `limit`
/// passed.
pub fn read_topic(topic: &str, count: usize, limit: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "45000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut messages = Vec::new();
    while messages.len() < count && started.elapsed() < limit {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            messages.push(message.detach());
        }
    }
    messages
}

/// The value of header `name` of a message, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
