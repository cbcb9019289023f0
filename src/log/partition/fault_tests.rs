//! Faults below the log, injected through `io::faults` (and one real full disk): ENOSPC fails the
//! waiters and heals by itself, EIO and short writes poison, slow writes only slow, and in every
//! case nothing acknowledged is lost and nothing unwritten is acknowledged.

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use super::tests::{append_numbered, batch, numbered, open, read_all, topic};
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

#[test]
fn enospc_fails_waiters_keeps_acknowledged_data_and_heals() {
    // Proves a full disk (ENOSPC on the write, then on a new segment's preallocation): the
    // waiters get NoSpace (KAFKA_STORAGE_ERROR at the API), the high watermark stays below the
    // refused batches, reads of acknowledged data keep working, and once space returns the same
    // batches are written without any new call, so later waits succeed and a reopen finds
    // every record at its offset.
    let dir = TestDir::new("log-enospc");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let plan = FaultPlan::new(1);
        install(&plan);
        let config = topic(64 * 1024, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        append_numbered(&log, 50).await;
        for op in [FileOp::Write, FileOp::Allocate] {
            plan.always(op, Some(Fault::Errno(libc::ENOSPC)));
            let first = log.log_end_offset() as u64;
            let mut end = 0;
            // More than a segment: the log rolls, and the new file must be allocated.
            for i in 0..1500 {
                end = log
                    .append_batch(batch(first + i, 1), 0)
                    .unwrap()
                    .end_offset();
            }
            let error = log.wait_written(end).await.unwrap_err();
            assert!(matches!(error, LogError::NoSpace(_)), "{op:?}: {error}");
            assert_eq!(log_error_code(&error), ErrorCode::KafkaStorageError);
            assert!(log.high_watermark() < end);
            let error = log.wait_durable(end).await.unwrap_err();
            assert!(matches!(error, LogError::NoSpace(_)), "{op:?}: {error}");
            assert_eq!(read_all(&log, 0, 1 << 16).await[..50], numbered(0..50));
            plan.always(op, None);
            log.wait_durable(end).await.unwrap();
            assert_eq!(log.high_watermark(), end);
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
        let error = log.wait_written(outcome.end_offset()).await.unwrap_err();
        assert!(matches!(error, LogError::Poisoned(_)), "{error}");
        assert_eq!(log_error_code(&error), ErrorCode::KafkaStorageError);
        assert_eq!(log.high_watermark(), acked);
        drop(log);
        let log = open(&path, config.clone(), 0).await;
        assert_eq!(log.high_watermark(), acked);
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..acked as u64));

        plan.at(FileOp::Fdatasync, 0, Fault::Errno(libc::EIO));
        let outcome = log.append_batch(batch(acked as u64, 2), 0).unwrap();
        let error = log.wait_durable(outcome.end_offset()).await.unwrap_err();
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
        let mut end = 0;
        let mut value = acked;
        for _ in 0..400 {
            end = log.append_batch(batch(value, 2), 0).unwrap().end_offset();
            value += 2;
        }
        let error = log.wait_written(end).await.unwrap_err();
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
            glommio::spawn_local(async move { log.wait_written(outcome.end_offset()).await })
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
    // writes and fdatasyncs fail at random with ENOSPC (retried) and then EIO (poisoning), with
    // acks=1 and acks=all waits mixed; after a reopen every acknowledged record is at its
    // offset, and the log is a gap-free prefix of what was sequenced.
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
            for i in 0..appends {
                let outcome = match log.append_batch(batch(value, i % 3 + 1), 0) {
                    Ok(outcome) => outcome,
                    Err(LogError::Poisoned(_)) => break,
                    Err(error) => panic!("{error}"),
                };
                value += i % 3 + 1;
                let waited = if i % 2 == 0 {
                    log.wait_written(outcome.end_offset()).await
                } else {
                    log.wait_durable(outcome.end_offset()).await
                };
                match waited {
                    Ok(()) => {
                        assert!(log.high_watermark() >= outcome.end_offset());
                        acked_end = outcome.end_offset();
                    }
                    Err(LogError::NoSpace(_)) if round == 0 => errors += 1,
                    Err(LogError::Poisoned(_)) if round == 1 => {
                        errors += 1;
                        break;
                    }
                    Err(error) => panic!("round {round}: {error}"),
                }
            }
            if round == 0 {
                plan.random(None, 1, &[]);
                log.wait_written(log.log_end_offset()).await.unwrap();
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
    // needs Linux 6.6+): appends are refused with NoSpace once the disk fills, acknowledged data
    // stays readable, and deleting a file to make room lets the same writes through unaided.
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
        let mut acked = 0i64;
        let mut refused_end = None;
        for _ in 0..1000 {
            let mut builder = crate::protocol::records::BatchBuilder::new(0);
            builder.push(&crate::protocol::records::Record {
                timestamp_delta: 0,
                key: None,
                value: Some(&value),
                headers: &[],
            });
            let outcome = log.append_batch(builder.finish(), 0).unwrap();
            match log.wait_written(outcome.end_offset()).await {
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
        let read = log.read(0, 1 << 20).await.unwrap();
        assert!(!read.is_empty());
        std::fs::remove_file(&filler).unwrap();
        log.wait_durable(refused_end).await.unwrap();
        assert_eq!(log.high_watermark(), refused_end);
        log.close().await.unwrap();
        drop(log);
        let log = open(&path, config, 0).await;
        assert_eq!(log.high_watermark(), refused_end);
        log.close().await.unwrap();
    });
    drop(filesystem);
}
