//! Row path: one row per event into MariaDB and PostgreSQL with
//! exactly-once checkpoints, against each database's own client writing the
//! same rows into the same table shape, in one run. Prints a table per
//! database.
//!
//! Apiary reads N visits from JSON-lines files (one lane per file) through
//! `seed-json-parser` and `viewer-log` (one row per visit). The baselines
//! then write the rows Apiary wrote, read back from its table in the order
//! their visits arrived, into an empty table of the same definition: as
//! 1000-row upserts in transactions of 5000 rows on one connection, and
//! with the database's bulk load (`LOAD DATA LOCAL INFILE`, `COPY`).
//! Apiary's time is from its first batch to its last commit; "in commits"
//! is the part of it its lanes spent committing checkpoints (the rest is
//! reading, plugins and folding rows). Each writer's row shows the CPU it
//! and the database server used, to tell a writer bound by the server's
//! CPU from one waiting on its disk.
//!
//! Needs MariaDB and PostgreSQL (`scripts/services start`; `BENCH_MYSQL`
//! and `BENCH_POSTGRES` override them, as `scheme://user@host:port`), the
//! `mariadb` and `psql` clients and the built plugins. `BENCH_ROWS` sets N
//! (default 1,000,000); `BENCH_LANES` the lane counts (default `1,4`);
//! `BENCH_DATABASES=mariadb` (or `postgres`) one database only.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use apiary::config::PipelineConfig;
use apiary::pipeline::{self, RunOptions};
use common::Cpu;
use livestream_example::{Generator, Topic};

/// The table `viewer-log` writes, and its key.
const TABLE: &str = "live_streaming_log";
const KEY_COLUMNS: [&str; 4] = ["user_id", "ip", "room_id", "arrive_time"];

/// The integer columns of `viewer-log`'s table.
const INT_COLUMNS: [&str; 4] = ["user_id", "room_id", "region_code", "grade"];

/// The order in which `viewer-log`'s rows arrive: by visit (the
/// generator's `create_time` grows with each record).
const ARRIVAL_ORDER: &str = "create_time, user_id, ip, room_id, arrive_time";

/// Rows per statement of the client's upserts.
const ROWS_PER_STATEMENT: usize = 1000;

/// Statements per transaction: 5000 rows, Apiary's default checkpoint.
const STATEMENTS_PER_TRANSACTION: usize = 5;

/// A row as the clients print it: each field escaped as in their text
/// format (`\t`, `\n`, `\\`), `None` for null.
type Row = Vec<Option<String>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: usize = common::env_count("BENCH_ROWS", 1_000_000);
    // `BENCH_LANES=1` for the one-lane rows only (to profile them).
    let lanes: Vec<usize> = std::env::var("BENCH_LANES")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("BENCH_LANES: a comma-separated list of counts ({e})"))?;
    let databases = std::env::var("BENCH_DATABASES").unwrap_or_else(|_| "mariadb,postgres".into());
    let dir = tempfile::tempdir()?;
    for name in databases.split(',') {
        let server = match name.trim() {
            "mariadb" => Server::mariadb(&common::mysql_url())?,
            "postgres" => Server::postgres(&common::postgres_url())?,
            other => anyhow::bail!("BENCH_DATABASES: unknown database `{other}`"),
        };
        bench(&server, dir.path(), rows, &lanes).await?;
    }
    Ok(())
}

/// Apiary with each number of `lanes` into `server`, then the baselines on
/// the rows of its first run; prints the table.
async fn bench(server: &Server, dir: &Path, rows: usize, lanes: &[usize]) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for &lanes in lanes {
        let database = format!("apiary_bench_rows_{lanes}");
        server.create_database(&database)?;
        let run = apiary_run(server, dir, &server.url(&database), rows, lanes).await?;
        let written = server.count(&database, TABLE)?;
        anyhow::ensure!(written > 0, "apiary wrote no rows");
        runs.push((lanes, database, written, run));
    }
    let (_, database, written, ..) = &runs[0];
    let (database, written) = (database.as_str(), *written);

    // Not in key order, as a table's dump would come: appending keys in
    // order is far cheaper for a B-tree than inserting them where they
    // arrive, which is what a pipeline does.
    let tsv = dir.join("rows.tsv");
    server.dump_in_arrival_order(database, &tsv)?;
    let (columns, lines) = server.read_dump(&tsv)?;
    anyhow::ensure!(
        lines.len() as u64 == written,
        "dumped {} of {written}",
        lines.len()
    );
    let statements = server.upserts(&columns, &lines);
    let check = |what: &str| -> anyhow::Result<()> {
        let copied = server.count(database, "copy")?;
        anyhow::ensure!(copied == written, "{what} wrote {copied} of {written} rows");
        Ok(())
    };

    let script = dir.join("upserts.sql");
    std::fs::write(&script, transactions(&statements))?;
    server.create_copy(database)?;
    let started = Instant::now();
    let cpu = Cpu::now(server.process_name());
    server.run_file(database, &script)?;
    let upsert_cpu = cpu.stop();
    let upsert_rate = common::rate(written as usize, started.elapsed());
    check("the upserts")?;

    // On MariaDB, the same statements through sqlx too: as text, and as
    // prepared statements with bound parameters, as Apiary sends them.
    let mut sqlx_rates = Vec::new();
    if server.is_mariadb() {
        for prepared in [false, true] {
            server.sql(Some(database), "TRUNCATE TABLE copy")?;
            let cpu = Cpu::now(server.process_name());
            let took = sqlx_upserts(
                &server.url(database),
                &columns,
                &lines,
                &statements,
                prepared,
            )
            .await?;
            let cpu = cpu.stop();
            check("sqlx")?;
            sqlx_rates.push((common::rate(written as usize, took), cpu));
        }
    }

    let load = dir.join("load.tsv");
    std::fs::write(&load, load_file(&lines))?;
    server.sql(Some(database), "TRUNCATE TABLE copy")?;
    let started = Instant::now();
    let cpu = Cpu::now(server.process_name());
    server.load(database, &load)?;
    let load_cpu = cpu.stop();
    let load_rate = common::rate(written as usize, started.elapsed());
    check("the bulk load")?;

    let (table, cache) = server.sizes(database);
    let mib = |size: Option<u64>| size.map_or("? MiB".into(), |b| format!("{} MiB", b >> 20));
    println!(
        "{rows} visits → seed-json-parser + viewer-log → {}, {written} rows; \
         the table takes {}, the server's {} {}\n",
        server.name(),
        mib(table),
        server.cache_name(),
        mib(cache)
    );
    println!(
        "| writer | rows/s | × baseline (target) | checkpoint p50 / p99 | in commits | CPU s: writer + server | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {}, {ROWS_PER_STATEMENT}-row upserts, one connection | {} | baseline of 1 lane | | | {upsert_cpu} | |",
        server.client(),
        common::fmt(upsert_rate)
    );
    for ((rate, cpu), how) in sqlx_rates
        .iter()
        .zip(["text statements", "prepared, bound parameters"])
    {
        println!(
            "| sqlx, {ROWS_PER_STATEMENT}-row upserts, {how} | {} | {:.2} | | | {cpu} | |",
            common::fmt(*rate),
            rate / upsert_rate
        );
    }
    println!(
        "| {}, {} | {} | baseline of 4 lanes | | | {load_cpu} | |",
        server.client(),
        server.bulk_load(),
        common::fmt(load_rate)
    );
    for (lanes, _, written, run) in &runs {
        let rate = common::rate(*written as usize, run.took);
        let (baseline, target) = if *lanes == 1 {
            (upsert_rate, 0.9)
        } else {
            (load_rate, 0.7)
        };
        // Commit time per lane, as a share of the run.
        let commits = run.in_commits.as_secs_f64() / run.took.as_secs_f64() / *lanes as f64;
        println!(
            "| apiary, {lanes} file lane(s), exactly-once | {} | {:.2} (≥ {target}) | {:.1}ms / {:.1}ms | {:.0} % | {} | {} MiB (from {}) |",
            common::fmt(rate),
            rate / baseline,
            run.p50.as_secs_f64() * 1e3,
            run.p99.as_secs_f64() * 1e3,
            commits * 100.0,
            run.cpu,
            run.peak_rss_mib,
            run.start_rss_mib,
        );
    }
    println!(
        "\nCPU s: the writer's (this process, or the client it ran) and the server's \
         processes' over the writer's run; on {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

/// One run of Apiary.
struct Run {
    took: Duration,
    in_commits: Duration,
    p50: Duration,
    p99: Duration,
    /// The process's peak RSS during the run, and its RSS at the start.
    peak_rss_mib: u64,
    start_rss_mib: u64,
    /// CPU used by this process and by the server over the run.
    cpu: Cpu,
}

/// Runs the pipeline in-process over `lanes` files of `visits` generated
/// visits, to their end, into the database at `url`.
async fn apiary_run(
    server: &Server,
    dir: &Path,
    url: &str,
    visits: usize,
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
         [sink.sql]\nurl = \"{url}\"\n"
    );
    // The same visits for every run, split into one file per lane.
    let mut generator = Generator::new(Topic::LiveStreamingLog, 7);
    let per_lane = visits.div_ceil(lanes);
    for lane in 0..lanes {
        let count = per_lane.min(visits - lane * per_lane);
        let path = dir.join(format!("visits-{lanes}-{lane}.jsonl"));
        generator.write_lines(count as u64, std::fs::File::create(&path)?)?;
        text += &format!("[[source.file]]\npath = {path:?}\ntopic = \"live_streaming_log\"\n");
    }
    let path = dir.join(format!("rows-{lanes}.toml"));
    std::fs::write(&path, text)?;
    common::reset_peak_rss();
    let start_rss_mib = common::rss_mib();
    let cpu = Cpu::now(server.process_name());
    let summary = pipeline::run(
        PipelineConfig::load(&path)?,
        RunOptions {
            stop_when_idle: None,
            until_end: true,
        },
    )
    .await?;
    let cpu = cpu.stop();
    let read: u64 = summary.lanes.iter().map(|(_, s)| s.records).sum();
    anyhow::ensure!(read as usize == visits, "apiary read {read} of {visits}");
    let (times, in_commits) = common::checkpoint_times(&summary);
    let at = |q| common::quantile(&times, q);
    Ok(Run {
        took: summary.busy_time().unwrap_or_default(),
        in_commits,
        p50: at(0.5),
        p99: at(0.99),
        peak_rss_mib: common::peak_rss_mib(),
        start_rss_mib,
        cpu,
    })
}

/// A database server, through its command-line client.
enum Server {
    Mariadb { url: String, args: Vec<String> },
    Postgres { url: String, args: Vec<String> },
}

impl Server {
    fn mariadb(url: &str) -> anyhow::Result<Self> {
        let (user, host, port) = split_url(url, "mysql://")?;
        Ok(Self::Mariadb {
            url: url.to_owned(),
            args: vec![
                format!("--user={user}"),
                format!("--host={host}"),
                format!("--port={port}"),
                "--local-infile=1".into(),
            ],
        })
    }

    fn postgres(url: &str) -> anyhow::Result<Self> {
        let (user, host, port) = split_url(url, "postgres://")?;
        Ok(Self::Postgres {
            url: url.to_owned(),
            args: [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-p",
                port,
                "-U",
                user,
            ]
            .map(str::to_owned)
            .to_vec(),
        })
    }

    fn is_mariadb(&self) -> bool {
        matches!(self, Self::Mariadb { .. })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Mariadb { .. } => "MariaDB",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    fn client(&self) -> &'static str {
        match self {
            Self::Mariadb { .. } => "mariadb client",
            Self::Postgres { .. } => "psql",
        }
    }

    /// The name of the server's processes, whose CPU the table shows.
    fn process_name(&self) -> &'static str {
        match self {
            Self::Mariadb { .. } => "mariadbd",
            Self::Postgres { .. } => "postgres",
        }
    }

    fn bulk_load(&self) -> &'static str {
        match self {
            Self::Mariadb { .. } => "LOAD DATA LOCAL INFILE",
            Self::Postgres { .. } => "COPY FROM (\\copy)",
        }
    }

    /// Apiary's sink URL of `database`.
    fn url(&self, database: &str) -> String {
        match self {
            Self::Mariadb { url, .. } | Self::Postgres { url, .. } => format!("{url}/{database}"),
        }
    }

    /// The client on `database` (the server's default one if `None`).
    fn command(&self, database: Option<&str>) -> Command {
        match self {
            Self::Mariadb { args, .. } => {
                let mut command = Command::new("mariadb");
                command.args(args).args(database);
                command
            }
            Self::Postgres { args, .. } => {
                let mut command = Command::new("psql");
                command
                    .args(args)
                    .args(["-d", database.unwrap_or("postgres")]);
                command
            }
        }
    }

    /// What the server calls the memory it keeps table pages in.
    fn cache_name(&self) -> &'static str {
        match self {
            Self::Mariadb { .. } => "buffer pool",
            Self::Postgres { .. } => "shared buffers",
        }
    }

    /// Bytes of Apiary's table in `database` (data and indexes), and of
    /// the server's page cache, where the server tells: a table larger than
    /// the cache makes upserts in arrival order wait on reads.
    fn sizes(&self, database: &str) -> (Option<u64>, Option<u64>) {
        let (table, cache) = match self {
            Self::Mariadb { .. } => (
                // The file's size: information_schema.tables lags behind.
                format!(
                    "SELECT file_size FROM information_schema.innodb_sys_tablespaces \
                     WHERE name = '{database}/{TABLE}'"
                ),
                "SELECT @@innodb_buffer_pool_size",
            ),
            Self::Postgres { .. } => (
                format!("SELECT pg_total_relation_size('{TABLE}')"),
                "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'",
            ),
        };
        let bytes = |sql: &str| self.sql(Some(database), sql).ok()?.trim().parse().ok();
        (bytes(&table), bytes(cache))
    }

    /// Runs `sql` (a backslash command, for psql); its output unadorned.
    fn sql(&self, database: Option<&str>, sql: &str) -> anyhow::Result<String> {
        let mut command = self.command(database);
        match self {
            Self::Mariadb { .. } => command.args(["-N", "-B", "-e", sql]),
            Self::Postgres { .. } => command.args(["-A", "-t", "-c", sql]),
        };
        check(command.output()?, sql)
    }

    fn create_database(&self, database: &str) -> anyhow::Result<()> {
        match self {
            Self::Mariadb { .. } => self
                .sql(
                    None,
                    &format!("DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"),
                )
                .map(drop),
            // One statement per call: neither runs in a transaction.
            Self::Postgres { .. } => {
                self.sql(
                    None,
                    &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
                )?;
                self.sql(None, &format!("CREATE DATABASE {database}"))
                    .map(drop)
            }
        }
    }

    fn count(&self, database: &str, table: &str) -> anyhow::Result<u64> {
        Ok(self
            .sql(Some(database), &format!("SELECT COUNT(*) FROM {table}"))?
            .trim()
            .parse()?)
    }

    /// Apiary's rows, in the order their visits arrived, tab-separated with
    /// a header line.
    fn dump_in_arrival_order(&self, database: &str, to: &Path) -> anyhow::Result<()> {
        let select = format!("SELECT * FROM {TABLE} ORDER BY {ARRIVAL_ORDER}");
        match self {
            Self::Mariadb { .. } => {
                let mut command = self.command(Some(database));
                let output = command.args(["-B", "-e", &select]).output()?;
                std::fs::write(to, check(output, "dump")?)?;
            }
            Self::Postgres { .. } => {
                self.sql(
                    Some(database),
                    &format!(
                        "\\copy ({select}) TO {} WITH (FORMAT text, HEADER true)",
                        literal(&to.display().to_string())
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// The columns and rows of a dump.
    fn read_dump(&self, path: &Path) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
        let null = match self {
            Self::Mariadb { .. } => "NULL",
            Self::Postgres { .. } => "\\N",
        };
        let text = std::fs::read_to_string(path)?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let columns = header.split('\t').map(str::to_owned).collect();
        let rows = lines
            .map(|l| {
                l.split('\t')
                    .map(|f| (f != null).then(|| f.to_owned()))
                    .collect()
            })
            .collect();
        Ok((columns, rows))
    }

    /// An empty table `copy` of the same definition as Apiary's.
    fn create_copy(&self, database: &str) -> anyhow::Result<()> {
        let like = match self {
            Self::Mariadb { .. } => format!("LIKE {TABLE}"),
            Self::Postgres { .. } => format!("(LIKE {TABLE} INCLUDING ALL)"),
        };
        self.sql(
            Some(database),
            &format!("DROP TABLE IF EXISTS copy; CREATE TABLE copy {like}"),
        )
        .map(drop)
    }

    fn run_file(&self, database: &str, file: &Path) -> anyhow::Result<()> {
        let mut command = self.command(Some(database));
        match self {
            Self::Mariadb { .. } => command.stdin(std::fs::File::open(file)?),
            Self::Postgres { .. } => command.arg("-f").arg(file),
        };
        check(command.output()?, "script").map(drop)
    }

    /// The bulk load of `file` (tab-separated, `\N` for null) into `copy`.
    fn load(&self, database: &str, file: &Path) -> anyhow::Result<()> {
        let path = literal(&file.display().to_string());
        let sql = match self {
            Self::Mariadb { .. } => format!("LOAD DATA LOCAL INFILE {path} INTO TABLE copy"),
            Self::Postgres { .. } => format!("\\copy copy FROM {path}"),
        };
        self.sql(Some(database), &sql).map(drop)
    }

    /// The 1000-row upserts of `rows` into `copy`, every value a quoted
    /// literal, as a client would write them.
    fn upserts(&self, columns: &[String], rows: &[Row]) -> Vec<String> {
        let quote = |c: &str| match self {
            Self::Mariadb { .. } => format!("`{c}`"),
            Self::Postgres { .. } => format!("\"{c}\""),
        };
        let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let values = columns
            .iter()
            .filter(|c| !KEY_COLUMNS.contains(&c.as_str()));
        let on_conflict = match self {
            Self::Mariadb { .. } => {
                let updates: Vec<String> = values
                    .map(|c| format!("{0} = VALUES({0})", quote(c)))
                    .collect();
                format!("ON DUPLICATE KEY UPDATE {}", updates.join(","))
            }
            Self::Postgres { .. } => {
                let updates: Vec<String> = values
                    .map(|c| format!("{0} = excluded.{0}", quote(c)))
                    .collect();
                let key: Vec<String> = KEY_COLUMNS.iter().map(|c| quote(c)).collect();
                format!(
                    "ON CONFLICT ({}) DO UPDATE SET {}",
                    key.join(","),
                    updates.join(",")
                )
            }
        };
        // Both read backslash escapes in these literals as the dumps write
        // them (PostgreSQL in `E'…'` only).
        let open = if self.is_mariadb() { "'" } else { "E'" };
        let mut statements = Vec::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO copy ({}) VALUES ", names.join(","));
            for (j, row) in chunk.iter().enumerate() {
                sql += if j == 0 { "(" } else { ",(" };
                for (k, field) in row.iter().enumerate() {
                    if k > 0 {
                        sql.push(',');
                    }
                    match field {
                        None => sql += "NULL",
                        Some(field) => {
                            let _ = write!(sql, "{open}{}'", field.replace('\'', "\\'"));
                        }
                    }
                }
                sql.push(')');
            }
            let _ = write!(sql, " {on_conflict}");
            statements.push(sql);
        }
        statements
    }
}

/// The user, host and port of `scheme://user@host:port`.
fn split_url<'a>(url: &'a str, scheme: &str) -> anyhow::Result<(&'a str, &'a str, &'a str)> {
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| anyhow::anyhow!("{url}: expected {scheme}user@host:port"))?;
    let (user, address) = rest.split_once('@').unwrap_or(("root", rest));
    let (host, port) = address
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("{url}: expected a port"))?;
    Ok((user, host, port))
}

/// `text` as a single-quoted SQL string (a temporary file's path).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn check(output: std::process::Output, what: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// `statements` in transactions of 5000 rows, as a script.
fn transactions(statements: &[String]) -> String {
    let mut script = String::new();
    for transaction in statements.chunks(STATEMENTS_PER_TRANSACTION) {
        script += "START TRANSACTION;\n";
        for statement in transaction {
            script += statement;
            script += ";\n";
        }
        script += "COMMIT;\n";
    }
    script
}

/// The same upserts through sqlx on one MariaDB connection, in
/// transactions of 5000 rows: as text `statements`, or prepared with
/// bound parameters (the binary protocol, with integers bound as integers,
/// as Apiary binds them). Tells the protocol's cost from the pipeline's.
async fn sqlx_upserts(
    url: &str,
    columns: &[String],
    rows: &[Row],
    statements: &[String],
    prepared: bool,
) -> anyhow::Result<Duration> {
    use sqlx::Connection as _;
    let mut connection = sqlx::MySqlConnection::connect(url).await?;
    let names: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !KEY_COLUMNS.contains(&c.as_str()))
        .map(|c| format!("`{c}` = VALUES(`{c}`)"))
        .collect();
    let one = format!("({})", vec!["?"; columns.len()].join(","));
    let started = Instant::now();
    let per_transaction = ROWS_PER_STATEMENT * STATEMENTS_PER_TRANSACTION;
    for (t, transaction) in rows.chunks(per_transaction).enumerate() {
        let mut tx = connection.begin().await?;
        for (s, chunk) in transaction.chunks(ROWS_PER_STATEMENT).enumerate() {
            if !prepared {
                let text = &statements[t * STATEMENTS_PER_TRANSACTION + s];
                sqlx::raw_sql(text).execute(&mut *tx).await?;
                continue;
            }
            let sql = format!(
                "INSERT INTO copy ({}) VALUES {} ON DUPLICATE KEY UPDATE {}",
                names.join(","),
                vec![one.as_str(); chunk.len()].join(","),
                updates.join(",")
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                for (field, column) in row.iter().zip(columns) {
                    let int = INT_COLUMNS.contains(&column.as_str());
                    query = match field {
                        None if int => query.bind(None::<i64>),
                        None => query.bind(None::<String>),
                        Some(field) if int => query.bind(field.parse::<i64>()?),
                        Some(field) => query.bind(field.as_str()),
                    };
                }
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

/// The rows as a bulk load reads them (`\N` for null).
fn load_file(rows: &[Row]) -> String {
    let mut file = String::new();
    for row in rows {
        let fields: Vec<&str> = row.iter().map(|f| f.as_deref().unwrap_or("\\N")).collect();
        file += &fields.join("\t");
        file.push('\n');
    }
    file
}
