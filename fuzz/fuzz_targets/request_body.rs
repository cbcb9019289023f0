//! Fuzz target: `Request::decode` of every API in the table, at supported and unsupported versions.
//!
//! Input layout: byte 0 picks the API (index into `ApiKey::ALL`), byte 1 the version (0..20, which
//! covers every supported range plus versions above it), the rest is the body. Besides "no panic",
//! an accepted body must survive a round trip: decode(encode(decoded)) == decoded. The bytes are
//! not compared, because decoding skips unknown tagged fields and ignores trailing bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::protocol::wire::Writer;
use spate::protocol::{ApiKey, Request};

/// Versions 0..VERSION_SPAN are tried; the highest supported version in the table is 12.
const VERSION_SPAN: u8 = 20;

fuzz_target!(|data: &[u8]| {
    let [api_index, version, body @ ..] = data else {
        return;
    };
    let key = ApiKey::ALL[usize::from(*api_index) % ApiKey::ALL.len()];
    let version = i16::from(version % VERSION_SPAN);
    let Ok(request) = Request::decode(key, version, Bytes::copy_from_slice(body)) else {
        return;
    };
    let mut writer = Writer::new();
    request
        .encode(version, &mut writer)
        .expect("a request that decoded must encode at the same version");
    let again = Request::decode(key, version, writer.into_bytes())
        .expect("a re-encoded request must decode");
    assert_eq!(again, request);
});
