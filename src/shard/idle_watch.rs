//! `ConnectionProgress` and `close_when_idle`: closes a connection that makes no progress for
//! connections.max.idle.ms.
//!
//! Progress is a whole request received or a response chunk written. Time the broker itself
//! spends (computing a response, a parked fetch, waiting for request budget) is not the client's
//! idleness, so it is marked busy and never counts. A client that trickles a frame, or that stops
//! reading its responses, makes no progress and is closed; Kafka's own idle timer would count the
//! trickle as activity and keep it. Closing is `shutdown(2)`: the reader sees end of stream and
//! the writer an error, so both halves finish through their normal paths and release what they
//! hold (their request budget above all).
//!
//! Callers must stop the watch before the socket is closed (it holds only the descriptor).

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// When one connection last made progress, and whether the broker is busy on its behalf.
#[derive(Debug)]
pub struct ConnectionProgress {
    last: Cell<Instant>,
    busy_count: Cell<u32>,
}

impl ConnectionProgress {
    /// Progress made now.
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            last: Cell::new(Instant::now()),
            busy_count: Cell::new(0),
        })
    }

    /// The client made progress now.
    pub fn advanced(&self) {
        self.last.set(Instant::now());
    }

    /// Marks the broker busy for this connection until the guard drops; the drop counts as
    /// progress, so the wait is never mistaken for the client's idleness.
    pub fn busy(self: &Rc<Self>) -> BusyGuard {
        self.busy_count.set(self.busy_count.get() + 1);
        BusyGuard(Rc::clone(self))
    }

    /// How long the client has made no progress; zero while the broker is busy.
    fn idle_for(&self) -> Duration {
        if self.busy_count.get() > 0 {
            return Duration::ZERO;
        }
        self.last.get().elapsed()
    }
}

/// See [`ConnectionProgress::busy`].
#[derive(Debug)]
pub struct BusyGuard(Rc<ConnectionProgress>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy_count.set(self.0.busy_count.get() - 1);
        self.0.advanced();
    }
}

/// Shuts down socket `fd` once `progress` shows no progress for `idle_max`; returns then.
pub async fn close_when_idle(progress: Rc<ConnectionProgress>, fd: RawFd, idle_max: Duration) {
    loop {
        let idle = progress.idle_for();
        if idle >= idle_max {
            tracing::info!(
                fd,
                idle_ms = idle.as_millis() as u64,
                "closing a connection that made no progress (connections.max.idle.ms)"
            );
            shut_down(fd);
            return;
        }
        glommio::timer::sleep(idle_max - idle).await;
    }
}

/// Shuts down both directions of socket `fd`, which must still be open.
pub fn shut_down(fd: RawFd) {
    // SAFETY: `fd` is a socket the caller keeps open; shutdown(2) neither closes nor frees it.
    #[allow(unsafe_code)]
    let result = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    if result != 0 {
        tracing::debug!(fd, error = %std::io::Error::last_os_error(), "shutdown failed");
    }
}
