//! The built-in pipeline panel: per lane records/s, committed offset,
//! consumer lag, watermark, dead letters and state; the plugins and their
//! recent reloads.
//!
//! Under `apiary run` it reads the [`Metrics`] registry `/metrics` reads;
//! standalone (`apiary dashboard`) it reads the sink's stored offsets and
//! dead letters, and rates come from successive offsets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::plugin::Shared;
use crate::store::{Reader, Table};

/// How many one-second samples a rate spans.
const RATE_SAMPLES: usize = 5;
/// Reloads kept for the panel.
const RECENT_RELOADS: usize = 10;

/// The pipeline panel's body: a table of lanes plus plugins and reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineTable {
    /// Lane columns.
    pub columns: Vec<String>,
    /// One row per lane.
    pub rows: Vec<Vec<Value>>,
    /// The loaded plugins: name, kind and version (`apiary run` only).
    pub plugins: Vec<PluginRow>,
    /// Recent plugin loads, swaps, removals and rejections, newest first.
    pub reloads: Vec<Reload>,
}

/// A loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginRow {
    /// Its name.
    pub name: String,
    /// `parser` or `rule`.
    pub kind: &'static str,
    /// Its version.
    pub version: String,
}

/// A change of the plugin set.
#[derive(Debug, Clone, Serialize)]
pub struct Reload {
    /// Local time it was seen.
    pub at: String,
    /// What changed.
    pub change: String,
}

/// Where the panel's figures come from.
enum Source {
    Live(Arc<Metrics>),
    Stored {
        reader: Reader,
        consumer: String,
        /// Stream, partition, next offset per lane.
        offsets: Mutex<Table>,
        /// Dead letters per `stream[partition]`.
        dead_letters: Mutex<BTreeMap<String, Value>>,
    },
}

/// Keeps the samples rates and reloads are computed from.
pub struct PipelineView {
    source: Source,
    utc_offset_secs: i32,
    samples: Mutex<BTreeMap<String, VecDeque<(Instant, u64)>>>,
    plugins: Mutex<Vec<PluginRow>>,
    /// The plugins of the last sample, to tell what a reload changed.
    known: Mutex<Option<Vec<Shared>>>,
    rejected: Mutex<u64>,
    reloads: Mutex<VecDeque<Reload>>,
}

impl PipelineView {
    /// Reads the running pipeline's registry.
    pub fn live(metrics: Arc<Metrics>, utc_offset_secs: i32) -> Self {
        Self::new(Source::Live(metrics), utc_offset_secs)
    }

    /// Reads lane `consumer`'s stored offsets from the sink.
    pub fn stored(reader: Reader, consumer: String, utc_offset_secs: i32) -> Self {
        Self::new(
            Source::Stored {
                reader,
                consumer,
                offsets: Mutex::default(),
                dead_letters: Mutex::default(),
            },
            utc_offset_secs,
        )
    }

    fn new(source: Source, utc_offset_secs: i32) -> Self {
        Self {
            source,
            utc_offset_secs,
            samples: Mutex::default(),
            plugins: Mutex::default(),
            known: Mutex::default(),
            rejected: Mutex::default(),
            reloads: Mutex::default(),
        }
    }

    /// Takes one sample: every lane's records (or stored offset) and the
    /// plugin set. Standalone, returns whether the stored offsets changed
    /// since the last sample, i.e. whether any lane committed.
    pub async fn sample(&self) -> anyhow::Result<bool> {
        let now = Instant::now();
        let mut counts = Vec::new();
        let mut changed = false;
        match &self.source {
            Source::Live(metrics) => {
                for (lane, snap) in metrics.lane_snapshots() {
                    counts.push((lane, snap.records));
                }
                if let Some(live) = metrics.plugins() {
                    self.note_plugins(&live);
                }
            }
            Source::Stored {
                reader,
                consumer,
                offsets,
                dead_letters,
            } => {
                // Offsets every second (one row per lane); dead letters only
                // when a commit may have added some.
                let table = reader.offsets(consumer).await?;
                for row in &table.rows {
                    counts.push((stored_lane(row), row[2].as_u64().unwrap_or(0)));
                }
                changed = *lock(offsets) != table;
                if changed {
                    let counts = reader.dead_letters(consumer).await?;
                    *lock(dead_letters) = counts
                        .rows
                        .iter()
                        .map(|r| (stored_lane(r), r[2].clone()))
                        .collect();
                }
                *lock(offsets) = table;
            }
        }
        let mut samples = lock(&self.samples);
        for (lane, count) in counts {
            let window = samples.entry(lane).or_default();
            window.push_back((now, count));
            while window.len() > RATE_SAMPLES {
                window.pop_front();
            }
        }
        Ok(changed)
    }

    /// Notes plugin loads, swaps, removals and rejections since the last
    /// sample.
    fn note_plugins(&self, live: &crate::plugin::LivePlugins) {
        let (_, set) = live.current();
        let now: Vec<Shared> = set.all().collect();
        let mut changes = Vec::new();
        {
            let mut known = lock(&self.known);
            if let Some(old) = known.as_ref() {
                for p in &now {
                    match old.iter().find(|o| o.name() == p.name()) {
                        None => changes.push(format!("{} {} loaded", p.name(), p.version())),
                        Some(o) if !o.same(p) => {
                            changes.push(format!("{} {} → {}", p.name(), o.version(), p.version()))
                        }
                        Some(_) => {}
                    }
                }
                for o in old {
                    if !now.iter().any(|p| p.name() == o.name()) {
                        changes.push(format!("{} {} removed", o.name(), o.version()));
                    }
                }
            }
            *known = Some(now.clone());
        }
        let rejected = live.counts().rejected;
        let mut seen = lock(&self.rejected);
        if rejected > *seen {
            changes.push(format!("{} plugin file(s) rejected", rejected - *seen));
            *seen = rejected;
        }
        let mut rows: Vec<PluginRow> = now
            .iter()
            .map(|p| PluginRow {
                name: p.name().to_owned(),
                kind: match p {
                    Shared::Parser(_) => "parser",
                    Shared::Rule(_) => "rule",
                },
                version: p.version().to_owned(),
            })
            .collect();
        rows.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        *lock(&self.plugins) = rows;
        let at = self.local_time();
        let mut reloads = lock(&self.reloads);
        for change in changes {
            reloads.push_front(Reload {
                at: at.clone(),
                change,
            });
        }
        reloads.truncate(RECENT_RELOADS);
    }

    /// The panel's body now.
    pub fn table(&self) -> PipelineTable {
        let samples = lock(&self.samples);
        let rate = |lane: &str| -> Value {
            let Some(window) = samples.get(lane) else {
                return Value::Null;
            };
            match (window.front(), window.back()) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    let per_sec = n1.saturating_sub(*n0) as f64 / (*t1 - *t0).as_secs_f64();
                    json!((per_sec * 10.0).round() / 10.0)
                }
                _ => Value::Null,
            }
        };
        let columns = [
            "lane",
            "records/s",
            "records",
            "committed offset",
            "consumer lag",
            "watermark",
            "dead letters",
            "state",
        ];
        let mut table = PipelineTable {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            ..PipelineTable::default()
        };
        match &self.source {
            Source::Live(metrics) => {
                for (lane, s) in metrics.lane_snapshots() {
                    let state = match (&s.quarantined, &s.timers_failed) {
                        (Some(plugin), _) => format!("quarantined ({plugin})"),
                        (None, _) if s.held => "held (no parser)".to_owned(),
                        (None, Some(rule)) => format!("watermark held ({rule}: timers failed)"),
                        (None, None) if s.paused => "paused".to_owned(),
                        (None, None) => "running".to_owned(),
                    };
                    table.rows.push(vec![
                        json!(lane),
                        rate(&lane),
                        json!(s.records),
                        json!(s.committed_offset),
                        json!(s.lag),
                        s.watermark_ms
                            .map_or(Value::Null, |ms| json!(self.format_time(ms))),
                        json!(s.dead_letters),
                        json!(state),
                    ]);
                }
                table.plugins = lock(&self.plugins).clone();
                table.reloads = lock(&self.reloads).iter().cloned().collect();
            }
            Source::Stored {
                offsets,
                dead_letters,
                ..
            } => {
                let dead_letters = lock(dead_letters);
                for row in &lock(offsets).rows {
                    let lane = stored_lane(row);
                    let dead = dead_letters.get(&lane).cloned().unwrap_or(json!(0));
                    table.rows.push(vec![
                        json!(lane),
                        rate(&lane),
                        Value::Null,
                        row[2].clone(),
                        Value::Null,
                        Value::Null,
                        dead,
                        json!("stored"),
                    ]);
                }
            }
        }
        table
    }

    fn format_time(&self, ms: i64) -> String {
        let text = crate::time::format_millis(ms, self.utc_offset_secs);
        text.get(..19).unwrap_or(&text).to_owned()
    }

    fn local_time(&self) -> String {
        let text = self.format_time(crate::time::now_millis());
        text.get(11..).unwrap_or(&text).to_owned()
    }
}

/// `stream[part]`, as lanes are named in the metrics.
fn stored_lane(row: &[Value]) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("{}[{}]", text(&row[0]), text(&row[1]))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn live_lanes_with_rates_and_state() {
        let metrics = Arc::new(Metrics::default());
        let lane = metrics.lane("gifts[0]");
        let view = PipelineView::live(metrics.clone(), 8 * 3600);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(view.sample()).unwrap();
        lane.batch(100, 100, 5, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(20));
        rt.block_on(view.sample()).unwrap();
        lane.set_watermark(0);
        lane.set_quarantined(Some("top-gifters"));
        let table = view.table();
        let row = &table.rows[0];
        assert_eq!(row[0], "gifts[0]");
        assert!(row[1].as_f64().unwrap() > 0.0, "{row:?}");
        assert_eq!(row[2], 100);
        assert_eq!(row[5], "1970-01-01 08:00:00");
        assert_eq!(row[7], "quarantined (top-gifters)");

        let state = || view.table().rows[0][7].clone();
        lane.set_quarantined(None);
        lane.set_timers_failed(Some("gift-windows"));
        assert_eq!(state(), "watermark held (gift-windows: timers failed)");
        lane.set_held(true);
        assert_eq!(state(), "held (no parser)");
        lane.set_held(false);
        lane.set_timers_failed(None);
        lane.source_paused(true);
        assert_eq!(state(), "paused");
        lane.source_paused(false);
        assert_eq!(state(), "running");
    }
}
