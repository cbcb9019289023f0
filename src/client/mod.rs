//! A minimal Kafka client on glommio: thread-per-core, `!Send`, one instance per executor.
//!
//! It is what `spate bench`, the CLI tools and the tests use, and it speaks plain Kafka, so it
//! works against any Kafka-compatible broker, not only Spate.
//!
//! - `error`: `ClientError`, every failure as a value.
//! - `connection`: one broker connection: version negotiation, pipelined requests matched by
//!   correlation id.
//! - `cluster`: bootstrap, Metadata, a connection per node, leader routing, topic admin.
//!
//! Nothing here is shared across threads: a client with several cores builds one `Cluster` (and
//! producers and consumers on it) inside each executor.

pub mod cluster;
pub mod connection;
pub mod error;

pub use cluster::Cluster;
pub use connection::Connection;
pub use error::ClientError;
