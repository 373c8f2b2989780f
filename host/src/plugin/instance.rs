//! Plugin instances of one lane, and the batch step they run: the parser
//! turns a raw batch into events, each rule turns its events into rows.

use std::sync::Arc;

use anyhow::bail;
use wasmtime::Store;

use super::bindings::types::{Event, EventBatch, RawBatch, Value};
use super::bindings::{ParserPlugin, RulePlugin};
use super::ctx::{PluginCtx, PluginState, StateChange};
use super::engine::Engine;
use super::registry::{LoadedParser, LoadedRule, PluginSet};
use crate::lookup::Lookups;
use crate::sink::schema::TableSchema;

/// A parser instantiated for one lane.
pub struct ParserInstance {
    /// The plugin it runs.
    pub loaded: Arc<LoadedParser>,
    store: Store<PluginCtx>,
    bindings: ParserPlugin,
}

/// A rule instantiated for one lane.
pub struct RuleInstance {
    /// The plugin it runs.
    pub loaded: Arc<LoadedRule>,
    store: Store<PluginCtx>,
    bindings: RulePlugin,
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
        let bindings = loaded.pre.instantiate(&mut store).map_err(|e| {
            anyhow::anyhow!("cannot instantiate parser `{}`: {e:#}", loaded.info.name)
        })?;
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
        let bindings = loaded.pre.instantiate(&mut store).map_err(|e| {
            anyhow::anyhow!("cannot instantiate rule `{}`: {e:#}", loaded.info.name)
        })?;
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

/// The parser of a lane's topic and every rule, instantiated for the lane.
pub struct LanePlugins {
    /// The lane's parser.
    pub parser: ParserInstance,
    /// All rules.
    pub rules: Vec<RuleInstance>,
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
        Ok(Self { parser, rules })
    }

    /// Runs one raw batch through the parser and the rules. On failure
    /// (a trap, or a broken contract) the batch produced nothing.
    pub fn process(&mut self, batch: &RawBatch) -> Result<BatchResult, BatchFailure> {
        let mut result = BatchResult::default();
        let parser = &mut self.parser;
        let name = &parser.loaded.info.name;
        let fail = |reason: String| BatchFailure {
            plugin: name.clone(),
            reason,
        };
        let parsed = parser
            .bindings
            .apiary_plugin_parser()
            .call_parse(&mut parser.store, batch)
            .map_err(|e| fail(format!("parser `{name}` trapped: {e:#}")))?;
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
        result.events = parsed.events.len();
        let events = EventBatch {
            topic: batch.topic.clone(),
            platform: parsed.platform,
            events: parsed.events,
        };
        for rule in &mut self.rules {
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
                    events: events.events.iter().filter(consumed).cloned().collect(),
                };
                &filtered
            };
            let name = &rule.loaded.info.name;
            let fail = |reason: String| BatchFailure {
                plugin: name.clone(),
                reason,
            };
            let output = rule
                .bindings
                .apiary_plugin_rule()
                .call_process(&mut rule.store, input)
                .map_err(|e| fail(format!("rule `{name}` trapped: {e:#}")))?;
            for rows in output.rows {
                let table = rule
                    .loaded
                    .tables
                    .iter()
                    .find(|t| t.output == rows.output)
                    .ok_or_else(|| {
                        fail(format!(
                            "rule `{name}` wrote to undeclared output `{}`",
                            rows.output
                        ))
                    })?;
                check_cells(table, &rows.cells).map_err(|e| fail(format!("rule `{name}`: {e}")))?;
                result.rows.push((table.clone(), rows.cells));
            }
            for rejection in output.rejected {
                let event = input.events.get(rejection.index as usize).ok_or_else(|| {
                    fail(format!(
                        "rule `{name}` rejected event {} of {}",
                        rejection.index,
                        input.events.len()
                    ))
                })?;
                result
                    .rejected
                    .push((event.record_index as usize, name.clone(), rejection.reason));
            }
        }
        Ok(result)
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

    /// Takes each plugin's state changes since the last checkpoint.
    pub fn take_state_changes(&mut self) -> Vec<(String, Vec<StateChange>)> {
        let parser = &mut self.parser;
        std::iter::once((&parser.loaded.info.name, parser.store.data_mut()))
            .chain(
                self.rules
                    .iter_mut()
                    .map(|r| (&r.loaded.info.name, r.store.data_mut())),
            )
            .map(|(name, ctx)| (name.clone(), ctx.state.take_changes()))
            .filter(|(_, changes)| !changes.is_empty())
            .collect()
    }
}

fn kind_of(body: &super::bindings::types::EventBody) -> super::bindings::types::EventKind {
    use super::bindings::types::{EventBody as B, EventKind as K};
    match body {
        B::Visit(_) => K::Visit,
        B::Gift(_) => K::Gift,
        B::Chat(_) => K::Chat,
        B::RoomStatus(_) => K::RoomStatus,
        B::StreamerStats(_) => K::StreamerStats,
    }
}

/// Checks that `cells` are whole rows whose values fit their columns.
fn check_cells(table: &TableSchema, cells: &[Value]) -> anyhow::Result<()> {
    use super::bindings::types::ColumnType as T;
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
    }
    Ok(())
}
