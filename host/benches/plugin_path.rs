//! The parser + rule path in Wasm against the same parse + aggregate in
//! native Rust, in one run, at several batch sizes. Prints a table.
//!
//! `cargo bench -p apiary --bench plugin_path` (after `scripts/build-plugins`);
//! `BENCH_RECORDS` sets the number of gift records (default 1,000,000).
//! `BENCH_EARLIER_PLUGINS` names a directory with `seed-json-parser.wasm`
//! and `gift-type-totals.wasm` built against an earlier contract (an
//! earlier checkout's `target/plugins`): they run beside the shipped ones,
//! through the same host, in the interface table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiary::lookup::Lookups;
use apiary::model::wit::types::RawBatch;
use apiary::pipeline::RowBuffer;
use apiary::plugin::{Engine, LanePlugins, PluginSet, PluginState};
use apiary::source::BatchBuilder;
use livestream_example::{Generator, Topic};
use livestream_format::{GiftTypeTotals, parse_gift};

mod common;
mod prototype;
use common::{fmt, only, rate, time};

fn main() -> anyhow::Result<()> {
    let records: usize = common::env_count("BENCH_RECORDS", 1_000_000);
    let lines: Vec<String> = Generator::new(Topic::LiveGiftTotal, 1)
        .take(records)
        .collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "{records} gift records, {} bytes each on average\n",
        bytes / records
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/plugins");
    let engine = Engine::new()?;
    let parser_only = only(&root, &["seed-json-parser.wasm"])?;
    let full = only(&root, &["seed-json-parser.wasm", "gift-type-totals.wasm"])?;

    println!("| path | batch | records/s | × native |");
    println!("|---|---:|---:|---:|");
    for batch in [1, 64, 1024] {
        let native = rate(records, time(|| run_native(&lines, batch)));
        let wasm = rate(records, time(|| run_wasm(&engine, &full, &lines, batch)));
        let parse = rate(
            records,
            time(|| run_wasm(&engine, &parser_only, &lines, batch)),
        );
        println!(
            "| native parse + aggregate | {batch} | {} | 1.00 |",
            fmt(native)
        );
        println!(
            "| Wasm parser + rule | {batch} | {} | {:.2} |",
            fmt(wasm),
            wasm / native
        );
        println!(
            "| Wasm parser alone | {batch} | {} | {:.2} |",
            fmt(parse),
            parse / native
        );
    }

    // The interface's own share: the same parse and fold on the shipped
    // contract, on an earlier one's plugins if given, and on two
    // prototype interfaces; batches built beforehand, one driver.
    let bench_plugins = root.parent().unwrap().join("bench-plugins");
    let shipped = PluginSet::load_dir(&engine, &full, &Default::default())?;
    let table = prototype::gift_totals(&shipped)?;
    let contract = |set: &PluginSet| format!("apiary:plugin@{}", set.parsers[0].pre.contract());
    let shipped_name = contract(&shipped);
    let earlier = match std::env::var_os("BENCH_EARLIER_PLUGINS") {
        Some(dir) => {
            let dir = only(
                Path::new(&dir),
                &["seed-json-parser.wasm", "gift-type-totals.wasm"],
            )?;
            let set = PluginSet::load_dir(&engine, &dir, &Default::default())?;
            Some((format!("{} (earlier plugins)", contract(&set)), dir))
        }
        None => None,
    };
    println!();
    println!(
        "| interface (same logic, same driver, batches built beforehand) | batch | records/s | × native | × {shipped_name} |"
    );
    println!("|---|---:|---:|---:|---:|");
    for batch in [64, 1024] {
        let current_batches: Vec<RawBatch> = raw_batches(&lines, batch).collect();
        let spans_batches = prototype::spans_batches(&current_batches);
        let columns_batches = prototype::columns_batches(&current_batches);
        let native = rate(records, time(|| run_native(&lines, batch)));
        let current = rate(
            records,
            time(|| prototype::run_current(&engine, &full, &current_batches).unwrap()),
        );
        let earlier = earlier.as_ref().map(|(name, dir)| {
            let rate = rate(
                records,
                time(|| prototype::run_current(&engine, dir, &current_batches).unwrap()),
            );
            (name.as_str(), rate)
        });
        let spans = rate(
            records,
            time(|| prototype::run_spans(&engine, &bench_plugins, &table, &spans_batches).unwrap()),
        );
        let columns = rate(
            records,
            time(|| {
                prototype::run_columns(&engine, &bench_plugins, &table, &columns_batches).unwrap()
            }),
        );
        println!(
            "| native parse + aggregate | {batch} | {} | 1.00 | |",
            fmt(native)
        );
        let rows = [
            Some((shipped_name.as_str(), current)),
            earlier,
            Some(("prototype `spans`: text as spans, headers per batch", spans)),
            Some((
                "prototype `columns`: every field a list of numbers",
                columns,
            )),
        ];
        for (name, rate) in rows.into_iter().flatten() {
            println!(
                "| {name} | {batch} | {} | {:.2} | {:.2} |",
                fmt(rate),
                rate / native,
                rate / current
            );
        }
    }

    // The same rule in each guest language, behind the same Rust parser
    // (kits built by scripts/build-kits; a language not built is left out).
    let rust_dir = only(&root, &["seed-json-parser.wasm", "top-gifters.wasm"])?;
    let sample = &lines[..lines.len().min(200_000)];
    // The rule's own cost per record: the time over the parser's alone.
    let parser = rate(
        sample.len(),
        time(|| run_wasm(&engine, &parser_only, sample, 1024)),
    );
    let rule_micros = |rate: f64| (1.0 / rate - 1.0 / parser) * 1e6;
    println!();
    println!(
        "| top-gifters (parser in Rust), batch 1024 | records/s | × Rust | the rule alone, µs/record |"
    );
    println!("|---|---:|---:|---:|");
    let rust = rate(
        sample.len(),
        time(|| run_wasm(&engine, &rust_dir, sample, 1024)),
    );
    println!("| Rust | {} | 1.00 | {:.2} |", fmt(rust), rule_micros(rust));
    for (lang, toolchain) in [
        ("c", "C (clang 14, wasi-libc)"),
        ("js", "JavaScript (componentize-qjs 0.4.5)"),
        ("python", "Python (componentize-py 0.25.1)"),
    ] {
        let kit = root
            .parent()
            .unwrap()
            .join(format!("plugins-{lang}/top-gifters.wasm"));
        if !kit.exists() {
            continue;
        }
        let dir = rust_dir.with_extension(lang);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(
            root.join("seed-json-parser.wasm"),
            dir.join("seed-json-parser.wasm"),
        )?;
        std::fs::copy(&kit, dir.join("top-gifters.wasm"))?;
        let guest = rate(sample.len(), time(|| run_wasm(&engine, &dir, sample, 1024)));
        println!(
            "| {toolchain} | {} | {:.2} | {:.2} |",
            fmt(guest),
            guest / rust,
            rule_micros(guest)
        );
    }

    // The price of the time limit: epoch interruption checks in every loop
    // and call of the compiled plugins, against an engine without them.
    let mut untimed = apiary::config::PluginsSection::new(PathBuf::new());
    untimed.batch_timeout = Duration::ZERO;
    let untimed = Engine::with_limits(untimed)?;
    println!();
    println!("| Wasm parser + rule, batch 1024 | records/s | × without limit |");
    println!("|---|---:|---:|");
    let off = rate(records, time(|| run_wasm(&untimed, &full, &lines, 1024)));
    let on = rate(records, time(|| run_wasm(&engine, &full, &lines, 1024)));
    println!("| no time limit (epoch checks off) | {} | 1.00 |", fmt(off));
    println!(
        "| time limit 10 s (epoch checks on, the default) | {} | {:.2} |",
        fmt(on),
        on / off
    );
    Ok(())
}

/// The same work natively: parse every record, fold each batch into
/// per-type totals, merge the totals into the checkpoint buffer.
fn run_native(lines: &[String], batch: usize) -> u64 {
    let mut merged: std::collections::HashMap<i32, i64> = Default::default();
    let mut parsed = 0;
    for chunk in lines.chunks(batch) {
        let mut totals = GiftTypeTotals::new();
        for line in chunk {
            if let Ok(gift) = parse_gift(line.as_bytes()) {
                totals.add(&gift);
                parsed += 1;
            }
        }
        for (gift_type, total) in totals.iter() {
            *merged.entry(gift_type).or_default() += total;
        }
    }
    std::hint::black_box(&merged);
    parsed
}

/// `lines` in batches of `batch` records, as a file source builds them.
fn raw_batches(lines: &[String], batch: usize) -> impl Iterator<Item = RawBatch> + '_ {
    let mut builder = BatchBuilder::new("live_gift_total", batch);
    lines.chunks(batch).enumerate().map(move |(offset, chunk)| {
        for (i, line) in chunk.iter().enumerate() {
            builder.push(
                0,
                (offset * batch + i) as i64,
                None,
                None,
                line.as_bytes(),
                &[],
            );
        }
        builder.take()
    })
}

/// Batches built as a source builds them, through the lane's plugins, rows
/// merged into the checkpoint buffer.
fn run_wasm(engine: &Engine, dir: &Path, lines: &[String], batch: usize) -> u64 {
    let lookups = Arc::new(Lookups::default());
    let plugins = PluginSet::load_dir(engine, dir, &lookups).unwrap();
    let mut lane = LanePlugins::new(
        engine,
        &plugins,
        "live_gift_total",
        "bench",
        &lookups,
        |_| Ok(PluginState::default()),
    )
    .unwrap();
    let mut buffer = RowBuffer::default();
    let mut events = 0;
    for raw in raw_batches(lines, batch) {
        let result = lane.process(&raw).unwrap();
        events += result.events as u64;
        for (table, cells) in result.rows {
            buffer.merge(&table, cells);
        }
    }
    std::hint::black_box(buffer.len());
    events
}
