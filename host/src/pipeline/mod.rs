//! Running a pipeline: one lane per partition, each feeding its batches
//! through its plugin instances into its checkpoint buffer, and committing
//! rows, state, dead letters and offset together.

mod lane;
mod reload;
mod signals;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use lane::{CommitHook, Lane, LaneStats, LiveLink};
pub use reload::Reloader;

use crate::config::{self, PipelineConfig};
use crate::lookup::Lookups;
use crate::metrics::{LaneMetrics, Metrics};
use crate::plugin::{Engine, LanePlugins, LivePlugins, PluginSet};
use crate::sink::{HBaseSink, KafkaDeadLetters, LaneKey, SqlSink};
use crate::source::file::FileReader;
use crate::source::kafka::KafkaReader;
use signals::StopSignals;

/// Batches queued per lane between its source and its plugins. With the
/// batch size this bounds a lane's memory: `QUEUE_BATCHES + 2` batches.
pub const QUEUE_BATCHES: usize = 4;

/// When a source last read a record, shared by all sources of a run.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    /// Notes that a record was read now.
    pub fn touch(&self) {
        let now = self.start.elapsed().as_nanos() as u64;
        self.last_nanos.store(now, Ordering::Relaxed);
    }

    /// When the last record was read, as a count that changes with each.
    pub fn last(&self) -> u64 {
        self.last_nanos.load(Ordering::Relaxed)
    }

    /// Time since the last record was read (or since the start).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// How a run ends.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Finish, after a final checkpoint, once no record arrived for this
    /// long while the process ran (time it was stopped does not count).
    pub stop_when_idle: Option<Duration>,
    /// Bounded mode: read each source file up to the size it had at the
    /// start, and each partition of the Kafka topics up to its end offset
    /// at the start, then finish.
    pub until_end: bool,
}

/// How often the run loop looks at its sources: the unit idle time is
/// counted in.
const TICK: Duration = Duration::from_millis(50);

/// Totals of a finished run.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    /// Per lane: its key and its counts.
    pub lanes: Vec<(LaneKey, LaneStats)>,
    /// Per cached lookup table: its cache counters.
    pub lookup_caches: std::collections::BTreeMap<String, crate::lookup::CacheStats>,
    /// What plugin reloads did.
    pub reloads: crate::plugin::ReloadCounts,
}

impl RunSummary {
    /// From the first batch any lane got to the last batch any lane
    /// processed: the time the run spent streaming its records.
    pub fn busy_time(&self) -> Option<Duration> {
        let first = self
            .lanes
            .iter()
            .filter_map(|(_, s)| s.first_batch_at)
            .min()?;
        let last = self
            .lanes
            .iter()
            .filter_map(|(_, s)| s.last_batch_at)
            .max()?;
        Some(last.saturating_duration_since(first))
    }
}

/// Loads the plugins of a pipeline, logging each rejected file.
pub fn load_plugins(
    engine: &Engine,
    dir: &Path,
    lookups: &Arc<Lookups>,
) -> anyhow::Result<PluginSet> {
    let plugins = PluginSet::load_dir(engine, dir, lookups)?;
    for rejected in &plugins.rejected {
        tracing::error!("{rejected}");
    }
    for p in &plugins.parsers {
        tracing::info!(plugin = %p.info.name, version = %p.info.version, contract = %p.pre.contract(), topics = ?p.info.topics, "loaded parser");
    }
    for r in &plugins.rules {
        let consumes: Vec<String> = r.info.consumes.iter().map(ToString::to_string).collect();
        tracing::info!(plugin = %r.info.name, version = %r.info.version, contract = %r.pre.contract(), ?consumes, params = ?r.params, "loaded rule");
    }
    Ok(plugins)
}

/// Everything a new lane needs: shared by all sources of a run.
pub struct LaneFactory {
    engine: Engine,
    plugins: Arc<LivePlugins>,
    lookups: Arc<Lookups>,
    sink: SqlSink,
    sink_config: config::SqlSink,
    dead_letter_topic: Option<Arc<KafkaDeadLetters>>,
    hbase: Option<Arc<HBaseSink>>,
    stop: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
    activity: Arc<Activity>,
    metrics: Arc<Metrics>,
    time: config::TimeSection,
}

/// The tables the SQL sink holds: those not routed to HBase.
pub fn sql_tables(
    tables: &[Arc<crate::sink::TableSchema>],
    hbase: Option<&HBaseSink>,
) -> Vec<Arc<crate::sink::TableSchema>> {
    tables
        .iter()
        .filter(|t| !hbase.is_some_and(|h| h.routes(&t.output)))
        .cloned()
        .collect()
}

/// The HBase sink, when `[hbase.output]` routes outputs there; checks each
/// routed output exists and merges by `replace` only.
pub fn hbase_sink(
    config: &PipelineConfig,
    tables: &[Arc<crate::sink::TableSchema>],
) -> anyhow::Result<Option<Arc<HBaseSink>>> {
    let Some(hbase) = config.hbase.as_ref().filter(|h| !h.output.is_empty()) else {
        return Ok(None);
    };
    HBaseSink::check(&hbase.output, tables).map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(HBaseSink::new(hbase)?)))
}

impl LaneFactory {
    /// The metrics of lane `key`, which its source reports into too.
    pub fn lane_metrics(&self, key: &LaneKey) -> Arc<LaneMetrics> {
        self.metrics.lane(&key.to_string())
    }

    /// Opens the lane `key` of logical topic `topic`: instantiates its
    /// plugins with their stored state. Returns the lane and the offset it
    /// stored at its last checkpoint, if it has one.
    pub async fn open(&self, key: LaneKey, topic: &str) -> anyhow::Result<(Lane, Option<i64>)> {
        let position = self.sink.load_position(&key).await?;
        let (stored, watermark) = (position.map(|p| p.0), position.and_then(|p| p.1));
        let (generation, set) = self.plugins.current();
        let mut states = HashMap::new();
        for plugin in set.all() {
            let name = plugin.name();
            states.insert(name.to_owned(), self.sink.load_state(&key, name).await?);
        }
        let plugins = LanePlugins::new(
            &self.engine,
            &set,
            topic,
            &key.to_string(),
            &self.lookups,
            |name| Ok(states.remove(name).unwrap_or_default()),
        )
        .with_context(|| format!("lane {key}"))?
        .with_time(self.time.allowed_lateness, watermark)
        .with_interrupt(self.interrupt.clone());
        tracing::info!(lane = %key, topic, start = ?stored, ?watermark, "lane opens");
        let lane_metrics = self.lane_metrics(&key);
        let lane = Lane::new(
            key,
            stored.unwrap_or(0),
            plugins,
            self.engine.clone(),
            self.sink.clone(),
            &self.sink_config,
        )
        .with_dead_letter_topic(self.dead_letter_topic.clone())
        .with_hbase(self.hbase.clone())
        .with_stop(self.stop.clone())
        .with_interrupt(self.interrupt.clone())
        .with_activity(self.activity.clone())
        .with_metrics(lane_metrics)
        .with_idle_timeout(self.time.idle_timeout)
        .with_live(LiveLink {
            plugins: self.plugins.clone(),
            generation,
            topic: topic.to_owned(),
        });
        Ok((lane, stored))
    }
}

/// Runs a pipeline until it is interrupted, idle if asked to be, or a lane
/// fails.
pub async fn run(config: PipelineConfig, options: RunOptions) -> anyhow::Result<RunSummary> {
    let engine = Engine::with_limits(config.plugins.clone())?;
    let lookups = Arc::new(Lookups::load(&config.lookup, config.hbase.as_ref())?);
    let plugins = load_plugins(&engine, &config.plugins.dir, &lookups)?;
    let sink = SqlSink::connect(&config.sink.sql).await?;
    let tables: Vec<_> = plugins.tables().cloned().collect();
    let hbase = hbase_sink(&config, &tables)?;
    let sql_tables = sql_tables(&tables, hbase.as_deref());
    sink.prepare_tables(&sql_tables).await?;
    sink.prepare_indexes(&config.sink.sql.index, &sql_tables)
        .await?;
    let dead_letter_topic = match &config.source.kafka {
        Some(kafka) => match &kafka.dead_letter_topic {
            Some(topic) => Some(Arc::new(KafkaDeadLetters::new(kafka, topic)?)),
            None => None,
        },
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let interrupt = Arc::new(AtomicBool::new(false));
    let live = Arc::new(LivePlugins::new(plugins));
    let metrics = Arc::new(Metrics::default());
    metrics.watch(live.clone(), lookups.clone());
    if let Some(section) = &config.metrics {
        metrics.clone().serve(&section.listen).await?;
    }
    crate::dashboard::serve_live(&config, metrics.clone()).await?;
    let reloader = config.plugins.watch.then(|| {
        let reloader = Reloader {
            dir: config.plugins.dir.clone(),
            engine: engine.clone(),
            lookups: lookups.clone(),
            live: live.clone(),
            sink: sink.clone(),
            hbase: hbase.clone(),
            config: config.file.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = reloader.run(stop).await {
                tracing::error!("plugin watcher stopped, plugins will not reload: {e:#}");
            }
        })
    });
    // Reading a record, or a lane processing a batch, is activity: a lane
    // working through its queue is not idle.
    let activity = Arc::new(Activity::new());
    let factory = Arc::new(LaneFactory {
        engine,
        plugins: live.clone(),
        lookups,
        sink,
        sink_config: config.sink.sql.clone(),
        dead_letter_topic,
        hbase,
        stop: stop.clone(),
        interrupt: interrupt.clone(),
        activity: activity.clone(),
        metrics,
        time: config.time.clone(),
    });

    // From here on a stop request finishes the current batches; before,
    // nothing has been read and the default action (exit) loses nothing.
    let mut stop_signals = StopSignals::listen().context("listening for SIGINT and SIGTERM")?;
    let mut sources: JoinSet<anyhow::Result<Vec<(LaneKey, LaneStats)>>> = JoinSet::new();
    for file in &config.source.file {
        let key = LaneKey {
            consumer: config.name().to_owned(),
            stream: file.path.display().to_string(),
            partition: 0,
        };
        let (lane, stored) = factory
            .open(key.clone(), &file.topic)
            .await
            .with_context(|| format!("source file {}", file.path.display()))?;
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let reader = FileReader {
            path: file.path.clone(),
            topic: file.topic.clone(),
            lane: key,
            max_records: config.batch.max_records,
            max_bytes: config.batch.max_bytes,
            max_wait: config.batch.max_wait,
            until: if options.until_end {
                Some(std::fs::metadata(&file.path).map_or(0, |m| m.len()))
            } else {
                None
            },
            interrupt: interrupt.clone(),
        };
        let (activity, stop) = (activity.clone(), stop.clone());
        sources.spawn(async move {
            let reader_stop = stop.clone();
            let reading = tokio::task::spawn_blocking(move || {
                reader.run(stored.unwrap_or(0), tx, activity, reader_stop)
            });
            let lane = lane.run(rx).await;
            let read = reading.await?;
            // A lane's own error explains a reader's "lane stopped"; so does
            // a paused lane let go when the pipeline stops.
            let lane = lane?;
            if !stop.load(Ordering::Relaxed) {
                read?;
            }
            Ok(vec![lane])
        });
    }
    if let Some(kafka) = &config.source.kafka {
        let reader = KafkaReader::new(
            kafka.clone(),
            config.batch.clone(),
            factory.clone(),
            tokio::runtime::Handle::current(),
        )
        .until_end(options.until_end);
        let (activity, stop) = (activity.clone(), stop.clone());
        sources.spawn(async move {
            tokio::task::spawn_blocking(move || reader.run(activity, stop)).await?
        });
    }

    // Stop on SIGINT or SIGTERM, on idleness if asked, or when a source
    // fails.
    let mut failure = None;
    let mut summary = RunSummary::default();
    // Idle time counts ticks without a record, so time the process was
    // stopped (SIGSTOP, a suspended VM) is never taken for idleness.
    let (mut idle, mut seen) = (Duration::ZERO, activity.last());
    loop {
        tokio::select! {
            signal = stop_signals.recv() => {
                tracing::warn!(
                    signal,
                    "stop requested; finishing the batches in flight, then a last checkpoint"
                );
                interrupt.store(true, Ordering::Relaxed);
                break;
            }
            _ = tokio::time::sleep(TICK) => {
                let last = activity.last();
                if last == seen {
                    idle += TICK;
                } else {
                    (idle, seen) = (Duration::ZERO, last);
                }
                if let Some(limit) = options.stop_when_idle && idle >= limit {
                    tracing::info!("no record for {limit:?}; finishing");
                    break;
                }
            }
            done = sources.join_next() => match done {
                None => break,
                Some(done) => match done? {
                    Ok(lanes) => summary.lanes.extend(lanes),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                },
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = sources.join_next().await {
        match done? {
            Ok(lanes) => summary.lanes.extend(lanes),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(reloader) = reloader {
        reloader.await?;
    }
    summary.reloads = live.counts();
    let pauses: Vec<Duration> = summary
        .lanes
        .iter()
        .flat_map(|(_, s)| s.swap_pauses.iter().copied())
        .collect();
    if let Some(longest) = pauses.iter().max() {
        let r = summary.reloads;
        tracing::info!(
            loaded = r.loaded,
            swapped = r.swapped,
            removed = r.removed,
            rejected = r.rejected,
            lane_takeovers = pauses.len(),
            "plugin reloads; longest lane pause {longest:?}"
        );
    }
    summary.lookup_caches = factory.lookups.cache_stats();
    for (table, c) in &summary.lookup_caches {
        tracing::info!(
            table,
            hits = c.hits,
            misses = c.misses,
            requests = c.requests,
            "lookup cache hit rate {:.1}%",
            c.hit_rate() * 100.0
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}
