//! The shard's retention task: every `--log-retention-check-interval-ms` it asks each partition
//! log it owns to delete the segments `retention.ms` / `retention.bytes` expire, and to forget
//! the idempotent producers idle longer than `--producer-id-expiration-ms`.
//!
//! Guarantees: the task runs in its own low-priority task queue and yields the queue after every
//! partition, so produce and fetch (in the default queue) always run first; deleting a segment's
//! files happens on the blocking pool, never on the executor. Callers must cancel the task before
//! closing the shard's partitions.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::{Latency, Shares};

use crate::log::LogError;

use super::Shard;

/// The retention queue's share of the executor against the default queue's 1000: it gets the
/// CPU when nothing else wants it.
const RETENTION_SHARES: usize = 10;

/// Starts the shard's retention task in a low-priority task queue.
pub fn spawn(shard: &Rc<Shard>) -> Result<glommio::Task<()>, String> {
    let queue = glommio::executor().create_task_queue(
        Shares::Static(RETENTION_SHARES),
        Latency::NotImportant,
        "retention",
    );
    glommio::spawn_local_into(run(Rc::clone(shard)), queue)
        .map_err(|error| format!("starting the retention task: {error}"))
}

async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.log_retention_check_interval_ms.max(1));
    loop {
        glommio::timer::sleep(interval).await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        for log in shard.all_partitions() {
            log.expire_producers(now_ms, shard.config.producer_id_expiration_ms);
            match log.enforce_retention(now_ms).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    dir = %log.dir().display(),
                    deleted,
                    log_start_offset = log.log_start_offset(),
                    "retention deleted segments"
                ),
                // Offline, poisoned or closing logs were reported when that happened.
                Err(LogError::Offline(_) | LogError::Poisoned(_) | LogError::Closed) => {}
                Err(error) => tracing::warn!(
                    dir = %log.dir().display(),
                    %error,
                    "retention failed; retrying at the next check"
                ),
            }
            glommio::executor().yield_task_queue_now().await;
        }
        for replica in shard.all_replicas() {
            if let Err(error) = replica.enforce_retention(now_ms).await {
                tracing::warn!(
                    topic = %replica.topic,
                    partition = replica.partition,
                    %error,
                    "retention of a replicated partition failed; retrying at the next check"
                );
            }
            glommio::executor().yield_task_queue_now().await;
        }
    }
}
