//! The plugin interface's own cost: the same parser and rule logic, driven
//! by the same few lines of host code, through the shipped contract (as a
//! lane calls it: `apiary:plugin@0.3.0`, the raw batch converted, the
//! parser's events handed to the rule as they came) and through two
//! prototype interfaces (`wit/` beside this file), called directly:
//!
//! - `spans`: event text as spans of one string per batch, headers once per
//!   batch, records and events still lists of records (what 0.3.0 became);
//! - `columns`: every field one list of numbers per batch, as in Arrow.
//!
//! Each driver does what a lane does around the two calls and nothing else:
//! a fresh time limit per call, the parser's record indexes checked, the
//! latest event time kept, the rule's rows merged into a checkpoint buffer.
//! The prototypes' plugins (`plugins/`) run the same `livestream-format`
//! parse and fold as the shipped ones.

use std::path::Path;
use std::sync::Arc;

use apiary::lookup::Lookups;
use apiary::model::TableSchema;
use apiary::model::wit::types::{self as current, RawBatch};
use apiary::model::wit::v3::types::EventBatch;
use apiary::pipeline::RowBuffer;
use apiary::plugin::{Engine, ParserInstance, PluginCtx, PluginSet, PluginState, RuleInstance};
use wasmtime::Store;
use wasmtime::component::Component;

mod spans {
    pub mod parser {
        wasmtime::component::bindgen!({ world: "parser-plugin", path: "benches/prototype/wit/spans" });
    }
    pub mod rule {
        wasmtime::component::bindgen!({
            world: "rule-plugin",
            path: "benches/prototype/wit/spans",
            with: { "apiary:spans/types": super::parser::apiary::spans::types },
        });
    }
    pub use parser::ParserPlugin;
    pub use parser::apiary::spans::types;
    pub use rule::RulePlugin;
}

mod columns {
    pub mod parser {
        wasmtime::component::bindgen!({ world: "parser-plugin", path: "benches/prototype/wit/columns" });
    }
    pub mod rule {
        wasmtime::component::bindgen!({
            world: "rule-plugin",
            path: "benches/prototype/wit/columns",
            with: { "apiary:columns/types": super::parser::apiary::columns::types },
        });
    }
    pub use parser::ParserPlugin;
    pub use parser::apiary::columns::types;
    pub use rule::RulePlugin;
}

pub use columns::types::RawBatch as ColumnsBatch;
pub use spans::types::RawBatch as SpansBatch;

/// Epoch ticks per call: the default ten-second limit.
const DEADLINE_TICKS: u64 = 1000;

/// `seed-json-parser` and `gift-type-totals` (the shipped ones, or those
/// of an earlier contract) from `dir`, over `batches`. Returns the events parsed.
pub fn run_current(engine: &Engine, dir: &Path, batches: &[RawBatch]) -> anyhow::Result<u64> {
    let lookups = Arc::new(Lookups::default());
    let plugins = PluginSet::load_dir(engine, dir, &lookups)?;
    let lane: Arc<str> = "bench".into();
    let state = PluginState::default;
    let mut parser = ParserInstance::new(
        engine,
        plugins.parsers[0].clone(),
        lane.clone(),
        lookups.clone(),
        state(),
    )?;
    let mut rule = RuleInstance::new(engine, plugins.rules[0].clone(), lane, lookups, state())?;
    let mut sink = Sink::new(gift_totals(&plugins)?);
    for batch in batches {
        let parsed = parser.parse(batch).map_err(anyhow::Error::msg)?;
        check_indexes(
            parsed.events.iter().map(|e| e.record_index),
            batch.records.len(),
        )?;
        let latest = parsed.events.iter().filter_map(|e| e.time).max();
        sink.events += parsed.events.len() as u64;
        let output = rule
            .process(&EventBatch {
                topic: batch.topic.clone(),
                platform: parsed.platform,
                text: parsed.text,
                events: parsed.events,
                watermark: sink.watermark,
            })
            .map_err(anyhow::Error::msg)?;
        for rows in output.rows {
            sink.merge(rows.cells);
        }
        sink.watermark = sink.watermark.max(latest);
    }
    Ok(sink.finish())
}

/// The same on the `spans` prototype, its plugins from `dir`
/// (`target/bench-plugins`), the rows merged into `table` (the shipped
/// rule's, see [`gift_totals`]).
pub fn run_spans(
    engine: &Engine,
    dir: &Path,
    table: &Arc<TableSchema>,
    batches: &[SpansBatch],
) -> anyhow::Result<u64> {
    let mut pair = Pair::new(
        engine,
        (dir, "spans"),
        table,
        |s, c, l| spans::ParserPlugin::instantiate(s, c, l),
        |s, c, l| spans::RulePlugin::instantiate(s, c, l),
    )?;
    for batch in batches {
        let (store, parser) = pair.parser();
        let parsed = parser.apiary_spans_parser().call_parse(store, batch)?;
        check_indexes(
            parsed.events.iter().map(|e| e.record_index),
            batch.records.len(),
        )?;
        let latest = parsed.events.iter().filter_map(|e| e.time).max();
        pair.sink.events += parsed.events.len() as u64;
        let input = spans::types::EventBatch {
            topic: batch.topic.clone(),
            platform: parsed.platform,
            text: parsed.text,
            events: parsed.events,
            watermark: pair.sink.watermark,
        };
        let (store, rule) = pair.rule();
        let output = rule.apiary_spans_rule().call_process(store, &input)?;
        for rows in output.rows {
            pair.sink
                .merge(rows.cells.into_iter().map(spans_cell).collect());
        }
        pair.sink.watermark = pair.sink.watermark.max(latest);
    }
    Ok(pair.sink.finish())
}

/// The same on the `columns` prototype.
pub fn run_columns(
    engine: &Engine,
    dir: &Path,
    table: &Arc<TableSchema>,
    batches: &[ColumnsBatch],
) -> anyhow::Result<u64> {
    let mut pair = Pair::new(
        engine,
        (dir, "columns"),
        table,
        |s, c, l| columns::ParserPlugin::instantiate(s, c, l),
        |s, c, l| columns::RulePlugin::instantiate(s, c, l),
    )?;
    let latest = |times: &[i64], has: &[u8]| {
        let present = times.iter().zip(has).filter(|(_, h)| **h == 1);
        present.map(|(t, _)| *t).max()
    };
    for batch in batches {
        let (store, parser) = pair.parser();
        let parsed = parser.apiary_columns_parser().call_parse(store, batch)?;
        let (gifts, visits) = (&parsed.gifts, &parsed.visits);
        let indexes = gifts.record_index.iter().chain(&visits.record_index);
        check_indexes(indexes.copied(), batch.offsets.len())?;
        let latest =
            latest(&gifts.time, &gifts.has_time).max(latest(&visits.time, &visits.has_time));
        pair.sink.events += (gifts.record_index.len() + visits.record_index.len()) as u64;
        let input = columns::types::EventBatch {
            topic: batch.topic.clone(),
            platform: parsed.platform,
            text: parsed.text,
            gifts: parsed.gifts,
            visits: parsed.visits,
            watermark: pair.sink.watermark,
        };
        let (store, rule) = pair.rule();
        let output = rule.apiary_columns_rule().call_process(store, &input)?;
        for rows in output.rows {
            pair.sink
                .merge(rows.cells.into_iter().map(columns_cell).collect());
        }
        pair.sink.watermark = pair.sink.watermark.max(latest);
    }
    Ok(pair.sink.finish())
}

/// `batches` on the `spans` prototype: the same buffer and spans, the
/// headers (there are none) gathered per batch.
pub fn spans_batches(batches: &[RawBatch]) -> Vec<SpansBatch> {
    use spans::types as s;
    let span = |v: current::Span| s::Span {
        start: v.start,
        len: v.len,
    };
    batches
        .iter()
        .map(|b| s::RawBatch {
            topic: b.topic.clone(),
            data: b.data.clone(),
            records: b
                .records
                .iter()
                .map(|r| s::RawRecord {
                    partition: r.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(span),
                    value: span(r.value),
                })
                .collect(),
            headers: (0u32..)
                .zip(&b.records)
                .flat_map(|(record, r)| {
                    r.headers.iter().map(move |h| s::Header {
                        record,
                        name: span(h.name),
                        value: span(h.value),
                    })
                })
                .collect(),
        })
        .collect()
}

/// `batches` on the `columns` prototype.
pub fn columns_batches(batches: &[RawBatch]) -> Vec<ColumnsBatch> {
    use columns::types as c;
    let span = |v: current::Span| c::Span {
        start: v.start,
        len: v.len,
    };
    batches
        .iter()
        .map(|b| {
            let records = &b.records;
            let flag = |present: bool| u8::from(present);
            c::RawBatch {
                topic: b.topic.clone(),
                data: b.data.clone(),
                partitions: records.iter().map(|r| r.partition).collect(),
                offsets: records.iter().map(|r| r.offset).collect(),
                timestamps: records.iter().map(|r| r.timestamp.unwrap_or(0)).collect(),
                has_timestamp: records
                    .iter()
                    .map(|r| flag(r.timestamp.is_some()))
                    .collect(),
                keys: records
                    .iter()
                    .flat_map(|r| r.key.map_or([0, 0], |k| [k.start, k.len]))
                    .collect(),
                has_key: records.iter().map(|r| flag(r.key.is_some())).collect(),
                values: records
                    .iter()
                    .flat_map(|r| [r.value.start, r.value.len])
                    .collect(),
                headers: (0u32..)
                    .zip(records)
                    .flat_map(|(record, r)| {
                        r.headers.iter().map(move |h| c::Header {
                            record,
                            name: span(h.name),
                            value: span(h.value),
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What makes an instance of a world: its generated `instantiate`.
type Instantiate<T> = fn(
    &mut Store<PluginCtx>,
    &Component,
    &wasmtime::component::Linker<PluginCtx>,
) -> wasmtime::Result<T>;

/// A prototype's parser and rule, each in a store of its own, and where
/// their rows go.
struct Pair<P, R> {
    parser: (Store<PluginCtx>, P),
    rule: (Store<PluginCtx>, R),
    sink: Sink,
}

impl<P, R> Pair<P, R> {
    /// `<prefix>-parser.wasm` and `<prefix>-rule.wasm` of `dir`; the rows
    /// merge into `table`.
    fn new(
        engine: &Engine,
        (dir, prefix): (&Path, &str),
        table: &Arc<TableSchema>,
        parser: Instantiate<P>,
        rule: Instantiate<R>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            parser: instantiate(engine, &dir.join(format!("{prefix}-parser.wasm")), parser)?,
            rule: instantiate(engine, &dir.join(format!("{prefix}-rule.wasm")), rule)?,
            sink: Sink::new(table.clone()),
        })
    }

    /// The parser, its time limit renewed for a call.
    fn parser(&mut self) -> (&mut Store<PluginCtx>, &P) {
        self.parser.0.set_epoch_deadline(DEADLINE_TICKS);
        (&mut self.parser.0, &self.parser.1)
    }

    /// The rule, its time limit renewed for a call.
    fn rule(&mut self) -> (&mut Store<PluginCtx>, &R) {
        self.rule.0.set_epoch_deadline(DEADLINE_TICKS);
        (&mut self.rule.0, &self.rule.1)
    }
}

/// A store for the plugin at `path` and its instance.
fn instantiate<T>(
    engine: &Engine,
    path: &Path,
    instantiate: Instantiate<T>,
) -> anyhow::Result<(Store<PluginCtx>, T)> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/build-plugins)", path.display()))?;
    let component = Component::new(engine.linker().engine(), bytes)?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    let ctx = PluginCtx::new(
        name.as_ref().into(),
        "bench".into(),
        Default::default(),
        PluginState::default(),
    );
    let mut store = engine.store(ctx);
    let instance = instantiate(&mut store, &component, engine.linker())?;
    Ok((store, instance))
}

/// The rows of a run, folded as a lane folds them, its events counted and
/// its watermark kept.
struct Sink {
    table: Arc<TableSchema>,
    buffer: RowBuffer,
    events: u64,
    watermark: Option<i64>,
}

impl Sink {
    fn new(table: Arc<TableSchema>) -> Self {
        Self {
            table,
            buffer: RowBuffer::default(),
            events: 0,
            watermark: None,
        }
    }

    fn merge(&mut self, cells: Vec<current::Value>) {
        self.buffer.merge(&self.table, cells);
    }

    /// The events parsed.
    fn finish(self) -> u64 {
        std::hint::black_box(self.buffer.len());
        self.events
    }
}

/// The table `gift-type-totals` among `plugins` writes.
pub fn gift_totals(plugins: &PluginSet) -> anyhow::Result<Arc<TableSchema>> {
    plugins
        .tables()
        .find(|t| t.table == "gift_type_totals")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no gift-type-totals among the plugins"))
}

fn check_indexes(indexes: impl Iterator<Item = u32>, records: usize) -> anyhow::Result<()> {
    for index in indexes {
        anyhow::ensure!(
            (index as usize) < records,
            "event of record {index} of {records}"
        );
    }
    Ok(())
}

/// Cells of the prototypes as the host's own: the same WIT type, generated
/// once per package.
macro_rules! cell_from {
    ($name:ident, $types:path) => {
        fn $name(value: $types) -> current::Value {
            type V = $types;
            match value {
                V::Null => current::Value::Null,
                V::Int(v) => current::Value::Int(v),
                V::Float(v) => current::Value::Float(v),
                V::Text(v) => current::Value::Text(v),
                V::Bytes(v) => current::Value::Bytes(v),
                V::Timestamp(v) => current::Value::Timestamp(v),
                V::Boolean(v) => current::Value::Boolean(v),
            }
        }
    };
}
cell_from!(spans_cell, spans::types::Value);
cell_from!(columns_cell, columns::types::Value);
