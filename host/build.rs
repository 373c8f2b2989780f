//! Fetches the dashboard's chart library, ECharts, at the version pinned in
//! `dashboard/package-lock.json`, so the binary embeds it and a user never
//! runs npm by hand. `npm ci` runs once per target directory (its result
//! stays in `OUT_DIR`); `APIARY_ECHARTS_JS=/path/echarts.min.js` takes a
//! local copy instead, for offline builds. Without either, the build goes
//! on with a warning and the page draws every panel as a table.

use std::path::{Path, PathBuf};
use std::process::Command;

const ASSET: &str = "echarts.min.js";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=dashboard/package.json");
    println!("cargo:rerun-if-changed=dashboard/package-lock.json");
    println!("cargo:rerun-if-env-changed=APIARY_ECHARTS_JS");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let asset = out.join(ASSET);
    let found = match std::env::var_os("APIARY_ECHARTS_JS") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", Path::new(&path).display());
            std::fs::copy(&path, &asset).map_err(|e| {
                format!(
                    "APIARY_ECHARTS_JS={}: cannot copy it: {e}",
                    Path::new(&path).display()
                )
            })
        }
        None => from_npm(&out).and_then(|js| {
            std::fs::copy(&js, &asset).map_err(|e| format!("cannot copy {}: {e}", js.display()))
        }),
    };
    let available = match found {
        Ok(_) => true,
        Err(why) => {
            // A path that never exists makes cargo run this again next
            // build, so a fixed network or npm is picked up.
            println!(
                "cargo:rerun-if-changed={}",
                out.join("npm/retry-until-installed").display()
            );
            println!(
                "cargo:warning=the dashboard will draw tables only, no charts: {why} \
                 (set APIARY_ECHARTS_JS=/path/to/echarts.min.js to embed a local copy)"
            );
            let fallback = "/* ECharts was not available when apiary was built. */\n";
            std::fs::write(&asset, fallback).expect("OUT_DIR is writable");
            false
        }
    };
    println!(
        "cargo:rustc-env=APIARY_ECHARTS={}",
        if available { "yes" } else { "no" }
    );
}

/// `npm ci` of `dashboard/` in `OUT_DIR/npm`, unless the same lock file
/// was installed there already; the path of `echarts.min.js`.
fn from_npm(out: &Path) -> Result<PathBuf, String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no manifest dir")?);
    let source = manifest.join("dashboard");
    let dir = out.join("npm");
    let js = dir.join("node_modules/echarts/dist").join(ASSET);
    let lock = std::fs::read(source.join("package-lock.json"))
        .map_err(|e| format!("cannot read dashboard/package-lock.json: {e}"))?;
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if js.exists() && installed.as_deref() == Some(lock.as_slice()) {
        return Ok(js);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), dir.join(file))
            .map_err(|e| format!("cannot copy dashboard/{file}: {e}"))?;
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let output = Command::new(npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("cannot run npm ({e}); install Node.js and npm"))?;
    if !output.status.success() {
        // A half-installed tree must not pass for a complete one next time.
        let _ = std::fs::remove_file(dir.join("package-lock.json"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "npm ci failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    if js.exists() {
        Ok(js)
    } else {
        Err(format!("npm ci installed no {}", js.display()))
    }
}
