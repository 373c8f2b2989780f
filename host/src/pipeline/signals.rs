//! Stop requests from outside the process: Ctrl-C (SIGINT) and, on Unix,
//! SIGTERM as sent by `kill`, systemd and Kubernetes.

use std::io;

/// Listens from the moment it is made until dropped. A run loop that called
/// `tokio::signal::ctrl_c()` afresh on every turn would subscribe anew each
/// time and miss a signal delivered between two turns.
pub(super) struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    interrupt: tokio::signal::windows::CtrlC,
}

impl StopSignals {
    /// Starts listening. Needs a Tokio runtime.
    pub(super) fn listen() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                interrupt: tokio::signal::windows::ctrl_c()?,
            })
        }
    }

    /// Waits for the next stop request and names it.
    pub(super) async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            self.interrupt.recv().await;
            "Ctrl-C"
        }
    }
}
