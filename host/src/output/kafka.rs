//! Rule outputs produced to Kafka topics (`[output.kafka.<output>]`), and
//! the producing shared with the dead-letter topic.
//!
//! Delivery is at least once: a checkpoint's rows are produced, by an
//! idempotent producer (a retry never duplicates), before the checkpoint
//! that covers their records commits; a crash before that commit makes the
//! lane replay those records and produce their rows again. Each record
//! names the lane and the checkpoint's end offset in headers
//! (`apiary.lane`, `apiary.offset`), so a consumer can tell a replay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{Output, Pending};
use crate::config::{KafkaOutput, PipelineConfig};
use crate::model::TableSchema;
use crate::model::schema::value_json;

/// The Kafka outputs of a pipeline, produced through one producer.
pub struct KafkaOutputs {
    producer: FutureProducer,
    outputs: BTreeMap<String, KafkaOutput>,
    /// Per output: indices of its key columns (set by `check`).
    keys: std::sync::Mutex<BTreeMap<String, Vec<usize>>>,
}

impl Output for KafkaOutputs {
    fn routes(&self, output: &str) -> bool {
        self.outputs.contains_key(output)
    }

    fn check(&self, tables: &[Arc<TableSchema>]) -> anyhow::Result<()> {
        let mut keys = BTreeMap::new();
        for (name, output) in &self.outputs {
            let Some(table) = tables.iter().find(|t| &t.output == name) else {
                let mut known: Vec<&str> = tables.iter().map(|t| t.output.as_str()).collect();
                known.sort();
                anyhow::bail!(
                    "`output.kafka.{name}` names no plugin output (outputs: {})",
                    known.join(", ")
                );
            };
            let columns =
                match &output.key {
                    None => table.key.clone(),
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            table.columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                            anyhow::anyhow!(
                                "`output.kafka.{name}.key` names `{n}`, which output `{name}` \
                                 of plugin `{}` does not have",
                                table.plugin
                            )
                        })
                        })
                        .collect::<anyhow::Result<_>>()?,
                };
            keys.insert(name.clone(), columns);
        }
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    fn write<'a>(&'a self, pending: Pending<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.produce(pending))
    }
}

impl KafkaOutputs {
    /// The outputs `config` routes to Kafka, if any.
    pub fn from_config(config: &PipelineConfig) -> anyhow::Result<Option<Self>> {
        let outputs = &config.output.kafka;
        let Some(first) = outputs.values().next() else {
            return Ok(None);
        };
        let mut client = match &config.source.kafka {
            Some(source) => source.client_config(),
            None => rdkafka::ClientConfig::new(),
        };
        // One producer serves every output: they share brokers and settings.
        if let Some(brokers) = &first.brokers {
            client.set("bootstrap.servers", brokers);
        }
        for output in outputs.values() {
            for (key, value) in &output.properties {
                client.set(key, value);
            }
        }
        let producer = idempotent(client)
            .create()
            .context("cannot create the Kafka output producer")?;
        Ok(Some(Self {
            producer,
            outputs: outputs.clone(),
            keys: Default::default(),
        }))
    }

    async fn produce(&self, pending: Pending<'_>) -> anyhow::Result<()> {
        let lane = pending.lane.to_string();
        let offset = pending.next_offset.to_string();
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut records = Vec::new();
        for (schema, _, rows) in pending.rows {
            let output = &self.outputs[&schema.output];
            let key_columns = keys.get(&schema.output).unwrap_or(&schema.key);
            for row in rows {
                let key: serde_json::Map<_, _> = key_columns
                    .iter()
                    .map(|&i| (schema.columns[i].name.clone(), value_json(&row[i])))
                    .collect();
                let key = serde_json::Value::Object(key).to_string();
                let value = schema.row_json(row).to_string();
                records.push((output.topic.as_str(), key, value));
            }
        }
        let sends = records.iter().map(|(topic, key, value)| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "apiary.lane",
                    value: Some(&lane),
                })
                .insert(Header {
                    key: "apiary.offset",
                    value: Some(&offset),
                });
            FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .headers(headers)
        });
        send_all(&self.producer, sends, "Kafka output").await
    }
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_BYTES: usize = 1_000_000;

/// Room for a message's framing in its batch, beyond its key, value and
/// headers (librdkafka counts 97 bytes at most).
const FRAMING_BYTES: usize = 256;

/// The most bytes one message of a producer made from `config` may take
/// (its `message.max.bytes`): librdkafka refuses a larger one.
pub fn message_bytes(config: &rdkafka::ClientConfig) -> anyhow::Result<usize> {
    match config.get("message.max.bytes") {
        Some(text) => text
            .trim()
            .parse()
            .with_context(|| format!("`message.max.bytes`: `{text}` is not a number of bytes")),
        None => Ok(DEFAULT_MESSAGE_BYTES),
    }
}

/// What a message of `key_and_value` bytes with `headers` (name, value)
/// takes against `message.max.bytes`, framing included; a header costs its
/// name, its value and two varint lengths.
pub fn wire_bytes<'a>(
    key_and_value: usize,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> usize {
    let headers: usize = headers
        .into_iter()
        .map(|(name, value)| name.len() + value.len() + 10)
        .sum();
    FRAMING_BYTES + headers + key_and_value
}

/// `config` set for an idempotent producer that waits for every replica:
/// a retry never duplicates a record the broker has.
pub fn idempotent(mut config: rdkafka::ClientConfig) -> rdkafka::ClientConfig {
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    config
}

/// Produces every record and waits until the broker has them all; `what`
/// names the destination in errors.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = FutureRecord<'a, [u8], [u8]>>,
    what: &str,
) -> anyhow::Result<()> {
    let mut deliveries = Vec::new();
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, record)) => {
                    return Err(e)
                        .with_context(|| format!("cannot produce to {what} `{}`", record.topic));
                }
            }
        }
    }
    for delivery in deliveries {
        delivery
            .await
            .with_context(|| format!("{what} producer closed"))?
            .map_err(|(e, _)| e)
            .with_context(|| format!("{what} refused a record"))?;
    }
    Ok(())
}
