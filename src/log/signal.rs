//! `Signal`: a single-executor broadcast notification ("something changed, look again").
//!
//! Guarantees: a future from `listen()` resolves once `notify()` has been called after the
//! listen; notifications are not counted or queued beyond that. Callers must re-check their
//! condition after waking (and should take the listener *before* checking, so a notify between
//! the check and the await is not lost). `!Send`: one shard only.
//!
//! Cost: registering, re-polling and dropping a listener are O(1) (each listener owns a slot), and
//! a notify is O(its listeners), so a high-watermark move costs what waits on that partition, not
//! what waits on the shard. A listener dropped before the notify (a fetch that timed out) gives its
//! slot back at once, so an idle partition does not collect dead wakers.
//!
//! A task waiting on many signals (a fetch over many partitions) turns each listener into a
//! [`Subscription`] that marks its key in a shared [`WakeSet`], so on waking it learns *which*
//! signals fired instead of polling every listener again.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Who a notify reaches.
#[derive(Debug)]
enum Subscriber {
    Task(Waker),
    Mark(Rc<WakeSet>, usize),
}

/// A broadcast wake-up for tasks of one executor.
#[derive(Debug, Default)]
pub struct Signal {
    generation: Cell<u64>,
    /// This generation's subscribers; a `None` is a slot given back, reused through `free`.
    slots: RefCell<Vec<Option<Subscriber>>>,
    free: RefCell<Vec<usize>>,
}

impl Signal {
    /// A new signal, shared by the notifier and the listeners.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Wakes every current listener.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let slots = std::mem::take(&mut *self.slots.borrow_mut());
        self.free.borrow_mut().clear();
        for subscriber in slots.into_iter().flatten() {
            match subscriber {
                Subscriber::Task(waker) => waker.wake(),
                Subscriber::Mark(set, key) => set.fire(key),
            }
        }
    }

    /// A future that resolves at the next `notify`.
    pub fn listen(self: &Rc<Self>) -> Listener {
        Listener {
            signal: Rc::clone(self),
            generation: self.generation.get(),
            slot: None,
        }
    }

    /// Subscribers registered now (for tests and diagnostics).
    pub fn subscriber_count(&self) -> usize {
        self.slots.borrow().iter().flatten().count()
    }

    fn register(&self, subscriber: Subscriber) -> usize {
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(slot) => {
                slots[slot] = Some(subscriber);
                slot
            }
            None => {
                slots.push(Some(subscriber));
                slots.len() - 1
            }
        }
    }

    /// Gives back `slot` of `generation`, unless a notify already took it.
    fn unregister(&self, generation: u64, slot: usize) {
        if self.generation.get() != generation {
            return;
        }
        self.slots.borrow_mut()[slot] = None;
        self.free.borrow_mut().push(slot);
    }
}

/// Resolves once its `Signal` has been notified after the listener was made.
#[derive(Debug)]
#[must_use = "a listener does nothing unless awaited"]
pub struct Listener {
    signal: Rc<Signal>,
    generation: u64,
    slot: Option<usize>,
}

impl Listener {
    /// Instead of waking a task, marks `key` in `set` at the next notify (at once if that
    /// notify already happened).
    pub fn subscribe(mut self, set: &Rc<WakeSet>, key: usize) -> Subscription {
        if let Some(slot) = self.slot.take() {
            self.signal.unregister(self.generation, slot);
        }
        if self.signal.generation.get() != self.generation {
            set.fire(key);
            return Subscription {
                signal: Rc::clone(&self.signal),
                generation: self.generation,
                slot: None,
            };
        }
        let slot = self.signal.register(Subscriber::Mark(Rc::clone(set), key));
        Subscription {
            signal: Rc::clone(&self.signal),
            generation: self.generation,
            slot: Some(slot),
        }
    }
}

impl Future for Listener {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        match self.slot {
            Some(slot) => {
                let mut slots = self.signal.slots.borrow_mut();
                if let Some(Subscriber::Task(waker)) = &mut slots[slot]
                    && !waker.will_wake(context.waker())
                {
                    *waker = context.waker().clone();
                }
            }
            None => {
                let slot = self
                    .signal
                    .register(Subscriber::Task(context.waker().clone()));
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.signal.unregister(self.generation, slot);
        }
    }
}

/// A [`Listener`] that marks a key in a [`WakeSet`]; dropping it unsubscribes. It fires once.
#[derive(Debug)]
pub struct Subscription {
    signal: Rc<Signal>,
    generation: u64,
    slot: Option<usize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.signal.unregister(self.generation, slot);
        }
    }
}

/// The keys whose subscriptions fired since the owner last looked, and the owner's waker.
#[derive(Debug, Default)]
pub struct WakeSet {
    fired: RefCell<Vec<usize>>,
    waker: RefCell<Option<Waker>>,
}

impl WakeSet {
    /// An empty set.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    fn fire(&self, key: usize) {
        self.fired.borrow_mut().push(key);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves with the keys fired so far (each once per firing), emptying the set.
    pub fn fired(self: &Rc<Self>) -> Fired {
        Fired(Rc::clone(self))
    }
}

/// The future of [`WakeSet::fired`].
#[derive(Debug)]
pub struct Fired(Rc<WakeSet>);

impl Future for Fired {
    type Output = Vec<usize>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Vec<usize>> {
        let mut fired = self.0.fired.borrow_mut();
        if !fired.is_empty() {
            return Poll::Ready(std::mem::take(&mut *fired));
        }
        *self.0.waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_now<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        futures_lite::future::block_on(futures_lite::future::poll_once(future))
    }

    #[test]
    fn dropped_listeners_give_their_slots_back() {
        // Proves a listener that is dropped unnotified leaves nothing in the signal, so an idle
        // partition does not keep one waker per fetch that timed out.
        let signal = Signal::new();
        for _ in 0..1000 {
            let mut listener = signal.listen();
            assert!(poll_now(&mut listener).is_none());
            assert!(poll_now(&mut listener).is_none());
        }
        assert_eq!(signal.subscriber_count(), 0);
        let mut kept = signal.listen();
        assert!(poll_now(&mut kept).is_none());
        assert_eq!(signal.subscriber_count(), 1);
        signal.notify();
        assert!(poll_now(&mut kept).is_some());
    }

    #[test]
    fn subscriptions_report_which_signals_fired() {
        // Proves a waiter over many signals learns the keys of those that fired, including one
        // that fired between its listen and its subscribe, and nothing from dropped ones.
        let signals: Vec<_> = (0..5).map(|_| Signal::new()).collect();
        let set = WakeSet::new();
        let listeners: Vec<_> = signals.iter().map(Signal::listen).collect();
        signals[4].notify();
        let mut subscriptions: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(key, listener)| Some(listener.subscribe(&set, key)))
            .collect();
        subscriptions[2] = None;
        signals[1].notify();
        signals[2].notify();
        signals[3].notify();
        let mut fired = poll_now(&mut set.fired()).expect("keys fired");
        fired.sort_unstable();
        assert_eq!(fired, vec![1, 3, 4]);
        assert!(poll_now(&mut set.fired()).is_none());
        drop(subscriptions);
        assert!(signals.iter().all(|signal| signal.subscriber_count() == 0));
    }
}
