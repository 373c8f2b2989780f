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
//! than it, so they carry none), and a second-stage lane's
//! watermark never passes the lowest of its source partitions' (Flink's
//! rule for an operator with several inputs), so a source partition that
//! lags does not find its windows closed when its events arrive. Until
//! every source partition has sent one, the lane's watermark stays put.

use std::collections::{BTreeMap, HashMap};
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
use crate::output::idempotent;
use crate::source::span_bytes;

/// The name the second stage's applied offsets are stored under, beside
/// the plugins' state (no plugin name has a dot).
pub const APPLIED_STATE: &str = "apiary.repartition";

/// The header that says where a forwarded record was read.
const SOURCE_HEADER: &str = "apiary.source";

/// The header with the first stage's watermark after the record's batch.
const WATERMARK_HEADER: &str = "apiary.watermark";

/// How long a checkpoint waits for the broker to acknowledge what its lane
/// forwarded.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// The repartitions of a pipeline's Kafka source.
pub struct Repartitions {
    source: KafkaSource,
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
        let mut stages = BTreeMap::new();
        for (logical, repartition) in &source.repartition {
            let internal = source.internal_topic(logical).unwrap_or_default();
            let replication = TopicReplication::Fixed(repartition.replication);
            let topic = NewTopic::new(&internal, repartition.partitions, replication);
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
        let forwarder = Forwarder::new(&self.source, &stage.internal)?;
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

/// The first stage's producer: one per lane, so a lane's checkpoint waits
/// for its own records only.
pub struct Forwarder {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    /// Bytes produced since the last checkpoint.
    pending_bytes: usize,
    /// The checkpoint the records sent now belong to.
    epoch: usize,
}

impl Forwarder {
    /// A producer to `topic`: idempotent, so a retry never duplicates a
    /// record nor lets the next overtake it; and retrying for as long as it
    /// takes, since a record given up while later ones got through would
    /// look applied to the second stage.
    pub fn new(source: &KafkaSource, topic: &str) -> anyhow::Result<Self> {
        let mut config = idempotent(source.client_config());
        config.set("message.timeout.ms", "0");
        let producer = config
            .create_with_context(Deliveries::default())
            .context("cannot create the repartition producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            pending_bytes: 0,
            epoch: 0,
        })
    }

    /// Produces each record of `batch` named in `targets` to its internal
    /// partition, as it was read plus the `apiary.source` header. The last
    /// record of the batch for each partition also carries the lane's
    /// `watermark` after the batch: earlier ones must not, since records
    /// of the same batch may be older than that watermark, and the second
    /// stage would find them late. Blocks while the producer's queue is
    /// full.
    pub fn send(
        &mut self,
        lane: &LaneKey,
        batch: &RawBatch,
        targets: &[(usize, i32)],
        watermark: Option<i64>,
    ) -> anyhow::Result<()> {
        let watermark = watermark.map(|w| w.to_string());
        // `targets` is in record order: the last entry per partition wins.
        let last: HashMap<i32, usize> = targets.iter().map(|&(i, p)| (p, i)).collect();
        for &(index, partition) in targets {
            let record = &batch.records[index];
            let source = format!("{}:{}:{}", lane.stream, lane.partition, record.offset);
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
            for header in &record.headers {
                let name = String::from_utf8_lossy(span_bytes(batch, header.name));
                if name == SOURCE_HEADER || name == WATERMARK_HEADER {
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
            let deliveries = self.producer.context();
            // Counted before it leaves: its answer may come at once.
            deliveries.count(self.epoch, true);
            loop {
                match self.producer.send(out) {
                    Ok(()) => break,
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
        Ok(())
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
/// last source offset applied and the last watermark it sent.
#[derive(Debug, Default)]
pub struct Applied {
    last: HashMap<String, i64>,
    watermarks: HashMap<String, i64>,
    /// Every source partition (empty: unknown, the watermark is not held).
    sources: Vec<String>,
    /// Changed entries since the last checkpoint, by state key.
    changed: BTreeMap<String, i64>,
}

/// State key prefixes of a source's last offset and last watermark.
const OFFSET_KEY: &str = "o/";
const WATERMARK_KEY: &str = "w/";

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
            }
        }
        applied
    }

    /// The records of `batch` not applied yet, if it has any applied one
    /// (`None`: every record is new). A record is applied if one from the
    /// same source partition at or past its offset came before it, in an
    /// earlier batch or in this one.
    pub fn unapplied(&self, batch: &RawBatch) -> Option<Vec<RawRecord>> {
        let mut seen: HashMap<&str, i64> = HashMap::new();
        let fresh: Vec<bool> = batch
            .records
            .iter()
            .map(|record| {
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
        let records = batch.records.iter().zip(fresh);
        Some(
            records
                .filter(|(_, f)| *f)
                .map(|(r, _)| r.clone())
                .collect(),
        )
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

    /// Takes in the first stage's watermarks that `batch` carries.
    pub fn note_watermarks(&mut self, batch: &RawBatch) {
        for record in &batch.records {
            let Some((source, _)) = source_of(batch, record) else {
                continue;
            };
            let Some(watermark) =
                header(batch, record, WATERMARK_HEADER).and_then(|w| w.parse().ok())
            else {
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

    /// How far the lane's watermark may go: the lowest watermark of its
    /// source partitions (`i64::MIN` until each has sent one); `None` when
    /// the sources are unknown.
    pub fn watermark_cap(&self) -> Option<i64> {
        if self.sources.is_empty() {
            return None;
        }
        let lowest = self.sources.iter().map(|s| self.watermarks.get(s).copied());
        Some(
            lowest
                .map(|w| w.unwrap_or(i64::MIN))
                .min()
                .unwrap_or(i64::MIN),
        )
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

    fn forwarded(sources: &[&str]) -> RawBatch {
        let mut data = Vec::new();
        let mut records = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let name = Span {
                start: data.len() as u32,
                len: SOURCE_HEADER.len() as u32,
            };
            data.extend_from_slice(SOURCE_HEADER.as_bytes());
            let value = Span {
                start: data.len() as u32,
                len: source.len() as u32,
            };
            data.extend_from_slice(source.as_bytes());
            records.push(RawRecord {
                partition: 0,
                offset: i as i64,
                timestamp: None,
                key: None,
                value,
                headers: vec![WitHeader { name, value }],
            });
        }
        RawBatch {
            topic: "visits".into(),
            data,
            records,
        }
    }

    #[test]
    fn a_record_applied_before_is_passed_over_once_stored() {
        let mut applied = Applied::default();
        let first = forwarded(&["visits:0:10", "visits:1:5", "visits:0:11"]);
        assert!(applied.unapplied(&first).is_none());
        applied.apply(&first);
        let changes = applied.take_changes();
        assert_eq!(changes.len(), 2);
        // What a checkpoint stored is what the next lane starts from.
        let stored = StoredState {
            values: changes.into_iter().map(|(k, v)| (k, v.unwrap())).collect(),
            timers: vec![],
        };
        let applied = Applied::from_state(stored, Vec::new());
        let replayed = forwarded(&["visits:0:11", "visits:0:12", "visits:1:5", "visits:1:6"]);
        let fresh = applied.unapplied(&replayed).unwrap();
        let offsets: Vec<i64> = fresh.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 3]);
        // A replay inside one batch.
        let twice = forwarded(&["visits:2:1", "visits:2:2", "visits:2:1", "visits:2:3"]);
        let fresh = Applied::default().unapplied(&twice).unwrap();
        let offsets: Vec<i64> = fresh.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1, 3]);
    }
}
