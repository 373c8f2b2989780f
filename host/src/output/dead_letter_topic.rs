//! Dead letters produced to a Kafka topic: the refused record's own key and
//! value, and where it came from and why in headers.
//!
//! A letter's key and value are cut to fit the producer's
//! `message.max.bytes`: a record can be larger than what the producer takes
//! (a topic that allows larger messages, or `[batch] max-record-bytes`),
//! and one refused message would otherwise fail every checkpoint after it.
//! The SQL sink's `apiary_dead_letter` keeps the whole letter.

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka::{idempotent, message_bytes, send_all, wire_bytes};
use super::{Output, Pending};
use crate::config::{KafkaSource, PipelineConfig};
use crate::model::DeadLetter;

/// A producer of dead letters to one topic
/// (`[source.kafka] dead-letter-topic`).
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    /// The producer's `message.max.bytes`.
    message_bytes: usize,
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
        let message_bytes = message_bytes(&config).context("[source.kafka.properties]")?;
        let producer = config
            .create()
            .context("cannot create the dead-letter producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            message_bytes,
        })
    }

    /// Produces every dead letter and waits until the broker has them all.
    pub async fn send(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        let messages: Vec<Message> = letters
            .iter()
            .map(|letter| Message::of(letter, self.message_bytes))
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
