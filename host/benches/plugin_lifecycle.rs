//! Plugin lifecycle costs, in one run: compiling each shipped plugin with
//! an empty cache and again from the cache; and how long each lane pauses
//! when a rule is swapped under load (four file lanes fed continuously,
//! `gift-type-totals` replaced `BENCH_SWAPS` times, default 20). Prints
//! tables. Needs `scripts/build-plugins` (which builds the plugins in other
//! languages too).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apiary::config::PipelineConfig;
use apiary::pipeline::{self, RunOptions};
use apiary::plugin::Engine;
use livestream_example::{Generator, Topic};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let plugins = root.join("target/plugins");
    let work = tempfile::tempdir()?;
    compile_times(&plugins, work.path())?;
    swap_pauses(&root, work.path()).await
}

fn compile_times(plugins: &Path, work: &Path) -> anyhow::Result<()> {
    // A cache of its own, empty at first.
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("XDG_CACHE_HOME", work.join("cache")) };
    // The shipped plugins, then the kits in other languages.
    let kits = ["c", "js", "python"].map(|lang| plugins.with_file_name(format!("plugins-{lang}")));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in std::iter::once(plugins).chain(kits.iter().map(PathBuf::as_path)) {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        found.sort();
        files.extend(found);
    }
    println!("| plugin | size | compile, empty cache | from the cache |");
    println!("|---|---:|---:|---:|");
    for file in files {
        let cold = {
            let engine = Engine::new()?;
            let started = Instant::now();
            engine.compile(&file)?;
            started.elapsed()
        };
        let warm = {
            let engine = Engine::new()?;
            let started = Instant::now();
            engine.compile(&file)?;
            started.elapsed()
        };
        let language = match file.parent().and_then(Path::file_name) {
            Some(dir) if dir == "plugins-c" => " (C)",
            Some(dir) if dir == "plugins-js" => " (JavaScript)",
            Some(dir) if dir == "plugins-python" => " (Python)",
            _ => "",
        };
        println!(
            "| {}{language} | {} KiB | {:.0} ms | {:.1} ms |",
            file.file_name().unwrap().to_string_lossy(),
            std::fs::metadata(&file)?.len() / 1024,
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

async fn swap_pauses(root: &Path, work: &Path) -> anyhow::Result<()> {
    let swaps: usize = common::env_count("BENCH_SWAPS", 20);
    let dir = work.join("plugins");
    std::fs::create_dir_all(&dir)?;
    let shipped = root.join("target/plugins");
    for name in ["seed-json-parser.wasm", "gift-type-totals.wasm"] {
        std::fs::copy(shipped.join(name), dir.join(name))?;
    }
    let versions = [
        root.join("target/test-plugins/gift-type-totals-next.wasm"),
        shipped.join("gift-type-totals.wasm"),
    ];
    let inputs: Vec<PathBuf> = (0..4)
        .map(|i| work.join(format!("gifts-{i}.jsonl")))
        .collect();
    let mut text = format!("[plugins]\ndir = {dir:?}\n");
    for input in &inputs {
        std::fs::write(input, "")?;
        text += &format!("[[source.file]]\npath = {input:?}\ntopic = \"live_gift_total\"\n");
    }
    text += "[sink.sql]\nurl = \"sqlite://out.db\"\n";
    let config_path = work.join("pipeline.toml");
    std::fs::write(&config_path, text)?;
    let config = PipelineConfig::load(&config_path)?;

    // Feed every lane about 50,000 records a second while swapping.
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (feeding, inputs) = (feeding.clone(), inputs.clone());
        std::thread::spawn(move || -> anyhow::Result<u64> {
            use std::io::Write as _;
            let mut generator = Generator::new(Topic::LiveGiftTotal, 9);
            let mut files = inputs
                .iter()
                .map(|p| std::fs::OpenOptions::new().append(true).open(p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut written = 0;
            while feeding.load(Ordering::Relaxed) {
                for file in &mut files {
                    let chunk: String = (&mut generator).take(1024).map(|l| l + "\n").collect();
                    file.write_all(chunk.as_bytes())?;
                    written += 1024;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(written)
        })
    };
    let run = tokio::spawn(pipeline::run(
        config,
        RunOptions {
            stop_when_idle: Some(Duration::from_secs(2)),
            until_end: false,
        },
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for swap in 0..swaps {
        let temporary = dir.join(".gift-type-totals.wasm.part");
        std::fs::copy(&versions[swap % 2], &temporary)?;
        std::fs::rename(&temporary, dir.join("gift-type-totals.wasm"))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    feeding.store(false, Ordering::Relaxed);
    let written = feeder.join().expect("feeder")?;
    let summary = run.await??;
    let mut pauses: Vec<Duration> = summary
        .lanes
        .iter()
        .flat_map(|(_, s)| s.swap_pauses.iter().copied())
        .collect();
    pauses.sort();
    let at = |q: f64| pauses[((pauses.len() - 1) as f64 * q).round() as usize];
    println!();
    println!(
        "{} swaps of gift-type-totals under load ({written} records through 4 lanes): \
         {} lane take-overs",
        summary.reloads.swapped,
        pauses.len()
    );
    println!();
    println!("| lane pause per swap | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| checkpoint + new instances | {:.1} ms | {:.1} ms | {:.1} ms |",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        pauses.last().unwrap().as_secs_f64() * 1e3
    );
    Ok(())
}
