//! A lane: the records of one partition, in order, through one set of
//! plugin instances, checkpointed by count and by time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use anyhow::Context as _;

use super::buffer::RowBuffer;
use super::repartition::{APPLIED_STATE, Applied, Forwarder, Progress, Role};
use crate::config;
use crate::metrics::LaneMetrics;
use crate::model::lane::sub_batch;
use crate::model::wit::types::{RawBatch, RawRecord, Span};
use crate::model::{Checkpoint, DeadLetter, LaneKey, SourceBatch, StateChange, TimerChange};
use crate::output::{Output, Pending};
use crate::plugin::{BatchFailure, BatchResult, Engine, Held, LanePlugins, LivePlugins};
use crate::source::{Activity, CommitHook, span_bytes};
use crate::store::SqlStore;

/// Counts of a lane over a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LaneStats {
    /// Records read.
    pub records: u64,
    /// Events the parser produced.
    pub events: u64,
    /// Rows the rules produced, before folding.
    pub rows: u64,
    /// Event-time timers that fired.
    pub timers: u64,
    /// Records sent to the dead-letter table.
    pub dead_letters: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Rows written to the sink, after folding by key.
    pub rows_written: u64,
    /// How long each checkpoint took to commit.
    pub checkpoint_times: Vec<Duration>,
    /// When the lane got its first batch.
    pub first_batch_at: Option<Instant>,
    /// When it finished processing its last batch.
    pub last_batch_at: Option<Instant>,
    /// When its last checkpoint committed.
    pub last_commit_at: Option<Instant>,
    /// How long each take-over of new plugins held the lane up.
    pub swap_pauses: Vec<Duration>,
    /// Why the lane stopped before its source's end, if it did (a
    /// quarantined plugin, no parser for its topic).
    pub held: Option<String>,
}

/// One partition's processing state.
pub struct Lane {
    key: LaneKey,
    plugins: LanePlugins,
    engine: Engine,
    store: SqlStore,
    buffer: RowBuffer,
    dead_letters: Vec<DeadLetter>,
    /// Bytes of record data and reasons in `dead_letters`.
    dead_letter_bytes: usize,
    next_offset: i64,
    committed_offset: i64,
    /// The offset the store holds for the lane, as this process last saw
    /// it: a checkpoint commits only over it.
    stored_offset: Option<i64>,
    committed_watermark: Option<i64>,
    /// Move the watermark on by processing time after this long idle.
    idle_timeout: Option<Duration>,
    /// When the lane last got a record, and the watermark then.
    last_record: (Instant, Option<i64>),
    /// A rule failed on the timers of a watermark moved without records:
    /// the next batch tries them again, the clock and marks do not.
    advance_failed: bool,
    max_rows: usize,
    max_bytes: usize,
    /// Records with more bytes of key and value are dead letters.
    max_record_bytes: usize,
    interval: Duration,
    stats: LaneStats,
    /// Side outputs, written before each checkpoint commits.
    outputs: Vec<Arc<dyn Output>>,
    on_commit: Option<CommitHook>,
    stop: Arc<AtomicBool>,
    /// Set by SIGINT or SIGTERM: finish the batch in flight, checkpoint,
    /// and leave the queued batches to the next run.
    interrupt: Arc<AtomicBool>,
    /// Set when the source lets the lane go (its partition was revoked):
    /// like `interrupt`, for this lane only.
    let_go: Arc<AtomicBool>,
    /// Touched after each batch, so a busy lane does not look idle.
    activity: Option<Arc<Activity>>,
    live: Option<LiveLink>,
    metrics: Arc<LaneMetrics>,
    /// First stage of a repartition: where the lane's records go.
    forwarder: Option<Forwarder>,
    /// Second stage of a repartition: the source offsets applied.
    applied: Option<Applied>,
    /// The checkpoint committing in the background, if one is.
    in_flight: Option<InFlight>,
}

/// What a commit task returns: how long the commit took.
type CommitResult = Result<anyhow::Result<Duration>, tokio::task::JoinError>;

/// When the commit in flight finishes (never, without one).
async fn committed(in_flight: &mut Option<InFlight>) -> CommitResult {
    match in_flight {
        Some(commit) => (&mut commit.task).await,
        None => std::future::pending().await,
    }
}

/// A checkpoint being committed while its lane goes on.
struct InFlight {
    task: tokio::task::JoinHandle<anyhow::Result<Duration>>,
    next_offset: i64,
    rows_written: usize,
}

/// Where a lane looks for newer plugins, and which it runs.
pub struct LiveLink {
    /// The pipeline's current plugins.
    pub plugins: Arc<LivePlugins>,
    /// The generation the lane runs.
    pub generation: u64,
    /// The lane's logical topic, whose parser it needs.
    pub topic: String,
}

impl Lane {
    /// A lane that resumes at its `stored` offset (at 0 without one).
    pub fn new(
        key: LaneKey,
        stored: Option<i64>,
        plugins: LanePlugins,
        engine: Engine,
        store: SqlStore,
        config: &config::SqlSink,
    ) -> Self {
        Self {
            last_record: (Instant::now(), plugins.watermark()),
            buffer: RowBuffer::new(store.utc_offset_secs()),
            key,
            plugins,
            engine,
            store,
            dead_letters: Vec::new(),
            dead_letter_bytes: 0,
            next_offset: stored.unwrap_or(0),
            committed_offset: stored.unwrap_or(0),
            stored_offset: stored,
            committed_watermark: None,
            idle_timeout: None,
            advance_failed: false,
            max_rows: config.max_rows,
            max_bytes: config.max_bytes,
            max_record_bytes: usize::MAX,
            interval: config.interval,
            stats: LaneStats::default(),
            outputs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            interrupt: Arc::new(AtomicBool::new(false)),
            let_go: Arc::new(AtomicBool::new(false)),
            activity: None,
            on_commit: None,
            live: None,
            metrics: Arc::default(),
            forwarder: None,
            applied: None,
            in_flight: None,
        }
    }

    /// Plays `role` in a repartition: forwards its records to the internal
    /// topic, or applies each forwarded record once (`stored`: what its
    /// last checkpoint applied).
    pub fn with_role(mut self, role: Option<Role>, stored: Applied) -> Self {
        match role {
            Some(Role::Forward(forwarder)) => self.forwarder = Some(forwarder),
            Some(Role::Apply(_)) => self.applied = Some(stored),
            None => {}
        }
        self
    }

    /// Writes to `outputs`, in order, before each checkpoint commits;
    /// checkpoints come at least as often as each output asks.
    pub fn with_outputs(mut self, outputs: Vec<Arc<dyn Output>>) -> Self {
        for interval in outputs.iter().filter_map(|o| o.interval()) {
            self.interval = self.interval.min(interval);
        }
        self.outputs = outputs;
        self
    }

    /// Follows `live`: the lane takes each new plugin set over at a batch
    /// boundary.
    pub fn with_live(mut self, live: LiveLink) -> Self {
        self.live = Some(live);
        self
    }

    /// Counts into `metrics` as it goes, from the offset it starts at.
    pub fn with_metrics(mut self, metrics: Arc<LaneMetrics>) -> Self {
        metrics.committed(self.committed_offset);
        self.committed_watermark = self.plugins.watermark();
        if let Some(w) = self.committed_watermark {
            metrics.set_watermark(w);
        }
        self.metrics = metrics;
        self
    }

    /// Moves the watermark on by processing time once the lane has read
    /// nothing for `timeout` (see `[time] idle-timeout`).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Refuses records with more than `limit` bytes of key and value
    /// (`[batch] max-record-bytes`).
    pub fn with_max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// Sets the flag that tells a paused lane the pipeline is stopping.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }

    /// Notes each processed batch in `activity` (see `--stop-when-idle`).
    pub fn with_activity(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    /// Sets the flag of a stop request (SIGINT, SIGTERM): the lane then
    /// commits what it processed and leaves its queue unread.
    pub fn with_interrupt(mut self, interrupt: Arc<AtomicBool>) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Sets the flag that lets this lane go: it then commits what it
    /// processed and leaves its queue unread, as on a stop request.
    pub fn with_let_go(mut self, let_go: Arc<AtomicBool>) -> Self {
        self.let_go = let_go;
        self
    }

    /// Calls `hook` after each committed checkpoint (to mirror the offset
    /// to Kafka for lag monitoring).
    pub fn with_commit_hook(mut self, hook: CommitHook) -> Self {
        self.on_commit = Some(hook);
        self
    }

    /// Processes batches until the source closes the channel, then commits
    /// a last checkpoint.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<SourceBatch>,
    ) -> anyhow::Result<(LaneKey, LaneStats)> {
        let mut last_checkpoint = Instant::now();
        'lane: loop {
            let due = last_checkpoint + self.interval;
            tokio::select! {
                // A finished commit shows in the metrics, and in Kafka's
                // offsets, at once rather than at the next checkpoint.
                result = committed(&mut self.in_flight), if self.in_flight.is_some() => {
                    if let Some(commit) = self.in_flight.take() {
                        self.complete(commit, result)?;
                    }
                }
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    if self.interrupt.load(Ordering::Relaxed) || self.let_go.load(Ordering::Relaxed) {
                        break;
                    }
                    loop {
                        // New plugins take over between two batches.
                        if self.plugins_changed() && !self.upgrade(&rx).await? {
                            break 'lane;
                        }
                        // Plugin calls are CPU work: keep them off the async workers.
                        let quarantined = match tokio::task::block_in_place(|| self.process(&batch))? {
                            None => break,
                            Some(Held::Interrupted) => break 'lane,
                            Some(Held::Quarantined(quarantined)) => quarantined,
                        };
                        // Commit what came before the held batch, then wait.
                        self.checkpoint().await?;
                        tracing::error!(
                            lane = %self.key,
                            offset = self.next_offset,
                            "{quarantined}; the lane pauses at offset {} until a new version \
                             of `{}` is loaded (no record is skipped)",
                            self.next_offset,
                            quarantined.plugin
                        );
                        self.metrics.set_quarantined(Some(&quarantined.plugin));
                        self.metrics.set_held(true);
                        if !self.wait_for_plugins(&rx).await {
                            self.stats.held = Some(quarantined.to_string());
                            break 'lane;
                        }
                        self.metrics.set_quarantined(None);
                        self.metrics.set_held(false);
                    }
                    // Refused and forwarded records are held until the checkpoint too.
                    let forwarded = self.forwarder.as_ref().map_or(0, Forwarder::pending_bytes);
                    let held = self.buffer.bytes() + self.dead_letter_bytes + forwarded;
                    if self.buffer.len() >= self.max_rows
                        || held >= self.max_bytes
                        || self.plugins.state_write_due()
                    {
                        self.checkpoint_behind().await?;
                        last_checkpoint = Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(due.into()) => {
                    tokio::task::block_in_place(|| self.advance_when_idle());
                    self.checkpoint_behind().await?;
                    last_checkpoint = Instant::now();
                }
            }
        }
        self.checkpoint().await?;
        self.metrics.lane_stopped();
        let s = &self.stats;
        tracing::info!(
            lane = %self.key,
            records = s.records,
            events = s.events,
            rows = s.rows,
            dead_letters = s.dead_letters,
            checkpoints = s.checkpoints,
            "lane finished"
        );
        Ok((self.key, self.stats))
    }

    fn plugins_changed(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.plugins.generation() != l.generation)
    }

    /// Waits for a newer plugin set; `false` if the pipeline stops or the
    /// source lets the lane go first (its held records are then read again
    /// by whoever resumes the lane).
    fn wait_for_plugins<'a>(
        &self,
        rx: &'a mpsc::Receiver<SourceBatch>,
    ) -> impl Future<Output = bool> + Send + 'a {
        // Owned handles only: the lane itself is not `Sync`.
        let live = self
            .live
            .as_ref()
            .map(|l| (l.plugins.clone(), l.generation));
        let stop = self.stop.clone();
        async move {
            loop {
                if live.as_ref().is_some_and(|(p, g)| p.generation() != *g) {
                    return true;
                }
                if stop.load(Ordering::Relaxed) || rx.is_closed() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Takes the newest plugin set over, after a checkpoint (so the rows
    /// and state of the old versions, and of removed plugins, are durable).
    /// While no plugin parses the lane's topic, the lane pauses. `false` if
    /// the pipeline stops first.
    async fn upgrade(&mut self, rx: &mpsc::Receiver<SourceBatch>) -> anyhow::Result<bool> {
        let started = Instant::now();
        self.checkpoint().await?;
        let Some(live) = &self.live else {
            return Ok(true);
        };
        let (plugins, topic) = (live.plugins.clone(), live.topic.clone());
        loop {
            let (generation, set) = plugins.current();
            if let Some(live) = &mut self.live {
                live.generation = generation;
            }
            if set.parser_for(&topic).is_some() {
                let running = self.plugins.names();
                let mut states = std::collections::HashMap::new();
                for plugin in set.all() {
                    let name = plugin.name();
                    if !running.iter().any(|r| r == name) {
                        let stored = self.store.load_state(&self.key, name).await?.into();
                        states.insert(name.to_owned(), stored);
                    }
                }
                self.plugins
                    .upgrade(&self.engine, &set, &topic, |name| {
                        Ok(states.remove(name).unwrap_or_default())
                    })
                    .with_context(|| format!("lane {}", self.key))?;
                let took = started.elapsed();
                self.stats.swap_pauses.push(took);
                tracing::info!(lane = %self.key, generation, ?took, "lane takes new plugins over");
                return Ok(true);
            }
            tracing::warn!(
                lane = %self.key,
                "no plugin parses topic `{topic}` any more: the lane pauses until one is \
                 loaded (no record is skipped)"
            );
            self.metrics.set_held(true);
            if !self.wait_for_plugins(rx).await {
                self.stats.held = Some(format!("no plugin parses topic `{topic}`"));
                return Ok(false);
            }
            self.metrics.set_held(false);
        }
    }

    /// With `[time] idle-timeout`: once the lane has read nothing for that
    /// long, its watermark follows processing time from where the last
    /// record left it, firing the timers it reaches.
    fn advance_when_idle(&mut self) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        // A first stage runs no rule: it tells the internal partitions it
        // is idle instead (see `announce`). A second stage follows its
        // sources while any of them is active.
        let follows_sources = self.applied.as_ref().is_some_and(|a| !a.all_idle());
        if self.forwarder.is_some() || follows_sources {
            return;
        }
        let (at, Some(watermark)) = self.last_record else {
            return;
        };
        let idle = at.elapsed();
        if idle < timeout {
            return;
        }
        let to = watermark.saturating_add(i64::try_from(idle.as_millis()).unwrap_or(i64::MAX));
        let result = self.advance_without_records(to, "idle watermark");
        let mut row_count = 0;
        for (table, cells) in result.rows {
            row_count += (cells.len() / table.columns.len()) as u64;
            self.buffer.merge(&table, cells);
        }
        self.stats.rows += row_count;
        self.stats.timers += result.timers as u64;
        if let Some(w) = self.plugins.watermark() {
            self.metrics.set_watermark(w);
        }
    }

    /// Moves the watermark on to `to` without records (an idle lane, or a
    /// second stage whose sources moved), firing the timers it reaches. A
    /// rule that fails on them does not stop the lane: the watermark and
    /// the state stay as they were, and the lane's next batch fires those
    /// timers again, where a rule that keeps failing on them is quarantined.
    /// Until that batch, the lane does not try again.
    fn advance_without_records(&mut self, to: i64, why: &str) -> BatchResult {
        if self.advance_failed {
            return BatchResult::default();
        }
        match self.plugins.advance_watermark(&self.engine, to) {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(
                    lane = %self.key,
                    "{why}: {e:#}; the watermark stays where it was until the lane's next batch"
                );
                let rule = e.downcast_ref::<BatchFailure>().map(|f| f.plugin.as_str());
                self.metrics.set_timers_failed(rule);
                self.advance_failed = true;
                BatchResult::default()
            }
        }
    }

    /// A first stage tells every internal partition how far it is in
    /// event time, when that changed: idle once it read nothing for
    /// `[time] idle-timeout`, else its watermark.
    fn announce(&mut self) -> anyhow::Result<()> {
        let Some(forwarder) = &mut self.forwarder else {
            return Ok(());
        };
        let idle = self
            .idle_timeout
            .is_some_and(|timeout| self.last_record.0.elapsed() >= timeout);
        let progress = match self.plugins.watermark() {
            _ if idle => Progress::Idle,
            Some(watermark) => Progress::Watermark(watermark),
            None => return Ok(()),
        };
        forwarder.announce(&self.key, progress)
    }

    /// Processes one batch; returns the quarantine that stopped it, if a
    /// plugin failed on too many records in a row (the batch then left no
    /// trace and must be processed again).
    fn process(&mut self, batch: &SourceBatch) -> anyhow::Result<Option<Held>> {
        let SourceBatch {
            batch: read,
            next_offset,
            ..
        } = batch;
        let started = Instant::now();
        // A repartition's replay may have forwarded records twice.
        let unapplied = self.applied.as_ref().and_then(|a| a.unapplied(read));
        let mut sources = None;
        if let Some(applied) = &mut self.applied {
            applied.note_watermarks(read);
            sources = applied.sources_watermark();
            self.plugins.follow_sources(sources);
        }
        let batch = match &unapplied {
            Some(unapplied) => {
                if unapplied.replayed > 0 {
                    tracing::info!(
                        lane = %self.key,
                        count = unapplied.replayed,
                        "records forwarded again by a replay of the repartition passed over"
                    );
                }
                &sub_batch(read, &unapplied.records)
            }
            None => read,
        };
        let within;
        let batch = match self.refuse_oversized(batch) {
            Some(kept) => {
                within = sub_batch(batch, &kept);
                &within
            }
            None => batch,
        };
        let marks = unapplied.as_ref().map_or(0, |u| u.marks);
        let result = if batch.records.is_empty() {
            // Watermark marks alone: the sources' watermarks may have moved.
            match sources {
                Some(sources) if sources > i64::MIN => {
                    self.advance_without_records(sources, "sources' watermark")
                }
                _ => BatchResult::default(),
            }
        } else {
            match self.plugins.process_isolating(&self.engine, batch)? {
                Ok(result) => {
                    if std::mem::take(&mut self.advance_failed) {
                        self.metrics.set_timers_failed(None);
                    }
                    result
                }
                Err(held) => return Ok(Some(held)),
            }
        };
        let BatchResult {
            rows,
            rejected,
            events,
            timers,
            targets,
        } = result;
        if let Some(applied) = &mut self.applied {
            applied.apply(batch);
        }
        if let Some(forwarder) = &mut self.forwarder {
            let watermark = self.plugins.watermark();
            for (index, reason) in forwarder.send(&self.key, batch, &targets, watermark)? {
                let parser = self.plugins.parser_name().to_owned();
                self.dead_letter(batch, index, parser, reason);
            }
        }
        let mut row_count = 0;
        for (table, cells) in rows {
            row_count += (cells.len() / table.columns.len()) as u64;
            self.buffer.merge(&table, cells);
        }
        for (index, plugin, reason) in rejected {
            self.dead_letter(batch, index, plugin, reason);
        }
        // Watermark marks are not records: a batch of them alone is not
        // work done (the run's busy time ends with the last record).
        let records = read.records.len() - marks;
        self.stats.records += records as u64;
        self.stats.events += events as u64;
        self.stats.rows += row_count;
        self.stats.timers += timers as u64;
        self.next_offset = *next_offset;
        self.last_record = (started, self.plugins.watermark());
        if let Some(w) = self.plugins.watermark() {
            self.metrics.set_watermark(w);
        }
        let now = Instant::now();
        if let Some(activity) = &self.activity {
            activity.touch();
        }
        if records > 0 {
            self.stats.first_batch_at.get_or_insert(started);
            self.stats.last_batch_at = Some(now);
        }
        self.metrics
            .batch(records, events, row_count, now - started);
        Ok(None)
    }

    /// Refuses the records of `batch` with more than `max_record_bytes`
    /// of key and value, as dead letters of the parser; returns the others
    /// if it refused any.
    fn refuse_oversized(&mut self, batch: &RawBatch) -> Option<Vec<RawRecord>> {
        let most = self.max_record_bytes;
        let size = |r: &RawRecord| r.key.map_or(0, |k| k.len as usize) + r.value.len as usize;
        if batch.records.iter().all(|r| size(r) <= most) {
            return None;
        }
        let mut kept = Vec::with_capacity(batch.records.len());
        for (index, record) in batch.records.iter().enumerate() {
            if size(record) <= most {
                kept.push(record.clone());
                continue;
            }
            let parser = self.plugins.parser_name().to_owned();
            let reason = format!(
                "a record of more than {most} bytes (batch.max-record-bytes); \
                 the dead letter keeps its first {most}"
            );
            self.dead_letter(batch, index, parser, reason);
        }
        Some(kept)
    }

    /// Keeps a refused record: at most `max_record_bytes` of its key and
    /// value, the key first.
    fn dead_letter(&mut self, batch: &RawBatch, index: usize, plugin: String, reason: String) {
        let record = &batch.records[index];
        tracing::debug!(lane = %self.key, offset = record.offset, %plugin, "record refused: {reason}");
        self.stats.dead_letters += 1;
        self.metrics.dead_letter(&plugin);
        let mut room = self.max_record_bytes;
        let mut keep = |span: Span| {
            let bytes = span_bytes(batch, span);
            let kept = bytes[..bytes.len().min(room)].to_vec();
            room -= kept.len();
            kept
        };
        let letter = DeadLetter {
            stream: self.key.stream.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.map(&mut keep),
            value: keep(record.value),
            plugin,
            reason,
        };
        self.dead_letter_bytes +=
            letter.value.len() + letter.key.as_ref().map_or(0, Vec::len) + letter.reason.len();
        self.dead_letters.push(letter);
    }

    /// The plugins' state changes, and the repartition's applied offsets.
    fn state_changes(&mut self) -> Vec<(String, Vec<StateChange>, Vec<TimerChange>)> {
        let mut changes = self.plugins.take_state_changes();
        if let Some(applied) = &mut self.applied {
            let applied = applied.take_changes();
            if !applied.is_empty() {
                changes.push((APPLIED_STATE.to_owned(), applied, Vec::new()));
            }
        }
        changes
    }

    /// Commits rows, state, dead letters and the next offset at once, and
    /// waits until they are durable.
    async fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.checkpoint_behind().await?;
        self.finish_commit().await
    }

    /// Starts committing rows, state, dead letters and the next offset at
    /// once, in the background, so the lane processes its next batches
    /// meanwhile (the database's time overlaps the plugins'). One commit
    /// is in flight at a time: this first waits for the previous one. The
    /// lane then holds at most two checkpoints' rows.
    async fn checkpoint_behind(&mut self) -> anyhow::Result<()> {
        self.announce()?;
        if self.next_offset == self.committed_offset && self.buffer.is_empty() {
            return Ok(());
        }
        self.finish_commit().await?;
        let started = Instant::now();
        if let Some(first) = self.dead_letters.first() {
            tracing::warn!(
                lane = %self.key,
                count = self.dead_letters.len(),
                "records refused and sent to apiary_dead_letter; first at offset {} by `{}`: {}",
                first.offset,
                first.plugin,
                first.reason
            );
        }
        let rows_written: usize = self.buffer.len();
        let rows = self.buffer.take();
        // What was forwarded must be on the broker before the offsets
        // that cover it commit; the commit waits for it, the lane goes on.
        let forwarded = self.forwarder.as_mut().map(Forwarder::checkpoint);
        let checkpoint = Checkpoint {
            lane: self.key.clone(),
            next_offset: self.next_offset,
            previous_offset: self.stored_offset,
            rows,
            state: self.state_changes(),
            watermark: self.plugins.watermark(),
            dead_letters: std::mem::take(&mut self.dead_letters),
        };
        self.dead_letter_bytes = 0;
        for (plugin, dropped) in self.plugins.take_log_dropped() {
            tracing::warn!(
                lane = %self.key,
                plugin = %plugin,
                dropped,
                "plugin `{plugin}` logged over its log-rate; {dropped} lines dropped"
            );
            self.metrics.log_dropped(&plugin, dropped);
        }
        self.metrics.plugin_state(self.plugins.state_sizes());
        self.committed_offset = self.next_offset;
        self.stored_offset = Some(self.next_offset);
        self.committed_watermark = checkpoint.watermark;
        let (outputs, store) = (self.outputs.clone(), self.store.clone());
        let utc_offset_secs = store.utc_offset_secs();
        let task = tokio::spawn(async move {
            let mut checkpoint = checkpoint;
            if let Some(acks) = forwarded {
                acks.wait()
                    .await
                    .with_context(|| format!("lane {}", checkpoint.lane))?;
            }
            // Outputs first: if the commit below fails, the lane replays
            // and writes the same again.
            for output in &outputs {
                let (routed, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut checkpoint.rows)
                    .into_iter()
                    .partition(|(t, _, _)| output.routes(&t.output));
                checkpoint.rows = rest;
                let pending = Pending {
                    lane: &checkpoint.lane,
                    next_offset: checkpoint.next_offset,
                    rows: &routed,
                    dead_letters: &checkpoint.dead_letters,
                    utc_offset_secs,
                };
                output.write(pending).await?;
            }
            store.commit(&checkpoint).await?;
            Ok(started.elapsed())
        });
        self.in_flight = Some(InFlight {
            task,
            next_offset: self.next_offset,
            rows_written,
        });
        Ok(())
    }

    /// Waits for the commit in flight, if any.
    async fn finish_commit(&mut self) -> anyhow::Result<()> {
        let Some(mut commit) = self.in_flight.take() else {
            return Ok(());
        };
        let result = (&mut commit.task).await;
        self.complete(commit, result)
    }

    /// Counts a finished commit, or returns its failure.
    fn complete(&mut self, commit: InFlight, result: CommitResult) -> anyhow::Result<()> {
        let took = result
            .map_err(|e| anyhow::anyhow!("lane {}: checkpoint task failed: {e}", self.key))??;
        self.stats.checkpoints += 1;
        self.stats.rows_written += commit.rows_written as u64;
        self.stats.checkpoint_times.push(took);
        self.metrics.checkpoint(commit.next_offset, took);
        self.stats.last_commit_at = Some(Instant::now());
        if let Some(hook) = &self.on_commit {
            hook(&self.key, commit.next_offset);
        }
        tracing::debug!(lane = %self.key, offset = commit.next_offset, ?took, "checkpoint");
        Ok(())
    }
}
