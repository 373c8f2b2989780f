//! The records as they stand in the JSON, borrowed from the input.
//!
//! Every field is read as a [`Scalar`], which accepts any JSON value, and is
//! converted afterwards. Doing the type checks after deserializing, not
//! inside serde, is what lets an error name the field it is about; borrowing
//! keeps the common case (strings without escapes) free of allocations.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::FormatError;
use crate::time::parse_timestamp;

#[derive(Deserialize, Default, Debug, PartialEq)]
pub(crate) struct RawVisit<'a> {
    #[serde(borrow)]
    pub user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub ip: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub room_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub arrive_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub leave_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub create_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub region_code: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub region: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub grade: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub province: Option<Scalar<'a>>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
pub(crate) struct RawGift<'a> {
    #[serde(borrow)]
    pub user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub gift_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub gift_total_amount: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub room_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub ip: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub create_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub update_time: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct RawRoomList<'a> {
    /// Read whole: a list of rooms comes once a minute, and its elements
    /// each need checking.
    pub rooms: Option<serde_json::Value>,
    #[serde(borrow)]
    pub time: Option<Scalar<'a>>,
}

/// Deserializes a record, first making sure the input is an object: serde's
/// derived structs would otherwise also accept a JSON array, positionally.
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Result<T, FormatError> {
    let first = value.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') | None => Ok(serde_json::from_slice(value)?),
        Some(&b) => {
            // Rare path: tell "not JSON at all" from "JSON, but not an object".
            serde_json::from_slice::<IgnoredAny>(value)?;
            let found = match b {
                b'[' => "an array",
                b'"' => "a string",
                b't' | b'f' => "a boolean",
                b'n' => "null",
                _ => "a number",
            };
            Err(FormatError::NotAnObject { found })
        }
    }
}

/// One field's JSON value. `null` never gets here: it reads as a missing
/// field (`None`).
#[derive(Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Array,
    Object,
}

impl fmt::Display for Scalar<'_> {
    /// How the value appears in an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::UInt(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Str(v) => write!(f, "{v:?}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::Array => f.write_str("an array"),
            Self::Object => f.write_str("an object"),
        }
    }
}

impl<'a> Scalar<'a> {
    /// A BIGINT column: a JSON integer, an integral float, or a string
    /// holding a decimal integer (surrounding spaces allowed, as Flink trims).
    pub fn to_i64(&self, field: &'static str) -> Result<i64, FormatError> {
        self.integer().map_err(|e| self.int_error(field, e, 64))
    }

    /// An INT column: as [`Self::to_i64`], and within 32 bits.
    pub fn to_i32(&self, field: &'static str) -> Result<i32, FormatError> {
        let v = self.integer().map_err(|e| self.int_error(field, e, 32))?;
        i32::try_from(v).map_err(|_| self.int_error(field, IntError::OutOfRange, 32))
    }

    fn integer(&self) -> Result<i64, IntError> {
        // i64::MIN and i64::MAX + 1 are both exact in f64.
        const LOW: f64 = -9_223_372_036_854_775_808.0;
        const HIGH: f64 = 9_223_372_036_854_775_808.0;
        match self {
            Self::Int(v) => Ok(*v),
            Self::UInt(v) => i64::try_from(*v).map_err(|_| IntError::OutOfRange),
            Self::Float(v) if v.fract() == 0.0 => {
                if (LOW..HIGH).contains(v) {
                    Ok(*v as i64)
                } else {
                    Err(IntError::OutOfRange)
                }
            }
            Self::Str(s) => s.trim().parse::<i64>().map_err(|e| {
                use std::num::IntErrorKind::{NegOverflow, PosOverflow};
                match e.kind() {
                    PosOverflow | NegOverflow => IntError::OutOfRange,
                    _ => IntError::NotAnInteger,
                }
            }),
            _ => Err(IntError::NotAnInteger),
        }
    }

    fn int_error(&self, field: &'static str, e: IntError, bits: u32) -> FormatError {
        match e {
            IntError::NotAnInteger => self.expected(field, "an integer"),
            IntError::OutOfRange => self.expected(field, &format!("a {bits}-bit integer")),
        }
    }

    /// A VARCHAR column: a string, or any other scalar as its JSON text
    /// (Flink does the same), borrowing from the input where the JSON
    /// string had no escapes.
    pub fn into_text_ref(self, field: &'static str) -> Result<Cow<'a, str>, FormatError> {
        match self {
            Self::Str(s) => Ok(s),
            Self::Array | Self::Object => Err(self.expected(field, "a string")),
            other => Ok(Cow::Owned(other.to_string())),
        }
    }

    /// A TIMESTAMP column: `YYYY-MM-DD HH:MM:SS` in Asia/Shanghai, to epoch
    /// milliseconds.
    pub fn to_timestamp(&self, field: &'static str) -> Result<i64, FormatError> {
        match self {
            Self::Str(s) => parse_timestamp(s).map_err(|e| {
                FormatError::invalid(
                    field,
                    format!("expected a timestamp `YYYY-MM-DD HH:MM:SS`, found {self} ({e})"),
                )
            }),
            _ => Err(self.expected(field, "a timestamp string `YYYY-MM-DD HH:MM:SS`")),
        }
    }

    fn expected(&self, field: &'static str, what: &str) -> FormatError {
        FormatError::invalid(field, format!("expected {what}, found {self}"))
    }
}

enum IntError {
    NotAnInteger,
    OutOfRange,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ScalarVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}
