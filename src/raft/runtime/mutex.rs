//! The adapter's async mutex for one executor: FIFO-fair, never blocks the thread.
//!
//! A task that finds the lock held parks in a queue and yields; unlocking wakes the head. The
//! value sits in a `RefCell` whose mutable borrow lives exactly as long as the guard, which the
//! lock flag makes exclusive, so the borrow can never fail. Not `Send`: one executor only.

use std::cell::{Cell, RefCell, RefMut};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};

use openraft_rt::OptionalSend;

use super::wait_queue::{Ticket, WaitQueue};

/// An async mutex for tasks of one glommio executor.
pub struct LocalMutex<T> {
    locked: Cell<bool>,
    waiters: RefCell<WaitQueue>,
    value: RefCell<T>,
}

/// Exclusive access to the value; unlocks (and wakes the next waiter) when dropped.
pub struct LocalMutexGuard<'a, T> {
    mutex: &'a LocalMutex<T>,
    value: Option<RefMut<'a, T>>,
}

/// The future `lock` returns; leaves the queue when dropped before it got the lock.
pub struct LockFuture<'a, T> {
    mutex: &'a LocalMutex<T>,
    ticket: Option<Ticket>,
}

impl<T> LocalMutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            locked: Cell::new(false),
            waiters: RefCell::new(WaitQueue::default()),
            value: RefCell::new(value),
        }
    }

    /// Waits for the lock.
    pub fn lock(&self) -> LockFuture<'_, T> {
        LockFuture {
            mutex: self,
            ticket: None,
        }
    }
}

impl<T> std::fmt::Debug for LocalMutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMutex")
            .field("locked", &self.locked.get())
            .finish_non_exhaustive()
    }
}

impl<'a, T> Future for LockFuture<'a, T> {
    type Output = LocalMutexGuard<'a, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mutex = self.mutex;
        let mut waiters = mutex.waiters.borrow_mut();
        if !mutex.locked.get() && waiters.may_proceed(self.ticket) {
            if let Some(ticket) = self.ticket.take() {
                waiters.remove(ticket);
            }
            mutex.locked.set(true);
            let value = mutex.value.borrow_mut();
            return Poll::Ready(LocalMutexGuard {
                mutex,
                value: Some(value),
            });
        }
        self.ticket = Some(waiters.park(self.ticket, cx.waker()));
        Poll::Pending
    }
}

impl<T> Drop for LockFuture<'_, T> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let next = {
            let mut waiters = self.mutex.waiters.borrow_mut();
            // Woken for an unlock it will never take: the next in line must get the chance.
            if waiters.remove(ticket) && !self.mutex.locked.get() {
                waiters.head_waker()
            } else {
                None
            }
        };
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

impl<T> Deref for LocalMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value
            .as_deref()
            .expect("the guard holds the value until dropped")
    }
}

impl<T> DerefMut for LocalMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_deref_mut()
            .expect("the guard holds the value until dropped")
    }
}

impl<T> Drop for LocalMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Release the borrow before unlocking, so the next holder's borrow cannot collide.
        self.value = None;
        self.mutex.locked.set(false);
        let next = self.mutex.waiters.borrow().head_waker();
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

impl<T: OptionalSend + 'static> openraft_rt::Mutex<T> for LocalMutex<T> {
    type Guard<'a> = LocalMutexGuard<'a, T>;

    fn new(value: T) -> Self {
        LocalMutex::new(value)
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        LocalMutex::lock(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Waker;

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_cancelled_waiter_passes_the_unlock_on() {
        // Proves that a waiter dropped after the unlock woke it does not strand the waiter
        // behind it: the lock is taken by the next in line, in FIFO order.
        let mutex = LocalMutex::new(0_u32);
        let guard = match poll_once(pin!(mutex.lock())) {
            Poll::Ready(guard) => guard,
            Poll::Pending => panic!("an unlocked mutex locks at once"),
        };
        let mut first = Box::pin(mutex.lock());
        let mut second = pin!(mutex.lock());
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        drop(guard);
        drop(first);
        let Poll::Ready(mut guard) = poll_once(second.as_mut()) else {
            panic!("the second waiter must get the lock the first gave up");
        };
        *guard += 1;
        drop(guard);
        assert!(poll_once(pin!(mutex.lock())).is_ready());
    }

    #[test]
    fn a_newcomer_waits_behind_parked_waiters() {
        // Proves fairness: after an unlock, a lock() that was never parked cannot overtake
        // the parked head.
        let mutex = LocalMutex::new(());
        let guard = match poll_once(pin!(mutex.lock())) {
            Poll::Ready(guard) => guard,
            Poll::Pending => panic!("an unlocked mutex locks at once"),
        };
        let mut parked = pin!(mutex.lock());
        assert!(poll_once(parked.as_mut()).is_pending());
        drop(guard);
        assert!(poll_once(pin!(mutex.lock())).is_pending());
        assert!(poll_once(parked.as_mut()).is_ready());
    }
}
