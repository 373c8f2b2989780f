//! Running a pipeline: one lane per partition, each feeding its batches
//! through its plugin instances into its checkpoint buffer, and committing
//! rows, state, dead letters and offset together.

mod buffer;
mod lane;
mod reload;
mod repartition;
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
pub use repartition::Repartitions;
pub use supervisor::{LaneFactory, LaneSupervisor};

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

/// The flags every source and lane of a run shares.
#[derive(Clone, Default)]
struct Flags {
    /// Set when the run ends: sources stop reading, paused lanes let go.
    stop: Arc<AtomicBool>,
    /// Set by SIGINT or SIGTERM: lanes finish the batch in flight.
    interrupt: Arc<AtomicBool>,
    /// Reading a record, or a lane processing a batch, is activity: a lane
    /// working through its queue is not idle.
    activity: Arc<Activity>,
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
    let repartitions = match &config.source.kafka {
        Some(kafka) => Repartitions::open(kafka).await?,
        None => None,
    };
    if repartitions.is_some() && options.until_end {
        anyhow::bail!(
            "--until-end cannot bound a repartitioned pipeline: what its first stage \
             forwards lies past the internal topics' end; use --stop-when-idle"
        );
    }
    let flags = Flags::default();
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
        let stop = flags.stop.clone();
        tokio::spawn(async move {
            if let Err(e) = reloader.run(stop).await {
                tracing::error!("plugin watcher stopped, plugins will not reload: {e:#}");
            }
        })
    });
    let lanes = Arc::new(LaneSupervisor::new(
        LaneFactory {
            engine,
            plugins: live.clone(),
            lookups,
            store,
            store_config: config.sink.sql.clone(),
            outputs,
            stop: flags.stop.clone(),
            interrupt: flags.interrupt.clone(),
            activity: flags.activity.clone(),
            metrics,
            time: config.time.clone(),
            max_record_bytes: config.batch.max_record_bytes,
            repartitions,
        },
        tokio::runtime::Handle::current(),
    ));

    // From here on a stop request finishes the current batches; before,
    // nothing has been read and the default action (exit) loses nothing.
    let stop_signals = StopSignals::listen().context("listening for SIGINT and SIGTERM")?;
    let sources = start_sources(&config, &options, &lanes, &flags);
    let failure = wait_for_end(sources, stop_signals, &options, &flags).await?;
    if let Some(reloader) = reloader {
        reloader.await?;
    }
    let summary = RunSummary {
        lanes: lanes.take_finished(),
        lookup_caches: lanes.lookups().cache_stats(),
        reloads: live.counts(),
    };
    log_summary(&summary);
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Starts a reader per source file and the Kafka reader, each on its own
/// thread, opening its lanes through `lanes`.
fn start_sources(
    config: &PipelineConfig,
    options: &RunOptions,
    lanes: &Arc<LaneSupervisor>,
    flags: &Flags,
) -> JoinSet<anyhow::Result<()>> {
    let mut sources = JoinSet::new();
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
            max_record_bytes: config.batch.max_record_bytes,
            max_wait: config.batch.max_wait,
            until: if options.until_end {
                Some(std::fs::metadata(&file.path).map_or(0, |m| m.len()))
            } else {
                None
            },
            interrupt: flags.interrupt.clone(),
        };
        let (lanes, flags) = (lanes.clone(), flags.clone());
        sources.spawn(async move {
            tokio::task::spawn_blocking(move || reader.run(&*lanes, flags.activity, flags.stop))
                .await?
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
        let flags = flags.clone();
        sources.spawn(async move {
            tokio::task::spawn_blocking(move || reader.run(flags.activity, flags.stop)).await?
        });
    }
    sources
}

/// Waits for SIGINT or SIGTERM, idleness if asked, the sources' end or a
/// source's failure; then stops every source and waits for them (each
/// closes its lanes, which commit). The first failure, if any.
async fn wait_for_end(
    mut sources: JoinSet<anyhow::Result<()>>,
    mut stop_signals: StopSignals,
    options: &RunOptions,
    flags: &Flags,
) -> anyhow::Result<Option<anyhow::Error>> {
    let mut failure = None;
    // Idle time counts ticks without a record, so time the process was
    // stopped (SIGSTOP, a suspended VM) is never taken for idleness.
    let (mut idle, mut seen) = (Duration::ZERO, flags.activity.last());
    loop {
        tokio::select! {
            signal = stop_signals.recv() => {
                tracing::warn!(
                    signal,
                    "stop requested; finishing the batches in flight, then a last checkpoint"
                );
                flags.interrupt.store(true, Ordering::Relaxed);
                break;
            }
            _ = tokio::time::sleep(TICK) => {
                let last = flags.activity.last();
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
    flags.stop.store(true, Ordering::Relaxed);
    while let Some(done) = sources.join_next().await {
        if let Err(e) = done? {
            failure.get_or_insert(e);
        }
    }
    Ok(failure)
}

/// Logs what reloads did and how the lookup caches fared.
fn log_summary(summary: &RunSummary) {
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
}
