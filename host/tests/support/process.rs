//! Background `apiary run` processes: start, signal, wait, and fail with
//! the tail of their log so a failure says whether Apiary or a service
//! stalled.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::apiary;

/// A background `apiary` killed when dropped, so a failing test leaves no
/// process behind.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `apiary run CONFIG ARGS…` in the background, its log appended to `log`.
pub fn spawn_run(config: &Path, args: &[&str], log: &Path) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = apiary()
        .env("APIARY_LOG", "info,librdkafka=warn")
        .arg("run")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Running(child)
}

/// The last `lines` lines of `log`.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for `done`, polling; after `limit` fails naming `what`, with the
/// tail of `log`.
pub fn wait_until(limit: Duration, what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; apiary's log ends:\n{}",
            log_tail(log, 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends signal `name` (`INT`, `TERM`, …) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `limit` for `child` to exit and returns its status.
pub fn wait_exit(child: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            panic!(
                "apiary did not stop within {limit:?}; its log ends:\n{}",
                log_tail(log, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ctrl-C, then a clean exit within a minute.
pub fn interrupt_and_wait(child: &mut Child, log: &Path) {
    stop_and_wait(child, "INT", log);
}

/// Signal `name`, then a clean exit within a minute that logs the signal.
pub fn stop_and_wait(child: &mut Child, name: &str, log: &Path) {
    signal(child, name);
    let status = wait_exit(child, Duration::from_secs(60), log);
    assert!(
        status.success(),
        "no clean stop; apiary's log ends:\n{}",
        log_tail(log, 40)
    );
    let logged = format!("signal=\"SIG{name}\"");
    assert!(
        std::fs::read_to_string(log).unwrap().contains(&logged),
        "apiary did not log {logged}; its log ends:\n{}",
        log_tail(log, 40)
    );
}

/// Runs `config` five times and kills each run with SIGKILL at a
/// pseudo-random point: the k-th once `committed()` reaches about k/6 of
/// `total`, plus up to 1/12 more. Exactly-once tests then run it to the end.
pub fn kill_five_times(
    config: &Path,
    log: &Path,
    total: i64,
    seed: u64,
    committed: impl Fn() -> i64,
) {
    let mut rng = livestream_example::SplitMix64::new(seed);
    for kill in 0..5 {
        let target = total * (kill + 1) / 6 + rng.below(total as u64 / 12) as i64;
        let mut child = spawn_run(config, &[], log);
        let started = Instant::now();
        while committed() < target {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "no progress to {target}; apiary's log ends:\n{}",
                log_tail(log, 40)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("kill {kill}: {} of {total} records committed", committed());
    }
}
