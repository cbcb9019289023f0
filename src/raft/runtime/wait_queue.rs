//! A FIFO of parked tasks, each holding a ticket: the fairness and cancellation core of the
//! adapter's mutex and of the mpsc senders that wait for room.
//!
//! A waiter that is woken but dropped before it takes what it was woken for must pass the wake
//! on (`remove` says whether it was at the head), or the waiters behind it sleep forever.
//! Wakers are handed out, not called, so callers wake them after their `RefCell` borrow ends.

use std::collections::VecDeque;
use std::task::Waker;

/// Identifies one parked future in its queue; unique for the queue's lifetime.
pub(crate) type Ticket = u64;

/// Parked futures in arrival order.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    ticket_next: Ticket,
    waiters: VecDeque<(Ticket, Waker)>,
}

impl WaitQueue {
    /// May the future holding `ticket` (None: not yet parked) take the resource now? Only the
    /// head may, or anyone when the queue is empty, so a late arrival cannot overtake.
    pub(crate) fn may_proceed(&self, ticket: Option<Ticket>) -> bool {
        match (ticket, self.waiters.front()) {
            (_, None) => true,
            (Some(ticket), Some((head, _))) => ticket == *head,
            (None, Some(_)) => false,
        }
    }

    /// Parks a future (or refreshes its waker when already parked) and returns its ticket.
    pub(crate) fn park(&mut self, ticket: Option<Ticket>, waker: &Waker) -> Ticket {
        if let Some(ticket) = ticket
            && let Some((_, parked)) = self.waiters.iter_mut().find(|(t, _)| *t == ticket)
        {
            if !parked.will_wake(waker) {
                parked.clone_from(waker);
            }
            return ticket;
        }
        let ticket = self.ticket_next;
        self.ticket_next += 1;
        self.waiters.push_back((ticket, waker.clone()));
        ticket
    }

    /// Unparks `ticket`; returns true when it was the head, so the caller passes the wake on.
    pub(crate) fn remove(&mut self, ticket: Ticket) -> bool {
        let Some(index) = self.waiters.iter().position(|(t, _)| *t == ticket) else {
            return false;
        };
        self.waiters.remove(index);
        index == 0
    }

    /// The head's waker, to be woken once the queue's `RefCell` borrow has ended (the head
    /// stays parked until it proceeds or is dropped).
    pub(crate) fn head_waker(&self) -> Option<Waker> {
        self.waiters.front().map(|(_, waker)| waker.clone())
    }

    /// Every parked future's waker, for when the resource is gone and all must see it.
    pub(crate) fn all_wakers(&self) -> Vec<Waker> {
        self.waiters
            .iter()
            .map(|(_, waker)| waker.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn only_the_head_proceeds_and_removing_the_head_reports_it() {
        // Proves the FIFO rule (a newcomer waits behind parked futures) and that removing the
        // head is reported, so a cancelled waiter can pass its wake on.
        let mut queue = WaitQueue::default();
        let (_, waker) = counting_waker();
        assert!(queue.may_proceed(None));
        let first = queue.park(None, &waker);
        let second = queue.park(None, &waker);
        assert!(!queue.may_proceed(None));
        assert!(queue.may_proceed(Some(first)));
        assert!(!queue.may_proceed(Some(second)));
        assert!(!queue.remove(second));
        assert!(queue.remove(first));
        assert!(queue.may_proceed(None));
    }

    #[test]
    fn parking_again_refreshes_the_waker_without_a_second_entry() {
        // Proves a future polled twice while parked keeps one place in line and is woken
        // through its newest waker.
        let mut queue = WaitQueue::default();
        let (old_count, old_waker) = counting_waker();
        let (new_count, new_waker) = counting_waker();
        let ticket = queue.park(None, &old_waker);
        assert_eq!(queue.park(Some(ticket), &new_waker), ticket);
        queue.head_waker().unwrap().wake();
        assert_eq!(old_count.0.load(Ordering::Relaxed), 0);
        assert_eq!(new_count.0.load(Ordering::Relaxed), 1);
        assert!(queue.remove(ticket));
        assert!(queue.may_proceed(None));
    }
}
