//! Timestamp rendering: timestamps travel as milliseconds since the Unix
//! epoch and are written as `YYYY-MM-DD HH:MM:SS.mmm` text in a fixed UTC
//! offset, which SQLite, MySQL's `DATETIME(3)` and PostgreSQL's
//! `TIMESTAMP(3)` all accept.

/// The machine's clock, in milliseconds since the epoch (0 before it).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The timestamps every sink stores, in ms since the epoch: from
/// 0001-01-02 to 9999-12-30 UTC. PostgreSQL has no year 0 and MySQL's
/// `DATETIME` no year past 9999; the day at each end leaves room for the
/// sink's UTC offset (under 15 hours either way).
pub const STORABLE_MILLIS: std::ops::Range<i64> = -62_135_510_400_000..253_402_214_400_000;

/// Parses `+08:00`, `-05:30`, `Z` or `UTC` into seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let bad = || format!("`{text}` is not a UTC offset like +08:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Formats `millis` since the epoch, shifted by `offset_secs`, as
/// `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn format_millis(millis: i64, offset_secs: i32) -> String {
    let local = millis + i64::from(offset_secs) * 1000;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0, 0), "1970-01-01 00:00:00.000");
        // 2021-08-13 10:00:00 in Shanghai is 02:00:00 UTC.
        assert_eq!(
            format_millis(1_628_820_000_000, 0),
            "2021-08-13 02:00:00.000"
        );
        assert_eq!(
            format_millis(1_628_820_000_123, 8 * 3600),
            "2021-08-13 10:00:00.123"
        );
        assert_eq!(format_millis(951_782_400_000, 0), "2000-02-29 00:00:00.000");
        assert_eq!(format_millis(-1, 0), "1969-12-31 23:59:59.999");
    }

    #[test]
    fn storable_timestamps_stay_in_years_0001_to_9999_at_any_offset() {
        let (first, last) = (STORABLE_MILLIS.start, STORABLE_MILLIS.end - 1);
        assert_eq!(format_millis(first, 0), "0001-01-02 00:00:00.000");
        assert_eq!(format_millis(last, 0), "9999-12-30 23:59:59.999");
        assert_eq!(format_millis(first, -14 * 3600), "0001-01-01 10:00:00.000");
        assert_eq!(format_millis(last, 14 * 3600), "9999-12-31 13:59:59.999");
    }

    #[test]
    fn parses_offsets() {
        assert_eq!(parse_utc_offset("+08:00"), Ok(28_800));
        assert_eq!(parse_utc_offset("-05:30"), Ok(-19_800));
        assert_eq!(parse_utc_offset("UTC"), Ok(0));
        assert!(parse_utc_offset("Asia/Shanghai").is_err());
    }
}
