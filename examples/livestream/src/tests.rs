use std::collections::HashSet;

use super::*;

fn records(topic: Topic, seed: u64, ratio: f64, n: usize) -> Vec<(String, Option<Malformation>)> {
    let mut g = Generator::new(topic, seed).with_malformed_ratio(ratio);
    (0..n).map(|_| g.next_record()).collect()
}

#[test]
fn deterministic_per_seed() {
    for topic in [Topic::LiveStreamingLog, Topic::LiveGiftTotal] {
        assert_eq!(records(topic, 7, 0.1, 200), records(topic, 7, 0.1, 200));
        assert_ne!(records(topic, 7, 0.1, 200), records(topic, 8, 0.1, 200));
    }
}

#[test]
fn visits_parse_and_stay_in_range() {
    let provinces: HashSet<&str> = PROVINCES.iter().map(|&(p, _)| p).collect();
    let start = livestream_format::parse_timestamp(DEFAULT_START).unwrap();
    let mut last_create = start;
    for (line, malformation) in records(Topic::LiveStreamingLog, 1, 0.0, 5000) {
        assert_eq!(malformation, None);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(json.get("region").is_some() && json.get("region_code").is_none());
        let v = livestream_format::parse_visit(line.as_bytes()).unwrap();
        assert!((2000..=4000).contains(&v.user_id), "{line}");
        assert!(v.room_id == MAIN_ROOM || OTHER_ROOMS.contains(&v.room_id));
        assert_eq!(v.ip, Some(format!("123.0.0.{}", v.user_id % 255)));
        assert!((1..=5).contains(&v.grade.unwrap()));
        let province = v.province.as_deref().unwrap();
        assert!(provinces.contains(province), "{province}");
        let code = PROVINCES.iter().find(|&&(p, _)| p == province).unwrap().1;
        assert_eq!(v.region_code, Some(code));
        let (arrive, leave, create) = (
            v.arrive_time.unwrap(),
            v.leave_time.unwrap(),
            v.create_time.unwrap(),
        );
        assert!(arrive < leave && leave == create && create >= last_create);
        last_create = create;
        assert_eq!(v.missing_primary_key(), None);
    }
    assert!(last_create > start);
}

#[test]
fn gifts_parse_and_stay_in_range() {
    for (line, malformation) in records(Topic::LiveGiftTotal, 2, 0.0, 5000) {
        assert_eq!(malformation, None);
        let g = livestream_format::parse_gift(line.as_bytes()).unwrap();
        assert!((2000..=4000).contains(&g.user_id), "{line}");
        assert!((1..=10).contains(&g.gift_type));
        assert!((1..=100).contains(&g.amount));
        assert!(g.room_id == MAIN_ROOM || OTHER_ROOMS.contains(&g.room_id));
        assert!(g.ip.is_some() && g.create_time.is_some());
        assert_eq!(g.create_time, g.update_time);
    }
}

#[test]
fn seed_like_text() {
    let (line, _) = Generator::new(Topic::LiveStreamingLog, 3).next_record();
    assert!(line.starts_with("{\"user_id\": "), "{line}");
    assert!(line.contains("\"province\": \"\\u"), "{line}");
    assert!(line.is_ascii());
    let (line, _) = Generator::new(Topic::LiveGiftTotal, 3).next_record();
    assert!(line.contains("\"gift_type\": "), "{line}");
}

#[test]
fn malformed_records_are_refused() {
    for topic in [Topic::LiveStreamingLog, Topic::LiveGiftTotal] {
        let mut seen = HashSet::new();
        for (line, malformation) in records(topic, 4, 1.0, 400) {
            let malformation = malformation.expect("ratio 1.0 breaks every record");
            seen.insert(malformation);
            let result = match topic {
                Topic::LiveStreamingLog => livestream_format::parse_visit(line.as_bytes()).err(),
                Topic::LiveGiftTotal => livestream_format::parse_gift(line.as_bytes()).err(),
            };
            let error = result.unwrap_or_else(|| panic!("{malformation:?} parsed: {line}"));
            let text = error.to_string();
            match malformation {
                Malformation::BrokenJson => assert!(text.starts_with("malformed JSON"), "{text}"),
                Malformation::NotAnObject => assert!(text.contains("found an array"), "{text}"),
                Malformation::NonNumericString => {
                    assert!(text.contains("expected an integer"), "{text}");
                }
                Malformation::MissingIdentityField => {
                    assert!(text.starts_with("missing field"), "{text}");
                }
            }
            if topic == Topic::LiveGiftTotal && malformation == Malformation::MissingIdentityField {
                assert_eq!(text, "missing field `gift_type`");
            }
        }
        assert_eq!(seen.len(), Malformation::ALL.len());
    }
}

#[test]
fn malformed_ratio_is_roughly_kept() {
    let broken = records(Topic::LiveGiftTotal, 5, 0.1, 10_000)
        .iter()
        .filter(|(_, m)| m.is_some())
        .count();
    assert!((800..1200).contains(&broken), "{broken}");
}

#[test]
fn write_lines_writes_one_line_per_record() {
    let mut out = Vec::new();
    Generator::new(Topic::LiveGiftTotal, 6)
        .write_lines(100_000, &mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 100_000);
    assert!(text.ends_with('\n'));
    let mut g = Generator::new(Topic::LiveGiftTotal, 6);
    assert_eq!(text.lines().next(), g.next().as_deref());
}

#[test]
fn topic_names() {
    for topic in [Topic::LiveStreamingLog, Topic::LiveGiftTotal] {
        assert_eq!(topic.name().parse::<Topic>(), Ok(topic));
        assert_eq!(topic.to_string(), topic.name());
    }
    let err = "live_gift_log".parse::<Topic>().unwrap_err();
    assert!(
        err.to_string()
            .contains("live_streaming_log, live_gift_total")
    );
}

#[test]
fn prng_ranges() {
    let mut rng = SplitMix64::new(0);
    let mut seen = [false; 10];
    for _ in 0..10_000 {
        let v = rng.between(1, 10);
        assert!((1..=10).contains(&v));
        seen[(v - 1) as usize] = true;
        let f = rng.next_f64();
        assert!((0.0..1.0).contains(&f));
    }
    assert!(seen.iter().all(|&s| s));
}
