//! The Douyu parser through Kafka: framed and bare STT messages, escapes,
//! several messages per record, and refused records as dead letters, with
//! `top-gifters` and `room-activity` behind it.

mod support;

use support::danmaku::{assert_reasons, run_and_check};
use support::plugins_dir;

#[test]
fn douyu_parser_reads_stt_messages_from_kafka() {
    let messages = support::douyu::generate(3_000, 11, 40);
    let reasons = run_and_check(
        &plugins_dir().join("douyu-parser.wasm"),
        "douyu_danmaku",
        &messages,
    );
    assert_reasons(
        &reasons,
        &[
            "does not fit the record",
            "shorter than the 12-byte header",
            "(chatmsg): no `uid`",
            "bad escape `@x`",
            "`gfcnt` is not a number",
            "not UTF-8",
        ],
    );
}
