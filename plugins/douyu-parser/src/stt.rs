//! Douyu's wire format: frames of STT text.
//!
//! A frame is a 12-byte header and a body. The header holds the length
//! (u32, little-endian, counting the header's last 8 bytes and the body),
//! the same length again, the message type (u16: 689 from a client, 690
//! from the server), an encryption byte and a reserved byte. The body is
//! STT text ending in a NUL byte: `key@=value/` pairs, with `@` written as
//! `@A` and `/` as `@S` inside keys and values.

use std::collections::HashMap;

const HEADER_LEN: usize = 12;
const FROM_CLIENT: u16 = 689;
const FROM_SERVER: u16 = 690;

/// The STT bodies in a record: those of its frames, or the record itself
/// when the collector wrote a message's body alone.
pub fn bodies(value: &[u8]) -> Result<Vec<&[u8]>, String> {
    if !starts_with_header(value) {
        return Ok(vec![trim_end(value)]);
    }
    let mut bodies = Vec::new();
    let mut pos = 0;
    while pos < value.len() {
        let rest = &value[pos..];
        if rest.len() < HEADER_LEN {
            return Err(format!(
                "frame at byte {pos}: shorter than the 12-byte header"
            ));
        }
        if !starts_with_header(rest) {
            return Err(format!(
                "frame at byte {pos}: not a Douyu header (its two lengths differ or its type is not 689/690)"
            ));
        }
        let len = le32(rest) as usize;
        if len < HEADER_LEN - 4 || len > rest.len() - 4 {
            return Err(format!(
                "frame at byte {pos}: length {len} does not fit the record"
            ));
        }
        bodies.push(trim_end(&rest[HEADER_LEN..4 + len]));
        pos += 4 + len;
    }
    Ok(bodies)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn starts_with_header(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN
        && le32(b) == le32(&b[4..])
        && matches!(u16::from_le_bytes([b[8], b[9]]), FROM_CLIENT | FROM_SERVER)
}

/// Without the NUL that ends a body (and a line end, when collectors
/// write bodies as lines).
fn trim_end(body: &[u8]) -> &[u8] {
    let end = body
        .iter()
        .rposition(|&b| !matches!(b, b'\0' | b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    &body[..end]
}

/// One STT message: its fields, unescaped.
#[derive(Debug)]
pub struct Message {
    fields: HashMap<String, String>,
}

impl Message {
    /// Reads a body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("not UTF-8 at byte {}", e.valid_up_to()))?;
        let mut fields = HashMap::new();
        for pair in text.split('/').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once("@=")
                .ok_or_else(|| format!("`{pair}` is not a key@=value pair"))?;
            fields.insert(unescape(key)?, unescape(value)?);
        }
        Ok(Self { fields })
    }

    /// The message type (`type@=`).
    pub fn kind(&self) -> Result<&str, String> {
        self.text("type")
    }

    /// A field that must be there.
    pub fn text(&self, key: &str) -> Result<&str, String> {
        self.optional(key).ok_or_else(|| format!("no `{key}`"))
    }

    /// A field that may be missing.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A number that must be there.
    pub fn int(&self, key: &str) -> Result<i64, String> {
        number(key, self.text(key)?)
    }

    /// A number that may be missing (or empty).
    pub fn optional_int(&self, key: &str) -> Result<Option<i64>, String> {
        match self.optional(key) {
            None | Some("") => Ok(None),
            Some(value) => number(key, value).map(Some),
        }
    }
}

fn number(key: &str, value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("`{key}` is not a number: `{value}`"))
}

/// `@S` is `/` and `@A` is `@`; any other `@` is malformed.
fn unescape(text: &str) -> Result<String, String> {
    if !text.contains('@') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '@' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('S') => out.push('/'),
            Some('A') => out.push('@'),
            other => {
                return Err(format!(
                    "bad escape `@{}` in `{text}`",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

/// `body` as the server frames it.
#[cfg(test)]
pub fn frame(body: &str) -> Vec<u8> {
    let len = (8 + body.len() + 1) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&FROM_SERVER.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(body.as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frames_and_bare_bodies() {
        let mut record = frame("type@=chatmsg/txt@=a@Sb@Ac/");
        record.extend(frame("type@=mrkl/"));
        let bodies = bodies(&record).unwrap();
        assert_eq!(
            bodies,
            [&b"type@=chatmsg/txt@=a@Sb@Ac/"[..], b"type@=mrkl/"]
        );
        let message = Message::parse(bodies[0]).unwrap();
        assert_eq!(message.text("txt").unwrap(), "a/b@c");
        assert_eq!(
            super::bodies(b"type@=rss/ss@=1/\n").unwrap(),
            [b"type@=rss/ss@=1/"]
        );
    }

    #[test]
    fn names_what_is_wrong_and_where() {
        let mut record = frame("type@=chatmsg/");
        record.extend_from_slice(&[1, 2, 3]);
        let bad = [
            (record, "frame at byte 27: shorter than the 12-byte header"),
            (
                frame("xyz")[..14].to_vec(),
                "frame at byte 0: length 12 does not fit",
            ),
        ];
        for (value, reason) in bad {
            let error = bodies(&value).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        let errors = [
            Message::parse(b"type@=chatmsg/nokey/").unwrap_err(),
            Message::parse(b"txt@=a@xb/").unwrap_err(),
            Message::parse(b"uid@=12x/")
                .unwrap()
                .int("uid")
                .unwrap_err(),
            Message::parse(b"\xff").unwrap_err(),
        ];
        assert_eq!(
            errors,
            [
                "`nokey` is not a key@=value pair",
                "bad escape `@x` in `a@xb`",
                "`uid` is not a number: `12x`",
                "not UTF-8 at byte 0",
            ]
        );
    }
}
