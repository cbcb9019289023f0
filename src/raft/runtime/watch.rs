//! The adapter's watch channel for one executor: the latest value, and a version per send.
//!
//! Each receiver remembers the version it has seen; `changed` returns at once for an unseen
//! version and otherwise parks until the next send. Values are read through `RefCell` borrows:
//! holding a borrow across a send on the same channel panics instead of deadlocking (the
//! tokio watch would deadlock), so callers must not keep a borrow across `.await`.

use std::cell::{Cell, Ref, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use openraft_rt::watch::{RecvError, SendError};
use openraft_rt::{OptionalSend, OptionalSync};

struct Shared<T> {
    value: RefCell<T>,
    version: Cell<u64>,
    senders: Cell<usize>,
    receivers: Cell<usize>,
    receiver_id_next: Cell<u64>,
    /// Parked receivers by id: a receiver polled twice keeps one entry.
    waiters: RefCell<Vec<(u64, Waker)>>,
}

impl<T> Shared<T> {
    fn new_receiver(self: &Rc<Self>, seen_version: u64) -> WatchReceiver<T> {
        let id = self.receiver_id_next.get();
        self.receiver_id_next.set(id + 1);
        self.receivers.set(self.receivers.get() + 1);
        WatchReceiver {
            shared: self.clone(),
            id,
            seen_version,
        }
    }

    fn publish(&self) {
        self.version.set(self.version.get() + 1);
        self.wake_all();
    }

    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}

/// Publishes new values.
pub struct WatchSender<T> {
    shared: Rc<Shared<T>>,
}

/// Reads the latest value and waits for newer ones.
pub struct WatchReceiver<T> {
    shared: Rc<Shared<T>>,
    id: u64,
    seen_version: u64,
}

/// A new watch channel holding `init`, which its receiver has seen.
pub fn channel<T>(init: T) -> (WatchSender<T>, WatchReceiver<T>) {
    let shared = Rc::new(Shared {
        value: RefCell::new(init),
        version: Cell::new(0),
        senders: Cell::new(1),
        receivers: Cell::new(0),
        receiver_id_next: Cell::new(0),
        waiters: RefCell::new(Vec::new()),
    });
    let receiver = shared.new_receiver(0);
    (WatchSender { shared }, receiver)
}

impl<T> WatchSender<T> {
    /// Replaces the value; fails (and keeps the old one) when no receiver is left.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.get() == 0 {
            return Err(SendError(value));
        }
        *self.shared.value.borrow_mut() = value;
        self.shared.publish();
        Ok(())
    }

    /// Lets `modify` change the value in place; receivers are told only when it returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = modify(&mut self.shared.value.borrow_mut());
        if modified {
            self.shared.publish();
        }
        modified
    }

    /// The current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> WatchReceiver<T> {
        self.shared.new_receiver(self.shared.version.get())
    }
}

impl<T> Clone for WatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.set(self.shared.senders.get() + 1);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for WatchSender<T> {
    fn drop(&mut self) {
        let senders = self.shared.senders.get() - 1;
        self.shared.senders.set(senders);
        if senders == 0 {
            self.shared.wake_all();
        }
    }
}

impl<T> WatchReceiver<T> {
    /// Returns once a version this receiver has not seen exists (marking it seen), or fails
    /// when every sender is gone and nothing new is left.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        poll_fn(|cx| {
            let version = self.shared.version.get();
            if version != self.seen_version {
                self.seen_version = version;
                return Poll::Ready(Ok(()));
            }
            if self.shared.senders.get() == 0 {
                return Poll::Ready(Err(RecvError(())));
            }
            let mut waiters = self.shared.waiters.borrow_mut();
            match waiters.iter_mut().find(|(id, _)| *id == self.id) {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => waiters.push((self.id, cx.waker().clone())),
            }
            Poll::Pending
        })
        .await
    }

    /// The current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    /// The current value, marked seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.seen_version = self.shared.version.get();
        self.shared.value.borrow()
    }
}

impl<T> Clone for WatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.new_receiver(self.seen_version)
    }
}

impl<T> Drop for WatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.set(self.shared.receivers.get() - 1);
        self.shared
            .waiters
            .borrow_mut()
            .retain(|(id, _)| *id != self.id);
    }
}

/// The watch family the adapter hands openraft.
#[derive(Debug)]
pub struct LocalWatch;

impl openraft_rt::Watch for LocalWatch {
    type Sender<T: OptionalSend + OptionalSync> = WatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = WatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        channel(init)
    }
}

impl<T: OptionalSend + OptionalSync> openraft_rt::WatchSender<LocalWatch, T> for WatchSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        WatchSender::send(self, value)
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        WatchSender::send_if_modified(self, modify)
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.borrow()
    }

    fn subscribe(&self) -> WatchReceiver<T> {
        WatchSender::subscribe(self)
    }
}

impl<T: OptionalSend + OptionalSync> openraft_rt::WatchReceiver<LocalWatch, T>
    for WatchReceiver<T>
{
    async fn changed(&mut self) -> Result<(), RecvError> {
        WatchReceiver::changed(self).await
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.borrow()
    }

    fn borrow_and_update(&mut self) -> Ref<'_, T> {
        WatchReceiver::borrow_and_update(self)
    }
}
