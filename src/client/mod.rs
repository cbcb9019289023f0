//! A minimal Kafka client on glommio: thread-per-core, `!Send`, one instance per executor.
//!
//! It is what `spate bench`, the CLI tools and the tests use, and it speaks plain Kafka, so it
//! works against any Kafka-compatible broker, not only Spate.
//!
//! - `error`: `ClientError`, every failure as a value.
//! - `connection`: one broker connection: version negotiation, pipelined requests matched by
//!   correlation id.
//! - `cluster`: bootstrap, Metadata, a connection per node, leader routing, topic admin.
//! - `compression`: lz4 and zstd for a batch's records region.
//! - `producer`: per-partition batching, one request per leader, retries, idempotence.
//! - `consumer`: assigned partitions, long-poll Fetch rounds to all leaders, batch decoding.
//!
//! Nothing here is shared across threads: a client with several cores builds one `Cluster` (and
//! producers and consumers on it) inside each executor.

pub mod cluster;
pub mod compression;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod producer;

pub use crate::protocol::records::RecordView;
pub use cluster::Cluster;
pub use compression::CompressionCodec;
pub use connection::Connection;
pub use consumer::{Consumer, ConsumerConfig, FetchedBatch, StartOffset, batch_records};
pub use error::ClientError;
pub use producer::{DeliveryCallback, DeliveryReport, Producer, ProducerConfig};
