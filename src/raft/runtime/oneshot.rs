//! The adapter's oneshot channel for one executor: one value, sender to receiver.
//!
//! Dropping the sender unsent wakes the receiver with an error; sending to a dropped receiver
//! hands the value back. Not `Send`: both ends live on one executor. Wakers are called after
//! the slot's borrow ends, so a waker that polls in place cannot hit a borrowed `RefCell`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use openraft_rt::OptionalSend;

/// The receiver's error: the sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("oneshot sender dropped without sending")]
pub struct OneshotRecvError;

struct Slot<T> {
    value: Option<T>,
    receiver_waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

/// Sends the one value.
pub struct OneshotSender<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// Resolves to the value, or to an error when the sender is dropped first.
pub struct OneshotReceiver<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// A new oneshot channel.
pub fn channel<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        receiver_waker: None,
        sender_alive: true,
        receiver_alive: true,
    }));
    (
        OneshotSender { slot: slot.clone() },
        OneshotReceiver { slot },
    )
}

impl<T> OneshotSender<T> {
    /// Delivers `value`, or returns it when the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        let waker = {
            let mut slot = self.slot.borrow_mut();
            if !slot.receiver_alive {
                return Err(value);
            }
            slot.value = Some(value);
            slot.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.slot.borrow_mut();
            slot.sender_alive = false;
            slot.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Result<T, OneshotRecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.borrow_mut();
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Ok(value));
        }
        if !slot.sender_alive {
            return Poll::Ready(Err(OneshotRecvError));
        }
        slot.receiver_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for OneshotReceiver<T> {
    fn drop(&mut self) {
        let mut slot = self.slot.borrow_mut();
        slot.receiver_alive = false;
        slot.receiver_waker = None;
        // Drop an undelivered value now rather than with the last handle.
        let value = slot.value.take();
        drop(slot);
        drop(value);
    }
}

/// The oneshot family the adapter hands openraft.
#[derive(Debug)]
pub struct LocalOneshot;

impl openraft_rt::Oneshot for LocalOneshot {
    type Sender<T: OptionalSend> = OneshotSender<T>;
    type Receiver<T: OptionalSend> = OneshotReceiver<T>;
    type ReceiverError = OneshotRecvError;

    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        channel()
    }
}

impl<T: OptionalSend> openraft_rt::OneshotSender<T> for OneshotSender<T> {
    fn send(self, value: T) -> Result<(), T> {
        OneshotSender::send(self, value)
    }
}
