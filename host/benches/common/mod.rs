//! What the benches share: their settings from the environment, a plugin
//! directory of chosen files, the best of three timed runs, rates,
//! checkpoint quantiles, peak memory and CPU time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A count from the environment variable `name`, or `default` when it is
/// unset or not a number.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The MariaDB server of `scripts/services` (`BENCH_MYSQL` overrides it).
pub fn mysql_url() -> String {
    std::env::var("BENCH_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// The PostgreSQL server of `scripts/services` (`BENCH_POSTGRES`
/// overrides it).
pub fn postgres_url() -> String {
    std::env::var("BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A plugin directory holding only `names` from `root`.
pub fn only(root: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    static DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "apiary-bench-{}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        names.join("+")
    ));
    std::fs::create_dir_all(&dir)?;
    for name in names {
        std::fs::copy(root.join(name), dir.join(name))
            .map_err(|e| anyhow::anyhow!("{name}: {e} (run scripts/build-plugins)"))?;
    }
    Ok(dir)
}

/// Best of three runs.
pub fn time(mut f: impl FnMut() -> u64) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Records per second.
pub fn rate(records: usize, took: Duration) -> f64 {
    records as f64 / took.as_secs_f64()
}

/// A rate as `1.23M` or, below a million, `456k`.
pub fn fmt(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else {
        format!("{:.0}k", rate / 1e3)
    }
}

/// Every lane's checkpoint times in a run's summary, sorted, with their
/// sum.
pub fn checkpoint_times(summary: &apiary::pipeline::RunSummary) -> (Vec<Duration>, Duration) {
    let mut times: Vec<Duration> = summary
        .lanes
        .iter()
        .flat_map(|(_, s)| s.checkpoint_times.clone())
        .collect();
    times.sort();
    let total = times.iter().sum();
    (times, total)
}

/// The `q` quantile of `sorted` (zero when empty).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Starts this process's peak resident memory afresh (Linux's
/// `clear_refs`), so that the next reading covers what runs from here.
/// Memory freed earlier goes back to the system first: glibc keeps freed
/// heap resident, and a run would otherwise start from what the one before
/// it (a baseline holding a million rows as text) left behind.
pub fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
    // Best effort: without it, the peak covers the whole process.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since it started or since
/// `reset_peak_rss`, in MiB (zero where `/proc` cannot tell).
pub fn peak_rss_mib() -> u64 {
    status_mib("VmHWM:")
}

/// This process's resident memory now, in MiB.
pub fn rss_mib() -> u64 {
    status_mib("VmRSS:")
}

/// A field of `/proc/self/status` given in kB, in MiB.
fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// CPU time (user and system) this process and the children it waited
/// for (a database's command-line client, say) have used so far.
pub fn process_cpu() -> Duration {
    let used = |who| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is handed, which is zeroed.
        let usage = unsafe {
            libc::getrusage(who, usage.as_mut_ptr());
            usage.assume_init()
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

/// CPU time the running processes named `name` (a broker or a database
/// server on this machine) and the children they reaped have used so far,
/// from `/proc`; zero where `/proc` cannot tell. The reaped children count
/// a PostgreSQL backend whose connection closed during the reading.
pub fn processes_cpu(name: &str) -> Duration {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let named = std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name);
        let Some(stat) = named
            .then(|| std::fs::read_to_string(dir.join("stat")).ok())
            .flatten()
        else {
            continue;
        };
        // Fields 14 to 17 (utime, stime, and the reaped children's
        // cutime, cstime), counted after the command's closing
        // parenthesis, which may itself hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += tick(11) + tick(12) + tick(13) + tick(14);
    }
    Duration::from_millis(total * 1000 / ticks)
}

/// CPU time used over a stretch of a bench by this process (with its
/// waited-for children) and by the server processes named `server` (the
/// broker or the database on this machine).
#[derive(Clone, Copy)]
pub struct Cpu {
    /// This process and its children.
    pub process: Duration,
    /// The server's processes.
    pub server: Duration,
    server_name: &'static str,
}

impl Cpu {
    /// A reading now; [`Cpu::stop`] turns it into what was used since.
    pub fn now(server_name: &'static str) -> Self {
        Self {
            process: process_cpu(),
            server: processes_cpu(server_name),
            server_name,
        }
    }

    /// What was used since `self` was read.
    pub fn stop(self) -> Self {
        let now = Self::now(self.server_name);
        Self {
            process: now.process.saturating_sub(self.process),
            server: now.server.saturating_sub(self.server),
            server_name: self.server_name,
        }
    }

    /// Both together.
    pub fn total(self) -> Duration {
        self.process + self.server
    }
}

impl std::fmt::Display for Cpu {
    /// `process + server`, in seconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} + {:.2}",
            self.process.as_secs_f64(),
            self.server.as_secs_f64()
        )
    }
}
