//! A fast path for the records collectors write: one flat JSON object whose
//! values are integers, strings, booleans or `null`.
//!
//! It reads such a record in one pass, without serde's visitor machinery,
//! and gives up (`None`) on anything else: floats, nested values, a
//! repeated field, a surrogate without its pair, a syntax error. Then
//! [`from_slice`] parses the record again with serde_json, so what a record
//! parses to, and every error message, is serde_json's. The tests hold the
//! two to the same result.

use std::borrow::Cow;

use serde::Deserialize;

use crate::FormatError;
use crate::raw::{self, RawGift, RawVisit, Scalar};

/// A record struct the scanner can fill, field by field.
pub(crate) trait FlatRecord<'a>: Default {
    /// Where the field named `key` goes, and its index (below 64) for
    /// telling a repeated field; `None` for a field the record ignores.
    fn field(&mut self, key: &str) -> Option<(u32, &mut Option<Scalar<'a>>)>;
}

/// The record in `input`, or `None` when it is not of the flat shape this
/// path reads (or not valid JSON).
pub(crate) fn flat<'a, T: FlatRecord<'a>>(input: &'a [u8]) -> Option<T> {
    let mut record = T::default();
    let mut seen = 0u64;
    let mut at = skip_whitespace(input, 0);
    if input.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(input, at + 1);
    if input.get(at) == Some(&b'}') {
        return only_whitespace(input, at + 1).then_some(record);
    }
    loop {
        if input.get(at) != Some(&b'"') {
            return None;
        }
        let (key, next) = string(input, at + 1)?;
        at = skip_whitespace(input, next);
        if input.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(input, at + 1);
        let (value, next) = value(input, at)?;
        if let Some((index, slot)) = record.field(&key) {
            // serde refuses a repeated field, `null` or not: let it say so.
            let bit = 1u64 << index;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *slot = value;
        }
        at = skip_whitespace(input, next);
        match input.get(at) {
            Some(b',') => at = skip_whitespace(input, at + 1),
            Some(b'}') => return only_whitespace(input, at + 1).then_some(record),
            _ => return None,
        }
    }
}

impl<'a> FlatRecord<'a> for RawVisit<'a> {
    fn field(&mut self, key: &str) -> Option<(u32, &mut Option<Scalar<'a>>)> {
        Some(match key {
            "user_id" => (0, &mut self.user_id),
            "ip" => (1, &mut self.ip),
            "room_id" => (2, &mut self.room_id),
            "arrive_time" => (3, &mut self.arrive_time),
            "leave_time" => (4, &mut self.leave_time),
            "create_time" => (5, &mut self.create_time),
            "region_code" => (6, &mut self.region_code),
            "region" => (7, &mut self.region),
            "grade" => (8, &mut self.grade),
            "province" => (9, &mut self.province),
            _ => return None,
        })
    }
}

impl<'a> FlatRecord<'a> for RawGift<'a> {
    fn field(&mut self, key: &str) -> Option<(u32, &mut Option<Scalar<'a>>)> {
        Some(match key {
            "user_id" => (0, &mut self.user_id),
            "gift_type" => (1, &mut self.gift_type),
            "gift_total_amount" => (2, &mut self.gift_total_amount),
            "room_id" => (3, &mut self.room_id),
            "ip" => (4, &mut self.ip),
            "create_time" => (5, &mut self.create_time),
            "update_time" => (6, &mut self.update_time),
            _ => return None,
        })
    }
}

/// Reads a flat record on the fast path, and any other through serde_json
/// ([`raw::from_slice`]), which also words the errors.
pub(crate) fn from_slice<'a, T>(value: &'a [u8]) -> Result<T, FormatError>
where
    T: FlatRecord<'a> + Deserialize<'a>,
{
    match flat(value) {
        Some(record) => Ok(record),
        None => raw::from_slice(value),
    }
}

/// JSON's whitespace, as serde_json reads it.
fn skip_whitespace(input: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = input.get(at) {
        at += 1;
    }
    at
}

fn only_whitespace(input: &[u8], at: usize) -> bool {
    skip_whitespace(input, at) == input.len()
}

/// The string whose contents start at `at` (after its opening quote), and
/// the index after its closing quote. Borrowed when it has no escapes, as
/// serde_json's.
fn string(input: &[u8], at: usize) -> Option<(Cow<'_, str>, usize)> {
    let (len, ascii) = plain_run(input.get(at..)?)?;
    let end = at + len;
    let text = utf8(&input[at..end], ascii)?;
    match input[end] {
        b'"' => Some((Cow::Borrowed(text), end + 1)),
        b'\\' => escaped(input, text, end),
        _ => None,
    }
}

/// `bytes` as text, checked only when `plain_run` saw a non-ASCII byte.
fn utf8(bytes: &[u8], ascii: bool) -> Option<&str> {
    if ascii {
        // SAFETY: bytes below 0x80 are each a UTF-8 character.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// The length of the bytes before the next quote, backslash or control
/// character (`None` when the input ends first), and whether they are all
/// ASCII. Eight bytes at a time: the plugins run without SIMD, and most
/// strings here are timestamps and addresses of 8 to 19 bytes.
fn plain_run(bytes: &[u8]) -> Option<(usize, bool)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Flags the bytes of `word` below `n` (n <= 0x80); the lowest flag is
    // exact, higher ones may be false, which is all a search needs.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let equal = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let mut high = 0;
    let mut chunks = bytes.chunks_exact(8);
    for (index, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let stop = equal(word, b'"') | equal(word, b'\\') | below(word, 0x20);
        if stop != 0 {
            let at = stop.trailing_zeros() as usize / 8;
            high |= word & HIGHS & ((1u64 << (at * 8)) - 1);
            return Some((index * 8 + at, high == 0));
        }
        high |= word & HIGHS;
    }
    let done = bytes.len() - chunks.remainder().len();
    let at = chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    let ascii = high == 0 && bytes[done..done + at].is_ascii();
    Some((done + at, ascii))
}

/// A string with escapes, `before` the first of them (at `at`), decoded
/// as serde_json decodes it. A surrogate without its pair, an unknown escape
/// or a raw control character is left to serde_json.
fn escaped<'a>(input: &'a [u8], before: &str, mut at: usize) -> Option<(Cow<'a, str>, usize)> {
    let mut text = String::from(before);
    loop {
        match *input.get(at)? {
            b'"' => return Some((Cow::Owned(text), at + 1)),
            b'\\' => {
                let (c, next) = escape(input, at + 1)?;
                text.push(c);
                at = next;
            }
            _ => {
                let (len, ascii) = plain_run(&input[at..])?;
                if len == 0 {
                    return None; // a control character
                }
                text.push_str(utf8(&input[at..at + len], ascii)?);
                at += len;
            }
        }
    }
}

/// The character of the escape whose letter is at `at` (after the
/// backslash), and the index after it.
fn escape(input: &[u8], at: usize) -> Option<(char, usize)> {
    let c = match *input.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(input, at + 1)?;
            if !(0xD800..=0xDBFF).contains(&unit) {
                return Some((char::from_u32(unit)?, at + 5));
            }
            if input.get(at + 5..at + 7)? != b"\\u" {
                return None;
            }
            let low = hex4(input, at + 7)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?;
            return Some((c, at + 11));
        }
        _ => return None,
    };
    Some((c, at + 1))
}

/// Four hex digits at `at`.
fn hex4(input: &[u8], at: usize) -> Option<u32> {
    input.get(at..at + 4)?.iter().try_fold(0, |n, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(n * 16 + digit)
    })
}

/// The value at `at` (`None` inside for `null`) and the index after it.
fn value(input: &[u8], at: usize) -> Option<(Option<Scalar<'_>>, usize)> {
    let literal = |text: &[u8], scalar| {
        input[at..]
            .starts_with(text)
            .then_some((scalar, at + text.len()))
    };
    match *input.get(at)? {
        b'"' => {
            let (text, next) = string(input, at + 1)?;
            Some((Some(Scalar::Str(text)), next))
        }
        b'n' => literal(b"null", None),
        b't' => literal(b"true", Some(Scalar::Bool(true))),
        b'f' => literal(b"false", Some(Scalar::Bool(false))),
        b'-' | b'0'..=b'9' => integer(input, at),
        _ => None,
    }
}

/// An integer of at most 18 digits, which cannot overflow. Longer ones,
/// `-0` (a float to serde_json), leading zeros, fractions and exponents go
/// to serde_json.
fn integer(input: &[u8], at: usize) -> Option<(Option<Scalar<'_>>, usize)> {
    let negative = input[at] == b'-';
    let start = at + usize::from(negative);
    let digits = input[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = start + digits;
    if digits == 0 || digits > 18 || (digits > 1 && input[start] == b'0') {
        return None;
    }
    if let Some(b'.' | b'e' | b'E') = input.get(end) {
        return None;
    }
    let magnitude = input[start..end]
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    if negative && magnitude == 0 {
        return None;
    }
    let value = if negative { -magnitude } else { magnitude };
    Some((Some(Scalar::Int(value)), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parsers on `input`: when the fast path reads a record, serde_json
    /// must read the same one. Returns whether the fast path read it.
    fn agree<'a, T>(input: &'a [u8]) -> bool
    where
        T: FlatRecord<'a> + serde::Deserialize<'a> + PartialEq + std::fmt::Debug,
    {
        let Some(fast) = flat::<T>(input) else {
            return false;
        };
        let slow: Result<T, _> = serde_json::from_slice(input);
        assert_eq!(
            slow.as_ref().ok(),
            Some(&fast),
            "{:?}: serde_json gives {slow:?}",
            String::from_utf8_lossy(input)
        );
        true
    }

    #[test]
    fn reads_the_common_shapes() {
        let gift =
            br#" {"user_id": 3165, "gift_type":3,"gift_total_amount":"28","room_id":-20210813,
            "ip":"1.2.3.4","create_time":"2021-08-16 09:48:01","update_time":null,"extra":true} "#;
        assert!(agree::<RawGift>(gift));
        let visit = r#"{"user_id":1,"room_id":2,"province":"广东","region":0,"grade":false}"#;
        assert!(agree::<RawVisit>(visit.as_bytes()));
        let escaped = br#"{"ip":"a\"b\\\/\b\f\n\r\t\u00e9\u5e7f\ud83d\ude00","us\u0065r_id":7}"#;
        assert!(agree::<RawGift>(escaped));
        assert_eq!(
            flat::<RawGift>(escaped).unwrap().ip,
            Some(Scalar::Str(
                "a\"b\\/\u{8}\u{c}\n\r\t\u{e9}\u{5e7f}\u{1f600}".into()
            ))
        );
        assert!(agree::<RawGift>(b"{}"));
        assert!(agree::<RawGift>(b"{ }\n"));
    }

    #[test]
    fn leaves_the_rest_to_serde() {
        let cases: &[&[u8]] = &[
            br#"{"ip":"\ud800"}"#,
            br#"{"ip":"\udc00"}"#,
            br#"{"ip":"\ud800\u0041"}"#,
            br#"{"ip":"\x"}"#,
            br#"{"ip":"\u12g4"}"#,
            br#"{"user_id":1.0}"#,
            br#"{"user_id":1e3}"#,
            br#"{"user_id":-0}"#,
            br#"{"user_id":01}"#,
            br#"{"user_id":1234567890123456789}"#,
            br#"{"user_id":[1]}"#,
            br#"{"other":{"a":1}}"#,
            br#"{"user_id":1,"user_id":2}"#,
            br#"{"user_id":null,"user_id":2}"#,
            br#"{"user_id":1,}"#,
            br#"{"user_id":1} x"#,
            br#"[1]"#,
            b"{\"ip\":\"\xff\"}",
            b"{\"ip\":\"a\tb\"}",
            br#"{"user_id":nul}"#,
            br#"{"user_id":1"#,
            b"",
        ];
        for input in cases {
            assert!(
                flat::<RawGift>(input).is_none(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn plain_runs_match_a_byte_by_byte_search() {
        // Mostly bytes that go on, so that runs cross several words.
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \x7f\x80\xc3\xa9\xff\"\\\x1f";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 56)) as usize + i * 7) % alphabet.len()])
                .collect();
            let stop = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let expected = stop.map(|at| (at, bytes[..at].is_ascii()));
            assert_eq!(plain_run(&bytes), expected, "{bytes:?}");
        }
    }

    /// Random edits of real records: wherever the fast path accepts one,
    /// serde_json reads the same record.
    #[test]
    fn agrees_with_serde_on_mutated_records() {
        let seeds: [&[u8]; 3] = [
            br#"{"user_id":3165,"gift_type":3,"gift_total_amount":28,"room_id":20210813,"ip":"1.2.3.4","create_time":"2021-08-16 09:48:01","update_time":"2021-08-16 09:48:01"}"#,
            r#"{"user_id": "3165", "ip": "10.0.0.1", "room_id": 2, "arrive_time": null, "region": 1122, "grade": 5, "province": "\u5e7f\u4e1c", "x": "\ud83d\ude00\"\\n"}"#.as_bytes(),
            br#"{ "room_id" : -7 , "user_id" : 0 , "skip" : false }"#,
        ];
        let alphabet = b"{}[]\",:\\/ \t\n0123456789abcdef-+.eEntrufalsx_\x1f\xc3\xa9\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            // xorshift64: a fixed sequence, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut fast, mut total) = (0, 0);
        for round in 0..30_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(input.len() + 1);
                match next(4) {
                    0 if at < input.len() => {
                        input.remove(at);
                    }
                    1 if at < input.len() => input[at] = alphabet[next(alphabet.len())],
                    2 => {
                        let end = (at + 1 + next(12)).min(input.len());
                        let copy = input[at.min(end)..end].to_vec();
                        let to = next(input.len() + 1);
                        input.splice(to..to, copy);
                    }
                    _ => input.insert(at, alphabet[next(alphabet.len())]),
                }
            }
            total += 1;
            if agree::<RawGift>(&input) & agree::<RawVisit>(&input) {
                fast += 1;
            }
        }
        // The test means something only if both paths were exercised.
        assert!(
            fast > total / 20 && fast < total * 19 / 20,
            "{fast} of {total}"
        );
    }
}
