//! `apiary replay`: runs a topic's parser and every rule over lines of
//! input, offline, and prints each emitted row as one JSON line. Nothing is
//! merged or stored, and plugins see a frozen clock, so the output is the
//! same on every run: plugin authors test with it. The input is bounded:
//! at its end the watermark jumps to the end of time, as in Flink's
//! bounded mode, so every window closes and every timer fires.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::lookup::Lookups;
use crate::model::TableSchema;
use crate::model::wit::types::{RawBatch, Value};
use crate::plugin::{Engine, Held, LanePlugins, PluginState};
use crate::source::BatchBuilder;
use crate::source::file::read_line_within;

/// Counts of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Input lines read.
    pub records: u64,
    /// Rows printed.
    pub rows: u64,
    /// Records refused (reported on the error stream).
    pub rejected: u64,
}

/// Replays `input` (one raw record per line) as records of `topic` through
/// the plugins in `plugins_dir`, with `lookups` as dimension tables. Rows
/// go to `out`, refused records to `err` as `line N: plugin: reason`. A
/// line of more than `max_record_bytes` is refused for the parser, as
/// `apiary run` refuses it, and only that many of its bytes are held.
#[allow(clippy::too_many_arguments)]
pub fn replay(
    plugins_dir: &Path,
    lookups: Lookups,
    topic: &str,
    batch_size: usize,
    max_record_bytes: usize,
    mut input: impl BufRead,
    mut out: impl Write,
    mut err: impl Write,
) -> anyhow::Result<ReplaySummary> {
    let engine = Engine::new()?;
    let lookups = Arc::new(lookups);
    let plugins = crate::assembly::load_plugins(&engine, plugins_dir, &lookups)?;
    let mut lane = LanePlugins::new(&engine, &plugins, topic, "replay", &lookups, |_| {
        Ok(PluginState::default())
    })?;
    let mut summary = ReplaySummary::default();
    let mut batch = BatchBuilder::new(topic, batch_size);
    let flush = |batch: &mut BatchBuilder,
                 summary: &mut ReplaySummary,
                 lane: &mut LanePlugins,
                 out: &mut dyn Write,
                 err: &mut dyn Write|
     -> anyhow::Result<()> {
        let raw = batch.take();
        // Records are isolated as `apiary run` isolates them: a record a
        // plugin fails on is refused for that plugin alone.
        match lane.process_isolating(&engine, &raw)? {
            Ok(result) => {
                print_rows(out, &result.rows, summary)?;
                for (index, plugin, reason) in result.rejected {
                    writeln!(err, "line {}: {plugin}: {reason}", line_of(&raw, index))?;
                    summary.rejected += 1;
                }
            }
            Err(held) => {
                let first = raw.records.first().map_or(0, |r| r.offset + 1);
                let last = raw.records.last().map_or(0, |r| r.offset + 1);
                let (plugin, why) = match held {
                    Held::Quarantined(q) => (q.plugin.clone(), q.to_string()),
                    Held::Interrupted => ("host".to_owned(), "interrupted".to_owned()),
                };
                writeln!(err, "lines {first}-{last}: {plugin}: {why}")?;
                summary.rejected += raw.records.len() as u64;
                lane.restart(&engine)?;
            }
        }
        Ok(())
    };
    let mut line = Vec::new();
    for n in 0_i64.. {
        line.clear();
        let read = read_line_within(&mut input, &mut line, max_record_bytes.saturating_add(1))
            .context("cannot read input")?;
        if read == 0 {
            break;
        }
        summary.records += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > max_record_bytes {
            writeln!(
                err,
                "line {}: {}: a record of more than {max_record_bytes} bytes \
                 (--max-record-bytes)",
                n + 1,
                lane.parser_name()
            )?;
            summary.rejected += 1;
            continue;
        }
        batch.push(0, n, None, None, text, &[]);
        if batch.len() >= batch_size {
            flush(&mut batch, &mut summary, &mut lane, &mut out, &mut err)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut summary, &mut lane, &mut out, &mut err)?;
    }
    match lane.advance_watermark(&engine, i64::MAX) {
        Ok(result) => print_rows(&mut out, &result.rows, &mut summary)?,
        Err(e) => writeln!(err, "end of input: {e:#}")?,
    }
    out.flush()?;
    Ok(summary)
}

/// Prints each row as `{"output": …, "row": {…}}`.
fn print_rows(
    out: &mut dyn Write,
    rows: &[(Arc<TableSchema>, Vec<Value>)],
    summary: &mut ReplaySummary,
) -> anyhow::Result<()> {
    for (table, cells) in rows {
        for row in cells.chunks(table.columns.len()) {
            let line = json!({"output": table.output, "row": table.row_json(row)});
            writeln!(out, "{line}")?;
            summary.rows += 1;
        }
    }
    Ok(())
}

/// 1-based input line of the record at `index`.
fn line_of(batch: &RawBatch, index: usize) -> i64 {
    batch.records[index].offset + 1
}
