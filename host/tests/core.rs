//! The core without servers: lanes run by the supervisor over an
//! in-memory SQLite checkpoint store, fed by a scripted source. Checkpoints
//! by count and by time, a stop request, resuming from the stored offset,
//! bisection of a poison record, quarantine and its release, and a lane
//! let go while it holds a batch. Needs only the built plugins.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apiary::config::{BatchSection, PluginsSection, SqlSink, TimeSection};
use apiary::lookup::Lookups;
use apiary::metrics::Metrics;
use apiary::model::{LaneKey, SourceBatch};
use apiary::pipeline::{LaneFactory, LaneSupervisor};
use apiary::plugin::{Engine, LivePlugins, PluginSet, ReloadCounts};
use apiary::source::{Activity, BatchBuilder, LaneInput, Lanes};
use apiary::store::SqlStore;
use livestream_example::Topic;
use sqlx::Row as _;
use support::*;

const TOPIC: &str = "live_gift_total";
/// Users from here up make the hostile rule panic on every record.
const ALWAYS_PANIC_FROM: i64 = 5000;
/// A user the hostile rule panics on.
const PANIC_USER: i64 = 13;

/// A run's lanes over one in-memory database.
struct Core {
    runtime: tokio::runtime::Runtime,
    supervisor: Arc<LaneSupervisor>,
    store: SqlStore,
    store_config: SqlSink,
    live: Arc<LivePlugins>,
    engine: Engine,
    lookups: Arc<Lookups>,
    interrupt: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    plugins: tempfile::TempDir,
}

impl Core {
    /// Lanes running the example's parser and gift totals, plus the
    /// fixtures `extra`, checkpointing with the `[sink.sql]` lines `sink`.
    fn new(extra: &[&str], sink: &str) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        for name in ["seed-json-parser", "gift-type-totals"] {
            let from = plugins_dir().join(format!("{name}.wasm"));
            std::fs::copy(from, plugins.path().join(format!("{name}.wasm"))).unwrap();
        }
        for name in extra {
            std::fs::copy(
                test_plugin(name),
                plugins.path().join(format!("{name}.wasm")),
            )
            .unwrap();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Named, with a shared cache: every connection of the pool sees one
        // in-memory database.
        static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = DATABASES.fetch_add(1, Ordering::Relaxed);
        let url = format!("sqlite:file:core-{name}?mode=memory&cache=shared");
        let store_config: SqlSink = toml::from_str(&format!("url = {url:?}\n{sink}")).unwrap();
        let store = runtime.block_on(SqlStore::connect(&store_config)).unwrap();
        let mut section = PluginsSection::new(plugins.path().to_owned());
        section.quarantine_after = 3;
        let engine = Engine::with_limits(section).unwrap();
        let lookups = Arc::new(Lookups::default());
        let set = PluginSet::load_dir(&engine, plugins.path(), &lookups).unwrap();
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        let tables: Vec<_> = set.tables().cloned().collect();
        runtime.block_on(store.prepare_tables(&tables)).unwrap();
        let live = Arc::new(LivePlugins::new(set));
        let (stop, interrupt) = (Arc::default(), Arc::<AtomicBool>::default());
        let factory = factory(
            &engine,
            &live,
            &lookups,
            &store,
            &store_config,
            &stop,
            &interrupt,
        );
        let supervisor = Arc::new(LaneSupervisor::new(factory, runtime.handle().clone()));
        Self {
            supervisor,
            runtime,
            store,
            store_config,
            live,
            engine,
            lookups,
            interrupt,
            stop,
            plugins,
        }
    }

    /// Lanes of another process over the same database and plugins.
    fn another_process(&self) -> LaneSupervisor {
        let factory = factory(
            &self.engine,
            &self.live,
            &self.lookups,
            &self.store,
            &self.store_config,
            &self.stop,
            &self.interrupt,
        );
        LaneSupervisor::new(factory, self.runtime.handle().clone())
    }

    fn lane(partition: i32) -> LaneKey {
        LaneKey {
            consumer: "core".into(),
            stream: "gifts".into(),
            partition,
        }
    }

    fn open(&self, key: &LaneKey) -> LaneInput {
        self.supervisor.open(key.clone(), TOPIC, None).unwrap()
    }

    /// The next offset the lane stored, if any.
    fn position(&self, key: &LaneKey) -> Option<i64> {
        let position = self
            .runtime
            .block_on(self.store.load_position(key))
            .unwrap();
        position.map(|p| p.0)
    }

    fn pairs(&self, sql: &str) -> BTreeMap<i64, i64> {
        let rows = self
            .runtime
            .block_on(sqlx::query(sql).fetch_all(self.store.pool()))
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
            .collect()
    }

    fn count(&self, sql: &str) -> i64 {
        let row = self
            .runtime
            .block_on(sqlx::query(sql).fetch_one(self.store.pool()))
            .unwrap();
        row.get::<i64, _>(0)
    }

    /// Waits up to 10 s for `done`.
    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "waited for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Opens lanes over `store` with the plugins of `live`.
fn factory(
    engine: &Engine,
    live: &Arc<LivePlugins>,
    lookups: &Arc<Lookups>,
    store: &SqlStore,
    store_config: &SqlSink,
    stop: &Arc<AtomicBool>,
    interrupt: &Arc<AtomicBool>,
) -> LaneFactory {
    LaneFactory {
        engine: engine.clone(),
        plugins: live.clone(),
        lookups: lookups.clone(),
        store: store.clone(),
        store_config: store_config.clone(),
        outputs: Vec::new(),
        stop: Arc::clone(stop),
        interrupt: interrupt.clone(),
        activity: Arc::new(Activity::default()),
        metrics: Arc::new(Metrics::default()),
        time: TimeSection::default(),
        max_record_bytes: BatchSection::default().max_record_bytes,
        repartitions: None,
    }
}

/// Batches of `lines` from offset `from`, `size` records each.
fn batches(key: &LaneKey, lines: &[String], from: i64, size: usize) -> Vec<SourceBatch> {
    let mut offset = from;
    lines
        .chunks(size)
        .map(|chunk| {
            let mut builder = BatchBuilder::new(TOPIC, size);
            for line in chunk {
                builder.push(key.partition, offset, None, None, line.as_bytes(), &[]);
                offset += 1;
            }
            SourceBatch {
                lane: key.clone(),
                batch: builder.take(),
                next_offset: offset,
                room: None,
            }
        })
        .collect()
}

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";

#[test]
fn a_lane_checkpoints_by_count_and_by_time_and_resumes_where_it_stopped() {
    let lines = generate(Topic::LiveGiftTotal, 3_000, 5, 0.0).lines;
    // By count: every batch's rows fill the buffer; by time: 100 ms.
    let core = Core::new(&[], "max-rows = 1\ninterval = \"100ms\"");
    let key = Core::lane(0);
    let input = core.open(&key);
    assert_eq!(input.start, None, "a new lane has no checkpoint");
    let mut sent = batches(&key, &lines[..2_000], 0, 500).into_iter();
    assert!(input.batches.blocking_send(sent.next().unwrap()));
    core.wait("a checkpoint by count", || core.position(&key) == Some(500));
    for batch in sent {
        assert!(input.batches.blocking_send(batch));
    }
    core.wait("every batch", || core.position(&key) == Some(2_000));
    drop(input);
    core.supervisor.close(&key).unwrap();
    assert_eq!(core.pairs(TOTALS), gift_totals_of(lines[..2_000].iter()));

    // Reopened, the lane resumes at its checkpoint: the rest is added once.
    let input = core.open(&key);
    assert_eq!(input.start, Some(2_000));
    for batch in batches(&key, &lines[2_000..], 2_000, 1_000) {
        assert!(input.batches.blocking_send(batch));
    }
    drop(input);
    core.supervisor.close(&key).unwrap();
    assert_eq!(core.pairs(TOTALS), gift_totals_of(lines.iter()));
    let finished = core.supervisor.take_finished();
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[1].1.records, 1_000);

    // A checkpoint by time alone: one small batch, no count reached.
    let core = Core::new(&[], "max-rows = 1000000\ninterval = \"100ms\"");
    let input = core.open(&key);
    let first = batches(&key, &lines[..10], 0, 10).pop().unwrap();
    assert!(input.batches.blocking_send(first));
    core.wait("a checkpoint by time", || core.position(&key) == Some(10));
    drop(input);
    core.supervisor.close(&key).unwrap();
}

/// A process that lost its lane to another (its session expired while it
/// stalled, say) cannot commit over the new owner's checkpoints: its next
/// checkpoint is refused and the lane stops, naming why.
#[test]
fn a_lane_checkpointed_by_another_process_is_fenced_off() {
    let lines = generate(Topic::LiveGiftTotal, 1_500, 8, 0.0).lines;
    let core = Core::new(&[], "max-rows = 1\ninterval = \"1h\"");
    let key = Core::lane(0);
    let mut sent = batches(&key, &lines, 0, 500).into_iter();
    let stalled = core.open(&key);
    assert!(stalled.batches.blocking_send(sent.next().unwrap()));
    core.wait("the first checkpoint", || core.position(&key) == Some(500));
    // The lane's new owner resumes from the last checkpoint.
    let owner = core.another_process();
    let resumed = owner.open(key.clone(), TOPIC, None).unwrap();
    assert_eq!(resumed.start, Some(500));
    assert!(resumed.batches.blocking_send(sent.next().unwrap()));
    core.wait("the new owner's checkpoint", || {
        core.position(&key) == Some(1_000)
    });
    // The old owner wakes up with the same records.
    let again = batches(&key, &lines[500..1_000], 500, 500);
    let resent = stalled
        .batches
        .blocking_send(again.into_iter().next().unwrap());
    assert!(resent);
    drop(stalled);
    let error = core.supervisor.close(&key).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("checkpointed by another process") && message.contains("1000"),
        "{message}"
    );
    assert!(resumed.batches.blocking_send(sent.next().unwrap()));
    drop(resumed);
    owner.close(&key).unwrap();
    assert_eq!(core.position(&key), Some(1_500));
    assert_eq!(core.pairs(TOTALS), gift_totals_of(lines.iter()));
}

#[test]
fn a_stop_request_commits_what_was_processed_and_leaves_the_queue() {
    let lines = generate(Topic::LiveGiftTotal, 2_000, 6, 0.0).lines;
    let core = Core::new(&[], "max-rows = 1000000\ninterval = \"1h\"");
    let key = Core::lane(0);
    let input = core.open(&key);
    let mut sent = batches(&key, &lines, 0, 500).into_iter();
    assert!(input.batches.blocking_send(sent.next().unwrap()));
    core.wait("the first batch", || {
        input.metrics.snapshot().records == 500
    });
    assert_eq!(core.position(&key), None, "no checkpoint yet");
    // SIGTERM's flag: the lane takes no batch after it.
    core.interrupt.store(true, Ordering::Relaxed);
    for batch in sent {
        let _ = input.batches.blocking_send(batch);
    }
    drop(input);
    core.supervisor.close(&key).unwrap();
    let stored = core.position(&key).unwrap();
    assert_eq!(stored, 500, "only the batch processed before the stop");
    assert_eq!(core.pairs(TOTALS), gift_totals_of(lines[..500].iter()));
}

#[test]
fn a_poison_record_is_bisected_out_to_the_dead_letters() {
    let mut lines = generate(Topic::LiveGiftTotal, 1_000, 7, 0.0).lines;
    for at in [3, 400, 999] {
        lines[at] = as_user(&lines[at], PANIC_USER);
    }
    let core = Core::new(&["hostile-rule"], "");
    let key = Core::lane(0);
    let input = core.open(&key);
    for batch in batches(&key, &lines, 0, 1_000) {
        assert!(input.batches.blocking_send(batch));
    }
    drop(input);
    core.supervisor.close(&key).unwrap();
    // The other rule saw every record; the hostile one all but three.
    assert_eq!(core.pairs(TOTALS), gift_totals_of(lines.iter()));
    let refused = core.pairs(
        "SELECT record_offset, COUNT(*) FROM apiary_dead_letter \
         WHERE plugin = 'hostile-rule' GROUP BY record_offset",
    );
    assert_eq!(refused.keys().copied().collect::<Vec<_>>(), [3, 400, 999]);
    assert_eq!(
        core.count("SELECT COUNT(*) FROM hostile_gifts WHERE user_id = 13"),
        0
    );
    assert_eq!(core.position(&key), Some(1_000));
}

#[test]
fn a_quarantined_lane_holds_its_batch_until_new_plugins_come_and_lets_go_on_close() {
    let lines = generate(Topic::LiveGiftTotal, 600, 8, 0.0).lines;
    let poisoned: Vec<String> = lines[300..]
        .iter()
        .map(|l| as_user(l, ALWAYS_PANIC_FROM))
        .collect();
    let core = Core::new(&["hostile-rule"], "");
    let key = Core::lane(0);
    let input = core.open(&key);
    let mut sent = batches(&key, &lines[..300], 0, 300);
    sent.extend(batches(&key, &poisoned, 300, 300));
    for batch in sent {
        assert!(input.batches.blocking_send(batch));
    }
    // Every record of the second batch fails: the lane commits the first
    // and holds the second, skipping nothing.
    core.wait("the quarantine", || {
        input.metrics.snapshot().quarantined.as_deref() == Some("hostile-rule")
    });
    assert_eq!(core.position(&key), Some(300));

    // Closed while holding: the held batch is not committed, and whoever
    // reopens the lane reads it again.
    drop(input);
    core.supervisor.close(&key).unwrap();
    let finished = core.supervisor.take_finished();
    assert!(finished[0].1.held.is_some(), "{:?}", finished[0].1);
    let input = core.open(&key);
    assert_eq!(input.start, Some(300));
    for batch in batches(&key, &poisoned, 300, 300) {
        assert!(input.batches.blocking_send(batch));
    }
    core.wait("the quarantine again", || {
        input.metrics.snapshot().quarantined.is_some()
    });
    assert_eq!(core.position(&key), Some(300));

    // New plugins (here: the hostile rule removed) release it.
    std::fs::remove_file(core.plugins.path().join("hostile-rule.wasm")).unwrap();
    let set = PluginSet::load_dir(&core.engine, core.plugins.path(), &core.lookups).unwrap();
    core.live.publish(set, ReloadCounts::default());
    core.wait("the release", || core.position(&key) == Some(600));
    drop(input);
    core.supervisor.close(&key).unwrap();
    assert_eq!(
        core.pairs(TOTALS),
        gift_totals_of(lines[..300].iter().chain(&poisoned))
    );
    core.stop.store(true, Ordering::Relaxed);
}
