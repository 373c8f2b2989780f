//! Plugin instances of one lane, and the batch step they run: the parser
//! turns a raw batch into events, each rule turns its events into rows.

use std::sync::Arc;

use anyhow::bail;
use wasmtime::Store;

use super::compat;
use super::ctx::{PluginCtx, PluginState};
use super::engine::Engine;
use super::registry::{LoadedParser, LoadedRule, ParserPre, PluginSet, RulePre};
use crate::dialect::RowLimits;
use crate::lookup::Lookups;
use crate::model::lane::sub_batch;
use crate::model::route::partition_of;
use crate::model::schema::TableSchema;
use crate::model::wit::types::{FiredTimer, OutputRows, RawBatch, RawRecord, Value};
use crate::model::wit::v3::ParseOutput;
use crate::model::wit::v3::types::{Event, EventBatch};
use crate::model::wit::{ParserPlugin, RuleOutput, RulePlugin, v1, v3};
use crate::model::{EventRoute, StateChange, TimerChange};
use crate::text::{MAX_REASON_BYTES, bounded};

/// Timers handed to one `on-timers` call at most.
const TIMERS_PER_CALL: usize = 4096;
/// `on-timers` calls after one batch at most: a rule that keeps setting
/// timers at or below the watermark fails instead of looping forever.
const TIMER_ROUNDS: usize = 10_000;

/// A parser instantiated for one lane.
pub struct ParserInstance {
    /// The plugin it runs.
    pub loaded: Arc<LoadedParser>,
    store: Store<PluginCtx>,
    bindings: ParserBindings,
}

/// A rule instantiated for one lane.
pub struct RuleInstance {
    /// The plugin it runs.
    pub loaded: Arc<LoadedRule>,
    store: Store<PluginCtx>,
    bindings: RuleBindings,
}

enum ParserBindings {
    V1(v1::ParserPlugin),
    V2(ParserPlugin),
    V3(v3::ParserPlugin),
}

enum RuleBindings {
    V1(v1::RulePlugin),
    V2(RulePlugin),
    V3(v3::RulePlugin),
}

/// Instantiates `pre` and hands an instance of 0.2.0 or later its
/// parameters.
macro_rules! instantiate {
    (@init $store:expr, $loaded:expr, $what:literal, $pre:ident, $export:ident, $failed:ident) => {{
        let instance = $pre.instantiate(&mut $store).map_err($failed)?;
        instance
            .$export()
            .call_init(&mut $store, &$loaded.params)
            .map_err($failed)?
            .map_err(|e| {
                anyhow::anyhow!(concat!($what, " `{}` init refused: {}"), $loaded.info.name, e)
            })?;
        instance
    }};
    ($store:expr, $loaded:expr, $what:literal, $pre:ident, $bindings:ident, $export:ident) => {{
        let name = &$loaded.info.name;
        let failed = |e: wasmtime::Error| {
            anyhow::anyhow!(
                concat!("cannot instantiate ", $what, " `{}`: {:#}"),
                name,
                e
            )
        };
        match &$loaded.pre {
            $pre::V1(pre) => $bindings::V1(pre.instantiate(&mut $store).map_err(failed)?),
            $pre::V2(pre) => $bindings::V2(instantiate!(@init $store, $loaded, $what, pre, $export, failed)),
            $pre::V3(pre) => $bindings::V3(instantiate!(@init $store, $loaded, $what, pre, $export, failed)),
        }
    }};
}

/// Gives the instance of `store` its whole time limit for the next call.
fn renew_deadline(store: &mut Store<PluginCtx>) {
    let ticks = store.data().deadline_ticks;
    store.set_epoch_deadline(ticks);
}

impl ParserInstance {
    /// Parses one batch, within the plugin's time limit per call, into
    /// 0.3.0 events (text spans checked; the rest is for the lane to
    /// check). Fails with what went wrong, worded to follow the parser's
    /// name.
    pub fn parse(&mut self, batch: &RawBatch) -> Result<ParseOutput, String> {
        renew_deadline(&mut self.store);
        let store = &mut self.store;
        let output = match &self.bindings {
            ParserBindings::V3(b) => {
                let input = compat::v3::raw_batch(batch);
                let max_text = store.data().memory_limit;
                b.apiary_plugin_parser()
                    .call_parse(&mut *store, &input)
                    .map(|output| compat::v3::check_text(&output, max_text).map(|()| output))
            }
            ParserBindings::V2(b) => b
                .apiary_plugin_parser()
                .call_parse(&mut *store, batch)
                .map(compat::v3::from_owned_text),
            ParserBindings::V1(b) => {
                let input = compat::v1::raw_batch(batch);
                b.apiary_plugin_parser()
                    .call_parse(&mut *store, &input)
                    .map(|output| {
                        compat::v3::from_owned_text(compat::v1::parse_output(output, batch))
                    })
            }
        };
        output.unwrap_or_else(|trap| Err(format!("trapped: {}", store.data().trap_message(&trap))))
    }
}

impl RuleInstance {
    /// Runs the rule over one batch of events, within the plugin's time
    /// limit per call; the output is unchecked (the lane checks it). Fails
    /// with what went wrong, worded to follow the rule's name.
    pub fn process(&mut self, batch: &EventBatch) -> Result<RuleOutput, String> {
        renew_deadline(&mut self.store);
        let store = &mut self.store;
        let output = match &self.bindings {
            RuleBindings::V3(b) => b
                .apiary_plugin_rule()
                .call_process(&mut *store, batch)
                .map(Into::into),
            RuleBindings::V2(b) => {
                let input = compat::v3::to_owned_text(batch)?;
                b.apiary_plugin_rule().call_process(&mut *store, &input)
            }
            RuleBindings::V1(b) => {
                let input = compat::v1::event_batch(&compat::v3::to_owned_text(batch)?);
                b.apiary_plugin_rule()
                    .call_process(&mut *store, &input)
                    .map(Into::into)
            }
        };
        output.map_err(|trap| format!("trapped: {}", store.data().trap_message(&trap)))
    }

    fn on_timers(
        &mut self,
        timers: &[FiredTimer],
        watermark: i64,
    ) -> wasmtime::Result<Vec<OutputRows>> {
        renew_deadline(&mut self.store);
        match &self.bindings {
            RuleBindings::V2(b) => {
                b.apiary_plugin_rule()
                    .call_on_timers(&mut self.store, timers, watermark)
            }
            RuleBindings::V3(b) => {
                let timers = compat::v3::fired_timers(timers);
                let rows =
                    b.apiary_plugin_rule()
                        .call_on_timers(&mut self.store, &timers, watermark)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
            // A 0.1.0 rule cannot set timers.
            RuleBindings::V1(_) => Ok(Vec::new()),
        }
    }
}

impl ParserInstance {
    /// Instantiates `loaded` with the lane's stored state.
    pub fn new(
        engine: &Engine,
        loaded: Arc<LoadedParser>,
        lane: Arc<str>,
        lookups: Arc<Lookups>,
        state: PluginState,
    ) -> anyhow::Result<Self> {
        let ctx = PluginCtx::new(loaded.info.name.as_str().into(), lane, lookups, state);
        Self::with_ctx(engine, loaded, ctx)
    }

    fn with_ctx(
        engine: &Engine,
        loaded: Arc<LoadedParser>,
        ctx: PluginCtx,
    ) -> anyhow::Result<Self> {
        let mut store = engine.store(ctx);
        let bindings = instantiate!(
            store,
            loaded,
            "parser",
            ParserPre,
            ParserBindings,
            apiary_plugin_parser
        );
        Ok(Self {
            loaded,
            store,
            bindings,
        })
    }
}

impl RuleInstance {
    /// Instantiates `loaded` with the lane's stored state.
    pub fn new(
        engine: &Engine,
        loaded: Arc<LoadedRule>,
        lane: Arc<str>,
        lookups: Arc<Lookups>,
        state: PluginState,
    ) -> anyhow::Result<Self> {
        let ctx = PluginCtx::new(loaded.info.name.as_str().into(), lane, lookups, state);
        Self::with_ctx(engine, loaded, ctx)
    }

    fn with_ctx(engine: &Engine, loaded: Arc<LoadedRule>, ctx: PluginCtx) -> anyhow::Result<Self> {
        let mut store = engine.store(ctx);
        let bindings = instantiate!(
            store,
            loaded,
            "rule",
            RulePre,
            RuleBindings,
            apiary_plugin_rule
        );
        Ok(Self {
            loaded,
            store,
            bindings,
        })
    }
}

/// What one batch produced. A lane applies it only when every plugin
/// succeeded, so a failing batch leaves no partial rows behind.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// Whole rows per output table, flattened in column order, validated.
    pub rows: Vec<(Arc<TableSchema>, Vec<Value>)>,
    /// Refused records: index in the raw batch, plugin, reason.
    pub rejected: Vec<(usize, String, String)>,
    /// Events the parser produced.
    pub events: usize,
    /// Timers that fired.
    pub timers: usize,
    /// With [`EventRoute::Forward`]: each record that produced events, by
    /// index in the raw batch, with each internal partition its events
    /// belong to; in record order.
    pub targets: Vec<(usize, i32)>,
}

/// A batch that failed as a whole: which plugin, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct BatchFailure {
    /// The plugin that trapped or broke the contract.
    pub plugin: String,
    /// What happened.
    pub reason: String,
}

/// A plugin that keeps failing, whatever record it is given.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{plugin}` quarantined {fault}; last: {last}")]
pub struct Quarantined {
    /// The plugin.
    pub plugin: String,
    /// How it keeps failing.
    pub fault: Fault,
    /// Its last failure.
    pub last: String,
}

/// How a quarantined plugin keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// It failed on this many records in a row.
    #[error("after failing on {0} records in a row")]
    Records(u32),
    /// A rule's `on-timers` failed on the timers a lone record's event
    /// time made due: the timers are at fault, not the record, and
    /// refusing it would only take its events from the other rules.
    #[error("as its on-timers fails whichever record moves the watermark to its timers")]
    Timers,
}

/// Why a batch was held back, leaving no trace: the lane processes it
/// again later, or a later run does.
#[derive(Debug, Clone)]
pub enum Held {
    /// A plugin failed on too many records in a row.
    Quarantined(Quarantined),
    /// The process was asked to stop while the batch's records were being
    /// isolated: its offsets are not committed.
    Interrupted,
}

/// The parser of a lane's topic and every rule, instantiated for the lane.
pub struct LanePlugins {
    /// The lane's parser.
    pub parser: ParserInstance,
    /// All rules.
    pub rules: Vec<RuleInstance>,
    /// Records each plugin failed on since the last success.
    strikes: std::collections::HashMap<String, u32>,
    lane: Arc<str>,
    lookups: Arc<Lookups>,
    /// The lane's watermark: the largest event time seen minus the allowed
    /// lateness minus 1 ms; `None` before any event time.
    watermark: Option<i64>,
    /// The watermark when the current batch began, to undo a failed one.
    batch_watermark: Option<i64>,
    /// Allowed lateness, ms.
    lateness: i64,
    /// Set when the process is asked to stop: isolation gives up.
    interrupt: Arc<std::sync::atomic::AtomicBool>,
    /// Where the lane's events go, in a repartitioned topic.
    route: Option<EventRoute>,
    /// Where the watermark goes instead of following the events (a
    /// repartition's second stage: its slowest active source partition's
    /// watermark).
    sources_watermark: Option<i64>,
    /// The largest event time seen, which the watermark follows otherwise.
    latest: Option<i64>,
    /// How far ahead of the clock an event time may be, ms (`None`: any).
    max_ahead: Option<i64>,
    /// What one row may hold on the sink, beyond what every sink stores.
    row_limits: RowLimits,
}

impl LanePlugins {
    /// Instantiates the parser of `topic` and every rule for one lane, with
    /// their states from `load_state(plugin name)`.
    pub fn new(
        engine: &Engine,
        plugins: &PluginSet,
        topic: &str,
        lane: &str,
        lookups: &Arc<Lookups>,
        mut load_state: impl FnMut(&str) -> anyhow::Result<PluginState>,
    ) -> anyhow::Result<Self> {
        let lane: Arc<str> = lane.into();
        let Some(parser) = plugins.parser_for(topic) else {
            let known: Vec<String> = plugins
                .parsers
                .iter()
                .map(|p| format!("{} ({})", p.info.name, p.info.topics.join(", ")))
                .collect();
            bail!(
                "no parser plugin reads topic `{topic}`; loaded parsers: [{}]",
                known.join("; ")
            );
        };
        let state = load_state(&parser.info.name)?;
        let parser =
            ParserInstance::new(engine, parser.clone(), lane.clone(), lookups.clone(), state)?;
        let rules = plugins
            .rules
            .iter()
            .map(|rule| {
                let state = load_state(&rule.info.name)?;
                RuleInstance::new(engine, rule.clone(), lane.clone(), lookups.clone(), state)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            parser,
            rules,
            strikes: Default::default(),
            lane,
            lookups: lookups.clone(),
            watermark: None,
            batch_watermark: None,
            lateness: 0,
            interrupt: Arc::default(),
            route: None,
            sources_watermark: None,
            latest: None,
            max_ahead: None,
            row_limits: RowLimits::default(),
        })
    }

    /// Moves the watermark to `watermark` after each batch, instead of
    /// after the batch's events (`None`: after the events).
    pub fn follow_sources(&mut self, watermark: Option<i64>) {
        self.sources_watermark = watermark;
    }

    /// Routes the lane's events as `route` says; the first stage of a
    /// repartition runs no rule.
    pub fn with_route(mut self, route: Option<EventRoute>) -> Self {
        if let Some(EventRoute::Forward { .. }) = route {
            self.rules.clear();
        }
        self.route = route;
        self
    }

    /// Sets the allowed lateness and the watermark the lane resumes at.
    pub fn with_time(
        mut self,
        allowed_lateness: std::time::Duration,
        watermark: Option<i64>,
    ) -> Self {
        self.lateness = i64::try_from(allowed_lateness.as_millis()).unwrap_or(i64::MAX);
        self.watermark = watermark;
        self.batch_watermark = watermark;
        self
    }

    /// Refuses records with an event time more than `limit` ahead of the
    /// clock (see `[time] max-ahead`); zero: no limit.
    pub fn with_max_ahead(mut self, limit: std::time::Duration) -> Self {
        self.max_ahead =
            (!limit.is_zero()).then(|| i64::try_from(limit.as_millis()).unwrap_or(i64::MAX));
        self
    }

    /// Refuses rows the sink would refuse although others store them
    /// (see [`RowLimits`]).
    pub fn with_row_limits(mut self, limits: RowLimits) -> Self {
        self.row_limits = limits;
        self
    }

    /// Gives up isolating a failing batch once `interrupt` is set (the
    /// batch is then held, see [`Held::Interrupted`]).
    pub fn with_interrupt(mut self, interrupt: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// The name of the lane's parser.
    pub fn parser_name(&self) -> &str {
        &self.parser.loaded.info.name
    }

    /// The lane's watermark, ms since the epoch.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Whether a plugin has written half its state-write-limit since the
    /// last checkpoint.
    pub fn state_write_due(&self) -> bool {
        std::iter::once(&self.parser.store)
            .chain(self.rules.iter().map(|r| &r.store))
            .any(|store| store.data().state_write_due())
    }

    /// Per plugin that dropped log lines over its rate since the last
    /// call: its name and how many.
    pub fn take_log_dropped(&mut self) -> Vec<(String, u64)> {
        let parser = &mut self.parser;
        std::iter::once((&parser.loaded.info.name, &mut parser.store))
            .chain(
                self.rules
                    .iter_mut()
                    .map(|r| (&r.loaded.info.name, &mut r.store)),
            )
            .map(|(name, store)| (name.clone(), store.data_mut().take_log_dropped()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Per plugin: its name, state keys, state bytes and timers.
    pub fn state_sizes(&self) -> Vec<(String, usize, usize, usize)> {
        std::iter::once((&self.parser.loaded.info.name, &self.parser.store))
            .chain(self.rules.iter().map(|r| (&r.loaded.info.name, &r.store)))
            .map(|(name, store)| {
                let s = &store.data().state;
                (name.clone(), s.len(), s.bytes(), s.timer_count())
            })
            .collect()
    }

    /// Moves the watermark on to `to` without a batch (an idle lane), firing
    /// the timers it reaches. Fails like a batch would; the lane then keeps
    /// its watermark.
    pub fn advance_watermark(&mut self, engine: &Engine, to: i64) -> anyhow::Result<BatchResult> {
        if self.watermark.is_some_and(|w| w >= to) {
            return Ok(BatchResult::default());
        }
        let marks: Vec<usize> = self.states().map(|s| s.savepoint()).collect();
        let before = self.watermark;
        self.watermark = Some(to);
        let mut result = BatchResult::default();
        match self.fire(to, &mut result) {
            Ok(()) => {
                self.batch_watermark = self.watermark;
                self.states().for_each(PluginState::commit_batch);
                Ok(result)
            }
            Err(failure) => {
                for (state, mark) in self.states().zip(marks) {
                    state.roll_back_to(mark);
                }
                self.watermark = before;
                self.restart(engine)?;
                // A [`BatchFailure`], so the caller can name the rule.
                Err(failure.into())
            }
        }
    }

    /// Runs one raw batch through the parser and the rules. On failure
    /// (a trap, or a broken contract) the batch produced nothing and left
    /// the plugins' state as it was; call [`LanePlugins::restart`] before
    /// the next batch if a plugin trapped.
    pub fn process(&mut self, batch: &RawBatch) -> Result<BatchResult, BatchFailure> {
        let result = match self.try_batch(batch, None) {
            Ok(mut result) => {
                bound_reasons(&mut result);
                Ok(result)
            }
            Err(Stop::Failed(failure) | Stop::Timers(failure)) => Err(failure),
            Err(Stop::Quarantined(q)) => Err(BatchFailure {
                plugin: q.plugin.clone(),
                reason: q.to_string(),
            }),
            Err(Stop::Host(e)) => Err(BatchFailure {
                plugin: "host".into(),
                reason: format!("{e:#}"),
            }),
            Err(Stop::Interrupted) => Err(BatchFailure {
                plugin: "host".into(),
                reason: "interrupted".into(),
            }),
        };
        if result.is_ok() {
            self.states().for_each(PluginState::commit_batch);
            self.batch_watermark = self.watermark;
        }
        result
    }

    /// Like [`LanePlugins::process`], but a failing batch is split in
    /// halves until each record that makes a plugin fail is alone; those
    /// are refused with the failure (trap message, limit hit) and the rest
    /// processed. A plugin that fails on `quarantine-after` records in a
    /// row is quarantined: the batch then leaves no trace, so the lane can
    /// hold it until a new version of the plugin arrives.
    pub fn process_isolating(
        &mut self,
        engine: &Engine,
        batch: &RawBatch,
    ) -> anyhow::Result<Result<BatchResult, Held>> {
        let latest = self.latest;
        match self.isolate(engine, batch)? {
            Ok(mut result) => {
                bound_reasons(&mut result);
                self.states().for_each(PluginState::commit_batch);
                self.batch_watermark = self.watermark;
                Ok(Ok(result))
            }
            Err(mut held) => {
                if let Held::Quarantined(q) = &mut held {
                    q.last = bounded(std::mem::take(&mut q.last), MAX_REASON_BYTES);
                }
                self.states().for_each(PluginState::roll_back_batch);
                self.watermark = self.batch_watermark;
                self.latest = latest;
                Ok(Err(held))
            }
        }
    }

    fn isolate(
        &mut self,
        engine: &Engine,
        batch: &RawBatch,
    ) -> anyhow::Result<Result<BatchResult, Held>> {
        let (failure, on_timers) = match self.try_batch(batch, Some(engine)) {
            Ok(result) => {
                if !batch.records.is_empty() {
                    // Rules keep their own count (see `isolate_rule`).
                    self.strikes.remove(&self.parser.loaded.info.name);
                }
                return Ok(Ok(result));
            }
            Err(Stop::Failed(failure)) => (failure, false),
            Err(Stop::Timers(failure)) => (failure, true),
            Err(Stop::Quarantined(quarantined)) => return Ok(Err(Held::Quarantined(quarantined))),
            Err(Stop::Interrupted) => return Ok(Err(Held::Interrupted)),
            Err(Stop::Host(e)) => return Err(e),
        };
        if self.interrupted() {
            return Ok(Err(Held::Interrupted));
        }
        // A trapped instance cannot be entered again.
        self.restart(engine)?;
        if batch.records.len() == 1 {
            if on_timers {
                return Ok(Err(Held::Quarantined(Quarantined {
                    plugin: failure.plugin,
                    fault: Fault::Timers,
                    last: failure.reason,
                })));
            }
            let strikes = self.strikes.entry(failure.plugin.clone()).or_default();
            *strikes += 1;
            if *strikes >= engine.quarantine_after() {
                return Ok(Err(Held::Quarantined(Quarantined {
                    plugin: failure.plugin,
                    fault: Fault::Records(*strikes),
                    last: failure.reason,
                })));
            }
            return Ok(Ok(BatchResult {
                rejected: vec![(0, failure.plugin, failure.reason)],
                ..BatchResult::default()
            }));
        }
        let half = batch.records.len() / 2;
        let part = |records: &[RawRecord]| sub_batch(batch, records);
        let mut first = match self.isolate(engine, &part(&batch.records[..half]))? {
            Ok(result) => result,
            quarantined => return Ok(quarantined),
        };
        let second = match self.isolate(engine, &part(&batch.records[half..]))? {
            Ok(result) => result,
            quarantined => return Ok(quarantined),
        };
        first.rows.extend(second.rows);
        first.targets.extend(
            second
                .targets
                .into_iter()
                .map(|(index, partition)| (index + half, partition)),
        );
        first.events += second.events;
        first.timers += second.timers;
        first.rejected.extend(
            second
                .rejected
                .into_iter()
                .map(|(index, plugin, reason)| (index + half, plugin, reason)),
        );
        Ok(Ok(first))
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every plugin's state in this lane.
    fn states(&mut self) -> impl Iterator<Item = &mut PluginState> {
        std::iter::once(&mut self.parser.store.data_mut().state)
            .chain(self.rules.iter_mut().map(|r| &mut r.store.data_mut().state))
    }

    /// One attempt at a batch; on failure its state changes are undone.
    fn try_batch(
        &mut self,
        batch: &RawBatch,
        isolate: Option<&Engine>,
    ) -> Result<BatchResult, Stop> {
        let marks: Vec<usize> = self.states().map(|s| s.savepoint()).collect();
        let (watermark, latest) = (self.watermark, self.latest);
        let result = self.run_batch(batch, isolate);
        if result.is_err() {
            for (state, mark) in self.states().zip(marks) {
                state.roll_back_to(mark);
            }
            // The failed attempt's events count as unseen: a retry of its
            // first half must not start from the whole batch's latest time.
            self.watermark = watermark;
            self.latest = latest;
        }
        result
    }

    /// After the watermark moved to `watermark`: fires each rule's timers
    /// it reached, in time order, then removes the state entries it
    /// expired.
    fn fire(&mut self, watermark: i64, result: &mut BatchResult) -> Result<(), BatchFailure> {
        for rule in &mut self.rules {
            let name = rule.loaded.info.name.clone();
            let fail = |reason: String| BatchFailure {
                plugin: name.clone(),
                reason,
            };
            let mut rounds = 0;
            while rule.store.data().state.has_due(watermark) {
                rounds += 1;
                if rounds > TIMER_ROUNDS {
                    return Err(fail(format!(
                        "rule `{name}` keeps setting timers at or below the watermark {watermark}"
                    )));
                }
                let due: Vec<FiredTimer> = rule
                    .store
                    .data_mut()
                    .state
                    .take_due(watermark, TIMERS_PER_CALL)
                    .into_iter()
                    .map(|(time, key)| FiredTimer { key, time })
                    .collect();
                result.timers += due.len();
                let outputs = rule.on_timers(&due, watermark).map_err(|e| {
                    let message = rule.store.data().trap_message(&e);
                    fail(format!("rule `{name}` trapped in on-timers: {message}"))
                })?;
                for rows in outputs {
                    let table = rule.loaded.table(&rows.output).ok_or_else(|| {
                        fail(format!(
                            "rule `{name}` wrote to undeclared output `{}`",
                            rows.output
                        ))
                    })?;
                    check_cells(table, &rows.cells, self.row_limits)
                        .map_err(|e| fail(format!("rule `{name}`: {e}")))?;
                    result.rows.push((table.clone(), rows.cells));
                }
            }
        }
        self.states().for_each(|s| s.expire(watermark));
        Ok(())
    }

    /// One batch: the parser over the records, then each rule over the
    /// events it consumes. With `isolate`, a rule that fails is retried on
    /// halves of its events (by record) until each record it fails on is
    /// alone, and that record is refused for that rule only: the other
    /// rules still get its events. Without, any failure fails the batch.
    fn run_batch(
        &mut self,
        batch: &RawBatch,
        isolate: Option<&Engine>,
    ) -> Result<BatchResult, Stop> {
        let mut result = BatchResult::default();
        let parser = &mut self.parser;
        let loaded = parser.loaded.clone();
        let name = &loaded.info.name;
        let fail = |reason: String| {
            Stop::Failed(BatchFailure {
                plugin: name.clone(),
                reason,
            })
        };
        let parsed = parser
            .parse(batch)
            .map_err(|e| fail(format!("parser `{name}` {e}")))?;
        let records = batch.records.len();
        for rejection in parsed.rejected {
            let index = rejection.index as usize;
            if index >= records {
                return Err(fail(format!(
                    "parser `{name}` rejected record {index} of a batch of {records}"
                )));
            }
            result
                .rejected
                .push((index, name.clone(), rejection.reason));
        }
        if let Some(e) = parsed
            .events
            .iter()
            .find(|e| e.record_index as usize >= records)
        {
            return Err(fail(format!(
                "parser `{name}` returned an event of record {} in a batch of {records}",
                e.record_index
            )));
        }
        let mut parsed_events = parsed.events;
        if let Some(limit) = self.max_ahead {
            refuse_ahead(&mut parsed_events, limit, name, &mut result);
        }
        match self.route {
            Some(EventRoute::Forward { by, partitions }) => {
                result.targets = parsed_events
                    .iter()
                    .map(|e| (e.record_index as usize, partition_of(by, e, partitions)))
                    .collect();
                result.targets.sort_unstable();
                result.targets.dedup();
            }
            Some(EventRoute::Keep {
                by,
                partitions,
                partition,
            }) => parsed_events.retain(|e| partition_of(by, e, partitions) == partition),
            None => {}
        }
        result.events = parsed_events.len();
        let latest = parsed_events.iter().filter_map(|e| e.time).max();
        let events = EventBatch {
            topic: batch.topic.clone(),
            platform: parsed.platform,
            text: parsed.text,
            events: parsed_events,
            watermark: self.watermark,
        };
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            let consumed = |e: &&Event| rule.loaded.consumes(kind_of(&e.body));
            let wanted = events.events.iter().filter(consumed).count();
            if wanted == 0 {
                continue;
            }
            // Most topics carry one kind of event: hand the batch over as is.
            let filtered;
            let input = if wanted == events.events.len() {
                &events
            } else {
                filtered = EventBatch {
                    topic: events.topic.clone(),
                    platform: events.platform.clone(),
                    text: events.text.clone(),
                    events: events.events.iter().filter(consumed).cloned().collect(),
                    watermark: events.watermark,
                };
                &filtered
            };
            match isolate {
                None => {
                    let limits = self.row_limits;
                    call_rule(&mut self.rules[index], input, &mut result, limits)
                        .map_err(Stop::Failed)?
                }
                Some(engine) => self.isolate_rule(engine, index, input, &mut result)?,
            }
        }
        self.latest = self.latest.max(latest);
        let candidate = match self.sources_watermark {
            // A repartition's second stage: its sources' lowest watermark,
            // also where its own events are sparse.
            Some(sources) => Some(sources),
            None => self
                .latest
                .map(|latest| latest.saturating_sub(self.lateness).saturating_sub(1)),
        };
        if let Some(candidate) = candidate
            && candidate > i64::MIN
            && self.watermark.is_none_or(|w| candidate > w)
        {
            self.watermark = Some(candidate);
            self.fire(candidate, &mut result).map_err(Stop::Timers)?;
        }
        Ok(result)
    }

    /// Runs rule `index` over `input`; if it fails, undoes what it wrote,
    /// restarts it, and tries halves of the input's records, down to one
    /// record, which is then refused for this rule alone.
    fn isolate_rule(
        &mut self,
        engine: &Engine,
        index: usize,
        input: &EventBatch,
        result: &mut BatchResult,
    ) -> Result<(), Stop> {
        let rule = &mut self.rules[index];
        let name = rule.loaded.info.name.clone();
        let mark = rule.store.data().state.savepoint();
        let mut attempt = BatchResult::default();
        let failure = match call_rule(rule, input, &mut attempt, self.row_limits) {
            Ok(()) => {
                self.strikes.remove(&name);
                result.rows.extend(attempt.rows);
                result.rejected.extend(attempt.rejected);
                return Ok(());
            }
            Err(failure) => failure,
        };
        rule.store.data_mut().state.roll_back_to(mark);
        if self.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Stop::Interrupted);
        }
        let rule = &mut self.rules[index];
        // A trapped instance cannot be entered again.
        let ctx = rule.store.data_mut().renew();
        *rule = RuleInstance::with_ctx(engine, rule.loaded.clone(), ctx).map_err(Stop::Host)?;
        let mut records: Vec<u32> = input.events.iter().map(|e| e.record_index).collect();
        records.sort_unstable();
        records.dedup();
        if let [record] = records[..] {
            let strikes = self.strikes.entry(name).or_default();
            *strikes += 1;
            if *strikes >= engine.quarantine_after() {
                return Err(Stop::Quarantined(Quarantined {
                    plugin: failure.plugin,
                    fault: Fault::Records(*strikes),
                    last: failure.reason,
                }));
            }
            result
                .rejected
                .push((record as usize, failure.plugin, failure.reason));
            return Ok(());
        }
        let split = records[records.len() / 2];
        let half = |first: bool| EventBatch {
            topic: input.topic.clone(),
            platform: input.platform.clone(),
            text: input.text.clone(),
            events: input
                .events
                .iter()
                .filter(|e| (e.record_index < split) == first)
                .cloned()
                .collect(),
            watermark: input.watermark,
        };
        self.isolate_rule(engine, index, &half(true), result)?;
        self.isolate_rule(engine, index, &half(false), result)
    }

    /// Names of the plugins running in this lane.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(&self.parser.loaded.info.name)
            .chain(self.rules.iter().map(|r| &r.loaded.info.name))
            .cloned()
            .collect()
    }

    /// Takes `set` over for `topic`: unchanged plugins keep their
    /// instances; a plugin of a new version gets a new instance that keeps
    /// its state; a new plugin starts from `load_state(name)`; a removed one
    /// is dropped (checkpoint its state first). Fails if `set` has no parser
    /// for `topic`.
    pub fn upgrade(
        &mut self,
        engine: &Engine,
        set: &PluginSet,
        topic: &str,
        mut load_state: impl FnMut(&str) -> anyhow::Result<PluginState>,
    ) -> anyhow::Result<()> {
        let Some(parser) = set.parser_for(topic) else {
            bail!("no parser plugin reads topic `{topic}`");
        };
        if !Arc::ptr_eq(parser, &self.parser.loaded) {
            let state = if parser.info.name == self.parser.loaded.info.name {
                std::mem::take(&mut self.parser.store.data_mut().state)
            } else {
                load_state(&parser.info.name)?
            };
            self.parser = ParserInstance::new(
                engine,
                parser.clone(),
                self.lane.clone(),
                self.lookups.clone(),
                state,
            )?;
        }
        let mut old: std::collections::HashMap<String, RuleInstance> = self
            .rules
            .drain(..)
            .map(|r| (r.loaded.info.name.clone(), r))
            .collect();
        let forwards = matches!(self.route, Some(EventRoute::Forward { .. }));
        for rule in set.rules.iter().filter(|_| !forwards) {
            let instance = match old.remove(&rule.info.name) {
                Some(same) if Arc::ptr_eq(&same.loaded, rule) => same,
                previous => {
                    // A new version keeps the lane's state; a new plugin
                    // loads what it stored.
                    let state = match previous {
                        Some(mut previous) => std::mem::take(&mut previous.store.data_mut().state),
                        None => load_state(&rule.info.name)?,
                    };
                    RuleInstance::new(
                        engine,
                        rule.clone(),
                        self.lane.clone(),
                        self.lookups.clone(),
                        state,
                    )?
                }
            };
            self.rules.push(instance);
        }
        self.strikes.clear();
        Ok(())
    }

    /// Replaces every instance with a fresh one that keeps the plugin's
    /// state: a trapped instance cannot be entered again.
    pub fn restart(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let parser = &mut self.parser;
        let ctx = parser.store.data_mut().renew();
        *parser = ParserInstance::with_ctx(engine, parser.loaded.clone(), ctx)?;
        for rule in &mut self.rules {
            let ctx = rule.store.data_mut().renew();
            *rule = RuleInstance::with_ctx(engine, rule.loaded.clone(), ctx)?;
        }
        Ok(())
    }

    /// Takes each plugin's state and timer changes since the last
    /// checkpoint.
    pub fn take_state_changes(&mut self) -> Vec<(String, Vec<StateChange>, Vec<TimerChange>)> {
        let parser = &mut self.parser;
        std::iter::once((&parser.loaded.info.name, parser.store.data_mut()))
            .chain(
                self.rules
                    .iter_mut()
                    .map(|r| (&r.loaded.info.name, r.store.data_mut())),
            )
            .map(|(name, ctx)| {
                let state = ctx.state.take_changes();
                (name.clone(), state, ctx.state.take_timer_changes())
            })
            .filter(|(_, state, timers)| !state.is_empty() || !timers.is_empty())
            .collect()
    }
}

/// Refuses, as `parser`'s, each record with an event more than `limit` ms
/// ahead of the clock, and drops its events: they would move the watermark
/// past every event to come.
fn refuse_ahead(events: &mut Vec<Event>, limit: i64, parser: &str, result: &mut BatchResult) {
    let now = crate::time::now_millis();
    let cutoff = now.saturating_add(limit);
    let mut ahead: Vec<(u32, i64)> = events
        .iter()
        .filter_map(|e| Some((e.record_index, e.time.filter(|&t| t > cutoff)?)))
        .collect();
    if ahead.is_empty() {
        return;
    }
    ahead.sort_unstable();
    ahead.dedup_by_key(|(record, _)| *record);
    let limit = std::time::Duration::from_millis(limit.unsigned_abs());
    for &(record, time) in &ahead {
        let by = std::time::Duration::from_secs(time.saturating_sub(now).unsigned_abs() / 1000);
        result.rejected.push((
            record as usize,
            parser.to_owned(),
            format!(
                "event time {time} is {} ahead of the clock, more than [time] max-ahead ({})",
                humantime::format_duration(by),
                humantime::format_duration(limit)
            ),
        ));
    }
    events.retain(|e| {
        ahead
            .binary_search_by_key(&e.record_index, |(record, _)| *record)
            .is_err()
    });
}

/// Cuts each refusal's reason to [`MAX_REASON_BYTES`]: reasons are held
/// until the checkpoint, so their size is the host's to bound.
fn bound_reasons(result: &mut BatchResult) {
    for (_, _, reason) in &mut result.rejected {
        if reason.len() > MAX_REASON_BYTES {
            *reason = bounded(std::mem::take(reason), MAX_REASON_BYTES);
        }
    }
}

/// Why a batch attempt stopped.
enum Stop {
    /// A plugin failed on the batch as a whole (the parser).
    Failed(BatchFailure),
    /// A rule's `on-timers` failed on the timers the batch made due.
    Timers(BatchFailure),
    /// A plugin failed on too many records in a row.
    Quarantined(Quarantined),
    /// The host could not go on (a plugin could not be instantiated again).
    Host(anyhow::Error),
    /// The process is stopping: isolation gave up.
    Interrupted,
}

/// Calls `rule` on `input` and adds its validated rows and refusals to
/// `result`; a trap or a broken contract is the rule's failure.
fn call_rule(
    rule: &mut RuleInstance,
    input: &EventBatch,
    result: &mut BatchResult,
    limits: RowLimits,
) -> Result<(), BatchFailure> {
    let loaded = rule.loaded.clone();
    let name = &loaded.info.name;
    let fail = |reason: String| BatchFailure {
        plugin: name.clone(),
        reason,
    };
    let output = rule
        .process(input)
        .map_err(|e| fail(format!("rule `{name}` {e}")))?;
    let mut rows = Vec::with_capacity(output.rows.len());
    for out in output.rows {
        let table = loaded.table(&out.output).ok_or_else(|| {
            fail(format!(
                "rule `{name}` wrote to undeclared output `{}`",
                out.output
            ))
        })?;
        check_cells(table, &out.cells, limits).map_err(|e| fail(format!("rule `{name}`: {e}")))?;
        rows.push((table.clone(), out.cells));
    }
    let mut rejected = Vec::with_capacity(output.rejected.len());
    for rejection in output.rejected {
        let event = input.events.get(rejection.index as usize).ok_or_else(|| {
            fail(format!(
                "rule `{name}` rejected event {} of {}",
                rejection.index,
                input.events.len()
            ))
        })?;
        rejected.push((event.record_index as usize, name.clone(), rejection.reason));
    }
    result.rows.extend(rows);
    result.rejected.extend(rejected);
    Ok(())
}

fn kind_of(body: &v3::types::EventBody) -> crate::model::wit::types::EventKind {
    use crate::model::wit::types::EventKind as K;
    use v3::types::EventBody as B;
    match body {
        B::Visit(_) => K::Visit,
        B::Gift(_) => K::Gift,
        B::Chat(_) => K::Chat,
        B::RoomStatus(_) => K::RoomStatus,
        B::StreamerStats(_) => K::StreamerStats,
        B::RoomList(_) => K::RoomList,
    }
}

/// Checks that `cells` are whole rows whose values fit their columns and
/// the sink.
fn check_cells(table: &TableSchema, cells: &[Value], limits: RowLimits) -> anyhow::Result<()> {
    use crate::model::wit::types::ColumnType as T;
    let width = table.columns.len();
    if !cells.len().is_multiple_of(width) {
        bail!(
            "output `{}` got {} cells, not a multiple of its {width} columns",
            table.output,
            cells.len()
        );
    }
    for (i, cell) in cells.iter().enumerate() {
        let column = &table.columns[i % width];
        let fits = match (cell, column.ty) {
            (Value::Null, _) => column.nullable,
            (Value::Int(_), T::Int)
            | (Value::Float(_), T::Float)
            | (Value::Text(_), T::Text)
            | (Value::Bytes(_), T::Bytes)
            | (Value::Timestamp(_), T::Timestamp)
            | (Value::Boolean(_), T::Boolean) => true,
            _ => false,
        };
        if !fits {
            bail!(
                "output `{}` row {} column `{}`: {cell:?} does not fit {}{}",
                table.output,
                i / width,
                column.name,
                column.ty,
                if column.nullable { "" } else { " NOT NULL" }
            );
        }
        if let Some(problem) = unstorable(cell, column.key, limits.text_bytes) {
            bail!(
                "output `{}` row {} column `{}`: {problem}",
                table.output,
                i / width,
                column.name,
            );
        }
    }
    if let Some(most) = limits.row_bytes {
        for (i, row) in cells.chunks(width).enumerate() {
            let bytes = crate::dialect::statement_bytes(row);
            if bytes > most {
                bail!(
                    "output `{}` row {i}: a row of {bytes} bytes; the sink takes at most \
                     {most} in one statement",
                    table.output
                );
            }
        }
    }
    Ok(())
}

/// Why a sink would refuse `cell`, if one would. A database that refuses
/// a row refuses the checkpoint, and every retry of it, so such a row is
/// the rule's error instead: the same rows fit every sink, but for text
/// longer than this sink's `max_text_bytes`.
fn unstorable(cell: &Value, key: bool, max_text_bytes: Option<usize>) -> Option<String> {
    use crate::dialect::KEY_LEN;
    match cell {
        Value::Timestamp(ms) if !crate::time::STORABLE_MILLIS.contains(ms) => Some(format!(
            "timestamp {ms} ms is outside the years 0001 to 9999 that every sink stores"
        )),
        // PostgreSQL's text has no NUL.
        Value::Text(text) if text.contains('\0') => {
            Some("text with a NUL character, which PostgreSQL does not store".into())
        }
        Value::Text(text) if key && text.len() > KEY_LEN => {
            let chars = text.chars().count();
            (chars > KEY_LEN)
                .then(|| format!("key text of {chars} characters; a key holds {KEY_LEN}"))
        }
        Value::Bytes(bytes) if key && bytes.len() > KEY_LEN => Some(format!(
            "key of {} bytes; a key holds {KEY_LEN}",
            bytes.len()
        )),
        Value::Text(text) => max_text_bytes
            .filter(|&most| text.len() > most)
            .map(|most| {
                format!(
                    "text of {} bytes; the sink's text column holds {most}",
                    text.len()
                )
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wit::v3::types::{EventBody, RoomStatus};

    fn event(record_index: u32, time: Option<i64>) -> Event {
        Event {
            record_index,
            time,
            body: EventBody::RoomStatus(RoomStatus {
                room_id: 1,
                live: true,
                title: None,
                time,
            }),
        }
    }

    #[test]
    fn cells_some_sink_would_refuse_are_named() {
        let storable = [
            (Value::Timestamp(0), true),
            (Value::Text("北".repeat(255)), true),
            (Value::Text("x".repeat(100_000)), false),
            (Value::Bytes(vec![0; 255]), true),
            (Value::Bytes(vec![0; 1000]), false),
        ];
        for (cell, key) in storable {
            assert_eq!(unstorable(&cell, key, None), None);
        }
        let refused = [
            (
                Value::Timestamp(i64::MAX),
                false,
                "outside the years 0001 to 9999",
            ),
            (Value::Timestamp(-62_135_596_800_000), true, "outside"),
            (Value::Text("a\0b".into()), false, "NUL character"),
            (
                Value::Text("北".repeat(256)),
                true,
                "key text of 256 characters",
            ),
            (Value::Bytes(vec![0; 256]), true, "key of 256 bytes"),
        ];
        for (cell, key, reason) in refused {
            let problem = unstorable(&cell, key, None).unwrap();
            assert!(problem.contains(reason), "{problem}");
        }
        // Within a sink's text limit, and past it.
        let text = Value::Text("x".repeat(65_535));
        assert_eq!(unstorable(&text, false, Some(65_535)), None);
        let longer = Value::Text("x".repeat(65_536));
        let problem = unstorable(&longer, false, Some(65_535)).unwrap();
        assert!(problem.contains("text of 65536 bytes"), "{problem}");
    }

    #[test]
    fn a_row_past_the_sinks_statement_limit_is_refused() {
        let table = crate::dialect::tests::table();
        let row = |title: &str| {
            vec![
                Value::Int(1),
                Value::Int(2),
                Value::Float(3.0),
                Value::Text(title.into()),
                Value::Timestamp(0),
            ]
        };
        let cells = [row("short"), row(&"x".repeat(1_000))].concat();
        let small = crate::dialect::statement_bytes(&row("short"));
        let limits = |row_bytes| RowLimits {
            text_bytes: None,
            row_bytes,
        };
        assert!(check_cells(&table, &cells, limits(None)).is_ok());
        // The long title is 995 bytes more than the short one.
        assert!(check_cells(&table, &cells, limits(Some(small + 995))).is_ok());
        let error = check_cells(&table, &cells, limits(Some(small + 994))).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("row 1: a row of"), "{message}");
    }

    #[test]
    fn a_record_with_any_event_too_far_ahead_is_refused_whole_and_once() {
        let now = crate::time::now_millis();
        let hour = 3_600_000;
        let mut events = vec![
            event(0, Some(now)),
            event(1, Some(now + 3 * hour)),
            event(1, Some(now)),
            event(2, None),
            event(3, Some(now + hour / 2)),
            event(4, Some(now + 5 * hour)),
            event(4, Some(now + 6 * hour)),
        ];
        let mut result = BatchResult::default();
        refuse_ahead(&mut events, hour, "p", &mut result);
        let kept: Vec<u32> = events.iter().map(|e| e.record_index).collect();
        assert_eq!(kept, [0, 2, 3]);
        let refused: Vec<(usize, &str)> = result
            .rejected
            .iter()
            .map(|(i, p, _)| (*i, p.as_str()))
            .collect();
        assert_eq!(refused, [(1, "p"), (4, "p")]);
        let reason = &result.rejected[0].2;
        assert!(
            reason.starts_with(&format!("event time {} is ", now + 3 * hour))
                && (reason.contains(" is 3h ") || reason.contains(" is 2h 59m 59s "))
                && reason.ends_with("ahead of the clock, more than [time] max-ahead (1h)"),
            "{reason}"
        );
    }
}
