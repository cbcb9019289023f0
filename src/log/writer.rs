//! The writer: one local task per partition that turns pending batches into O_DIRECT writes.
//!
//! It sleeps until `append_batch` signals work, then takes *all* pending batches of the active
//! segment (up to `WRITE_BYTES_MAX`) into one write: batches sequenced while that write is in
//! flight wait and go out together in the next one (group commit). When the pending batches move
//! to a new segment it rolls: trims the old file to its data, fdatasyncs it, writes its index
//! files, and creates the new file.
//!
//! Guarantees: one write in flight per partition (the `Appender` is owned by this task); the high
//! watermark moves only after the write holding those offsets completed, and waiters are woken
//! then. ENOSPC: the waiters get `LogError::NoSpace` and the same write (or roll) is retried every
//! `NO_SPACE_RETRY_INTERVAL` until it succeeds or the log closes; any other write failure, and
//! any failed fdatasync, poisons the partition and the task ends.
//! The task holds only a weak reference between writes, so dropping the log ends it. Every
//! `CHECKPOINT_INTERVAL_BYTES` of the active segment it records a recovery checkpoint (see
//! `checkpoint`) in a task of its own, one at a time: the checkpoint's fdatasync and file writes
//! take milliseconds, and waiting for them here stalled the partition's acknowledgements (they
//! were most of the produce p99 at half the peak rate).

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::io::DirectFile;

use super::appender::Appender;
use super::checkpoint::{CHECKPOINT_FILE_NAME, CHECKPOINT_INTERVAL_BYTES, Checkpoint};
use super::error::LogError;
use super::partition::{PartitionLog, PendingBatch, WRITE_BYTES_MAX};
use super::segment::{self, Segment};
use super::shutdown_marker::ShutdownMarker;
use super::signal::Signal;

/// How long the writer waits before retrying a write that failed with ENOSPC.
pub const NO_SPACE_RETRY_INTERVAL: Duration = Duration::from_millis(500);

enum Next {
    Idle,
    Write(Vec<PendingBatch>),
    Roll(Rc<Segment>),
}

/// The writer task's body.
pub(super) async fn run(
    log: Weak<PartitionLog>,
    work: Rc<Signal>,
    mut appender: Appender,
    mut segment: Rc<Segment>,
) {
    let mut next_checkpoint_bytes = segment.written_bytes() + CHECKPOINT_INTERVAL_BYTES;
    let checkpoint_in_flight = Rc::new(Cell::new(false));
    loop {
        let listener = work.listen();
        let Some(log) = log.upgrade() else {
            return;
        };
        if log.poison.borrow().is_some() {
            break;
        }
        match take_next(&log, &segment) {
            Next::Idle if log.closing.get() => break,
            Next::Idle => {
                drop(log);
                listener.await;
            }
            Next::Write(batches) => {
                let checkpoint = checkpoint_due(&log, &segment, next_checkpoint_bytes)
                    .filter(|_| !checkpoint_in_flight.get());
                write(&log, &mut appender, &segment, batches).await;
                if let Some(checkpoint) = checkpoint {
                    next_checkpoint_bytes =
                        checkpoint.marker.active_size_bytes + CHECKPOINT_INTERVAL_BYTES;
                    checkpoint_in_flight.set(true);
                    let in_flight = Rc::clone(&checkpoint_in_flight);
                    let file = Rc::clone(appender.file());
                    let log = Rc::clone(&log);
                    glommio::spawn_local(async move {
                        record_checkpoint(&log, &file, checkpoint).await;
                        in_flight.set(false);
                    })
                    .detach();
                }
            }
            Next::Roll(next) => match roll(&appender, &segment, &next, &log).await {
                Ok(next_appender) => {
                    appender = next_appender;
                    segment = next;
                    next_checkpoint_bytes = CHECKPOINT_INTERVAL_BYTES;
                }
                Err(error @ LogError::NoSpace(_)) => {
                    // Every step of a roll can be redone, so it is retried like a write.
                    report_failure(&log, error);
                    if log.closing.get() {
                        log.poison_with("closed while the disk was full".to_owned());
                    } else {
                        glommio::timer::sleep(NO_SPACE_RETRY_INTERVAL).await;
                    }
                }
                Err(error) => log.poison_with(format!("segment roll failed: {error}")),
            },
        }
    }
    if let Some(log) = log.upgrade() {
        log.writer_done.set(true);
        log.durable.notify();
        log.watermark.notify();
    }
}

/// The pending batches of `segment` for the next write, a roll when they belong to a newer
/// segment, or idle.
fn take_next(log: &PartitionLog, segment: &Rc<Segment>) -> Next {
    let mut pending = log.pending.borrow_mut();
    let Some(first) = pending.front() else {
        return Next::Idle;
    };
    if !Rc::ptr_eq(&first.segment, segment) {
        return Next::Roll(first.segment.clone());
    }
    let mut batches = Vec::new();
    let mut total_bytes = 0;
    while let Some(next) = pending.front() {
        let fits = batches.is_empty() || total_bytes + next.batch.len() <= WRITE_BYTES_MAX;
        if !Rc::ptr_eq(&next.segment, segment) || !fits {
            break;
        }
        total_bytes += next.batch.len();
        batches.push(pending.pop_front().expect("front checked"));
    }
    log.pending_bytes.set(log.pending_bytes.get() - total_bytes);
    Next::Write(batches)
}

/// Writes `batches` and publishes them (segment size, high watermark), retrying on ENOSPC.
async fn write(
    log: &PartitionLog,
    appender: &mut Appender,
    segment: &Segment,
    batches: Vec<PendingBatch>,
) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(batches.len() * 2);
    for pending in &batches {
        pending.batch.push_chunks(&mut chunks);
    }
    let end_offset = batches.last().expect("a write has batches").end_offset;
    loop {
        match appender.append(&chunks).await {
            Ok(logical_size_bytes) => {
                segment.set_written_bytes(logical_size_bytes);
                let mut stats = log.stats.get();
                stats.writes += 1;
                stats.batch_bytes_written += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                log.stats.set(stats);
                note_unsynced(log, appender.file());
                assert!(
                    end_offset > log.high_watermark.get(),
                    "high watermark only grows"
                );
                log.high_watermark.set(end_offset);
                log.watermark.notify();
                return;
            }
            Err(error) => {
                let error = LogError::from_io(&error);
                if !matches!(error, LogError::NoSpace(_)) {
                    log.poison_with(format!("write failed: {error}"));
                    return;
                }
                report_failure(log, error);
                if log.closing.get() {
                    // Nothing will free space for a closing log: give the batches up (they were
                    // never acknowledged) and leave no clean-shutdown marker that counts them.
                    log.poison_with("closed while the disk was full".to_owned());
                    return;
                }
                glommio::timer::sleep(NO_SPACE_RETRY_INTERVAL).await;
                if log.poison.borrow().is_some() {
                    return;
                }
            }
        }
    }
}

/// A checkpoint snapshot when one is due: the active segment reached `due_bytes` and nothing is
/// pending beyond the write just taken, so the producer state matches the sequenced prefix.
/// Taken synchronously, before the write is awaited.
fn checkpoint_due(log: &PartitionLog, segment: &Segment, due_bytes: u64) -> Option<Checkpoint> {
    if segment.sequenced_bytes() < due_bytes || !log.pending.borrow().is_empty() {
        return None;
    }
    let (index, time_index) = segment.indexes();
    Some(Checkpoint {
        marker: ShutdownMarker {
            log_end_offset: segment.next_offset(),
            active_base_offset: segment.base_offset(),
            active_size_bytes: segment.sequenced_bytes(),
            producers: log.producers.borrow().clone(),
        },
        index,
        time_index,
    })
}

/// Makes the snapshot's prefix durable (fdatasync) and records it. Does nothing if its write
/// failed. A failed fdatasync poisons; a failed checkpoint write only costs a longer scan.
async fn record_checkpoint(log: &PartitionLog, file: &Rc<DirectFile>, checkpoint: Checkpoint) {
    let written = log.high_watermark.get() >= checkpoint.marker.log_end_offset;
    if !written || log.poison.borrow().is_some() {
        return;
    }
    if let Err(error) = file.fdatasync().await {
        log.poison_with(format!(
            "fdatasync of {} failed: {error}",
            file.path().display()
        ));
        return;
    }
    let path = log.dir.join(CHECKPOINT_FILE_NAME);
    let bytes = checkpoint.encode();
    let written = glommio::executor()
        .spawn_blocking(move || segment::write_file_atomically(&path, &bytes))
        .await;
    if let Err(error) = written {
        tracing::warn!(dir = %log.dir.display(), %error, "recovery checkpoint not written");
    }
}

/// Fails the current waiters with a retried error (ENOSPC).
fn report_failure(log: &PartitionLog, error: LogError) {
    tracing::warn!(dir = %log.dir.display(), %error, "write failed; retrying");
    *log.last_write_error.borrow_mut() = Some(error);
    log.write_failures.set(log.write_failures.get() + 1);
    log.watermark.notify();
}

/// Remembers that `file` has data the next fdatasync must cover.
fn note_unsynced(log: &PartitionLog, file: &Rc<DirectFile>) {
    let mut unsynced = log.unsynced_files.borrow_mut();
    if !unsynced.iter().any(|known| Rc::ptr_eq(known, file)) {
        unsynced.push(file.clone());
    }
}

/// Finishes `old` (trim to its data, fdatasync, index files) and opens `next`'s new file.
async fn roll(
    appender: &Appender,
    old: &Segment,
    next: &Rc<Segment>,
    log: &PartitionLog,
) -> Result<Appender, LogError> {
    let file = appender.file();
    assert!(appender.logical_size_bytes() == old.sequenced_bytes());
    file.truncate(appender.logical_size_bytes()).await?;
    // A failed fdatasync may have dropped dirty data: never retried, whatever its errno.
    file.fdatasync()
        .await
        .map_err(|error| LogError::Io(error.to_string()))?;
    old.persist_indexes().await?;
    old.seal();
    let next_file = Rc::new(DirectFile::open_or_create(&next.log_path()).await?);
    // The new name must be durable before an acks=all answer relies on the file's fdatasync.
    segment::sync_dir(next.dir()).await?;
    next.set_file(next_file.clone());
    let limit_bytes = log.config.borrow().topic.segment_bytes;
    Ok(Appender::open(next_file, 0, limit_bytes).await?)
}
