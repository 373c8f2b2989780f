//! Event time in Wasm against native Rust, in one run. Prints tables:
//! gifts through `gift-windows` (6 h windows sliding every 5 min: 72
//! windows per gift) against the same hopping computation in native Rust;
//! timers fired per second (`online-viewers`, two timers per visit); and
//! the state the distinct-count rules keep per million visits.
//!
//! `cargo bench -p apiary --bench window_path` (after `scripts/build-plugins`);
//! `BENCH_RECORDS` sets the number of records (default 1,000,000).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use apiary::lookup::Lookups;
use apiary::pipeline::RowBuffer;
use apiary::plugin::{Engine, LanePlugins, PluginSet, PluginState};
use apiary::source::BatchBuilder;
use livestream_example::{Generator, Topic};
use livestream_format::parse_gift;

const SIZE: i64 = 6 * 3_600_000;
const SLIDE: i64 = 5 * 60_000;
const BATCH: usize = 1024;

mod common;
use common::{fmt, only, rate, time};

fn main() -> anyhow::Result<()> {
    let records: usize = common::env_count("BENCH_RECORDS", 1_000_000);
    let gifts: Vec<String> = Generator::new(Topic::LiveGiftTotal, 1)
        .take(records)
        .collect();
    let visits: Vec<String> = Generator::new(Topic::LiveStreamingLog, 2)
        .take(records)
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/plugins");
    let engine = Engine::new()?;
    println!("{records} records, batch {BATCH}, best of three runs\n");

    let windows = only(&root, &["seed-json-parser.wasm", "gift-windows.wasm"])?;
    let parser = only(&root, &["seed-json-parser.wasm"])?;
    let mut native_windows = 0;
    let native = time(|| {
        native_windows = hopping_native(&gifts);
        records as u64
    });
    let mut wasm_windows = 0;
    let wasm = time(|| {
        let run = run_wasm(&engine, &windows, "live_gift_total", &gifts);
        wasm_windows = run.rows;
        records as u64
    });
    let parse = time(|| {
        run_wasm(&engine, &parser, "live_gift_total", &gifts);
        records as u64
    });
    println!("| gifts, 6 h windows every 5 min | records/s | × native | windows written |");
    println!("|---|---:|---:|---:|");
    println!(
        "| native Rust: parse + panes + window sums | {} | 1.00 | {native_windows} |",
        fmt(rate(records, native))
    );
    println!(
        "| Wasm: seed-json-parser + gift-windows | {} | {:.2} | {wasm_windows} |",
        fmt(rate(records, wasm)),
        native.as_secs_f64() / wasm.as_secs_f64()
    );
    println!(
        "| Wasm: seed-json-parser alone | {} | {:.2} | |",
        fmt(rate(records, parse)),
        native.as_secs_f64() / parse.as_secs_f64()
    );

    let viewers = only(&root, &["seed-json-parser.wasm", "online-viewers.wasm"])?;
    let visits_parsed = only(&root, &["seed-json-parser.wasm"])?;
    let mut fired = 0;
    let with_timers = time(|| {
        fired = run_wasm(&engine, &viewers, "live_streaming_log", &visits).timers;
        records as u64
    });
    let without = time(|| {
        run_wasm(&engine, &visits_parsed, "live_streaming_log", &visits);
        records as u64
    });
    let timer_secs = (with_timers.as_secs_f64() - without.as_secs_f64()).max(1e-9);
    println!();
    println!(
        "| visits through online-viewers | records/s | timers fired | timers/s (rule's own time) |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| seed-json-parser + online-viewers | {} | {fired} | {} |",
        fmt(rate(records, with_timers)),
        fmt(fired as f64 / timer_secs)
    );

    println!();
    println!("| rule | state keys | state bytes | bytes per million visits |");
    println!("|---|---:|---:|---:|");
    for rule in ["grade-members", "province-grade-members", "online-viewers"] {
        let dir = only(&root, &["seed-json-parser.wasm", &format!("{rule}.wasm")])?;
        let run = run_wasm(&engine, &dir, "live_streaming_log", &visits);
        let (keys, bytes) = run
            .state
            .iter()
            .filter(|(name, ..)| name == rule)
            .map(|(_, keys, bytes, _)| (*keys, *bytes))
            .next()
            .unwrap_or_default();
        println!(
            "| {rule} | {keys} | {bytes} | {:.0} |",
            bytes as f64 * 1e6 / records as f64
        );
    }
    Ok(())
}

/// What a Wasm run produced.
#[derive(Default)]
struct Run {
    rows: u64,
    timers: u64,
    state: Vec<(String, usize, usize, usize)>,
}

/// Batches as a source builds them, through the lane's plugins, rows merged
/// into the checkpoint buffer.
fn run_wasm(engine: &Engine, dir: &Path, topic: &str, lines: &[String]) -> Run {
    let lookups = Arc::new(Lookups::default());
    let plugins = PluginSet::load_dir(engine, dir, &lookups).unwrap();
    let mut lane = LanePlugins::new(engine, &plugins, topic, "bench", &lookups, |_| {
        Ok(PluginState::default())
    })
    .unwrap();
    let mut buffer = RowBuffer::default();
    let mut builder = BatchBuilder::new(topic, BATCH);
    let mut run = Run::default();
    for (offset, chunk) in lines.chunks(BATCH).enumerate() {
        for (i, line) in chunk.iter().enumerate() {
            let at = (offset * BATCH + i) as i64;
            builder.push(0, at, None, None, line.as_bytes(), &[]);
        }
        let result = lane.process(&builder.take()).unwrap();
        run.timers += result.timers as u64;
        for (table, cells) in result.rows {
            run.rows += (cells.len() / table.columns.len()) as u64;
            buffer.merge(&table, cells);
        }
    }
    std::hint::black_box(buffer.len());
    run.state = lane.state_sizes();
    run
}

/// The hopping windows natively, with the SDK's algorithm: a batch is
/// folded per 5-min pane; a pane seen for the first time registers its 72
/// windows; once a batch moves the watermark past a window's end, the
/// window's sum over its panes is written and the panes of its first slide
/// (in no later window) are dropped. Returns the windows written.
fn hopping_native(lines: &[String]) -> u64 {
    let mut panes: std::collections::HashMap<i64, i64> = Default::default();
    // Window ends with a timer, not yet written.
    let mut pending: std::collections::BTreeSet<i64> = Default::default();
    let mut written: BTreeMap<i64, i64> = BTreeMap::new();
    let mut watermark = i64::MIN;
    let mut count = 0;
    for chunk in lines.chunks(BATCH) {
        let mut folded: BTreeMap<i64, i64> = BTreeMap::new();
        let mut latest = i64::MIN;
        for line in chunk {
            let Ok(gift) = parse_gift(line.as_bytes()) else {
                continue;
            };
            let Some(time) = gift.create_time else {
                continue;
            };
            *folded.entry(time.div_euclid(SLIDE) * SLIDE).or_default() += gift.amount;
            latest = latest.max(time);
        }
        for (pane, sum) in folded {
            match panes.get_mut(&pane) {
                Some(stored) => *stored += sum,
                None => {
                    panes.insert(pane, sum);
                    let mut end = pane + SIZE;
                    while end > pane {
                        if end - 1 > watermark {
                            pending.insert(end);
                        }
                        end -= SLIDE;
                    }
                }
            }
        }
        watermark = watermark.max(latest - 1);
        while let Some(&end) = pending.first() {
            if end - 1 > watermark {
                break;
            }
            pending.pop_first();
            let mut sum = 0;
            let mut pane = end - SIZE;
            while pane < end {
                sum += panes.get(&pane).copied().unwrap_or(0);
                pane += SLIDE;
            }
            *written.entry(end).or_default() += sum;
            count += 1;
            panes.remove(&(end - SIZE));
        }
    }
    std::hint::black_box(&written);
    count
}
