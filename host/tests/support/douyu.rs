//! Douyu danmaku messages for the tests, as a collector writes them to
//! Kafka: whole server frames (12-byte header, STT body), one or several
//! per record, or a single STT body alone; and the figures the parser and
//! the rules behind it must arrive at.

use super::danmaku::{Expected, Messages, RecordFigures, Rng};

/// `body` as Douyu's server frames it: length twice (little-endian), type
/// 690, two zero bytes, the body and a NUL.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = (8 + body.len() + 1) as u32;
    let mut out = Vec::with_capacity(4 + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&690u16.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(body);
    out.push(0);
    out
}

/// An STT message of `pairs`, escaped.
pub fn stt(pairs: &[(&str, String)]) -> Vec<u8> {
    let escape = |s: &str| s.replace('@', "@A").replace('/', "@S");
    pairs
        .iter()
        .map(|(k, v)| format!("{}@={}/", escape(k), escape(v)))
        .collect::<String>()
        .into_bytes()
}

/// Refused records, one of each kind, cycling: what they are is in the
/// names the parser's reasons use.
fn bad_record(kind: u64, good: &[u8]) -> Vec<u8> {
    let chat = |extra: &str| format!("type@=chatmsg/rid@=9000/{extra}").into_bytes();
    match kind % 6 {
        // A frame cut short.
        0 => {
            let whole = frame(good);
            whole[..whole.len() - 5].to_vec()
        }
        // Frames followed by a few stray bytes.
        1 => [frame(good), vec![1, 2, 3, 4, 5]].concat(),
        // A chat message without its user.
        2 => frame(&chat("txt@=hi/")),
        // An escape STT does not have.
        3 => frame(&chat("uid@=1/txt@=a@xb/")),
        // A gift count that is not a number.
        4 => frame(b"type@=dgb/rid@=9000/uid@=1/gfid@=3/gfcnt@=x/"),
        // Not UTF-8, as a lone body.
        _ => [chat("uid@=1/txt@="), vec![0xff, b'/']].concat(),
    }
}

/// `count` records over five rooms; one in `bad_every` is refused.
pub fn generate(count: usize, seed: u64, bad_every: usize) -> Messages {
    let mut rng = Rng(seed | 1);
    let mut records = Vec::with_capacity(count);
    let mut bad = Vec::new();
    let mut expected = Expected::default();
    for i in 0..count {
        let room = 9_000 + rng.below(5) as i64;
        let mut bodies = Vec::new();
        let mut figures = RecordFigures::default();
        for _ in 0..1 + rng.below(3) {
            let user = 10_000 + rng.below(300) as i64;
            let (rid, uid) = (room.to_string(), user.to_string());
            bodies.push(match rng.below(6) {
                0 | 1 => {
                    let text = ["666", "主播好", "a/b@c", "\u{1F600} @@ //"][rng.below(4) as usize];
                    figures.chats += 1;
                    figures.active = true;
                    stt(&[
                        ("type", "chatmsg".into()),
                        ("rid", rid),
                        ("uid", uid),
                        ("nn", format!("user/{user}")),
                        ("txt", text.into()),
                        ("level", rng.below(60).to_string()),
                        ("cst", (1_700_000_000_000 + i as i64).to_string()),
                    ])
                }
                2 => {
                    let count = 1 + rng.below(5) as i64;
                    figures.gifts.push((user, count));
                    stt(&[
                        ("type", "dgb".into()),
                        ("rid", rid),
                        ("uid", uid),
                        ("gfid", (1 + rng.below(30)).to_string()),
                        ("gfcnt", count.to_string()),
                        ("nn", format!("user{user}")),
                    ])
                }
                3 => {
                    figures.entries += 1;
                    figures.active = true;
                    stt(&[
                        ("type", "uenter".into()),
                        ("rid", rid),
                        ("uid", uid),
                        ("level", rng.below(60).to_string()),
                    ])
                }
                4 => {
                    let live = rng.below(2) == 0;
                    figures.statuses.push(live);
                    stt(&[
                        ("type", "rss".into()),
                        ("rid", rid),
                        ("ss", u8::from(live).to_string()),
                    ])
                }
                _ => stt(&[("type", "mrkl".into())]),
            });
        }
        // Collectors write whole frames, or a lone message's body.
        let mut value = if bodies.len() == 1 && rng.below(2) == 0 {
            bodies[0].clone()
        } else {
            bodies.iter().flat_map(|b| frame(b)).collect()
        };
        if bad_every > 0 && i % bad_every == bad_every - 1 {
            value = bad_record((i / bad_every) as u64, &bodies[0]);
            bad.push(i);
        } else {
            expected.add(room, figures);
        }
        records.push((room.to_string().into_bytes(), value));
    }
    Messages {
        records,
        bad,
        expected,
    }
}
