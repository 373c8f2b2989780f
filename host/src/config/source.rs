//! `[source]` and `[batch]`: where records come from and how they are cut
//! into batches.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::one_or_many;
use crate::model::KeyField;

/// `[source]`: the pipeline's input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceSection {
    /// JSON-lines files: `[source.file]`, or `[[source.file]]` for several.
    #[serde(default, deserialize_with = "one_or_many")]
    pub file: Vec<FileSource>,
    /// A Kafka consumer group.
    pub kafka: Option<KafkaSource>,
}

/// `[source.kafka]`: topics read by a consumer group; every assigned
/// partition becomes a lane.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSource {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group id; processes with the same group share the partitions.
    pub group: String,
    /// Physical topics to read: a list of names, or a table mapping each
    /// physical topic to the logical topic a parser declares.
    pub topics: KafkaTopics,
    /// Where a partition without a checkpoint starts.
    #[serde(default)]
    pub start: StartOffset,
    /// Who decides which partitions this process reads.
    #[serde(default)]
    pub assignment: Assignment,
    /// How long the broker may hold a fetch waiting for data
    /// (`fetch.wait.max.ms`); short keeps batches flowing.
    #[serde(default = "default_fetch_wait", with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// How long the group waits for a silent member before handing its
    /// partitions to the others (`session.timeout.ms`).
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long a lane may have no room for its next batch before its
    /// partition is paused so the process's other partitions go on.
    #[serde(default = "default_pause_after", with = "humantime_serde")]
    pub pause_after: Duration,
    /// Topic that refused records are also produced to, with the original
    /// key and value and the reason in headers.
    pub dead_letter_topic: Option<String>,
    /// librdkafka properties passed through as they are (`security.protocol`,
    /// `sasl.*`, `ssl.*`, …); they override Apiary's own settings.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Logical topics whose events are re-keyed through an internal topic
    /// before the rules see them: `[source.kafka.repartition.<topic>]`.
    #[serde(default)]
    pub repartition: std::collections::BTreeMap<String, Repartition>,
}

/// `[source.kafka.repartition.<topic>]`: the topic's events reach the rules
/// through an internal topic keyed by an event field, so each key is in
/// exactly one lane however the source was partitioned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Repartition {
    /// The event field that keys it: `user_id` or `room_id`.
    pub by: KeyField,
    /// Partitions of the internal topic (its lanes downstream).
    #[serde(default = "default_repartition_partitions")]
    pub partitions: i32,
    /// The internal topic; default `<group>.repartition.<topic>`.
    pub topic: Option<String>,
    /// Replication factor the internal topic is created with; -1: the
    /// broker's default.
    #[serde(default = "default_replication")]
    pub replication: i32,
}

/// The topics of a Kafka source.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaTopics {
    /// Physical and logical names are the same.
    Names(Vec<String>),
    /// Physical name → logical name.
    Mapped(std::collections::BTreeMap<String, String>),
}

impl KafkaSource {
    /// The internal topic of logical topic `logical`'s repartition.
    pub fn internal_topic(&self, logical: &str) -> Option<String> {
        let repartition = self.repartition.get(logical)?;
        Some(
            repartition
                .topic
                .clone()
                .unwrap_or_else(|| format!("{}.repartition.{logical}", self.group)),
        )
    }

    /// Every physical topic the group reads, mapped to its logical topic:
    /// the configured ones and the internal topics of the repartitions.
    pub fn lane_topics(&self) -> KafkaTopics {
        if self.repartition.is_empty() {
            return self.topics.clone();
        }
        let mut map: std::collections::BTreeMap<String, String> = self
            .topics
            .physical()
            .into_iter()
            .map(|t| (t.to_owned(), self.topics.logical(t).to_owned()))
            .collect();
        for logical in self.repartition.keys() {
            if let Some(internal) = self.internal_topic(logical) {
                map.insert(internal, logical.clone());
            }
        }
        KafkaTopics::Mapped(map)
    }

    /// The librdkafka settings shared by the consumer and the producers:
    /// brokers, then the user's properties, which win.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

impl KafkaTopics {
    /// The physical topic names.
    pub fn physical(&self) -> Vec<&str> {
        match self {
            Self::Names(names) => names.iter().map(String::as_str).collect(),
            Self::Mapped(map) => map.keys().map(String::as_str).collect(),
        }
    }

    /// The logical topic of a physical one.
    pub fn logical<'a>(&'a self, physical: &'a str) -> &'a str {
        match self {
            Self::Names(_) => physical,
            Self::Mapped(map) => map.get(physical).map_or(physical, String::as_str),
        }
    }
}

impl<'de> Deserialize<'de> for KafkaTopics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopicsVisitor;

        impl<'de> Visitor<'de> for TopicsVisitor {
            type Value = KafkaTopics;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of topic names or a table of physical = logical names")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<KafkaTopics, S::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(KafkaTopics::Names)
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<KafkaTopics, M::Error> {
                Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(KafkaTopics::Mapped)
            }
        }

        deserializer.deserialize_any(TopicsVisitor)
    }
}

/// `assignment`: how partitions are spread over processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    /// Kafka's group protocol: processes with the same `group` split the
    /// partitions, and take over those of a process that dies.
    #[default]
    Group,
    /// This process reads every partition of its topics itself, with no
    /// group coordination (what Flink's Kafka source does): one process per
    /// pipeline, restarted by its supervisor. Partitions added later are not
    /// picked up until a restart.
    All,
}

/// Where a partition without a checkpoint starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartOffset {
    /// The oldest record still in the partition (the seed's choice).
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// One JSON-lines file read as a topic with a single partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSource {
    /// The file; each line is one raw record.
    pub path: PathBuf,
    /// The logical topic its records belong to (what a parser declares).
    pub topic: String,
}

/// `[batch]`: how many records cross into a plugin at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BatchSection {
    /// A batch closes at this many records...
    #[serde(default = "default_batch_records")]
    pub max_records: usize,
    /// ...or when its first record has waited this long...
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// ...or at this many bytes of record data (keys, values, headers); a
    /// larger record is a batch of its own.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// A record whose value is larger is a dead letter of its parser,
    /// keeping this many of its first bytes; a file source holds no more
    /// of a line than that.
    #[serde(default = "default_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_wait: default_batch_wait(),
            max_bytes: default_batch_bytes(),
            max_record_bytes: default_record_bytes(),
        }
    }
}

fn default_replication() -> i32 {
    -1
}

fn default_repartition_partitions() -> i32 {
    8
}

fn default_fetch_wait() -> Duration {
    Duration::from_millis(10)
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(45)
}

/// Long enough that a lane merely slower than the broker keeps librdkafka's
/// prefetched records (pausing drops them), short enough that the other
/// partitions hardly notice a stuck one.
fn default_pause_after() -> Duration {
    Duration::from_millis(500)
}

fn default_batch_records() -> usize {
    1024
}

fn default_batch_bytes() -> usize {
    8 << 20
}

fn default_record_bytes() -> usize {
    4 << 20
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(100)
}
