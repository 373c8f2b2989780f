//! The Kafka source: a consumer group whose every assigned partition is a
//! lane.
//!
//! One thread polls the consumer and cuts each partition's records into
//! batches for its lane (by count and by time). Rebalances are served on
//! that thread: an assigned partition opens a lane and starts at the offset
//! of the lane's last checkpoint in the sink (which is authoritative: Kafka's
//! committed offsets are only mirrored, for lag monitoring); the lane of a
//! revoked partition finishes the batch in hand and commits before the
//! partition is let go, leaving its queued batches to the next owner, so a
//! rebalance is not held up by a long queue. A checkpoint commits only over
//! the lane's own last one: a lane another process has checkpointed since
//! (the group moved it while this process stalled) is fenced off, and is
//! opened again from the new checkpoint if the partition is still read here.
//!
//! Memory is bounded by librdkafka's prefetch queue, one per process
//! (`queued.max.messages.kbytes`, 64 MiB unless overridden), plus each
//! lane's queue and the batch being cut for it (see `queue`). A lane that falls behind briefly
//! is ordinary backpressure: polling waits for room in its channel and the
//! prefetch queue is kept. A lane with no room for `pause-after`
//! (quarantined, waiting for its parser, or a slow sink) has its partition
//! paused in librdkafka instead, holding the batch it could not take, so
//! the other partitions go on; the partition resumes when the lane takes
//! that batch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;

use super::{Activity, BatchBuilder, BatchSender, Lanes};
use crate::config::{Assignment, BatchSection, KafkaSource, StartOffset};
use crate::error::Fenced;
use crate::metrics::LaneMetrics;
use crate::model::{LaneKey, SourceBatch};

/// Reads a consumer group's partitions into lanes.
pub struct KafkaReader {
    source: KafkaSource,
    batch: BatchSection,
    lanes: Arc<dyn Lanes>,
    runtime: Handle,
    until_end: bool,
}

type Consumer_ = BaseConsumer<LaneContext>;

impl KafkaReader {
    /// A reader whose partitions become lanes of `lanes`; it waits for
    /// room in a lane's queue on `runtime`.
    pub fn new(
        source: KafkaSource,
        batch: BatchSection,
        lanes: Arc<dyn Lanes>,
        runtime: Handle,
    ) -> Self {
        // The internal topics of repartitions are read like the others.
        let source = KafkaSource {
            topics: source.lane_topics(),
            ..source
        };
        Self {
            source,
            batch,
            lanes,
            runtime,
            until_end: false,
        }
    }

    /// Bounded mode: reads each partition of the topics up to its end
    /// offset when the reader starts, then closes every lane and returns.
    /// A partition this process is never assigned fails the run, naming it.
    pub fn until_end(mut self, until_end: bool) -> Self {
        self.until_end = until_end;
        self
    }

    /// Consumes until `stop` is set or a lane fails, then closes every lane
    /// (each commits a last checkpoint). Blocking: run it on its own thread.
    pub fn run(self, activity: Arc<Activity>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
        let (commits_tx, commits) = std_mpsc::channel();
        let context = LaneContext {
            lanes: Mutex::new(Assigned {
                source: self.source.clone(),
                batch: self.batch.clone(),
                lanes: self.lanes.clone(),
                runtime: self.runtime.clone(),
                activity: activity.clone(),
                commits: commits_tx,
                closed_paused: HashSet::new(),
                open: HashMap::new(),
                failure: None,
            }),
        };
        let mut config = self.source.client_config();
        let start = match self.source.start {
            StartOffset::Earliest => "earliest",
            StartOffset::Latest => "latest",
        };
        let session_ms = self.source.session_timeout.as_millis().to_string();
        let fetch_wait_ms = self.source.fetch_wait.as_millis().max(1).to_string();
        for (key, value) in [
            ("group.id", self.source.group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", start),
            ("session.timeout.ms", &session_ms),
            ("fetch.wait.max.ms", &fetch_wait_ms),
            // The prefetch queue is per consumer: 64 MiB bounds a process's
            // buffered records; when full, fetching retries after 10 ms
            // rather than librdkafka's default second.
            ("queued.max.messages.kbytes", "65536"),
            ("fetch.queue.backoff.ms", "10"),
            ("enable.partition.eof", "false"),
            // Each second, the partitions' ends for the lag metric.
            ("statistics.interval.ms", "1000"),
            // A rebalance computed before the topics' metadata arrived
            // assigns nothing; a short refresh corrects it within seconds.
            ("topic.metadata.refresh.interval.ms", "5000"),
        ] {
            // The user's properties win over Apiary's defaults.
            if !self.source.properties.contains_key(key) {
                config.set(key, value);
            }
        }
        let consumer: Consumer_ = config
            .create_with_context(context)
            .context("invalid Kafka consumer settings")?;
        let topics = self.source.topics.physical();
        if !wait_for_brokers(&consumer, &self.source.brokers, &topics, &stop) {
            return Ok(());
        }
        match self.source.assignment {
            Assignment::Group => consumer
                .subscribe(&topics)
                .with_context(|| format!("cannot subscribe to {topics:?}"))?,
            Assignment::All => assign_all(&consumer, &topics)?,
        }
        tracing::info!(group = %self.source.group, ?topics, "consuming");
        let mut bounded = if self.until_end {
            Some(Bounded::new(end_offsets(&consumer, &topics)?))
        } else {
            None
        };

        let max_wait = self.batch.max_wait;
        // Partial batches are checked for their deadline this often, not
        // per record: per-record work is what bounds the read rate.
        let tick = (max_wait / 4).clamp(Duration::from_millis(1), Duration::from_millis(10));
        let mut last_tick = Instant::now();
        // The clock is read per 64 messages or idle poll, not per message.
        let mut since_clock = 0u32;
        let mut read_since_tick = false;
        while !stop.load(Ordering::Relaxed) {
            let message = consumer.poll(tick);
            let mut lanes = consumer.context().lock();
            let idle = message.is_none();
            match message {
                Some(Ok(message)) => {
                    read_since_tick = true;
                    lanes.push(&message, &consumer);
                }
                Some(Err(e)) => tracing::warn!("Kafka: {e}"),
                None => {}
            }
            since_clock += 1;
            let read_clock = idle || since_clock >= 64;
            if read_clock {
                since_clock = 0;
            }
            if read_clock && last_tick.elapsed() >= tick {
                if std::mem::take(&mut read_since_tick) {
                    activity.touch();
                }
                last_tick = Instant::now();
                lanes.send_held(&consumer);
                lanes.send_due(max_wait, &consumer);
                if lanes.failure.is_some() {
                    break;
                }
                if let Some(bounded) = &mut bounded
                    && bounded.done(&mut lanes, &consumer, self.source.session_timeout)
                {
                    break;
                }
                drop(lanes);
                commit_offsets(&consumer, &commits, CommitMode::Async);
            }
        }
        // Every lane drains and commits its last checkpoint.
        let mut lanes = consumer.context().lock();
        lanes.close_all(Closing::Drain);
        let failure = lanes.failure.take();
        drop(lanes);
        commit_offsets(&consumer, &commits, CommitMode::Sync);
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The end offset (high watermark) of every partition of `topics` now.
fn end_offsets(
    consumer: &Consumer_,
    topics: &[&str],
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot read the topics' partitions")?;
    let mut ends = HashMap::new();
    for topic in metadata.topics() {
        if !topics.contains(&topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10))
                .with_context(|| {
                    format!(
                        "cannot read the end of {}[{}]",
                        topic.name(),
                        partition.id()
                    )
                })?;
            ends.insert((topic.name().to_owned(), partition.id()), high);
        }
    }
    tracing::info!(
        partitions = ends.len(),
        "bounded: reading up to the end offsets taken now"
    );
    Ok(ends)
}

/// `--until-end` over Kafka: which partitions reached the end offset they
/// had at the start.
struct Bounded {
    ends: HashMap<(String, i32), i64>,
    reached: HashSet<(String, i32)>,
    /// Since when every assigned partition is done while others were never
    /// assigned.
    waiting_since: Option<Instant>,
}

impl Bounded {
    fn new(ends: HashMap<(String, i32), i64>) -> Self {
        Self {
            ends,
            reached: HashSet::new(),
            waiting_since: None,
        }
    }

    /// Whether the bounded read is over: every partition reached its end
    /// (paused there, its records handed to its lane) or is held by a
    /// quarantined lane. A partition still unassigned a session timeout
    /// after the others are done fails the run.
    fn done(&mut self, lanes: &mut Assigned, consumer: &Consumer_, grace: Duration) -> bool {
        let mut flushed = true;
        for (topic, open) in &mut lanes.open {
            for (partition, lane) in open.iter_mut() {
                let id = (topic.clone(), *partition);
                let Some(end) = self.ends.get(&id) else {
                    continue;
                };
                if lane.metrics.held() {
                    self.reached.insert(id);
                    continue;
                }
                if lane.next_offset >= *end && self.reached.insert(id) {
                    // Nothing past the end: the partition stops here.
                    let _ = consumer.pause(&partition_list(&lane.key));
                }
                if !self.reached.contains(&(topic.clone(), *partition))
                    || !lane.builder.is_empty()
                    || lane.held.is_some()
                {
                    flushed = false;
                }
            }
        }
        if !flushed {
            return false;
        }
        let missing: Vec<String> = self
            .ends
            .keys()
            .filter(|id| !self.reached.contains(*id))
            .map(|(t, p)| format!("{t}[{p}]"))
            .collect();
        if missing.is_empty() {
            return true;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= grace {
            lanes.fail(anyhow::anyhow!(
                "--until-end: partitions never assigned to this process: {}",
                missing.join(", ")
            ));
            return true;
        }
        false
    }
}

/// The one partition a lane reads, as librdkafka takes it.
fn partition_list(lane: &LaneKey) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(&lane.stream, lane.partition);
    list
}

/// Opens a lane for every partition of `topics` and assigns them all to
/// this consumer, each at its lane's checkpoint: no group protocol.
fn assign_all(consumer: &Consumer_, topics: &[&str]) -> anyhow::Result<()> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot read the topics' partitions")?;
    let mut tpl = TopicPartitionList::new();
    let mut lanes = consumer.context().lock();
    for topic in metadata.topics() {
        if !topics.contains(&topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            let offset = match lanes.open(topic.name(), partition.id())? {
                Some(offset) => Offset::Offset(offset),
                None => Offset::Invalid,
            };
            tpl.add_partition_offset(topic.name(), partition.id(), offset)?;
        }
    }
    drop(lanes);
    let partitions: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    consumer
        .assign(&tpl)
        .context("cannot assign the topics' partitions")?;
    tracing::info!(
        ?partitions,
        "partitions assigned (every partition, no group protocol)"
    );
    Ok(())
}

/// Mirrors committed lane offsets to Kafka's group offsets (for lag
/// monitoring only; the sink's offsets are the ones lanes resume from).
fn commit_offsets(
    consumer: &Consumer_,
    commits: &std_mpsc::Receiver<(String, i32, i64)>,
    mode: CommitMode,
) {
    let pending: Vec<(String, i32, i64)> = commits.try_iter().collect();
    if pending.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in pending {
        // A later offset of the same partition replaces an earlier one.
        let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::debug!("mirroring offsets to Kafka failed (lag figures lag): {e}");
    }
}

/// Waits until the brokers answer and every topic exists, logging why not
/// every few seconds. Returns false if stopped first.
fn wait_for_brokers(
    consumer: &Consumer_,
    brokers: &str,
    topics: &[&str],
    stop: &AtomicBool,
) -> bool {
    let mut delay = Duration::from_millis(500);
    loop {
        let problem = match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Err(e) => Some(format!("cannot reach Kafka brokers at {brokers}: {e}")),
            Ok(metadata) => {
                let missing: Vec<&str> = topics
                    .iter()
                    .filter(|t| {
                        !metadata.topics().iter().any(|m| {
                            m.name() == **t && m.error().is_none() && !m.partitions().is_empty()
                        })
                    })
                    .copied()
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "topics {missing:?} do not exist on the brokers at {brokers}; create them"
                    )
                })
            }
        };
        let Some(problem) = problem else {
            return true;
        };
        tracing::error!("{problem}; retrying in {delay:?}");
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The consumer's context: it owns the lanes, because rebalances (served
/// inside `poll`) open and close them.
struct LaneContext {
    lanes: Mutex<Assigned>,
}

impl LaneContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Assigned> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for LaneContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {log_message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "{fac}: {log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac}: {log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }

    /// Takes only the partitions' ends from librdkafka's statistics (a
    /// paused partition's is the last seen before the pause).
    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Stats {
            topics: HashMap<String, TopicStats>,
        }
        #[derive(serde::Deserialize)]
        struct TopicStats {
            partitions: HashMap<i32, PartitionStats>,
        }
        #[derive(serde::Deserialize)]
        struct PartitionStats {
            hi_offset: i64,
        }
        let stats: Stats = match serde_json::from_slice(statistics) {
            Ok(stats) => stats,
            Err(e) => return tracing::debug!("unreadable librdkafka statistics: {e}"),
        };
        let lanes = self.lock();
        for (topic, topic_stats) in stats.topics {
            for (partition, p) in topic_stats.partitions {
                let lane = lanes.open.get(&topic).and_then(|l| l.get(&partition));
                if let Some(lane) = lane.filter(|_| p.hi_offset >= 0) {
                    lane.metrics.source_end(Some(p.hi_offset));
                }
            }
        }
    }
}

impl ConsumerContext for LaneContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut lanes = self.lock();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                lanes.activity.touch();
                for (topic, partition) in &partitions {
                    match lanes.open(topic, *partition) {
                        Ok(Some(offset)) => {
                            let _ =
                                tpl.set_partition_offset(topic, *partition, Offset::Offset(offset));
                        }
                        Ok(None) => {}
                        Err(e) => lanes.fail(e),
                    }
                }
                if partitions.is_empty() {
                    tracing::warn!(
                        "the group assigned this process no partition (more members than partitions, or the broker is rebalancing)"
                    );
                } else {
                    tracing::info!(?partitions, "partitions assigned");
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl).map(|_| ())
                } else {
                    consumer.assign(tpl)
                };
                // librdkafka keeps a partition paused across a rebalance;
                // the lane that paused it before it was revoked is gone.
                let stale = lanes.left_paused(&partitions);
                match assigned {
                    Ok(()) if stale.count() > 0 => consumer.resume(&stale),
                    other => other,
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    ?partitions,
                    "partitions revoked; their lanes commit before letting go"
                );
                // Lanes fenced off here belong to another process already.
                lanes.close(&partitions, Closing::LetGo);
                if cooperative {
                    consumer.incremental_unassign(tpl).map(|_| ())
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!("rebalance failed: {other:?}; closing every lane");
                lanes.close_all(Closing::LetGo);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            lanes.fail(anyhow::anyhow!("cannot apply the group's assignment: {e}"));
        }
    }
}

/// How a lane closes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// After every batch the source has read for it (the run ends).
    Drain,
    /// After the batch in hand (its partition was revoked).
    LetGo,
}

/// The open lanes of this consumer, by (topic, partition).
struct Assigned {
    source: KafkaSource,
    batch: BatchSection,
    lanes: Arc<dyn Lanes>,
    runtime: Handle,
    /// Idle time counts from the last assignment too: a slow group join
    /// is not an idle source.
    activity: Arc<Activity>,
    commits: std_mpsc::Sender<(String, i32, i64)>,
    /// Partitions whose lanes closed while they were paused.
    closed_paused: HashSet<(String, i32)>,
    /// By topic, then partition: looked up per record without allocating.
    open: HashMap<String, HashMap<i32, OpenLane>>,
    failure: Option<anyhow::Error>,
}

struct OpenLane {
    key: LaneKey,
    builder: BatchBuilder,
    first_at: Instant,
    /// After the last record handed to the lane (at first, where its
    /// checkpoint ends): records before it are skipped.
    next_offset: i64,
    /// A batch the lane had no room for: its partition is paused until the
    /// lane takes it.
    held: Option<SourceBatch>,
    metrics: Arc<LaneMetrics>,
    tx: BatchSender,
}

impl OpenLane {
    /// The records gathered so far, as a batch for the lane.
    fn take_batch(&mut self) -> SourceBatch {
        SourceBatch {
            lane: self.key.clone(),
            batch: self.builder.take(),
            next_offset: self.next_offset,
            room: None,
        }
    }
}

impl Assigned {
    /// Opens the lane of an assigned partition; returns its checkpointed
    /// offset, where consumption must start.
    fn open(&mut self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        let key = LaneKey {
            consumer: self.source.group.clone(),
            stream: topic.to_owned(),
            partition,
        };
        let logical = self.source.topics.logical(topic).to_owned();
        let commits = self.commits.clone();
        let input = self.lanes.open(
            key.clone(),
            &logical,
            Some(Box::new(move |key, offset| {
                let _ = commits.send((key.stream.clone(), key.partition, offset));
            })),
        )?;
        self.open.entry(topic.to_owned()).or_default().insert(
            partition,
            OpenLane {
                key,
                builder: BatchBuilder::new(&logical, self.batch.max_records),
                first_at: Instant::now(),
                next_offset: input.start.unwrap_or(0),
                held: None,
                metrics: input.metrics,
                tx: input.batches,
            },
        );
        Ok(input.start)
    }

    /// Adds a record to its lane's batch, sending the batch when full.
    fn push(&mut self, message: &BorrowedMessage<'_>, consumer: &Consumer_) {
        let Some(lane) = self
            .open
            .get_mut(message.topic())
            .and_then(|lanes| lanes.get_mut(&message.partition()))
        else {
            return;
        };
        // Already in a checkpoint or handed to the lane: librdkafka may
        // deliver a record again after a seek, a pause or a reassignment.
        if message.offset() < lane.next_offset {
            return;
        }
        if lane.builder.is_empty() {
            lane.first_at = Instant::now();
        }
        let headers: Vec<(&[u8], &[u8])> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.as_bytes(), h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        lane.builder.push(
            message.partition(),
            message.offset(),
            message.timestamp().to_millis(),
            message.key(),
            message.payload().unwrap_or_default(),
            &headers,
        );
        lane.next_offset = message.offset() + 1;
        let full = lane.builder.len() >= self.batch.max_records
            || lane.builder.bytes() >= self.batch.max_bytes;
        if full
            && lane.held.is_none()
            && !Self::send(&self.runtime, self.source.pause_after, lane, consumer)
        {
            let stopped = (message.topic().to_owned(), message.partition());
            let fenced = self.close(&[stopped], Closing::Drain);
            self.reopen(&fenced, consumer);
        }
    }

    /// Sends every partial batch that has waited `max_wait`.
    fn send_due(&mut self, max_wait: Duration, consumer: &Consumer_) {
        let mut stopped = Vec::new();
        for (topic, lanes) in &mut self.open {
            for (partition, lane) in lanes {
                if !lane.builder.is_empty()
                    && lane.held.is_none()
                    && lane.first_at.elapsed() >= max_wait
                    && !Self::send(&self.runtime, self.source.pause_after, lane, consumer)
                {
                    stopped.push((topic.clone(), *partition));
                }
            }
        }
        let fenced = self.close(&stopped, Closing::Drain);
        self.reopen(&fenced, consumer);
    }

    /// Offers each held batch to its lane again, resuming the partition of
    /// each lane that takes it.
    fn send_held(&mut self, consumer: &Consumer_) {
        let (mut stopped, mut failed) = (Vec::new(), Vec::new());
        for (topic, lanes) in &mut self.open {
            for (partition, lane) in lanes {
                let Some(batch) = lane.held.take() else {
                    continue;
                };
                match lane.tx.try_send(batch) {
                    Ok(()) => {
                        tracing::debug!(lane = %lane.key, "lane has room again; its partition resumes");
                        lane.metrics.source_paused(false);
                        if let Err(e) = consumer.resume(&partition_list(&lane.key)) {
                            failed.push(anyhow::anyhow!(
                                "cannot resume the partition of lane {}: {e}",
                                lane.key
                            ));
                        }
                    }
                    Err(TrySendError::Full(batch)) => lane.held = Some(batch),
                    Err(TrySendError::Closed(_)) => stopped.push((topic.clone(), *partition)),
                }
            }
        }
        let fenced = self.close(&stopped, Closing::Drain);
        self.reopen(&fenced, consumer);
        for error in failed {
            self.fail(error);
        }
    }

    /// Hands the lane its batch, waiting up to `pause_after` for
    /// room; past that the batch is held and the partition paused. False if
    /// the lane has stopped (failed).
    fn send(
        runtime: &Handle,
        pause_after: Duration,
        lane: &mut OpenLane,
        consumer: &Consumer_,
    ) -> bool {
        let batch = lane.take_batch();
        let batch = match lane.tx.try_send(batch) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(batch)) => batch,
        };
        match runtime.block_on(tokio::time::timeout(pause_after, lane.tx.reserve(&batch))) {
            Ok(Some(reserved)) => {
                reserved.send(batch);
                true
            }
            Ok(None) => false,
            Err(_) => match consumer.pause(&partition_list(&lane.key)) {
                Ok(()) => {
                    tracing::debug!(
                        lane = %lane.key,
                        "lane full for {pause_after:?}; its partition pauses, the others go on"
                    );
                    lane.held = Some(batch);
                    lane.metrics.source_paused(true);
                    true
                }
                // Unpaused, more records would come: wait as for any lane.
                Err(e) => {
                    tracing::warn!(lane = %lane.key, "cannot pause the partition of a full lane: {e}");
                    lane.tx.blocking_send(batch)
                }
            },
        }
    }

    /// Closes the lanes of `partitions`: each gets its partial batch, then
    /// drains and commits a last checkpoint (or, let go, commits after the
    /// batch in hand); this waits for that. Returns the partitions whose
    /// lanes were fenced off (another process checkpointed them).
    fn close(&mut self, partitions: &[(String, i32)], closing: Closing) -> Vec<(String, i32)> {
        let mut fenced = Vec::new();
        for partition in partitions {
            let (topic, number) = partition;
            let Some(mut lane) = self
                .open
                .get_mut(topic)
                .and_then(|lanes| lanes.remove(number))
            else {
                continue;
            };
            if lane.held.is_some() {
                self.closed_paused.insert(partition.clone());
            }
            // This process no longer reads the partition.
            lane.metrics.source_paused(false);
            lane.metrics.source_end(None);
            // Never wait here: a paused lane only lets go once its sender
            // is dropped. Batches it cannot take are not committed, so
            // whoever resumes the partition reads them again (a stopped lane
            // reports its own error below); in order, so none is skipped.
            if closing == Closing::Drain {
                let partial = (!lane.builder.is_empty()).then(|| lane.take_batch());
                for batch in lane.held.take().into_iter().chain(partial) {
                    if lane.tx.try_send(batch).is_err() {
                        break;
                    }
                }
            }
            drop(lane.tx);
            let closed = match closing {
                Closing::Drain => self.lanes.close(&lane.key),
                Closing::LetGo => self.lanes.let_go(&lane.key),
            };
            match closed {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<Fenced>().is_some() => {
                    tracing::warn!("{e:#}");
                    fenced.push(partition.clone());
                }
                Err(e) => self.fail(e),
            }
        }
        fenced
    }

    /// Opens the lanes of `partitions` again, fenced off while the group
    /// still has this process read them: each resumes from the checkpoint
    /// that fenced it, and whichever process checkpoints first wins each
    /// time until the group settles who owns it.
    fn reopen(&mut self, partitions: &[(String, i32)], consumer: &Consumer_) {
        for (topic, partition) in partitions {
            let start = match self.open(topic, *partition) {
                Ok(start) => start,
                Err(e) => {
                    self.fail(e);
                    continue;
                }
            };
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = consumer.seek(topic, *partition, offset, Duration::from_secs(10)) {
                self.fail(anyhow::anyhow!(
                    "cannot read {topic}[{partition}] again from its checkpoint: {e}"
                ));
            }
        }
    }

    /// Which of `partitions` a closed lane left paused; forgets them.
    fn left_paused(&mut self, partitions: &[(String, i32)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            if self.closed_paused.remove(partition) {
                list.add_partition(&partition.0, partition.1);
            }
        }
        list
    }

    fn close_all(&mut self, closing: Closing) {
        let all: Vec<(String, i32)> = self
            .open
            .iter()
            .flat_map(|(topic, lanes)| lanes.keys().map(move |p| (topic.clone(), *p)))
            .collect();
        self.close(&all, closing);
    }

    /// Keeps the first failure; the reader stops at its next poll.
    fn fail(&mut self, error: anyhow::Error) {
        tracing::error!("{error:#}");
        self.failure.get_or_insert(error);
    }
}
