//! The seed's JSON record format (`live_streaming_log`, `live_gift_total`)
//! and the aggregation the seed's dashboard runs over it.
//!
//! This crate has no Wasm or WIT dependency on purpose: the parser and rule
//! plugins wrap it, and the native benchmark baseline calls the very same
//! code, so a native-vs-Wasm comparison measures the boundary and the
//! runtime, not two implementations.
//!
//! The parse rules follow the seed's Flink table settings: fields may be
//! missing (`json.fail-on-missing-field = false`) but a present field of the
//! wrong type is an error (`json.ignore-parse-errors = false`), numbers may
//! come as JSON numbers or numeric strings, and unknown fields are ignored.

mod error;
mod raw;
mod scan;
mod time;
mod totals;

pub use error::FormatError;
pub use time::{TimestampError, format_timestamp, parse_timestamp, push_timestamp};
pub use totals::GiftTypeTotals;

use std::borrow::Cow;

use raw::{RawGift, RawRoomList, RawVisit, Scalar};

/// A viewer's visit to a room: the WIT record `viewer-visit`, as plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    pub user_id: i64,
    pub room_id: i64,
    /// Client IP address as text.
    pub ip: Option<String>,
    /// Epoch milliseconds.
    pub arrive_time: Option<i64>,
    /// Epoch milliseconds.
    pub leave_time: Option<i64>,
    /// Epoch milliseconds.
    pub create_time: Option<i64>,
    pub region_code: Option<i32>,
    pub grade: Option<i32>,
    pub province: Option<String>,
}

impl Visit {
    /// The first column of the seed's `live_streaming_log` primary key
    /// (`user_id`, `ip`, `room_id`, `arrive_time`) this visit lacks, if any.
    /// A table row can't have a null key column, so such a visit can be
    /// parsed but not stored.
    pub fn missing_primary_key(&self) -> Option<&'static str> {
        if self.ip.is_none() {
            Some("ip")
        } else if self.arrive_time.is_none() {
            Some("arrive_time")
        } else {
            None
        }
    }
}

/// A gift sent to a room: the WIT record `gift`, as plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gift {
    pub user_id: i64,
    pub room_id: i64,
    pub gift_type: i32,
    /// The JSON field `gift_total_amount`.
    pub amount: i64,
    pub ip: Option<String>,
    /// Epoch milliseconds.
    pub create_time: Option<i64>,
    /// Epoch milliseconds.
    pub update_time: Option<i64>,
}

/// Parses one `live_streaming_log` record.
///
/// `user_id` and `room_id` are required; every other field may be missing
/// or `null`. `region_code` is also read under the name `region`, which the
/// seed's sample data uses; when both are present, `region_code` wins.
pub fn parse_visit(value: &[u8]) -> Result<Visit, FormatError> {
    parse_visit_ref(value).map(VisitRef::into_owned)
}

/// A visit as [`parse_visit`] reads it, its text still borrowed from the
/// record where the JSON strings had no escapes (see [`GiftRef`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitRef<'a> {
    pub user_id: i64,
    pub room_id: i64,
    pub ip: Option<Cow<'a, str>>,
    pub arrive_time: Option<i64>,
    pub leave_time: Option<i64>,
    pub create_time: Option<i64>,
    pub region_code: Option<i32>,
    pub grade: Option<i32>,
    pub province: Option<Cow<'a, str>>,
}

impl VisitRef<'_> {
    /// The visit with its text owned.
    pub fn into_owned(self) -> Visit {
        Visit {
            user_id: self.user_id,
            room_id: self.room_id,
            ip: self.ip.map(Cow::into_owned),
            arrive_time: self.arrive_time,
            leave_time: self.leave_time,
            create_time: self.create_time,
            region_code: self.region_code,
            grade: self.grade,
            province: self.province.map(Cow::into_owned),
        }
    }
}

/// Parses one `live_streaming_log` record as [`parse_visit`] does,
/// borrowing its text where it can.
pub fn parse_visit_ref(value: &[u8]) -> Result<VisitRef<'_>, FormatError> {
    let raw: RawVisit<'_> = scan::from_slice(value)?;
    let region_code = match raw.region_code {
        Some(v) => Some(v.to_i32("region_code")?),
        None => raw.region.map(|v| v.to_i32("region")).transpose()?,
    };
    Ok(VisitRef {
        user_id: required(raw.user_id, "user_id")?.to_i64("user_id")?,
        room_id: required(raw.room_id, "room_id")?.to_i64("room_id")?,
        ip: raw.ip.map(|v| v.into_text_ref("ip")).transpose()?,
        arrive_time: timestamp(raw.arrive_time.as_ref(), "arrive_time")?,
        leave_time: timestamp(raw.leave_time.as_ref(), "leave_time")?,
        create_time: timestamp(raw.create_time.as_ref(), "create_time")?,
        region_code,
        grade: raw.grade.map(|v| v.to_i32("grade")).transpose()?,
        province: raw
            .province
            .map(|v| v.into_text_ref("province"))
            .transpose()?,
    })
}

/// Parses one `live_gift_total` record.
///
/// `user_id`, `room_id`, `gift_type` and `gift_total_amount` are required:
/// without them a gift can't be counted. The other fields may be missing or
/// `null`.
pub fn parse_gift(value: &[u8]) -> Result<Gift, FormatError> {
    parse_gift_ref(value).map(GiftRef::into_owned)
}

/// A gift as [`parse_gift`] reads it, its `ip` still borrowed from the
/// record where the JSON string had no escapes: a parser that copies the
/// text elsewhere anyway need not allocate it first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GiftRef<'a> {
    pub user_id: i64,
    pub room_id: i64,
    pub gift_type: i32,
    pub amount: i64,
    pub ip: Option<Cow<'a, str>>,
    pub create_time: Option<i64>,
    pub update_time: Option<i64>,
}

impl GiftRef<'_> {
    /// The gift with its text owned.
    pub fn into_owned(self) -> Gift {
        Gift {
            user_id: self.user_id,
            room_id: self.room_id,
            gift_type: self.gift_type,
            amount: self.amount,
            ip: self.ip.map(Cow::into_owned),
            create_time: self.create_time,
            update_time: self.update_time,
        }
    }
}

/// Parses one `live_gift_total` record as [`parse_gift`] does, borrowing
/// its text where it can.
pub fn parse_gift_ref(value: &[u8]) -> Result<GiftRef<'_>, FormatError> {
    let raw: RawGift<'_> = scan::from_slice(value)?;
    Ok(GiftRef {
        user_id: required(raw.user_id, "user_id")?.to_i64("user_id")?,
        room_id: required(raw.room_id, "room_id")?.to_i64("room_id")?,
        gift_type: required(raw.gift_type, "gift_type")?.to_i32("gift_type")?,
        amount: required(raw.gift_total_amount, "gift_total_amount")?
            .to_i64("gift_total_amount")?,
        ip: raw.ip.map(|v| v.into_text_ref("ip")).transpose()?,
        create_time: timestamp(raw.create_time.as_ref(), "create_time")?,
        update_time: timestamp(raw.update_time.as_ref(), "update_time")?,
    })
}

/// A collector's snapshot of the rooms live at one moment (topic
/// `live_room_list`): `{"rooms": [...], "time": "YYYY-MM-DD HH:MM:SS"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomList {
    /// Room ids, as listed.
    pub rooms: Vec<i64>,
    /// When the list was taken, epoch milliseconds.
    pub time: Option<i64>,
}

/// Parses one `live_room_list` record. `rooms` is required, a JSON array
/// of room ids (numbers or numeric strings); `time` may be missing.
pub fn parse_room_list(value: &[u8]) -> Result<RoomList, FormatError> {
    let raw: RawRoomList<'_> = raw::from_slice(value)?;
    let rooms = match raw.rooms {
        None | Some(serde_json::Value::Null) => {
            return Err(FormatError::MissingField { field: "rooms" });
        }
        Some(serde_json::Value::Array(rooms)) => rooms,
        Some(other) => {
            return Err(FormatError::invalid(
                "rooms",
                format!("expected an array of room ids, found {other}"),
            ));
        }
    };
    let rooms = rooms
        .iter()
        .enumerate()
        .map(|(i, room)| {
            let id = match room {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            id.ok_or_else(|| {
                FormatError::invalid(
                    "rooms",
                    format!("element {i}: expected a 64-bit room id, found {room}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(RoomList {
        rooms,
        time: timestamp(raw.time.as_ref(), "time")?,
    })
}

fn required<'a>(value: Option<Scalar<'a>>, field: &'static str) -> Result<Scalar<'a>, FormatError> {
    value.ok_or(FormatError::MissingField { field })
}

fn timestamp(value: Option<&Scalar<'_>>, field: &'static str) -> Result<Option<i64>, FormatError> {
    value.map(|v| v.to_timestamp(field)).transpose()
}

#[cfg(test)]
mod tests;
