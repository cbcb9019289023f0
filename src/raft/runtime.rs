//! `GlommioRuntime`: openraft's `AsyncRuntime` on a glommio `LocalExecutor`.
//!
//! openraft is built with `single-threaded`, so a Raft node and every task it spawns live on
//! the one executor that created it (shard 0 for the controller); nothing here is `Send`.
//! Timers are glommio timers, tasks are glommio tasks, and the channels and mutex are our own
//! single-executor ones (`runtime/`), which park the task and never block the thread.
//!
//! glommio pitfalls this adapter handles, and why:
//! - A panicking glommio task is not caught: the panic unwinds out of `LocalExecutor::run` and
//!   takes every task of the shard with it. `spawn` catches the panic inside the task and the
//!   join handle reports it as `JoinError::Panicked` (openraft asks `is_panic`), as tokio does.
//! - Dropping a glommio `Task` cancels it, but openraft (like tokio users) drops join handles
//!   of tasks that must keep running. `spawn` detaches the task; the handle only observes it.
//!   A task glommio cancelled (its executor went away) is reported as `JoinError::Cancelled`.
//! - `glommio::timer::Timer::new` needs a running executor and measures from its creation.
//!   `Sleep` keeps a deadline and creates its timer on first poll, so a sleep or timeout built
//!   before it is awaited (or outside the executor) still fires at its deadline.
//! - glommio's default I/O memory (10 MiB) is locked memory and `ulimit -l` is often 8 MiB;
//!   `new` builds a small executor (`RUNTIME_IO_MEMORY_BYTES`, `RUNTIME_RING_DEPTH`).
//! - glommio's default preemption timer is 100 ms, longer than a Raft heartbeat: a task
//!   queue that never yields could hold election timers past their deadline. `new` uses
//!   `RUNTIME_PREEMPT`, and the broker's shards run with `--preempt` (2 ms by default).
//! - Wakes from another thread (`spawn_blocking`'s default thread) go through glommio's
//!   foreign-wake queue: a parked executor is woken by its eventfd, a busy one picks them up
//!   at its next reactor poll. Openraft itself wakes nothing across threads.
//! - `LocalExecutor::run` refuses to nest, so `block_on` must not be called from inside a
//!   task; openraft calls it only in tests.

mod mpsc;
mod mutex;
mod oneshot;
mod wait_queue;
mod watch;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use openraft_rt::{AsyncRuntime, OptionalSend};

pub use mpsc::{LocalMpsc, MpscReceiver, MpscSender, MpscWeakSender};
pub use mutex::{LocalMutex, LocalMutexGuard};
pub use oneshot::{LocalOneshot, OneshotReceiver, OneshotRecvError, OneshotSender};
pub use watch::{LocalWatch, WatchReceiver, WatchSender, channel as watch_channel};

/// Locked I/O memory of an executor made by `GlommioRuntime::new`: tests do little I/O, and
/// several runtimes may exist at once under an 8 MiB `ulimit -l`.
pub const RUNTIME_IO_MEMORY_BYTES: usize = 1 << 20;

/// io_uring depth of an executor made by `GlommioRuntime::new`; its rings are locked memory too.
pub const RUNTIME_RING_DEPTH: usize = 64;

/// Preemption timer of an executor made by `GlommioRuntime::new`: well under openraft's
/// heartbeat interval, so a busy task queue cannot delay Raft timers by a whole heartbeat.
pub const RUNTIME_PREEMPT: Duration = Duration::from_millis(2);

/// openraft's runtime on glommio. A value owns a `LocalExecutor` for `block_on` (tests and
/// tools); inside a broker shard, openraft just uses the shard's running executor.
pub struct GlommioRuntime {
    executor: LocalExecutor,
}

impl GlommioRuntime {
    /// A runtime with a fresh, unpinned executor sized by the `RUNTIME_*` constants.
    pub fn try_new() -> glommio::Result<Self, ()> {
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(RUNTIME_IO_MEMORY_BYTES)
            .ring_depth(RUNTIME_RING_DEPTH)
            .preempt_timer(RUNTIME_PREEMPT)
            .make()?;
        Ok(Self { executor })
    }
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime")
            .field("executor_id", &self.executor.id())
            .finish()
    }
}

/// Why a spawned task produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The task panicked; the panic was caught inside the task, the executor lives on.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// glommio closed the task before it finished (its executor was torn down).
    #[error("task cancelled")]
    Cancelled,
}

/// Awaits a spawned task's output. Dropping it detaches the task, which keeps running.
pub struct JoinHandle<T> {
    task: glommio::task::JoinHandle<Result<T, JoinError>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            Poll::Ready(None) => Poll::Ready(Err(JoinError::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs a future and turns a panic in its `poll` (or in dropping it) into `JoinError`.
struct CatchPanic<F> {
    future: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = &mut self.future;
        // AssertUnwindSafe: after a panic the future is never polled again, only dropped.
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let future = slot.as_mut().expect("polled after completion");
            let poll = future.as_mut().poll(cx);
            if poll.is_ready() {
                // Dropped here so a panicking destructor is caught too.
                *slot = None;
            }
            poll
        }));
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                self.future = None;
                Poll::Ready(Err(JoinError::Panicked(panic_message(payload.as_ref()))))
            }
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Completes at a deadline; the glommio timer is made on first poll (see the module comment).
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    timer: Option<Timer>,
}

impl Sleep {
    fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            timer: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= self.deadline {
            self.timer = None;
            return Poll::Ready(());
        }
        let remaining = self.deadline - now;
        let timer = self.timer.get_or_insert_with(|| Timer::new(remaining));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => {
                self.timer = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a future that missed its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs a future until a deadline. The future is boxed: safe code cannot pin a field in place.
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future first: one that is ready wins even when the deadline has passed.
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        let task = glommio::spawn_local(CatchPanic {
            future: Some(Box::pin(future)),
        });
        JoinHandle {
            task: task.detach(),
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep::until(Instant::now() + duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Self::timeout_at(Instant::now() + duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Sleep::until(deadline),
        }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        matches!(join_error, JoinError::Panicked(_))
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::rng()
    }

    type Mpsc = LocalMpsc;
    type Watch = LocalWatch;
    type Oneshot = LocalOneshot;
    type Mutex<T: OptionalSend + 'static> = LocalMutex<T>;

    /// `threads` is ignored: a glommio executor is one thread.
    fn new(_threads: usize) -> Self {
        Self::try_new().expect("glommio executor (is `ulimit -l` below RUNTIME_IO_MEMORY_BYTES?)")
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}
