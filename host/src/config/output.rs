//! `[output]`: where rule outputs go besides the SQL sink.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[output]`: rule outputs routed to other systems, by output name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputSection {
    /// `[output.kafka.<output>]`: outputs produced to Kafka topics.
    #[serde(default)]
    pub kafka: BTreeMap<String, KafkaOutput>,
}

/// `[output.kafka.<output>]`: a rule output produced to a Kafka topic, one
/// JSON record per row and checkpoint, instead of merged into a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaOutput {
    /// The topic.
    pub topic: String,
    /// Columns whose values make the record key (a JSON object); default:
    /// the output's primary key.
    pub key: Option<Vec<String>>,
    /// Bootstrap servers; default: `[source.kafka] brokers`, with its
    /// properties.
    pub brokers: Option<String>,
    /// librdkafka properties for this output's producer; they win over
    /// the source's.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}
