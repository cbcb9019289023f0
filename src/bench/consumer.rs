//! A shard's bench consumer: reads its share of the partitions and counts this run's records.
//!
//! In `e2e` it starts at the latest offsets before any producer starts (so it sees every record
//! of the run), reads each record's stamp, skips records of other runs, and records the latency
//! from the intended send time to now. It stops once every producer is done and the run-wide
//! consumed count reaches the acknowledged count, or `DRAIN_WAIT` after the producers finished.
//! In `consume` it starts at the earliest offsets and counts every record; it stops at
//! --records, at the deadline, or after `IDLE_WAIT` without a record.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::{ClientError, Cluster, Consumer, ConsumerConfig, FetchedBatch, StartOffset};

use super::args::BenchModeKind;
use super::payload::Stamp;
use super::shards::{ShardContext, Stats};

/// After the producers finish, how long consumers may take to receive what was acknowledged.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// In `consume`, how long without a record before the topic counts as read to the end.
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// How long a fetch waits for data: short, so stop conditions are checked often.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// Bytes one fetch may return, over all partitions.
const FETCH_BYTES_MAX: i32 = 64 << 20;

/// Bytes one fetch may return per partition, at least: 1 MiB, as Kafka's default.
const PARTITION_FETCH_BYTES_MIN: i32 = 1 << 20;

/// After a failed poll, the pause before the next (errors are counted, not retried in a loop).
const POLL_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Assigns `partitions` and starts the consume loop.
pub async fn start(
    context: &Rc<ShardContext>,
    cluster: &Rc<Cluster>,
    stats: &Stats,
    partitions: &[i32],
) -> Result<glommio::Task<()>, ClientError> {
    let plan = &context.plan;
    let batch_bytes = i32::try_from(plan.args.batch_bytes).unwrap_or(i32::MAX);
    let config = ConsumerConfig {
        max_wait: FETCH_WAIT,
        min_bytes: 1,
        max_bytes: FETCH_BYTES_MAX,
        // Two full batches per partition per fetch, so a partition is never read a batch at a time.
        partition_max_bytes: batch_bytes.saturating_mul(2).max(PARTITION_FETCH_BYTES_MIN),
    };
    let consumer = Consumer::new(Rc::clone(cluster), config);
    let start = match plan.mode {
        BenchModeKind::Consume => StartOffset::Earliest,
        BenchModeKind::E2e | BenchModeKind::Produce => StartOffset::Latest,
    };
    for &partition in partitions {
        consumer.assign(&plan.args.topic, partition, start).await?;
    }
    let task = glommio::spawn_local(consume_loop(Rc::clone(context), consumer, Rc::clone(stats)));
    Ok(task)
}

async fn consume_loop(context: Rc<ShardContext>, consumer: Consumer, stats: Stats) {
    let mut last_record_ns = context.shared.start_ns.load(Ordering::Acquire);
    let mut producers_done_ns: Option<u64> = None;
    loop {
        let now_ns = context.now_ns();
        if should_stop(&context, now_ns, last_record_ns, &mut producers_done_ns) {
            break;
        }
        match consumer.poll().await {
            Ok(batches) => {
                let now_ns = context.now_ns();
                let consumed = count(&context, &stats, &batches, now_ns);
                if consumed > 0 {
                    last_record_ns = now_ns;
                    context
                        .shared
                        .consumed_total
                        .fetch_add(consumed, Ordering::AcqRel);
                }
            }
            Err(error) => {
                {
                    let mut stats = stats.borrow_mut();
                    stats.consumed.errors += 1;
                    stats.note_error(&format!("fetch: {error}"));
                }
                glommio::timer::sleep(POLL_ERROR_PAUSE).await;
            }
        }
        glommio::yield_if_needed().await;
    }
    stats.borrow_mut().consume_end_ns = Some(last_record_ns);
}

/// Whether the consumer is done (see the module comment for the rules).
fn should_stop(
    context: &ShardContext,
    now_ns: u64,
    last_record_ns: u64,
    producers_done_ns: &mut Option<u64>,
) -> bool {
    let shared = &context.shared;
    if shared.abort.load(Ordering::Acquire) {
        return true;
    }
    let plan = &context.plan;
    match plan.mode {
        BenchModeKind::E2e | BenchModeKind::Produce => {
            if !context.producers_done() {
                return false;
            }
            let done_ns = *producers_done_ns.get_or_insert(now_ns);
            let produced = shared.produced_total.load(Ordering::Acquire);
            let consumed = shared.consumed_total.load(Ordering::Acquire);
            consumed >= produced || now_ns - done_ns >= DRAIN_WAIT.as_nanos() as u64
        }
        BenchModeKind::Consume => {
            let start_ns = shared.start_ns.load(Ordering::Acquire);
            let consumed = shared.consumed_total.load(Ordering::Acquire);
            let enough = plan.args.records.is_some_and(|records| consumed >= records);
            let late = plan
                .duration()
                .is_some_and(|d| now_ns >= start_ns + d.as_nanos() as u64);
            let idle = now_ns.saturating_sub(last_record_ns) >= IDLE_WAIT.as_nanos() as u64;
            enough || late || idle
        }
    }
}

/// Counts the records of `batches` (this run's only, in e2e); returns how many.
fn count(context: &ShardContext, stats: &Stats, batches: &[FetchedBatch], now_ns: u64) -> u64 {
    let plan = &context.plan;
    let e2e = plan.mode == BenchModeKind::E2e;
    let mut stats = stats.borrow_mut();
    let mut consumed = 0;
    for fetched in batches {
        // records() skips what an earlier fetch already returned, so each offset counts once.
        let records = match fetched.records() {
            Ok(records) => records,
            Err(error) => {
                stats.consumed.errors += 1;
                stats.note_error(&format!(
                    "batch {}-{}: {error}",
                    fetched.topic, fetched.partition
                ));
                continue;
            }
        };
        for record in &records {
            let value = record.value.as_deref().unwrap_or(&[]);
            if e2e {
                let Some(stamp) = Stamp::read(value).filter(|s| s.run_id == plan.run_id) else {
                    continue;
                };
                stats
                    .e2e_latency
                    .record_ns(now_ns.saturating_sub(stamp.send_time_ns));
            }
            stats.consumed.records += 1;
            stats.consumed.bytes += value.len() as u64;
            consumed += 1;
        }
    }
    consumed
}
