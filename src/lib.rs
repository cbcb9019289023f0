//! Spate: a Kafka-compatible streaming broker, thread-per-core on glommio, with an O_DIRECT log.
//!
//! A map of the crate:
//! - `protocol`: the Kafka wire codec (declared message schemas, bounded zero-copy decoding,
//!   frames, headers, error codes) and the RecordBatch v2 format, which is both the wire and the
//!   disk format.
//! - `config`: broker and topic configuration, every bound with its reason.
//! - `io`: the thin layer over glommio's direct files (alignment, probing, splitting reads).
//! - `log`: one partition's log: segments, appender (group commit), indexes, reader, cache,
//!   recovery, idempotent-producer state.
//! - `shard`: the executors (one per core), the mesh between them, listeners, connections and
//!   the control plane that applies topic changes on every shard.
//! - `api`: the Kafka API handlers, the only place typed errors become Kafka error codes.
//! - `group`: the consumer-group coordinator of each shard (membership state machines, timers)
//!   and its durable offset store.
//! - `meta`: cluster metadata (topics, placement, configs), the controller's decisions, and the
//!   metadata log they are made durable in.
//! - `bench`: `spate bench`, the load generator (thread-per-core producers and consumers on
//!   `client`, open-loop rate, hdrhistogram latency, reports); it can run a broker in-process.
//! - `raft`: the glue between openraft and Spate (docs/architecture.md §8): the glommio runtime adapter.
//! - `client`: a minimal Kafka client on glommio (connections, metadata, producer, consumer) for
//!   the load generator, the CLI tools and the tests; it works against any Kafka broker.

#![deny(unsafe_code)]

pub mod api;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod io;
pub mod le_cursor;
pub mod log;
pub mod meta;
pub mod protocol;
pub mod raft;
pub mod shard;
