//! Recovery after damage: torn tails cut at every position, and corruption (a flipped bit with
//! valid data after it) that takes the partition offline instead of truncating it.

use std::rc::Rc;

use super::tests::{BASE_TIMESTAMP_MS, append_numbered, batch, numbered, open, read_all, topic};
use super::*;
use crate::config::TimestampType;
use crate::io::direct_file::tests::{TestDir, run_in_executor};
use crate::protocol::record_batch;
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

/// Appends one plain batch of one `value_bytes` record and returns its outcome.
fn append_filler(log: &PartitionLog, value_bytes: usize) -> AppendOutcome {
    let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS);
    let value = vec![9u8; value_bytes];
    builder.push(&Record {
        timestamp_delta: 0,
        key: None,
        value: Some(&value),
        headers: &[],
    });
    log.append_batch(builder.finish(), 0).unwrap()
}

/// Waits until the snapshot task of every roll so far has written its file.
async fn wait_for_snapshots(log: &PartitionLog) {
    let newest = log.segments.borrow().last().unwrap().base_offset();
    let path = crate::log::producer_snapshot::path(log.dir(), newest);
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no producer snapshot at {}", path.display());
}

#[test]
fn producer_state_survives_an_unclean_stop_after_several_rolls() {
    // Proves idempotence survives a crash under load: a producer's last batches end in a segment
    // that several rolls have closed since; after an unclean stop (no marker, no checkpoint) a
    // retry of an acknowledged batch is still answered as a duplicate with its original offsets
    // and the next sequence is accepted, both from the producer snapshot written at the rolls
    // and, with every snapshot deleted, from a replay of all the closed segments.
    use super::tests::idempotent_batch;
    let dir = TestDir::new("log-idem-rolls");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(16 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let mut acknowledged = Vec::new();
        for i in 0..20 {
            acknowledged.push(log.append_batch(idempotent_batch(0, 2 * i, 2), 0).unwrap());
            append_filler(&log, 3000);
        }
        let segments_at_last_batch = log.segments.borrow().len();
        let mut last = None;
        for _ in 0..6 {
            last = Some(append_filler(&log, 10_000));
        }
        log.wait_written(last.as_ref().unwrap()).await.unwrap();
        assert!(log.segments.borrow().len() >= segments_at_last_batch + 4);
        wait_for_snapshots(&log).await;
        let log_end = log.log_end_offset();
        drop(log); // Unclean.

        let log_dir = path.join("topic-0");
        let log = open(&path, config.clone(), 0).await;
        assert_eq!(log.log_end_offset(), log_end);
        for i in [15, 19] {
            let retry = log.append_batch(idempotent_batch(0, 2 * i, 2), 0).unwrap();
            assert!(retry.duplicate, "batch {i}");
            let original = &acknowledged[i as usize];
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (original.base_offset, original.last_offset)
            );
        }
        assert!(matches!(
            log.append_batch(idempotent_batch(0, 25, 1), 0),
            Err(LogError::OutOfOrderSequence { expected: 40, .. })
        ));
        let next = log.append_batch(idempotent_batch(0, 40, 1), 0).unwrap();
        assert!(!next.duplicate);
        assert_eq!(next.base_offset, log_end);
        log.wait_written(&next).await.unwrap();
        drop(log); // Unclean again.

        for entry in std::fs::read_dir(&log_dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().ends_with(".snapshot") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let log = open(&path, config, 0).await;
        let retry = log.append_batch(idempotent_batch(0, 40, 1), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, log_end);
        let retry = log.append_batch(idempotent_batch(0, 36, 2), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, acknowledged[18].base_offset);
        let next = log.append_batch(idempotent_batch(0, 41, 1), 0).unwrap();
        assert_eq!(next.base_offset, log_end + 1);
        log.close().await.unwrap();
    });
}

/// (file position, base offset) of each batch in a segment file.
fn batch_positions(bytes: &[u8]) -> Vec<(usize, i64)> {
    let mut out = Vec::new();
    let mut position = 0;
    while let Ok(Some(size)) = record_batch::batch_size(&bytes[position..]) {
        let header = record_batch::header(&bytes[position..]).unwrap();
        out.push((position, header.base_offset.get()));
        position += size;
    }
    out
}

#[test]
fn a_forced_cut_in_a_closed_segment_deletes_the_segments_after_it() {
    // Proves a closed segment with damage is corrupt wherever the damage is (it was complete and
    // synced before the next segment existed): without forced truncation the partition opens
    // offline; with it the segment is cut at the damaged batch and every later segment is
    // deleted, so the log ends there with no gap: reads run 0..cut, the next append gets the cut
    // offset, and a reopen agrees.
    let dir = TestDir::new("log-cut-closed");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(16 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        append_numbered(&log, 900).await;
        let bases: Vec<i64> = log
            .segments
            .borrow()
            .iter()
            .map(|s| s.base_offset())
            .collect();
        assert!(bases.len() >= 4, "{bases:?}");
        drop(log);
        let log_dir = path.join("topic-0");
        let damaged = Segment::new(&log_dir, bases[1]);
        // A crash during its roll left it without index files: recovery scans it.
        std::fs::remove_file(damaged.index_path()).unwrap();
        std::fs::remove_file(damaged.time_index_path()).unwrap();
        let mut bytes = std::fs::read(damaged.log_path()).unwrap();
        let positions = batch_positions(&bytes);
        let (position, cut) = positions[positions.len() / 2];
        bytes[position + 70] ^= 0x20;
        std::fs::write(damaged.log_path(), &bytes).unwrap();

        let log = open(&path, config.clone(), 0).await;
        assert!(log.is_offline(), "damage in a closed segment is corruption");
        log.close().await.unwrap();
        assert_eq!(std::fs::read(damaged.log_path()).unwrap(), bytes);

        recovery::set_truncate_corrupt(true);
        let log = open(&path, config.clone(), 0).await;
        recovery::set_truncate_corrupt(false);
        assert!(!log.is_offline());
        assert_eq!(log.log_end_offset(), cut);
        assert_eq!(log.high_watermark(), cut);
        assert_eq!(log.segments.borrow().len(), 2);
        for &base in &bases[2..] {
            assert!(!Segment::new(&log_dir, base).log_path().exists(), "{base}");
        }
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..cut as u64));
        let next = log.append_batch(batch(cut as u64, 1), 0).unwrap();
        assert_eq!(next.base_offset, cut);
        log.wait_written(&next).await.unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = open(&path, config, 0).await;
        assert_eq!(log.log_end_offset(), cut + 1);
        assert_eq!(
            read_all(&log, 0, 1 << 16).await,
            numbered(0..cut as u64 + 1)
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_batch_found_corrupt_when_read_takes_the_partition_offline() {
    // Proves corruption found while serving: a byte flipped on disk in a closed segment's batch
    // (read from disk: no cache) fails the read with Offline naming the file and the batch's
    // offset, and from then on every call answers Offline, as for corruption found at open.
    let dir = TestDir::new("log-rot-served");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        use std::os::unix::fs::FileExt;
        let config = topic(16 * 1024, TimestampType::CreateTime);
        let log = open(&path, config, 0).await;
        append_numbered(&log, 600).await;
        let segment = log.segments.borrow()[0].clone();
        let bytes = std::fs::read(segment.log_path()).unwrap();
        let (position, damaged_offset) = batch_positions(&bytes)[10];
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(segment.log_path())
            .unwrap();
        file.write_at(&[bytes[position + 65] ^ 0x08], (position + 65) as u64)
            .unwrap();
        file.sync_all().unwrap();
        // Batches before the damaged one still read.
        assert!(!log.read(0, 1).await.unwrap().is_empty());
        let Err(LogError::Offline(reason)) = log.read(damaged_offset, 100).await else {
            panic!("a corrupt batch must not be served");
        };
        assert!(log.is_offline());
        assert!(reason.contains("00000000000000000000.log"), "{reason}");
        assert!(
            reason.contains(&format!("offset {damaged_offset} ")),
            "{reason}"
        );
        assert!(matches!(log.read(0, 100).await, Err(LogError::Offline(_))));
        assert!(matches!(
            log.append_batch(batch(0, 1), 0),
            Err(LogError::Offline(_))
        ));
        assert!(log.health().is_err());
        log.close().await.unwrap();
    });
}

#[test]
fn idle_producers_expire_and_keep_their_age_across_a_restart() {
    // Proves producer.id.expiration.ms on a log: a producer's state (restored from the
    // clean-shutdown marker with its last batch's timestamp) is kept until its last batch is that
    // old, so retries stay duplicates; after that it is forgotten and any sequence is accepted.
    use super::tests::idempotent_batch;
    let dir = TestDir::new("log-producer-expiry");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let first = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
        log.wait_written(&first).await.unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = open(&path, config, 0).await;
        let expiration_ms = 3_600_000;
        // idempotent_batch stamps its records BASE_TIMESTAMP_MS.
        let young = BASE_TIMESTAMP_MS + expiration_ms - 1;
        assert_eq!(log.expire_producers(young, expiration_ms), 0);
        assert!(
            log.append_batch(idempotent_batch(0, 0, 3), 0)
                .unwrap()
                .duplicate
        );
        assert_eq!(
            log.expire_producers(BASE_TIMESTAMP_MS + expiration_ms, expiration_ms),
            1
        );
        let after = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
        assert!(!after.duplicate, "an expired producer's batch is new");
        assert_eq!(after.base_offset, 3);
        log.close().await.unwrap();
    });
}
