//! Building raw batches: all record bytes in one buffer, records as spans.

use crate::model::wit::types::{Header, RawBatch, RawRecord, Span};

/// Accumulates records into one [`RawBatch`].
#[derive(Debug)]
pub struct BatchBuilder {
    topic: String,
    data: Vec<u8>,
    records: Vec<RawRecord>,
}

impl BatchBuilder {
    /// An empty batch of `topic`, sized for `records` records.
    pub fn new(topic: &str, records: usize) -> Self {
        Self {
            topic: topic.to_owned(),
            data: Vec::with_capacity(records * 256),
            records: Vec::with_capacity(records),
        }
    }

    /// Appends one record.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], &[u8])],
    ) {
        let key = key.map(|k| self.append(k));
        let value = self.append(value);
        let headers = headers
            .iter()
            .map(|(name, value)| Header {
                name: self.append(name),
                value: self.append(value),
            })
            .collect();
        self.records.push(RawRecord {
            partition,
            offset,
            timestamp,
            key,
            value,
            headers,
        });
    }

    fn append(&mut self, bytes: &[u8]) -> Span {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes buffered so far.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Takes the batch, leaving the builder empty with the same capacity.
    pub fn take(&mut self) -> RawBatch {
        let records = self.records.capacity();
        let data = self.data.capacity();
        RawBatch {
            topic: self.topic.clone(),
            data: std::mem::replace(&mut self.data, Vec::with_capacity(data)),
            records: std::mem::replace(&mut self.records, Vec::with_capacity(records)),
        }
    }
}

/// The bytes a span of `batch.data` covers.
pub fn span_bytes(batch: &RawBatch, span: Span) -> &[u8] {
    &batch.data[span.start as usize..(span.start + span.len) as usize]
}
