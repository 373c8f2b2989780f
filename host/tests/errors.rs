//! Bad configuration, bad plugins and bad tables: each gives a clear
//! message naming what and where, and a non-zero exit.

mod support;

use std::path::Path;

use livestream_example::Topic;
use support::*;

fn check(config: &Path) -> (bool, String) {
    let (out, _, stderr) = output(apiary().arg("check").arg(config));
    (out.status.success(), stderr)
}

/// A plugin directory with copies of the real plugins plus `extra`.
fn plugin_dir_with(dir: &Path, extra: &[(&str, &[u8])]) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for entry in std::fs::read_dir(plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, plugins.join(path.file_name().unwrap())).unwrap();
    }
    for (name, bytes) in extra {
        std::fs::write(plugins.join(name), bytes).unwrap();
    }
    plugins
}

fn config_with_plugins(dir: &Path, plugins: &Path, input: &Path) -> std::path::PathBuf {
    let config = embedded_config(dir, &[(input, "live_gift_total")]);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(&format!("{:?}", plugins_dir()), &format!("{plugins:?}"), 1);
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), &[(Path::new("in.jsonl"), "live_gift_total")]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("topic =", "topik =");
    std::fs::write(&config, text).unwrap();
    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(stderr.contains("unknown field `topik`"), "{stderr}");
    assert!(stderr.contains("pipeline.toml"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(stderr.contains("topik"), "{stderr}");
}

#[test]
fn missing_plugin_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let missing = dir.path().join("no-such-dir");
    let config = config_with_plugins(dir.path(), &missing, &input);
    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("no-such-dir") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read plugin dir") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}

#[test]
fn garbage_wasm_is_rejected_by_name_while_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let plugins = plugin_dir_with(dir.path(), &[("garbage.wasm", &garbage)]);
    let gifts = generate(Topic::LiveGiftTotal, 2_000, 9, 0.0);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, gifts.text()).unwrap();
    let config = config_with_plugins(dir.path(), &plugins, &input);

    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("garbage.wasm") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );

    let stderr = run_until_idle(&config);
    assert!(
        stderr.contains("garbage.wasm"),
        "the rejection is logged: {stderr}"
    );
    let totals = sqlite_pairs(
        &dir.path().join("out.db"),
        "SELECT gift_type, gift_total_amount FROM gift_type_totals",
    );
    assert_eq!(totals, gifts.gift_totals());

    let (out, _, stderr) = output(apiary().arg("inspect").arg(plugins.join("garbage.wasm")));
    assert!(!out.status.success());
    assert!(stderr.contains("garbage.wasm"), "{stderr}");
}

#[test]
fn component_of_another_world_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let command = std::fs::read(test_plugin("not-a-plugin")).unwrap();
    let plugins = plugin_dir_with(dir.path(), &[("not-a-plugin.wasm", &command)]);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let config = config_with_plugins(dir.path(), &plugins, &input);
    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(stderr.contains("not-a-plugin.wasm"), "{stderr}");
    assert!(stderr.contains("matches no Apiary world"), "{stderr}");
    assert!(
        stderr.contains("wasi:cli/run"),
        "names what it does export: {stderr}"
    );
}

#[test]
fn topic_without_parser_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{}\n").unwrap();
    let config = embedded_config(dir.path(), &[(&input, "huya_danmaku")]);
    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(stderr.contains("`huya_danmaku`"), "{stderr}");
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(
        stderr.contains("no parser plugin reads topic `huya_danmaku`"),
        "{stderr}"
    );
}

#[test]
fn table_with_another_shape_stops_with_table_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, generate(Topic::LiveGiftTotal, 10, 1, 0.0).text()).unwrap();
    let config = embedded_config(dir.path(), &[(&input, "live_gift_total")]);
    let db = dir.path().join("out.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE gift_type_totals (gift_type INTEGER PRIMARY KEY, total TEXT)")
            .execute(&pool)
            .await
            .unwrap();
    });
    let (ok, stderr) = check(&config);
    assert!(!ok);
    assert!(stderr.contains("table `gift_type_totals`"), "{stderr}");
    assert!(
        stderr.contains("column `gift_total_amount` is missing"),
        "{stderr}"
    );
    let (out, _, stderr) = output(apiary().arg("run").arg(&config));
    assert!(!out.status.success());
    assert!(stderr.contains("gift_total_amount"), "{stderr}");
}
