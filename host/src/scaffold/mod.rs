//! `apiary plugin new` and `apiary plugin build`: a plugin project that
//! builds, with Apiary's WIT in it, a sample input and the commands to try
//! it on, in Rust or Python.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The contract, as this `apiary` speaks it.
const WIT: &str = include_str!("../../../wit/plugin.wit");

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
    write("wit/plugin.wit", WIT)?;
    let project = Project {
        name: name.to_owned(),
        lang,
        kind,
    };
    write("apiary-plugin.toml", &toml::to_string(&project)?)?;
    match lang {
        Lang::Rust => {
            write("Cargo.toml", &fill(CARGO_TOML))?;
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
    }
    let (sample, topic) = match kind {
        Kind::Rule => (SAMPLE_GIFTS.to_owned(), "live_gift_total".to_owned()),
        Kind::Parser => (SAMPLE_CHAT.to_owned(), snake.clone()),
    };
    write("sample.jsonl", &sample)?;
    write("README.md", &fill(README).replace("{{topic}}", &topic))?;
    Ok(dir)
}

/// Builds the project in `dir` into `<dir>/<name>.wasm` and returns it.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("apiary-plugin.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} is not a plugin project (no apiary-plugin.toml)",
            dir.display()
        )
    })?;
    let project: Project =
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    let out = dir.join(format!("{}.wasm", project.name));
    let world = match project.kind {
        Kind::Rule => "rule-plugin",
        Kind::Parser => "parser-plugin",
    };
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
            let local = dir.join(".venv/bin/componentize-py");
            let tool = if local.exists() {
                local.into_os_string()
            } else {
                "componentize-py".into()
            };
            run(Command::new(&tool)
                .arg("-d")
                .arg(dir.join("wit"))
                .args(["-w", world, "componentize", "-p"])
                .arg(dir)
                .args(["app", "-o"])
                .arg(&out))
            .context(
                "componentize-py is needed: `python3 -m venv .venv && .venv/bin/pip install \
                 -r requirements.txt` in the project",
            )?;
        }
    }
    Ok(out)
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
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }

[profile.release]
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A project of its own, even inside another workspace.
[workspace]
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
apiary plugin build .                  # -> {{name}}.wasm
mkdir -p plugins && cp {{name}}.wasm plugins/
# A rule needs a parser for its input, e.g. Apiary's seed-json-parser.wasm:
# cp <apiary>/target/plugins/seed-json-parser.wasm plugins/
apiary inspect {{name}}.wasm
apiary replay --plugins plugins --topic {{topic}} --input sample.jsonl
```

`replay` prints every row as a JSON line and refused records on stderr with
their line numbers: keep its output for `sample.jsonl` next to the sample
and compare after each change. To run it in a pipeline, drop the `.wasm`
into the pipeline's plugin directory; a running `apiary run` loads it.
"#;
