//! Dead letters produced to a Kafka topic: the refused record's own key and
//! value, and where it came from and why in headers.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use futures_util::future::BoxFuture;

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
        let mut config = source.client_config();
        config.set("enable.idempotence", "true");
        config.set("acks", "all");
        config.set("linger.ms", "5");
        let producer = config
            .create()
            .context("cannot create the dead-letter producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Produces every dead letter and waits until the broker has them all.
    pub async fn send(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut deliveries = Vec::with_capacity(letters.len());
        for letter in letters {
            let offset = letter.offset.to_string();
            let partition = letter.partition.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "apiary.topic",
                    value: Some(&letter.stream),
                })
                .insert(Header {
                    key: "apiary.partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "apiary.offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "apiary.plugin",
                    value: Some(&letter.plugin),
                })
                .insert(Header {
                    key: "apiary.reason",
                    value: Some(&letter.reason),
                });
            let mut record = FutureRecord::to(&self.topic)
                .payload(&letter.value[..])
                .headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(&key[..]);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => {
                        return Err(e).with_context(|| {
                            format!("cannot produce to dead-letter topic `{}`", self.topic)
                        });
                    }
                }
            }
        }
        for delivery in deliveries {
            delivery
                .await
                .context("dead-letter producer closed")?
                .map_err(|(e, _)| e)
                .with_context(|| format!("dead-letter topic `{}` refused a record", self.topic))?;
        }
        Ok(())
    }
}
