//! The history of one checker round: every send, every acknowledgement and every read, as the
//! clients saw them, in the order the recorder received them.
//!
//! A record is identified by its value alone (`<producer>-<sequence>`), unique across the round,
//! so a read names the send it came from without trusting offsets. The history holds what the
//! clients observed and nothing the broker says about itself; `check.rs` judges it.
//!
//! Callers must not record a `Send` twice for one value, and must record a consumer's reads of one
//! partition in the order that consumer received them (the per-session monotonicity rule relies
//! on it). Event order across threads carries no meaning.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The producers of a round; each writes values prefixed with its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProducerKind {
    /// enable.idempotence=true, acks=all, retries: must store each record once.
    Idempotent,
    /// acks=all without retries: an acknowledged record must survive; an error is indeterminate.
    AcksAll,
    /// acks=1 without retries: a lost acknowledged record is counted, not a failure.
    AcksOne,
}

impl ProducerKind {
    pub const ALL: [ProducerKind; 3] = [
        ProducerKind::Idempotent,
        ProducerKind::AcksAll,
        ProducerKind::AcksOne,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProducerKind::Idempotent => "idempotent",
            ProducerKind::AcksAll => "acks-all",
            ProducerKind::AcksOne => "acks-1",
        }
    }

    /// True if an acknowledgement promises durability (acks=all).
    pub fn acks_all(self) -> bool {
        match self {
            ProducerKind::Idempotent | ProducerKind::AcksAll => true,
            ProducerKind::AcksOne => false,
        }
    }

    /// True if a record must be stored at most once.
    pub fn idempotent(self) -> bool {
        match self {
            ProducerKind::Idempotent => true,
            ProducerKind::AcksAll | ProducerKind::AcksOne => false,
        }
    }

    /// The value of this producer's record number `sequence`.
    pub fn value(self, sequence: u64) -> String {
        format!("{}-{sequence:09}", self.name())
    }
}

/// The reader label of the final full read.
pub const FINAL_READER: &str = "final";

/// What one acknowledgement said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckResult {
    /// Stored at `offset`.
    Ok { offset: i64 },
    /// Failed with the client's error (a Kafka error code name, or a local one such as a timeout).
    Error { code: String },
}

/// One observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A record handed to the producer for `partition`.
    Send {
        producer: ProducerKind,
        value: String,
        partition: i32,
    },
    /// The producer's delivery report for `value`.
    Ack {
        value: String,
        partition: i32,
        result: AckResult,
    },
    /// A record read by `consumer` during its assignment session `session`. A session starts at
    /// each (re)assignment; within one, offsets of a partition must strictly increase.
    Read {
        consumer: String,
        session: u64,
        partition: i32,
        offset: i64,
        value: String,
    },
    /// `consumer`'s assignment session `session` began: its reads start from the group's
    /// committed offsets.
    Assigned { consumer: String, session: u64 },
    /// The group coordinator acknowledged `consumer`'s commit of `offset` for `partition`.
    Committed {
        consumer: String,
        partition: i32,
        offset: i64,
    },
    /// A record of the final full read of every partition from offset 0, after every fault
    /// healed and every broker is back.
    FinalRead {
        partition: i32,
        offset: i64,
        value: String,
    },
}

/// The events of one round.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// A `History` shared by the workload's threads, with a count of acknowledged records per
/// producer so the workload can see progress without scanning the history.
#[derive(Clone, Default)]
pub struct Recorder {
    history: Arc<Mutex<History>>,
    acked_ok: Arc<BTreeMap<ProducerKind, AtomicU64>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            history: Arc::default(),
            acked_ok: Arc::new(
                ProducerKind::ALL
                    .into_iter()
                    .map(|kind| (kind, AtomicU64::new(0)))
                    .collect(),
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // A panicking client thread must not hide the history from the report.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, event: Event) {
        self.lock().push(event);
    }

    /// Records an acknowledgement of a record of `producer`.
    pub fn record_ack(
        &self,
        producer: ProducerKind,
        value: String,
        partition: i32,
        result: AckResult,
    ) {
        if matches!(result, AckResult::Ok { .. }) {
            self.acked_ok[&producer].fetch_add(1, Ordering::Relaxed);
        }
        self.record(Event::Ack {
            value,
            partition,
            result,
        });
    }

    /// Records acknowledged without error so far by `producer`.
    pub fn acked_ok(&self, producer: ProducerKind) -> u64 {
        self.acked_ok[&producer].load(Ordering::Relaxed)
    }

    /// A copy of the history so far.
    pub fn snapshot(&self) -> History {
        self.lock().clone()
    }
}
