//! The host as a trust boundary: a hostile rule (`host/tests/plugins/hostile-rule`,
//! steered by its parameters) cannot take the host's tables or another
//! plugin's, nor exhaust the host's memory, nor wedge the pipeline; and the
//! shipped plugins' totals stay exact beside it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use livestream_example::Topic;
use support::sql::Server;
use support::*;

const TOTALS: &str = "SELECT gift_type, gift_total_amount FROM gift_type_totals";

/// A pipeline in `root`: the gift parser, gift-type-totals and the hostile
/// rule (copied as each of `hostile`), over `lines` in a file, into SQLite.
/// `extra` is added to the `[plugins]` section, `params` are the hostile
/// rule's, `tail` goes at the end of the file.
struct Pipeline {
    root: PathBuf,
    config: PathBuf,
    /// The MariaDB or PostgreSQL database it writes into, if not SQLite.
    server: Option<String>,
}

impl Pipeline {
    fn new(root: &Path, lines: &[String], hostile: &[&str], plugins: &str, params: &str) -> Self {
        Self::with_tail(root, lines, hostile, plugins, params, "")
    }

    fn with_tail(
        root: &Path,
        lines: &[String],
        hostile: &[&str],
        plugins: &str,
        params: &str,
        tail: &str,
    ) -> Self {
        let dir = root.join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["seed-json-parser", "gift-type-totals"] {
            let file = format!("{name}.wasm");
            std::fs::copy(plugins_dir().join(&file), dir.join(&file)).unwrap();
        }
        for file in hostile {
            std::fs::copy(test_plugin("hostile-rule"), dir.join(file)).unwrap();
        }
        let input = root.join("gifts.jsonl");
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let params = if hostile.is_empty() {
            String::new()
        } else {
            format!("[plugins.params.hostile-rule]\n{params}")
        };
        let config = root.join("pipeline.toml");
        std::fs::write(
            &config,
            format!(
                "[plugins]\ndir = {dir:?}\n{plugins}\n{params}\n\
                 [source.file]\npath = {input:?}\ntopic = \"live_gift_total\"\n\
                 [sink.sql]\nurl = \"sqlite://out.db\"\n[batch]\nmax-records = 64\n{tail}"
            ),
        )
        .unwrap();
        Self {
            root: root.to_owned(),
            config,
            server: None,
        }
    }

    fn db(&self) -> PathBuf {
        self.root.join("out.db")
    }

    /// The same pipeline writing into `url` instead of SQLite.
    fn into_sink(mut self, url: &str) -> Self {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replace("url = \"sqlite://out.db\"", &format!("url = {url:?}"));
        std::fs::write(&self.config, text).unwrap();
        self.server = Some(url.to_owned());
        self
    }

    /// A two-integer query against the pipeline's sink.
    fn pairs(&self, sql: &str) -> BTreeMap<i64, i64> {
        match &self.server {
            Some(url) => support::sql::pairs(url, sql),
            None => sqlite_pairs(&self.db(), sql),
        }
    }

    /// A one-number query against the pipeline's sink.
    /// The offsets committed, summed over the lanes.
    fn committed(&self) -> i64 {
        let sql = match &self.server {
            Some(url) if url.starts_with("postgres") => Server::Postgres,
            _ => Server::Mysql,
        }
        .sum("next_offset", "apiary_offsets");
        self.count(&sql)
    }

    fn count(&self, sql: &str) -> i64 {
        match &self.server {
            Some(url) => support::sql::count(url, sql),
            None => sqlite_count(&self.db(), sql),
        }
    }

    /// `apiary check`: whether it passed, and its output.
    fn check(&self) -> (bool, String) {
        let (out, stdout, stderr) = output(apiary().arg("check").arg(&self.config));
        (out.status.success(), stdout + &stderr)
    }

    /// `apiary run … --stop-when-idle`: whether it succeeded, its stderr,
    /// and the process's peak resident memory of its own in bytes (see
    /// [`watch_peak`]).
    fn run(&self) -> (bool, String, u64) {
        self.run_with(&["--stop-when-idle", "500ms"])
    }

    fn run_with(&self, args: &[&str]) -> (bool, String, u64) {
        let log = self.root.join("run.log");
        let mut child = apiary()
            .env("APIARY_LOG", "warn")
            .arg("run")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let peak = watch_peak(&mut child, std::time::Duration::from_secs(180));
        let status = child.wait().unwrap();
        (
            status.success(),
            std::fs::read_to_string(&log).unwrap_or_default(),
            peak,
        )
    }
}

/// Polls `/proc/<pid>/status` until the child exits (killing it after
/// `limit`), returning the peak of its own memory: what it allocated, not
/// the pages of its executable it maps. The kernel's peak (`VmHWM`) counts
/// those too, and how many of the debug binary's half a gigabyte a process
/// maps varies from run to run (in one CI run, 160 MB more than alone).
/// So the peak is the highest `RssAnon` seen every 10 ms, or the kernel's
/// peak less the most file pages seen, if higher: that catches a spike
/// between two polls, and never counts a file page.
fn watch_peak(child: &mut std::process::Child, limit: std::time::Duration) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let started = std::time::Instant::now();
    let (mut anon, mut file, mut hwm) = (0, 0, 0);
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let kb = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .map_or(0, |kb| kb * 1024)
            };
            anon = anon.max(kb("RssAnon:"));
            file = file.max(kb("RssFile:"));
            hwm = hwm.max(kb("VmHWM:"));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("apiary did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let peak = anon.max(hwm.saturating_sub(file));
    eprintln!(
        "peak RSS {} MiB of its own ({} MiB with {} MiB of mapped files)",
        peak >> 20,
        hwm >> 20,
        file >> 20
    );
    peak
}

/// 2000 gifts, and the same with a 200 MB line as line 1001.
fn gifts_and_a_200_mb_line(seed: u64) -> (Vec<String>, Vec<String>) {
    let gifts = gifts(2_000, seed);
    let mut lines = gifts.clone();
    lines.insert(1_000, format!("{{\"pad\": \"{}\"}}", "x".repeat(200 << 20)));
    (gifts, lines)
}

fn gifts(count: usize, seed: u64) -> Vec<String> {
    generate(Topic::LiveGiftTotal, count, seed, 0.0).lines
}

/// Runs the pipeline and asserts the shipped rule's totals and the
/// committed offsets are exact over all of `lines`.
fn assert_others_exact(pipeline: &Pipeline, lines: &[String]) -> String {
    let (ok, log, _) = pipeline.run();
    assert!(ok, "apiary run failed: {log}");
    assert_eq!(pipeline.pairs(TOTALS), gift_totals_of(lines.iter()));
    assert_eq!(pipeline.committed(), lines.len() as i64);
    log
}

#[test]
fn host_tables_are_reserved_in_any_letter_case() {
    for table in [
        "apiary_offsets",
        "APIARY_State",
        "apiary_dead_letter_{yyyy}",
    ] {
        let root = tempfile::tempdir().unwrap();
        let lines = gifts(300, 3);
        let pipeline = Pipeline::new(
            root.path(),
            &lines,
            &["hostile-rule.wasm"],
            "",
            &format!("table = {table:?}"),
        );
        let (ok, out) = pipeline.check();
        assert!(!ok, "check must refuse table {table}: {out}");
        assert!(out.contains("reserved"), "{out}");
        assert!(out.contains(table), "{out}");
        let log = assert_others_exact(&pipeline, &lines);
        assert!(log.contains("reserved"), "{log}");
        let lanes = sqlite_count(&pipeline.db(), "SELECT COUNT(*) FROM apiary_offsets");
        assert_eq!(lanes, 1, "only the lane's own offset row");
    }
}

#[test]
fn a_table_differing_only_in_letter_case_is_already_taken() {
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(300, 5);
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        "table = \"Gift_Type_Totals\"",
    );
    let (ok, out) = pipeline.check();
    assert!(!ok, "check must refuse: {out}");
    assert!(
        out.contains("table `Gift_Type_Totals` is already written by `gift-type-totals`"),
        "{out}"
    );
    let log = assert_others_exact(&pipeline, &lines);
    assert!(log.contains("already written"), "{log}");
}

#[test]
fn a_second_plugin_of_the_same_name_is_refused_naming_both_files() {
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(300, 7);
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["a-hostile.wasm", "b-hostile.wasm"],
        "",
        "",
    );
    let (ok, out) = pipeline.check();
    assert!(!ok, "check must refuse: {out}");
    assert!(
        out.contains("b-hostile.wasm") && out.contains("a-hostile.wasm"),
        "{out}"
    );
    assert!(out.contains("`hostile-rule`"), "{out}");
    let log = assert_others_exact(&pipeline, &lines);
    assert!(log.contains("b-hostile.wasm"), "{log}");
}

/// Peak resident memory a run may reach in these tests: the host with its
/// compiled plugins stays well under it unless a plugin or a record makes
/// it hold what it should not.
const RSS_BOUND: u64 = 200 << 20;

#[test]
fn large_state_values_trap_and_the_host_stays_small() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(400, 11);
    // Every other gift stores 4 MiB, over the default 1 MiB value limit.
    for line in lines.iter_mut().step_by(2) {
        *line = as_user(line, 88);
    }
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        "state-bytes = \"4194304\"",
    );
    let (ok, log, peak) = pipeline.run();
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    let reasons = sqlite_text(
        &pipeline.db(),
        "SELECT reason FROM apiary_dead_letter WHERE plugin = 'hostile-rule'",
    );
    assert_eq!(reasons.len(), 200, "each big write refused");
    assert!(reasons[0].contains("state-value-limit"), "{}", reasons[0]);
    assert!(peak < RSS_BOUND, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn state_written_between_checkpoints_is_bounded() {
    // 100 KiB per gift: a batch of 64 writes 6.4 MB, under the 8 MiB
    // limit, and the lane checkpoints once half of it is written.
    let limits = "quarantine-after = 1000\n[plugins.limits.hostile-rule]\n\
                  state-write-limit = 8388608";
    let mut lines = gifts(300, 13);
    for line in lines.iter_mut() {
        *line = as_user(line, 88);
    }
    let root = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        limits,
        "state-bytes = \"102400\"",
    );
    let log = assert_others_exact(&pipeline, &lines);
    let dead = sqlite_count(&pipeline.db(), "SELECT COUNT(*) FROM apiary_dead_letter");
    assert_eq!(dead, 0, "no plugin was over its limit: {log}");
    let stored = sqlite_count(
        &pipeline.db(),
        "SELECT COUNT(*) FROM apiary_state WHERE skey LIKE 'big:%'",
    );
    assert_eq!(stored, 300);

    // 900 KiB per gift: a batch writes over the limit, and what is over
    // it is refused until the lane's next checkpoint.
    let root = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        limits,
        "state-bytes = \"921600\"",
    );
    let (ok, log, peak) = pipeline.run();
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    let reasons = sqlite_text(&pipeline.db(), "SELECT reason FROM apiary_dead_letter");
    assert!(!reasons.is_empty());
    assert!(
        reasons.iter().all(|r| r.contains("state-write-limit")),
        "{reasons:?}"
    );
    // After each checkpoint the plugin may write again.
    assert!(reasons.len() < 300, "{} refused", reasons.len());
    assert!(peak < RSS_BOUND, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn long_reasons_are_cut_and_refused_records_do_not_pile_up() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(3_000, 17);
    for line in lines.iter_mut() {
        *line = as_user(line, 44);
    }
    // 3,000 reasons of 100 KiB: 300 MB if they were kept whole.
    // The plugin's own memory (64 MiB here) counts in the process's too.
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "[plugins.limits.hostile-rule]\nmemory-limit = 67108864",
        "reason-bytes = \"102400\"",
    );
    let (ok, log, peak) = pipeline.run();
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    let lengths = sqlite_pairs(
        &pipeline.db(),
        "SELECT record_offset, LENGTH(reason) FROM apiary_dead_letter",
    );
    assert_eq!(lengths.len(), 3_000);
    let longest = lengths.values().max().copied().unwrap_or(0);
    assert!(longest <= 4096 + 32, "a reason of {longest} bytes kept");
    let reason = &sqlite_text(
        &pipeline.db(),
        "SELECT reason FROM apiary_dead_letter LIMIT 1",
    )[0];
    assert!(reason.ends_with("… (98304 bytes cut)"), "{reason}");
    assert!(peak < RSS_BOUND, "peak RSS {} MiB", peak >> 20);
}

/// `count` gifts of about 1 MB each (a padding field the parser ignores).
fn big_gifts(count: usize, seed: u64) -> Vec<String> {
    let pad = "x".repeat(1 << 20);
    gifts(count, seed)
        .into_iter()
        .map(|line| {
            let mut gift: serde_json::Value = serde_json::from_str(&line).unwrap();
            gift["pad"] = pad.clone().into();
            gift.to_string()
        })
        .collect()
}

#[test]
fn a_retry_carries_only_its_own_records() {
    let root = tempfile::tempdir().unwrap();
    let lines = big_gifts(60, 19);
    // A 60 MB batch does not fit the parser's 48 MiB; its halves do.
    let pipeline = Pipeline::with_tail(
        root.path(),
        &lines,
        &[],
        "[plugins.limits.seed-json-parser]\nmemory-limit = 50331648",
        "",
        "max-bytes = 268435456\n",
    );
    let log = assert_others_exact(&pipeline, &lines);
    let dead = sqlite_count(&pipeline.db(), "SELECT COUNT(*) FROM apiary_dead_letter");
    assert_eq!(dead, 0, "{log}");
}

#[test]
fn batch_max_bytes_bounds_a_batch() {
    let root = tempfile::tempdir().unwrap();
    let lines = big_gifts(200, 23);
    let pipeline = Pipeline::with_tail(root.path(), &lines, &[], "", "", "max-bytes = 4194304\n");
    let (ok, log, peak) = pipeline.run();
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    // 200 MB of records; at most a few 4 MiB batches are held at once.
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
}

/// A line of 200 MB, over `batch.max-record-bytes`: a dead letter of the
/// parser keeping its first bytes. The host never holds the whole line
/// (before the limit, it read it whole and handed it to the parser), and
/// every other line counts.
#[test]
fn a_record_over_max_record_bytes_is_a_dead_letter_never_held_whole() {
    let root = tempfile::tempdir().unwrap();
    let (gifts, lines) = gifts_and_a_200_mb_line(29);
    let tail = "max-record-bytes = 1048576\n";
    let pipeline = Pipeline::with_tail(root.path(), &lines, &[], "", "", tail);
    let (ok, log, peak) = pipeline.run_with(&["--until-end"]);
    assert!(ok, "{log}");
    assert_eq!(pipeline.pairs(TOTALS), gift_totals_of(gifts.iter()));
    assert_eq!(pipeline.committed(), lines.len() as i64);
    let dead = sqlite_rows(
        &pipeline.db(),
        "SELECT record_offset, plugin, LENGTH(record_value), reason FROM apiary_dead_letter",
        |r| {
            use sqlx::Row as _;
            let offset: i64 = r.get(0);
            let plugin: String = r.get(1);
            let kept: i64 = r.get(2);
            let reason: String = r.get(3);
            (offset, plugin, kept, reason)
        },
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (offset, plugin, kept, reason) = &dead[0];
    assert_eq!(
        (*offset, plugin.as_str(), *kept),
        (1_000, "seed-json-parser", 1 << 20)
    );
    assert!(
        reason.contains("more than 1048576 bytes (batch.max-record-bytes)"),
        "{reason}"
    );
    assert!(peak < 150 << 20, "peak RSS {} MiB", peak >> 20);
}

/// On MySQL a dead letter must fit one statement: a `max-record-bytes`
/// over `max_allowed_packet` stops the run at the start, saying so.
#[test]
fn max_record_bytes_past_the_mysql_packet_stops_with_a_message() {
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(10, 31);
    let url = Server::Mysql.fresh_database("record");
    let tail = "max-record-bytes = 33554432\n";
    let pipeline = Pipeline::with_tail(root.path(), &lines, &[], "", "", tail).into_sink(&url);
    let (ok, log, _) = pipeline.run_with(&["--until-end"]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("batch.max-record-bytes = 33554432 is more than a dead letter may hold"),
        "{log}"
    );
    assert!(log.contains("max_allowed_packet"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn plugin_logs_are_rate_limited_and_drops_counted() {
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(2_000, 29);
    // 1,000 lines per gift: two million lines if nothing held them back.
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "log-rate = 50",
        "log-lines = \"1000\"",
    );
    let started = std::time::Instant::now();
    let log = assert_others_exact(&pipeline, &lines);
    let seconds = started.elapsed().as_secs() + 1;
    let printed = log.lines().filter(|l| l.contains("of a flood")).count() as u64;
    // A second's worth at start, then 50 a second at most.
    assert!(
        printed <= 50 + 50 * seconds,
        "{printed} lines in {seconds} s"
    );
    assert!(
        log.contains("lines dropped"),
        "{}",
        &log[..log.len().min(2000)]
    );
}

/// A rule that traps in `on-timers` when the clock of `idle-timeout`
/// moves an idle lane's watermark does not stop the run: the error names
/// it, its timer stays pending for the lane's next batch, and everything
/// else commits.
#[test]
fn a_rule_failing_on_timers_the_clock_fires_does_not_stop_the_run() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(300, 57);
    let time_of = |line: &String| {
        let gift: serde_json::Value = serde_json::from_str(line).unwrap();
        livestream_format::parse_timestamp(gift["create_time"].as_str().unwrap()).unwrap()
    };
    let latest = lines.iter().map(time_of).max().unwrap();
    // An hour after every other gift: no batch moves the watermark to its
    // timer, only the clock does.
    let mut trap: serde_json::Value = serde_json::from_str(&as_user(&lines[0], 55)).unwrap();
    let mut time = String::new();
    livestream_format::push_timestamp(&mut time, latest + 3_600_000);
    trap["create_time"] = time.into();
    lines.push(trap.to_string());
    let address = free_address();
    let pipeline = Pipeline::with_tail(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        "",
        &format!("[time]\nidle-timeout = \"200ms\"\n[metrics]\nlisten = \"{address}\"\n"),
    );
    // While the failure holds the watermark, the metrics name the rule.
    let failed = |samples: &BTreeMap<String, f64>| {
        samples.iter().any(|(name, value)| {
            name.starts_with("apiary_timers_failed{")
                && name.ends_with(",plugin=\"hostile-rule\"}")
                && *value == 1.0
        })
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let ((ok, log, _), seen) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if try_scrape(&address).is_ok_and(|samples| failed(&samples)) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            false
        });
        let run = pipeline.run_with(&["--stop-when-idle", "3s"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (run, watcher.join().unwrap())
    });
    assert!(ok, "the run stopped: {log}");
    assert!(
        log.contains("idle watermark") && log.contains("trapped in on-timers"),
        "{log}"
    );
    assert!(
        seen,
        "no apiary_timers_failed for hostile-rule while it held the watermark"
    );
    assert_eq!(pipeline.pairs(TOTALS), gift_totals_of(lines.iter()));
    assert_eq!(pipeline.committed(), lines.len() as i64);
    assert_eq!(pipeline.count("SELECT COUNT(*) FROM apiary_timers"), 1);
}

/// A batch that fails on its timers is retried in halves as if its events
/// had never been seen: each half's watermark follows that half's events,
/// so a later half's gifts are not refused as late because of the
/// attempt that failed.
#[test]
fn a_batch_retried_after_its_timers_failed_keeps_its_own_events_on_time() {
    let root = tempfile::tempdir().unwrap();
    // One batch of 64 gifts, each setting a timer at its time: 63 in the
    // first minute, in order, the last five minutes on. The batch fires 63
    // timers at once and the rule fails on more than 40, so it is retried
    // in halves, which fire 31 and 32. Retried with the whole batch's
    // latest time, the first half would close the first minute's window
    // and the second half's gifts would be late for it.
    let start = 1_767_225_600_000_i64; // a minute boundary
    let mut lines = gifts(64, 61);
    for (i, line) in (0..).zip(&mut lines) {
        let mut gift: serde_json::Value = serde_json::from_str(&as_user(line, 56)).unwrap();
        let mut time = String::new();
        let offset = if i == 63 { 300_000 } else { i * 900 };
        livestream_format::push_timestamp(&mut time, start + offset);
        gift["create_time"] = time.into();
        *line = gift.to_string();
    }
    let pipeline = Pipeline::with_tail(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        "max-timers = \"40\"",
        "[plugins.params.gift-windows]\nsize = \"1m\"\nslide = \"1m\"\n",
    );
    std::fs::copy(
        plugins_dir().join("gift-windows.wasm"),
        root.path().join("plugins/gift-windows.wasm"),
    )
    .unwrap();
    let log = assert_others_exact(&pipeline, &lines);
    // 63 of the rule's timers fired, never more than 40 in a call: the
    // batch was split.
    let pending = "SELECT COUNT(*) FROM apiary_timers WHERE plugin = 'hostile-rule'";
    assert_eq!(pipeline.count(pending), 1, "{log}");
    let refused = sqlite_text(&pipeline.db(), "SELECT reason FROM apiary_dead_letter");
    assert!(refused.is_empty(), "{refused:?}");
    let first_minute: i64 = lines[..63]
        .iter()
        .map(|line| {
            let gift: serde_json::Value = serde_json::from_str(line).unwrap();
            gift["gift_total_amount"].as_i64().unwrap()
        })
        .sum();
    let closed = pipeline.count("SELECT SUM(gift_total_amount) FROM gifts_6h");
    assert_eq!(closed, first_minute, "{log}");
}

/// A rule whose `on-timers` traps on a timer that a record's event time
/// made due is quarantined: the timer is at fault, not the record, so no
/// record goes to the dead letters and no other rule loses an event. The
/// lane holds its batch until the rule changes, then goes on.
#[test]
fn a_rule_failing_on_its_timers_in_a_batch_is_quarantined_and_nothing_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(300, 67);
    lines[100] = as_user(&lines[100], 55);
    let pipeline = Pipeline::new(root.path(), &lines, &["hostile-rule.wasm"], "", "");
    let (ok, log, _) = pipeline.run_with(&["--until-end"]);
    assert!(
        !ok,
        "the run finished though a lane holds records back: {log}"
    );
    assert!(
        log.contains("plugin `hostile-rule` quarantined as its on-timers fails")
            && log.contains("trapped in on-timers"),
        "{log}"
    );
    let held_at = pipeline.committed();
    assert!(
        (64..300).contains(&held_at),
        "the lane committed up to the held batch: {held_at}"
    );
    assert_eq!(
        pipeline.pairs(TOTALS),
        gift_totals_of(lines[..held_at as usize].iter())
    );
    assert_eq!(pipeline.count("SELECT COUNT(*) FROM apiary_dead_letter"), 0);

    // Without the rule, the lane goes on from where it held.
    std::fs::remove_file(root.path().join("plugins/hostile-rule.wasm")).unwrap();
    assert_others_exact(&pipeline, &lines);
    assert_eq!(pipeline.count("SELECT COUNT(*) FROM apiary_dead_letter"), 0);
}

#[test]
fn replay_isolates_a_failing_record_like_run() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(200, 31);
    lines[50] = as_user(&lines[50], 13);
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dir = root.path().join("plugins");
    let (stdout, stderr) = replay_plugins(
        &dir,
        &[
            &plugins_dir().join("seed-json-parser.wasm"),
            &plugins_dir().join("gift-type-totals.wasm"),
            &test_plugin("hostile-rule"),
        ],
        "live_gift_total",
        &input,
    );
    let refused: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line")).collect();
    assert_eq!(refused.len(), 1, "{stderr}");
    assert!(
        refused[0].starts_with("line 51: hostile-rule: "),
        "{stderr}"
    );
    // gift-type-totals still counted every gift, the 51st too.
    let mut replayed = BTreeMap::new();
    for line in stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["output"] == "gift_type_totals" {
            let row = &row["row"];
            *replayed
                .entry(row["gift_type"].as_i64().unwrap())
                .or_default() += row["gift_total_amount"].as_i64().unwrap();
        }
    }
    assert_eq!(replayed, gift_totals_of(lines.iter()));
}

/// `apiary replay` holds no more of a line than `--max-record-bytes`: a
/// 200 MB line is refused for the parser, by its line number, and every other
/// gift counts (before the bound, replay read each line whole).
#[test]
fn replay_refuses_a_line_over_max_record_bytes_without_holding_it() {
    let root = tempfile::tempdir().unwrap();
    let (gifts, lines) = gifts_and_a_200_mb_line(41);
    let input = root.path().join("gifts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    drop(lines);
    let dir = root.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for plugin in ["seed-json-parser", "gift-type-totals"] {
        let name = format!("{plugin}.wasm");
        std::fs::copy(plugins_dir().join(&name), dir.join(&name)).unwrap();
    }
    let (stdout, stderr) = (root.path().join("out"), root.path().join("err"));
    let mut child = apiary()
        .args(["replay", "--max-record-bytes", "1048576", "--plugins"])
        .arg(&dir)
        .args(["--topic", "live_gift_total", "--input"])
        .arg(&input)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let peak = watch_peak(&mut child, std::time::Duration::from_secs(180));
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let refused: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line")).collect();
    assert_eq!(
        refused,
        ["line 1001: seed-json-parser: a record of more than 1048576 bytes (--max-record-bytes)"]
    );
    let mut replayed = BTreeMap::new();
    for line in std::fs::read_to_string(&stdout).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let row = &row["row"];
        *replayed
            .entry(row["gift_type"].as_i64().unwrap())
            .or_default() += row["gift_total_amount"].as_i64().unwrap();
    }
    assert_eq!(replayed, gift_totals_of(gifts.iter()));
    assert!(peak < 150 << 20, "peak RSS {} MiB", peak >> 20);
}

/// The SQL sinks every dialect test runs on: SQLite, and fresh MariaDB
/// and PostgreSQL databases.
fn sinks(test: &str) -> Vec<Option<String>> {
    vec![
        None,
        Some(Server::Mysql.fresh_database(test)),
        Some(Server::Postgres.fresh_database(test)),
    ]
}

#[test]
fn an_add_that_would_overflow_saturates_at_every_boundary_on_every_dialect() {
    let mut lines = gifts(400, 37);
    // Three gifts of i64::MAX by user 99: two in one batch, one later.
    for at in [10, 20, 300] {
        lines[at] = as_user(&lines[at], 99);
    }
    // Rows merged in the lane's buffer (one checkpoint), then in the
    // database (a checkpoint per row).
    for (sink, tail) in [("", ""), ("max-rows = 1\n", "")] {
        for url in sinks("overflow") {
            let root = tempfile::tempdir().unwrap();
            let mut pipeline =
                Pipeline::with_tail(root.path(), &lines, &["hostile-rule.wasm"], "", "", tail);
            if !sink.is_empty() {
                let text = std::fs::read_to_string(&pipeline.config).unwrap();
                let text = text.replace("[sink.sql]\n", &format!("[sink.sql]\n{sink}"));
                std::fs::write(&pipeline.config, text).unwrap();
            }
            if let Some(url) = &url {
                pipeline = pipeline.into_sink(url);
            }
            assert_others_exact(&pipeline, &lines);
            let gifts =
                pipeline.pairs("SELECT user_id, gifts FROM hostile_gifts WHERE user_id = 99");
            assert_eq!(gifts[&99], i64::MAX, "{url:?} {sink}");
            if url.is_none() {
                let kind = sqlite_text(
                    &pipeline.db(),
                    "SELECT typeof(gifts) FROM hostile_gifts WHERE user_id = 99",
                );
                assert_eq!(kind, ["integer"]);
            }
        }
    }
}

#[test]
fn values_past_the_host_tables_columns_never_wedge_a_lane() {
    for url in sinks("columns") {
        let mut lines = gifts(300, 41);
        for line in lines.iter_mut().step_by(3) {
            *line = as_user(line, 88);
        }
        for line in lines.iter_mut().skip(1).step_by(3) {
            *line = as_user(line, 44);
        }
        // State keys of 300 bytes, reasons of 100 KiB (over MySQL's TEXT).
        let root = tempfile::tempdir().unwrap();
        let mut pipeline = Pipeline::new(
            root.path(),
            &lines,
            &["hostile-rule.wasm"],
            "",
            "state-bytes = \"8\"\nkey-bytes = \"300\"\nreason-bytes = \"102400\"",
        );
        if let Some(url) = &url {
            pipeline = pipeline.into_sink(url);
        }
        let log = assert_others_exact(&pipeline, &lines);
        let refused = pipeline.pairs(
            "SELECT record_offset, LENGTH(reason) FROM apiary_dead_letter \
             WHERE reason LIKE '%state key of 30% bytes%'",
        );
        assert_eq!(refused.len(), 100, "{url:?}: {log}");
        let cut = pipeline
            .count("SELECT COUNT(*) FROM apiary_dead_letter WHERE reason LIKE '%bytes cut)'");
        assert_eq!(cut, 100, "{url:?}");
    }
}

#[test]
fn names_past_the_host_tables_columns_are_refused_by_check() {
    let lines = gifts(100, 43);
    let root = tempfile::tempdir().unwrap();
    let long = "p".repeat(65);
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        &format!("name = {long:?}"),
    );
    let (ok, out) = pipeline.check();
    assert!(!ok, "{out}");
    assert!(out.contains("1 to 64"), "{out}");
    assert_others_exact(&pipeline, &lines);

    // A source path longer than the 191 bytes stored per lane.
    let root = tempfile::tempdir().unwrap();
    let deep = root.path().join("d".repeat(100)).join("e".repeat(100));
    std::fs::create_dir_all(&deep).unwrap();
    let pipeline = Pipeline::new(&deep, &lines, &[], "", "");
    let (ok, out) = pipeline.check();
    assert!(!ok, "{out}");
    assert!(out.contains("`source.file.path`"), "{out}");
    let (ok, log, _) = pipeline.run();
    assert!(!ok && log.contains("`source.file.path`"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn until_end_reads_every_file_to_its_end_at_start_and_stops() {
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(2_000, 47);
    let pipeline = Pipeline::new(root.path(), &lines, &[], "", "");
    let (ok, log, _) = pipeline.run_with(&["--until-end"]);
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    assert_eq!(pipeline.committed(), 2_000);
    // A last line without its newline is part of the file's end too.
    let input = root.path().join("gifts.jsonl");
    let more = gifts(10, 53);
    let mut text = more.join("\n");
    text.insert(0, '\n');
    std::fs::write(&input, lines.join("\n") + &text).unwrap();
    let (ok, log, _) = pipeline.run_with(&["--until-end"]);
    assert!(ok, "{log}");
    assert_eq!(pipeline.committed(), 2_010);
}

#[test]
fn sigterm_commits_the_batch_in_flight_and_leaves_the_rest_unread() {
    let root = tempfile::tempdir().unwrap();
    let mut lines = gifts(3_000, 59);
    // From the 1,025th gift (batch 17) on every gift loops until the 1 s
    // time limit: isolating a batch of them takes minutes.
    for line in lines.iter_mut().skip(1_024) {
        *line = as_user(line, 66);
    }
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "batch-timeout = \"1s\"\nquarantine-after = 100000",
        "",
    );
    // A checkpoint after every batch.
    let text = std::fs::read_to_string(&pipeline.config).unwrap();
    let text = text.replace("[sink.sql]\n", "[sink.sql]\nmax-rows = 1\n");
    std::fs::write(&pipeline.config, text).unwrap();
    let log = root.path().join("run.log");
    let mut child = support::process::spawn_run(&pipeline.config, &[], &log);
    support::process::wait_until(
        std::time::Duration::from_secs(120),
        "the first 1,024 records",
        &log,
        || sqlite_committed(&pipeline.db()) >= 1_024,
    );
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // The batch in flight ends within its time limit; nothing else runs.
    let peak = watch_peak(&mut child, std::time::Duration::from_secs(30));
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("SIGTERM"), "{text}");
    assert!(peak < RSS_BOUND);
    let committed = sqlite_committed(&pipeline.db()) as usize;
    assert!(
        (1_024..3_000).contains(&committed),
        "stopped early: {committed}"
    );
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines[..committed].iter())
    );
}

#[test]
fn plugin_names_and_versions_cannot_forge_log_lines() {
    let lines = gifts(100, 61);
    let root = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        // TOML escapes: a newline and ESC.
        r#"version = "1.0\nERROR apiary: forged\u001b[31m""#,
    );
    let (out, stdout, _) = output(
        apiary()
            .arg("inspect")
            .arg(root.path().join("plugins/hostile-rule.wasm"))
            .arg("--config")
            .arg(&pipeline.config),
    );
    assert!(out.status.success());
    assert!(
        stdout.contains("hostile-rule 1.0\\nERROR apiary: forged\\u{1b}[31m"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    let log = assert_others_exact(&pipeline, &lines);
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR apiary: forged")),
        "{log}"
    );

    // A name with a newline is refused, and the refusal is one line too.
    let root = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(
        root.path(),
        &lines,
        &["hostile-rule.wasm"],
        "",
        "name = \"x\\nERROR apiary: forged\"",
    );
    let (ok, out) = pipeline.check();
    assert!(!ok, "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("ERROR apiary: forged")),
        "{out}"
    );
}

#[test]
fn odd_plugin_dir_entries_are_skipped_with_one_warning_each() {
    let lines = gifts(200, 67);
    let root = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(root.path(), &lines, &[], "", "");
    let dir = root.path().join("plugins");
    std::fs::create_dir(dir.join("a-directory.wasm")).unwrap();
    let fifo = dir.join("a-fifo.wasm");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling.wasm")).unwrap();
    std::os::unix::fs::symlink(dir.join("loop.wasm"), dir.join("loop.wasm")).unwrap();
    let (ok, out) = pipeline.check();
    assert!(ok, "{out}");
    let (ok, log, _) = pipeline.run();
    assert!(ok, "{log}");
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
    for name in [
        "a-directory.wasm",
        "a-fifo.wasm",
        "dangling.wasm",
        "loop.wasm",
    ] {
        let warnings = log.lines().filter(|l| l.contains(name)).count();
        assert_eq!(warnings, 1, "{name}: {log}");
    }
}

#[test]
fn a_stopped_process_is_not_idle() {
    // A file source: the run loop's idle count is what is tested, not how
    // fast a broker connection recovers from a frozen client.
    let root = tempfile::tempdir().unwrap();
    let lines = gifts(60_000, 71);
    let pipeline = Pipeline::new(root.path(), &lines, &[], "", "");
    let log = root.path().join("run.log");
    let mut child =
        support::process::spawn_run(&pipeline.config, &["--stop-when-idle", "8s"], &log);
    support::process::wait_until(
        std::time::Duration::from_secs(120),
        "every record",
        &log,
        || sqlite_committed(&pipeline.db()) == 60_000,
    );
    // Stopped for twice the idle limit: were stopped time idle time, the
    // run would end at once when continued; it waits the limit out instead.
    let pid = child.id().to_string();
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(16));
    signal("-CONT");
    let continued = std::time::Instant::now();
    watch_peak(&mut child, std::time::Duration::from_secs(120));
    let waited = continued.elapsed();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "the run ended {waited:?} after it was continued: {text}"
    );
    assert_eq!(
        sqlite_pairs(&pipeline.db(), TOTALS),
        gift_totals_of(lines.iter())
    );
}

/// A Kafka pipeline over `topic` in `root` with the gift parser,
/// gift-type-totals and, if given, the hostile rule's `[plugins]` lines.
fn kafka_pipeline(root: &Path, topic: &str, hostile: Option<&str>) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["seed-json-parser", "gift-type-totals"] {
        let file = format!("{name}.wasm");
        std::fs::copy(plugins_dir().join(&file), dir.join(&file)).unwrap();
    }
    if hostile.is_some() {
        std::fs::copy(test_plugin("hostile-rule"), dir.join("hostile-rule.wasm")).unwrap();
    }
    let config = root.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = {dir:?}\n{}\n[source.kafka]\nbrokers = {:?}\ngroup = \"{topic}-g\"\n\
             topics = {{ {topic:?} = \"live_gift_total\" }}\n\
             [sink.sql]\nurl = \"sqlite://out.db\"\ninterval = \"100ms\"\n\
             [batch]\nmax-records = 64\n",
            hostile.unwrap_or_default(),
            support::kafka::broker()
        ),
    )
    .unwrap();
    config
}

#[test]
fn until_end_reads_every_kafka_partition_to_its_end_at_start() {
    use support::kafka::{create_topic, produce};
    let root = tempfile::tempdir().unwrap();
    let topic = create_topic("bounded", 3);
    let lines = gifts(5_000, 73);
    produce(&topic, &lines);
    let config = kafka_pipeline(root.path(), &topic, None);
    let (out, _, stderr) = run_with_limit(
        apiary().arg("run").arg(&config).arg("--until-end"),
        std::time::Duration::from_secs(120),
    );
    assert!(out.status.success(), "{stderr}");
    let db = root.path().join("out.db");
    assert_eq!(sqlite_committed(&db), 5_000);
    assert_eq!(sqlite_pairs(&db, TOTALS), gift_totals_of(lines.iter()));

    // A quarantined lane ends the bounded run with an error naming it.
    let root = tempfile::tempdir().unwrap();
    let topic = create_topic("bounded-held", 1);
    let mut lines = gifts(1_000, 79);
    for line in &mut lines[500..560] {
        *line = as_user(line, 5_000);
    }
    produce(&topic, &lines);
    let config = kafka_pipeline(root.path(), &topic, Some("quarantine-after = 5"));
    let (out, _, stderr) = run_with_limit(
        apiary().arg("run").arg(&config).arg("--until-end"),
        std::time::Duration::from_secs(120),
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "lane {topic}[0] stopped before the end of its input"
        )),
        "{stderr}"
    );
}
