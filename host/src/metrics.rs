//! Metrics in the Prometheus text format, served at `/metrics` when
//! `[metrics] listen` is set: per lane records, events, rows, dead letters
//! per plugin, batch and checkpoint times and offsets, and for Kafka lanes
//! the consumer lag and whether the partition is paused; plugin reloads;
//! and the lookup caches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lookup::Lookups;
use crate::plugin::LivePlugins;

/// Live counters of one lane.
#[derive(Debug, Default)]
pub struct LaneMetrics {
    records: AtomicU64,
    events: AtomicU64,
    rows: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_micros: AtomicU64,
    committed_offset: AtomicU64,
    dead_letters: Mutex<BTreeMap<String, u64>>,
    /// Per plugin: log lines dropped over its log-rate.
    log_dropped: Mutex<BTreeMap<String, u64>>,
    /// The end of the lane's partition (Kafka's high watermark), while
    /// this process reads it.
    source_end: Mutex<Option<i64>>,
    source_paused: AtomicBool,
    /// Whether the lane holds a batch back (a quarantined plugin, no
    /// parser) until its plugins change.
    held: AtomicBool,
    source_pauses: AtomicU64,
    /// Per plugin: state keys, state bytes and timers, as of the last
    /// checkpoint.
    plugin_state: Mutex<Vec<(String, usize, usize, usize)>>,
    /// Event time up to which the lane has seen everything, in epoch ms.
    watermark_ms: Mutex<Option<i64>>,
    /// The plugin the lane waits for a new version of, while quarantined.
    quarantined: Mutex<Option<String>>,
    /// The rule that failed on timers fired without a batch, while its
    /// failure holds the lane's watermark (until the lane's next batch).
    timers_failed: Mutex<Option<String>>,
    /// Bumped on every committed checkpoint of any lane (the dashboard
    /// pushes updates on it); shared with the [`Metrics`] that made the lane.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
}

impl LaneMetrics {
    /// Counts a processed batch.
    pub fn batch(&self, records: usize, events: usize, rows: u64, took: Duration) {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a record `plugin` refused.
    pub fn dead_letter(&self, plugin: &str) {
        let mut counts = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(plugin.to_owned()).or_default() += 1;
    }

    /// Counts log lines `plugin` wrote over its log-rate, which were dropped.
    pub fn log_dropped(&self, plugin: &str, lines: u64) {
        let mut counts = self.log_dropped.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(plugin.to_owned()).or_default() += lines;
    }

    /// Records whether the lane holds a batch back until its plugins
    /// change.
    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }

    /// Whether the lane holds a batch back until its plugins change.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Records the end of the lane's partition as the source last saw it
    /// (`None`: this process no longer reads it).
    pub fn source_end(&self, end: Option<i64>) {
        *self.source_end.lock().unwrap_or_else(|e| e.into_inner()) = end;
    }

    /// Records whether the source has paused the lane's partition.
    pub fn source_paused(&self, paused: bool) {
        let was = self.source_paused.swap(paused, Ordering::Relaxed);
        if paused && !was {
            self.source_pauses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records after the last checkpoint, when the source's end is known.
    fn lag(&self) -> Option<i64> {
        let end = (*self.source_end.lock().unwrap_or_else(|e| e.into_inner()))?;
        let committed = self.committed_offset.load(Ordering::Relaxed) as i64;
        Some((end - committed).max(0))
    }

    /// Counts a committed checkpoint.
    pub fn checkpoint(&self, next_offset: i64, took: Duration) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.committed(next_offset);
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records each plugin's state keys, bytes and timers in the lane.
    pub fn plugin_state(&self, sizes: Vec<(String, usize, usize, usize)>) {
        *self.plugin_state.lock().unwrap_or_else(|e| e.into_inner()) = sizes;
    }

    /// Records the next offset of the lane's last checkpoint.
    pub fn committed(&self, next_offset: i64) {
        self.committed_offset
            .store(next_offset.max(0) as u64, Ordering::Relaxed);
    }

    /// Records the lane's watermark, in epoch milliseconds.
    pub fn set_watermark(&self, ms: i64) {
        *self.watermark_ms.lock().unwrap_or_else(|e| e.into_inner()) = Some(ms);
    }

    /// Records that the lane waits for a new version of `plugin`
    /// (`None`: it runs again).
    pub fn set_quarantined(&self, plugin: Option<&str>) {
        *self.quarantined.lock().unwrap_or_else(|e| e.into_inner()) = plugin.map(str::to_owned);
    }

    /// Records that `rule` failed on the timers a watermark moved without
    /// records fired, so the watermark stays where it was (`None`: it
    /// moves again).
    pub fn set_timers_failed(&self, rule: Option<&str>) {
        *self.timers_failed.lock().unwrap_or_else(|e| e.into_inner()) = rule.map(str::to_owned);
    }

    /// Records that the lane stopped (the run ends, or its partition went
    /// to another process): it holds nothing back any more.
    pub fn lane_stopped(&self) {
        self.set_held(false);
        self.set_quarantined(None);
        self.set_timers_failed(None);
    }

    /// What the lane's counters and gauges hold now.
    pub fn snapshot(&self) -> LaneSnapshot {
        let lock = |m: &Mutex<Option<i64>>| *m.lock().unwrap_or_else(|e| e.into_inner());
        LaneSnapshot {
            records: self.records.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            committed_offset: self.committed_offset.load(Ordering::Relaxed),
            dead_letters: self
                .dead_letters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .sum(),
            lag: self.lag(),
            watermark_ms: lock(&self.watermark_ms),
            paused: self.source_paused.load(Ordering::Relaxed),
            held: self.held(),
            quarantined: self
                .quarantined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            timers_failed: self
                .timers_failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// One lane's figures at one moment, for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneSnapshot {
    /// Records processed.
    pub records: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Next offset of the last checkpoint.
    pub committed_offset: u64,
    /// Records refused, over every plugin.
    pub dead_letters: u64,
    /// Records after the last checkpoint (Kafka lanes this process reads).
    pub lag: Option<i64>,
    /// The lane's watermark in epoch ms, once it has one.
    pub watermark_ms: Option<i64>,
    /// Whether the source paused the lane's partition.
    pub paused: bool,
    /// Whether the lane holds a batch back until its plugins change.
    pub held: bool,
    /// The plugin the lane waits for a new version of, if quarantined.
    pub quarantined: Option<String>,
    /// The rule whose failure on timers fired without a batch holds the
    /// lane's watermark, if one does.
    pub timers_failed: Option<String>,
}

/// Every lane's counters, and what else a scrape reports.
#[derive(Default)]
pub struct Metrics {
    lanes: Mutex<BTreeMap<String, Arc<LaneMetrics>>>,
    plugins: Mutex<Option<Arc<LivePlugins>>>,
    lookups: Mutex<Option<Arc<Lookups>>>,
    commits: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Metrics {
    /// The counters of `lane`, created on first use (a lane reopened after
    /// a rebalance goes on counting).
    pub fn lane(&self, lane: &str) -> Arc<LaneMetrics> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry(lane.to_owned())
            .or_insert_with(|| {
                Arc::new(LaneMetrics {
                    commits: self.commits.clone(),
                    ..LaneMetrics::default()
                })
            })
            .clone()
    }

    /// Every lane's figures now, by lane.
    pub fn lane_snapshots(&self) -> Vec<(String, LaneSnapshot)> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        lanes
            .iter()
            .map(|(k, m)| (k.clone(), m.snapshot()))
            .collect()
    }

    /// The live plugin set, once [`Metrics::watch`] was called.
    pub fn plugins(&self) -> Option<Arc<LivePlugins>> {
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A receiver that changes whenever any lane commits a checkpoint.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Reports reloads of `plugins` and the caches of `lookups` too.
    pub fn watch(&self, plugins: Arc<LivePlugins>, lookups: Arc<Lookups>) {
        *self.plugins.lock().unwrap_or_else(|e| e.into_inner()) = Some(plugins);
        *self.lookups.lock().unwrap_or_else(|e| e.into_inner()) = Some(lookups);
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        render_lanes(&mut out, &lanes);
        render_lane_plugins(&mut out, &lanes);
        if let Some(plugins) = &*self.plugins.lock().unwrap_or_else(|e| e.into_inner()) {
            let c = plugins.counts();
            let _ = writeln!(
                out,
                "# HELP apiary_plugin_reloads_total Plugin files loaded, swapped, removed or rejected while running."
            );
            let _ = writeln!(out, "# TYPE apiary_plugin_reloads_total counter");
            for (kind, n) in [
                ("loaded", c.loaded),
                ("swapped", c.swapped),
                ("removed", c.removed),
                ("rejected", c.rejected),
            ] {
                let _ = writeln!(out, "apiary_plugin_reloads_total{{kind=\"{kind}\"}} {n}");
            }
        }
        if let Some(lookups) = &*self.lookups.lock().unwrap_or_else(|e| e.into_inner()) {
            let caches = lookups.cache_stats();
            for (name, help, value) in [
                (
                    "apiary_lookup_cache_hits_total",
                    "Lookup keys answered from the cache.",
                    0,
                ),
                (
                    "apiary_lookup_cache_misses_total",
                    "Lookup keys fetched from the store.",
                    1,
                ),
                (
                    "apiary_lookup_requests_total",
                    "Multi-get requests sent to the store.",
                    2,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} counter");
                for (table, s) in &caches {
                    let n = [s.hits, s.misses, s.requests][value];
                    let _ = writeln!(out, "{name}{{table=\"{}\"}} {n}", escape(table));
                }
            }
        }
        out
    }

    /// Serves `/metrics` on `listen` until the process ends.
    pub async fn serve(self: Arc<Self>, listen: &str) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {listen}: {e}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving metrics at /metrics");
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = self.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server stopped: {e}");
            }
        });
        Ok(())
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Each lane's counters and gauges, one family after another.
fn render_lanes(out: &mut String, lanes: &BTreeMap<String, Arc<LaneMetrics>>) {
    // A metric of the lanes that have a value for it.
    let per_lane =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&LaneMetrics) -> Option<f64>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let kind = if name.ends_with("_total") || name.ends_with("_sum") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (lane, m) in lanes {
                if let Some(v) = value(m) {
                    let _ = writeln!(out, "{name}{{lane=\"{}\"}} {v}", escape(lane));
                }
            }
        };
    let counter =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&LaneMetrics) -> f64| {
            per_lane(out, name, help, &|m| Some(value(m)))
        };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    counter(out, "apiary_records_total", "Records processed.", &|m| {
        get(&m.records)
    });
    counter(
        out,
        "apiary_events_total",
        "Events the parser produced.",
        &|m| get(&m.events),
    );
    counter(
        out,
        "apiary_rows_total",
        "Rows the rules produced, before folding.",
        &|m| get(&m.rows),
    );
    counter(out, "apiary_batches_total", "Batches processed.", &|m| {
        get(&m.batches)
    });
    counter(
        out,
        "apiary_batch_seconds_sum",
        "Time spent processing batches.",
        &|m| get(&m.batch_micros) / 1e6,
    );
    counter(
        out,
        "apiary_checkpoints_total",
        "Checkpoints committed.",
        &|m| get(&m.checkpoints),
    );
    counter(
        out,
        "apiary_checkpoint_seconds_sum",
        "Time spent committing checkpoints.",
        &|m| get(&m.checkpoint_micros) / 1e6,
    );
    counter(
        out,
        "apiary_committed_offset",
        "Next offset of the lane's last checkpoint.",
        &|m| get(&m.committed_offset),
    );
    // Only lanes whose source reports an end: Kafka partitions this
    // process reads.
    let source_metric =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&LaneMetrics) -> f64| {
            per_lane(out, name, help, &|m| m.lag().map(|_| value(m)))
        };
    source_metric(
        out,
        "apiary_consumer_lag",
        "Records in the lane's partition after its last checkpoint.",
        &|m| m.lag().unwrap_or_default() as f64,
    );
    source_metric(
        out,
        "apiary_partition_paused",
        "1 while the lane's partition is paused because the lane has no room.",
        &|m| f64::from(u8::from(m.source_paused.load(Ordering::Relaxed))),
    );
    source_metric(
        out,
        "apiary_partition_pauses_total",
        "Times the lane's partition was paused.",
        &|m| get(&m.source_pauses),
    );
    counter(
        out,
        "apiary_lane_held",
        "1 while the lane holds a batch back until its plugins change (a quarantined \
         plugin, or no parser for its topic).",
        &|m| f64::from(u8::from(m.held())),
    );
    per_lane(
        out,
        "apiary_watermark_ms",
        "Event time up to which the lane has seen everything, in epoch milliseconds.",
        &|m| m.snapshot().watermark_ms.map(|ms| ms as f64),
    );
}

/// What each lane counts per plugin: state sizes, refused records and
/// dropped log lines.
fn render_lane_plugins(out: &mut String, lanes: &BTreeMap<String, Arc<LaneMetrics>>) {
    for (index, name, help) in [
        (
            0,
            "apiary_state_keys",
            "State entries a plugin holds in the lane.",
        ),
        (
            1,
            "apiary_state_bytes",
            "Bytes of state keys and values a plugin holds in the lane.",
        ),
        (
            2,
            "apiary_timers",
            "Event-time timers a plugin has set in the lane.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (lane, m) in lanes {
            let sizes = m.plugin_state.lock().unwrap_or_else(|e| e.into_inner());
            for (plugin, keys, bytes, timers) in sizes.iter() {
                let n = [keys, bytes, timers][index];
                let _ = writeln!(
                    out,
                    "{name}{{lane=\"{}\",plugin=\"{}\"}} {n}",
                    escape(lane),
                    escape(plugin)
                );
            }
        }
    }
    type Counts = fn(&LaneMetrics) -> &Mutex<BTreeMap<String, u64>>;
    let counted: [(&str, &str, Counts); 2] = [
        (
            "apiary_dead_letters_total",
            "Records refused, by plugin.",
            |m| &m.dead_letters,
        ),
        (
            "apiary_plugin_log_dropped_total",
            "Plugin log lines dropped over the plugin's log-rate.",
            |m| &m.log_dropped,
        ),
    ];
    for (name, help, counts) in counted {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (lane, m) in lanes {
            let counts = counts(m).lock().unwrap_or_else(|e| e.into_inner());
            for (plugin, n) in counts.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{lane=\"{}\",plugin=\"{}\"}} {n}",
                    escape(lane),
                    escape(plugin)
                );
            }
        }
    }
    type Blocked = fn(&LaneMetrics) -> &Mutex<Option<String>>;
    let blocked: [(&str, &str, Blocked); 2] = [
        (
            "apiary_plugin_quarantined",
            "1 while the lane waits for a new version of the plugin, which kept failing.",
            |m| &m.quarantined,
        ),
        (
            "apiary_timers_failed",
            "1 while the rule's failure on timers fired without a batch holds the lane's \
             watermark, until the lane's next batch.",
            |m| &m.timers_failed,
        ),
    ];
    for (name, help, plugin) in blocked {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (lane, m) in lanes {
            if let Some(plugin) = &*plugin(m).lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = writeln!(
                    out,
                    "{name}{{lane=\"{}\",plugin=\"{}\"}} 1",
                    escape(lane),
                    escape(plugin)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lanes_and_dead_letters_per_plugin() {
        let metrics = Metrics::default();
        let lane = metrics.lane("gifts[0]");
        lane.batch(1024, 1020, 10, Duration::from_millis(2));
        lane.dead_letter("seed-json-parser");
        lane.checkpoint(1024, Duration::from_millis(4));
        let text = metrics.render();
        assert!(
            text.contains("apiary_records_total{lane=\"gifts[0]\"} 1024\n"),
            "{text}"
        );
        assert!(
            text.contains("apiary_committed_offset{lane=\"gifts[0]\"} 1024\n"),
            "{text}"
        );
        assert!(
            text.contains("apiary_checkpoint_seconds_sum{lane=\"gifts[0]\"} 0.004\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "apiary_dead_letters_total{lane=\"gifts[0]\",plugin=\"seed-json-parser\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE apiary_committed_offset gauge"),
            "{text}"
        );
        assert!(
            !text.contains("apiary_consumer_lag{"),
            "no end, no lag: {text}"
        );
        lane.source_end(Some(1500));
        lane.source_paused(true);
        let text = metrics.render();
        assert!(
            text.contains("apiary_consumer_lag{lane=\"gifts[0]\"} 476\n"),
            "{text}"
        );
        assert!(
            text.contains("apiary_partition_paused{lane=\"gifts[0]\"} 1\n"),
            "{text}"
        );
        lane.source_paused(false);
        lane.source_paused(true);
        assert!(
            metrics
                .render()
                .contains("apiary_partition_pauses_total{lane=\"gifts[0]\"} 2\n"),
            "{text}"
        );
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn a_held_lane_names_the_plugin_it_waits_for() {
        let metrics = Metrics::default();
        let lane = metrics.lane("gifts[0]");
        let text = metrics.render();
        assert!(
            text.contains("apiary_lane_held{lane=\"gifts[0]\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("apiary_plugin_quarantined{"), "{text}");

        lane.set_timers_failed(Some("gift-windows"));
        let text = metrics.render();
        assert!(
            text.contains("apiary_timers_failed{lane=\"gifts[0]\",plugin=\"gift-windows\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("apiary_lane_held{lane=\"gifts[0]\"} 0\n"),
            "{text}"
        );

        lane.set_timers_failed(None);
        lane.set_quarantined(Some("gift-windows"));
        lane.set_held(true);
        let text = metrics.render();
        assert!(!text.contains("apiary_timers_failed{"), "{text}");
        assert!(
            text.contains(
                "apiary_plugin_quarantined{lane=\"gifts[0]\",plugin=\"gift-windows\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("apiary_lane_held{lane=\"gifts[0]\"} 1\n"),
            "{text}"
        );
        let snapshot = lane.snapshot();
        assert!(snapshot.held);
        assert_eq!(snapshot.quarantined.as_deref(), Some("gift-windows"));

        lane.set_timers_failed(Some("gift-windows"));
        lane.lane_stopped();
        let text = metrics.render();
        assert!(
            text.contains("apiary_lane_held{lane=\"gifts[0]\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("apiary_plugin_quarantined{"), "{text}");
        assert!(!text.contains("apiary_timers_failed{"), "{text}");
    }

    #[test]
    fn watermark_gauge_and_commit_signal() {
        let metrics = Metrics::default();
        let commits = metrics.commits();
        let lane = metrics.lane("visits[0]");
        assert!(!metrics.render().contains("apiary_watermark_ms{"));
        lane.set_watermark(1_700_000_000_000);
        assert!(
            metrics
                .render()
                .contains("apiary_watermark_ms{lane=\"visits[0]\"} 1700000000000\n")
        );
        assert!(!commits.has_changed().unwrap());
        lane.checkpoint(10, Duration::from_millis(1));
        assert!(commits.has_changed().unwrap());
        lane.set_quarantined(Some("top-gifters"));
        let (name, snap) = &metrics.lane_snapshots()[0];
        assert_eq!(name, "visits[0]");
        assert_eq!(snap.quarantined.as_deref(), Some("top-gifters"));
        assert_eq!(snap.committed_offset, 10);
        assert_eq!(snap.watermark_ms, Some(1_700_000_000_000));
    }
}
