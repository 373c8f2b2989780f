//! Shared helpers of the integration tests: the `apiary` binary, the built
//! plugins, generated input with its expected results, and SQLite reads.

#![allow(dead_code)]

pub mod bilibili;
pub mod danmaku;
pub mod douyu;
pub mod kafka;
pub mod process;
pub mod sql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livestream_example::{Generator, Topic};

/// A command running the `apiary` binary under test: the one cargo built,
/// or `APIARY_BIN` (to run the suite against another build).
pub fn apiary() -> Command {
    let binary =
        std::env::var_os("APIARY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_apiary").into());
    let mut command = Command::new(binary);
    command.env("APIARY_LOG", "warn");
    command
}

/// Runs a command and returns its output, with stdout and stderr as text.
pub fn output(command: &mut Command) -> (Output, String, String) {
    let out = command.output().expect("cannot start apiary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The plugins built by `scripts/build-plugins`.
pub fn plugins_dir() -> PathBuf {
    let dir = repo_root().join("target/plugins");
    assert!(
        dir.join("seed-json-parser.wasm").exists(),
        "{} has no plugins: run ./scripts/build-plugins first",
        dir.display()
    );
    dir
}

/// Fixture plugins of the test suite, built by `scripts/build-plugins`.
pub fn test_plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/test-plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run ./scripts/build-plugins first",
        path.display()
    );
    path
}

/// `line` (a gift) with its `user_id` replaced.
pub fn as_user(line: &str, user: i64) -> String {
    let mut gift: serde_json::Value = serde_json::from_str(line).unwrap();
    gift["user_id"] = user.into();
    gift.to_string()
}

/// Gift totals per gift type over `lines`, every one valid.
pub fn gift_totals_of<'a>(lines: impl Iterator<Item = &'a String>) -> BTreeMap<i64, i64> {
    let mut totals = BTreeMap::new();
    for line in lines {
        let gift: serde_json::Value = serde_json::from_str(line).unwrap();
        *totals
            .entry(gift["gift_type"].as_i64().unwrap())
            .or_default() += gift["gift_total_amount"].as_i64().unwrap();
    }
    totals
}

/// Generated input lines, and which of them were broken on purpose.
pub struct Generated {
    /// The JSON lines.
    pub lines: Vec<String>,
    /// 0-based indices of the malformed lines.
    pub malformed: Vec<usize>,
}

impl Generated {
    /// The lines joined, each ending in a newline.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// The valid records, parsed.
    pub fn valid(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.malformed.contains(i))
            .map(|(_, line)| serde_json::from_str(line).expect("valid line is JSON"))
    }

    /// The distinct primary keys of the valid visits (user_id, ip,
    /// room_id, arrive_time): one `live_streaming_log` row each.
    pub fn distinct_visits(&self) -> std::collections::BTreeSet<String> {
        self.valid()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}",
                    r["user_id"], r["ip"], r["room_id"], r["arrive_time"]
                )
            })
            .collect()
    }

    /// Sum of `gift_total_amount` per `gift_type` over the valid gifts.
    pub fn gift_totals(&self) -> BTreeMap<i64, i64> {
        let mut totals = BTreeMap::new();
        for gift in self.valid() {
            *totals
                .entry(gift["gift_type"].as_i64().unwrap())
                .or_default() += gift["gift_total_amount"].as_i64().unwrap();
        }
        totals
    }
}

impl Generated {
    /// Distinct users per grade over the valid visits.
    pub fn members_per_grade(&self) -> BTreeMap<i64, i64> {
        let mut members: BTreeMap<i64, std::collections::BTreeSet<i64>> = BTreeMap::new();
        for v in self.valid() {
            members
                .entry(v["grade"].as_i64().unwrap())
                .or_default()
                .insert(v["user_id"].as_i64().unwrap());
        }
        members
            .into_iter()
            .map(|(g, users)| (g, users.len() as i64))
            .collect()
    }

    /// Sum of `gift_total_amount` per module over the valid gifts, rooms
    /// mapped by `modules` and unmapped rooms under module 0.
    pub fn module_totals(&self, modules: &BTreeMap<i64, i64>) -> BTreeMap<i64, i64> {
        let mut totals = BTreeMap::new();
        for gift in self.valid() {
            let room = gift["room_id"].as_i64().unwrap();
            *totals
                .entry(modules.get(&room).copied().unwrap_or(0))
                .or_default() += gift["gift_total_amount"].as_i64().unwrap();
        }
        totals
    }
}

/// The example's room → module table (`dim_hbase`), as a CSV file.
pub fn dim_rooms_csv() -> PathBuf {
    repo_root().join("examples/livestream/dim_hbase.csv")
}

/// The `[lookup.dim_hbase]` table of [`dim_rooms_csv`], which the
/// module-gift-totals plugin reads.
pub fn dim_rooms_lookup() -> String {
    format!("[lookup.dim_hbase]\npath = {:?}\n", dim_rooms_csv())
}

/// The rooms → modules of [`dim_rooms_csv`].
pub fn dim_rooms() -> BTreeMap<i64, i64> {
    std::fs::read_to_string(dim_rooms_csv())
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (room, module) = l.split_once(',').unwrap();
            (room.parse().unwrap(), module.parse().unwrap())
        })
        .collect()
}

/// `count` records of `topic` from generator seed `seed`, about `ratio` of
/// them malformed.
pub fn generate(topic: Topic, count: usize, seed: u64, ratio: f64) -> Generated {
    let mut generator = Generator::new(topic, seed).with_malformed_ratio(ratio);
    let mut generated = Generated {
        lines: Vec::with_capacity(count),
        malformed: Vec::new(),
    };
    for i in 0..count {
        let (line, malformation) = generator.next_record();
        if malformation.is_some() {
            generated.malformed.push(i);
        }
        generated.lines.push(line);
    }
    generated
}

/// Writes a pipeline config in `dir` reading `files` (path, topic) into the
/// SQLite database `dir/out.db`, and returns its path.
pub fn embedded_config(dir: &Path, files: &[(&Path, &str)]) -> PathBuf {
    let mut text = format!(
        "[plugins]\ndir = {:?}\n{}",
        plugins_dir(),
        dim_rooms_lookup()
    );
    for (path, topic) in files {
        text += &format!("[[source.file]]\npath = {path:?}\ntopic = {topic:?}\n");
    }
    text += "[sink.sql]\nurl = \"sqlite://out.db\"\n";
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a query on a SQLite database, reading each row with `read`.
pub fn sqlite_rows<T>(
    db: &Path,
    sql: &str,
    read: impl Fn(&sqlx::sqlite::SqliteRow) -> T,
) -> Vec<T> {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        rows.iter().map(read).collect()
    })
}

/// Runs a query on a SQLite database and returns the rows as (i64, i64).
pub fn sqlite_pairs(db: &Path, sql: &str) -> BTreeMap<i64, i64> {
    use sqlx::Row as _;
    sqlite_rows(db, sql, |r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        .into_iter()
        .collect()
}

/// Runs a one-column text query on a SQLite database.
pub fn sqlite_text(db: &Path, sql: &str) -> Vec<String> {
    use sqlx::Row as _;
    sqlite_rows(db, sql, |r| r.get::<String, _>(0))
}

/// Runs a one-number query on a SQLite database.
pub fn sqlite_count(db: &Path, sql: &str) -> i64 {
    use sqlx::Row as _;
    sqlite_rows(db, sql, |r| r.get::<i64, _>(0))[0]
}

/// Records committed so far over every lane of the SQLite sink `db`; 0
/// before its first checkpoint.
pub fn sqlite_committed(db: &Path) -> i64 {
    let has_offsets = db.exists()
        && sqlite_count(
            db,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'apiary_offsets'",
        ) == 1;
    if has_offsets {
        sqlite_count(
            db,
            "SELECT COALESCE(SUM(next_offset), 0) FROM apiary_offsets",
        )
    } else {
        0
    }
}

/// Appends `lines` to the file at `path`, creating it if needed.
pub fn append_lines(path: &Path, lines: &[String]) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
}

/// Runs `command` to completion, killing it and failing the test if it
/// takes longer than `limit`.
pub fn run_with_limit(
    command: &mut Command,
    limit: std::time::Duration,
) -> (Output, String, String) {
    use std::process::Stdio;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Output is read while the child runs (a full pipe would block it); a
    // watchdog kills it at the limit.
    let pid = child.id().to_string();
    let (done, killed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let watchdog = {
        let (done, killed) = (done.clone(), killed.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                if started.elapsed() > limit {
                    killed.store(true, Ordering::Relaxed);
                    let _ = Command::new("kill").args(["-9", &pid]).status();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !killed.load(Ordering::Relaxed),
        "apiary did not finish within {limit:?}; stderr: {stderr}"
    );
    (out, stdout, stderr)
}

/// Replays `input` as `topic` through `plugins`, copied into `dir`; its
/// stdout and stderr. Compiling a Python component the first time takes
/// about a minute in a debug build, hence the generous limit.
pub fn replay_plugins(
    dir: &Path,
    plugins: &[&Path],
    topic: &str,
    input: &Path,
) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    for plugin in plugins {
        std::fs::copy(plugin, dir.join(plugin.file_name().unwrap())).unwrap();
    }
    let (out, stdout, stderr) = run_with_limit(
        apiary()
            .args(["replay", "--plugins"])
            .arg(dir)
            .args(["--topic", topic, "--input"])
            .arg(input),
        std::time::Duration::from_secs(600),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// `apiary run CONFIG --until-end` (bounded mode: every file read to its
/// end at the start), which must succeed.
pub fn run_until_idle(config: &Path) -> String {
    let (out, _, stderr) = run_with_limit(
        apiary().arg("run").arg(config).arg("--until-end"),
        std::time::Duration::from_secs(120),
    );
    assert!(out.status.success(), "apiary run failed: {stderr}");
    stderr
}

/// `apiary run CONFIG --stop-when-idle IDLE` (a Kafka source, read until
/// nothing came for `idle`), which must succeed within four minutes.
pub fn run_until_quiet(config: &Path, idle: &str) -> String {
    let (out, _, stderr) = run_with_limit(
        apiary()
            .arg("run")
            .arg(config)
            .args(["--stop-when-idle", idle]),
        std::time::Duration::from_secs(240),
    );
    assert!(out.status.success(), "apiary run failed: {stderr}");
    stderr
}

/// Writes a pipeline config in `dir` consuming `topic` as group `group`
/// from the test broker into the SQLite database `dir/out.db`, with `extra`
/// lines added to `[source.kafka]`, and returns its path.
pub fn kafka_config(dir: &Path, topic: &str, group: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[plugins]\ndir = {:?}\n{}[source.kafka]\nbrokers = {:?}\ngroup = {group:?}\n\
         topics = {{ {topic:?} = \"live_gift_total\" }}\n{extra}\n\
         [sink.sql]\nurl = \"sqlite://out.db\"\ninterval = \"500ms\"\n",
        plugins_dir(),
        dim_rooms_lookup(),
        kafka::broker(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The sum of two sets of totals per key.
pub fn add_totals(mut a: BTreeMap<i64, i64>, b: BTreeMap<i64, i64>) -> BTreeMap<i64, i64> {
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
    a
}

/// A loopback address with a port free for a metrics server.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET /metrics` from `address`, the body's samples by name and labels.
pub fn scrape(address: &str) -> BTreeMap<String, f64> {
    try_scrape(address).unwrap()
}

/// [`scrape`], or why not: for a process that may not serve yet, or any
/// more.
pub fn try_scrape(address: &str) -> std::io::Result<BTreeMap<String, f64>> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: apiary\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect())
}

/// Puts `file` into `dir` as `<name>.wasm` the way deployments do: copied
/// under a temporary name, then renamed over the old file.
pub fn install(file: &Path, dir: &Path, name: &str) {
    let temporary = dir.join(format!(".{name}.wasm.part"));
    std::fs::copy(file, &temporary).unwrap();
    std::fs::rename(&temporary, dir.join(format!("{name}.wasm"))).unwrap();
}

/// How often `text` occurs in the file at `log`.
pub fn count_in(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(text)
        .count()
}
