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
    /// Where Prometheus scrapes the metrics.
    pub metrics: Option<MetricsSection>,
    /// Event time: how watermarks follow the events.
    #[serde(default)]
    pub time: TimeSection,
    /// The live dashboard, served when configured.
    pub dashboard: Option<crate::dashboard::DashboardSection>,
    /// The file this configuration was read from.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[time]`: how each lane's watermark follows event time. The watermark
/// is the largest event time the lane has seen minus `allowed-lateness`
/// minus 1 ms (Flink's bounded out-of-orderness): events up to that much
/// out of order are never late.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeSection {
    /// How far out of order events may come and still count.
    #[serde(default, with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A lane that reads nothing for this long has its watermark moved on
    /// by the processing time that passes, so its windows and timers
    /// close. Off by default: what then fires depends on when records
    /// arrive, not only on what they say, so runs are no longer
    /// repeatable.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

/// `[metrics]`: serve Prometheus metrics at `http://<listen>/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsSection {
    /// Address to listen on, e.g. `127.0.0.1:9464`.
    pub listen: String,
}

/// `[hbase]`: an HBase REST gateway (`hbase rest start`), used by lookup
/// tables with `hbase-table` and by the outputs under `[hbase.output]`.
/// Flush settings follow Flink's HBase sink (`sink.buffer-flush.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HBaseSection {
    /// `http://host:8080`.
    pub url: String,
    /// Retries of a request the gateway answered 503 or not at all.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_hbase_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Time limit of one request.
    #[serde(default = "default_hbase_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Rows per put request.
    #[serde(default = "default_hbase_max_rows")]
    pub max_rows: usize,
    /// Bytes (about) per put request.
    #[serde(default = "default_hbase_max_bytes")]
    pub max_bytes: usize,
    /// Buffered rows are written at least this often.
    #[serde(default = "default_hbase_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Outputs written to HBase instead of the SQL sink, by output name.
    #[serde(default)]
    pub output: std::collections::BTreeMap<String, HBaseOutput>,
}

/// `[hbase.output.<name>]`: a plugin output routed to an HBase table. The
/// row key is made of the primary-key columns; every other column is a
/// cell `family:column`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HBaseOutput {
    /// The table; defaults to the output's table name.
    pub table: Option<String>,
    /// The column family.
    #[serde(default = "default_family")]
    pub family: String,
    /// How values become bytes.
    #[serde(default)]
    pub encoding: crate::hbase::codec::Encoding,
}

/// `[lookup.<table>.cache]`: the partial cache of an HBase lookup table,
/// named after Flink's `lookup.partial-cache.*` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LookupCache {
    /// Rows kept at most; 0 turns the cache off.
    #[serde(default = "default_cache_rows")]
    pub max_rows: u64,
    /// A cached row is fetched again this long after it was fetched.
    #[serde(default, with = "humantime_serde")]
    pub expire_after_write: Option<Duration>,
    /// A cached row not read for this long is dropped.
    #[serde(default, with = "humantime_serde")]
    pub expire_after_access: Option<Duration>,
    /// Whether a key with no row is cached too (as missing).
    #[serde(default = "default_true")]
    pub cache_missing_key: bool,
}

impl Default for LookupCache {
    fn default() -> Self {
        Self {
            max_rows: default_cache_rows(),
            expire_after_write: None,
            expire_after_access: None,
            cache_missing_key: true,
        }
    }
}

/// `[pipeline]`: general settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineSection {
    /// Name of the pipeline; keys its stored offsets and state. Defaults to
    /// the configuration file's name without extension.
    pub name: Option<String>,
}

/// `[plugins]`: where the plugin components are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsSection {
    /// Directory of `*.wasm` plugin components.
    pub dir: PathBuf,
    /// Linear memory one plugin instance may grow to, in bytes.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: u64,
    /// Time one plugin call (one batch) may take; `0s` sets no limit and
    /// turns the engine's interruption checks off (trusted plugins only).
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Wasm stack of one call, in bytes (one value for every plugin).
    #[serde(default = "default_stack_limit")]
    pub stack_limit: usize,
    /// A plugin that fails on this many records in a row is quarantined:
    /// its lanes pause until a new version of it is loaded.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
    /// Bytes one state value may have; a plugin storing a larger one traps.
    #[serde(default = "default_state_value_limit")]
    pub state_value_limit: usize,
    /// Bytes of state (keys and values) one plugin may write in one lane
    /// between two checkpoints; a plugin writing more traps. A lane
    /// checkpoints once a plugin has written half of it.
    #[serde(default = "default_state_write_limit")]
    pub state_write_limit: usize,
    /// Log lines per second one plugin may write in one lane (bursts up to
    /// as many); the rest are dropped and counted.
    #[serde(default = "default_log_rate")]
    pub log_rate: u32,
    /// Per-plugin overrides of the limits, by plugin name.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, PluginLimits>,
    /// Whether `apiary run` loads, replaces and removes plugins as their
    /// files change.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Parameters handed to each plugin's `init`, by plugin name:
    /// `[plugins.params.gift-windows] size = "6h"`.
    #[serde(default)]
    pub params: PluginParams,
}

/// `[plugins.params.<plugin>]` tables, by plugin name.
pub type PluginParams =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, toml::Value>>;

/// `[plugins.limits.<plugin>]`: limits of one plugin, overriding
/// `[plugins]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_limit: Option<u64>,
    /// Time one call may take.
    #[serde(default, with = "humantime_serde")]
    pub batch_timeout: Option<Duration>,
    /// Bytes one state value may have.
    pub state_value_limit: Option<usize>,
    /// Bytes of state written in one lane between two checkpoints.
    pub state_write_limit: Option<usize>,
    /// Log lines per second.
    pub log_rate: Option<u32>,
}

impl PluginsSection {
    /// Plugins in `dir` with the default limits.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            memory_limit: default_memory_limit(),
            batch_timeout: default_batch_timeout(),
            stack_limit: default_stack_limit(),
            quarantine_after: default_quarantine_after(),
            state_value_limit: default_state_value_limit(),
            state_write_limit: default_state_write_limit(),
            log_rate: default_log_rate(),
            limits: Default::default(),
            watch: true,
            params: Default::default(),
        }
    }

    /// The parameters of `plugin` as `init` takes them: strings as they
    /// are, other values in TOML spelling.
    pub fn params_of(&self, plugin: &str) -> Vec<(String, String)> {
        params_of(&self.params, plugin)
    }
}

/// The parameters of `plugin` in `params`, as `init` takes them.
pub fn params_of(params: &PluginParams, plugin: &str) -> Vec<(String, String)> {
    let Some(params) = params.get(plugin) else {
        return Vec::new();
    };
    params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// Longest pipeline name, source file path (as resolved) or Kafka topic,
/// in bytes.
pub const MAX_STREAM_BYTES: usize = 191;

fn default_memory_limit() -> u64 {
    256 << 20
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_stack_limit() -> usize {
    1 << 20
}
fn default_quarantine_after() -> u32 {
    10
}
fn default_state_value_limit() -> usize {
    1 << 20
}
fn default_state_write_limit() -> usize {
    64 << 20
}
fn default_log_rate() -> u32 {
    100
}

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
}

/// The topics of a Kafka source.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaTopics {
    /// Physical and logical names are the same.
    Names(Vec<String>),
    /// Physical name → logical name.
    Mapped(std::collections::BTreeMap<String, String>),
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

/// `[sink]`: the pipeline's output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkSection {
    /// The SQL database rows are merged into.
    pub sql: SqlSink,
}

/// `[sink.sql]`: a SQL database (SQLite now; MySQL through the same keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlSink {
    /// `sqlite://path/to/file.db` (relative to the config file).
    pub url: String,
    /// Checkpoint once this many distinct rows are buffered in a lane.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Checkpoint at least this often while records flow.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Checkpoint once a lane buffers about this many bytes of row data.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Retries of a checkpoint that failed for a transient reason.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Offset from UTC, `+08:00` style, in which timestamp columns are written.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Secondary indexes on output tables, for the queries that read them
    /// (`ORDER BY total DESC LIMIT 10` on a table of millions of users).
    #[serde(default)]
    pub index: Vec<SqlIndex>,
}

/// `[[sink.sql.index]]`: a secondary index the sink creates if missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlIndex {
    /// The output table.
    pub table: String,
    /// Its columns, in index order.
    pub columns: Vec<String>,
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
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_wait: default_batch_wait(),
            max_bytes: default_batch_bytes(),
        }
    }
}

/// `[lookup.<table>]`: a dimension table, either a local CSV file with a
/// header line (`path`; the `key` column identifies a row) or an HBase
/// table read through `[hbase]` (`hbase-table`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LookupTable {
    /// The CSV file.
    pub path: Option<PathBuf>,
    /// CSV: the column holding the row key; defaults to the first column.
    pub key: Option<String>,
    /// HBase: the table.
    pub hbase_table: Option<String>,
    /// HBase: the column family the columns are read from.
    #[serde(default = "default_family")]
    pub family: String,
    /// HBase: how the cells were written.
    #[serde(default)]
    pub encoding: crate::hbase::codec::Encoding,
    /// HBase: what the row key holds; plugins pass keys as text.
    #[serde(default)]
    pub key_type: crate::hbase::codec::CellType,
    /// HBase: what each column holds (default `string`).
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, crate::hbase::codec::CellType>,
    /// HBase: the partial cache.
    #[serde(default)]
    pub cache: LookupCache,
}

impl LookupTable {
    /// A table read from the CSV file `path`, keyed by its first column.
    pub fn csv(path: PathBuf) -> Self {
        Self {
            path: Some(path),
            key: None,
            hbase_table: None,
            family: default_family(),
            encoding: Default::default(),
            key_type: Default::default(),
            types: Default::default(),
            cache: Default::default(),
        }
    }
}

fn default_family() -> String {
    "cf".into()
}
fn default_true() -> bool {
    true
}
fn default_cache_rows() -> u64 {
    10_000
}
fn default_hbase_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_hbase_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_hbase_max_rows() -> usize {
    1000
}
fn default_hbase_max_bytes() -> usize {
    2 << 20
}
fn default_hbase_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_rows() -> usize {
    5000
}
fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_bytes() -> usize {
    16 << 20
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
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
fn default_batch_wait() -> Duration {
    Duration::from_millis(100)
}

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
                k.topics
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
        let url = &self.sink.sql.url;
        if !(url.starts_with("sqlite:") || url.starts_with("mysql:")) {
            return Err(invalid(
                "sink.sql.url",
                format!("`{url}` is not a sqlite:// or mysql:// URL"),
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
        let err = parse(&MINIMAL.replace("sqlite://out.db", "postgres://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.sql.url"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[batch]\nmax-wait = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-wait"), "{err}");
    }
}
