//! Plugins built against `apiary:plugin@0.3.0`, the contract whose event
//! batches the host keeps: the text of a batch's events is spans of one
//! string, and its record headers one list. A 0.3.0 parser's output is
//! checked once and goes to 0.3.0 rules as it came; earlier parsers' events
//! are laid out as 0.3.0 here, and earlier rules get theirs with each event
//! owning its text.

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

/// Checks a 0.3.0 parser's output: every span is whole characters of its
/// `text`, and its spans cover at most `max_text` bytes in all. Spans may
/// overlap, and a rule of an earlier contract gets each span's text copied
/// out: a parser must not make the host copy more text than its own memory
/// could have held.
pub fn check_text(output: &v3::ParseOutput, max_text: usize) -> Result<(), String> {
    let mut text = Text {
        text: &output.text,
        covered: 0,
        max: max_text,
    };
    output
        .events
        .iter()
        .try_for_each(|e| body_spans_of(&e.body, |span| text.get(span).map(drop)))
}

/// Calls `f` with every text span of `body`.
fn body_spans_of(
    body: &v3::types::EventBody,
    mut f: impl FnMut(v3::types::Span) -> Result<(), String>,
) -> Result<(), String> {
    use v3::types::EventBody as B;
    let (first, second) = match body {
        B::Visit(v) => (v.ip, v.province),
        B::Gift(g) => (g.ip, None),
        B::Chat(c) => (Some(c.text), c.user_name),
        B::RoomStatus(s) => (s.title, None),
        B::StreamerStats(_) | B::RoomList(_) => (None, None),
    };
    first.into_iter().chain(second).try_for_each(&mut f)
}

/// The `text` of a batch, and how many bytes its spans covered so far.
struct Text<'a> {
    text: &'a str,
    covered: usize,
    max: usize,
}

impl<'a> Text<'a> {
    /// The text `span` covers.
    fn get(&mut self, span: v3::types::Span) -> Result<&'a str, String> {
        let (start, end) = (span.start as usize, span.start as usize + span.len as usize);
        let text = self.text.get(start..end).ok_or_else(|| {
            format!(
                "returned text span {start}..{end}, which is not whole characters of its \
                 {}-byte text",
                self.text.len()
            )
        })?;
        self.covered += text.len();
        if self.covered > self.max {
            return Err(format!(
                "returned text spans of more than {} bytes in one batch",
                self.max
            ));
        }
        Ok(text)
    }

    fn owned(&mut self, span: v3::types::Span) -> Result<String, String> {
        self.get(span).map(str::to_owned)
    }

    fn opt(&mut self, span: Option<v3::types::Span>) -> Result<Option<String>, String> {
        span.map(|s| self.owned(s)).transpose()
    }

    fn body(&mut self, body: &v3::types::EventBody) -> Result<types::EventBody, String> {
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
                text: self.owned(c.text)?,
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
            O::RoomList(l) => B::RoomList(types::RoomList {
                rooms: l.rooms.clone(),
            }),
        })
    }
}

/// Events as a rule of an earlier contract takes them (0.2.0, which a
/// 0.1.0 rule's conversion starts from): each owning its text.
pub fn to_owned_text(batch: &v3::types::EventBatch) -> Result<types::EventBatch, String> {
    // Spans were checked against the limit when the parser returned them.
    let mut text = Text {
        text: &batch.text,
        covered: 0,
        max: usize::MAX,
    };
    let events = batch
        .events
        .iter()
        .map(|e| {
            Ok(types::Event {
                record_index: e.record_index,
                time: e.time,
                body: text.body(&e.body)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(types::EventBatch {
        topic: batch.topic.clone(),
        platform: batch.platform.clone(),
        events,
        watermark: batch.watermark,
    })
}

/// A 0.2.0 parser's output (a 0.1.0 one's converts to 0.2.0 first) laid
/// out as 0.3.0: its events' text end to end in one string. Fails when
/// that string would pass the 4 GiB a span can address.
pub fn from_owned_text(output: ParseOutput) -> Result<v3::ParseOutput, String> {
    let mut text = String::new();
    let events: Vec<v3::types::Event> = output
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
            "returned {} events with {} bytes of text (spans reach 4 GiB)",
            events.len(),
            text.len()
        ));
    }
    Ok(v3::ParseOutput {
        platform: output.platform,
        text,
        events,
        rejected: output
            .rejected
            .into_iter()
            .map(|r| v3::types::Rejection {
                index: r.index,
                reason: r.reason,
            })
            .collect(),
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
        let parsed = output(
            "1.2.3.4浙江",
            vec![gift(Some(span(0, 7))), gift(None), gift(Some(span(2, 3)))],
        );
        check_text(&parsed, 1 << 20).unwrap();
        let batch = v3::types::EventBatch {
            topic: "t".into(),
            platform: "seed".into(),
            text: parsed.text,
            events: parsed.events,
            watermark: Some(9),
        };
        let owned = to_owned_text(&batch).unwrap();
        let ips: Vec<Option<&str>> = owned.events.iter().map(ip).collect();
        assert_eq!(ips, [Some("1.2.3.4"), None, Some("2.3")]);
        assert_eq!(owned.watermark, Some(9));

        let laid_out = from_owned_text(ParseOutput {
            platform: "seed".into(),
            events: owned.events.clone(),
            rejected: Vec::new(),
        })
        .unwrap();
        assert_eq!(laid_out.text, "1.2.3.42.3");
        check_text(&laid_out, 10).unwrap();
        let again = to_owned_text(&v3::types::EventBatch {
            text: laid_out.text,
            events: laid_out.events,
            ..batch
        })
        .unwrap();
        assert_eq!(again.events, owned.events);
    }

    #[test]
    fn a_span_outside_the_text_or_inside_a_character_fails_the_batch() {
        let text = "浙江";
        for bad in [span(0, 7), span(6, 1), span(1, 2), span(u32::MAX, u32::MAX)] {
            let error = check_text(&output(text, vec![gift(Some(bad))]), 1 << 20).unwrap_err();
            assert!(
                error.contains("not whole characters of its 6-byte text"),
                "{error}"
            );
        }
    }

    #[test]
    fn overlapping_spans_cannot_cover_more_than_the_limit() {
        // A thousand events, each the whole 1000-byte text: a megabyte of
        // copies for an earlier rule, from a kilobyte.
        let text = "x".repeat(1000);
        let events = (0..1000).map(|_| gift(Some(span(0, 1000)))).collect();
        let error = check_text(&output(&text, events), 100_000).unwrap_err();
        assert_eq!(
            error,
            "returned text spans of more than 100000 bytes in one batch"
        );
        let events = (0..100).map(|_| gift(Some(span(0, 1000)))).collect();
        assert!(check_text(&output(&text, events), 100_000).is_ok());
    }
}
