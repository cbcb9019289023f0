//! Fuzz target: `RequestHeader::decode` on arbitrary bytes, the first thing the broker parses in
//! every frame. The property is only "no panic, no abort": any input is a header or a `CodecError`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::protocol::RequestHeader;
use spate::protocol::wire::Reader;

fuzz_target!(|data: &[u8]| {
    let _ = RequestHeader::decode(&mut Reader::new(Bytes::copy_from_slice(data)));
});
