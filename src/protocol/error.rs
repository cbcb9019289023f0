//! The codec's error type: every way a frame can be malformed, as a value, never a panic.
//!
//! Decoding untrusted bytes returns these; the protocol edge (src/api/) decides whether a malformed
//! frame closes the connection or is answered with a Kafka error code.

/// Why a frame could not be decoded or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame ended before a field was complete.
    #[error("frame truncated: needed {needed} more bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    /// A length prefix was negative (other than the null marker) or larger than the bytes that remain.
    #[error("invalid length {length} with {remaining} bytes remaining")]
    InvalidLength { length: i64, remaining: usize },
    /// A varint ran past its maximum width.
    #[error("varint longer than {max_bytes} bytes")]
    VarintTooLong { max_bytes: usize },
    /// A string field held bytes that are not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A null arrived where this version of the message does not allow one.
    #[error("null value for a non-nullable field")]
    UnexpectedNull,
    /// A value too large for its wire representation (encoding side).
    #[error("value of {length} bytes is too long for its length prefix")]
    ValueTooLong { length: usize },
    /// A field holding a non-default value in a version that does not carry it (encoding side).
    #[error("field `{field}` is not in version {version}")]
    FieldNotInVersion { field: &'static str, version: i16 },
    /// An API key Spate does not know.
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    /// A known API at a version outside the range Spate's codec supports.
    #[error("api key {api_key} version {api_version} is not supported")]
    UnsupportedVersion { api_key: i16, api_version: i16 },
    /// A frame whose size prefix is negative or above the configured maximum.
    #[error("frame size {size} outside 0..={max}")]
    FrameSize { size: i64, max: usize },
}
