//! Dead letters produced to a Kafka topic: the refused record's own key and
//! value, and where it came from and why in headers.
//!
//! A letter's key and value are cut to fit both the producer's
//! `message.max.bytes` and the topic's `max.message.bytes`, as the broker
//! describes it: a record can be larger than what either takes (a source
//! topic that allows larger messages, or `[batch] max-record-bytes`), and
//! one refused message would otherwise fail every checkpoint after it.
//! The SQL sink's `apiary_dead_letter` keeps the whole letter.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::OnceCell;

use super::kafka::{idempotent, message_bytes, send_all, wire_bytes};
use super::{Output, Pending};
use crate::config::{KafkaSource, PipelineConfig};
use crate::model::DeadLetter;

/// A producer of dead letters to one topic
/// (`[source.kafka] dead-letter-topic`).
pub struct DeadLetterTopic {
    producer: FutureProducer,
    /// Asks the broker for the topic's `max.message.bytes`.
    admin: AdminClient<DefaultClientContext>,
    topic: String,
    /// The producer's `message.max.bytes`.
    producer_bytes: usize,
    /// The topic's `max.message.bytes`, once the broker has described the
    /// topic (`None`: it sets none of its own).
    topic_bytes: OnceCell<Option<usize>>,
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
        let config = idempotent(source.client_config());
        let producer_bytes = message_bytes(&config).context("[source.kafka.properties]")?;
        let producer = config
            .create()
            .context("cannot create the dead-letter producer")?;
        let admin = source
            .client_config()
            .create()
            .context("cannot create a Kafka admin client for the dead-letter topic")?;
        Ok(Self {
            producer,
            admin,
            topic: topic.to_owned(),
            producer_bytes,
            topic_bytes: OnceCell::new(),
        })
    }

    /// Produces every dead letter and waits until the broker has them all.
    pub async fn send(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let most = self.message_bytes().await;
        let messages: Vec<Message> = letters
            .iter()
            .map(|letter| Message::of(letter, most))
            .collect();
        let records = messages.iter().map(|message| {
            let headers = message.headers.iter().fold(
                OwnedHeaders::new_with_capacity(message.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            );
            let record = FutureRecord::to(&self.topic)
                .payload(message.value)
                .headers(headers);
            match message.key {
                Some(key) => record.key(key),
                None => record,
            }
        });
        send_all(&self.producer, records, "dead-letter topic").await
    }

    /// The most bytes one letter may take: the producer's limit, and the
    /// topic's once the broker has described it. A topic the broker cannot
    /// describe yet (it is created by the first letter) is asked about again
    /// with the next letters.
    async fn message_bytes(&self) -> usize {
        let topic = match self.topic_bytes.get() {
            Some(&described) => described,
            None => match topic_message_bytes(&self.admin, &self.topic).await {
                Ok(described) => {
                    let _ = self.topic_bytes.set(described);
                    described
                }
                Err(e) => {
                    tracing::debug!(topic = %self.topic, "cannot describe the dead-letter topic: {e:#}");
                    None
                }
            },
        };
        topic.map_or(self.producer_bytes, |topic| topic.min(self.producer_bytes))
    }
}

/// `topic`'s `max.message.bytes` as the broker describes the topic, if it
/// sets one.
async fn topic_message_bytes(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<Option<usize>> {
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await?;
    for result in results {
        let resource = result?;
        if let Some(value) = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
        {
            let bytes = value.trim().parse().with_context(|| {
                format!("the broker's `max.message.bytes` of `{topic}`: `{value}`")
            })?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// A dead letter as one message: its key and value, cut to fit if they
/// must be, and where it came from and why in headers.
#[derive(Debug)]
struct Message<'a> {
    key: Option<&'a [u8]>,
    value: &'a [u8],
    headers: Vec<(&'static str, String)>,
}

impl<'a> Message<'a> {
    /// `letter` within `message_bytes`: when it does not fit, the value's
    /// first bytes are kept, then the key's, and `apiary.value-bytes` (and
    /// `apiary.key-bytes` if the key was cut) give their whole lengths.
    fn of(letter: &'a DeadLetter, message_bytes: usize) -> Self {
        let mut headers = vec![
            ("apiary.topic", letter.stream.clone()),
            ("apiary.partition", letter.partition.to_string()),
            ("apiary.offset", letter.offset.to_string()),
            ("apiary.plugin", letter.plugin.clone()),
            ("apiary.reason", letter.reason.clone()),
        ];
        let (key, value) = (letter.key.as_deref(), &letter.value[..]);
        let key_len = key.map_or(0, <[u8]>::len);
        let size = |headers: &[(&str, String)], data: usize| {
            wire_bytes(
                data,
                headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            )
        };
        if size(&headers, key_len + value.len()) <= message_bytes {
            return Self {
                key,
                value,
                headers,
            };
        }
        headers.push(("apiary.key-bytes", key_len.to_string()));
        headers.push(("apiary.value-bytes", value.len().to_string()));
        let room = message_bytes.saturating_sub(size(&headers, 0));
        let kept_key = key_len.min(room);
        if kept_key == key_len {
            headers.retain(|(name, _)| *name != "apiary.key-bytes");
        }
        Self {
            key: key.map(|k| &k[..kept_key]),
            value: &value[..value.len().min(room - kept_key)],
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Message<'_> {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn letter(key: usize, value: usize) -> DeadLetter {
        DeadLetter {
            stream: "gifts".into(),
            partition: 3,
            offset: 12,
            key: (key > 0).then(|| vec![b'k'; key]),
            value: vec![b'v'; value],
            plugin: "seed-json-parser".into(),
            reason: "not JSON".into(),
        }
    }

    #[test]
    fn a_letter_that_fits_is_whole_and_a_larger_one_keeps_its_key_and_first_bytes() {
        let small = letter(10, 1000);
        let whole = Message::of(&small, 1_000_000);
        assert_eq!(
            (whole.key.map(<[u8]>::len), whole.value.len()),
            (Some(10), 1000)
        );
        assert_eq!(whole.header("apiary.value-bytes"), None);
        assert_eq!(whole.header("apiary.offset"), Some("12"));

        let large = letter(10, 2_000_000);
        let cut = Message::of(&large, 1_000_000);
        assert_eq!(cut.key.map(<[u8]>::len), Some(10));
        assert_eq!(cut.header("apiary.key-bytes"), None);
        assert_eq!(cut.header("apiary.value-bytes"), Some("2000000"));
        assert!(cut.value.len() > 990_000 && cut.value.len() < 999_800);

        // A key larger than the message: it is cut too, the value empty.
        let huge_key = letter(3_000_000, 5);
        let cut = Message::of(&huge_key, 1_000_000);
        assert_eq!(cut.value.len(), 0);
        assert_eq!(cut.header("apiary.key-bytes"), Some("3000000"));
        assert!(cut.key.map_or(0, <[u8]>::len) > 990_000);
    }
}
