//! The lane supervisor: where the partitions every source reads become
//! lanes. It opens a lane with its plugins and stored state, runs it on the
//! runtime, and on close waits for its last checkpoint and keeps its
//! counts for the run's summary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::lane::{Lane, LaneStats, LiveLink};
use super::repartition::{APPLIED_STATE, Applied, Repartitions, Role};
use crate::config;
use crate::lookup::Lookups;
use crate::metrics::Metrics;
use crate::model::LaneKey;
use crate::output::Output;
use crate::plugin::{Engine, LanePlugins, LivePlugins, PluginState};
use crate::source::{Activity, CommitHook, LaneInput, Lanes, lane_queue};
use crate::store::SqlStore;

/// Everything a new lane needs: shared by all lanes of a run.
pub struct LaneFactory {
    /// Compiles and instantiates plugins.
    pub engine: Engine,
    /// The pipeline's current plugins.
    pub plugins: Arc<LivePlugins>,
    /// Served to plugins' `lookup` import.
    pub lookups: Arc<Lookups>,
    /// Where checkpoints commit.
    pub store: SqlStore,
    /// Checkpoint sizes and interval.
    pub store_config: config::SqlSink,
    /// Side outputs written before each checkpoint.
    pub outputs: Vec<Arc<dyn Output>>,
    /// Set when the pipeline stops: paused lanes let go.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGINT or SIGTERM: lanes finish the batch in flight.
    pub interrupt: Arc<AtomicBool>,
    /// Touched by each processed batch.
    pub activity: Arc<Activity>,
    /// Where lanes count.
    pub metrics: Arc<Metrics>,
    /// Event time.
    pub time: config::TimeSection,
    /// Records with a longer value are dead letters.
    pub max_record_bytes: usize,
    /// The Kafka source's repartitions, if it has any.
    pub repartitions: Option<Arc<Repartitions>>,
}

impl LaneFactory {
    /// Opens the lane `key` of logical topic `topic`: instantiates its
    /// plugins with their stored state. Returns the lane and the offset it
    /// stored at its last checkpoint, if it has one.
    pub async fn open(&self, key: LaneKey, topic: &str) -> anyhow::Result<(Lane, Option<i64>)> {
        let position = self.store.load_position(&key).await?;
        let (stored, watermark) = (position.map(|p| p.0), position.and_then(|p| p.1));
        let role = match &self.repartitions {
            Some(repartitions) => repartitions.role(&key, topic)?,
            None => None,
        };
        let route = role.as_ref().map(|(route, _)| *route);
        let applied = match &role {
            Some((_, Role::Apply(sources))) => {
                let stored = self.store.load_state(&key, APPLIED_STATE).await?;
                Applied::from_state(stored, sources.clone())
            }
            _ => Applied::default(),
        };
        let (generation, set) = self.plugins.current();
        let mut states = HashMap::new();
        for plugin in set.all() {
            let name = plugin.name();
            let state = self.store.load_state(&key, name).await?;
            states.insert(name.to_owned(), PluginState::from(state));
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
        .with_max_ahead(self.time.max_ahead)
        .with_row_limits(self.store.row_limits())
        .with_interrupt(self.interrupt.clone())
        .with_route(route);
        tracing::info!(lane = %key, topic, start = ?stored, ?watermark, "lane opens");
        let lane_metrics = self.metrics.lane(&key.to_string());
        let lane = Lane::new(
            key,
            stored,
            plugins,
            self.engine.clone(),
            self.store.clone(),
            &self.store_config,
        )
        .with_outputs(self.outputs.clone())
        .with_role(role.map(|(_, role)| role), applied)
        .with_stop(self.stop.clone())
        .with_interrupt(self.interrupt.clone())
        .with_activity(self.activity.clone())
        .with_metrics(lane_metrics)
        .with_idle_timeout(self.time.idle_timeout)
        .with_max_record_bytes(self.max_record_bytes)
        .with_live(LiveLink {
            plugins: self.plugins.clone(),
            generation,
            topic: topic.to_owned(),
        });
        Ok((lane, stored))
    }
}

type LaneTask = JoinHandle<anyhow::Result<(LaneKey, LaneStats)>>;

/// Runs the lanes of every source of a run.
pub struct LaneSupervisor {
    factory: LaneFactory,
    runtime: Handle,
    /// Each running lane, with its let-go flag.
    running: Mutex<HashMap<LaneKey, (LaneTask, Arc<AtomicBool>)>>,
    finished: Mutex<Vec<(LaneKey, LaneStats)>>,
}

impl LaneSupervisor {
    /// A supervisor that opens lanes with `factory` and runs them on
    /// `runtime`.
    pub fn new(factory: LaneFactory, runtime: Handle) -> Self {
        Self {
            factory,
            runtime,
            running: Mutex::default(),
            finished: Mutex::default(),
        }
    }

    /// The lookups lanes use (for the run's cache figures).
    pub fn lookups(&self) -> &Lookups {
        &self.factory.lookups
    }

    /// The counts of every lane closed so far.
    pub fn take_finished(&self) -> Vec<(LaneKey, LaneStats)> {
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Lanes for LaneSupervisor {
    fn open(
        &self,
        key: LaneKey,
        topic: &str,
        on_commit: Option<CommitHook>,
    ) -> anyhow::Result<LaneInput> {
        let (mut lane, start) = self
            .runtime
            .block_on(self.factory.open(key.clone(), topic))?;
        if let Some(hook) = on_commit {
            lane = lane.with_commit_hook(hook);
        }
        let let_go = Arc::new(AtomicBool::new(false));
        lane = lane.with_let_go(let_go.clone());
        let (tx, rx) = lane_queue(self.runtime.clone());
        let task = self.runtime.spawn(lane.run(rx));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (task, let_go));
        Ok(LaneInput {
            start,
            batches: tx,
            metrics: self.factory.metrics.lane(&key.to_string()),
        })
    }

    fn close(&self, key: &LaneKey) -> anyhow::Result<()> {
        self.finish(key, false)
    }

    fn let_go(&self, key: &LaneKey) -> anyhow::Result<()> {
        self.finish(key, true)
    }
}

impl LaneSupervisor {
    /// Waits for the lane `key` to finish, after its queued batches or
    /// (`let_go`) after the batch in hand; keeps its counts.
    fn finish(&self, key: &LaneKey, let_go: bool) -> anyhow::Result<()> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let Some((task, flag)) = running else {
            return Ok(());
        };
        flag.store(let_go, Ordering::Relaxed);
        match self.runtime.block_on(task) {
            Ok(Ok(done)) => {
                self.finished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(done);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("lane {key} panicked: {e}")),
        }
    }
}
