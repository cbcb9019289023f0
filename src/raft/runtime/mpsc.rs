//! The adapter's bounded mpsc channel for one executor.
//!
//! At most `capacity` messages wait in the channel; a sender finding it full parks in a FIFO
//! and yields (never blocks the thread), and each receive wakes the head sender. Dropping the
//! receiver fails every parked and later send with the message handed back. Weak senders do
//! not keep the channel open. Not `Send`: every end lives on one executor.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use openraft_rt::{OptionalSend, SendError, TryRecvError};

use super::wait_queue::{Ticket, WaitQueue};

struct Channel<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    parked_senders: WaitQueue,
}

type Shared<T> = Rc<RefCell<Channel<T>>>;

/// Sends into the channel; the channel closes for the receiver when the last one is dropped.
pub struct MpscSender<T> {
    channel: Shared<T>,
}

/// A sender that does not keep the channel open; `upgrade` fails once no sender is left.
pub struct MpscWeakSender<T> {
    channel: Weak<RefCell<Channel<T>>>,
}

/// The one receiving end.
pub struct MpscReceiver<T> {
    channel: Shared<T>,
}

/// The future `send` returns; leaves the senders' queue when dropped while parked.
pub struct SendFuture<'a, T> {
    channel: &'a Shared<T>,
    message: Option<T>,
    ticket: Option<Ticket>,
}

/// A channel holding at most `capacity` messages.
pub fn channel<T>(capacity: usize) -> (MpscSender<T>, MpscReceiver<T>) {
    // Zero capacity would park every sender forever; openraft never asks for it.
    assert!(capacity > 0, "mpsc capacity must be positive");
    let channel = Rc::new(RefCell::new(Channel {
        queue: VecDeque::with_capacity(capacity),
        capacity,
        senders: 1,
        receiver_alive: true,
        receiver_waker: None,
        parked_senders: WaitQueue::default(),
    }));
    (
        MpscSender {
            channel: channel.clone(),
        },
        MpscReceiver { channel },
    )
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> MpscSender<T> {
    /// Waits for room, then queues `message`; fails with it when the receiver is gone.
    pub fn send(&self, message: T) -> SendFuture<'_, T> {
        SendFuture {
            channel: &self.channel,
            message: Some(message),
            ticket: None,
        }
    }

    /// A weak handle to the same channel.
    pub fn downgrade(&self) -> MpscWeakSender<T> {
        MpscWeakSender {
            channel: Rc::downgrade(&self.channel),
        }
    }
}

impl<T> Clone for MpscSender<T> {
    fn clone(&self) -> Self {
        self.channel.borrow_mut().senders += 1;
        Self {
            channel: self.channel.clone(),
        }
    }
}

impl<T> Drop for MpscSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut channel = self.channel.borrow_mut();
            channel.senders -= 1;
            if channel.senders == 0 {
                channel.receiver_waker.take()
            } else {
                None
            }
        };
        wake(waker);
    }
}

impl<T> MpscWeakSender<T> {
    /// A strong sender, while at least one other strong sender is alive.
    pub fn upgrade(&self) -> Option<MpscSender<T>> {
        let channel = self.channel.upgrade()?;
        let mut state = channel.borrow_mut();
        if state.senders == 0 {
            return None;
        }
        state.senders += 1;
        drop(state);
        Some(MpscSender { channel })
    }
}

impl<T> Clone for MpscWeakSender<T> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
        }
    }
}

// The message is only ever moved out whole, never pinned in place.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut channel = this.channel.borrow_mut();
        if !channel.receiver_alive {
            if let Some(ticket) = this.ticket.take() {
                channel.parked_senders.remove(ticket);
            }
            let message = this.message.take().expect("polled after completion");
            return Poll::Ready(Err(SendError(message)));
        }
        let has_room = channel.queue.len() < channel.capacity;
        if !(has_room && channel.parked_senders.may_proceed(this.ticket)) {
            this.ticket = Some(channel.parked_senders.park(this.ticket, cx.waker()));
            return Poll::Pending;
        }
        if let Some(ticket) = this.ticket.take() {
            channel.parked_senders.remove(ticket);
        }
        let message = this.message.take().expect("polled after completion");
        channel.queue.push_back(message);
        let receiver = channel.receiver_waker.take();
        // Room may remain (several receives while this sender was parked): let the next go.
        let next_sender = if channel.queue.len() < channel.capacity {
            channel.parked_senders.head_waker()
        } else {
            None
        };
        drop(channel);
        wake(receiver);
        wake(next_sender);
        Poll::Ready(Ok(()))
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let next = {
            let mut channel = self.channel.borrow_mut();
            let was_head = channel.parked_senders.remove(ticket);
            if was_head && channel.queue.len() < channel.capacity {
                channel.parked_senders.head_waker()
            } else {
                None
            }
        };
        wake(next);
    }
}

impl<T> MpscReceiver<T> {
    /// The next message, or `None` once it is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_recv() {
            Ok(message) => Poll::Ready(Some(message)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                self.channel.borrow_mut().receiver_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut channel = self.channel.borrow_mut();
        match channel.queue.pop_front() {
            Some(message) => {
                let sender = channel.parked_senders.head_waker();
                drop(channel);
                wake(sender);
                Ok(message)
            }
            None if channel.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Drop for MpscReceiver<T> {
    fn drop(&mut self) {
        let (queued, senders) = {
            let mut channel = self.channel.borrow_mut();
            channel.receiver_alive = false;
            let queued = std::mem::take(&mut channel.queue);
            (queued, channel.parked_senders.all_wakers())
        };
        // Queued messages are dropped outside the borrow: their destructors may use channels.
        drop(queued);
        for waker in senders {
            waker.wake();
        }
    }
}

/// The mpsc family the adapter hands openraft.
#[derive(Debug)]
pub struct LocalMpsc;

impl openraft_rt::Mpsc for LocalMpsc {
    type Sender<T: OptionalSend> = MpscSender<T>;
    type Receiver<T: OptionalSend> = MpscReceiver<T>;
    type WeakSender<T: OptionalSend> = MpscWeakSender<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        channel(buffer)
    }
}

impl<T: OptionalSend> openraft_rt::MpscSender<LocalMpsc, T> for MpscSender<T> {
    fn send(&self, message: T) -> impl Future<Output = Result<(), SendError<T>>> + OptionalSend {
        MpscSender::send(self, message)
    }

    fn downgrade(&self) -> MpscWeakSender<T> {
        MpscSender::downgrade(self)
    }
}

impl<T: OptionalSend> openraft_rt::MpscReceiver<T> for MpscReceiver<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + OptionalSend {
        MpscReceiver::recv(self)
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        MpscReceiver::try_recv(self)
    }
}

impl<T: OptionalSend> openraft_rt::MpscWeakSender<LocalMpsc, T> for MpscWeakSender<T> {
    fn upgrade(&self) -> Option<MpscSender<T>> {
        MpscWeakSender::upgrade(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_cancelled_parked_sender_lets_the_next_one_in() {
        // Proves a parked sender dropped after a receive made room does not strand the sender
        // behind it, and that messages arrive in the order their sends completed.
        let (sender, mut receiver) = channel::<u32>(1);
        assert!(poll_once(pin!(sender.send(1))).is_ready());
        let mut cancelled = Box::pin(sender.send(2));
        let mut parked = pin!(sender.send(3));
        assert!(poll_once(cancelled.as_mut()).is_pending());
        assert!(poll_once(parked.as_mut()).is_pending());
        assert_eq!(receiver.try_recv(), Ok(1));
        drop(cancelled);
        assert!(matches!(poll_once(parked.as_mut()), Poll::Ready(Ok(()))));
        assert_eq!(receiver.try_recv(), Ok(3));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn dropping_the_receiver_fails_parked_senders_with_their_message() {
        // Proves no parked sender hangs when the receiver goes away, and the message comes back.
        let (sender, receiver) = channel::<u32>(1);
        assert!(poll_once(pin!(sender.send(1))).is_ready());
        let mut parked = pin!(sender.send(2));
        assert!(poll_once(parked.as_mut()).is_pending());
        drop(receiver);
        match poll_once(parked.as_mut()) {
            Poll::Ready(Err(SendError(message))) => assert_eq!(message, 2),
            _ => panic!("a parked send must fail once the receiver is dropped"),
        }
    }
}
