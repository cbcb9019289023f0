//! `RequestBudget`: one shard's bound on request and response bytes held in memory
//! (Kafka's queued.max.request.bytes), a byte semaphore shared by the shard's connections.
//!
//! A connection takes a [`BudgetPermit`] for a frame's size *before* reading the frame's body, and
//! the permit lives until that request's response has been written (or dropped): a produce's
//! frame is held by the partition until its write completes, and the record slices a fetch answers
//! with are held until they reach the socket, so that is where the memory is really held. A frame
//! larger than the whole budget takes the whole budget once it is entirely free, so it is still
//! served (one at a time) rather than never.
//!
//! Waiting is first-fit: a request that fits in what is free goes at once, even while a bigger
//! one waits, so a few clients announcing huge frames cannot block small requests behind them
//! (the price: under a steady stream of small requests a frame as big as the budget can wait
//! long). Response bytes are charged with [`RequestBudget::charge`], which never waits and may
//! overdraw: a response waiting for budget held by its own connection's queued requests would
//! deadlock. An overdrawn budget admits no new frame until it is back in credit.
//!
//! `!Send`: one shard only. Grants happen at release, in arrival order, so a woken waiter never
//! finds its bytes taken by a newcomer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A shard's byte budget for requests read but not yet answered.
#[derive(Debug)]
pub struct RequestBudget {
    capacity_bytes: i64,
    /// Free bytes; negative after an overdrawing `charge`.
    available_bytes: Cell<i64>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

#[derive(Debug)]
struct Waiter {
    need_bytes: i64,
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl RequestBudget {
    /// A budget of `capacity_bytes` (at least 1).
    pub fn new(capacity_bytes: usize) -> Rc<Self> {
        let capacity_bytes = i64::try_from(capacity_bytes).unwrap_or(i64::MAX).max(1);
        Rc::new(Self {
            capacity_bytes,
            available_bytes: Cell::new(capacity_bytes),
            waiters: RefCell::new(VecDeque::new()),
        })
    }

    /// Bytes free right now (never negative).
    pub fn available_bytes(&self) -> usize {
        self.available_bytes.get().max(0) as usize
    }

    /// Bytes held by permits right now (more than the capacity while overdrawn).
    pub fn held_bytes(&self) -> usize {
        (self.capacity_bytes - self.available_bytes.get()) as usize
    }

    /// Requests waiting for budget.
    pub fn waiting_count(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Waits until `bytes` (capped at the capacity) are free, then holds them.
    pub fn acquire(self: &Rc<Self>, bytes: usize) -> Acquire {
        let need_bytes = i64::try_from(bytes)
            .unwrap_or(i64::MAX)
            .min(self.capacity_bytes);
        Acquire {
            budget: Rc::clone(self),
            need_bytes,
            waiter: None,
        }
    }

    /// Holds `bytes` at once, overdrawing if they are not free.
    pub fn charge(self: &Rc<Self>, bytes: usize) -> BudgetPermit {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.available_bytes.set(self.available_bytes.get() - bytes);
        BudgetPermit {
            budget: Rc::clone(self),
            bytes,
        }
    }

    fn release(&self, bytes: i64) {
        let mut available = self.available_bytes.get() + bytes;
        debug_assert!(available <= self.capacity_bytes);
        let mut woken = Vec::new();
        {
            let mut waiters = self.waiters.borrow_mut();
            // First fit over the waiters in arrival order: each one that fits is granted now.
            let mut index = 0;
            while index < waiters.len() && available > 0 {
                if waiters[index].need_bytes <= available {
                    let waiter = waiters.remove(index).expect("index is in range");
                    available -= waiter.need_bytes;
                    waiter.granted.set(true);
                    woken.push(waiter);
                } else {
                    index += 1;
                }
            }
        }
        self.available_bytes.set(available);
        for waiter in woken {
            if let Some(waker) = waiter.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// Bytes held from a [`RequestBudget`]; dropping it gives them back.
#[derive(Debug)]
#[must_use = "dropping the permit releases its bytes at once"]
pub struct BudgetPermit {
    budget: Rc<RequestBudget>,
    bytes: i64,
}

impl BudgetPermit {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// The future of [`RequestBudget::acquire`]. Dropped while waiting, it leaves the queue (and gives
/// back bytes granted but not yet taken).
#[derive(Debug)]
pub struct Acquire {
    budget: Rc<RequestBudget>,
    need_bytes: i64,
    waiter: Option<Rc<Waiter>>,
}

impl Future for Acquire {
    type Output = BudgetPermit;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<BudgetPermit> {
        let this = &mut *self;
        let granted = match &this.waiter {
            Some(waiter) => waiter.granted.get(),
            None => {
                let budget = &this.budget;
                if this.need_bytes <= budget.available_bytes.get() {
                    budget
                        .available_bytes
                        .set(budget.available_bytes.get() - this.need_bytes);
                    true
                } else {
                    let waiter = Rc::new(Waiter {
                        need_bytes: this.need_bytes,
                        granted: Cell::new(false),
                        waker: RefCell::new(None),
                    });
                    budget.waiters.borrow_mut().push_back(Rc::clone(&waiter));
                    this.waiter = Some(waiter);
                    false
                }
            }
        };
        if granted {
            this.waiter = None;
            return Poll::Ready(BudgetPermit {
                budget: Rc::clone(&this.budget),
                bytes: this.need_bytes,
            });
        }
        if let Some(waiter) = &this.waiter {
            *waiter.waker.borrow_mut() = Some(context.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        if waiter.granted.get() {
            self.budget.release(waiter.need_bytes);
        } else {
            self.budget
                .waiters
                .borrow_mut()
                .retain(|queued| !Rc::ptr_eq(queued, &waiter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::FutureExt;

    fn now<T>(future: &mut (impl Future<Output = T> + Unpin)) -> Option<T> {
        futures_lite::future::block_on(futures_lite::future::poll_once(future))
    }

    #[test]
    fn small_requests_pass_a_big_waiter_and_big_ones_get_the_whole_budget() {
        // Proves first fit: a request that fits goes while a bigger one waits, a request larger
        // than the budget is capped to the whole budget and granted once everything is free.
        let budget = RequestBudget::new(100);
        let first = now(&mut budget.acquire(60)).expect("fits");
        let mut huge = budget.acquire(1_000);
        assert!(now(&mut huge).is_none());
        let small = now(&mut budget.acquire(30)).expect("fits beside the first");
        assert_eq!(budget.available_bytes(), 10);
        drop(first);
        assert!(now(&mut huge).is_none(), "30 bytes still held");
        drop(small);
        let huge = now(&mut huge).expect("granted when all is free");
        assert_eq!(huge.bytes(), 100);
        assert_eq!(budget.available_bytes(), 0);
        drop(huge);
        assert_eq!(budget.available_bytes(), 100);
    }

    #[test]
    fn a_dropped_waiter_leaves_nothing_behind_and_charges_overdraw() {
        // Proves cancellation returns granted bytes and leaves the queue, and that a charge
        // overdraws without waiting and blocks new requests until paid back.
        let budget = RequestBudget::new(100);
        let held = now(&mut budget.acquire(100)).unwrap();
        let mut waiting = budget.acquire(50);
        assert!(now(&mut waiting).is_none());
        assert_eq!(budget.waiting_count(), 1);
        drop(held);
        drop(waiting);
        assert_eq!(budget.available_bytes(), 100);
        assert_eq!(budget.waiting_count(), 0);
        let charged = budget.charge(150);
        assert_eq!(budget.held_bytes(), 150);
        let mut next = budget.acquire(1).boxed_local();
        assert!(now(&mut next).is_none());
        drop(charged);
        assert!(now(&mut next).is_some());
    }
}
