//! Plugins built against `apiary:plugin@0.3.0`: the text of a batch's
//! events is spans of one string, and its record headers one list. The host
//! keeps each event's text as its own string (lanes filter, repartition and
//! dead-letter events one by one), and lays a batch out as 0.3.0 at each
//! call: a copy per batch in the host instead of an allocation per string
//! in the guest.

use crate::model::wit::{ParseOutput, types, v3};

/// A raw batch as a 0.3.0 parser takes it.
pub fn raw_batch(batch: &types::RawBatch) -> v3::types::RawBatch {
    let span = |s: types::Span| v3::types::Span {
        start: s.start,
        len: s.len,
    };
    let mut headers = Vec::new();
    let records = batch
        .records
        .iter()
        .zip(0u32..)
        .map(|(r, index)| {
            headers.extend(r.headers.iter().map(|h| v3::types::Header {
                record: index,
                name: span(h.name),
                value: span(h.value),
            }));
            v3::types::RawRecord {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(span),
                value: span(r.value),
            }
        })
        .collect();
    v3::types::RawBatch {
        topic: batch.topic.clone(),
        data: batch.data.clone(),
        records,
        headers,
    }
}

/// A 0.3.0 parser's output, its events' text copied out of its `text`.
///
/// A span outside the text or not on character boundaries fails the call,
/// and so do spans of more than `max_text` bytes in all: spans may overlap,
/// and a parser must not make the host copy more text than its own memory
/// could have held.
pub fn parse_output(output: v3::ParseOutput, max_text: usize) -> Result<ParseOutput, String> {
    let mut text = Text {
        text: &output.text,
        copied: 0,
        max: max_text,
    };
    let events = output
        .events
        .into_iter()
        .map(|e| {
            Ok(types::Event {
                record_index: e.record_index,
                time: e.time,
                body: text.body(e.body)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ParseOutput {
        platform: output.platform,
        events,
        rejected: output.rejected.into_iter().map(Into::into).collect(),
    })
}

/// The `text` of a parser's output, and how much of it was copied out.
struct Text<'a> {
    text: &'a str,
    copied: usize,
    max: usize,
}

impl Text<'_> {
    /// The text `span` covers.
    fn get(&mut self, span: v3::types::Span) -> Result<String, String> {
        let (start, end) = (span.start as usize, span.start as usize + span.len as usize);
        let text = self.text.get(start..end).ok_or_else(|| {
            format!(
                "returned text span {start}..{end}, which is not whole characters of its \
                 {}-byte text",
                self.text.len()
            )
        })?;
        self.copied += text.len();
        if self.copied > self.max {
            return Err(format!(
                "returned text spans of more than {} bytes in one batch",
                self.max
            ));
        }
        Ok(text.to_owned())
    }

    fn opt(&mut self, span: Option<v3::types::Span>) -> Result<Option<String>, String> {
        span.map(|s| self.get(s)).transpose()
    }

    fn body(&mut self, body: v3::types::EventBody) -> Result<types::EventBody, String> {
        use types::EventBody as B;
        use v3::types::EventBody as O;
        Ok(match body {
            O::Visit(v) => B::Visit(types::ViewerVisit {
                user_id: v.user_id,
                room_id: v.room_id,
                ip: self.opt(v.ip)?,
                arrive_time: v.arrive_time,
                leave_time: v.leave_time,
                create_time: v.create_time,
                region_code: v.region_code,
                grade: v.grade,
                province: self.opt(v.province)?,
            }),
            O::Gift(g) => B::Gift(types::Gift {
                user_id: g.user_id,
                room_id: g.room_id,
                gift_type: g.gift_type,
                amount: g.amount,
                ip: self.opt(g.ip)?,
                create_time: g.create_time,
                update_time: g.update_time,
            }),
            O::Chat(c) => B::Chat(types::ChatMessage {
                user_id: c.user_id,
                room_id: c.room_id,
                user_name: self.opt(c.user_name)?,
                text: self.get(c.text)?,
                level: c.level,
                time: c.time,
            }),
            O::RoomStatus(s) => B::RoomStatus(types::RoomStatus {
                room_id: s.room_id,
                live: s.live,
                title: self.opt(s.title)?,
                time: s.time,
            }),
            O::StreamerStats(s) => B::StreamerStats(types::StreamerStats {
                room_id: s.room_id,
                heat: s.heat,
                followers: s.followers,
                online: s.online,
                time: s.time,
            }),
            O::RoomList(l) => B::RoomList(types::RoomList { rooms: l.rooms }),
        })
    }
}

/// Events as a 0.3.0 rule takes them: their text laid end to end in one
/// string. Fails, worded to follow the rule's name, when that string would
/// pass the 4 GiB a span can address.
pub fn event_batch(batch: &types::EventBatch) -> Result<v3::types::EventBatch, String> {
    let mut text = String::new();
    let events = batch
        .events
        .iter()
        .map(|e| v3::types::Event {
            record_index: e.record_index,
            time: e.time,
            body: body_spans(&e.body, &mut text),
        })
        .collect();
    if u32::try_from(text.len()).is_err() {
        return Err(format!(
            "cannot be given a batch of {} events with {} bytes of text (spans reach 4 GiB)",
            batch.events.len(),
            text.len()
        ));
    }
    Ok(v3::types::EventBatch {
        topic: batch.topic.clone(),
        platform: batch.platform.clone(),
        text,
        events,
        watermark: batch.watermark,
    })
}

/// Appends `s` to `text`; the span it takes there.
fn put(text: &mut String, s: &str) -> v3::types::Span {
    let start = text.len();
    text.push_str(s);
    // Spans past 4 GiB are refused once the batch is laid out.
    v3::types::Span {
        start: start as u32,
        len: s.len() as u32,
    }
}

fn body_spans(body: &types::EventBody, text: &mut String) -> v3::types::EventBody {
    use types::EventBody as B;
    use v3::types::EventBody as O;
    match body {
        B::Visit(v) => O::Visit(v3::types::ViewerVisit {
            user_id: v.user_id,
            room_id: v.room_id,
            ip: v.ip.as_deref().map(|s| put(text, s)),
            arrive_time: v.arrive_time,
            leave_time: v.leave_time,
            create_time: v.create_time,
            region_code: v.region_code,
            grade: v.grade,
            province: v.province.as_deref().map(|s| put(text, s)),
        }),
        B::Gift(g) => O::Gift(v3::types::Gift {
            user_id: g.user_id,
            room_id: g.room_id,
            gift_type: g.gift_type,
            amount: g.amount,
            ip: g.ip.as_deref().map(|s| put(text, s)),
            create_time: g.create_time,
            update_time: g.update_time,
        }),
        B::Chat(c) => O::Chat(v3::types::ChatMessage {
            user_id: c.user_id,
            room_id: c.room_id,
            user_name: c.user_name.as_deref().map(|s| put(text, s)),
            text: put(text, &c.text),
            level: c.level,
            time: c.time,
        }),
        B::RoomStatus(s) => O::RoomStatus(v3::types::RoomStatus {
            room_id: s.room_id,
            live: s.live,
            title: s.title.as_deref().map(|t| put(text, t)),
            time: s.time,
        }),
        B::StreamerStats(s) => O::StreamerStats(v3::types::StreamerStats {
            room_id: s.room_id,
            heat: s.heat,
            followers: s.followers,
            online: s.online,
            time: s.time,
        }),
        B::RoomList(l) => O::RoomList(v3::types::RoomList {
            rooms: l.rooms.clone(),
        }),
    }
}

/// Fired timers as a 0.3.0 rule takes them.
pub fn fired_timers(timers: &[types::FiredTimer]) -> Vec<v3::types::FiredTimer> {
    timers
        .iter()
        .map(|t| v3::types::FiredTimer {
            key: t.key.clone(),
            time: t.time,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u32, len: u32) -> v3::types::Span {
        v3::types::Span { start, len }
    }

    fn gift(ip: Option<v3::types::Span>) -> v3::types::Event {
        v3::types::Event {
            record_index: 0,
            time: Some(5),
            body: v3::types::EventBody::Gift(v3::types::Gift {
                user_id: 1,
                room_id: 2,
                gift_type: 3,
                amount: 4,
                ip,
                create_time: Some(5),
                update_time: None,
            }),
        }
    }

    fn output(text: &str, events: Vec<v3::types::Event>) -> v3::ParseOutput {
        v3::ParseOutput {
            platform: "seed".into(),
            text: text.into(),
            events,
            rejected: Vec::new(),
        }
    }

    fn ip(event: &types::Event) -> Option<&str> {
        match &event.body {
            types::EventBody::Gift(g) => g.ip.as_deref(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_move_into_one_list_naming_their_records() {
        let header = |start| types::Header {
            name: types::Span { start, len: 1 },
            value: types::Span { start, len: 0 },
        };
        let record = |headers| types::RawRecord {
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: types::Span { start: 0, len: 3 },
            headers,
        };
        let batch = types::RawBatch {
            topic: "t".into(),
            data: b"abc".to_vec(),
            records: vec![
                record(vec![header(0), header(1)]),
                record(vec![]),
                record(vec![header(2)]),
            ],
        };
        let laid_out = raw_batch(&batch);
        let headers: Vec<(u32, u32)> = laid_out
            .headers
            .iter()
            .map(|h| (h.record, h.name.start))
            .collect();
        assert_eq!(headers, [(0, 0), (0, 1), (2, 2)]);
        assert_eq!(laid_out.records.len(), 3);
        assert_eq!(laid_out.data, b"abc");
    }

    #[test]
    fn spans_become_strings_and_back() {
        let parsed = parse_output(
            output(
                "1.2.3.4浙江",
                vec![gift(Some(span(0, 7))), gift(None), gift(Some(span(2, 3)))],
            ),
            1 << 20,
        )
        .unwrap();
        let ips: Vec<Option<&str>> = parsed.events.iter().map(ip).collect();
        assert_eq!(ips, [Some("1.2.3.4"), None, Some("2.3")]);

        let batch = types::EventBatch {
            topic: "t".into(),
            platform: "seed".into(),
            events: parsed.events,
            watermark: Some(9),
        };
        let laid_out = event_batch(&batch).unwrap();
        assert_eq!(laid_out.text, "1.2.3.42.3");
        assert_eq!(laid_out.watermark, Some(9));
        let again = parse_output(output(&laid_out.text, laid_out.events), 1 << 20).unwrap();
        assert_eq!(again.events, batch.events);
    }

    #[test]
    fn a_span_outside_the_text_or_inside_a_character_fails_the_batch() {
        let text = "浙江";
        for bad in [span(0, 7), span(6, 1), span(1, 2), span(u32::MAX, u32::MAX)] {
            let error = parse_output(output(text, vec![gift(Some(bad))]), 1 << 20).unwrap_err();
            assert!(
                error.contains("not whole characters of its 6-byte text"),
                "{error}"
            );
        }
    }

    #[test]
    fn overlapping_spans_cannot_copy_more_than_the_limit() {
        // A thousand events, each the whole 1000-byte text: a megabyte to
        // copy from a kilobyte.
        let text = "x".repeat(1000);
        let events = (0..1000).map(|_| gift(Some(span(0, 1000)))).collect();
        let error = parse_output(output(&text, events), 100_000).unwrap_err();
        assert_eq!(
            error,
            "returned text spans of more than 100000 bytes in one batch"
        );
        let events = (0..100).map(|_| gift(Some(span(0, 1000)))).collect();
        assert!(parse_output(output(&text, events), 100_000).is_ok());
    }
}
