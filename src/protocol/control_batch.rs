//! Control batches for the entries a replicated partition's Raft log holds besides records.
//!
//! A replicated partition's segment log is its Raft log, one batch per entry. Raft writes
//! entries of its own too: the blank entry each new leader commits, and membership changes;
//! and the leader writes one when retention moves the log start.
//! Each is stored as a control batch (the attribute bit Kafka's transaction markers carry) of
//! one record whose key is Kafka's control-record key (version 0, then a type) and whose value
//! is the entry's data. Consumers skip control batches (librdkafka ignores a control type it
//! does not know; Java's consumer returns no control record), and each takes one offset, as a
//! transaction marker does. So Kafka offsets need no translation layer (Redpanda's offset
//! translator): every replica holds the same batches at the same offsets, and a fetch serves
//! the stored bytes as they are.
//!
//! The types are Spate's own, far from the ones Kafka uses (0 to 6 today), so no Kafka tool
//! reads them as one of its own.

use bytes::Bytes;

use super::record_batch::{self, ATTRIBUTE_CONTROL, BatchError, RECORD_BATCH_HEADER_BYTES};
use super::records::{BatchBuilder, Record, RecordIter};

/// A new Raft leader's blank entry (no value).
pub const CONTROL_TYPE_RAFT_BLANK: i16 = 0x5301;
/// A Raft membership entry (the value is the membership).
pub const CONTROL_TYPE_RAFT_MEMBERSHIP: i16 = 0x5302;
/// The leader's decision to move the log start (retention): the value is the new log start
/// offset, 8 bytes big-endian. Every replica applies it at the same point of the log.
pub const CONTROL_TYPE_LOG_START: i16 = 0x5303;

/// The control-record key version every client accepts.
const KEY_VERSION: i16 = 0;

/// Why a batch is not a readable control batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlBatchError {
    /// The batch itself is malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Its first record is missing, or has no 4-byte version-0 control key.
    #[error("a control batch without a control key")]
    NoControlKey,
}

/// The one record of a control batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRecord {
    /// The control type (the key's second field).
    pub control_type: i16,
    /// The record's value.
    pub value: Option<Bytes>,
}

/// A control batch of one record of `control_type` holding `value`, stamped `timestamp_ms`,
/// base offset 0 (the log assigns it).
pub fn build(control_type: i16, value: Option<&[u8]>, timestamp_ms: i64) -> Bytes {
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    let mut builder = BatchBuilder::new(timestamp_ms);
    builder.push(&Record {
        timestamp_delta: 0,
        key: Some(&key),
        value,
        headers: &[],
    });
    builder.finish_control()
}

/// The control record of `batch`, or `None` if it is not a control batch. A control batch
/// whose first record has no 4-byte version-0 key is an error.
pub fn parse(batch: &Bytes) -> Result<Option<ControlRecord>, ControlBatchError> {
    let header = record_batch::header(batch)?;
    if header.attributes.get() & ATTRIBUTE_CONTROL == 0 {
        return Ok(None);
    }
    let records_count = header.records_count.get();
    let region = batch.slice(RECORD_BATCH_HEADER_BYTES.min(batch.len())..);
    let malformed = || ControlBatchError::NoControlKey;
    let record = RecordIter::new(region, records_count)
        .next()
        .ok_or_else(malformed)?
        .map_err(|_| malformed())?;
    let key = record.key.ok_or_else(malformed)?;
    if key.len() != 4 || i16::from_be_bytes([key[0], key[1]]) != KEY_VERSION {
        return Err(malformed());
    }
    Ok(Some(ControlRecord {
        control_type: i16::from_be_bytes([key[2], key[3]]),
        value: record.value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_batch_round_trips_and_validates() {
        // Proves the built batch is a valid v2 control batch of one record with the 4-byte key
        // clients require, and parses back to its type and value.
        let batch = build(
            CONTROL_TYPE_RAFT_MEMBERSHIP,
            Some(b"{\"voters\":[1,2,3]}"),
            1000,
        );
        let header = record_batch::validate(&batch).unwrap();
        assert_ne!(header.attributes.get() & ATTRIBUTE_CONTROL, 0);
        assert_eq!(header.records_count.get(), 1);
        assert_eq!(header.producer_id.get(), -1);
        let record = parse(&batch).unwrap().unwrap();
        assert_eq!(record.control_type, CONTROL_TYPE_RAFT_MEMBERSHIP);
        assert_eq!(record.value.as_deref(), Some(&b"{\"voters\":[1,2,3]}"[..]));
        let blank = parse(&build(CONTROL_TYPE_RAFT_BLANK, None, 0))
            .unwrap()
            .unwrap();
        assert_eq!(blank.control_type, CONTROL_TYPE_RAFT_BLANK);
        assert_eq!(blank.value, None);
    }

    #[test]
    fn data_batches_are_not_control_and_bad_keys_are_errors() {
        // Proves parse tells data batches apart and refuses a control batch whose key is not
        // Kafka's control key (wrong length), instead of misreading it.
        let mut builder = BatchBuilder::new(0);
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(b"k"),
            value: Some(b"v"),
            headers: &[],
        });
        assert_eq!(parse(&builder.finish()).unwrap(), None);
        let mut builder = BatchBuilder::new(0);
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(b"abc"),
            value: None,
            headers: &[],
        });
        assert!(parse(&builder.finish_control()).is_err());
    }
}
