//! What a generator shard measures, and the samples it ships to the main thread.
//!
//! A shard's producers and consumers record into one `ShardStats` (behind `Rc<RefCell<_>>`,
//! borrowed only in synchronous code: the delivery callback and between awaits). Every
//! `SAMPLE_INTERVAL` the shard takes what accumulated into a `ShardSample` and sends it over a
//! bounded channel; if the channel is full the sample stays and the next one adds to it, so
//! nothing is lost and the shard never blocks on the main thread while the load runs.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use super::latency::LatencyHistogram;

/// How often a shard ships what it measured: a fraction of the one-second progress line, so each
/// line's rate is computed from several samples of every shard.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Samples that may wait in the channel per shard before a shard keeps accumulating instead.
pub const SAMPLES_QUEUED_PER_SHARD_MAX: usize = 64;

/// Records, bytes and errors of one direction (produced or consumed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Records acknowledged (produce) or received (consume).
    pub records: u64,
    /// Value bytes of those records.
    pub bytes: u64,
    /// Records that failed (produce) or failed polls and undecodable batches (consume).
    pub errors: u64,
}

impl Counters {
    /// Adds `other`.
    pub fn add(&mut self, other: &Counters) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

/// What one shard measured since its previous sample.
#[derive(Debug, Default, Clone)]
pub struct ShardSample {
    /// Produced records (acknowledged), bytes and failures.
    pub produced: Counters,
    /// Records handed to the producers (`send` returned), acknowledged or not yet.
    pub sent: u64,
    /// Consumed records of this run.
    pub consumed: Counters,
    /// Acknowledgement latency from the intended send time.
    pub produce_latency: LatencyHistogram,
    /// From the intended send time to consumption (e2e only).
    pub e2e_latency: LatencyHistogram,
    /// The first error messages seen (at most `ERROR_MESSAGES_MAX`), so errors are shown.
    pub error_messages: Vec<String>,
    /// When the shard's producers finished (all acknowledged), ns since the epoch; set once.
    pub produce_end_ns: Option<u64>,
    /// When the shard's consumers finished, ns since the epoch; set once.
    pub consume_end_ns: Option<u64>,
    /// CPU time the shard's thread used from its start to its end (set in its last sample).
    pub cpu_ns: u64,
    /// Wall time from the shard's start to its end (set in its last sample).
    pub wall_ns: u64,
    /// The shard's last sample: it has stopped.
    pub last: bool,
}

/// Error messages a sample keeps; beyond that errors are only counted.
pub const ERROR_MESSAGES_MAX: usize = 5;

impl ShardSample {
    /// Adds `other` into this sample.
    pub fn add(&mut self, other: &ShardSample) {
        self.produced.add(&other.produced);
        self.sent += other.sent;
        self.consumed.add(&other.consumed);
        self.produce_latency.add(&other.produce_latency);
        self.e2e_latency.add(&other.e2e_latency);
        for message in &other.error_messages {
            self.note_error(message);
        }
        self.produce_end_ns = self.produce_end_ns.max(other.produce_end_ns);
        self.consume_end_ns = self.consume_end_ns.max(other.consume_end_ns);
        self.cpu_ns += other.cpu_ns;
        self.wall_ns += other.wall_ns;
        self.last |= other.last;
    }

    /// Keeps an error message if it is new and there is room.
    pub fn note_error(&mut self, message: &str) {
        let known = self.error_messages.iter().any(|m| m == message);
        if !known && self.error_messages.len() < ERROR_MESSAGES_MAX {
            self.error_messages.push(message.to_owned());
        }
    }
}

/// The shard end of the sample channel.
pub struct SampleSender {
    sender: SyncSender<ShardSample>,
    unsent: Option<ShardSample>,
}

impl SampleSender {
    /// Wraps the channel.
    pub fn new(sender: SyncSender<ShardSample>) -> Self {
        Self {
            sender,
            unsent: None,
        }
    }

    /// Sends `sample` (plus anything not sent before) without blocking; a full channel keeps it.
    pub fn offer(&mut self, sample: ShardSample) {
        let sample = match self.unsent.take() {
            Some(mut unsent) => {
                unsent.add(&sample);
                unsent
            }
            None => sample,
        };
        match self.sender.try_send(sample) {
            Ok(()) => {}
            Err(TrySendError::Full(sample)) => self.unsent = Some(sample),
            // The main thread is gone (it failed); there is no one left to tell.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends the last sample, waiting for room: the run is over, so blocking costs nothing.
    pub fn finish(mut self, mut sample: ShardSample) {
        sample.last = true;
        if let Some(mut unsent) = self.unsent.take() {
            unsent.add(&sample);
            sample = unsent;
        }
        let _ = self.sender.send(sample);
    }
}
