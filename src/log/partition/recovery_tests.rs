//! Recovery after damage: torn tails cut at every position, and corruption (a flipped bit with
//! valid data after it) that takes the partition offline instead of truncating it.

use std::rc::Rc;

use super::tests::{BASE_TIMESTAMP_MS, append_numbered, batch, numbered, open, read_all, topic};
use super::*;
use crate::config::TimestampType;
use crate::io::direct_file::tests::{TestDir, run_in_executor};
use crate::protocol::records::{BatchBuilder, Record};

/// Batches checked at the tail: the cuts cover every byte of these.
const TAIL_BATCHES: usize = 3;

#[test]
fn torn_tails_cut_at_every_position_recover_to_the_last_whole_batch() {
    // Proves recovery after a torn write, exhaustively: the segment is cut at every byte position
    // inside its last three batches, then followed by zeros (a preallocated tail) or by garbage
    // (a torn write's stale bytes); every reopen recovers exactly the batches whose bytes are all
    // intact, reads them back, and accepts new appends right after them.
    let dir = TestDir::new("log-torn-every");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        // (file position where the batch ends, records up to and including it)
        let mut ends = Vec::new();
        let mut records = 0u64;
        for i in 0..12u64 {
            let count = i % 3 + 1;
            let outcome = log.append_batch(batch(records, count), 0).unwrap();
            log.wait_written(&outcome).await.unwrap();
            records += count;
            ends.push((log.segments.borrow()[0].written_bytes(), records));
        }
        drop(log); // Unclean: no marker, so every open scans.
        let log_path = path.join("topic-0").join(segment::file_name(0, "log"));
        let end = ends.last().unwrap().0 as usize;
        let original = std::fs::read(&log_path).unwrap()[..end].to_vec();
        let first_cut = ends[ends.len() - TAIL_BATCHES - 1].0 as usize;
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251 + 1) as u8).collect();
        let mut reopens = 0;
        for cut in first_cut..=end {
            for tail in [&vec![0u8; 4096], &garbage] {
                // A batch cut only where its own bytes equal the tail's (a record's last byte is
                // often 0) is whole again.
                let same = original[cut..]
                    .iter()
                    .zip(tail.iter())
                    .take_while(|(stored, added)| stored == added)
                    .count();
                let whole = ends
                    .iter()
                    .take_while(|(batch_end, _)| *batch_end as usize <= cut + same)
                    .last()
                    .map_or(0, |(_, records)| *records);
                let mut bytes = original[..cut].to_vec();
                bytes.extend_from_slice(tail);
                std::fs::write(&log_path, &bytes).unwrap();
                let log = open(&path, config.clone(), 0).await;
                assert_eq!(log.high_watermark(), whole as i64, "cut at {cut}");
                assert_eq!(log.log_end_offset(), whole as i64, "cut at {cut}");
                if cut % 17 == 0 || cut == end {
                    assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..whole));
                    let after = append_numbered(&log, 1).await;
                    assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..after));
                }
                drop(log);
                reopens += 1;
            }
        }
        assert!(reopens > 200, "{reopens} reopens");
    });
}

/// Appends `count` batches of one 10 kB record each and waits until they are written. Returns
/// the bytes of one batch on disk.
async fn append_large(log: &PartitionLog, count: usize) -> u64 {
    let mut last = None;
    for _ in 0..count {
        let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS);
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(&[7u8; 10_000]),
            headers: &[],
        });
        last = Some(log.append_batch(builder.finish(), 0).unwrap());
    }
    log.wait_written(&last.unwrap()).await.unwrap();
    log.segments.borrow()[0].written_bytes() / count as u64
}

#[test]
fn a_flipped_bit_mid_segment_takes_the_partition_offline_untouched() {
    // Proves bit rot is not mistaken for a torn write: a bit flipped in the middle of ~3 MB of
    // acknowledged data (more than one write's reach before the end) opens the partition
    // offline, reporting the damaged batch's offset; every call answers Offline; the file is
    // left byte for byte as it was and a clean close leaves no marker, so it stays offline on
    // the next open; only forced truncation (--unsafe-truncate-corrupt-logs) cuts the log at the
    // damaged batch.
    let dir = TestDir::new("log-bit-flip");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let batch_bytes = append_large(&log, 300).await;
        drop(log);
        let log_dir = path.join("topic-0");
        let log_path = log_dir.join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&log_path).unwrap();
        let flipped_batch = 120u64;
        bytes[(flipped_batch * batch_bytes + batch_bytes / 2) as usize] ^= 0x10;
        std::fs::write(&log_path, &bytes).unwrap();

        for _ in 0..2 {
            let log = open(&path, config.clone(), 0).await;
            assert!(log.is_offline());
            let Err(LogError::Offline(reason)) = log.read(0, 100).await else {
                panic!("reads of an offline log must fail");
            };
            assert!(
                reason.contains(&format!("offset {flipped_batch} ")),
                "{reason}"
            );
            assert!(reason.contains("00000000000000000000.log"), "{reason}");
            assert!(matches!(
                log.append_batch(batch(0, 1), 0),
                Err(LogError::Offline(_))
            ));
            assert!(matches!(
                log.offset_for_timestamp(0).await,
                Err(LogError::Offline(_))
            ));
            assert!(matches!(
                log.enforce_retention(i64::MAX).await,
                Err(LogError::Offline(_))
            ));
            assert_eq!(
                crate::api::errors::log_error_code(&LogError::Offline(reason)),
                crate::protocol::ErrorCode::KafkaStorageError
            );
            log.close().await.unwrap();
            assert!(!log_dir.join(SHUTDOWN_MARKER_FILE_NAME).exists());
            assert_eq!(std::fs::read(&log_path).unwrap(), bytes, "file untouched");
        }

        recovery::set_truncate_corrupt(true);
        let log = open(&path, config.clone(), 0).await;
        recovery::set_truncate_corrupt(false);
        assert!(!log.is_offline());
        assert_eq!(log.high_watermark(), flipped_batch as i64);
        let read = log.read(0, 1 << 20).await.unwrap();
        assert!(!read.is_empty());
        let more = log.append_batch(batch(0, 1), 0).unwrap();
        assert_eq!(more.base_offset, flipped_batch as i64);
        log.close().await.unwrap();
    });
}

#[test]
fn an_offline_partition_does_not_stop_its_neighbours() {
    // Proves one corrupt partition does not take the others down: of two logs sharing a cache,
    // the corrupt one opens offline and the healthy one serves reads and appends.
    let dir = TestDir::new("log-offline-neighbour");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(1 << 30, TimestampType::CreateTime);
        let cache = Rc::new(ShardCache::new(1 << 20));
        let corrupt_dir = path.join("rot-0");
        let healthy_dir = path.join("rot-1");
        for dir in [&corrupt_dir, &healthy_dir] {
            let log = PartitionLog::open(dir.clone(), config.clone(), cache.clone())
                .await
                .unwrap();
            append_large(&log, 250).await;
            drop(log);
        }
        let log_path = corrupt_dir.join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&log_path).unwrap();
        bytes[20_000] ^= 0x01;
        std::fs::write(&log_path, &bytes).unwrap();
        let corrupt = PartitionLog::open(corrupt_dir, config.clone(), cache.clone())
            .await
            .unwrap();
        let healthy = PartitionLog::open(healthy_dir, config, cache)
            .await
            .unwrap();
        assert!(corrupt.is_offline());
        assert!(!healthy.is_offline());
        assert_eq!(healthy.high_watermark(), 250);
        let outcome = healthy.append_batch(batch(0, 2), 0).unwrap();
        healthy.wait_durable(&outcome).await.unwrap();
        assert_eq!(healthy.read(249, 1 << 20).await.unwrap().len(), 2);
        corrupt.close().await.unwrap();
        healthy.close().await.unwrap();
    });
}

#[test]
fn an_unclean_stop_scans_only_after_the_recovery_checkpoint() {
    // Proves the recovery checkpoint: once the active segment passes CHECKPOINT_INTERVAL_BYTES
    // the writer records a durable prefix; after an unclean stop recovery restores it (indexes,
    // producer state) and scans only what follows: damage inside the prefix is not even read,
    // a torn tail after it is cut to the last whole batch, every record reads back, and the
    // idempotent producer state covers batches on both sides of the checkpoint.
    use super::tests::idempotent_batch;
    use crate::log::checkpoint::{CHECKPOINT_FILE_NAME, CHECKPOINT_INTERVAL_BYTES};
    let dir = TestDir::new("log-checkpoint");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        log.append_batch(idempotent_batch(0, 0, 2), 0).unwrap();
        let batches = CHECKPOINT_INTERVAL_BYTES / 1_000_000 + 2;
        for _ in 0..batches {
            let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS);
            builder.push(&Record {
                timestamp_delta: 0,
                key: None,
                value: Some(&[5u8; 1_000_000]),
                headers: &[],
            });
            let outcome = log.append_batch(builder.finish(), 0).unwrap();
            log.wait_written(&outcome).await.unwrap();
        }
        let log_dir = path.join("topic-0");
        // The checkpoint is recorded by a task of its own, after the write that reached it.
        for _ in 0..1000 {
            if log_dir.join(CHECKPOINT_FILE_NAME).exists() {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(log_dir.join(CHECKPOINT_FILE_NAME).exists());
        let checkpointed = log.log_end_offset();
        let after = log.append_batch(idempotent_batch(0, 2, 3), 0).unwrap();
        let last = log.append_batch(batch(0, 4), 0).unwrap();
        log.wait_written(&last).await.unwrap();
        let end = log.segments.borrow()[0].written_bytes() as usize;
        drop(log);

        let log_path = log_dir.join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&log_path).unwrap();
        bytes.truncate(end - 10); // Tear the last batch.
        bytes[5_000_000] ^= 0x40; // Inside the checkpointed prefix, far before the end.
        std::fs::write(&log_path, &bytes).unwrap();

        let log = open(&path, config, 0).await;
        assert!(!log.is_offline());
        assert_eq!(log.high_watermark(), after.end_offset());
        assert!(checkpointed > 0 && after.base_offset >= checkpointed);
        let retry = log.append_batch(idempotent_batch(0, 2, 3), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, after.base_offset);
        let next = log.append_batch(idempotent_batch(0, 5, 1), 0).unwrap();
        assert_eq!(next.base_offset, after.end_offset());
        log.wait_written(&next).await.unwrap();
        let tail = log.read(after.base_offset, 1 << 20).await.unwrap();
        assert_eq!(tail.len(), 2);
        log.close().await.unwrap();
    });
}
