//! Fuzz target: the RecordBatch v2 view on arbitrary bytes, as a produce request's records field
//! or a segment's bytes would reach it: `validate`, `BatchIter` over a record set, and `RecordIter`
//! over the records region. The property is "no panic, no abort".
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::protocol::record_batch::{
    self, BatchIter, Compression, RECORD_BATCH_HEADER_BYTES, RecordBatchHeader,
};
use spate::protocol::records::RecordIter;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(header) = record_batch::validate(data)
        && record_batch::compression(header) == Ok(Compression::None)
    {
        read_records(&bytes, header);
    }
    // Records are also read from batches whose CRC does not check, so the fuzzer reaches record
    // parsing without having to forge a CRC-32C first.
    for batch in BatchIter::new(bytes).flatten() {
        if let Ok(header) = record_batch::header(&batch) {
            read_records(&batch, header);
        }
    }
});

fn read_records(batch: &Bytes, header: &RecordBatchHeader) {
    let region = batch.slice(RECORD_BATCH_HEADER_BYTES..);
    for record in RecordIter::new(region, header.records_count.get()) {
        let _ = record;
    }
}
