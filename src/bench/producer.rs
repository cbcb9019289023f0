//! One bench producer: a `Producer` client driven on an open-loop schedule, recording each
//! record's acknowledgement latency from its intended send time.
//!
//! Records go to one partition until a batch's worth has been sent, then to the next (Kafka's
//! sticky partitioning), so batches fill at any partition count. The record's tag (and its
//! payload stamp) is its intended send time; the delivery callback turns tags into latencies.
//! The producer stops at its record count or when the next intended time passes the deadline,
//! then flushes, so every record sent is acknowledged or counted as an error.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::{CompressionCodec, DeliveryReport, Producer, ProducerConfig};

use super::args::Compression;
use super::payload::{PayloadPool, Stamp};
use super::rate::Schedule;
use super::shards::{ShardContext, Stats};

/// Runs producer `index` from `start_ns` (ns since the epoch) to the end of its share.
pub async fn run(
    context: Rc<ShardContext>,
    cluster: Rc<crate::client::Cluster>,
    stats: Stats,
    index: u32,
    start_ns: u64,
) {
    let plan = &context.plan;
    let config = ProducerConfig {
        acks: plan.args.acks,
        linger: Duration::from_millis(plan.args.linger_ms),
        batch_bytes: plan.args.batch_bytes as usize,
        compression: codec(plan.args.compression),
        buffer_bytes_max: plan.args.buffer_bytes as usize,
        in_flight_per_connection_max: plan.args.in_flight as usize,
        ..ProducerConfig::default()
    };
    let producer = match Producer::new(cluster, config, on_delivery(&context, &stats)).await {
        Ok(producer) => producer,
        Err(error) => {
            let mut stats = stats.borrow_mut();
            stats.produced.errors += 1;
            stats.note_error(&format!("creating producer {index}: {error}"));
            return;
        }
    };
    let record_size = plan.args.record_size as usize;
    let mut payloads = PayloadPool::new(
        record_size,
        plan.args.compressibility,
        plan.run_id ^ u64::from(index),
    );
    let schedule = Schedule::new(start_ns, plan.rate_for_producer());
    let records_max = plan.records_for_producer(index);
    let deadline_ns = plan.duration().map(|d| start_ns + d.as_nanos() as u64);
    let partitions = plan.partitions as usize;
    let records_per_batch = (plan.args.batch_bytes as usize / record_size).max(1) as u64;
    let mut partition = index as usize % partitions;
    let mut sequence: u64 = 0;
    while records_max.is_none_or(|max| sequence < max) {
        if context.shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let now_ns = context.now_ns();
        let intended_ns = schedule.intended_ns(sequence, now_ns);
        if deadline_ns.is_some_and(|deadline| intended_ns >= deadline || now_ns >= deadline) {
            break;
        }
        if let Some(wait) = Schedule::wait(intended_ns, now_ns) {
            glommio::timer::sleep(wait).await;
        }
        let value = payloads.stamp(Stamp {
            send_time_ns: intended_ns,
            run_id: plan.run_id,
        });
        let sent = producer
            .send(
                &plan.args.topic,
                partition as i32,
                None,
                value,
                &[],
                intended_ns,
            )
            .await;
        match sent {
            Ok(()) => stats.borrow_mut().sent += 1,
            Err(error) => {
                let mut stats = stats.borrow_mut();
                stats.produced.errors += 1;
                stats.note_error(&format!("send: {error}"));
            }
        }
        sequence += 1;
        if sequence.is_multiple_of(records_per_batch) {
            partition = (partition + 1) % partitions;
        }
        // send() returns at once while the buffer has room; let the connections run.
        glommio::yield_if_needed().await;
    }
    // flush's error is the first failed batch's, already counted by its delivery report.
    let _ = producer.flush().await;
}

/// The delivery callback: acknowledged records and their latency, or failed records.
fn on_delivery(context: &Rc<ShardContext>, stats: &Stats) -> Box<dyn Fn(&DeliveryReport<'_>)> {
    let context = Rc::clone(context);
    let stats = Rc::clone(stats);
    let record_size = u64::from(context.plan.args.record_size);
    Box::new(move |report: &DeliveryReport<'_>| {
        let now_ns = context.now_ns();
        let records = report.tags.len() as u64;
        let mut stats = stats.borrow_mut();
        match report.error {
            None => {
                stats.produced.records += records;
                stats.produced.bytes += records * record_size;
                for &intended_ns in report.tags {
                    stats
                        .produce_latency
                        .record_ns(now_ns.saturating_sub(intended_ns));
                }
                context
                    .shared
                    .produced_total
                    .fetch_add(records, Ordering::AcqRel);
            }
            Some(error) => {
                stats.produced.errors += records;
                stats.note_error(&format!(
                    "produce {}-{}: {error}",
                    report.topic, report.partition
                ));
            }
        }
    })
}

fn codec(compression: Compression) -> CompressionCodec {
    match compression {
        Compression::None => CompressionCodec::None,
        Compression::Lz4 => CompressionCodec::Lz4,
        Compression::Zstd => CompressionCodec::Zstd,
    }
}
