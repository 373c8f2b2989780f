//! Values to HBase bytes and back. HBase stores bytes only; what they mean
//! is agreed between writer and reader. `binary` is what HBase's
//! `Bytes.toBytes` (and so Flink's HBase connector) writes: big-endian
//! integers and floats, UTF-8 strings, timestamps as epoch milliseconds.
//! `string` writes every value as its text.

use serde::Deserialize;

use crate::model::wit::types::Value;

/// How values become cell bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// `Bytes.toBytes`: 8-byte big-endian long and double, UTF-8 text,
    /// epoch-millis timestamps, one byte for a boolean.
    #[default]
    Binary,
    /// Text: decimal numbers, `true`/`false`, timestamps as decimal epoch
    /// milliseconds.
    String,
}

/// What the bytes of a cell (or a row key) hold, for reading them back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellType {
    /// UTF-8 text.
    #[default]
    String,
    /// 4-byte integer (Flink `INT`) in `binary`, decimal text in `string`.
    Int,
    /// 8-byte integer (Flink `BIGINT`) in `binary`, decimal text in `string`.
    Bigint,
    /// 8-byte IEEE double in `binary`, decimal text in `string`.
    Double,
    /// One byte (0 is false) in `binary`, `true`/`false` in `string`.
    Boolean,
    /// Epoch milliseconds, 8 bytes in `binary`, decimal text in `string`.
    Timestamp,
    /// The bytes as they are.
    Bytes,
}

/// The bytes `value` is stored as; `None` for null (HBase has no nulls: the
/// cell is left out).
pub fn encode(value: &Value, encoding: Encoding) -> Option<Vec<u8>> {
    Some(match (value, encoding) {
        (Value::Null, _) => return None,
        (Value::Text(s), _) => s.as_bytes().to_vec(),
        (Value::Bytes(b), _) => b.clone(),
        (Value::Int(i) | Value::Timestamp(i), Encoding::Binary) => i.to_be_bytes().to_vec(),
        (Value::Float(f), Encoding::Binary) => f.to_be_bytes().to_vec(),
        (Value::Boolean(b), Encoding::Binary) => vec![if *b { 0xff } else { 0 }],
        (Value::Int(i) | Value::Timestamp(i), Encoding::String) => i.to_string().into_bytes(),
        (Value::Float(f), Encoding::String) => f.to_string().into_bytes(),
        (Value::Boolean(b), Encoding::String) => b.to_string().into_bytes(),
    })
}

/// Reads cell bytes as `kind`, or says why they cannot be.
pub fn decode(bytes: &[u8], kind: CellType, encoding: Encoding) -> Result<Value, String> {
    let text = || {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| format!("{} bytes are not UTF-8 text", bytes.len()))
    };
    let fixed = |n: usize| -> Result<&[u8], String> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(format!(
                "expected {n} bytes for {kind:?}, found {}",
                bytes.len()
            ))
        }
    };
    let number = |t: String| -> Result<i64, String> {
        t.trim()
            .parse()
            .map_err(|_| format!("`{t}` is not an integer"))
    };
    Ok(match (kind, encoding) {
        (CellType::String, _) => Value::Text(text()?),
        (CellType::Bytes, _) => Value::Bytes(bytes.to_vec()),
        (CellType::Int, Encoding::Binary) => {
            Value::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap()).into())
        }
        (CellType::Bigint, Encoding::Binary) => {
            Value::Int(i64::from_be_bytes(fixed(8)?.try_into().unwrap()))
        }
        (CellType::Timestamp, Encoding::Binary) => {
            Value::Timestamp(i64::from_be_bytes(fixed(8)?.try_into().unwrap()))
        }
        (CellType::Double, Encoding::Binary) => {
            Value::Float(f64::from_be_bytes(fixed(8)?.try_into().unwrap()))
        }
        (CellType::Boolean, Encoding::Binary) => Value::Boolean(fixed(1)?[0] != 0),
        (CellType::Int | CellType::Bigint, Encoding::String) => Value::Int(number(text()?)?),
        (CellType::Timestamp, Encoding::String) => Value::Timestamp(number(text()?)?),
        (CellType::Double, Encoding::String) => {
            let t = text()?;
            Value::Float(
                t.trim()
                    .parse()
                    .map_err(|_| format!("`{t}` is not a number"))?,
            )
        }
        (CellType::Boolean, Encoding::String) => Value::Boolean(match text()?.trim() {
            "true" => true,
            "false" => false,
            other => return Err(format!("`{other}` is not true or false")),
        }),
    })
}

/// A row key given as text (how plugins name rows) as the bytes of `kind`.
pub fn encode_key(key: &str, kind: CellType, encoding: Encoding) -> Result<Vec<u8>, String> {
    let value = match kind {
        CellType::String | CellType::Bytes => return Ok(key.as_bytes().to_vec()),
        CellType::Int | CellType::Bigint | CellType::Timestamp => Value::Int(
            key.parse()
                .map_err(|_| format!("row key `{key}` is not an integer"))?,
        ),
        CellType::Double => Value::Float(
            key.parse()
                .map_err(|_| format!("row key `{key}` is not a number"))?,
        ),
        CellType::Boolean => Value::Boolean(
            key.parse()
                .map_err(|_| format!("row key `{key}` is not true or false"))?,
        ),
    };
    let mut bytes = encode(&value, encoding).unwrap_or_default();
    if kind == CellType::Int && encoding == Encoding::Binary {
        bytes.drain(..4);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_is_what_hbase_bytes_writes() {
        // Bytes.toBytes(1001L), Bytes.toBytes(1.5d), Bytes.toBytes(true).
        assert_eq!(
            encode(&Value::Int(1001), Encoding::Binary).unwrap(),
            [0, 0, 0, 0, 0, 0, 0x03, 0xe9]
        );
        assert_eq!(
            encode(&Value::Float(1.5), Encoding::Binary).unwrap(),
            [0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode(&Value::Boolean(true), Encoding::Binary).unwrap(),
            [0xff]
        );
        assert_eq!(encode(&Value::Null, Encoding::Binary), None);
        assert_eq!(
            encode_key("20210813", CellType::Int, Encoding::Binary).unwrap(),
            20210813i32.to_be_bytes()
        );
    }

    #[test]
    fn round_trips_every_type_in_both_encodings() {
        let cases = [
            (Value::Int(-7), CellType::Bigint),
            (Value::Float(2.25), CellType::Double),
            (Value::Boolean(false), CellType::Boolean),
            (Value::Timestamp(1_629_078_411_000), CellType::Timestamp),
            (Value::Text("华东".into()), CellType::String),
            (Value::Bytes(vec![0, 47, 255]), CellType::Bytes),
        ];
        for encoding in [Encoding::Binary, Encoding::String] {
            for (value, kind) in &cases {
                let bytes = encode(value, encoding).unwrap();
                assert_eq!(&decode(&bytes, *kind, encoding).unwrap(), value);
            }
        }
        assert_eq!(
            decode(&[0, 0, 3, 0xe9], CellType::Int, Encoding::Binary).unwrap(),
            Value::Int(1001)
        );
    }

    #[test]
    fn wrong_bytes_say_what_was_expected() {
        let err = decode(b"1001", CellType::Bigint, Encoding::Binary).unwrap_err();
        assert_eq!(err, "expected 8 bytes for Bigint, found 4");
        let err = decode(b"x1", CellType::Int, Encoding::String).unwrap_err();
        assert_eq!(err, "`x1` is not an integer");
        assert!(encode_key("room-7", CellType::Bigint, Encoding::Binary).is_err());
    }
}
