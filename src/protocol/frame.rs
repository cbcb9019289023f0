//! Framing: every Kafka request and response is a 4-byte big-endian size, then that many bytes.
//!
//! Reading a frame is the connection's job (it owns the socket); this file checks the size prefix
//! against the configured maximum and assembles whole response and request frames from a header
//! and a body, as chunks ready for a vectored write, record bytes spliced rather than copied.

use bytes::Bytes;

use super::apis::{ApiKey, Request, Response};
use super::error::CodecError;
use super::header::{RequestHeader, ResponseHeader};
use super::wire::Writer;

/// Bytes in the size prefix.
pub const FRAME_SIZE_PREFIX_BYTES: usize = 4;

/// Checks a frame's size prefix: a frame is non-negative and at most `frame_bytes_max` long.
pub fn frame_size(
    prefix: [u8; FRAME_SIZE_PREFIX_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, CodecError> {
    let size = i32::from_be_bytes(prefix);
    match usize::try_from(size) {
        Ok(size) if size <= frame_bytes_max => Ok(size),
        _ => Err(CodecError::FrameSize {
            size: i64::from(size),
            max: frame_bytes_max,
        }),
    }
}

/// Encodes a whole response frame (size, header, body) for a request of `api_key` at `version`.
pub fn encode_response_frame(
    correlation_id: i32,
    version: i16,
    response: &Response,
) -> Result<Vec<Bytes>, CodecError> {
    let mut writer = Writer::for_frame(256);
    let header_version = response.api_key().response_header_version(version);
    ResponseHeader { correlation_id }.encode(&mut writer, header_version);
    response.encode(version, &mut writer)?;
    writer.into_frame()
}

/// Encodes a whole request frame (size, header, body); the header names the request's API.
pub fn encode_request_frame(
    header: &RequestHeader,
    request: &Request,
) -> Result<Vec<Bytes>, CodecError> {
    debug_assert_eq!(ApiKey::from_code(header.api_key), Some(request.api_key()));
    let mut writer = Writer::for_frame(256);
    header.encode(&mut writer)?;
    request.encode(header.api_version, &mut writer)?;
    writer.into_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_is_bounded() {
        // Proves negative and oversized frame sizes are rejected before any read.
        assert_eq!(frame_size(100i32.to_be_bytes(), 100), Ok(100));
        assert!(frame_size(101i32.to_be_bytes(), 100).is_err());
        assert!(frame_size((-1i32).to_be_bytes(), 100).is_err());
        assert!(frame_size(i32::MIN.to_be_bytes(), usize::MAX).is_err());
    }
}
