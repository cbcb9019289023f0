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
//! then. ENOSPC on a write or a roll drops every batch not yet written (`drop_unwritten`): their
//! waiters get `LogError::NoSpace`, nothing of them is written later (a client that retries
//! appends the batch once, not twice), and the log end goes back to the high watermark; the
//! writer then pauses `NO_SPACE_RETRY_INTERVAL` before writing what was sequenced since. Any
//! other write failure, and any failed fdatasync, poisons the partition and the task ends.
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

/// How long the writer pauses after a write or roll failed with ENOSPC before it writes the
/// batches sequenced since: while the disk stays full, each partition tries (and logs a failure)
/// at most this often, however fast clients retry.
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
                if !write(&log, &mut appender, &segment, batches).await {
                    pause_after_failure(&log).await;
                } else if let Some(checkpoint) = checkpoint {
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
                    // Every step of a roll can be redone: the next batches roll again.
                    drop_unwritten(&log, &[], error);
                    pause_after_failure(&log).await;
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

/// Writes `batches` and publishes them (segment size, high watermark, written producer state).
/// False when the write failed: ENOSPC dropped them and every later unwritten batch, any other
/// error poisoned the log.
async fn write(
    log: &PartitionLog,
    appender: &mut Appender,
    segment: &Segment,
    batches: Vec<PendingBatch>,
) -> bool {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(batches.len() * 2);
    for pending in &batches {
        pending.batch.push_chunks(&mut chunks);
    }
    let end_offset = batches.last().expect("a write has batches").end_offset;
    let logical_size_bytes = match appender.append(&chunks).await {
        Ok(logical_size_bytes) => logical_size_bytes,
        Err(error) => {
            match LogError::from_io(&error) {
                error @ LogError::NoSpace(_) => drop_unwritten(log, &batches, error),
                error => log.poison_with(format!("write failed: {error}")),
            }
            return false;
        }
    };
    segment.set_written_bytes(logical_size_bytes);
    let mut stats = log.stats.get();
    stats.writes += 1;
    stats.batch_bytes_written += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
    log.stats.set(stats);
    note_unsynced(log, appender.file());
    let mut producers_written = log.producers_written.borrow_mut();
    for pending in batches.iter() {
        if let Some(identity) = &pending.identity {
            let base_offset = pending.end_offset - 1 - i64::from(identity.last_offset_delta);
            producers_written.record(identity, base_offset, pending.max_timestamp_ms);
        }
    }
    drop(producers_written);
    assert!(
        end_offset > log.high_watermark.get(),
        "high watermark only grows"
    );
    log.high_watermark.set(end_offset);
    log.watermark.notify();
    true
}

/// Drops every batch not yet written, after a write or roll failed with ENOSPC: `failed` (the
/// failed write's batches, already taken from `pending`) and all still pending. Their waiters
/// fail with `error`, and nothing of them is written later.
///
/// The log end offset goes back to the high watermark (the end of the last completed write), so
/// the dropped offsets become neither a gap nor a duplicate: the next batch (a client's retry,
/// say) takes the first of them. Nothing written moves: the high watermark and the durable
/// offset never went beyond it. The segment of the first dropped batch rewinds to its state
/// before that batch (segments rolled to after it held only dropped batches and go; it stays,
/// even if empty, as the active segment, and the writer rolls to it again with the next
/// batches). The cache forgets the partition (it held the dropped batches and must stay
/// contiguous; reads below the high watermark go to disk). The producer state goes back to that
/// of the written batches, so an idempotent producer's retry is appended, not answered as a
/// duplicate of a batch that is gone. The appender's in-memory tail block is untouched: a failed
/// append changes nothing, and the next write starts at the same block.
fn drop_unwritten(log: &PartitionLog, failed: &[PendingBatch], error: LogError) {
    let high_watermark = log.high_watermark.get();
    let mut pending = log.pending.borrow_mut();
    let first = failed
        .first()
        .or(pending.front())
        .expect("a failed write or roll has batches");
    let (segment, mark) = (Rc::clone(&first.segment), first.mark);
    let dropped_batches = failed.len() + pending.len();
    pending.clear();
    drop(pending);
    log.pending_bytes.set(0);
    segment.rewind(&mark);
    assert!(
        segment.next_offset() == high_watermark,
        "the first unwritten batch starts at the high watermark"
    );
    {
        let mut segments = log.segments.borrow_mut();
        let kept = segments
            .iter()
            .position(|known| Rc::ptr_eq(known, &segment))
            .expect("an unwritten batch's segment is in the log");
        segments.truncate(kept + 1);
    }
    *log.producers.borrow_mut() = log.producers_written.borrow().clone();
    log.cache.clear(log.cache_key);
    log.log_end_offset.set(high_watermark);
    tracing::warn!(
        dir = %log.dir.display(),
        %error,
        dropped_batches,
        log_end_offset = high_watermark,
        "write failed; unwritten batches dropped"
    );
    let generation = log.tail_generation.replace(Rc::default());
    generation.close(high_watermark, error);
    log.watermark.notify();
}

/// After a failed write or roll: waits `NO_SPACE_RETRY_INTERVAL` unless the log is closing (the
/// writer then finishes at once) or poisoned (it ends).
async fn pause_after_failure(log: &PartitionLog) {
    if !log.closing.get() && log.poison.borrow().is_none() {
        glommio::timer::sleep(NO_SPACE_RETRY_INTERVAL).await;
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
    // All of the old file is durable now, so no acks=all sync needs it any more; and left in the
    // list it would stay open after retention deletes it (its disk space never coming back
    // while producers use acks=0/1, which never sync).
    log.unsynced_files
        .borrow_mut()
        .retain(|unsynced| !Rc::ptr_eq(unsynced, file));
    old.persist_indexes().await?;
    old.seal();
    let next_file = Rc::new(DirectFile::open_or_create(&next.log_path()).await?);
    // The new name must be durable before an acks=all answer relies on the file's fdatasync.
    segment::sync_dir(next.dir()).await?;
    next.set_file(next_file.clone());
    let limit_bytes = log.config.borrow().topic.segment_bytes;
    Ok(Appender::open(next_file, 0, limit_bytes, appender.step_bytes()).await?)
}
