//! Truncation: cutting a log back to any batch boundary, across segments, keeping what is below
//! byte for byte, and surviving a crash at every step of the cut.

use std::rc::Rc;

use super::tests::{append_numbered, batch, idempotent_batch, numbered, open, read_all, topic};
use super::*;
use crate::config::TimestampType;
use crate::io::direct_file::tests::{TestDir, run_in_executor};
use crate::log::truncation::{self, CutStep};

/// Small segments, so a log of a few hundred batches has many.
const SEGMENT_BYTES: u64 = 4096;

/// The base offsets of the batches a log of `count` `append_numbered` batches holds, and its end.
fn boundaries(count: u64) -> Vec<u64> {
    let mut offsets = vec![0];
    for i in 0..count {
        offsets.push(offsets.last().unwrap() + i % 3 + 1);
    }
    offsets
}

/// Copies every file of `from` into `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Writes 200 `append_numbered` batches to a log in `dir` and closes it; the log's end.
async fn closed_log(dir: &Path, config: &TopicConfig) -> u64 {
    let log = PartitionLog::open(
        dir.to_path_buf(),
        config.clone(),
        Rc::new(ShardCache::new(0)),
    )
    .await
    .unwrap();
    let end = append_numbered(&log, 200).await;
    log.close().await.unwrap();
    end
}

#[test]
fn truncation_at_any_boundary_keeps_the_prefix_and_appends_after_it() {
    // Proves truncation across segments: at boundaries in the first segment, at a segment's
    // start, in the active segment and at the very start, the log ends at the offset, reads
    // back exactly the records below it (from disk after the reopen), takes new appends at the
    // offset, and keeps all that across a clean close and reopen.
    let dir = TestDir::new("log-truncate-boundaries");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let offsets = boundaries(300);
        for (round, index) in [0usize, 1, 7, 100, 150, 299, 300].into_iter().enumerate() {
            let cut = offsets[index];
            let log_dir = path.join(format!("round-{round}"));
            let log = open(&log_dir, config.clone(), 1 << 20).await;
            let end = append_numbered(&log, 300).await;
            assert_eq!(end, *offsets.last().unwrap());
            assert!(log.segments.borrow().len() > 5, "many segments");
            let log = log.truncate(cut as i64).await.unwrap();
            assert_eq!(log.log_end_offset(), cut as i64, "cut at {cut}");
            assert_eq!(log.high_watermark(), cut as i64);
            assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..cut));
            let after = append_numbered(&log, 5).await;
            assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..after));
            log.close().await.unwrap();
            drop(log);
            let log = open(&log_dir, config.clone(), 0).await;
            assert_eq!(log.log_end_offset(), after as i64);
            assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..after));
            log.close().await.unwrap();
        }
    });
}

#[test]
fn truncation_refuses_offsets_outside_the_log_and_inside_a_batch() {
    // Proves bad offsets are errors, not damage: beyond the end and below the start are refused
    // with the log still open and untouched; an offset inside a batch is refused before anything
    // is cut, and the log opens again whole.
    let dir = TestDir::new("log-truncate-refusals");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let log = open(&path, config.clone(), 0).await;
        let end = append_numbered(&log, 30).await;
        let error = log.clone().truncate(end as i64 + 1).await.unwrap_err();
        assert!(
            matches!(error, LogError::OffsetOutOfRange { .. }),
            "{error}"
        );
        let error = log.clone().truncate(-1).await.unwrap_err();
        assert!(
            matches!(error, LogError::OffsetOutOfRange { .. }),
            "{error}"
        );
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..end));
        let same = log.clone().truncate(end as i64).await.unwrap();
        assert!(Rc::ptr_eq(&same, &log), "nothing to cut: the same log");
        drop(same);
        // Batch 2 holds offsets 3..6: offset 4 is inside it.
        let error = log.truncate(4).await.unwrap_err();
        assert!(error.to_string().contains("inside the batch"), "{error}");
        let log = open(&path, config, 0).await;
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..end));
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_at_every_step_of_a_cut_leaves_a_prefix_the_next_cut_finishes() {
    // Proves the cut's crash safety: its steps are replayed one by one on a copy of a closed
    // multi-segment log, and after each prefix of steps (a crash right after it) the log opens
    // holding a prefix of the original, never shorter than the target and never with a hole;
    // truncating that log again ends exactly at the target.
    let dir = TestDir::new("log-truncate-crash");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let original_dir = path.join("original");
        let end = closed_log(&original_dir, &config).await;
        let offsets = boundaries(200);
        for target in [offsets[40], offsets[120], offsets[199]] {
            let copy = path.join("copy");
            copy_dir(&original_dir, &copy);
            let steps = truncation::plan_cut(&copy, target as i64).unwrap();
            assert!(
                steps
                    .iter()
                    .any(|step| matches!(step, CutStep::Shorten { .. })),
                "{steps:?}"
            );
            for done in 0..=steps.len() {
                copy_dir(&original_dir, &copy);
                for step in &steps[..done] {
                    truncation::run_step(step).unwrap();
                }
                let log =
                    PartitionLog::open(copy.clone(), config.clone(), Rc::new(ShardCache::new(0)))
                        .await
                        .unwrap();
                let kept = log.log_end_offset() as u64;
                assert!(kept >= target && kept <= end, "{done} steps: end {kept}");
                assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..kept));
                let log = log.truncate(target as i64).await.unwrap();
                assert_eq!(log.log_end_offset(), target as i64, "{done} steps");
                assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..target));
                log.close().await.unwrap();
            }
        }
    });
}

#[test]
fn unwritten_batches_are_cut_too() {
    // Proves a truncation right after appends (batches still pending in the writer) cuts them
    // like written ones: the close writes them, the cut removes them.
    let dir = TestDir::new("log-truncate-pending");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let log = open(&path, config, 1 << 20).await;
        let end = append_numbered(&log, 10).await;
        for i in 0..10u64 {
            log.append_batch(batch(end + i, 1), 0).unwrap();
        }
        let log = log.truncate(end as i64 + 3).await.unwrap();
        assert_eq!(read_all(&log, 0, 1 << 16).await, numbered(0..end + 3));
        log.close().await.unwrap();
    });
}

#[test]
fn idempotent_producer_state_follows_the_cut() {
    // Proves the producer state is rebuilt from what the cut kept: a retry of a kept batch is
    // still a duplicate, while the batches the cut removed are appended again when retried (the
    // producer's sequence goes on from the last kept batch).
    let dir = TestDir::new("log-truncate-producers");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let log = open(&path, config, 0).await;
        let mut last = None;
        for sequence in 0..40 {
            last = Some(
                log.append_batch(idempotent_batch(0, sequence, 1), 0)
                    .unwrap(),
            );
        }
        log.wait_written(&last.unwrap()).await.unwrap();
        let log = log.truncate(30).await.unwrap();
        let retry_kept = log.append_batch(idempotent_batch(0, 29, 1), 0).unwrap();
        assert!(retry_kept.duplicate);
        assert_eq!(retry_kept.base_offset, 29);
        let retry_cut = log.append_batch(idempotent_batch(0, 30, 1), 0).unwrap();
        assert!(!retry_cut.duplicate);
        assert_eq!(retry_cut.base_offset, 30);
        let gap = log.append_batch(idempotent_batch(0, 35, 1), 0);
        assert!(
            matches!(gap, Err(LogError::OutOfOrderSequence { .. })),
            "{gap:?}"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn emptying_a_log_starts_it_at_any_offset() {
    // Proves Kafka's truncate-fully-and-start-at: at offsets below the log start, inside the
    // log, at its end and beyond it, the log comes back empty with its start and end at the
    // offset, holds a single segment file, takes appends from there, and keeps all that
    // across a close and reopen.
    let dir = TestDir::new("log-truncate-fully");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        for (round, target) in [0i64, 5, 150, 0, 10_000].into_iter().enumerate() {
            let log_dir = path.join(format!("round-{round}"));
            let log = open(&log_dir, config.clone(), 1 << 20).await;
            let end = append_numbered(&log, 120).await as i64;
            let target = if round == 3 { end } else { target };
            if round == 1 {
                log.delete_records(30).await.unwrap();
            }
            let log = log.truncate_fully(target).await.unwrap();
            assert_eq!(log.log_start_offset(), target, "round {round}");
            assert_eq!(log.log_end_offset(), target, "round {round}");
            assert_eq!(read_all(&log, target, 1 << 16).await, Vec::<String>::new());
            let segments: Vec<_> = std::fs::read_dir(log.dir())
                .unwrap()
                .filter_map(|entry| {
                    crate::log::segment::parse_log_file_name(
                        &entry.unwrap().file_name().to_string_lossy(),
                    )
                })
                .collect();
            assert_eq!(segments, vec![target], "round {round}");
            let after = append_numbered(&log, 5).await;
            assert_eq!(
                read_all(&log, target, 1 << 16).await,
                numbered(target as u64..after)
            );
            log.close().await.unwrap();
            drop(log);
            let log = open(&log_dir, config.clone(), 0).await;
            assert_eq!(log.log_start_offset(), target);
            assert_eq!(log.log_end_offset(), after as i64);
            assert_eq!(
                read_all(&log, target, 1 << 16).await,
                numbered(target as u64..after)
            );
            log.close().await.unwrap();
        }
    });
}

#[test]
fn a_crash_at_every_step_of_emptying_a_log_leaves_one_the_next_attempt_finishes() {
    // Proves the reset's crash safety: its steps are replayed one by one on a copy of a closed
    // multi-segment log, and after each prefix of steps the log opens either as the old one
    // (its start perhaps moved up, what it reads still the original records) or empty at the
    // target, never with a hole; emptying it again ends exactly at the target.
    let dir = TestDir::new("log-truncate-fully-crash");
    let path = dir.path.clone();
    run_in_executor(dir.path.clone(), move || async move {
        let config = topic(SEGMENT_BYTES, TimestampType::CreateTime);
        let original_dir = path.join("original");
        let end = closed_log(&original_dir, &config).await;
        let offsets = boundaries(200);
        for target in [offsets[40], offsets[120] + 1, end + 500] {
            let copy = path.join("copy");
            copy_dir(&original_dir, &copy);
            let steps = truncation::plan_restart(&copy, target as i64).unwrap();
            for done in 0..=steps.len() {
                copy_dir(&original_dir, &copy);
                for step in &steps[..done] {
                    truncation::run_step(step).unwrap();
                }
                let log =
                    PartitionLog::open(copy.clone(), config.clone(), Rc::new(ShardCache::new(0)))
                        .await
                        .unwrap();
                let (start, log_end) = (log.log_start_offset(), log.log_end_offset());
                if (start, log_end) != (target as i64, target as i64) {
                    assert!(
                        log_end as u64 <= end && start <= log_end,
                        "{done} steps: {start}..{log_end}"
                    );
                    assert_eq!(
                        read_all(&log, start, 1 << 16).await,
                        numbered(start as u64..log_end as u64),
                        "{done} steps"
                    );
                }
                let log = log.truncate_fully(target as i64).await.unwrap();
                assert_eq!(log.log_start_offset(), target as i64, "{done} steps");
                assert_eq!(log.log_end_offset(), target as i64, "{done} steps");
                let after = append_numbered(&log, 3).await;
                assert_eq!(
                    read_all(&log, target as i64, 1 << 16).await,
                    numbered(target..after)
                );
                log.close().await.unwrap();
            }
        }
    });
}
