//! Bilibili danmaku messages for the tests, as a collector writes them to
//! Kafka: one record per WebSocket message, keyed by the room id, holding
//! packets with the 16-byte big-endian header (JSON commands, heartbeat
//! replies, zlib- and brotli-compressed bundles), and the figures a parser
//! and the rules behind it must arrive at.

use std::io::Write as _;

use serde_json::json;

use super::danmaku::{Expected, Messages, RecordFigures, Rng};

/// One packet: header (length, header length 16, protocol version,
/// operation, sequence 1) and body.
pub fn packet(version: u16, operation: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&16u16.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&operation.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A command packet (operation 5, version 0) with a JSON body.
pub fn command(body: &serde_json::Value) -> Vec<u8> {
    packet(0, 5, body.to_string().as_bytes())
}

/// `packets` compressed into one protocol-version-2 packet.
pub fn zlib(packets: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(packets).unwrap();
    packet(2, 5, &encoder.finish().unwrap())
}

/// `packets` compressed into one protocol-version-3 packet (brotli, as the
/// web client asks for).
pub fn brotli(packets: &[u8]) -> Vec<u8> {
    packet(3, 5, &brotli_stream(packets))
}

fn brotli_stream(data: &[u8]) -> Vec<u8> {
    let mut encoder = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    encoder.write_all(data).unwrap();
    encoder.into_inner()
}

/// Refused messages, one of each kind, cycling: what they are is in the
/// names the parser's reasons use.
fn bad_message(kind: u64, good: &[u8]) -> (Option<Vec<u8>>, Vec<u8>) {
    match kind % 7 {
        // Shorter than a header.
        0 => (None, good[..10.min(good.len())].to_vec()),
        // A length past the end of the message.
        1 => {
            let mut v = good.to_vec();
            v[0..4].copy_from_slice(&(good.len() as u32 + 100).to_be_bytes());
            (None, v)
        }
        // A corrupted zlib stream (its checksum fails).
        2 => {
            let mut v = zlib(good);
            let last = v.len() - 1;
            v[last] ^= 0xff;
            (None, v)
        }
        // A brotli stream cut in half.
        3 => {
            let stream = brotli_stream(good);
            (None, packet(3, 5, &stream[..stream.len() / 2]))
        }
        // No room id in the key.
        4 => (Some(b"room-x".to_vec()), good.to_vec()),
        // A DANMU_MSG without its info.
        5 => (None, command(&json!({"cmd": "DANMU_MSG", "data": {}}))),
        // Not JSON.
        _ => (None, packet(0, 5, b"{\"cmd\": \"SEND_GIFT\", ")),
    }
}

/// `count` messages over five rooms; one in `bad_every` is refused.
pub fn generate(count: usize, seed: u64, bad_every: usize) -> Messages {
    let mut rng = Rng(seed | 1);
    let mut records = Vec::with_capacity(count);
    let mut bad = Vec::new();
    let mut expected = Expected::default();
    for i in 0..count {
        let room = 21_000_000 + rng.below(5) as i64;
        let mut packets = Vec::new();
        let mut figures = RecordFigures::default();
        for _ in 0..1 + rng.below(4) {
            let user = 1_000 + rng.below(300) as i64;
            let time = 1_700_000_000 + i as i64;
            match rng.below(7) {
                0 | 1 => {
                    let text = ["666", "主播好", "hello \"world\"", "\u{1F600} 哈哈"]
                        [rng.below(4) as usize];
                    packets.extend(command(&json!({
                        "cmd": if rng.below(2) == 0 { "DANMU_MSG" } else { "DANMU_MSG:4:0:2:2:2:0" },
                        "info": [[0, 1, 25, 16777215, time * 1000, 0, 0, "", 0, 0, 0],
                                 text, [user, format!("user{user}"), 0, 0, 0, 10000, 1, ""],
                                 [], [rng.below(60), 0, 9868950, ">50000"]],
                    })));
                    figures.chats += 1;
                    figures.active = true;
                }
                2 => {
                    let (gift, num, price) = (
                        1 + rng.below(30) as i64,
                        1 + rng.below(5) as i64,
                        100 * (1 + rng.below(10) as i64),
                    );
                    packets.extend(command(&json!({
                        "cmd": "SEND_GIFT",
                        "data": {"uid": user, "uname": format!("user{user}"), "giftId": gift,
                                 "giftName": "辣条", "num": num, "price": price,
                                 "total_coin": num * price, "coin_type": "silver", "timestamp": time},
                    })));
                    figures.gifts.push((user, num * price));
                }
                3 => {
                    // msg_type 1 is an entry; 2 (follow) is passed over.
                    let kind = 1 + rng.below(2);
                    packets.extend(command(&json!({
                        "cmd": "INTERACT_WORD",
                        "data": {"uid": user, "uname": format!("user{user}"), "msg_type": kind,
                                 "roomid": room, "timestamp": time},
                    })));
                    figures.entries += (kind == 1) as i64;
                    figures.active |= kind == 1;
                }
                4 => {
                    let popularity = rng.below(1_000_000) as u32;
                    packets.extend(packet(1, 3, &popularity.to_be_bytes()));
                    figures.heat = figures.heat.max(popularity as i64);
                    figures.active = true;
                }
                5 => packets.extend(command(
                    &json!({"cmd": "ONLINE_RANK_COUNT", "data": {"count": 12}}),
                )),
                _ => {
                    let live = rng.below(2) == 0;
                    packets.extend(command(
                        &json!({"cmd": if live { "LIVE" } else { "PREPARING" }, "roomid": room}),
                    ));
                    figures.statuses.push(live);
                }
            }
        }
        let mut value = match rng.below(3) {
            0 => zlib(&packets),
            1 => brotli(&packets),
            _ => packets,
        };
        let mut key = room.to_string().into_bytes();
        if bad_every > 0 && i % bad_every == bad_every - 1 {
            let (bad_key, bad_value) = bad_message((i / bad_every) as u64, &value);
            key = bad_key.unwrap_or(key);
            value = bad_value;
            bad.push(i);
        } else {
            expected.add(room, figures);
        }
        records.push((key, value));
    }
    Messages {
        records,
        bad,
        expected,
    }
}
