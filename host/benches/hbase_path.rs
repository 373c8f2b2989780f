//! HBase through the REST gateway, against the in-repo protocol test
//! server: dimension lookups per second with the partial cache cold (off)
//! and warm, beside the in-memory CSV table as the baseline; and puts per
//! second at batch sizes 1, 100 and 1000. Prints a table.
//!
//! `BENCH_GIFTS` sets the number of gifts (default 1,000,000) looked up in
//! batches of 1024, over 1,000 rooms.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use apiary::config::{HBaseSection, LookupTable};
use apiary::hbase::{Cell, CellSet, Client, Row};
use apiary::lookup::Lookups;
use hbase_rest_server::TestServer;
use livestream_example::SplitMix64;

const ROOMS: i64 = 1_000;
const BATCH: usize = 1024;

fn main() -> anyhow::Result<()> {
    let gifts: usize = common::env_count("BENCH_GIFTS", 1_000_000);
    let server = TestServer::start();
    server.create_table("dim_hbase", &["cf"]);
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("rooms.csv");
    let mut text = String::from("room_id,module_id\n");
    for room in 0..ROOMS {
        let module = 1001 + room % 20;
        server.put(
            "dim_hbase",
            room.to_string().as_bytes(),
            "cf:module_id",
            module.to_string().as_bytes(),
        );
        text += &format!("{room},{module}\n");
    }
    std::fs::write(&csv, text)?;

    // The rooms of each batch of gifts, as the rule asks for them: sorted,
    // each once.
    let mut rng = SplitMix64::new(5);
    let batches: Vec<Vec<String>> = (0..gifts.div_ceil(BATCH))
        .map(|b| {
            let n = BATCH.min(gifts - b * BATCH);
            let mut rooms: Vec<i64> = (0..n).map(|_| rng.below(ROOMS as u64) as i64).collect();
            rooms.sort_unstable();
            rooms.dedup();
            rooms.iter().map(i64::to_string).collect()
        })
        .collect();
    let keys: usize = batches.iter().map(Vec::len).sum();
    println!(
        "{gifts} gifts over {ROOMS} rooms in batches of {BATCH}: {keys} distinct room lookups"
    );
    println!();
    println!("| lookup source | gifts/s | keys/s | multi-gets | hit rate |");
    println!("|---|---:|---:|---:|---:|");

    let gateway: HBaseSection = toml::from_str(&format!("url = {:?}", server.url()))?;
    let hbase_table = |cache_rows: u64| -> anyhow::Result<LookupTable> {
        Ok(toml::from_str(&format!(
            "hbase-table = \"dim_hbase\"\n[cache]\nmax-rows = {cache_rows}\n"
        ))?)
    };
    let sources = [
        (
            "CSV file, in memory (baseline)",
            LookupTable::csv(csv.clone()),
            None,
        ),
        ("HBase, cache off (cold)", hbase_table(0)?, Some(&gateway)),
        (
            "HBase, cache 10,000 rows (warm)",
            hbase_table(10_000)?,
            Some(&gateway),
        ),
    ];
    let columns = ["module_id".to_owned()];
    for (name, table, gateway) in sources {
        let lookups = Lookups::load(&BTreeMap::from([("dim_hbase".into(), table)]), gateway)?;
        let before = server.requests().multigets;
        let started = Instant::now();
        let mut found = 0usize;
        for rooms in &batches {
            let answers = lookups
                .get_many("dim_hbase", rooms, &columns)
                .map_err(anyhow::Error::msg)?;
            found += answers.iter().filter(|a| a.is_some()).count();
        }
        let took = started.elapsed().as_secs_f64();
        anyhow::ensure!(found == keys, "{name}: {found} of {keys} rooms found");
        let hit_rate = lookups
            .cache_stats()
            .get("dim_hbase")
            .map_or("–".to_owned(), |s| {
                format!("{:.1} %", s.hit_rate() * 100.0)
            });
        println!(
            "| {name} | {} | {} | {} | {hit_rate} |",
            rate(gifts as f64 / took),
            rate(keys as f64 / took),
            server.requests().multigets - before,
        );
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let client = Client::new(
        &server.url(),
        Duration::from_secs(10),
        3,
        Duration::from_millis(50),
    )?;
    runtime.block_on(client.ensure_table("bench_puts", &["cf"]))?;
    println!();
    println!("| put batch (rows per request) | rows | rows/s | requests/s |");
    println!("|---:|---:|---:|---:|");
    for batch in [1usize, 100, 1000] {
        let rows = if batch == 1 { 20_000 } else { 200_000 };
        let sets: Vec<CellSet> = (0..rows)
            .collect::<Vec<usize>>()
            .chunks(batch)
            .map(|chunk| CellSet {
                rows: chunk
                    .iter()
                    .map(|i| Row {
                        key: (*i as i64).to_be_bytes().to_vec(),
                        cells: vec![Cell {
                            column: b"cf:module_gift_total_amount".to_vec(),
                            timestamp: None,
                            value: (*i as i64 * 7).to_be_bytes().to_vec(),
                        }],
                    })
                    .collect(),
            })
            .collect();
        let started = Instant::now();
        runtime.block_on(async {
            for set in &sets {
                client.put("bench_puts", set).await?;
            }
            anyhow::Ok(())
        })?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "| {batch} | {rows} | {} | {} |",
            rate(rows as f64 / took),
            rate(sets.len() as f64 / took)
        );
    }
    Ok(())
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else {
        format!("{:.0}k", per_second / 1e3)
    }
}
