//! Row path: one row per event into MariaDB with exactly-once checkpoints,
//! against the `mariadb` client writing the same rows into the same table
//! shape, in one run. Prints a table.
//!
//! Apiary reads N visits from JSON-lines files (one lane per file) through
//! `seed-json-parser` and `viewer-log` (one row per visit). The baselines
//! then write the rows Apiary wrote, read back from its table, into an
//! empty table of the same definition: as 1000-row
//! `INSERT … ON DUPLICATE KEY UPDATE` statements on one connection, and with
//! `LOAD DATA LOCAL INFILE`. Apiary's time is from its first batch to its
//! last commit; "in commits" is the part of it its lanes spent committing
//! checkpoints (the rest is reading, plugins and folding rows).
//!
//! Needs MariaDB (`scripts/services start`; `BENCH_MYSQL` overrides, as
//! `mysql://user@host:port`), the `mariadb` client and the built plugins.
//! `BENCH_ROWS` sets N (default 1,000,000); `BENCH_LANES=1` runs the one-lane
//! row only.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use apiary::config::PipelineConfig;
use apiary::pipeline::{self, RunOptions};
use livestream_example::{Generator, Topic};

/// The table `viewer-log` writes.
const TABLE: &str = "live_streaming_log";

/// Rows per statement of the client's upserts.
const ROWS_PER_STATEMENT: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // `BENCH_LANES=1`: the one-lane row only (for profiling).
    let lanes_to_run = if std::env::var("BENCH_LANES").as_deref() == Ok("1") {
        1
    } else {
        2
    };
    let server =
        std::env::var("BENCH_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let client = Client::from_url(&server)?;
    let dir = tempfile::tempdir()?;
    let visits: Vec<String> = Generator::new(Topic::LiveStreamingLog, 7)
        .take(rows)
        .collect();

    let mut runs = Vec::new();
    for lanes in [1, 4].into_iter().take(lanes_to_run) {
        let database = format!("apiary_bench_rows_{lanes}");
        client.sql(&format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
        ))?;
        let run = apiary_run(dir.path(), &server, &database, &visits, lanes).await?;
        let written = client.count(&database, TABLE)?;
        anyhow::ensure!(written > 0, "apiary wrote no rows");
        runs.push((lanes, database, written, run, peak_rss_mib()));
    }
    let (_, database, written, ..) = &runs[0];
    let (database, written) = (database.clone(), *written);

    // The rows Apiary wrote, as the client prints them.
    let tsv = dir.path().join("rows.tsv");
    client.dump(&database, TABLE, &tsv)?;
    let (columns, lines) = read_tsv(&tsv)?;
    anyhow::ensure!(
        lines.len() as u64 == written,
        "dumped {} of {written}",
        lines.len()
    );

    let upserts = dir.path().join("upserts.sql");
    std::fs::write(&upserts, upsert_script(&columns, &lines))?;
    client.sql(&format!(
        "DROP TABLE IF EXISTS {database}.copy; CREATE TABLE {database}.copy LIKE {database}.{TABLE}"
    ))?;
    let started = Instant::now();
    client.run_file(&database, &upserts)?;
    let upsert_rate = written as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        client.count(&database, "copy")? == written,
        "upserts lost rows"
    );

    let load = dir.path().join("load.tsv");
    std::fs::write(&load, load_file(&lines))?;
    client.sql(&format!("TRUNCATE TABLE {database}.copy"))?;
    let started = Instant::now();
    client.sql(&format!(
        "LOAD DATA LOCAL INFILE {:?} INTO TABLE {database}.copy",
        load.display().to_string()
    ))?;
    let load_rate = written as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        client.count(&database, "copy")? == written,
        "LOAD DATA lost rows"
    );

    println!("{rows} visits → seed-json-parser + viewer-log → MariaDB, {written} rows\n");
    println!(
        "| writer | rows/s | × baseline (target) | checkpoint p50 / p99 | in commits | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| mariadb client, {ROWS_PER_STATEMENT}-row upserts, one connection | {} | baseline of 1 lane | | | |",
        common::fmt(upsert_rate)
    );
    println!(
        "| mariadb client, LOAD DATA LOCAL INFILE | {} | baseline of 4 lanes | | | |",
        common::fmt(load_rate)
    );
    for (lanes, _, written, run, rss) in &runs {
        let rate = *written as f64 / run.took.as_secs_f64();
        let (baseline, target) = if *lanes == 1 {
            (upsert_rate, 0.9)
        } else {
            (load_rate, 0.7)
        };
        // Commit time per lane, as a share of the run.
        let commits = run.in_commits.as_secs_f64() / run.took.as_secs_f64() / *lanes as f64;
        println!(
            "| apiary, {lanes} file lane(s), exactly-once | {} | {:.2} (≥ {target}) | {:.1}ms / {:.1}ms | {:.0} % | {rss} MiB |",
            common::fmt(rate),
            rate / baseline,
            run.p50.as_secs_f64() * 1e3,
            run.p99.as_secs_f64() * 1e3,
            commits * 100.0,
        );
    }
    Ok(())
}

struct Run {
    took: Duration,
    in_commits: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs the pipeline in-process over `lanes` files of `visits`, to their
/// end, into `database`.
async fn apiary_run(
    dir: &Path,
    server: &str,
    database: &str,
    visits: &[String],
    lanes: usize,
) -> anyhow::Result<Run> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/plugins");
    let plugins = dir.join(format!("plugins-{lanes}"));
    std::fs::create_dir_all(&plugins)?;
    for plugin in ["seed-json-parser", "viewer-log"] {
        let file = format!("{plugin}.wasm");
        std::fs::copy(shipped.join(&file), plugins.join(&file))
            .map_err(|e| anyhow::anyhow!("{file}: {e} (run scripts/build-plugins)"))?;
    }
    let mut text = format!(
        "[pipeline]\nname = \"rows-{lanes}\"\n[plugins]\ndir = {plugins:?}\n\
         [sink.sql]\nurl = \"{server}/{database}\"\n"
    );
    for (lane, chunk) in visits.chunks(visits.len().div_ceil(lanes)).enumerate() {
        let path = dir.join(format!("visits-{lanes}-{lane}.jsonl"));
        std::fs::write(&path, chunk.join("\n") + "\n")?;
        text += &format!("[[source.file]]\npath = {path:?}\ntopic = \"live_streaming_log\"\n");
    }
    let path = dir.join(format!("rows-{lanes}.toml"));
    std::fs::write(&path, text)?;
    let summary = pipeline::run(
        PipelineConfig::load(&path)?,
        RunOptions {
            stop_when_idle: None,
            until_end: true,
        },
    )
    .await?;
    let read: u64 = summary.lanes.iter().map(|(_, s)| s.records).sum();
    anyhow::ensure!(
        read as usize == visits.len(),
        "apiary read {read} of {}",
        visits.len()
    );
    let (times, in_commits) = common::checkpoint_times(&summary);
    let at = |q| common::quantile(&times, q);
    Ok(Run {
        took: summary.busy_time().unwrap_or_default(),
        in_commits,
        p50: at(0.5),
        p99: at(0.99),
    })
}

/// The `mariadb` command-line client, as the baselines' writer.
struct Client {
    args: Vec<String>,
}

impl Client {
    fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("mysql://")
            .ok_or_else(|| anyhow::anyhow!("BENCH_MYSQL must be mysql://user@host:port"))?;
        let (user, address) = rest.split_once('@').unwrap_or(("root", rest));
        let (host, port) = address.split_once(':').unwrap_or((address, "3306"));
        Ok(Self {
            args: vec![
                format!("--user={user}"),
                format!("--host={host}"),
                format!("--port={port}"),
                "--local-infile=1".into(),
            ],
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new("mariadb");
        command.args(&self.args);
        command
    }

    fn check(output: std::process::Output, what: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            output.status.success(),
            "mariadb {what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        Self::check(self.command().args(["-N", "-B", "-e", sql]).output()?, sql)
    }

    fn count(&self, database: &str, table: &str) -> anyhow::Result<u64> {
        Ok(self
            .sql(&format!("SELECT COUNT(*) FROM {database}.{table}"))?
            .trim()
            .parse()?)
    }

    /// `SELECT *` of `table`, tab-separated with a header line.
    fn dump(&self, database: &str, table: &str, to: &Path) -> anyhow::Result<()> {
        let output = self
            .command()
            .args(["-B", "-e", &format!("SELECT * FROM {database}.{table}")])
            .output()?;
        std::fs::write(to, Self::check(output, "dump")?)?;
        Ok(())
    }

    fn run_file(&self, database: &str, file: &Path) -> anyhow::Result<()> {
        let output = self
            .command()
            .arg(database)
            .stdin(std::fs::File::open(file)?)
            .output()?;
        Self::check(output, "script").map(drop)
    }
}

/// The header and lines of a `mariadb -B` dump, each a list of fields
/// (escaped as the client escapes them; `NULL` for null).
fn read_tsv(path: &PathBuf) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let columns = header.split('\t').map(str::to_owned).collect();
    let rows = lines
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    Ok((columns, rows))
}

/// 1000-row upserts in transactions of 5000 rows (Apiary's default
/// checkpoint size), as a client would write them.
fn upsert_script(columns: &[String], rows: &[Vec<String>]) -> String {
    let names: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
    let updates: Vec<String> = names.iter().map(|c| format!("{c} = VALUES({c})")).collect();
    let mut script = String::new();
    for (i, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
        if i % 5 == 0 {
            script += "START TRANSACTION;\n";
        }
        let _ = write!(script, "INSERT INTO copy ({}) VALUES ", names.join(","));
        for (j, row) in chunk.iter().enumerate() {
            script += if j == 0 { "(" } else { ",(" };
            for (k, field) in row.iter().enumerate() {
                if k > 0 {
                    script.push(',');
                }
                if field == "NULL" {
                    script += "NULL";
                } else {
                    // The dump's escapes (\t, \n, \\) are MariaDB's too.
                    let _ = write!(script, "'{}'", field.replace('\'', "\\'"));
                }
            }
            script.push(')');
        }
        let _ = writeln!(script, " ON DUPLICATE KEY UPDATE {};", updates.join(","));
        if i % 5 == 4 {
            script += "COMMIT;\n";
        }
    }
    script + "COMMIT;\n"
}

/// The rows as `LOAD DATA` reads them (`\N` for null).
fn load_file(rows: &[Vec<String>]) -> String {
    let mut file = String::new();
    for row in rows {
        let fields: Vec<&str> = row
            .iter()
            .map(|f| if f == "NULL" { "\\N" } else { f.as_str() })
            .collect();
        file += &fields.join("\t");
        file.push('\n');
    }
    file
}

/// This process's peak resident memory so far.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
