//! Pipeline configuration: the TOML file given to `apiary run` and `apiary check`.
//!
//! Every table rejects keys it does not know, so a typo stops the pipeline
//! with the key's name instead of being silently ignored. Relative paths are
//! resolved against the directory of the configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::ConfigError;

mod dashboard;
mod hbase;
mod lookup;
mod output;
mod plugins;
mod sink;
mod source;

pub use dashboard::{ChartKind, DashboardSection, PIPELINE_PANEL, Panel};
pub use hbase::{HBaseOutput, HBaseSection};
pub use lookup::{LookupCache, LookupTable};
pub use output::{KafkaOutput, OutputSection};
pub use plugins::{PluginLimits, PluginParams, PluginsSection, params_of};
pub use sink::{SinkSection, SqlIndex, SqlSink};
pub use source::{
    Assignment, BatchSection, FileSource, KafkaSource, KafkaTopics, SourceSection, StartOffset,
};

/// A whole pipeline: where records come from, which plugins run, where rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineConfig {
    /// General settings.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// The plugin directory.
    pub plugins: PluginsSection,
    /// Where records come from.
    pub source: SourceSection,
    /// Where rows go.
    pub sink: SinkSection,
    /// Batching of records handed to plugins.
    #[serde(default)]
    pub batch: BatchSection,
    /// Dimension tables served to the `lookup` import, by table name.
    #[serde(default)]
    pub lookup: std::collections::BTreeMap<String, LookupTable>,
    /// The HBase REST gateway, for lookups and outputs.
    pub hbase: Option<HBaseSection>,
    /// Rule outputs routed to other systems.
    #[serde(default)]
    pub output: OutputSection,
    /// Where Prometheus scrapes the metrics.
    pub metrics: Option<MetricsSection>,
    /// Event time: how watermarks follow the events.
    #[serde(default)]
    pub time: TimeSection,
    /// The live dashboard, served when configured.
    pub dashboard: Option<DashboardSection>,
    /// The file this configuration was read from.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[time]`: how each lane's watermark follows event time. The watermark
/// is the largest event time the lane has seen minus `allowed-lateness`
/// minus 1 ms (Flink's bounded out-of-orderness): events up to that much
/// out of order are never late.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeSection {
    /// How far out of order events may come and still count.
    #[serde(default, with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A lane that reads nothing for this long has its watermark moved on
    /// by the processing time that passes, so its windows and timers
    /// close; a repartition's first stage instead tells the second it is
    /// idle, which then leaves it out. Off by default: what then fires
    /// depends on when records arrive, not only on what they say, so runs
    /// are no longer repeatable.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// A record with an event more than this ahead of the machine's clock
    /// is refused (a dead letter of its parser) instead of moving the
    /// watermark: one record from a collector with a wrong clock would
    /// otherwise close every open window and make every later event late,
    /// for good, as the watermark never goes back. `"0s"` turns the check
    /// off. Default one day, beyond any time zone mix-up.
    #[serde(default = "default_max_ahead", with = "humantime_serde")]
    pub max_ahead: Duration,
}

impl Default for TimeSection {
    fn default() -> Self {
        Self {
            allowed_lateness: Duration::ZERO,
            idle_timeout: None,
            max_ahead: default_max_ahead(),
        }
    }
}

fn default_max_ahead() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[metrics]`: serve Prometheus metrics at `http://<listen>/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsSection {
    /// Address to listen on, e.g. `127.0.0.1:9464`.
    pub listen: String,
}

/// `[pipeline]`: general settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineSection {
    /// Name of the pipeline; keys its stored offsets and state. Defaults to
    /// the configuration file's name without extension.
    pub name: Option<String>,
}

/// Longest pipeline name, source file path (as resolved) or Kafka topic,
/// in bytes.
pub const MAX_STREAM_BYTES: usize = 191;

impl PipelineConfig {
    /// Reads, parses and validates a configuration file, resolving relative
    /// paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: PipelineConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                message: source.to_string(),
            })?;
        // Absolute paths key file lanes: the same file must resume the same
        // lane wherever the pipeline is started from.
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = parent.canonicalize().unwrap_or_else(|_| parent.to_owned());
        config.resolve_paths(&base);
        config.expand_env(path)?;
        if config.pipeline.name.is_none() {
            config.pipeline.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        config.validate(path)?;
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// The pipeline's name, which keys its offsets and state.
    pub fn name(&self) -> &str {
        self.pipeline.name.as_deref().unwrap_or("apiary")
    }

    /// Replaces `${VAR}` with the environment variable's value in the
    /// values that carry secrets or addresses: the sink URL and the Kafka
    /// brokers, group and properties, and the dashboard's token.
    fn expand_env(&mut self, path: &Path) -> Result<(), ConfigError> {
        let expand = |key: &str, value: &mut String| {
            *value = expand_env(value).map_err(|var| ConfigError::Invalid {
                path: path.to_owned(),
                key: key.to_owned(),
                message: format!("uses ${{{var}}}, which is not set in the environment"),
            })?;
            Ok::<(), ConfigError>(())
        };
        expand("sink.sql.url", &mut self.sink.sql.url)?;
        if let Some(hbase) = &mut self.hbase {
            expand("hbase.url", &mut hbase.url)?;
        }
        if let Some(token) = self.dashboard.as_mut().and_then(|d| d.token.as_mut()) {
            expand("dashboard.token", token)?;
        }
        if let Some(kafka) = &mut self.source.kafka {
            expand("source.kafka.brokers", &mut kafka.brokers)?;
            expand("source.kafka.group", &mut kafka.group)?;
            for (name, value) in &mut kafka.properties {
                expand(&format!("source.kafka.properties.{name}"), value)?;
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.plugins.dir);
        for file in &mut self.source.file {
            resolve(&mut file.path);
        }
        for table in self.lookup.values_mut() {
            if let Some(path) = &mut table.path {
                resolve(path);
            }
        }
        if let Some(rest) = self.sink.sql.url.strip_prefix("sqlite://") {
            let db = Path::new(rest.split('?').next().unwrap_or(rest));
            if db.is_relative() && !rest.starts_with(":memory:") {
                let query = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
                self.sink.sql.url = format!("sqlite://{}{query}", base.join(db).display());
            }
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.source.file.is_empty() && self.source.kafka.is_none() {
            return Err(invalid(
                "source",
                "no source configured; add [source.kafka] or [source.file]".into(),
            ));
        }
        if let Some(kafka) = &self.source.kafka {
            if kafka.brokers.trim().is_empty() {
                return Err(invalid("source.kafka.brokers", "must not be empty".into()));
            }
            if kafka.group.trim().is_empty() {
                return Err(invalid("source.kafka.group", "must not be empty".into()));
            }
            if kafka.topics.physical().is_empty() {
                return Err(invalid("source.kafka.topics", "names no topic".into()));
            }
            for (logical, repartition) in &kafka.repartition {
                let key = format!("source.kafka.repartition.{logical}");
                let physical = kafka.topics.physical();
                if !physical.iter().any(|t| kafka.topics.logical(t) == logical) {
                    return Err(invalid(
                        &key,
                        format!("`{logical}` is not a topic of [source.kafka] topics"),
                    ));
                }
                if !(1..=1024).contains(&repartition.partitions) {
                    return Err(invalid(
                        &key,
                        "partitions must be between 1 and 1024".to_owned(),
                    ));
                }
                let internal = kafka.internal_topic(logical).unwrap_or_default();
                if physical.contains(&internal.as_str()) {
                    return Err(invalid(
                        &key,
                        format!("the internal topic `{internal}` is also a source topic"),
                    ));
                }
            }
        }
        for file in &self.source.file {
            if file.topic.is_empty() {
                return Err(invalid("source.file.topic", "must not be empty".into()));
            }
        }
        // Lanes are keyed by pipeline name and stream (a file's path or a
        // topic) in `VARCHAR(191)` columns of the host's tables (MySQL's
        // longest indexable utf8mb4 text): longer names are refused here
        // rather than failing the first checkpoint.
        let streams = std::iter::once(("pipeline.name", self.name().to_owned()))
            .chain(
                self.source
                    .file
                    .iter()
                    .map(|f| ("source.file.path", f.path.display().to_string())),
            )
            .chain(self.source.kafka.iter().flat_map(|k| {
                k.lane_topics()
                    .physical()
                    .into_iter()
                    .map(|t| ("source.kafka.topics", t.to_owned()))
                    .collect::<Vec<_>>()
            }));
        for (key, name) in streams {
            if name.len() > MAX_STREAM_BYTES {
                return Err(invalid(
                    key,
                    format!(
                        "`{name}` is {} bytes long; at most {MAX_STREAM_BYTES} are stored",
                        name.len()
                    ),
                ));
            }
        }
        for (name, output) in &self.output.kafka {
            let key = format!("output.kafka.{name}");
            if output.topic.trim().is_empty() {
                return Err(invalid(&key, "topic must not be empty".into()));
            }
            if output.brokers.is_none() && self.source.kafka.is_none() {
                return Err(invalid(
                    &key,
                    "brokers is needed without a [source.kafka] to take them from".into(),
                ));
            }
        }
        let url = &self.sink.sql.url;
        if crate::dialect::for_url(url).is_none() {
            return Err(invalid(
                "sink.sql.url",
                format!(
                    "`{}` is not a sqlite://, mysql:// or postgres:// URL",
                    crate::text::redact_url(url)
                ),
            ));
        }
        if self.sink.sql.max_rows == 0 {
            return Err(invalid("sink.sql.max-rows", "must be at least 1".into()));
        }
        if let Some(zone) = &self.sink.sql.time_zone {
            crate::time::parse_utc_offset(zone)
                .map_err(|message| invalid("sink.sql.time-zone", message))?;
        }
        for (name, table) in &self.lookup {
            let key = format!("lookup.{name}");
            match (&table.path, &table.hbase_table) {
                (Some(_), None) => {}
                (None, Some(_)) if self.hbase.is_none() => {
                    return Err(invalid(
                        &format!("{key}.hbase-table"),
                        "needs an [hbase] section with the REST gateway's url".into(),
                    ));
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        &key,
                        "needs exactly one of `path` (a CSV file) and `hbase-table`".into(),
                    ));
                }
            }
        }
        if let Some(hbase) = &self.hbase {
            if !(hbase.url.starts_with("http://") || hbase.url.starts_with("https://")) {
                return Err(invalid(
                    "hbase.url",
                    format!("`{}` is not an http:// or https:// URL", hbase.url),
                ));
            }
            if hbase.max_rows == 0 {
                return Err(invalid("hbase.max-rows", "must be at least 1".into()));
            }
        }
        if self.plugins.quarantine_after == 0 {
            return Err(invalid(
                "plugins.quarantine-after",
                "must be at least 1".into(),
            ));
        }
        if self.batch.max_records == 0 {
            return Err(invalid("batch.max-records", "must be at least 1".into()));
        }
        if self.batch.max_bytes == 0 {
            return Err(invalid("batch.max-bytes", "must be at least 1".into()));
        }
        if self.batch.max_record_bytes == 0 {
            return Err(invalid(
                "batch.max-record-bytes",
                "must be at least 1".into(),
            ));
        }
        let limits = std::iter::once(("plugins".to_owned(), None, None, None)).chain(
            self.plugins.limits.iter().map(|(name, l)| {
                (
                    format!("plugins.limits.{name}"),
                    l.state_value_limit,
                    l.state_write_limit,
                    l.log_rate.map(|r| r as usize),
                )
            }),
        );
        for (section, value, write, rate) in limits {
            let value = value.or((section == "plugins").then_some(self.plugins.state_value_limit));
            let write = write.or((section == "plugins").then_some(self.plugins.state_write_limit));
            let rate = rate.or((section == "plugins").then_some(self.plugins.log_rate as usize));
            for (key, n) in [
                ("state-value-limit", value),
                ("state-write-limit", write),
                ("log-rate", rate),
            ] {
                if n == Some(0) {
                    return Err(invalid(
                        &format!("{section}.{key}"),
                        "must be at least 1".into(),
                    ));
                }
            }
        }
        if let Some(dashboard) = &self.dashboard {
            dashboard.validate(path)?;
        }
        Ok(())
    }
}

/// `${VAR}` → the variable's value; `$$` → `$`. Errors with the name of an
/// unset variable.
fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let var = &body[..end];
            out.push_str(&std::env::var(var).map_err(|_| var.to_owned())?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Accepts either one table (`[source.file]`) or an array of tables
/// (`[[source.file]]`), keeping serde's error messages for both.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table or an array of tables")
        }

        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Vec<T>, M::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|one| vec![one])
        }

        fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Vec<T>, S::Error> {
            Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }
    }

    deserializer.deserialize_any(OneOrMany(std::marker::PhantomData))
}

pub(crate) fn default_family() -> String {
    "cf".into()
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_max_retries() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        PipelineConfig::load(&path)
    }

    const MINIMAL: &str = r#"
        [plugins]
        dir = "plugins"
        [source.file]
        path = "in.jsonl"
        topic = "live_gift_total"
        [sink.sql]
        url = "sqlite://out.db"
    "#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.name(), "p");
        assert_eq!(config.sink.sql.max_rows, 5000);
        assert_eq!(config.sink.sql.interval, Duration::from_secs(2));
        assert_eq!(config.batch.max_records, 1024);
        assert!(config.plugins.dir.is_absolute());
        assert!(config.sink.sql.url.starts_with("sqlite:///"));
        assert_eq!(config.source.file.len(), 1);
    }

    const KAFKA: &str = r#"
        [plugins]
        dir = "plugins"
        [source.kafka]
        brokers = "k:9092"
        group = "g"
        topics = { "prod.visits" = "live_streaming_log" }
        [sink.sql]
        url = "sqlite://out.db"
    "#;

    #[test]
    fn a_repartition_reads_its_internal_topic_as_the_same_logical_topic() {
        let text =
            format!("{KAFKA}\n[source.kafka.repartition.live_streaming_log]\nby = \"user_id\"\n");
        let config = parse(&text).unwrap();
        let kafka = config.source.kafka.unwrap();
        let topics = kafka.lane_topics();
        assert_eq!(
            topics.physical(),
            ["g.repartition.live_streaming_log", "prod.visits"]
        );
        assert_eq!(
            topics.logical("g.repartition.live_streaming_log"),
            "live_streaming_log"
        );
        assert_eq!(kafka.repartition["live_streaming_log"].partitions, 8);
    }

    #[test]
    fn a_repartition_of_an_unread_topic_or_a_bad_field_is_refused() {
        let unread =
            format!("{KAFKA}\n[source.kafka.repartition.live_gift_total]\nby = \"user_id\"\n");
        let error = parse(&unread).unwrap_err().to_string();
        assert!(
            error.contains("source.kafka.repartition.live_gift_total"),
            "{error}"
        );
        assert!(error.contains("not a topic of"), "{error}");
        let field =
            format!("{KAFKA}\n[source.kafka.repartition.live_streaming_log]\nby = \"ip\"\n");
        let error = parse(&field).unwrap_err().to_string();
        assert!(error.contains("user_id"), "{error}");
        let none = format!(
            "{KAFKA}\n[source.kafka.repartition.live_streaming_log]\nby = \"room_id\"\npartitions = 0\n"
        );
        assert!(
            parse(&none)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 1024")
        );
    }

    #[test]
    fn several_files_as_array_of_tables() {
        let config = parse(
            r#"
            [plugins]
            dir = "plugins"
            [[source.file]]
            path = "a.jsonl"
            topic = "live_gift_total"
            [[source.file]]
            path = "b.jsonl"
            topic = "live_streaming_log"
            [sink.sql]
            url = "sqlite://out.db"
            "#,
        )
        .unwrap();
        let topics: Vec<_> = config
            .source
            .file
            .iter()
            .map(|f| f.topic.as_str())
            .collect();
        assert_eq!(topics, ["live_gift_total", "live_streaming_log"]);
    }

    #[test]
    fn kafka_topics_as_list_or_mapping_and_env_secrets() {
        // SAFETY: no other test reads or writes these variables.
        unsafe { std::env::set_var("APIARY_TEST_SECRET", "s3cret") };
        let kafka = MINIMAL.replace(
            "[source.file]\n        path = \"in.jsonl\"\n        topic = \"live_gift_total\"",
            r#"[source.kafka]
            brokers = "127.0.0.1:9092"
            group = "g"
            topics = { "prod.gifts.v2" = "live_gift_total" }
            [source.kafka.properties]
            "sasl.password" = "${APIARY_TEST_SECRET}""#,
        );
        let config = parse(&kafka).unwrap();
        let k = config.source.kafka.unwrap();
        assert_eq!(k.topics.physical(), ["prod.gifts.v2"]);
        assert_eq!(k.topics.logical("prod.gifts.v2"), "live_gift_total");
        assert_eq!(k.properties["sasl.password"], "s3cret");
        assert_eq!(k.start, StartOffset::Earliest);
        let list = kafka.replace(
            r#"topics = { "prod.gifts.v2" = "live_gift_total" }"#,
            r#"topics = ["live_gift_total"]"#,
        );
        let k = parse(&list).unwrap().source.kafka.unwrap();
        assert_eq!(k.topics.logical("live_gift_total"), "live_gift_total");
        let unset = kafka.replace("APIARY_TEST_SECRET", "APIARY_TEST_UNSET");
        let err = parse(&unset).unwrap_err().to_string();
        assert!(
            err.contains("APIARY_TEST_UNSET") && err.contains("sasl.password"),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&MINIMAL.replace("topic =", "topik ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("topik"), "{err}");
        assert!(err.contains("p.toml"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(&MINIMAL.replace("sqlite://out.db", "oracle://scott:tiger@x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.sql.url"), "{err}");
        assert!(!err.contains("tiger"), "the password is not shown: {err}");
        let err = parse(&format!("{MINIMAL}\n[batch]\nmax-wait = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-wait"), "{err}");
    }
}
