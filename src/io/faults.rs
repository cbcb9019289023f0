//! Fault injection for segment file I/O: the `FaultInjector` trait, consulted by every
//! `DirectFile` operation that can fail on a real disk (write, fdatasync, read, preallocate).
//!
//! Nothing is installed in the broker, so each operation pays one thread-local check. Tests
//! install an injector on their executor (`install`) to make chosen operations fail with EIO or
//! ENOSPC, write only part of their buffer (a torn write), or stall, deterministically.
//!
//! Guarantees: an injected failure happens *instead of* the operation (a short write writes a
//! block-aligned prefix, then fails), so what the file holds is what a real failure leaves.
//! Callers must install an injector only on the executor whose files it should affect.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// A file operation an injector may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOp {
    /// An O_DIRECT write.
    Write,
    /// An fdatasync.
    Fdatasync,
    /// A read.
    Read,
    /// Growing the file (fallocate / ftruncate up), as segment preallocation does.
    Allocate,
}

/// What happens to one operation instead of (or before) running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with this errno (`libc::EIO`, `libc::ENOSPC`, ...) without doing anything.
    Errno(i32),
    /// A write stores only the first half of its blocks (none for a single block), then fails.
    ShortWrite,
    /// The operation runs after this delay.
    Delay(Duration),
}

impl Fault {
    /// The error an `Errno` fault answers.
    pub fn error(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }
}

/// Decides which file operations fail: the seam between the log and the disk that tests use.
pub trait FaultInjector {
    /// The fault for this `op` on `path`, if any. Called once per operation, in issue order.
    fn fault(&self, op: FileOp, path: &Path) -> Option<Fault>;
}

thread_local! {
    static INJECTOR: RefCell<Option<Rc<dyn FaultInjector>>> = const { RefCell::new(None) };
}

/// Installs (or with `None`, removes) the fault injector for this executor's files.
pub fn install(injector: Option<Rc<dyn FaultInjector>>) {
    INJECTOR.with(|slot| *slot.borrow_mut() = injector);
}

/// The fault the installed injector chooses for `op` on `path`.
pub(crate) fn fault_for(op: FileOp, path: &Path) -> Option<Fault> {
    let injector = INJECTOR.with(|slot| slot.borrow().clone())?;
    injector.fault(op, path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;

    /// A deterministic injector: explicit faults at chosen call numbers of an operation, faults
    /// on every call of an operation, and (while `random_errno` is set) a fault at each call of
    /// the chosen operations with probability `1/one_in`, drawn from a seeded generator. Applies
    /// to `.log` files only.
    pub(crate) struct FaultPlan {
        calls: RefCell<HashMap<FileOp, u64>>,
        planned: RefCell<HashMap<(FileOp, u64), Fault>>,
        /// Every call of an op fails with this fault while set (a full disk, a dead device).
        pub(crate) persistent: RefCell<HashMap<FileOp, Fault>>,
        rng: Cell<u64>,
        one_in: Cell<u64>,
        random_errno: Cell<Option<i32>>,
        random_ops: RefCell<Vec<FileOp>>,
    }

    impl FaultPlan {
        pub(crate) fn new(seed: u64) -> Rc<FaultPlan> {
            Rc::new(FaultPlan {
                calls: RefCell::new(HashMap::new()),
                planned: RefCell::new(HashMap::new()),
                persistent: RefCell::new(HashMap::new()),
                rng: Cell::new(seed | 1),
                one_in: Cell::new(u64::MAX),
                random_errno: Cell::new(None),
                random_ops: RefCell::new(Vec::new()),
            })
        }

        /// Fails the `nth` (0-based, counted from now) future call of `op`.
        pub(crate) fn at(&self, op: FileOp, nth: u64, fault: Fault) {
            let done = self.calls.borrow().get(&op).copied().unwrap_or(0);
            self.planned.borrow_mut().insert((op, done + nth), fault);
        }

        /// Sets (or clears) a fault for every call of `op`.
        pub(crate) fn always(&self, op: FileOp, fault: Option<Fault>) {
            let mut persistent = self.persistent.borrow_mut();
            match fault {
                Some(fault) => persistent.insert(op, fault),
                None => persistent.remove(&op),
            };
        }

        /// Fails calls of `ops` at random with `errno`, one call in `one_in`.
        pub(crate) fn random(&self, errno: Option<i32>, one_in: u64, ops: &[FileOp]) {
            self.random_errno.set(errno);
            self.one_in.set(one_in.max(1));
            *self.random_ops.borrow_mut() = ops.to_vec();
        }

        fn next_random(&self) -> u64 {
            // xorshift64: deterministic from the seed.
            let mut x = self.rng.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng.set(x);
            x
        }
    }

    impl FaultInjector for FaultPlan {
        fn fault(&self, op: FileOp, path: &Path) -> Option<Fault> {
            if path.extension().is_none_or(|extension| extension != "log") {
                return None;
            }
            let call = {
                let mut calls = self.calls.borrow_mut();
                let count = calls.entry(op).or_insert(0);
                *count += 1;
                *count - 1
            };
            if let Some(fault) = self.planned.borrow_mut().remove(&(op, call)) {
                return Some(fault);
            }
            if let Some(fault) = self.persistent.borrow().get(&op) {
                return Some(*fault);
            }
            let random_op = self.random_ops.borrow().contains(&op);
            match self.random_errno.get() {
                Some(errno)
                    if random_op && self.next_random().is_multiple_of(self.one_in.get()) =>
                {
                    Some(Fault::Errno(errno))
                }
                _ => None,
            }
        }
    }
}
