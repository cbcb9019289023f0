//! Fuzz target: a whole request frame as a connection reads it: the size prefix checked by
//! `frame_size`, the header, then the body decoded by the header's API key and version. Unknown
//! keys and unsupported versions are ordinary inputs. The property is "no panic, no abort".
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::protocol::frame::{FRAME_SIZE_PREFIX_BYTES, frame_size};
use spate::protocol::wire::Reader;
use spate::protocol::{ApiKey, Request, RequestHeader};

/// Kafka's default `socket.request.max.bytes` (100 MiB); fuzz inputs are far smaller, so only the
/// prefix check itself is exercised, not a real limit.
const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((prefix, rest)) = data.split_first_chunk::<FRAME_SIZE_PREFIX_BYTES>() else {
        return;
    };
    let Ok(size) = frame_size(*prefix, FRAME_BYTES_MAX) else {
        return;
    };
    // A frame longer than the input is one the connection would still be waiting for.
    let Some(frame) = rest.get(..size) else {
        return;
    };
    let mut reader = Reader::new(Bytes::copy_from_slice(frame));
    let Ok(header) = RequestHeader::decode(&mut reader) else {
        return;
    };
    if let Some(key) = ApiKey::from_code(header.api_key) {
        let _ = Request::decode(key, header.api_version, reader.rest().clone());
    }
});
