//! Running a pipeline: one lane per partition, each feeding its batches
//! through its plugin instances into its checkpoint buffer, and committing
//! rows, state, dead letters and offset together.

mod buffer;
mod lane;
mod reload;
mod signals;
mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;

pub use buffer::RowBuffer;
pub use lane::{Lane, LaneStats, LiveLink};
pub use reload::Reloader;
pub use supervisor::{LaneFactory, LaneSupervisor, QUEUE_BATCHES};

use crate::assembly::{self, Assembly};
use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::model::LaneKey;
use crate::plugin::LivePlugins;
use crate::source::file::FileReader;
use crate::source::kafka::KafkaReader;
use crate::source::{Activity, Lanes};
use signals::StopSignals;

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

/// Runs a pipeline until it is interrupted, idle if asked to be, or a lane
/// fails.
pub async fn run(config: PipelineConfig, options: RunOptions) -> anyhow::Result<RunSummary> {
    let assembly = Assembly::build(&config)?;
    assembly::log_plugins(&assembly.plugins);
    let store = assembly.open_store(&config).await?;
    let Assembly {
        engine,
        lookups,
        plugins,
        outputs,
        ..
    } = assembly;
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
            store: store.clone(),
            outputs: outputs.clone(),
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
    let activity = Arc::new(Activity::default());
    let lanes = Arc::new(LaneSupervisor::new(
        LaneFactory {
            engine,
            plugins: live.clone(),
            lookups,
            store,
            store_config: config.sink.sql.clone(),
            outputs,
            stop: stop.clone(),
            interrupt: interrupt.clone(),
            activity: activity.clone(),
            metrics,
            time: config.time.clone(),
        },
        tokio::runtime::Handle::current(),
    ));

    // From here on a stop request finishes the current batches; before,
    // nothing has been read and the default action (exit) loses nothing.
    let mut stop_signals = StopSignals::listen().context("listening for SIGINT and SIGTERM")?;
    let mut sources: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for file in &config.source.file {
        let reader = FileReader {
            path: file.path.clone(),
            topic: file.topic.clone(),
            lane: LaneKey {
                consumer: config.name().to_owned(),
                stream: file.path.display().to_string(),
                partition: 0,
            },
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
        let (lanes, activity, stop) = (lanes.clone(), activity.clone(), stop.clone());
        sources.spawn(async move {
            tokio::task::spawn_blocking(move || reader.run(&*lanes, activity, stop)).await?
        });
    }
    if let Some(kafka) = &config.source.kafka {
        let reader = KafkaReader::new(
            kafka.clone(),
            config.batch.clone(),
            lanes.clone() as Arc<dyn Lanes>,
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
                Some(done) => if let Err(e) = done? {
                    failure = Some(e);
                    break;
                },
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = sources.join_next().await {
        if let Err(e) = done? {
            failure.get_or_insert(e);
        }
    }
    summary.lanes = lanes.take_finished();
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
    summary.lookup_caches = lanes.lookups().cache_stats();
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
