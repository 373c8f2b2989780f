//! The seed's timestamps: `YYYY-MM-DD HH:MM:SS` wall-clock time in
//! Asia/Shanghai, which has been a fixed UTC+8 without daylight saving since
//! 1991 (and the seed's data is from 2021). Written by hand, without a
//! date-time crate, to keep the plugins small and the hot path cheap.

use std::fmt;

/// Offset of Asia/Shanghai from UTC, in seconds.
const OFFSET_SECONDS: i64 = 8 * 3600;

/// Why a timestamp's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not of the form `YYYY-MM-DD HH:MM:SS[.fraction]`.
    Syntax,
    Month(u32),
    Day {
        year: i64,
        month: u32,
        day: u32,
    },
    Hour(u32),
    Minute(u32),
    Second(u32),
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax => f.write_str("not of the form YYYY-MM-DD HH:MM:SS"),
            Self::Month(m) => write!(f, "month {m} is out of range"),
            Self::Day { year, month, day } => {
                write!(f, "day {day} is out of range for {year:04}-{month:02}")
            }
            Self::Hour(h) => write!(f, "hour {h} is out of range"),
            Self::Minute(m) => write!(f, "minute {m} is out of range"),
            Self::Second(s) => write!(f, "second {s} is out of range"),
        }
    }
}

impl std::error::Error for TimestampError {}

/// Parses `YYYY-MM-DD HH:MM:SS` (Asia/Shanghai) into milliseconds since the
/// Unix epoch. Like Flink's SQL timestamp format it also takes an optional
/// fraction of a second (`.f` to `.fffffffff`, truncated to milliseconds),
/// and a `T` in place of the space.
pub fn parse_timestamp(text: &str) -> Result<i64, TimestampError> {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(TimestampError::Syntax);
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let millis = match &b[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let mut ms = 0;
            for i in 0..3 {
                ms = ms * 10 + fraction.get(i).map_or(Ok(0), |&d| digit(d))?;
            }
            digits(fraction)?; // the rest must be digits too
            ms
        }
        _ => return Err(TimestampError::Syntax),
    };
    if !(1..=12).contains(&month) {
        return Err(TimestampError::Month(month));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(TimestampError::Day { year, month, day });
    }
    if hour > 23 {
        return Err(TimestampError::Hour(hour));
    }
    if minute > 59 {
        return Err(TimestampError::Minute(minute));
    }
    if second > 59 {
        return Err(TimestampError::Second(second));
    }
    let days = days_from_civil(year, month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - OFFSET_SECONDS;
    Ok(seconds * 1000 + i64::from(millis))
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS` in Asia/Shanghai,
/// dropping the milliseconds; the inverse of [`parse_timestamp`] for years
/// 0 to 9999.
pub fn format_timestamp(epoch_ms: i64) -> String {
    let mut out = String::with_capacity(19);
    push_timestamp(&mut out, epoch_ms);
    out
}

/// [`format_timestamp`], appending to `out` (the generator writes millions).
pub fn push_timestamp(out: &mut String, epoch_ms: i64) {
    let seconds = epoch_ms.div_euclid(1000) + OFFSET_SECONDS;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let in_day = seconds.rem_euclid(86_400);
    let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    let year = year.clamp(0, 9999);
    push_digits(out, year as u32, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push(' ');
    push_digits(out, hour as u32, 2);
    out.push(':');
    push_digits(out, minute as u32, 2);
    out.push(':');
    push_digits(out, second as u32, 2);
}

fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
    }
}

fn digit(b: u8) -> Result<u32, TimestampError> {
    if b.is_ascii_digit() {
        Ok(u32::from(b - b'0'))
    } else {
        Err(TimestampError::Syntax)
    }
}

fn digits(bytes: &[u8]) -> Result<u32, TimestampError> {
    bytes.iter().try_fold(0, |acc, &b| Ok(acc * 10 + digit(b)?))
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`): years counted from March, so the leap day is last.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
