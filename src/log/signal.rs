//! `Signal`: a single-executor broadcast notification ("something changed, look again").
//!
//! Guarantees: a future from `listen()` resolves once `notify()` has been called after the
//! listen; notifications are not counted or queued beyond that. Callers must re-check their
//! condition after waking (and should take the listener *before* checking, so a notify between
//! the check and the await is not lost). `!Send`: one shard only.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A broadcast wake-up for tasks of one executor.
#[derive(Debug, Default)]
pub struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// A new signal, shared by the notifier and the listeners.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Wakes every current listener.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that resolves at the next `notify`.
    pub fn listen(self: &Rc<Self>) -> Listener {
        Listener {
            signal: Rc::clone(self),
            generation: self.generation.get(),
        }
    }
}

/// Resolves once its `Signal` has been notified after the listener was made.
#[derive(Debug)]
#[must_use = "a listener does nothing unless awaited"]
pub struct Listener {
    signal: Rc<Signal>,
    generation: u64,
}

impl Future for Listener {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        // A listener polled again before a notify must not pile up copies of its waker.
        if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            wakers.push(context.waker().clone());
        }
        Poll::Pending
    }
}
