//! The Kafka wire protocol: Spate's own codec.
//!
//! - `wire`: bounded reader and splicing writer (varints, lengths, zero-copy bytes).
//! - `field`: how each Rust type maps to a Kafka wire type, classic and compact.
//! - `schema`: the `kafka_struct!` DSL that derives a message's codec from its declaration.
//! - `messages`: the declarations, one module per API.
//! - `apis`: the API table (keys, versions, flexible versions, request/response dispatch).
//! - `header`, `frame`: request/response headers and size-prefixed frames.
//! - `api_versions`: building ApiVersions answers, including the unsupported-version quirk.
//! - `error_code`: Kafka's error codes; `error`: the codec's own errors.
//! - `record_batch`: the RecordBatch v2 view (header, CRC-32C, patching), the wire and disk format.
//! - `records`: reading and building the records inside a batch.
//! - `record_validation`: walking every record of a produced batch, as Kafka's LogValidator does.
//! - `compression`: the records region's codecs (gzip, Snappy, LZ4, zstd), both ways.
//! - `control_batch`: the control batches a replicated partition's Raft entries are stored as.
//!
//! Nothing here panics or allocates unboundedly on any input: every length is checked against the
//! bytes that remain, and malformed input is a `CodecError`.

pub mod api_versions;
pub mod apis;
pub mod compression;
#[cfg(test)]
mod conformance;
pub mod control_batch;
pub mod error;
pub mod error_code;
pub mod field;
pub mod frame;
pub mod header;
pub mod messages;
#[cfg(test)]
mod old_versions;
pub mod record_batch;
pub mod record_validation;
pub mod records;
#[cfg(test)]
pub mod sample;
pub mod schema;
pub mod wire;

pub use apis::{ApiKey, ApiMessage, Request, Response, Versions, decode_message, encode_message};
pub use error::CodecError;
pub use error_code::ErrorCode;
pub use header::{RequestHeader, ResponseHeader};
