//! What the plugin benches share: a plugin directory of chosen files, the
//! best of three timed runs, and rates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A plugin directory holding only `names` from `root`.
pub fn only(root: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "apiary-bench-{}-{}",
        std::process::id(),
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
