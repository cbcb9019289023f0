//! Spate: a Kafka-compatible streaming broker, thread-per-core on glommio, with an O_DIRECT log.
//!
//! A map of the crate:
//! - `protocol`: the Kafka wire codec (declared message schemas, bounded zero-copy decoding,
//!   frames, headers, error codes) and the RecordBatch v2 format, which is both the wire and the
//!   disk format.

#![forbid(unsafe_code)]

pub mod protocol;
