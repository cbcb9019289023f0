//! Idempotent-producer state of one partition, as Kafka's `ProducerStateManager` keeps it.
//!
//! For each producer id: its current epoch, the metadata of its last `PRODUCER_BATCHES_RETAINED`
//! batches, and the max timestamp of its last batch (for `producer.id.expiration.ms`). `check` decides whether a batch is appended, is a
//! duplicate of one already appended (answered with the original offsets, nothing appended), or
//! is refused (fenced epoch, out-of-order sequence). Guarantees: `check` does not change state;
//! `record` must be called, after `check` returned `Append`, with the offsets the batch was given.
//! Callers must not `record` a batch whose `check` failed, nor batches with producer id < 0.

use std::collections::{HashMap, VecDeque};

use super::error::LogError;

/// Batches remembered per producer for duplicate detection: Kafka's value, matching the client's
/// `max.in.flight.requests.per.connection` ≤ 5 for idempotence.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// The identity and sequence range of one batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id (≥ 0).
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record.
    pub base_sequence: i32,
    /// Offset of the last record relative to the first (records count - 1).
    pub last_offset_delta: i32,
}

impl ProducerBatch {
    /// Sequence of the last record; sequences wrap to 0 after `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended: answer with these offsets and append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy)]
struct BatchMetadata {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    /// Max timestamp of the producer's last batch, as Kafka's `lastTimestamp`: what expiry
    /// measures idleness by, and what a replay of the log can rebuild.
    last_timestamp_ms: i64,
    batches: VecDeque<BatchMetadata>,
}

/// The idempotent-producer state of one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

/// `sequence + increment` with Kafka's wrap to 0 after `i32::MAX`.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl ProducerState {
    /// Decides whether `batch` is appended, a duplicate, or refused.
    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, LogError> {
        let out_of_order = |expected| LogError::OutOfOrderSequence {
            producer_id: batch.producer_id,
            base_sequence: batch.base_sequence,
            expected,
        };
        if batch.base_sequence < 0 {
            return Err(out_of_order(0));
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // No state (new producer, or its state was lost with old segments): any sequence.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence.
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        let last_sequence = batch.last_sequence();
        if let Some(duplicate) = entry.batches.iter().find(|metadata| {
            metadata.first_sequence == batch.base_sequence
                && metadata.last_sequence == last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            });
        }
        let expected = entry.batches.back().map_or(batch.base_sequence, |last| {
            increment_sequence(last.last_sequence, 1)
        });
        if batch.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(out_of_order(expected))
        }
    }

    /// Whether the log already holds sequence `sequence` of producer `producer_id` in `epoch`,
    /// or moved past it (a later batch, or a later epoch).
    pub fn has_passed(&self, producer_id: i64, epoch: i16, sequence: i32) -> bool {
        self.producers.get(&producer_id).is_some_and(|entry| {
            entry.epoch > epoch
                || (entry.epoch == epoch
                    && entry
                        .batches
                        .back()
                        .is_some_and(|last| last.last_sequence >= sequence))
        })
    }

    /// Records an appended batch, the offsets it was given and its max timestamp.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64, max_timestamp_ms: i64) {
        let metadata = BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(batch.last_offset_delta),
        };
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                last_timestamp_ms: max_timestamp_ms,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
            });
        entry.last_timestamp_ms = max_timestamp_ms;
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(metadata);
    }

    /// Forgets the producers whose last batch is `expiration_ms` or more older than `now_ms`
    /// (Kafka's `producer.id.expiration.ms`), so the state does not grow without bound. Returns
    /// how many were forgotten. A forgotten producer's next batch is accepted at any sequence.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// The snapshot written into the clean-shutdown marker, the recovery checkpoint and the
    /// producer snapshots, fixed-width little-endian: producer count u32, then per producer: id
    /// i64, epoch i16, last timestamp i64, batch count u8, and per batch first sequence i32, last
    /// sequence i32, base offset i64, last offset i64.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.producers.len() * SNAPSHOT_PRODUCER_BYTES_MAX);
        let count = u32::try_from(self.producers.len()).expect("producers fit in u32");
        out.extend_from_slice(&count.to_le_bytes());
        for (producer_id, entry) in &self.producers {
            out.extend_from_slice(&producer_id.to_le_bytes());
            out.extend_from_slice(&entry.epoch.to_le_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_le_bytes());
            let batches = u8::try_from(entry.batches.len()).expect("at most 5 batches");
            out.push(batches);
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_sequence.to_le_bytes());
                out.extend_from_slice(&batch.last_sequence.to_le_bytes());
                out.extend_from_slice(&batch.base_offset.to_le_bytes());
                out.extend_from_slice(&batch.last_offset.to_le_bytes());
            }
        }
        out
    }

    /// Parses `encode`'s output; `None` if it is malformed (the log is then scanned instead).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut cursor = SnapshotCursor { bytes };
        let count = u32::from_le_bytes(cursor.take()?);
        let mut state = ProducerState::default();
        for _ in 0..count {
            let producer_id = i64::from_le_bytes(cursor.take()?);
            let epoch = i16::from_le_bytes(cursor.take()?);
            let last_timestamp_ms = i64::from_le_bytes(cursor.take()?);
            let [batch_count] = cursor.take::<1>()?;
            if usize::from(batch_count) > PRODUCER_BATCHES_RETAINED {
                return None;
            }
            let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_sequence: i32::from_le_bytes(cursor.take()?),
                    last_sequence: i32::from_le_bytes(cursor.take()?),
                    base_offset: i64::from_le_bytes(cursor.take()?),
                    last_offset: i64::from_le_bytes(cursor.take()?),
                });
            }
            state.producers.insert(
                producer_id,
                ProducerEntry {
                    epoch,
                    last_timestamp_ms,
                    batches,
                },
            );
        }
        cursor.bytes.is_empty().then_some(state)
    }

    /// Producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer has state.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// Upper bound of one producer's snapshot bytes (id, epoch, timestamp, count, 5 batches of 24
/// bytes).
const SNAPSHOT_PRODUCER_BYTES_MAX: usize = 8 + 2 + 8 + 1 + PRODUCER_BATCHES_RETAINED * 24;

/// Reads fixed-width fields from a snapshot.
struct SnapshotCursor<'a> {
    bytes: &'a [u8],
}

impl SnapshotCursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_epoch: i16, base_sequence: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            producer_epoch,
            base_sequence,
            last_offset_delta: records - 1,
        }
    }

    #[test]
    fn has_passed_a_sequence_once_it_or_a_later_one_or_epoch_is_stored() {
        // Proves what releases a producer held back behind a refused batch: the log holding that
        // sequence, a later one, or a later epoch; an unknown producer or an earlier sequence
        // does not.
        let mut state = ProducerState::default();
        assert!(!state.has_passed(7, 0, 0));
        state.record(&batch(0, 0, 3), 10, 0);
        assert!(state.has_passed(7, 0, 0));
        assert!(state.has_passed(7, 0, 2));
        assert!(!state.has_passed(7, 0, 3));
        assert!(!state.has_passed(8, 0, 0));
        state.record(&batch(1, 0, 1), 13, 0);
        assert!(state.has_passed(7, 0, 50));
        assert!(!state.has_passed(7, 1, 1));
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        // Proves consecutive sequences append, a retry of any of the last 5 batches is answered
        // with its original offsets, and a gap or an older batch is out of order.
        let mut state = ProducerState::default();
        let mut base_offset = 100;
        for i in 0..6 {
            let b = batch(0, i * 3, 3);
            assert_eq!(state.check(&b), Ok(SequenceCheck::Append));
            state.record(&b, base_offset, 0);
            base_offset += 3;
        }
        assert_eq!(
            state.check(&batch(0, 15, 3)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 115,
                last_offset: 117
            })
        );
        assert_eq!(
            state.check(&batch(0, 3, 3)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 103,
                last_offset: 105
            })
        );
        // The first batch fell out of the last 5: no longer recognised.
        assert!(matches!(
            state.check(&batch(0, 0, 3)),
            Err(LogError::OutOfOrderSequence { expected: 18, .. })
        ));
        assert!(matches!(
            state.check(&batch(0, 19, 1)),
            Err(LogError::OutOfOrderSequence { expected: 18, .. })
        ));
        assert_eq!(state.check(&batch(0, 18, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        // Proves an older epoch is fenced, a newer epoch must start at 0, and a producer with no
        // state may start anywhere.
        let mut state = ProducerState::default();
        assert_eq!(state.check(&batch(3, 500, 2)), Ok(SequenceCheck::Append));
        state.record(&batch(3, 500, 2), 0, 0);
        assert!(matches!(
            state.check(&batch(2, 502, 1)),
            Err(LogError::InvalidProducerEpoch {
                current_epoch: 3,
                ..
            })
        ));
        assert!(matches!(
            state.check(&batch(4, 5, 1)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(state.check(&batch(4, 0, 1)), Ok(SequenceCheck::Append));
        state.record(&batch(4, 0, 1), 2, 0);
        assert_eq!(state.check(&batch(4, 1, 1)), Ok(SequenceCheck::Append));
        assert!(state.check(&batch(4, -1, 1)).is_err());
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        // Proves the clean-shutdown snapshot restores the same duplicate answers, and a truncated
        // snapshot is refused rather than half-loaded.
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.record(&batch(2, i * 2, 2), 1000 + i64::from(i) * 2, 0);
        }
        state.record(
            &ProducerBatch {
                producer_id: 9,
                producer_epoch: 0,
                base_sequence: 0,
                last_offset_delta: 0,
            },
            5000,
            0,
        );
        let bytes = state.encode();
        let restored = ProducerState::decode(&bytes).unwrap();
        assert_eq!(restored.len(), 2);
        assert_eq!(
            restored.check(&batch(2, 10, 2)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 1010,
                last_offset: 1011
            })
        );
        assert_eq!(restored.check(&batch(2, 14, 1)), Ok(SequenceCheck::Append));
        assert!(ProducerState::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(ProducerState::decode(&[]).is_none());
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        // Proves the sequence after i32::MAX is 0, as Kafka's incrementSequence computes.
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut state = ProducerState::default();
        let near_end = batch(0, i32::MAX - 1, 2);
        assert_eq!(near_end.last_sequence(), i32::MAX);
        state.record(&near_end, 0, 0);
        assert_eq!(state.check(&batch(0, 0, 5)), Ok(SequenceCheck::Append));
        let wrapping = batch(0, i32::MAX, 3);
        assert_eq!(wrapping.last_sequence(), 1);
    }

    #[test]
    fn idle_producers_expire_and_a_snapshot_keeps_their_age() {
        // Proves producer.id.expiration.ms: a producer whose last batch is that old is forgotten
        // (its next batch is accepted at any sequence), a younger one is kept, and the age
        // survives a snapshot round trip.
        let mut state = ProducerState::default();
        state.record(&batch(0, 0, 1), 0, 1_000);
        let other = ProducerBatch {
            producer_id: 8,
            producer_epoch: 0,
            base_sequence: 0,
            last_offset_delta: 0,
        };
        state.record(&other, 1, 5_000);
        let mut restored = ProducerState::decode(&state.encode()).unwrap();
        assert_eq!(restored.expire(5_999, 5_000), 0);
        assert_eq!(restored.expire(6_000, 5_000), 1);
        assert_eq!(restored.len(), 1);
        assert_eq!(restored.check(&batch(0, 77, 1)), Ok(SequenceCheck::Append));
        assert!(
            restored
                .check(&ProducerBatch {
                    base_sequence: 5,
                    ..other
                })
                .is_err()
        );
        assert_eq!(restored.expire(10_000, 5_000), 1);
        assert!(restored.is_empty());
    }
}
