//! The partition log: one Kafka partition's data on disk, as a sequence of segments.
//!
//! `PartitionLog` (partition.rs) is the public face: sequence a batch, wait for it to be written
//! or durable, read whole batches for fetch, find offsets by time, close, delete. Beneath it,
//! one noun per file: `segment` (a file and its naming), `index` (sparse offset and time indexes),
//! `appender` (aligned O_DIRECT appends), `writer` (the group-commit task), `reader` (fetch reads),
//! `stored_batch` (a batch as kept: patched head, client's body), `tail_generation` (which
//! batches a dropped unwritten tail took), `cache` (the per-shard
//! recent-batch cache), `recovery` (finding the end of the data at open), `truncation` (cutting
//! the log back to an offset),
//! `checkpoint` (the durable prefix recovery resumes after), `retention` (which old segments go),
//! `producer_state` (idempotent producers), `leader_epochs` (each leader epoch's first
//! offset), `producer_snapshot` (that state at each roll),
//! `refusal_warnings` (rate-limited offline warnings), `shutdown_marker` (what a clean close
//! records),
//! `crc_sealed` (the CRC-32C trailer of those small files),
//! `signal` (wake-ups), `error` (`LogError`).
//!
//! Everything here is `!Send` and belongs to one shard. Callers must run
//! `io::probe::probe_iopoll` on the executor before opening a log.

pub mod appender;
pub mod cache;
pub mod checkpoint;
pub mod crc_sealed;
pub mod error;
pub mod index;
pub mod leader_epochs;
mod offset_listing;
pub mod partition;
pub mod producer_snapshot;
pub mod producer_state;
pub mod reader;
pub mod recovery;
pub mod refusal_warnings;
pub mod retention;
pub mod segment;
pub mod shutdown_marker;
pub mod signal;
pub mod stored_batch;
pub mod tail_generation;
pub mod truncation;
mod writer;

pub use cache::ShardCache;
pub use error::LogError;
pub use partition::{AppendOutcome, IdempotenceCheck, LogConfig, LogStats, PartitionLog};
