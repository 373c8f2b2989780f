//! `apiary plugin new`, `build` and `test`: a plugin project that builds,
//! with Apiary's WIT in it, a sample input and a replay fixture test over
//! it, in Rust, Python, JavaScript or C.

mod c;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The contract, as this `apiary` speaks it.
const WIT: &str = include_str!("../../../wit/plugin.wit");
/// The 0.2.0 contract, which Apiary keeps running: the Python, JavaScript
/// and C templates and kits are written against it.
const WIT_V2: &str = include_str!("../../../wit/v0.2.0/plugin.wit");

/// A plugin's language.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust, built for `wasm32-wasip2` with `wit-bindgen`.
    Rust,
    /// Python, built with `componentize-py`.
    Python,
    /// JavaScript, built with `componentize-qjs` (QuickJS).
    Js,
    /// C, built with clang and wasi-libc; bindings by `wit-bindgen c`.
    C,
}

/// What the plugin implements.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Events into rows.
    Rule,
    /// Raw records into events.
    Parser,
}

/// `apiary-plugin.toml`: how `apiary plugin build` builds the project.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Project {
    name: String,
    lang: Lang,
    kind: Kind,
    /// The WIT directory, relative to the project (default `wit`); a Rust
    /// plugin names its own in `wit_bindgen::generate!`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wit: Option<PathBuf>,
    /// The replay fixture `apiary plugin test` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    test: Option<Fixture>,
    /// More C sources and headers to build with, such as a library's.
    #[serde(default, skip_serializing_if = "CSources::is_empty")]
    c: CSources,
}

/// `[c]` of `apiary-plugin.toml`: what a C plugin builds with beside
/// `src/*.c`, relative to the project.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CSources {
    /// `.c` files, or directories whose `.c` files are all compiled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<PathBuf>,
    /// Include directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<PathBuf>,
}

impl CSources {
    fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.include.is_empty()
    }
}

/// `[test]` of `apiary-plugin.toml`: replay `input` as `topic` through the
/// plugin (and `plugins`), and compare what it prints with `expected`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Fixture {
    /// Logical topic of the input records.
    topic: String,
    /// One raw record per line, relative to the project.
    #[serde(default = "Fixture::default_input")]
    input: PathBuf,
    /// The rows and refusals the replay must print, relative to the project.
    #[serde(default = "Fixture::default_expected")]
    expected: PathBuf,
    /// Other components the replay needs, such as the parser a rule's input
    /// goes through; relative to the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    plugins: Vec<PathBuf>,
}

impl Fixture {
    fn default_input() -> PathBuf {
        "sample.jsonl".into()
    }

    fn default_expected() -> PathBuf {
        "sample.expected".into()
    }
}

/// What `apiary plugin test` found.
#[derive(Debug, PartialEq, Eq)]
pub enum TestOutcome {
    /// The replay printed what the expected file holds.
    Passed {
        /// Lines compared.
        lines: usize,
    },
    /// There was no expected file, or `--bless` was given: it was written.
    Wrote(PathBuf),
}

impl Kind {
    /// The WIT world a plugin of this kind implements.
    fn world(self) -> &'static str {
        match self {
            Kind::Rule => "rule-plugin",
            Kind::Parser => "parser-plugin",
        }
    }
}

/// Creates the project `<parent>/<name>` and returns its directory.
pub fn new(parent: &Path, name: &str, lang: Lang, kind: Kind) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || !name.as_bytes()[0].is_ascii_lowercase()
    {
        bail!(
            "plugin name `{name}`: use lowercase letters, digits and `-`, starting with a letter"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let snake = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{snake}}", &snake)
    };
    let write = |path: &str, text: &str| -> anyhow::Result<()> {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the project"))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let wit = match lang {
        Lang::Rust => WIT,
        Lang::Python | Lang::Js | Lang::C => WIT_V2,
    };
    write("wit/plugin.wit", wit)?;
    let (sample, topic) = match kind {
        Kind::Rule => (SAMPLE_GIFTS.to_owned(), "live_gift_total".to_owned()),
        Kind::Parser => (SAMPLE_CHAT.to_owned(), snake.clone()),
    };
    let project = Project {
        name: name.to_owned(),
        lang,
        kind,
        wit: None,
        test: Some(Fixture {
            topic: topic.clone(),
            input: Fixture::default_input(),
            expected: Fixture::default_expected(),
            plugins: Vec::new(),
        }),
        c: CSources::default(),
    };
    write("apiary-plugin.toml", &toml::to_string(&project)?)?;
    match lang {
        Lang::Rust => {
            write("Cargo.toml", &fill(CARGO_TOML))?;
            // The SDK goes into the project, so it builds without this
            // repository and without a registry that has the SDK.
            write("apiary-sdk/Cargo.toml", SDK_CARGO_TOML)?;
            for (path, text) in SDK_SOURCES {
                let text = text.replace(SDK_WIT_IN_REPO, SDK_WIT_IN_PROJECT);
                write(&format!("apiary-sdk/{path}"), &text)?;
            }
            let source = match kind {
                Kind::Rule => include_str!("rule.rs.txt"),
                Kind::Parser => include_str!("parser.rs.txt"),
            };
            write("src/lib.rs", &fill(source))?;
            write(".gitignore", "target/\n*.wasm\n")?;
        }
        Lang::Python => {
            let source = match kind {
                Kind::Rule => include_str!("rule.py.txt"),
                Kind::Parser => include_str!("parser.py.txt"),
            };
            write("app.py", &fill(source))?;
            write("requirements.txt", "componentize-py==0.25.1\n")?;
            write(".gitignore", "__pycache__/\n.venv/\n*.wasm\n")?;
        }
        Lang::Js => {
            let source = match kind {
                Kind::Rule => include_str!("rule.js.txt"),
                Kind::Parser => include_str!("parser.js.txt"),
            };
            write("app.js", &fill(source))?;
            write("package.json", &fill(PACKAGE_JSON))?;
            write(".gitignore", "node_modules/\n*.wasm\n")?;
        }
        Lang::C => {
            let source = match kind {
                Kind::Rule => include_str!("rule.c.txt"),
                Kind::Parser => include_str!("parser.c.txt"),
            };
            write(&format!("src/{snake}.c"), &fill(source))?;
            write(".gitignore", &format!("{}/\n*.wasm\n", c::GENERATED))?;
            // Generated now too, so an editor finds the header at once.
            c::bindings(&dir, &dir.join("wit"), kind.world())?;
        }
    }
    write("sample.jsonl", &sample)?;
    let toolchain = match lang {
        Lang::Rust => "rustup target add wasm32-wasip2",
        Lang::Python => "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
        Lang::Js => "npm install",
        Lang::C => "apt install clang lld wasi-libc libclang-rt-14-dev-wasm32   # Debian",
    };
    let readme = fill(README)
        .replace("{{topic}}", &topic)
        .replace("{{toolchain}}", toolchain);
    write("README.md", &readme)?;
    Ok(dir)
}

/// Builds the project in `dir` into `out` (default `<dir>/<name>.wasm`)
/// and returns that path.
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    // Tools run inside the project see the same paths.
    let dir = &std::path::absolute(dir)?;
    let project = Project::read(dir)?;
    let out = match out {
        Some(out) => std::path::absolute(out)?,
        None => dir.join(format!("{}.wasm", project.name)),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let world = project.kind.world();
    let wit = dir.join(project.wit.as_deref().unwrap_or(Path::new("wit")));
    match project.lang {
        Lang::Rust => {
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join("target"));
            run(Command::new("cargo")
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(dir.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target_dir))?;
            let built = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", project.name.replace('-', "_")));
            std::fs::copy(&built, &out)
                .with_context(|| format!("cannot copy {}", built.display()))?;
        }
        Lang::Python => {
            run(Command::new(local_tool(dir, ".venv/bin/componentize-py"))
                .arg("-d")
                .arg(&wit)
                .args(["-w", world, "componentize", "-p"])
                .arg(dir)
                .args(["app", "-o"])
                .arg(&out))
            .context(
                "componentize-py is needed: `python3 -m venv .venv && .venv/bin/pip install \
                 -r requirements.txt` in the project",
            )?;
        }
        Lang::Js => {
            // --sync: the non-async QuickJS runtime, as Apiary calls
            // plugins synchronously.
            run(
                Command::new(local_tool(dir, "node_modules/.bin/componentize-qjs"))
                    .current_dir(dir)
                    .arg("--wit")
                    .arg(&wit)
                    .args(["--js", "app.js", "--world", world, "--sync", "--output"])
                    .arg(&out),
            )
            .context("componentize-qjs is needed: `npm install` in the project")?;
        }
        Lang::C => c::build(dir, &wit, world, &project.c, &out)?,
    }
    Ok(out)
}

/// Builds the project in `dir`, replays its `[test]` fixture through it,
/// and compares the output with the expected file, which is written when
/// it is missing or `bless` is set.
pub fn test(dir: &Path, bless: bool) -> anyhow::Result<TestOutcome> {
    let dir = &std::path::absolute(dir)?;
    let project = Project::read(dir)?;
    let Some(fixture) = &project.test else {
        bail!(
            "{}: no [test] section (topic, input, expected, plugins)",
            dir.join("apiary-plugin.toml").display()
        );
    };
    let plugins = tempfile::tempdir()?;
    build(
        dir,
        Some(&plugins.path().join(format!("{}.wasm", project.name))),
    )?;
    for plugin in &fixture.plugins {
        let path = dir.join(plugin);
        let name = path.file_name().context("a [test] plugin names a file")?;
        std::fs::copy(&path, plugins.path().join(name))
            .with_context(|| format!("[test] plugins: cannot copy {}", path.display()))?;
    }
    let input = dir.join(&fixture.input);
    let file =
        std::fs::File::open(&input).with_context(|| format!("cannot open {}", input.display()))?;
    let (mut rows, mut refusals) = (Vec::new(), Vec::new());
    crate::replay::replay(
        plugins.path(),
        crate::lookup::Lookups::default(),
        &fixture.topic,
        1024,
        crate::config::BatchSection::default().max_record_bytes,
        std::io::BufReader::new(file),
        &mut rows,
        &mut refusals,
    )
    .with_context(|| {
        format!(
            "replaying {} as `{}` (a rule needs its input's parser under [test] plugins)",
            input.display(),
            fixture.topic
        )
    })?;
    // Rows, then refused records (`line N: plugin: reason`).
    rows.extend(refusals);
    let actual = String::from_utf8(rows)?;
    let expected_path = dir.join(&fixture.expected);
    if bless || !expected_path.exists() {
        std::fs::write(&expected_path, &actual)
            .with_context(|| format!("cannot write {}", expected_path.display()))?;
        return Ok(TestOutcome::Wrote(expected_path));
    }
    let expected = std::fs::read_to_string(&expected_path)?;
    let want: Vec<&str> = expected.lines().collect();
    let got: Vec<&str> = actual.lines().collect();
    let lines = want.len().max(got.len());
    if let Some(i) = (0..lines).find(|&i| want.get(i) != got.get(i)) {
        let shown =
            |line: Option<&&str>| line.map_or("nothing more".to_owned(), |l| format!("`{l}`"));
        bail!(
            "{} line {}: expected {}, the replay printed {} \
             (`apiary plugin test --bless` accepts the new output)",
            expected_path.display(),
            i + 1,
            shown(want.get(i)),
            shown(got.get(i)),
        );
    }
    Ok(TestOutcome::Passed { lines })
}

impl Project {
    /// `<dir>/apiary-plugin.toml`.
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let manifest = dir.join("apiary-plugin.toml");
        let text = std::fs::read_to_string(&manifest).with_context(|| {
            format!(
                "{} is not a plugin project (no apiary-plugin.toml)",
                dir.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))
    }
}

/// The project's own copy of a tool at `relative` if it has one, else the
/// tool's name, for `PATH` to find.
fn local_tool(dir: &Path, relative: &str) -> std::ffi::OsString {
    let local = dir.join(relative);
    if local.exists() {
        local.into_os_string()
    } else {
        Path::new(relative)
            .file_name()
            .expect("a tool name")
            .to_owned()
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", command.get_program());
    }
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
# Apiary's Rust SDK, copied into the project by `apiary plugin new`.
apiary-sdk = { path = "apiary-sdk" }

[profile.release]
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A project of its own, even inside another workspace.
[workspace]
"#;

/// The Rust SDK's manifest in a project: the repository's, without the
/// workspace it inherits from there.
const SDK_CARGO_TOML: &str = r#"[package]
name = "apiary-sdk"
description = "Rust guest SDK for Apiary plugins: bindings, builders, state helpers, parameters and event-time windows"
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"
publish = false

[dependencies]
roaring = { version = "0.12.0", optional = true }
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }

[features]
# `distinct`: exact distinct counts in compact state (roaring bitmaps).
distinct = ["dep:roaring"]
"#;

/// One of the Rust SDK's files, as the repository has it.
macro_rules! sdk_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../sdk/rust/", $path)))
    };
}

/// The Rust SDK's sources and README.
const SDK_SOURCES: [(&str, &str); 9] = [
    sdk_file!("README.md"),
    sdk_file!("src/lib.rs"),
    sdk_file!("src/host.rs"),
    sdk_file!("src/params.rs"),
    sdk_file!("src/schema.rs"),
    sdk_file!("src/testing.rs"),
    sdk_file!("src/window.rs"),
    sdk_file!("src/window/tests.rs"),
    sdk_file!("src/distinct.rs"),
];

/// Where the SDK finds the WIT in the repository, and in a project.
const SDK_WIT_IN_REPO: &str = r#"path: "../../wit","#;
const SDK_WIT_IN_PROJECT: &str = r#"path: "../wit","#;

const PACKAGE_JSON: &str = r#"{
  "name": "{{name}}",
  "private": true,
  "type": "module",
  "scripts": {
    "build": "apiary plugin build ."
  },
  "devDependencies": {
    "componentize-qjs": "0.4.5"
  }
}
"#;

const SAMPLE_GIFTS: &str = r#"{"user_id": 2001, "gift_type": 3, "gift_total_amount": 12, "room_id": 20210813, "ip": "123.0.0.1", "create_time": "2021-08-16 09:46:51", "update_time": "2021-08-16 09:46:51"}
{"user_id": 2002, "gift_type": 1, "gift_total_amount": 5, "room_id": 20210813, "ip": "123.0.0.2", "create_time": "2021-08-16 09:46:52", "update_time": "2021-08-16 09:46:52"}
{"user_id": 2003, "gift_type": 7, "gift_total_amount": 40, "room_id": 20210901, "ip": "123.0.0.3", "create_time": "2021-08-16 09:46:53", "update_time": "2021-08-16 09:46:53"}
"#;

const SAMPLE_CHAT: &str = "2001|20210813|hello\n2002|20210813|666\nnot a message\n";

const README: &str = r#"# {{name}}

An Apiary plugin, from `apiary plugin new`. The contract is `wit/plugin.wit`
(Apiary's own, documented type by type).

```sh
{{toolchain}}
apiary plugin build .         # -> {{name}}.wasm
apiary plugin test .          # replays sample.jsonl; the first run writes sample.expected
apiary inspect {{name}}.wasm
```

`apiary plugin test` builds the plugin, replays `sample.jsonl` as topic
`{{topic}}` through it, and compares the rows and refused records it prints
with `sample.expected`. The first run writes that file: read it, then keep
it beside the sample. Later runs fail on the first line that differs, and
`--bless` accepts a change you meant. The settings are under `[test]` in
`apiary-plugin.toml`; a rule needs the parser its input goes through, e.g.
`plugins = ["<apiary>/target/plugins/seed-json-parser.wasm"]` there.

To run it in a pipeline, drop the `.wasm` into the pipeline's plugin
directory; a running `apiary run` loads it.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_in_a_project_reads_the_project_wit() {
        let (_, lib) = SDK_SOURCES[1];
        assert_eq!(lib.matches(SDK_WIT_IN_REPO).count(), 2, "both worlds");
    }
}
