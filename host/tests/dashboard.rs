//! The dashboard: the example pipeline's panels served by `apiary run` and
//! `apiary dashboard`, compared with the database they read; the token;
//! broken panels; updates pushed on commits; and the page in Debian's
//! chromium, driven by playwright-core (host/tests/browser).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use livestream_example::Topic;
use serde_json::Value;
use support::process::{Running, log_tail, wait_until};
use support::*;

const TOKEN: &str = "s3cret-screen";
// Generous: a loaded machine compiles the plugins slowly on first use.
const WAIT: Duration = Duration::from_secs(300);

/// Panels that break on purpose, added to the example's.
const BROKEN_PANELS: &str = r#"
[[dashboard.panel]]
id = "broken-sql"
title = "Broken"
chart = "table"
query = "SELEKT nothing"

[[dashboard.panel]]
id = "writes"
title = "Tries to write"
chart = "table"
query = "DELETE FROM gift_type_totals"
"#;

/// Panels of the chart kinds the example does not use, over the tables
/// this build's rules write: every kind is drawn in the browser test.
const MORE_CHARTS: &str = r#"
[[dashboard.panel]]
id = "members-by-province-grade"
title = "省份 × 等级 (visits)"
chart = "heatmap"
query = "SELECT province, grade, COUNT(DISTINCT user_id) AS members FROM live_streaming_log GROUP BY province, grade ORDER BY province, grade"
x = "province"
series = "grade"
y = "members"
span = 2

[[dashboard.panel]]
id = "visits-by-room-grade"
title = "Visits per room and grade"
chart = "grouped-bar"
query = "SELECT room_id, grade, COUNT(*) AS visits FROM live_streaming_log GROUP BY room_id, grade ORDER BY room_id, grade"
x = "room_id"
series = "grade"
y = "visits"

[[dashboard.panel]]
id = "visits-per-minute"
title = "Visits per minute"
chart = "area"
query = "SELECT substr(create_time, 1, 16) AS minute, COUNT(*) AS visits FROM live_streaming_log GROUP BY minute ORDER BY minute"

[[dashboard.panel]]
id = "gift-types-line"
title = "Gift totals per type (line)"
chart = "line"
query = "SELECT gift_type, gift_total_amount FROM gift_type_totals ORDER BY gift_type"
unit = "元"
"#;

/// The example pipeline's configuration copied into `dir`: its plugins,
/// its input files under `dir/data`, its sink `sink` (SQLite by default),
/// the dashboard on `address` with `extra` appended.
fn example_config(dir: &Path, address: &str, sink: Option<&str>, extra: &str) -> PathBuf {
    let example = repo_root().join("examples/livestream");
    let text = std::fs::read_to_string(example.join("embedded.toml")).unwrap();
    // A copy of the plugins, so a test can swap one.
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for entry in std::fs::read_dir(plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, plugins.join(path.file_name().unwrap())).unwrap();
    }
    let mut text = text
        .replace(
            "dir = \"../../target/plugins\"",
            &format!("dir = {plugins:?}"),
        )
        .replace(
            "listen = \"127.0.0.1:9465\"",
            &format!("listen = {address:?}"),
        )
        .replace(
            "# token = \"${APIARY_DASHBOARD_TOKEN}\"",
            "token = \"${APIARY_DASHBOARD_TOKEN}\"",
        );
    if let Some(url) = sink {
        text = text.replace(
            "url = \"sqlite://data/livestream.db\"",
            &format!("url = {url:?}"),
        );
    }
    assert!(
        text.contains(address) && text.contains("token = \"${"),
        "{text}"
    );
    std::fs::copy(example.join("dim_hbase.csv"), dir.join("dim_hbase.csv")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let path = dir.join("embedded.toml");
    std::fs::write(&path, text + extra).unwrap();
    path
}

/// A pipeline of the example with generated input, running with its
/// dashboard.
struct Screen {
    dir: tempfile::TempDir,
    config: PathBuf,
    address: String,
    gifts: PathBuf,
    visits: PathBuf,
    log: PathBuf,
    apiary: Option<Running>,
}

impl Screen {
    /// Writes the inputs and the configuration; nothing runs yet.
    fn new(sink: Option<&str>, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let address = free_address();
        let config = example_config(dir.path(), &address, sink, extra);
        let gifts = dir.path().join("data/live_gift_total.jsonl");
        let visits = dir.path().join("data/live_streaming_log.jsonl");
        std::fs::write(
            &gifts,
            generate(Topic::LiveGiftTotal, 6_000, 41, 0.005).text(),
        )
        .unwrap();
        std::fs::write(
            &visits,
            generate(Topic::LiveStreamingLog, 6_000, 42, 0.005).text(),
        )
        .unwrap();
        let log = dir.path().join("apiary.log");
        Self {
            dir,
            config,
            address,
            gifts,
            visits,
            log,
            apiary: None,
        }
    }

    /// Replaces `from` with `to` in the configuration.
    fn edit_config(self, from: &str, to: &str) -> Self {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
        self
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data/livestream.db")
    }

    fn lines(&self) -> i64 {
        [&self.gifts, &self.visits]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count() as i64)
            .sum()
    }

    /// `apiary run` with the dashboard, until every line is committed to
    /// the SQLite sink.
    fn run(self) -> Self {
        self.run_until(|s| sqlite_committed(&s.db()))
    }

    /// `apiary run` with the dashboard, until `committed` says every line
    /// is.
    fn run_until(mut self, committed: impl Fn(&Self) -> i64) -> Self {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = apiary()
            .env("APIARY_LOG", "info")
            .env("APIARY_DASHBOARD_TOKEN", TOKEN)
            .arg("run")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.apiary = Some(Running(child));
        self.wait_committed(committed);
        self
    }

    /// Waits until the lanes committed every line of the inputs.
    fn wait_committed(&self, committed: impl Fn(&Self) -> i64) {
        let lines = self.lines();
        wait_until(WAIT, "every line committed", &self.log, || {
            committed(self) == lines
        });
    }

    fn get(&self, path: &str) -> (u16, Value) {
        get(&self.address, path, Some(TOKEN))
    }
}

/// `GET path` with the token as a bearer (or none): the status and the
/// JSON body.
fn get(address: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, body) = request(address, path, token);
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: not JSON: {body}"));
    (status, json)
}

fn request(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: apiary\r\n{auth}\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The configured panels: id → query.
fn panels(config: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(config).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    config["dashboard"]["panel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap().to_owned();
            (field("id"), field("query"))
        })
        .collect()
}

/// The rows of `sql` in SQLite as JSON values, or the database's error.
fn sqlite_json(db: &Path, sql: &str) -> Result<Table, String> {
    use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};
    let url = format!("sqlite://{}?mode=ro", db.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let columns = rows.first().map_or(Vec::new(), |r| {
            r.columns().iter().map(|c| c.name().to_owned()).collect()
        });
        let values = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        let raw = r.try_get_raw(i).unwrap();
                        match raw.type_info().name() {
                            "NULL" => Value::Null,
                            "INTEGER" => r.get::<i64, _>(i).into(),
                            "REAL" => r.get::<f64, _>(i).into(),
                            _ => r.get::<String, _>(i).into(),
                        }
                    })
                    .collect()
            })
            .collect();
        Ok((columns, values))
    })
}

/// Every example panel as the API serves it equals its query on the
/// database; a panel whose table no rule writes yet reports the database's
/// error. Returns the panels compared by value.
fn assert_panels_match(screen: &Screen, read: impl Fn(&str) -> Result<Table, String>) -> usize {
    let mut compared = 0;
    for (id, query) in panels(&screen.config) {
        if ["broken-sql", "writes", "slow"].contains(&id.as_str()) {
            continue;
        }
        let (status, body) = screen.get(&format!("/api/panels/{id}"));
        assert_eq!(status, 200, "{id}: {body}");
        match read(&query) {
            Ok((columns, rows)) => {
                assert_eq!(body.get("error"), None, "{id}: {body}");
                assert_eq!(body["rows"], Value::from(rows), "panel {id}");
                if !columns.is_empty() {
                    assert_eq!(body["columns"], Value::from(columns), "panel {id}");
                }
                compared += 1;
            }
            Err(e) => {
                let error = body["error"].as_str().unwrap_or_else(|| {
                    panic!("{id}: the database says {e}, the API returns {body}")
                });
                assert!(
                    e.contains("no such table") || e.contains("doesn't exist"),
                    "{id}: {e}"
                );
                assert!(
                    error.contains("no such table") || error.contains("doesn't exist"),
                    "{id}: {error}"
                );
            }
        }
    }
    compared
}

type Table = (Vec<String>, Vec<Vec<Value>>);

#[test]
fn api_equals_the_database_for_every_example_panel_behind_the_token() {
    let metrics = free_address();
    // A query that never ends unless stopped.
    let slow = "\n[[dashboard.panel]]\nid = \"slow\"\ntitle = \"Slow\"\nchart = \"number\"\n\
                query = \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                SELECT COUNT(*) FROM c\"\n";
    let extra = format!("{BROKEN_PANELS}{slow}\n[metrics]\nlisten = {metrics:?}\n");
    let screen = Screen::new(None, &extra)
        .edit_config("[dashboard]\n", "[dashboard]\nquery-timeout = \"1s\"\n")
        .run();

    // The token: the API and the events need it; /metrics does not.
    assert_eq!(get(&screen.address, "/api/panels", None).0, 401);
    assert_eq!(get(&screen.address, "/api/dashboard", None).0, 401);
    assert_eq!(get(&screen.address, "/api/panels", Some("wrong")).0, 401);
    assert_eq!(
        get(&screen.address, "/api/panels/gift-type-totals", None).0,
        401
    );
    assert_eq!(request(&screen.address, "/api/events", None).0, 401);
    let (status, _) = get(&screen.address, &format!("/api/panels?token={TOKEN}"), None);
    assert_eq!(status, 200);
    let samples = scrape(&metrics);
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("apiary_records_total{")),
        "{samples:?}"
    );
    let (status, page) = request(&screen.address, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("/assets/dashboard.js"), "{page}");
    assert_eq!(
        request(&screen.address, "/assets/echarts.min.js", None).0,
        200
    );

    let (_, about) = screen.get("/api/dashboard");
    assert_eq!(about["charts"], true, "{about}");
    assert!(about["title"].as_str().unwrap().contains("直播"), "{about}");
    let (_, list) = screen.get("/api/panels");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gifts-last-6h",
            "online-viewers",
            "members-per-grade",
            "gift-type-totals",
            "province-grade-members",
            "top-10-gifters",
            "module-gift-totals",
            "broken-sql",
            "writes",
            "slow",
            "pipeline"
        ]
    );

    let compared = assert_panels_match(&screen, |sql| sqlite_json(&screen.db(), sql));
    assert!(compared >= 4, "only {compared} panels had tables");

    // The figures are the inputs' own.
    let (_, totals) = screen.get("/api/panels/gift-type-totals");
    let shown: BTreeMap<i64, i64> = totals["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    assert_eq!(
        shown,
        generate(Topic::LiveGiftTotal, 6_000, 41, 0.005).gift_totals()
    );

    // Broken panels show their error; the others keep working.
    let (status, broken) = screen.get("/api/panels/broken-sql");
    assert_eq!(status, 200);
    assert!(
        broken["error"].as_str().unwrap().contains("syntax error"),
        "{broken}"
    );
    let (_, writes) = screen.get("/api/panels/writes");
    assert!(
        writes["error"].as_str().unwrap().contains("readonly"),
        "{writes}"
    );
    assert_eq!(screen.get("/api/panels/gift-type-totals").1, totals);
    // A query over the time limit is stopped, twice over: the pool's two
    // connections are free again afterwards.
    for _ in 0..2 {
        let (status, slow) = screen.get("/api/panels/slow");
        assert_eq!(status, 200);
        assert_eq!(slow["error"], "the query took longer than 1s", "{slow}");
    }
    assert_eq!(screen.get("/api/panels/gift-type-totals").1, totals);
    assert_eq!(screen.get("/api/panels/nope").0, 404);

    // The pipeline panel: both lanes, every record counted.
    let (_, pipeline) = screen.get("/api/panels/pipeline");
    let rows = pipeline["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{pipeline}");
    let records: i64 = rows.iter().map(|r| r[2].as_i64().unwrap()).sum();
    assert_eq!(records, screen.lines(), "{pipeline}");
    let plugins: Vec<&str> = pipeline["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(plugins.contains(&"top-gifters"), "{pipeline}");

    // A new version of a plugin: the panel lists the swap.
    let next = screen.dir.path().join("next.wasm.tmp");
    std::fs::copy(test_plugin("gift-type-totals-next"), &next).unwrap();
    std::fs::rename(
        &next,
        screen.dir.path().join("plugins/gift-type-totals.wasm"),
    )
    .unwrap();
    wait_until(WAIT, "the swap on the pipeline panel", &screen.log, || {
        let (_, pipeline) = screen.get("/api/panels/pipeline");
        pipeline["reloads"].as_array().unwrap().iter().any(|r| {
            r["change"]
                .as_str()
                .unwrap()
                .starts_with("gift-type-totals 0.1.0 → ")
        })
    });
}

/// Reads server-sent events from `address` until one named `name`.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(address: &str) -> Self {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET /api/events?token={TOKEN} HTTP/1.1\r\nHost: apiary\r\n\r\n"
        )
        .unwrap();
        let mut events = Self(BufReader::new(stream));
        events.until("ready");
        events
    }

    fn until(&mut self, name: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .0
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("no `{name}` event: {e}"));
            assert!(n > 0, "the event stream ended before `{name}`");
            if line.trim_end() == format!("event: {name}") {
                return;
            }
        }
    }
}

#[test]
fn events_follow_checkpoints_live_and_standalone() {
    let mut screen = Screen::new(None, "").run();
    let mut events = Events::open(&screen.address);
    let more = generate(Topic::LiveGiftTotal, 2_000, 43, 0.0);
    append_lines(&screen.gifts, &more.lines);
    events.until("commit");
    screen.wait_committed(|s| sqlite_committed(&s.db()));
    assert_panels_match(&screen, |sql| sqlite_json(&screen.db(), sql));

    // Standalone: the same pages from the sink alone; a commit by another
    // process is seen by polling the stored offsets.
    let mut run = screen.apiary.take().unwrap();
    support::process::signal(&run, "INT");
    assert!(
        run.wait().unwrap().success(),
        "{}",
        log_tail(&screen.log, 20)
    );
    let log = std::fs::File::create(screen.dir.path().join("dashboard.log")).unwrap();
    let mut standalone = Running(
        apiary()
            .env("APIARY_DASHBOARD_TOKEN", TOKEN)
            .arg("dashboard")
            .arg(&screen.config)
            .args(["--listen", &screen.address])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut said = String::new();
    BufReader::new(standalone.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(
        said.trim(),
        format!("dashboard at http://{}/", screen.address)
    );
    assert_panels_match(&screen, |sql| sqlite_json(&screen.db(), sql));
    let (_, pipeline) = screen.get("/api/panels/pipeline");
    let offsets: i64 = pipeline["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[3].as_i64().unwrap())
        .sum();
    assert_eq!(offsets, screen.lines(), "{pipeline}");

    let mut events = Events::open(&screen.address);
    append_lines(
        &screen.visits,
        &generate(Topic::LiveStreamingLog, 1_000, 44, 0.0).lines,
    );
    // Another process commits: the same pipeline, its own dashboard elsewhere.
    let text = std::fs::read_to_string(&screen.config).unwrap();
    let batch = screen.dir.path().join("batch.toml");
    std::fs::write(&batch, text.replace(&screen.address, &free_address())).unwrap();
    let (out, _, stderr) = run_with_limit(
        apiary()
            .env("APIARY_DASHBOARD_TOKEN", TOKEN)
            .arg("run")
            .arg(&batch)
            .args(["--stop-when-idle", "300ms"]),
        WAIT,
    );
    assert!(out.status.success(), "{stderr}");
    events.until("commit");
    assert_panels_match(&screen, |sql| sqlite_json(&screen.db(), sql));
    drop(standalone);
}

#[test]
fn mariadb_panels_read_through_a_read_only_session() {
    let url = support::sql::Server::Mysql.fresh_database("dashboard");
    // A write, and billions of rows to count.
    let extra = "\n[[dashboard.panel]]\nid = \"writes\"\ntitle = \"Tries to write\"\n\
                 chart = \"table\"\nquery = \"DELETE FROM gift_type_totals\"\n\
                 [[dashboard.panel]]\nid = \"slow\"\ntitle = \"Slow\"\nchart = \"number\"\n\
                 query = \"SELECT COUNT(*) FROM information_schema.collations a, \
                 information_schema.collations b, information_schema.collations c, \
                 information_schema.collations d\"\n";
    let screen = Screen::new(Some(&url), extra)
        .edit_config("[dashboard]\n", "[dashboard]\nquery-timeout = \"1s\"\n")
        .run_until(|_| {
            let sql = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM apiary_offsets";
            support::sql::count(&url, sql)
        });
    let compared = assert_panels_match(&screen, |sql| mysql_json(&url, sql));
    assert!(compared >= 4, "only {compared} panels had tables");
    let (_, writes) = screen.get("/api/panels/writes");
    assert!(
        writes["error"].as_str().unwrap().contains("READ ONLY"),
        "{writes}"
    );
    for _ in 0..2 {
        let (_, slow) = screen.get("/api/panels/slow");
        assert_eq!(slow["error"], "the query took longer than 1s", "{slow}");
    }
    let compared_after = assert_panels_match(&screen, |sql| mysql_json(&url, sql));
    assert_eq!(compared_after, compared);
}

/// The rows of `sql` in MariaDB as JSON values (numbers for numeric
/// columns, text otherwise), or the database's error.
fn mysql_json(url: &str, sql: &str) -> Result<Table, String> {
    use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::MySqlPool::connect(url).await.unwrap();
        // The text protocol, where DATETIME columns read as text too.
        let rows = sqlx::raw_sql(sql)
            .fetch_all(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let columns = rows.first().map_or(Vec::new(), |r| {
            r.columns().iter().map(|c| c.name().to_owned()).collect()
        });
        let values = rows
            .iter()
            .map(|r| {
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if r.try_get_raw(i).unwrap().is_null() {
                            return Value::Null;
                        }
                        let text = r.try_get_unchecked::<String, _>(i).unwrap();
                        match c.type_info().name() {
                            "BIGINT" | "INT" | "TINYINT" | "SMALLINT" => {
                                text.parse::<i64>().unwrap().into()
                            }
                            _ => text.into(),
                        }
                    })
                    .collect()
            })
            .collect();
        Ok((columns, values))
    })
}

#[test]
fn browser_shows_every_panel_and_follows_a_commit() {
    let browser = repo_root().join("host/tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "host/tests/browser has no node_modules: run ./scripts/services start (or npm ci there)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "no /usr/bin/chromium: run ./scripts/services start"
    );
    let screen = Screen::new(None, &format!("{BROKEN_PANELS}{MORE_CHARTS}")).run();
    let (_, before) = screen.get("/api/panels/gift-type-totals");
    let total = |rows: &Value| -> i64 {
        rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_i64().unwrap())
            .sum()
    };
    let more = generate(Topic::LiveGiftTotal, 1_500, 45, 0.0);
    let chunk = screen.dir.path().join("more.jsonl");
    std::fs::write(&chunk, more.text()).unwrap();
    let expected = total(&before) + more.gift_totals().values().sum::<i64>();
    // The target directory: where the binary under test was built.
    let target = Path::new(env!("CARGO_BIN_EXE_apiary"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned();
    let screenshot = target.join("dashboard.png");
    let out = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .args(["--url", &format!("http://{}", screen.address)])
        .args(["--token", TOKEN])
        .arg("--append-from")
        .arg(&chunk)
        .arg("--append-to")
        .arg(&screen.gifts)
        .args(["--watch-panel", "gift-type-totals"])
        .args(["--expect-total", &expected.to_string()])
        .arg("--screenshot")
        .arg(&screenshot)
        .output()
        .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed: {}\n{stdout}\napiary's log ends:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tail(&screen.log, 30)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let compared = report["compared"].as_array().unwrap();
    for id in [
        "members-per-grade",
        "gift-type-totals",
        "top-10-gifters",
        "module-gift-totals",
        "members-by-province-grade",
        "visits-by-room-grade",
        "visits-per-minute",
        "gift-types-line",
    ] {
        assert!(compared.contains(&Value::from(id)), "{id}: {report}");
    }
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .contains(&Value::from("broken-sql")),
        "{report}"
    );
    assert_eq!(report["updated"]["after"], expected, "{report}");
    assert!(screenshot.exists());
    // The page shows what the database holds after the update, too.
    screen.wait_committed(|s| sqlite_committed(&s.db()));
    assert_panels_match(&screen, |sql| sqlite_json(&screen.db(), sql));
}

#[test]
fn the_kafka_example_has_the_same_dashboard() {
    // The tests above run embedded.toml's panels on SQLite and MariaDB;
    // kafka.toml (MySQL) must show the same ones.
    let dashboard = |file: &str| {
        let path = repo_root().join("examples/livestream").join(file);
        let config: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        config["dashboard"].clone()
    };
    assert_eq!(dashboard("kafka.toml"), dashboard("embedded.toml"));
}
