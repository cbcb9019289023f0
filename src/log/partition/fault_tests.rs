//! Faults below the log, injected through `io::faults` (and one real full disk): ENOSPC fails the
//! waiters and drops their batches (a retry appends them once), EIO and short writes poison, slow
//! writes only slow, and in every case nothing acknowledged is lost, nothing unwritten is
//! acknowledged, and nothing answered with an error is written.

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use super::tests::{append_numbered, batch, idempotent_batch, numbered, open, read_all, topic};
use super::*;
use crate::api::errors::log_error_code;
use crate::config::TimestampType;
use crate::io::direct_file::tests::{TestDir, run_in_executor};
use crate::io::faults::tests::FaultPlan;
use crate::io::faults::{self, Fault, FileOp};
use crate::protocol::ErrorCode;

fn install(plan: &Rc<FaultPlan>) {
    faults::install(Some(plan.clone() as Rc<dyn faults::FaultInjector>));
}

/// The seed of the randomized test: `SPATE_TEST_SEED` replays a run.
fn seed() -> u64 {
    std::env::var("SPATE_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5eed_f00d)
}

/// Appends `batches` (first value, records) and waits for each: the waiters that failed with
/// NoSpace, and (checked for every outcome) that a batch was acknowledged exactly when the high
/// watermark covers it and not dropped.
async fn append_and_wait(log: &PartitionLog, batches: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let outcomes: Vec<AppendOutcome> = batches
        .iter()
        .map(|&(first, records)| log.append_batch(batch(first, records), 0).unwrap())
        .collect();
    let mut refused = Vec::new();
    for (outcome, &sent) in outcomes.iter().zip(batches) {
        match log.wait_written(outcome).await {
            Ok(()) => assert!(log.high_watermark() >= outcome.end_offset()),
            Err(error) => {
                assert!(matches!(error, LogError::NoSpace(_)), "{error}");
                assert_eq!(log_error_code(&error), ErrorCode::KafkaStorageError);
                let durable = log.wait_durable(outcome).await.unwrap_err();
                assert!(matches!(durable, LogError::NoSpace(_)), "{durable}");
                refused.push(sent);
            }
        }
    }
    refused
}

#[test]
fn enospc_drops_the_unwritten_batches_and_a_retry_appends_once() {
    // Proves a full disk (ENOSPC on the write, then on a new segment's preallocation) never
    // writes a batch whose waiter got the error: every refused waiter gets NoSpace
    // (KAFKA_STORAGE_ERROR at the API), the log end goes back to the high watermark, reads of
    // acknowledged data keep working (from disk: the cache forgot the dropped batches), and when
    // the refused batches are sent again once space returns, each record is in the log exactly
    // once, gap-free, also after a reopen. On main the refused batches stayed pending and landed
    // beside their retries.
    let dir = TestDir::new("log-enospc");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(1);
        install(&plan);
        let config = topic(64 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 1 << 20).await;
        append_numbered(&log, 50).await;
        for op in [FileOp::Write, FileOp::Allocate] {
            let acked = log.high_watermark() as u64;
            plan.always(op, Some(Fault::Errno(libc::ENOSPC)));
            // More than a segment: the log rolls, and the new file must be allocated.
            let batches: Vec<(u64, u64)> = (0..1500).map(|i| (acked + i, 1)).collect();
            let mut refused = append_and_wait(&log, &batches).await;
            assert!(!refused.is_empty(), "{op:?} refused nothing");
            let high_watermark = log.high_watermark();
            assert_eq!(log.log_end_offset(), high_watermark);
            assert_eq!(log.pending_bytes(), 0);
            assert_eq!(
                read_all(&log, 0, 1 << 16).await,
                numbered(0..high_watermark as u64)
            );
            // Still full: the retries are refused too, and dropped as well.
            refused = append_and_wait(&log, &refused).await;
            assert!(!refused.is_empty());
            assert_eq!(log.log_end_offset(), high_watermark);
            plan.always(op, None);
            assert!(append_and_wait(&log, &refused).await.is_empty());
            assert_eq!(log.high_watermark() as u64, acked + 1500);
        }
        let total = log.high_watermark() as u64;
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..total));
        drop(log);
        faults::install(None);
        let log = open(&path, config, 0).await;
        assert_eq!(log.high_watermark() as u64, total);
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..total));
        log.close().await.unwrap();
    });
}

#[test]
fn a_dropped_batch_stays_failed_when_later_batches_reuse_its_offsets() {
    // Proves the waiter of a dropped batch learns it was dropped even if it only starts waiting
    // after other batches took the same offsets and were written (the high watermark alone
    // would say "written").
    let dir = TestDir::new("log-enospc-reuse");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(5);
        install(&plan);
        let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 1 << 20).await;
        let acked = append_numbered(&log, 5).await;
        plan.at(FileOp::Write, 0, Fault::Errno(libc::ENOSPC));
        let dropped = log.append_batch(batch(acked, 2), 0).unwrap();
        while log.log_end_offset() != acked as i64 {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let written = log.append_batch(batch(acked, 2), 0).unwrap();
        assert_eq!(written.base_offset, dropped.base_offset);
        log.wait_written(&written).await.unwrap();
        assert!(log.high_watermark() >= dropped.end_offset());
        let error = log.wait_written(&dropped).await.unwrap_err();
        assert!(matches!(error, LogError::NoSpace(_)), "{error}");
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..acked + 2));
        log.close().await.unwrap();
    });
}

#[test]
fn an_idempotent_retry_of_a_dropped_batch_is_appended_not_a_duplicate() {
    // Proves the producer state goes back with a drop: the retry of a dropped idempotent batch
    // is appended (at the offsets it had), while a retry of a written one is still answered as a
    // duplicate, and the sequence expected next follows the written batches.
    let dir = TestDir::new("log-enospc-idempotent");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(6);
        install(&plan);
        let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 1 << 20).await;
        let first = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
        log.wait_written(&first).await.unwrap();
        plan.at(FileOp::Write, 0, Fault::Errno(libc::ENOSPC));
        let second = log.append_batch(idempotent_batch(0, 3, 2), 0).unwrap();
        let third = log.append_batch(idempotent_batch(0, 5, 1), 0).unwrap();
        for outcome in [&second, &third] {
            let error = log.wait_written(outcome).await.unwrap_err();
            assert!(matches!(error, LogError::NoSpace(_)), "{error}");
        }
        assert_eq!(log.log_end_offset(), 3);
        // Sequence 5 would be out of order now: 3 is the next one expected.
        assert!(matches!(
            log.append_batch(idempotent_batch(0, 5, 1), 0),
            Err(LogError::OutOfOrderSequence { expected: 3, .. })
        ));
        let retry = log.append_batch(idempotent_batch(0, 3, 2), 0).unwrap();
        assert!(!retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (3, 4));
        log.wait_written(&retry).await.unwrap();
        let again = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.base_offset, 0);
        log.wait_written(&again).await.unwrap();
        assert_eq!(log.high_watermark(), 5);
        log.close().await.unwrap();
    });
}

#[test]
fn eio_on_write_or_fdatasync_poisons_and_never_acknowledges() {
    // Proves EIO on a write poisons the partition before the batch is acknowledged (the waiter
    // gets Poisoned, the high watermark does not move, the batch is not on disk after a
    // reopen), and EIO on the fdatasync of an acks=all batch poisons it too (never retried).
    let dir = TestDir::new("log-eio");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(2);
        install(&plan);
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let acked = append_numbered(&log, 20).await as i64;
        plan.at(FileOp::Write, 0, Fault::Errno(libc::EIO));
        let outcome = log.append_batch(batch(acked as u64, 3), 0).unwrap();
        let error = log.wait_written(&outcome).await.unwrap_err();
        assert!(matches!(error, LogError::Poisoned(_)), "{error}");
        assert_eq!(log_error_code(&error), ErrorCode::KafkaStorageError);
        assert_eq!(log.high_watermark(), acked);
        drop(log);
        let log = open(&path, config.clone(), 0).await;
        assert_eq!(log.high_watermark(), acked);
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..acked as u64));

        plan.at(FileOp::Fdatasync, 0, Fault::Errno(libc::EIO));
        let outcome = log.append_batch(batch(acked as u64, 2), 0).unwrap();
        let error = log.wait_durable(&outcome).await.unwrap_err();
        assert!(matches!(error, LogError::Poisoned(_)), "{error}");
        assert!(log.durable_offset.get() < outcome.end_offset());
        assert!(matches!(
            log.append_batch(batch(0, 1), 0),
            Err(LogError::Poisoned(_))
        ));
        drop(log);
        faults::install(None);
        let log = open(&path, config, 0).await;
        assert!(log.high_watermark() >= acked);
        let recovered = log.high_watermark() as u64;
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..recovered));
        log.close().await.unwrap();
    });
}

#[test]
fn a_short_write_poisons_and_recovery_keeps_only_whole_batches() {
    // Proves a short write (the device took only part of the buffer) is never acknowledged:
    // the partition is poisoned, and the reopened log holds the acknowledged batches plus at most
    // the unacknowledged whole batches the partial write did store, in order, without gaps.
    let dir = TestDir::new("log-short-write");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(3);
        install(&plan);
        let config = topic(1 << 30, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let acked = append_numbered(&log, 30).await;
        plan.at(FileOp::Write, 0, Fault::ShortWrite);
        // Sequenced together: one write of many blocks, of which half reach the file.
        let mut last = None;
        let mut value = acked;
        for _ in 0..400 {
            last = Some(log.append_batch(batch(value, 2), 0).unwrap());
            value += 2;
        }
        let error = log.wait_written(&last.unwrap()).await.unwrap_err();
        assert!(matches!(error, LogError::Poisoned(_)), "{error}");
        assert_eq!(log.high_watermark(), acked as i64);
        drop(log);
        faults::install(None);
        let log = open(&path, config, 0).await;
        let recovered = log.high_watermark() as u64;
        assert!((acked..value).contains(&recovered), "{recovered}");
        assert!(
            recovered > acked,
            "half the write's blocks hold whole batches"
        );
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..recovered));
        log.close().await.unwrap();
    });
}

#[test]
fn slow_writes_delay_acknowledgements_but_not_reads() {
    // Proves a slow device only slows acknowledgements: while every write stalls, reads of
    // written data answer at once, and every delayed batch is acknowledged in the end.
    let dir = TestDir::new("log-slow");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(4);
        install(&plan);
        let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 0).await;
        let acked = append_numbered(&log, 20).await;
        plan.always(FileOp::Write, Some(Fault::Delay(Duration::from_secs(3))));
        let outcome = log.append_batch(batch(acked, 1), 0).unwrap();
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_written(&outcome).await })
        };
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..acked));
        // The reads finished while the write was still stalled.
        assert_eq!(log.high_watermark(), acked as i64);
        waiter.await.unwrap();
        plan.always(FileOp::Write, None);
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..acked + 1));
        log.close().await.unwrap();
    });
}

#[test]
fn seeded_random_faults_never_lose_or_invent_acknowledged_records() {
    // Proves the promise under a deterministic storm (seed printed; SPATE_TEST_SEED replays):
    // writes and fdatasyncs fail at random with ENOSPC (the batch is sent again until it is
    // taken, as a client retries) and then EIO (poisoning), with acks=1 and acks=all waits
    // mixed; after a reopen every acknowledged record is at its offset, and the log is a
    // gap-free prefix of what was sent, each record once.
    let seed = seed();
    eprintln!("fault seed {seed}");
    let dir = TestDir::new("log-random-faults");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(seed);
        install(&plan);
        let config = topic(64 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let mut acked_end = 0i64;
        let mut value = 0u64;
        let mut errors = 0;
        for round in 0..2 {
            // ENOSPC on writes only: a failed fdatasync poisons whatever its errno.
            if round == 0 {
                plan.random(Some(libc::ENOSPC), 5, &[FileOp::Write]);
            } else {
                plan.random(Some(libc::EIO), 8, &[FileOp::Write, FileOp::Fdatasync]);
            }
            let appends = if round == 0 { 40 } else { 300 };
            let mut poisoned = false;
            for i in 0..appends {
                let outcome = match log.append_batch(batch(value, i % 3 + 1), 0) {
                    Ok(outcome) => outcome,
                    Err(LogError::Poisoned(_)) => break,
                    Err(error) => panic!("{error}"),
                };
                let waited = if i % 2 == 0 {
                    log.wait_written(&outcome).await
                } else {
                    log.wait_durable(&outcome).await
                };
                match waited {
                    Ok(()) => {
                        assert!(log.high_watermark() >= outcome.end_offset());
                        acked_end = outcome.end_offset();
                        value += i % 3 + 1;
                    }
                    // Dropped: the same records go again with the next append.
                    Err(LogError::NoSpace(_)) if round == 0 => errors += 1,
                    Err(LogError::Poisoned(_)) if round == 1 => {
                        errors += 1;
                        value += i % 3 + 1;
                        poisoned = true;
                    }
                    Err(error) => panic!("round {round}: {error}"),
                }
                if poisoned {
                    break;
                }
            }
            if round == 0 {
                plan.random(None, 1, &[]);
            }
        }
        assert!(errors > 0, "the seed injected no fault");
        drop(log);
        faults::install(None);
        let log = open(&path, config, 0).await;
        let recovered = log.high_watermark();
        assert!(
            recovered >= acked_end,
            "{recovered} < acknowledged {acked_end}"
        );
        assert!(recovered as u64 <= value);
        assert_eq!(
            read_all(&log, 0, 1 << 16).await,
            numbered(0..recovered as u64)
        );
        log.close().await.unwrap();
    });
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallFilesystem {
    path: std::path::PathBuf,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `size_bytes` at `path`, or says why it cannot.
    fn mount(path: &Path, size_bytes: u64) -> Result<SmallFilesystem, String> {
        std::fs::create_dir_all(path).map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("running mount: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(SmallFilesystem {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        // Lazy: the kernel may still hold the files for a moment after the executor's io_uring
        // is torn down, and a plain umount would then fail with EBUSY and leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_real_full_filesystem_fails_produce_and_heals_when_space_returns() {
    // Proves the ENOSPC path against a real full filesystem (a 4 MiB tmpfs; O_DIRECT on tmpfs
    // needs Linux 6.6+): appends are refused with NoSpace once the disk fills, the refused batch
    // is dropped (the log end goes back), acknowledged data stays readable, and once a file is
    // deleted to make room the batch sent again is written once, at the offsets it had.
    let dir = TestDir::new("log-real-enospc");
    let mount_path = dir.path.join("small");
    let filesystem = match SmallFilesystem::mount(&mount_path, 4 << 20) {
        Ok(filesystem) => filesystem,
        Err(reason) => {
            eprintln!("skipping the real ENOSPC test: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(mount_path.join("direct-probe"));
    if let Err(error) = direct {
        eprintln!("skipping the real ENOSPC test: no O_DIRECT on tmpfs here ({error})");
        return;
    }
    crate::io::probe::write_probe_file(&mount_path).unwrap();
    let filler = mount_path.join("filler");
    std::fs::write(&filler, vec![1u8; 2 << 20]).unwrap();
    let path = mount_path.clone();
    run_in_executor(mount_path.clone(), move || async move {
        let config = topic(256 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let value = vec![9u8; 8000];
        let record = || {
            let mut builder = crate::protocol::records::BatchBuilder::new(0);
            builder.push(&crate::protocol::records::Record {
                timestamp_delta: 0,
                key: None,
                value: Some(&value),
                headers: &[],
            });
            builder.finish()
        };
        let mut acked = 0i64;
        let mut refused_end = None;
        for _ in 0..1000 {
            let outcome = log.append_batch(record(), 0).unwrap();
            match log.wait_written(&outcome).await {
                Ok(()) => acked = outcome.end_offset(),
                Err(LogError::NoSpace(_)) => {
                    refused_end = Some(outcome.end_offset());
                    break;
                }
                Err(error) => panic!("{error}"),
            }
        }
        let refused_end = refused_end.expect("the filesystem filled up");
        assert!(acked > 0);
        assert_eq!(log.high_watermark(), acked);
        assert_eq!(log.log_end_offset(), acked);
        let read = log.read(0, 1 << 20).await.unwrap();
        assert!(!read.is_empty());
        std::fs::remove_file(&filler).unwrap();
        let retry = log.append_batch(record(), 0).unwrap();
        assert_eq!(retry.end_offset(), refused_end);
        log.wait_durable(&retry).await.unwrap();
        assert_eq!(log.high_watermark(), refused_end);
        log.close().await.unwrap();
        drop(log);
        let log = open(&path, config, 0).await;
        assert_eq!(log.high_watermark(), refused_end);
        log.close().await.unwrap();
    });
    drop(filesystem);
}

/// This process's open files under `dir` whose name was deleted.
fn deleted_but_open(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with(&prefix) && target.ends_with(" (deleted)"))
        .collect()
}

#[test]
fn retention_under_a_read_in_flight_finishes_it_then_frees_the_file() {
    // Proves deleting segments is safe and gives their space back without any fdatasync asked
    // for (acks=1 only): a read already holding the oldest segment's file when retention deletes
    // it finishes with the right, CRC-checked records (the open file outlives its name), a read
    // of that offset afterwards is out of range, and once the read is done no deleted segment
    // file stays open (before the fix, every rolled segment stayed open until an acks=all sync).
    let dir = TestDir::new("log-retention-read");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(7);
        install(&plan);
        let config = topic(16 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let total = append_numbered(&log, 2000).await;
        // Let the writer finish the last roll.
        glommio::timer::sleep(Duration::from_millis(50)).await;
        plan.at(FileOp::Read, 0, Fault::Delay(Duration::from_millis(300)));
        let reader = {
            let log = log.clone();
            glommio::spawn_local(async move { log.read(0, 4096).await })
        };
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let mut retained = config;
        retained.retention_bytes = 32 * 1024;
        log.set_config(retained);
        assert!(log.enforce_retention(0).await.unwrap() > 0);
        let log_start = log.log_start_offset();
        assert!(log_start > 0);
        let batches = reader.await.unwrap();
        let joined = Bytes::from(batches.concat());
        let mut values = Vec::new();
        for batch in crate::protocol::record_batch::BatchIter::new(joined) {
            let batch = batch.unwrap();
            let header = record_batch::validate(&batch).unwrap();
            let records = crate::protocol::records::RecordIter::new(
                batch.slice(record_batch::RECORD_BATCH_HEADER_BYTES..),
                header.records_count.get(),
            );
            for record in records {
                let value = record.unwrap().value.unwrap();
                values.push(String::from_utf8(value.to_vec()).unwrap());
            }
        }
        assert!(!values.is_empty());
        assert_eq!(values, numbered(0..values.len() as u64));
        assert!(matches!(
            log.read(0, 4096).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            read_all(&log, log_start, 1 << 16).await,
            numbered(log_start as u64..total)
        );
        // A dropped file is closed by the reactor's next I/O cycle.
        let mut held = deleted_but_open(&path);
        for _ in 0..100 {
            if held.is_empty() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
            held = deleted_but_open(&path);
        }
        assert!(held.is_empty(), "deleted but open: {held:?}");
        log.close().await.unwrap();
    });
}
