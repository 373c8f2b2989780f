//! A plugin's stderr, kept in memory: the last bytes it wrote, so that a
//! trap can be reported with the panic message that came before it (a
//! Rust guest prints `panicked at …` there, then traps on `unreachable`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of stderr kept: the end of what the plugin wrote.
const KEPT: usize = 2048;

/// The tail of a plugin instance's stderr; clones share it.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// Takes what was written since the last call.
    pub fn take(&self) -> String {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *kept)).into_owned()
    }

    fn push(&self, bytes: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.extend_from_slice(bytes);
        if kept.len() > KEPT {
            let cut = kept.len() - KEPT;
            kept.drain(..cut);
        }
    }

    /// The message of the last panic in `stderr`, if it holds one.
    pub fn panic_message(stderr: &str) -> Option<String> {
        let at = stderr.rfind("panicked at ")?;
        let after = &stderr[at..];
        // `panicked at src/lib.rs:1:2:\nmessage\nnote: …`
        let (location, rest) = after.split_once('\n')?;
        let message: Vec<&str> = rest
            .lines()
            .take_while(|l| !l.starts_with("note: "))
            .collect();
        let message = message.join("\n");
        let location = location
            .trim_start_matches("panicked at ")
            .trim_end_matches(':');
        Some(format!("panicked at {location}: {}", message.trim()))
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always ready: the tail only keeps the end.
        Ok(64 * 1024)
    }
}

#[async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_panic_message_is_found() {
        let stderr = "noise\nthread '<unnamed>' panicked at src/lib.rs:98:21:\nuser 13 is poison\n\
                      note: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            StderrTail::panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:98:21: user 13 is poison")
        );
        assert_eq!(StderrTail::panic_message("nothing"), None);
    }

    #[test]
    fn only_the_end_is_kept() {
        let tail = StderrTail::default();
        tail.push(&vec![b'a'; KEPT]);
        tail.push(b"end");
        let kept = tail.take();
        assert_eq!(kept.len(), KEPT);
        assert!(kept.ends_with("end"));
        assert!(tail.take().is_empty());
    }
}
