//! A replica's appends: a follower log fed the leader's stored batches holds the same bytes at
//! the same offsets, with the leader's epochs, and refuses batches that do not fit.

use super::tests::{
    append_numbered, idempotent_batch, numbered, open, read_all, topic, whole_batches,
};
use super::*;
use crate::config::TimestampType;
use crate::io::direct_file::tests::{TestDir, run_in_executor};
use crate::log::leader_epochs;

/// Small segments, so the logs roll several times.
const SEGMENT_BYTES: u64 = 4096;

/// Every batch of `log` from `offset` to its high watermark, as stored.
async fn stored_batches(log: &PartitionLog, mut offset: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    while offset < log.high_watermark() {
        let batches = whole_batches(log.read(offset, 1 << 16).await.unwrap());
        for batch in batches {
            let header = record_batch::header(&batch).unwrap();
            offset = header.base_offset.get() + i64::from(header.last_offset_delta.get()) + 1;
            out.push(batch);
        }
    }
    out
}

/// Appends `batches` on `replica` as a replica does, starting each newer epoch first. The
/// last outcome.
async fn feed(replica: &PartitionLog, batches: Vec<Bytes>) -> Result<AppendOutcome, LogError> {
    let mut last = None;
    for batch in batches {
        let epoch = record_batch::header(&batch)?.partition_leader_epoch.get();
        if epoch > replica.leader_epoch() {
            replica.begin_epoch(epoch).await?;
        }
        last = Some(replica.append_replica(batch, 0)?);
    }
    Ok(last.expect("at least one batch"))
}

/// The bytes of every segment file of the log in `dir`, up to each segment's data.
fn segment_bytes(log: &PartitionLog) -> Vec<(i64, Vec<u8>)> {
    log.segments
        .borrow()
        .iter()
        .map(|segment| {
            let bytes = std::fs::read(segment.log_path()).unwrap();
            (
                segment.base_offset(),
                bytes[..segment.written_bytes() as usize].to_vec(),
            )
        })
        .collect()
}

#[test]
fn a_replica_fed_the_leaders_batches_holds_the_same_bytes() {
    // Proves the replica path: batches stamped with leader epochs 3 then 4 on the leader,
    // appended on a replica, give byte-identical segment files (same rolls, same offsets, same
    // epochs), read back the same records, and survive the replica's reopen.
    let dir = TestDir::new("log-replica-same-bytes");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let leader = open(&path.join("leader"), config.clone(), 1 << 20).await;
        let replica = open(&path.join("replica"), config.clone(), 0).await;
        leader.begin_epoch(3).await.unwrap();
        append_numbered(&leader, 60).await;
        leader.begin_epoch(4).await.unwrap();
        let end = append_numbered(&leader, 60).await;
        let batches = stored_batches(&leader, 0).await;
        let epochs: Vec<i32> = batches
            .iter()
            .map(|batch| {
                record_batch::header(batch)
                    .unwrap()
                    .partition_leader_epoch
                    .get()
            })
            .collect();
        assert_eq!(epochs[..60], [3; 60]);
        assert_eq!(epochs[60..], [4; 60]);
        let last = feed(&replica, batches).await.unwrap();
        replica.wait_durable(&last).await.unwrap();
        assert_eq!(replica.log_end_offset(), end as i64);
        assert_eq!(read_all(&replica, 0, 1 << 16).await, numbered(0..end));
        assert!(leader.segments.borrow().len() > 2);
        assert_eq!(segment_bytes(&replica), segment_bytes(&leader));
        replica.close().await.unwrap();
        drop(replica);
        let replica = open(&path.join("replica"), config, 0).await;
        assert_eq!(read_all(&replica, 0, 1 << 16).await, numbered(0..end));
        assert_eq!(segment_bytes(&replica), segment_bytes(&leader));
        replica.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn a_replica_refuses_a_gap_an_overlap_and_damaged_bytes() {
    // Proves a replica append never writes a batch that does not fit: one past the log end (a
    // gap), one already held (an overlap) and one with a flipped bit are refused with the log
    // unchanged, and the right batch is taken after them.
    let dir = TestDir::new("log-replica-refusals");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let leader = open(&path.join("leader"), config.clone(), 1 << 20).await;
        let replica = open(&path.join("replica"), config, 0).await;
        append_numbered(&leader, 3).await;
        let batches = stored_batches(&leader, 0).await;
        replica.append_replica(batches[0].clone(), 0).unwrap();
        let gap = replica.append_replica(batches[2].clone(), 0);
        assert!(
            matches!(
                gap,
                Err(LogError::NotAtLogEnd {
                    base_offset: 3,
                    log_end: 1
                })
            ),
            "{gap:?}"
        );
        let overlap = replica.append_replica(batches[0].clone(), 0);
        assert!(
            matches!(overlap, Err(LogError::NotAtLogEnd { .. })),
            "{overlap:?}"
        );
        let mut damaged = batches[1].to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x10;
        let damaged = replica.append_replica(Bytes::from(damaged), 0);
        assert!(
            matches!(damaged, Err(LogError::InvalidBatch(_))),
            "{damaged:?}"
        );
        assert_eq!(replica.log_end_offset(), 1);
        let outcome = replica.append_replica(batches[1].clone(), 0).unwrap();
        replica.wait_written(&outcome).await.unwrap();
        assert_eq!(read_all(&replica, 0, 1 << 16).await, numbered(0..3));
        replica.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn a_replica_that_becomes_leader_keeps_deduplicating_retries() {
    // Proves the producer state travels with the replicated batches: idempotent batches
    // appended on the leader, then on a replica, make a retry of the last one a duplicate on the
    // replica (as when the producer retries against the new leader after a failover), while the
    // next sequence is appended.
    let dir = TestDir::new("log-replica-producers");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let leader = open(&path.join("leader"), config.clone(), 1 << 20).await;
        let replica = open(&path.join("replica"), config, 0).await;
        let mut last = None;
        for sequence in 0..10 {
            last = Some(
                leader
                    .append_batch(idempotent_batch(0, sequence, 1), 0)
                    .unwrap(),
            );
        }
        leader.wait_written(&last.unwrap()).await.unwrap();
        feed(&replica, stored_batches(&leader, 0).await)
            .await
            .unwrap();
        replica.begin_epoch(1).await.unwrap();
        let retry = replica.append_batch(idempotent_batch(0, 9, 1), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 9);
        let next = replica.append_batch(idempotent_batch(0, 10, 1), 0).unwrap();
        assert!(!next.duplicate);
        assert_eq!(next.base_offset, 10);
        replica.wait_written(&next).await.unwrap();
        let header_epoch = |batch: &Bytes| {
            record_batch::header(batch)
                .unwrap()
                .partition_leader_epoch
                .get()
        };
        let stored = stored_batches(&replica, 0).await;
        assert_eq!(header_epoch(&stored[9]), 0);
        assert_eq!(header_epoch(&stored[10]), 1);
        replica.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn a_diverged_replica_truncates_and_takes_the_new_leaders_batches() {
    // Proves log repair: a replica whose tail diverged (batches of an old epoch the new leader
    // never had) is truncated to the common prefix and then holds the new leader's bytes
    // exactly.
    let dir = TestDir::new("log-replica-repair");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let leader = open(&path.join("leader"), config.clone(), 1 << 20).await;
        let replica = open(&path.join("replica"), config.clone(), 0).await;
        leader.begin_epoch(1).await.unwrap();
        let common = append_numbered(&leader, 40).await;
        feed(&replica, stored_batches(&leader, 0).await)
            .await
            .unwrap();
        // The replica leads epoch 2 briefly and takes writes no one else got.
        replica.begin_epoch(2).await.unwrap();
        append_numbered(&replica, 25).await;
        assert_eq!(replica.end_offset_for_epoch(1), (1, common as i64));
        // The old leader wins epoch 3 and writes on from the common prefix.
        leader.begin_epoch(3).await.unwrap();
        let end = append_numbered(&leader, 30).await;
        // What the replica asks the new leader (KIP-101): where did my epoch 2 end on you?
        // Epoch 2 never reached the leader: its floor epoch 1 ended at the common prefix.
        assert_eq!(leader.end_offset_for_epoch(2), (1, common as i64));
        let replica = replica.truncate(common as i64).await.unwrap();
        // The cut took epoch 2 with it.
        assert_eq!(replica.end_offset_for_epoch(1), (1, common as i64));
        assert_eq!(replica.end_offset_for_epoch(2), (-1, -1));
        feed(&replica, stored_batches(&leader, common as i64).await)
            .await
            .unwrap();
        assert_eq!(replica.end_offset_for_epoch(1), (1, common as i64));
        assert_eq!(replica.end_offset_for_epoch(3), (3, end as i64));
        assert_eq!(replica.log_end_offset(), end as i64);
        replica.close().await.unwrap();
        leader.close().await.unwrap();
        let replica = open(&path.join("replica"), config.clone(), 0).await;
        let leader = open(&path.join("leader"), config, 0).await;
        assert_eq!(read_all(&replica, 0, 1 << 16).await, numbered(0..end));
        assert_eq!(segment_bytes(&replica), segment_bytes(&leader));
        replica.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn a_replica_takes_a_newer_epoch_only_once_begun_and_never_an_older_one() {
    // Proves the epoch order rule: a batch of an epoch newer than the replica's latest is refused
    // until `begin_epoch`, and after a newer epoch a batch of an older one is refused, so the
    // leader-epoch cache always knows a batch's epoch before the batch is on disk.
    let dir = TestDir::new("log-replica-epoch-order");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let leader = open(&path.join("leader"), config.clone(), 1 << 20).await;
        let replica = open(&path.join("replica"), config, 0).await;
        leader.begin_epoch(2).await.unwrap();
        append_numbered(&leader, 2).await;
        let batches = stored_batches(&leader, 0).await;
        let early = replica.append_replica(batches[0].clone(), 0);
        assert!(
            matches!(
                early,
                Err(LogError::EpochNotBegun {
                    epoch: 2,
                    latest: 0
                })
            ),
            "{early:?}"
        );
        replica.begin_epoch(5).await.unwrap();
        let stale = replica.append_replica(batches[0].clone(), 0);
        assert!(
            matches!(
                stale,
                Err(LogError::StaleLeaderEpoch {
                    epoch: 2,
                    latest: 5
                })
            ),
            "{stale:?}"
        );
        let older = replica.begin_epoch(4).await;
        assert!(
            matches!(older, Err(LogError::StaleLeaderEpoch { .. })),
            "{older:?}"
        );
        assert_eq!(replica.log_end_offset(), 0);
        replica.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn the_epoch_cache_survives_reopens_damage_and_deleted_records() {
    // Proves the leader-epoch cache's life: it is back after a clean close and after a crash;
    // a damaged file is rebuilt from the batches' own epochs; a log without the file (written
    // before epochs were kept) is all epoch 0; DeleteRecords moves the first epoch's start.
    let dir = TestDir::new("log-epoch-cache");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let log_dir = path.join("log");
        let log = open(&log_dir, config.clone(), 0).await;
        let zero_end = append_numbered(&log, 10).await as i64;
        log.begin_epoch(3).await.unwrap();
        let three_end = append_numbered(&log, 10).await as i64;
        log.begin_epoch(7).await.unwrap();
        let end = append_numbered(&log, 10).await as i64;
        let expected = [
            (0, (0, zero_end)),
            (3, (3, three_end)),
            (5, (3, three_end)),
            (7, (7, end)),
        ];
        let check = |log: &PartitionLog, when: &str| {
            for (requested, answer) in expected {
                assert_eq!(
                    log.end_offset_for_epoch(requested),
                    answer,
                    "{when}: epoch {requested}"
                );
            }
            assert_eq!(log.leader_epoch(), 7, "{when}");
        };
        check(&log, "running");
        log.close().await.unwrap();
        drop(log);
        let log = open(&log_dir, config.clone(), 0).await;
        check(&log, "after a clean close");
        drop(log);
        let log = open(&log_dir, config.clone(), 0).await;
        check(&log, "after a crash");
        drop(log);
        let file = log_dir
            .join("topic-0")
            .join(leader_epochs::LEADER_EPOCH_FILE_NAME);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        let log = open(&log_dir, config.clone(), 0).await;
        check(&log, "rebuilt from a damaged file");
        assert_eq!(
            log.delete_records(zero_end + 2).await.unwrap(),
            zero_end + 2
        );
        assert_eq!(log.end_offset_for_epoch(0), (0, zero_end + 2));
        assert_eq!(log.end_offset_for_epoch(3), (3, three_end));
        log.close().await.unwrap();
        drop(log);
        let log = open(&log_dir, config.clone(), 0).await;
        assert_eq!(log.end_offset_for_epoch(0), (0, zero_end + 2));
        log.close().await.unwrap();
        drop(log);

        let old_dir = path.join("old");
        let log = open(&old_dir, config.clone(), 0).await;
        let old_end = append_numbered(&log, 10).await as i64;
        log.close().await.unwrap();
        drop(log);
        // A log that never left epoch 0 writes no file: its absence says all epoch 0.
        assert!(
            !old_dir
                .join("topic-0")
                .join(leader_epochs::LEADER_EPOCH_FILE_NAME)
                .exists()
        );
        let log = open(&old_dir, config, 0).await;
        assert_eq!(log.end_offset_for_epoch(0), (0, old_end));
        assert_eq!(log.end_offset_for_epoch(1), (-1, -1));
        log.close().await.unwrap();
    });
}
