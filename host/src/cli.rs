//! The `apiary` command line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::assembly::Assembly;
use crate::config::{BatchSection, PipelineConfig};
use crate::lookup::Lookups;
use crate::pipeline::{self, RunOptions};
use crate::plugin::Engine;
use crate::store::{Reader, SqlStore};

/// Apiary: a stream processor that runs WebAssembly plugins over Kafka
/// topics and merges their rows into SQL tables.
#[derive(Debug, Parser)]
#[command(name = "apiary", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline.
    Run {
        /// The pipeline's TOML configuration.
        config: PathBuf,
        /// Finish, after a final checkpoint, once no record arrived for
        /// this long (e.g. `2s`, `500ms`) while the process ran; exits
        /// non-zero if a lane stopped early (a quarantined plugin).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        stop_when_idle: Option<Duration>,
        /// Bounded mode: read every source file up to its size at the
        /// start, then finish after a final checkpoint; exits non-zero,
        /// naming the lane, if a lane stopped before its end.
        #[arg(long)]
        until_end: bool,
    },
    /// Validate a pipeline's configuration, plugins and existing tables.
    Check {
        /// The pipeline's TOML configuration.
        config: PathBuf,
    },
    /// Run plugins offline over input lines and print the rows as JSON lines.
    Replay {
        /// Directory of plugin components.
        #[arg(long)]
        plugins: PathBuf,
        /// Logical topic of the input records.
        #[arg(long)]
        topic: String,
        /// Input file with one raw record per line, or `-` for stdin.
        #[arg(long)]
        input: PathBuf,
        /// Records per batch handed to the plugins.
        #[arg(long, default_value_t = 1024)]
        batch_size: usize,
        /// Lines longer than this many bytes are refused, not read whole
        /// (as `[batch] max-record-bytes` in a pipeline).
        #[arg(long, default_value_t = BatchSection::default().max_record_bytes)]
        max_record_bytes: usize,
        /// A dimension table for the `lookup` import, from a CSV file whose
        /// first column is the key; repeatable.
        #[arg(long = "lookup", value_name = "TABLE=CSV")]
        lookups: Vec<String>,
    },
    /// Run a SQL query against a pipeline's sink and print the rows.
    Query {
        /// The pipeline's TOML configuration.
        config: PathBuf,
        /// The query, e.g. `SELECT * FROM gift_type_totals ORDER BY gift_type`.
        sql: String,
    },
    /// Serve a pipeline's dashboard from its sink alone, read-only, until
    /// Ctrl-C (one screen for many `apiary run` processes).
    Dashboard {
        /// The pipeline's TOML configuration, with a `[dashboard]` section.
        config: PathBuf,
        /// Listen here instead of `[dashboard] listen`.
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<String>,
    },
    /// Create or build a plugin project.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print what a plugin says about itself.
    Inspect {
        /// The plugin component.
        plugin: PathBuf,
        /// A pipeline whose `[plugins.params.<name>]` the plugin is given.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

impl Cli {
    /// The log level when `APIARY_LOG` is not set: progress for `run`,
    /// only problems for the commands whose output is the point.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Run { .. } => "info,sqlx=warn,wasmtime_cache=warn",
            _ => "warn,wasmtime_cache=error",
        }
    }

    /// Runs the chosen command.
    pub async fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run {
                config,
                stop_when_idle,
                until_end,
            } => {
                let config = PipelineConfig::load(&config)?;
                let options = RunOptions {
                    stop_when_idle,
                    until_end,
                };
                let summary = pipeline::run(config, options).await?;
                for (lane, stats) in &summary.lanes {
                    eprintln!(
                        "{lane}: {} records, {} events, {} rows, {} dead letters, {} checkpoints",
                        stats.records,
                        stats.events,
                        stats.rows,
                        stats.dead_letters,
                        stats.checkpoints
                    );
                }
                // A run asked to finish has not finished while a lane holds
                // records back.
                if (until_end || stop_when_idle.is_some())
                    && let Some((lane, stats)) =
                        summary.lanes.iter().find(|(_, s)| s.held.is_some())
                {
                    bail!(
                        "lane {lane} stopped before the end of its input: {}",
                        stats.held.as_deref().unwrap_or_default()
                    );
                }
                Ok(())
            }
            Command::Check { config } => check(&config).await,
            Command::Replay {
                plugins,
                topic,
                input,
                batch_size,
                max_record_bytes,
                lookups,
            } => {
                if batch_size == 0 {
                    bail!("--batch-size must be at least 1");
                }
                if max_record_bytes == 0 {
                    bail!("--max-record-bytes must be at least 1");
                }
                let lookups = replay_lookups(&lookups)?;
                let reader: Box<dyn BufRead> = if input == Path::new("-") {
                    Box::new(BufReader::new(std::io::stdin()))
                } else {
                    let file = std::fs::File::open(&input)
                        .with_context(|| format!("cannot open input {}", input.display()))?;
                    Box::new(BufReader::with_capacity(1 << 16, file))
                };
                let out = std::io::BufWriter::new(std::io::stdout().lock());
                let summary = tokio::task::block_in_place(|| {
                    crate::replay::replay(
                        &plugins,
                        lookups,
                        &topic,
                        batch_size,
                        max_record_bytes,
                        reader,
                        out,
                        std::io::stderr(),
                    )
                })?;
                tracing::info!(?summary, "replay finished");
                Ok(())
            }
            Command::Query { config, sql } => {
                let config = PipelineConfig::load(&config)?;
                // A minute per query, every row.
                let reader = Reader::connect(&config.sink.sql.url, Duration::from_secs(60)).await?;
                let table = reader.query_rows(&sql, usize::MAX).await?;
                print!("{}", table.to_text());
                Ok(())
            }
            Command::Dashboard { config, listen } => {
                let config = PipelineConfig::load(&config)?;
                crate::dashboard::serve_standalone(&config, listen.as_deref()).await
            }
            Command::Inspect { plugin, config } => inspect(&plugin, config.as_deref()),
            Command::Plugin(PluginCommand::New {
                name,
                lang,
                kind,
                dir,
            }) => {
                let project = crate::scaffold::new(&dir, &name, lang, kind)?;
                println!("created {}", project.display());
                Ok(())
            }
            Command::Plugin(PluginCommand::Test { dir, bless }) => {
                let outcome = tokio::task::block_in_place(|| crate::scaffold::test(&dir, bless))?;
                match outcome {
                    crate::scaffold::TestOutcome::Passed { lines } => {
                        println!("ok: the replay printed the {lines} expected lines")
                    }
                    crate::scaffold::TestOutcome::Wrote(path) => {
                        println!("wrote {}: check it, then keep it", path.display())
                    }
                }
                Ok(())
            }
            Command::Plugin(PluginCommand::Build { dir, out }) => {
                let built = crate::scaffold::build(&dir, out.as_deref())?;
                println!("built {}", built.display());
                Ok(())
            }
        }
    }
}

/// The `--lookup TABLE=CSV` tables of `apiary replay`.
fn replay_lookups(specs: &[String]) -> anyhow::Result<Lookups> {
    let mut tables = std::collections::BTreeMap::new();
    for spec in specs {
        let Some((name, path)) = spec.split_once('=') else {
            bail!("--lookup {spec}: expected TABLE=CSV");
        };
        let table = crate::config::LookupTable::csv(path.into());
        tables.insert(name.to_owned(), table);
    }
    Lookups::load(&tables, None)
}

/// `apiary plugin …`.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project: WIT, source, sample input, README.
    New {
        /// The plugin's name (lowercase letters, digits, `-`).
        name: String,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// Whether it is a rule or a parser.
        #[arg(long, value_enum, default_value = "rule")]
        kind: crate::scaffold::Kind,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin project into `<dir>/<name>.wasm`.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component instead.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Build a plugin project, replay its sample through it and compare
    /// the output with the expected file (`[test]` in apiary-plugin.toml).
    Test {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the output as the new expected file.
        #[arg(long)]
        bless: bool,
    },
}

/// `apiary check`: the first problem found, or nothing.
async fn check(path: &Path) -> anyhow::Result<()> {
    let config = PipelineConfig::load(path)?;
    if !config.plugins.dir.is_dir() {
        bail!("plugin dir {} does not exist", config.plugins.dir.display());
    }
    let assembly = Assembly::build(&config)?;
    let plugins = &assembly.plugins;
    if let Some(rejected) = plugins.rejected.first() {
        bail!("{rejected}");
    }
    let file_topics = config
        .source
        .file
        .iter()
        .map(|f| (format!("source file {}", f.path.display()), f.topic.clone()));
    let kafka_topics = config.source.kafka.iter().flat_map(|k| {
        k.topics
            .physical()
            .into_iter()
            .map(|t| (format!("Kafka topic `{t}`"), k.topics.logical(t).to_owned()))
            .collect::<Vec<_>>()
    });
    for (source, topic) in file_topics.chain(kafka_topics) {
        if plugins.parser_for(&topic).is_none() {
            bail!(
                "{source}: no plugin in {} parses topic `{topic}`",
                config.plugins.dir.display()
            );
        }
    }
    for name in config.plugins.params.keys() {
        if !plugins.all().any(|p| p.name() == name) {
            bail!(
                "[plugins.params.{name}]: no plugin named `{name}` in {}",
                config.plugins.dir.display()
            );
        }
    }
    let tables: Vec<_> = plugins.tables().collect();
    let url = &config.sink.sql.url;
    let sqlite_file = url
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p));
    if sqlite_file.is_none_or(|f| Path::new(f).exists()) {
        SqlStore::connect_read_only(&config.sink.sql)
            .await?
            .check_tables(&assembly.store_tables)
            .await?;
    }
    println!(
        "{}: ok ({} parsers, {} rules, {} output tables)",
        path.display(),
        plugins.parsers.len(),
        plugins.rules.len(),
        tables.len()
    );
    for plugin in plugins.all() {
        if let Some(line) = params_line(plugin.params()) {
            println!("  {} {line}", plugin.name());
        }
    }
    Ok(())
}

/// The `params: …` line of a plugin, if it has parameters.
fn params_line(params: &[(String, String)]) -> Option<String> {
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    (!pairs.is_empty()).then(|| format!("params: {}", pairs.join(", ")))
}

/// `apiary inspect`: the plugin's own description.
fn inspect(path: &Path, config: Option<&Path>) -> anyhow::Result<()> {
    let engine = match config {
        Some(config) => Engine::with_limits(PipelineConfig::load(config)?.plugins)?,
        None => Engine::new()?,
    };
    let lookups = Arc::new(Lookups::default());
    let loaded: crate::plugin::Shared = crate::plugin::load_file(&engine, path, &lookups)?.into();
    println!("contract: apiary:plugin@{}", loaded.contract());
    if let Some(line) = params_line(loaded.params()) {
        println!("{line}");
    }
    match loaded {
        crate::plugin::Shared::Parser(p) => {
            println!(
                "{} {} (parser, {})",
                p.info.name,
                p.info.version,
                path.display()
            );
            println!("topics: {}", p.info.topics.join(", "));
        }
        crate::plugin::Shared::Rule(r) => {
            println!(
                "{} {} (rule, {})",
                r.info.name,
                r.info.version,
                path.display()
            );
            let kinds: Vec<String> = r.info.consumes.iter().map(ToString::to_string).collect();
            println!("consumes: {}", kinds.join(", "));
            for table in &r.tables {
                println!("output {} -> table {}", table.output, table.table);
                for c in &table.columns {
                    let role = if c.key {
                        "primary key".to_owned()
                    } else {
                        c.merge.to_string()
                    };
                    let null = if c.nullable { ", nullable" } else { "" };
                    println!("  {:<28} {:<10} {role}{null}", c.name, c.ty.to_string());
                }
            }
        }
    }
    Ok(())
}
