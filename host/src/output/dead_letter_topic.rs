//! Dead letters produced to a Kafka topic: the refused record's own key and
//! value, and where it came from and why in headers.

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka::{idempotent, send_all};
use super::{Output, Pending};
use crate::config::{KafkaSource, PipelineConfig};
use crate::model::DeadLetter;

/// A producer of dead letters to one topic
/// (`[source.kafka] dead-letter-topic`).
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl Output for DeadLetterTopic {
    fn write<'a>(&'a self, pending: Pending<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(pending.dead_letters))
    }
}

impl DeadLetterTopic {
    /// The topic `config` names, if any.
    pub fn from_config(config: &PipelineConfig) -> anyhow::Result<Option<Self>> {
        match &config.source.kafka {
            Some(kafka) => match &kafka.dead_letter_topic {
                Some(topic) => Ok(Some(Self::new(kafka, topic)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A producer to `topic` on the source's cluster, with its security
    /// settings; idempotent, so retries do not duplicate.
    pub fn new(source: &KafkaSource, topic: &str) -> anyhow::Result<Self> {
        let producer = idempotent(source.client_config())
            .create()
            .context("cannot create the dead-letter producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Produces every dead letter and waits until the broker has them all.
    pub async fn send(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        let located: Vec<(String, String)> = letters
            .iter()
            .map(|l| (l.partition.to_string(), l.offset.to_string()))
            .collect();
        let records = letters
            .iter()
            .zip(&located)
            .map(|(letter, (partition, offset))| {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "apiary.topic",
                        value: Some(&letter.stream),
                    })
                    .insert(Header {
                        key: "apiary.partition",
                        value: Some(partition),
                    })
                    .insert(Header {
                        key: "apiary.offset",
                        value: Some(offset),
                    })
                    .insert(Header {
                        key: "apiary.plugin",
                        value: Some(&letter.plugin),
                    })
                    .insert(Header {
                        key: "apiary.reason",
                        value: Some(&letter.reason),
                    });
                let record = FutureRecord::to(&self.topic)
                    .payload(&letter.value[..])
                    .headers(headers);
                match &letter.key {
                    Some(key) => record.key(&key[..]),
                    None => record,
                }
            });
        send_all(&self.producer, records, "dead-letter topic").await
    }
}
