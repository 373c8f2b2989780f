//! `livestream-gen`: writes seed-like live-streaming records as JSON lines,
//! for the example pipeline, tests and benchmarks.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use livestream_example::{Generator, Topic};

/// Generates seed-like live-streaming traffic as JSON lines, one record per
/// line, deterministically from a seed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Topic whose records to generate.
    #[arg(
        long,
        value_parser = PossibleValuesParser::new(Topic::NAMES).try_map(|s| s.parse::<Topic>())
    )]
    topic: Topic,

    /// Number of records.
    #[arg(long)]
    count: u64,

    /// Seed of the generator; the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Fraction of records to break on purpose (broken JSON, a non-object,
    /// a non-numeric string where a number belongs, a missing identity
    /// field), to exercise dead-letter handling.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    malformed_ratio: f64,

    /// File to write, or `-` for standard output.
    #[arg(long, default_value = "-")]
    output: PathBuf,

    /// Event time of the first record, `YYYY-MM-DD HH:MM:SS` in
    /// Asia/Shanghai (default: the seed's sample date); live traffic
    /// passes the current time.
    #[arg(long, value_parser = parse_start)]
    start: Option<i64>,

    /// Event time of the last record, same format: the records are spread
    /// evenly from `--start` to it.
    #[arg(long, value_parser = parse_start, requires = "start")]
    end: Option<i64>,
}

fn parse_start(text: &str) -> Result<i64, String> {
    livestream_format::parse_timestamp(text)
        .map_err(|e| format!("expected YYYY-MM-DD HH:MM:SS, found `{text}`: {e}"))
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, found `{text}`")),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut generator =
        Generator::new(args.topic, args.seed).with_malformed_ratio(args.malformed_ratio);
    if let Some(start) = args.start {
        generator = generator.with_start_time(start);
        if let Some(end) = args.end {
            let count = i64::try_from(args.count.max(1)).unwrap_or(i64::MAX);
            generator = generator.with_step_ms((end - start) / count);
        }
    }
    if args.output.as_os_str() == "-" {
        match generator.write_lines(args.count, io::stdout().lock()) {
            // A closed pipe (`| head`) is the reader's choice, not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            result => result.context("writing to standard output"),
        }
    } else {
        let path = &args.output;
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        generator
            .write_lines(args.count, file)
            .with_context(|| format!("writing {}", path.display()))
    }
}
