//! The file source: a JSON-lines file read as one partition of a topic,
//! each line a record whose offset is its line number (from 0). The file
//! is followed like `tail -f`, so records appended later are read too.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Activity, BatchBuilder, BatchSender, Lanes};
use crate::model::{LaneKey, SourceBatch};

/// How often a file at its end is polled for new lines.
const POLL: Duration = Duration::from_millis(20);

/// Reads one file into its lane.
pub struct FileReader {
    /// The file.
    pub path: PathBuf,
    /// Logical topic of its records.
    pub topic: String,
    /// The lane it feeds.
    pub lane: LaneKey,
    /// Records per batch at most.
    pub max_records: usize,
    /// Bytes of record data per batch at most (a larger record goes alone).
    pub max_bytes: usize,
    /// Bytes of a line held at most: the lane refuses a longer record, so
    /// one byte more than that says it is longer.
    pub max_record_bytes: usize,
    /// Bounded mode: the file's size at the start; the reader stops once
    /// it has read that far.
    pub until: Option<u64>,
    /// Set by a stop request: the reader stops at once, sending nothing
    /// more (what it has not sent is read again by the next run).
    pub interrupt: Arc<AtomicBool>,
    /// A partial batch is sent after waiting this long for more lines.
    pub max_wait: Duration,
}

impl FileReader {
    /// Opens the file's lane and reads into it until `stop` is set (or, in
    /// bounded mode, to the end), then closes the lane, which commits its
    /// last checkpoint. Blocking: run it on its own thread.
    pub fn run(
        self,
        lanes: &dyn Lanes,
        activity: Arc<Activity>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let input = lanes
            .open(self.lane.clone(), &self.topic, None)
            .with_context(|| format!("source file {}", self.path.display()))?;
        let read = self.read(input.start.unwrap_or(0), &input.batches, &activity, &stop);
        drop(input);
        // A lane's own error explains a reader's "lane stopped"; so does a
        // paused lane let go when the pipeline stops.
        lanes.close(&self.lane)?;
        if !stop.load(Ordering::Relaxed) {
            read?;
        }
        Ok(())
    }

    /// Reads from line `start` on, sending batches until `stop` is set;
    /// then sends what it holds and returns. A last line without a newline
    /// is taken once the file has not grown for `max_wait`.
    fn read(
        &self,
        start: i64,
        tx: &BatchSender,
        activity: &Activity,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        let file = File::open(&self.path)
            .with_context(|| format!("cannot open source file {}", self.path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::with_capacity(512);
        let keep = self.max_record_bytes.saturating_add(1);
        let mut offset = 0i64;
        // Bytes read so far, for `until`.
        let mut consumed = 0u64;
        // Skip what earlier checkpoints already cover.
        while offset < start {
            line.clear();
            let read = read_line_within(&mut reader, &mut line, keep)?;
            if read == 0 {
                break;
            }
            consumed += read as u64;
            offset += 1;
        }
        let mut batch = BatchBuilder::new(&self.topic, self.max_records);
        let mut batch_started = Instant::now();
        let mut partial_since: Option<Instant> = None;
        line.clear();
        loop {
            if self.interrupt.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Retries an interrupted read itself.
            let read = read_line_within(&mut reader, &mut line, keep)
                .with_context(|| format!("reading {}", self.path.display()))?;
            consumed += read as u64;
            let complete = line.last() == Some(&b'\n');
            // Bounded mode: the end taken at the start is reached.
            let at_end = read == 0 && self.until.is_some_and(|end| consumed >= end);
            let stopping = stop.load(Ordering::Relaxed) || at_end;
            let stale_partial = partial_since.is_some_and(|t| t.elapsed() >= self.max_wait);
            if complete || (!line.is_empty() && read == 0 && (stale_partial || stopping)) {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                let value = line.strip_suffix(b"\n").unwrap_or(&line);
                let value = value.strip_suffix(b"\r").unwrap_or(value);
                batch.push(0, offset, None, None, value, &[]);
                offset += 1;
                line.clear();
                partial_since = None;
                if batch.len() >= self.max_records || batch.bytes() >= self.max_bytes {
                    // Per batch, not per record: a clock read per record
                    // shows in the read rate.
                    activity.touch();
                    self.send(&mut batch, offset, tx)?;
                }
                continue;
            }
            // At the end of the file (perhaps inside a line being written).
            if !line.is_empty() && partial_since.is_none() {
                partial_since = Some(Instant::now());
            }
            if !batch.is_empty() && (batch_started.elapsed() >= self.max_wait || stopping) {
                activity.touch();
                self.send(&mut batch, offset, tx)?;
            }
            if stopping && line.is_empty() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    fn send(
        &self,
        batch: &mut BatchBuilder,
        next_offset: i64,
        tx: &BatchSender,
    ) -> anyhow::Result<()> {
        let sent = tx.blocking_send(SourceBatch {
            lane: self.lane.clone(),
            batch: batch.take(),
            next_offset,
            room: None,
        });
        anyhow::ensure!(sent, "lane {} stopped", self.lane);
        Ok(())
    }
}

/// Reads to the end of the line (or of the data there is) like
/// `read_until(b'\n')`, but appends to `line` no more than `keep` bytes of
/// it, and its newline: a line of any length takes bounded memory. Returns
/// the bytes read.
pub fn read_line_within(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read);
        }
        let newline = memchr::memchr(b'\n', available);
        let used = newline.map_or(available.len(), |at| at + 1);
        let text = &available[..newline.unwrap_or(used)];
        let room = keep.saturating_sub(line.len().min(keep));
        line.extend_from_slice(&text[..text.len().min(room)]);
        if newline.is_some() {
            line.push(b'\n');
        }
        reader.consume(used);
        read += used;
        if newline.is_some() {
            return Ok(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_at_most_its_first_bytes_and_its_newline() {
        let data = format!("short\n{}\nnext\npartial", "x".repeat(100_000));
        // A small buffer, so long lines span many refills.
        let mut reader = BufReader::with_capacity(64, data.as_bytes());
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = read_line_within(&mut reader, &mut line, 10).unwrap();
            if read == 0 {
                break;
            }
            lines.push((read, String::from_utf8(line).unwrap()));
        }
        let long = format!("{}\n", "x".repeat(10));
        assert_eq!(
            lines,
            [
                (6, "short\n".to_owned()),
                (100_001, long),
                (5, "next\n".to_owned()),
                (7, "partial".to_owned()),
            ]
        );
        // A partial line read on later goes on where it stopped.
        let mut line = b"xxxxxxxx".to_vec();
        let mut rest = BufReader::new(&b"yyyy\n"[..]);
        assert_eq!(read_line_within(&mut rest, &mut line, 10).unwrap(), 5);
        assert_eq!(line, b"xxxxxxxxyy\n");
    }
}
