//! Repartitioning through Kafka (`[source.kafka.repartition.<topic>]`).
//!
//! The first stage is a lane of a source partition: its parser finds each
//! record's key, and the record is produced, as it was read, to the
//! internal topic's partition of that key (to each partition of its keys,
//! if its events have several). Its checkpoint commits once the broker has
//! acknowledged every record produced before it, so a crash replays, and
//! may produce again, but never loses a record.
//!
//! The second stage is a lane of an internal partition: it parses the
//! records again, keeps the events whose key belongs to it and runs the
//! rules. Each forwarded record names where it came from
//! (`apiary.source: topic:partition:offset`); the lane stores the last
//! source offset it applied per source partition with its checkpoint and
//! passes over a record it has applied already, so what a replay of the
//! first stage produced again counts once.
//!
//! Event time crosses the hop too: the last record of a batch forwarded to
//! each internal partition carries its first stage's watermark after the
//! batch (`apiary.watermark`; earlier records of the batch may be older
//! than it, so they carry none). At each checkpoint where its watermark
//! moved, a first stage also sends it to every internal partition in a
//! record of no value (`apiary.mark`, naming the source partition), as a
//! Flink operator broadcasts its watermark to every channel; so does it
//! say, once it read nothing for `[time] idle-timeout`, that it is idle
//! (`apiary.watermark: idle`). A second-stage lane's watermark is the
//! lowest of its active source partitions' (Flink's rule for an operator
//! with several inputs, idle ones left out), so a source partition that
//! lags does not find its windows closed when its events arrive. Until
//! every source partition has sent a watermark or said it is idle, the
//! lane's watermark stays put.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};

use crate::config::KafkaSource;
use crate::model::wit::types::{RawBatch, RawRecord};
use crate::model::{EventRoute, LaneKey, StateChange, StoredState, StoredValue};
use crate::output::{idempotent, message_bytes, wire_bytes};
use crate::source::span_bytes;

/// The name the second stage's applied offsets are stored under, beside
/// the plugins' state (no plugin name has a dot).
pub const APPLIED_STATE: &str = "apiary.repartition";

/// The header that says where a forwarded record was read.
const SOURCE_HEADER: &str = "apiary.source";

/// The header with the first stage's watermark after the record's batch,
/// or `idle`.
const WATERMARK_HEADER: &str = "apiary.watermark";

/// The header of a record that only carries its first stage's watermark:
/// the source partition it speaks for (`topic:partition`).
const MARK_HEADER: &str = "apiary.mark";

/// What a first stage's watermark header says when it is idle.
const IDLE: &str = "idle";

/// Kafka's default `max.message.bytes` of a topic.
const KAFKA_TOPIC_BYTES: usize = 1_048_588;

/// How long a checkpoint waits for the broker to acknowledge what its lane
/// forwarded.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// The repartitions of a pipeline's Kafka source.
pub struct Repartitions {
    source: KafkaSource,
    /// The producers' `message.max.bytes`.
    message_bytes: usize,
    /// Logical topic → its internal topic and how it is keyed.
    stages: BTreeMap<String, Stage>,
}

struct Stage {
    internal: String,
    /// Every source partition, `topic:partition`.
    sources: Vec<String>,
    by: crate::model::KeyField,
    partitions: i32,
}

/// What a lane of a repartitioned topic is.
pub enum Role {
    /// Reads a source partition and forwards its records.
    Forward(Forwarder),
    /// Reads an internal partition and applies each record once; its
    /// watermark follows these source partitions'.
    Apply(Vec<String>),
}

impl Repartitions {
    /// The repartitions `source` declares, with their internal topics
    /// created where missing; `None` if it declares none.
    pub async fn open(source: &KafkaSource) -> anyhow::Result<Option<Arc<Self>>> {
        if source.repartition.is_empty() {
            return Ok(None);
        }
        let mut config = source.client_config();
        // Reading a missing topic's partitions must not create it.
        config.set("allow.auto.create.topics", "false");
        let admin: AdminClient<DefaultClientContext> = config
            .create()
            .context("cannot create a Kafka admin client for the repartition topics")?;
        // A producer that sends larger messages than a Kafka topic takes
        // by default gets internal topics that take them too.
        let message_bytes =
            message_bytes(&source.client_config()).context("[source.kafka.properties]")?;
        let topic_bytes = message_bytes.to_string();
        let mut stages = BTreeMap::new();
        for (logical, repartition) in &source.repartition {
            let internal = source.internal_topic(logical).unwrap_or_default();
            let replication = TopicReplication::Fixed(repartition.replication);
            let mut topic = NewTopic::new(&internal, repartition.partitions, replication);
            if message_bytes > KAFKA_TOPIC_BYTES {
                topic = topic.set("max.message.bytes", &topic_bytes);
            }
            let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
            // A broker that cannot create topics (or a user who may not)
            // is fine if the topic is there already.
            let refused = match admin.create_topics([&topic], &options).await {
                Ok(results) => results.into_iter().find_map(|result| match result {
                    Ok(_) => {
                        tracing::info!(topic = %internal, partitions = repartition.partitions, "repartition topic created");
                        None
                    }
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                    Err((_, code)) => Some(code.to_string()),
                }),
                Err(e) => Some(e.to_string()),
            };
            let found = partition_count(&admin, &internal)?;
            if found == 0 {
                anyhow::bail!(
                    "cannot create the repartition topic `{internal}` of `{logical}` ({}); \
                     create it with {} partitions",
                    refused.unwrap_or_else(|| "it did not appear".into()),
                    repartition.partitions
                );
            }
            if found != repartition.partitions {
                anyhow::bail!(
                    "the repartition topic `{internal}` has {found} partitions where \
                     [source.kafka.repartition.{logical}] says {}: keys would move between \
                     lanes; set partitions = {found}, or use a new topic",
                    repartition.partitions
                );
            }
            let mut sources = Vec::new();
            for physical in source.topics.physical() {
                if source.topics.logical(physical) == logical {
                    let partitions = partition_count(&admin, physical)?;
                    sources.extend((0..partitions).map(|p| format!("{physical}:{p}")));
                }
            }
            stages.insert(
                logical.clone(),
                Stage {
                    internal,
                    sources,
                    by: repartition.by,
                    partitions: repartition.partitions,
                },
            );
        }
        Ok(Some(Arc::new(Self {
            source: source.clone(),
            message_bytes,
            stages,
        })))
    }

    /// The route and role of the lane `key` of logical topic `logical`, if
    /// that topic is repartitioned.
    pub fn role(&self, key: &LaneKey, logical: &str) -> anyhow::Result<Option<(EventRoute, Role)>> {
        let Some(stage) = self.stages.get(logical) else {
            return Ok(None);
        };
        if key.stream == stage.internal {
            let route = EventRoute::Keep {
                by: stage.by,
                partitions: stage.partitions,
                partition: key.partition,
            };
            return Ok(Some((route, Role::Apply(stage.sources.clone()))));
        }
        let route = EventRoute::Forward {
            by: stage.by,
            partitions: stage.partitions,
        };
        let forwarder = Forwarder::new(
            &self.source,
            &stage.internal,
            stage.partitions,
            self.message_bytes,
        )?;
        Ok(Some((route, Role::Forward(forwarder))))
    }
}

/// The partitions `topic` has on the cluster.
fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> anyhow::Result<i32> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot read the partitions of `{topic}`"))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    Ok(count as i32)
}

/// Counts the records of each checkpoint the broker has yet to
/// acknowledge, and notes the first it refused.
#[derive(Default)]
struct Deliveries {
    state: Mutex<DeliveryState>,
    /// Told of every acknowledgement.
    acked: tokio::sync::Notify,
}

#[derive(Default)]
struct DeliveryState {
    /// Per checkpoint (its epoch), the records sent and not yet answered.
    unanswered: BTreeMap<usize, u64>,
    failed: Option<String>,
}

impl Deliveries {
    fn state(&self) -> std::sync::MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more record of checkpoint `epoch` on its way; `sent` false
    /// takes back one that never left.
    fn count(&self, epoch: usize, sent: bool) {
        let mut state = self.state();
        let count = state.unanswered.entry(epoch).or_default();
        if sent {
            *count += 1;
        } else {
            *count -= 1;
            if *count == 0 {
                state.unanswered.remove(&epoch);
            }
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        let mut state = self.state();
        if let Err((e, _)) = result {
            state.failed.get_or_insert_with(|| e.to_string());
        }
        if let Some(count) = state.unanswered.get_mut(&epoch) {
            *count -= 1;
            if *count == 0 {
                state.unanswered.remove(&epoch);
            }
        }
        drop(state);
        self.acked.notify_waiters();
    }
}

/// The broker's answer for every record forwarded before a checkpoint,
/// awaited by that checkpoint's commit while the lane goes on.
pub struct Acks {
    deliveries: Arc<Deliveries>,
    epoch: usize,
    topic: String,
}

impl Acks {
    /// Waits until the broker has acknowledged every record of this
    /// checkpoint and of the ones before it; fails if it refused one (the
    /// checkpoint must then not commit) or did not answer in time.
    pub async fn wait(self) -> anyhow::Result<()> {
        let answered = async {
            loop {
                // Registered before looking, so an answer in between wakes it.
                let acked = self.deliveries.acked.notified();
                {
                    let state = self.deliveries.state();
                    if let Some(reason) = &state.failed {
                        anyhow::bail!(
                            "repartition topic `{}` refused a record: {reason}",
                            self.topic
                        );
                    }
                    if state.unanswered.range(..=self.epoch).next().is_none() {
                        return Ok(());
                    }
                }
                acked.await;
            }
        };
        tokio::time::timeout(FLUSH_TIMEOUT, answered)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "repartition topic `{}` did not acknowledge within {FLUSH_TIMEOUT:?}",
                    self.topic
                )
            })?
    }
}

/// How far a first stage is in event time, as it tells the internal
/// partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Its watermark.
    Watermark(i64),
    /// It read nothing for `[time] idle-timeout`: the second stage does
    /// not wait for it until it sends records again.
    Idle,
}

/// The first stage's producer: one per lane, so a lane's checkpoint waits
/// for its own records only.
pub struct Forwarder {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    /// Partitions of the internal topic.
    partitions: i32,
    /// What every internal partition was last told of the lane's progress.
    announced: Option<Progress>,
    /// Bytes produced since the last checkpoint.
    pending_bytes: usize,
    /// The checkpoint the records sent now belong to.
    epoch: usize,
    /// The producer's `message.max.bytes`: a larger record is refused.
    message_bytes: usize,
}

impl Forwarder {
    /// A producer to `topic`: idempotent, so a retry never duplicates a
    /// record nor lets the next overtake it; and retrying for as long as it
    /// takes, since a record given up while later ones got through would
    /// look applied to the second stage. `message_bytes` is its
    /// `message.max.bytes`, read once for every forwarder.
    pub fn new(
        source: &KafkaSource,
        topic: &str,
        partitions: i32,
        message_bytes: usize,
    ) -> anyhow::Result<Self> {
        let mut config = idempotent(source.client_config());
        config.set("message.timeout.ms", "0");
        let producer = config
            .create_with_context(Deliveries::default())
            .context("cannot create the repartition producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            partitions,
            announced: None,
            pending_bytes: 0,
            epoch: 0,
            message_bytes,
        })
    }

    /// Tells every internal partition the lane's `progress`, unless it
    /// was the last thing they were told: a record of no value with the
    /// `apiary.mark` and `apiary.watermark` headers, after every record
    /// forwarded so far.
    pub fn announce(&mut self, lane: &LaneKey, progress: Progress) -> anyhow::Result<()> {
        if self.announced == Some(progress) {
            return Ok(());
        }
        let source = format!("{}:{}", lane.stream, lane.partition);
        let watermark = match progress {
            Progress::Watermark(w) => w.to_string(),
            Progress::Idle => IDLE.to_owned(),
        };
        for partition in 0..self.partitions {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: MARK_HEADER,
                    value: Some(&source),
                })
                .insert(Header {
                    key: WATERMARK_HEADER,
                    value: Some(&watermark),
                });
            let mark = BaseRecord::with_opaque_to(&self.topic, self.epoch)
                .partition(partition)
                .payload(&[][..])
                .headers(headers);
            self.produce(mark)?;
        }
        self.announced = Some(progress);
        Ok(())
    }

    /// Produces each record of `batch` named in `targets` to its internal
    /// partition, as it was read plus the `apiary.source` header (the
    /// record's own `apiary.*` headers of the hop are dropped: a record
    /// must not pass for a mark, nor name another source). The last
    /// record of the batch for each partition also carries the lane's
    /// `watermark` after the batch: earlier ones must not, since records
    /// of the same batch may be older than that watermark, and the second
    /// stage would find them late. Blocks while the producer's queue is
    /// full. Returns the records too large for one message (the
    /// producer's `message.max.bytes`), with why, unsent.
    pub fn send(
        &mut self,
        lane: &LaneKey,
        batch: &RawBatch,
        targets: &[(usize, i32)],
        watermark: Option<i64>,
    ) -> anyhow::Result<Vec<(usize, String)>> {
        let watermark = watermark.map(|w| w.to_string());
        let mut refused = Vec::new();
        let mut sendable = Vec::with_capacity(targets.len());
        for &(index, partition) in targets {
            let record = &batch.records[index];
            let source = format!("{}:{}:{}", lane.stream, lane.partition, record.offset);
            let headers = record
                .headers
                .iter()
                .map(|h| (span_bytes(batch, h.name), span_bytes(batch, h.value)))
                .chain([(SOURCE_HEADER.as_bytes(), source.as_bytes())])
                .chain(
                    watermark
                        .as_ref()
                        .map(|w| (WATERMARK_HEADER.as_bytes(), w.as_bytes())),
                );
            let data = record.key.map_or(0, |k| k.len as usize) + record.value.len as usize;
            let size = wire_bytes(data, headers);
            if size > self.message_bytes {
                // `targets` is sorted: a record's partitions are together.
                if refused.last().is_some_and(|(last, _)| *last == index) {
                    continue;
                }
                refused.push((
                    index,
                    format!(
                        "a record of {size} bytes with its headers does not fit one message \
                         to repartition topic `{}` (message.max.bytes is {})",
                        self.topic, self.message_bytes
                    ),
                ));
            } else {
                sendable.push((index, partition, source));
            }
        }
        // `sendable` is in record order: the last entry per partition wins.
        let last: HashMap<i32, usize> = sendable.iter().map(|&(i, p, _)| (p, i)).collect();
        for (index, partition, source) in sendable {
            let record = &batch.records[index];
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
            for header in &record.headers {
                let name = String::from_utf8_lossy(span_bytes(batch, header.name));
                if [SOURCE_HEADER, WATERMARK_HEADER, MARK_HEADER].contains(&name.as_ref()) {
                    continue;
                }
                headers = headers.insert(Header {
                    key: &name,
                    value: Some(span_bytes(batch, header.value)),
                });
            }
            headers = headers.insert(Header {
                key: SOURCE_HEADER,
                value: Some(&source),
            });
            if let Some(watermark) = watermark.as_ref().filter(|_| last[&partition] == index) {
                headers = headers.insert(Header {
                    key: WATERMARK_HEADER,
                    value: Some(watermark),
                });
            }
            let value = span_bytes(batch, record.value);
            let key = record.key.map(|k| span_bytes(batch, k));
            let mut out = BaseRecord::with_opaque_to(&self.topic, self.epoch)
                .partition(partition)
                .payload(value)
                .headers(headers);
            if let Some(key) = key {
                out = out.key(key);
            }
            if let Some(timestamp) = record.timestamp {
                out = out.timestamp(timestamp);
            }
            self.pending_bytes += value.len() + key.map_or(0, <[u8]>::len);
            self.produce(out)?;
        }
        Ok(refused)
    }

    /// Produces `out` in the current checkpoint, waiting while the
    /// producer's queue is full.
    fn produce(&self, mut out: BaseRecord<'_, [u8], [u8], usize>) -> anyhow::Result<()> {
        let deliveries = self.producer.context();
        // Counted before it leaves: its answer may come at once.
        deliveries.count(self.epoch, true);
        loop {
            match self.producer.send(out) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    deliveries.count(self.epoch, false);
                    return Err(e).with_context(|| {
                        format!("cannot produce to repartition topic `{}`", self.topic)
                    });
                }
            }
        }
    }

    /// Bytes forwarded since the last checkpoint.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Closes the records forwarded so far into a checkpoint: what its
    /// commit must wait for before it may store the offsets that cover
    /// them. The records sent from now on belong to the next.
    pub fn checkpoint(&mut self) -> Acks {
        let acks = Acks {
            deliveries: self.producer.context().clone(),
            epoch: self.epoch,
            topic: self.topic.clone(),
        };
        self.epoch += 1;
        self.pending_bytes = 0;
        acks
    }
}

/// The second stage's memory of its sources: per source partition, the
/// last source offset applied, the last watermark it sent, and whether it
/// said it is idle.
#[derive(Debug, Default)]
pub struct Applied {
    last: HashMap<String, i64>,
    watermarks: HashMap<String, i64>,
    idle: BTreeSet<String>,
    /// Every source partition (empty: unknown, the watermark is not held).
    sources: Vec<String>,
    /// Changed entries since the last checkpoint, by state key.
    changed: BTreeMap<String, i64>,
}

/// State key prefixes of a source's last offset, last watermark, and
/// idleness (1 idle, 0 active).
const OFFSET_KEY: &str = "o/";
const WATERMARK_KEY: &str = "w/";
const IDLE_KEY: &str = "i/";

impl Applied {
    /// What the lane's last checkpoint stored, for a lane fed by `sources`.
    pub fn from_state(stored: StoredState, sources: Vec<String>) -> Self {
        let mut applied = Self {
            sources,
            ..Self::default()
        };
        for (key, value) in stored.values {
            let Some(number) = std::str::from_utf8(&value.value)
                .ok()
                .and_then(|v| v.parse().ok())
            else {
                continue;
            };
            if let Some(source) = key.strip_prefix(OFFSET_KEY) {
                applied.last.insert(source.to_owned(), number);
            } else if let Some(source) = key.strip_prefix(WATERMARK_KEY) {
                applied.watermarks.insert(source.to_owned(), number);
            } else if let Some(source) = key.strip_prefix(IDLE_KEY)
                && number == 1
            {
                applied.idle.insert(source.to_owned());
            }
        }
        applied
    }

    /// The records of `batch` to apply, if it has any not to (`None`:
    /// every record is new): a record applied already, one from the same
    /// source partition at or past its offset having come before it in an
    /// earlier batch or in this one, and a first stage's watermark mark.
    pub fn unapplied(&self, batch: &RawBatch) -> Option<Unapplied> {
        let mut seen: HashMap<&str, i64> = HashMap::new();
        let mut marks = 0;
        let fresh: Vec<bool> = batch
            .records
            .iter()
            .map(|record| {
                if is_mark(batch, record) {
                    marks += 1;
                    return false;
                }
                let Some((source, offset)) = source_of(batch, record) else {
                    return true;
                };
                let last = seen
                    .entry(source)
                    .or_insert_with(|| self.last.get(source).copied().unwrap_or(i64::MIN));
                let fresh = offset > *last;
                *last = (*last).max(offset);
                fresh
            })
            .collect();
        if fresh.iter().all(|&f| f) {
            return None;
        }
        let records: Vec<RawRecord> = batch
            .records
            .iter()
            .zip(fresh)
            .filter(|(_, f)| *f)
            .map(|(r, _)| r.clone())
            .collect();
        Some(Unapplied {
            replayed: batch.records.len() - records.len() - marks,
            marks,
            records,
        })
    }

    /// Notes every record of `batch` as applied.
    pub fn apply(&mut self, batch: &RawBatch) {
        for record in &batch.records {
            if let Some((source, offset)) = source_of(batch, record) {
                let last = self.last.entry(source.to_owned()).or_insert(i64::MIN);
                if offset > *last {
                    *last = offset;
                    self.changed.insert(format!("{OFFSET_KEY}{source}"), offset);
                }
            }
        }
    }

    /// Takes in the first stage's watermarks and idleness that `batch`
    /// carries. A source partition that said it is idle is active again
    /// from its next record on.
    pub fn note_watermarks(&mut self, batch: &RawBatch) {
        for record in &batch.records {
            let source = match source_of(batch, record) {
                Some((source, _)) => source,
                None => match header(batch, record, MARK_HEADER) {
                    Some(source) => source,
                    None => continue,
                },
            };
            let said = header(batch, record, WATERMARK_HEADER);
            if said == Some(IDLE) {
                if self.idle.insert(source.to_owned()) {
                    self.changed.insert(format!("{IDLE_KEY}{source}"), 1);
                }
                continue;
            }
            if self.idle.remove(source) {
                self.changed.insert(format!("{IDLE_KEY}{source}"), 0);
            }
            let Some(watermark) = said.and_then(|w| w.parse().ok()) else {
                continue;
            };
            let known = self.watermarks.entry(source.to_owned()).or_insert(i64::MIN);
            if watermark > *known {
                *known = watermark;
                self.changed
                    .insert(format!("{WATERMARK_KEY}{source}"), watermark);
            }
        }
    }

    /// The lane's watermark: the lowest watermark of its active source
    /// partitions (`i64::MIN` until each has sent one or said it is idle);
    /// once every one is idle, the highest any sent, as Flink's operators
    /// do. `None` when the sources are unknown or none sent a watermark.
    pub fn sources_watermark(&self) -> Option<i64> {
        let watermark = |s: &String| self.watermarks.get(s).copied();
        if self.all_idle() {
            return self.sources.iter().filter_map(watermark).max();
        }
        let active = self.sources.iter().filter(|s| !self.idle.contains(*s));
        active.map(|s| watermark(s).unwrap_or(i64::MIN)).min()
    }

    /// Whether every source partition said it is idle (none is known:
    /// false). The lane then moves on by `[time] idle-timeout` itself.
    pub fn all_idle(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|s| self.idle.contains(s))
    }

    /// What changed since the last checkpoint, as state entries.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|(key, number)| {
                let value = StoredValue {
                    value: number.to_string().into_bytes(),
                    expires: None,
                };
                (key, Some(value))
            })
            .collect()
    }
}

/// The value of header `name` of `record`, as text.
fn header<'a>(batch: &'a RawBatch, record: &RawRecord, name: &str) -> Option<&'a str> {
    let header = record
        .headers
        .iter()
        .find(|h| span_bytes(batch, h.name) == name.as_bytes())?;
    std::str::from_utf8(span_bytes(batch, header.value)).ok()
}

/// What [`Applied::unapplied`] leaves of a batch.
pub struct Unapplied {
    /// The records to apply.
    pub records: Vec<RawRecord>,
    /// Records passed over as applied already (forwarded again by a
    /// replay of the first stage).
    pub replayed: usize,
    /// First stages' watermark marks.
    pub marks: usize,
}

/// Whether `record` is a first stage's watermark mark rather than one it
/// forwarded.
fn is_mark(batch: &RawBatch, record: &RawRecord) -> bool {
    header(batch, record, MARK_HEADER).is_some()
}

/// Where a forwarded record was read: `("topic:partition", offset)`.
fn source_of<'a>(batch: &'a RawBatch, record: &RawRecord) -> Option<(&'a str, i64)> {
    let text = header(batch, record, SOURCE_HEADER)?;
    let (source, offset) = text.rsplit_once(':')?;
    Some((source, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wit::types::{Header as WitHeader, Span};

    /// A batch of records with these headers each.
    fn with_headers(records: &[&[(&str, &str)]]) -> RawBatch {
        let mut data = Vec::new();
        let mut span = |text: &str| {
            let span = Span {
                start: data.len() as u32,
                len: text.len() as u32,
            };
            data.extend_from_slice(text.as_bytes());
            span
        };
        let records = records
            .iter()
            .enumerate()
            .map(|(i, headers)| RawRecord {
                partition: 0,
                offset: i as i64,
                timestamp: None,
                key: None,
                value: span(""),
                headers: headers
                    .iter()
                    .map(|(name, value)| WitHeader {
                        name: span(name),
                        value: span(value),
                    })
                    .collect(),
            })
            .collect();
        RawBatch {
            topic: "visits".into(),
            data,
            records,
        }
    }

    fn forwarded(sources: &[&str]) -> RawBatch {
        let records: Vec<[(&str, &str); 1]> =
            sources.iter().map(|s| [(SOURCE_HEADER, *s)]).collect();
        let records: Vec<&[(&str, &str)]> = records.iter().map(|r| &r[..]).collect();
        with_headers(&records)
    }

    /// What `applied` stored at a checkpoint, read back by a new lane.
    fn stored(applied: &mut Applied, sources: &[String]) -> Applied {
        let stored = StoredState {
            values: applied
                .take_changes()
                .into_iter()
                .map(|(k, v)| (k, v.unwrap()))
                .collect(),
            timers: vec![],
        };
        Applied::from_state(stored, sources.to_vec())
    }

    #[test]
    fn the_watermark_is_the_lowest_of_the_active_sources() {
        let sources: Vec<String> = (0..3).map(|p| format!("gifts:{p}")).collect();
        let mut applied = Applied::from_state(StoredState::default(), sources.clone());
        let batch = with_headers(&[
            &[(SOURCE_HEADER, "gifts:0:7"), (WATERMARK_HEADER, "1000")],
            &[(MARK_HEADER, "gifts:1"), (WATERMARK_HEADER, "500")],
        ]);
        applied.note_watermarks(&batch);
        // gifts:2 has said nothing yet.
        assert_eq!(applied.sources_watermark(), Some(i64::MIN));
        // A mark is neither a record to apply nor one applied before.
        let rest = applied.unapplied(&batch).unwrap();
        assert_eq!((rest.records.len(), rest.replayed, rest.marks), (1, 0, 1));
        applied.apply(&batch);
        let idle = with_headers(&[&[(MARK_HEADER, "gifts:2"), (WATERMARK_HEADER, IDLE)]]);
        applied.note_watermarks(&idle);
        assert_eq!(applied.sources_watermark(), Some(500));
        // Watermarks and idleness survive a restart.
        let mut applied = stored(&mut applied, &sources);
        assert_eq!(applied.sources_watermark(), Some(500));
        applied.note_watermarks(&with_headers(&[&[
            (MARK_HEADER, "gifts:1"),
            (WATERMARK_HEADER, "2000"),
        ]]));
        assert_eq!(applied.sources_watermark(), Some(1000));
        // The idle source's next record makes it count again.
        applied.note_watermarks(&forwarded(&["gifts:2:0"]));
        assert_eq!(applied.sources_watermark(), Some(i64::MIN));
        let mut applied = stored(&mut applied, &sources);
        assert_eq!(applied.sources_watermark(), Some(i64::MIN));
        // Every source idle: the highest watermark any sent.
        for p in 0..3 {
            let source = format!("gifts:{p}");
            let mark = [(MARK_HEADER, source.as_str()), (WATERMARK_HEADER, IDLE)];
            assert!(!applied.all_idle());
            applied.note_watermarks(&with_headers(&[&mark]));
        }
        assert!(applied.all_idle());
        assert_eq!(applied.sources_watermark(), Some(2000));
        // Sources unknown: the same.
        assert_eq!(Applied::default().sources_watermark(), None);
    }

    #[test]
    fn a_record_applied_before_is_passed_over_once_stored() {
        let mut applied = Applied::default();
        let first = forwarded(&["visits:0:10", "visits:1:5", "visits:0:11"]);
        assert!(applied.unapplied(&first).is_none());
        applied.apply(&first);
        assert_eq!(applied.changed.len(), 2);
        // What a checkpoint stored is what the next lane starts from.
        let applied = stored(&mut applied, &[]);
        let replayed = forwarded(&["visits:0:11", "visits:0:12", "visits:1:5", "visits:1:6"]);
        let fresh = applied.unapplied(&replayed).unwrap().records;
        let offsets: Vec<i64> = fresh.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 3]);
        // A replay inside one batch.
        let twice = forwarded(&["visits:2:1", "visits:2:2", "visits:2:1", "visits:2:3"]);
        let fresh = Applied::default().unapplied(&twice).unwrap().records;
        let offsets: Vec<i64> = fresh.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1, 3]);
    }
}
