use super::*;

/// `2021-08-16 09:48:01` in Asia/Shanghai (the seed's sample record).
const SAMPLE_MS: i64 = 1_629_078_481_000;

fn err_text<T: std::fmt::Debug>(r: Result<T, FormatError>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---- timestamps ----

#[test]
fn timestamp_known_values() {
    let cases = [
        ("2021-08-16 09:48:01", 1_629_078_481),
        ("1970-01-01 08:00:00", 0),
        ("1970-01-01 00:00:00", -28_800),
        ("1969-12-31 23:59:59", -28_801),
        ("2000-02-29 23:59:59", 951_839_999),
        ("2024-02-29 00:00:00", 1_709_136_000),
        ("1900-03-01 12:00:00", -2_203_876_800),
        ("2038-01-19 11:14:08", 2_147_483_648),
        ("9999-12-31 23:59:59", 253_402_271_999),
        ("0001-01-01 00:00:00", -62_135_625_600),
    ];
    for (text, seconds) in cases {
        assert_eq!(parse_timestamp(text), Ok(seconds * 1000), "{text}");
    }
}

#[test]
fn timestamp_day_rolls_over_in_utc() {
    // Midnight in Shanghai is 16:00 the previous day in UTC.
    let midnight = parse_timestamp("2021-01-01 00:00:00").unwrap();
    let before = parse_timestamp("2020-12-31 23:59:59").unwrap();
    assert_eq!(midnight - before, 1000);
    assert_eq!(midnight, 1_609_430_400_000);
}

#[test]
fn timestamp_leap_years() {
    assert!(parse_timestamp("2020-02-29 00:00:00").is_ok());
    assert!(parse_timestamp("2000-02-29 00:00:00").is_ok());
    assert_eq!(
        parse_timestamp("2021-02-29 00:00:00"),
        Err(TimestampError::Day {
            year: 2021,
            month: 2,
            day: 29
        })
    );
    assert!(parse_timestamp("1900-02-29 00:00:00").is_err());
    assert!(parse_timestamp("2100-02-29 00:00:00").is_err());
    assert!(parse_timestamp("2020-02-30 00:00:00").is_err());
}

#[test]
fn timestamp_field_ranges() {
    assert_eq!(
        parse_timestamp("2021-13-01 00:00:00"),
        Err(TimestampError::Month(13))
    );
    assert_eq!(
        parse_timestamp("2021-00-01 00:00:00"),
        Err(TimestampError::Month(0))
    );
    assert!(parse_timestamp("2021-04-31 00:00:00").is_err());
    assert!(parse_timestamp("2021-04-30 00:00:00").is_ok());
    assert!(parse_timestamp("2021-01-00 00:00:00").is_err());
    assert!(parse_timestamp("2021-12-31 00:00:00").is_ok());
    assert!(parse_timestamp("2021-01-32 00:00:00").is_err());
    assert_eq!(
        parse_timestamp("2021-01-01 24:00:00"),
        Err(TimestampError::Hour(24))
    );
    assert_eq!(
        parse_timestamp("2021-01-01 23:60:00"),
        Err(TimestampError::Minute(60))
    );
    assert_eq!(
        parse_timestamp("2021-01-01 23:59:60"),
        Err(TimestampError::Second(60))
    );
}

#[test]
fn timestamp_syntax() {
    for bad in [
        "",
        "2021-08-16",
        "2021-08-16 9:48:01",
        "2021/08/16 09:48:01",
        "2021-08-16 09:48:01 ",
        " 2021-08-16 09:48:01",
        "2021-08-16 09:48:0x",
        "2021-08-16 09:48:01.",
        "2021-08-16 09:48:01.1234567890",
        "2021-08-16 09:48:01.12a",
        "+021-08-16 09:48:01",
        "2021-08-16 09:48:01+08:00",
    ] {
        assert_eq!(parse_timestamp(bad), Err(TimestampError::Syntax), "{bad:?}");
    }
}

#[test]
fn timestamp_fraction_and_t() {
    let base = SAMPLE_MS;
    assert_eq!(parse_timestamp("2021-08-16T09:48:01"), Ok(base));
    assert_eq!(parse_timestamp("2021-08-16 09:48:01.5"), Ok(base + 500));
    assert_eq!(parse_timestamp("2021-08-16 09:48:01.123"), Ok(base + 123));
    assert_eq!(
        parse_timestamp("2021-08-16 09:48:01.123999999"),
        Ok(base + 123)
    );
}

#[test]
fn timestamp_format_round_trips() {
    assert_eq!(format_timestamp(SAMPLE_MS), "2021-08-16 09:48:01");
    assert_eq!(format_timestamp(SAMPLE_MS + 999), "2021-08-16 09:48:01");
    assert_eq!(format_timestamp(-1), "1970-01-01 07:59:59");
    // Every day from 1899 to 2101 at a moving time of day.
    let start = time::days_from_civil(1899, 1, 1);
    let end = time::days_from_civil(2101, 12, 31);
    for (i, days) in (start..=end).enumerate() {
        let ms = (days * 86_400 + (i as i64 * 7919) % 86_400) * 1000;
        let text = format_timestamp(ms);
        assert_eq!(parse_timestamp(&text), Ok(ms), "{text}");
    }
}

#[test]
fn civil_days_round_trip() {
    for days in -800_000..800_000 {
        let (y, m, d) = time::civil_from_days(days);
        assert_eq!(time::days_from_civil(y, m, d), days);
    }
}

// ---- visits ----

const SEED_VISIT: &str = r#"{"user_id": 3165, "ip": "123.0.0.105", "room_id": 20210813,
    "arrive_time": "2021-08-16 09:48:01", "create_time": "2021-08-16 09:48:01",
    "leave_time": "2021-08-16 09:48:01", "region": 1122, "grade": 1,
    "province": "\u6d59\u6c5f"}"#;

#[test]
fn visit_seed_sample() {
    let v = parse_visit(SEED_VISIT.as_bytes()).unwrap();
    assert_eq!(
        v,
        Visit {
            user_id: 3165,
            room_id: 20_210_813,
            ip: Some("123.0.0.105".into()),
            arrive_time: Some(SAMPLE_MS),
            leave_time: Some(SAMPLE_MS),
            create_time: Some(SAMPLE_MS),
            region_code: Some(1122),
            grade: Some(1),
            province: Some("浙江".into()),
        }
    );
    assert_eq!(v.missing_primary_key(), None);
}

#[test]
fn visit_region_vs_region_code() {
    let both = br#"{"user_id":1,"room_id":2,"region":1122,"region_code":3301}"#;
    assert_eq!(parse_visit(both).unwrap().region_code, Some(3301));
    let only_region = br#"{"user_id":1,"room_id":2,"region":"1122"}"#;
    assert_eq!(parse_visit(only_region).unwrap().region_code, Some(1122));
    let null_code = br#"{"user_id":1,"room_id":2,"region_code":null,"region":7}"#;
    assert_eq!(parse_visit(null_code).unwrap().region_code, Some(7));
    let neither = br#"{"user_id":1,"room_id":2}"#;
    assert_eq!(parse_visit(neither).unwrap().region_code, None);
    // The winner is validated; the loser is not looked at.
    let bad_region = br#"{"user_id":1,"room_id":2,"region_code":5,"region":"x"}"#;
    assert_eq!(parse_visit(bad_region).unwrap().region_code, Some(5));
    let bad_code = br#"{"user_id":1,"room_id":2,"region_code":"x","region":5}"#;
    assert_eq!(
        err_text(parse_visit(bad_code)),
        "field `region_code`: expected an integer, found \"x\""
    );
}

#[test]
fn visit_minimal_and_nulls() {
    let v = parse_visit(br#"{"user_id":1,"room_id":2,"ip":null,"grade":null}"#).unwrap();
    assert_eq!(
        v,
        Visit {
            user_id: 1,
            room_id: 2,
            ..Visit::default()
        }
    );
    assert_eq!(v.missing_primary_key(), Some("ip"));
    let v = parse_visit(br#"{"user_id":1,"room_id":2,"ip":"::1"}"#).unwrap();
    assert_eq!(v.missing_primary_key(), Some("arrive_time"));
}

#[test]
fn visit_missing_identity() {
    assert_eq!(
        parse_visit(br#"{"room_id":2}"#),
        Err(FormatError::MissingField { field: "user_id" })
    );
    assert_eq!(
        err_text(parse_visit(br#"{"user_id":1,"room_id":null}"#)),
        "missing field `room_id`"
    );
}

#[test]
fn string_numbers_and_other_numbers() {
    let v = parse_visit(
        br#"{"user_id":"3165","room_id":" 20210813 ","grade":"-2","region":3.0,"province":12}"#,
    )
    .unwrap();
    assert_eq!(v.user_id, 3165);
    assert_eq!(v.room_id, 20_210_813);
    assert_eq!(v.grade, Some(-2));
    assert_eq!(v.region_code, Some(3));
    assert_eq!(v.province.as_deref(), Some("12"));

    let g = parse_gift(
        br#"{"user_id":9223372036854775807,"room_id":"-9223372036854775808","gift_type":"3","gift_total_amount":"28"}"#,
    )
    .unwrap();
    assert_eq!(g.user_id, i64::MAX);
    assert_eq!(g.room_id, i64::MIN);
    assert_eq!(g.gift_type, 3);
    assert_eq!(g.amount, 28);
}

#[test]
fn wrong_types_name_the_field() {
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"user_id":1,"room_id":2,"grade":"abc"}"#,
            "field `grade`: expected an integer, found \"abc\"",
        ),
        (
            br#"{"user_id":1,"room_id":2,"grade":1.5}"#,
            "field `grade`: expected an integer, found 1.5",
        ),
        (
            br#"{"user_id":1,"room_id":2,"grade":true}"#,
            "field `grade`: expected an integer, found true",
        ),
        (
            br#"{"user_id":1,"room_id":2,"grade":""}"#,
            "field `grade`: expected an integer, found \"\"",
        ),
        (
            br#"{"user_id":1,"room_id":2,"grade":3000000000}"#,
            "field `grade`: expected a 32-bit integer, found 3000000000",
        ),
        (
            br#"{"user_id":18446744073709551615,"room_id":2}"#,
            "field `user_id`: expected a 64-bit integer, found 18446744073709551615",
        ),
        (
            br#"{"user_id":"99999999999999999999","room_id":2}"#,
            "field `user_id`: expected a 64-bit integer, found \"99999999999999999999\"",
        ),
        (
            br#"{"user_id":1,"room_id":[2]}"#,
            "field `room_id`: expected an integer, found an array",
        ),
        (
            br#"{"user_id":1,"room_id":2,"ip":{"v4":"1.2.3.4"}}"#,
            "field `ip`: expected a string, found an object",
        ),
        (
            br#"{"user_id":1,"room_id":2,"arrive_time":"2021-02-29 10:00:00"}"#,
            "field `arrive_time`: expected a timestamp `YYYY-MM-DD HH:MM:SS`, found \
             \"2021-02-29 10:00:00\" (day 29 is out of range for 2021-02)",
        ),
        (
            br#"{"user_id":1,"room_id":2,"leave_time":"yesterday"}"#,
            "field `leave_time`: expected a timestamp `YYYY-MM-DD HH:MM:SS`, found \
             \"yesterday\" (not of the form YYYY-MM-DD HH:MM:SS)",
        ),
        (
            br#"{"user_id":1,"room_id":2,"create_time":1629078481000}"#,
            "field `create_time`: expected a timestamp string `YYYY-MM-DD HH:MM:SS`, \
             found 1629078481000",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            err_text(parse_visit(input)),
            *expected,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn malformed_json() {
    assert_eq!(
        err_text(parse_visit(br#"{"user_id" 1}"#)),
        "malformed JSON at line 1 column 12: expected `:`"
    );
    let e = parse_gift(br#"{"user_id": 1, "gift"#).unwrap_err();
    assert!(
        matches!(e, FormatError::MalformedJson { line: 1, .. }),
        "{e}"
    );
    assert!(matches!(
        parse_gift(b""),
        Err(FormatError::MalformedJson { .. })
    ));
    assert!(matches!(
        parse_gift(br#"{"user_id":1} x"#),
        Err(FormatError::MalformedJson { .. })
    ));
    // Not JSON at all, even though it doesn't start with `{`.
    assert!(matches!(
        parse_gift(b"[1, 2"),
        Err(FormatError::MalformedJson { .. })
    ));
    assert!(matches!(
        parse_gift(b"hello"),
        Err(FormatError::MalformedJson { .. })
    ));
    // Invalid UTF-8 inside a string.
    assert!(matches!(
        parse_visit(b"{\"user_id\":1,\"room_id\":2,\"ip\":\"\xff\"}"),
        Err(FormatError::MalformedJson { .. })
    ));
    // A duplicate field is ambiguous; it is refused rather than guessed.
    let e = parse_visit(br#"{"user_id":1,"room_id":2,"user_id":3}"#).unwrap_err();
    assert!(e.to_string().contains("duplicate field `user_id`"), "{e}");
}

#[test]
fn non_objects() {
    let cases: &[(&[u8], &str)] = &[
        (b"[1, 2]", "expected a JSON object, found an array"),
        (b"  \"x\"", "expected a JSON object, found a string"),
        (b"42", "expected a JSON object, found a number"),
        (b"-1.5", "expected a JSON object, found a number"),
        (b"true", "expected a JSON object, found a boolean"),
        (b"null", "expected a JSON object, found null"),
    ];
    for (input, expected) in cases {
        assert_eq!(err_text(parse_gift(input)), *expected);
        assert_eq!(err_text(parse_visit(input)), *expected);
    }
}

// ---- gifts ----

#[test]
fn gift_seed_sample() {
    let sample = br#"{"user_id": 3994, "gift_type": 3, "gift_total_amount": 28,
        "room_id": 20210813, "ip": "123.0.0.105",
        "create_time": "2021-08-16 09:46:51", "update_time": "2021-08-16 09:46:51",
        "extra": {"nested": [1, {"deep": null}]}, "more": "ignored"}"#;
    assert_eq!(
        parse_gift(sample).unwrap(),
        Gift {
            user_id: 3994,
            room_id: 20_210_813,
            gift_type: 3,
            amount: 28,
            ip: Some("123.0.0.105".into()),
            create_time: Some(SAMPLE_MS - 70_000),
            update_time: Some(SAMPLE_MS - 70_000),
        }
    );
}

#[test]
fn gift_missing_identity_fields() {
    let full = [
        ("user_id", "1"),
        ("room_id", "2"),
        ("gift_type", "3"),
        ("gift_total_amount", "4"),
    ];
    for skip in 0..full.len() {
        let body: Vec<String> = full
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != skip)
            .map(|(_, (k, v))| format!("\"{k}\":{v}"))
            .collect();
        let json = format!("{{{}}}", body.join(","));
        assert_eq!(
            parse_gift(json.as_bytes()),
            Err(FormatError::MissingField {
                field: full[skip].0
            }),
            "{json}"
        );
    }
    assert_eq!(
        err_text(parse_gift(
            br#"{"user_id":1,"room_id":2,"gift_total_amount":4}"#
        )),
        "missing field `gift_type`"
    );
    // Optional gift fields may be missing.
    let g =
        parse_gift(br#"{"user_id":1,"room_id":2,"gift_type":3,"gift_total_amount":4}"#).unwrap();
    assert_eq!((g.ip, g.create_time, g.update_time), (None, None, None));
}

#[test]
fn gift_ref_borrows_plain_text_and_decodes_escapes() {
    let plain = br#"{"user_id": 1, "gift_type": 2, "gift_total_amount": 3, "room_id": 4, "ip": "10.0.0.1"}"#;
    let gift = parse_gift_ref(plain).unwrap();
    assert!(matches!(
        gift.ip,
        Some(std::borrow::Cow::Borrowed("10.0.0.1"))
    ));
    assert_eq!(gift.clone().into_owned(), parse_gift(plain).unwrap());
    // Through serde_json (a float), and with an escape, the text is owned.
    for record in [
        &br#"{"user_id": 1, "gift_type": 2, "gift_total_amount": 3, "room_id": 4, "ip": "10\u002e0.0.1"}"#[..],
        br#"{"user_id": 1, "gift_type": 2, "gift_total_amount": 3.0, "room_id": 4, "ip": "10\u002e0.0.1"}"#,
    ] {
        let gift = parse_gift_ref(record).unwrap();
        assert_eq!(gift.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(gift.into_owned(), parse_gift(record).unwrap());
    }
    assert_eq!(
        err_text(parse_gift_ref(br#"{"user_id": 1}"#)),
        err_text(parse_gift(br#"{"user_id": 1}"#))
    );
}

// ---- totals ----

#[test]
fn gift_type_totals_fold() {
    let gift = |gift_type, amount| Gift {
        gift_type,
        amount,
        ..Gift::default()
    };
    let mut totals = GiftTypeTotals::new();
    assert!(totals.is_empty());
    for g in [gift(3, 10), gift(1, 5), gift(3, 7), gift(10, 1), gift(1, 1)] {
        totals.add(&g);
    }
    assert_eq!(
        totals.iter().collect::<Vec<_>>(),
        [(1, 6), (3, 17), (10, 1)]
    );
    assert_eq!(totals.len(), 3);
    assert_eq!(totals.get(3), Some(17));
    assert_eq!(totals.get(2), None);
    totals.add_amount(3, i64::MAX);
    assert_eq!(totals.get(3), Some(i64::MAX));
    totals.clear();
    assert!(totals.is_empty());
    totals.extend(&[gift(2, 2), gift(2, 3)]);
    assert_eq!(totals.iter().collect::<Vec<_>>(), [(2, 5)]);
}

#[test]
fn room_lists() {
    let list =
        parse_room_list(br#"{"rooms": [1, "2", 30], "time": "2021-08-16 09:46:51"}"#).unwrap();
    assert_eq!(list.rooms, [1, 2, 30]);
    assert_eq!(
        list.time,
        Some(parse_timestamp("2021-08-16 09:46:51").unwrap())
    );
    assert_eq!(parse_room_list(br#"{"rooms": []}"#).unwrap().time, None);
    let err = |json: &str| parse_room_list(json.as_bytes()).unwrap_err().to_string();
    assert_eq!(err("{}"), "missing field `rooms`");
    assert_eq!(
        err(r#"{"rooms": "1,2"}"#),
        "field `rooms`: expected an array of room ids, found \"1,2\""
    );
    assert_eq!(
        err(r#"{"rooms": [1, 2.5]}"#),
        "field `rooms`: element 1: expected a 64-bit room id, found 2.5"
    );
    assert!(err(r#"{"rooms": [1], "time": 5}"#).starts_with("field `time`"));
}
