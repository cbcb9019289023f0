//! Retention with real clients: a topic created with a small `segment.bytes` and `retention.ms`
//! (CreateTopics configs) loses its old segments while a producer and a consumer run, and both
//! keep working: the log start offset advances, the consumer only ever moves forward, and what
//! remains is contiguous up to the high watermark. The deleted segments give their disk space
//! back whatever acks the producers use (no file stays open once deleted).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Broker, BrokerConfig, Record, assign, consumer, create_topic, flush_all_delivered, poll_until,
    producer, send, watermarks,
};
use rdkafka::Offset;
use rdkafka::producer::BaseRecord;

const TOPIC: &str = "expiring";
const PARTITIONS: i32 = 2;
const PRODUCE_FOR: Duration = Duration::from_secs(8);
const RETENTION_MS: i64 = 2500;

#[test]
fn old_segments_expire_while_producers_and_consumers_run() {
    // Proves retention.ms with small segments under load: while records are produced and
    // consumed, whole old segments are deleted and ListOffsets earliest advances; the consumer
    // (auto.offset.reset=earliest) sees offsets only increase and reaches the high watermark;
    // after the producer stops every sealed segment expires, and a fresh consumer reads a
    // contiguous range from the log start offset to the high watermark.
    let broker = Broker::start_with(BrokerConfig {
        args: vec!["--log-retention-check-interval-ms".into(), "200".into()],
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    let retention_ms = RETENTION_MS.to_string();
    create_topic(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        &[("segment.bytes", "32768"), ("retention.ms", &retention_ms)],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = common::StopOnDrop(Arc::clone(&stop));
    let producing = {
        let bootstrap = bootstrap.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let producer = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "5")]);
            let value = [b'r'; 200];
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let partition = (sent % PARTITIONS as usize) as i32;
                    send(
                        &producer,
                        BaseRecord::with_opaque_to(TOPIC, sent)
                            .partition(partition)
                            .payload(&value[..]),
                    );
                    sent += 1;
                }
                thread::sleep(Duration::from_millis(2));
            }
            flush_all_delivered(&producer, sent);
            sent
        })
    };

    let consumer = consumer(&bootstrap, &[("auto.offset.reset", "earliest")]);
    let starts: Vec<(i32, Offset)> = (0..PARTITIONS).map(|p| (p, Offset::Beginning)).collect();
    assign(&consumer, TOPIC, &starts);
    let mut last_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut consumed = 0usize;
    let mut start_moved_while_producing = false;
    let started = Instant::now();
    let mut checked = Instant::now();
    while started.elapsed() < PRODUCE_FOR {
        for message in consumer
            .poll(Duration::from_millis(50))
            .into_iter()
            .flatten()
        {
            let record = Record::from_message(&message);
            let last = last_offsets.entry(record.partition).or_insert(-1);
            assert!(record.offset > *last, "offsets only increase: {record:?}");
            *last = record.offset;
            consumed += 1;
        }
        if checked.elapsed() > Duration::from_millis(500) {
            checked = Instant::now();
            start_moved_while_producing |= watermarks(&consumer, TOPIC, 0).0 > 0;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().expect("producer thread");
    assert!(
        start_moved_while_producing,
        "no segment expired while producing"
    );
    eprintln!("sent {sent} records, consumed {consumed} while producing");
    assert!(consumed > 0);

    // Once the producer stops, every sealed segment expires; only the active ones stay.
    let data_dir = broker.data_dir().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let segment_files = segment_file_count(&data_dir, TOPIC, PARTITIONS);
        if segment_files == PARTITIONS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{segment_files} segment files still there"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let fresh = common::consumer(&bootstrap, &[]);
    let mut starts = Vec::new();
    let mut want = BTreeMap::new();
    let mut ranges = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let (low, high) = watermarks(&fresh, TOPIC, partition);
        assert!(low > 0, "partition {partition}: log start offset advanced");
        starts.push((partition, Offset::Offset(low)));
        want.insert(partition, (high - low) as usize);
        ranges.insert(partition, (low, high));
    }
    assign(&fresh, TOPIC, &starts);
    let records = poll_until(
        &fresh,
        TOPIC,
        &want,
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    for (partition, records) in &records {
        let (low, high) = ranges[partition];
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(
            offsets,
            (low..high).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
    // The first consumer, which ran through the deletions, catches up with the end too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ranges
        .iter()
        .any(|(partition, (_, high))| last_offsets.get(partition).copied().unwrap_or(-1) < high - 1)
    {
        assert!(
            Instant::now() < deadline,
            "the running consumer stopped at {last_offsets:?}, ends {ranges:?}"
        );
        for message in consumer
            .poll(Duration::from_millis(50))
            .into_iter()
            .flatten()
        {
            let record = Record::from_message(&message);
            let last = last_offsets.entry(record.partition).or_insert(-1);
            assert!(record.offset > *last, "offsets only increase: {record:?}");
            *last = record.offset;
        }
    }
    drop(consumer);
    drop(fresh);
    broker.stop();
}

/// The broker's open file descriptors that point at a deleted segment file (deleted but open:
/// their disk space is not given back).
fn deleted_open_segment_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the broker's fd directory")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.ends_with(".log (deleted)"))
        .collect()
}

#[test]
fn expired_segments_give_their_space_back_under_acks_1() {
    // Proves retention releases deleted segments under acks=1 traffic (no fdatasync ever asked
    // for): once retention has deleted old segments, the broker holds none of them open
    // (/proc/PID/fd shows no deleted segment file), so their disk space is free. Before the fix
    // every rolled segment stayed open until an acks=all produce, a topic delete or a restart.
    let broker = Broker::start_with(BrokerConfig {
        args: vec!["--log-retention-check-interval-ms".into(), "100".into()],
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "expiring-acks-1";
    create_topic(
        &bootstrap,
        topic,
        PARTITIONS,
        &[("segment.bytes", "16384"), ("retention.ms", "500")],
    );
    let producer = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "2")]);
    let value = [b'q'; 200];
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..20 {
            let partition = (sent % PARTITIONS as usize) as i32;
            send(
                &producer,
                BaseRecord::with_opaque_to(topic, sent)
                    .partition(partition)
                    .payload(&value[..]),
            );
            sent += 1;
        }
        thread::sleep(Duration::from_millis(2));
    }
    flush_all_delivered(&producer, sent);
    let pid = broker.pid();
    let data_dir = broker.data_dir().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Only the active segments stay, and nothing deleted is held open.
        let segment_files = segment_file_count(&data_dir, topic, PARTITIONS);
        let held = deleted_open_segment_files(pid);
        if segment_files == PARTITIONS as usize && held.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{segment_files} segment files, {} deleted but open: {:?}",
            held.len(),
            &held[..held.len().min(5)]
        );
        thread::sleep(Duration::from_millis(100));
    }
    let consumer = consumer(&bootstrap, &[]);
    let (low, high) = watermarks(&consumer, topic, 0);
    assert!(low > 0, "retention moved the log start offset");
    assert!(high > low);
    drop(consumer);
    drop(producer);
    broker.stop();
}

/// The `.log` segment files of partitions 0..`partitions` of `topic` in `data_dir`.
fn segment_file_count(data_dir: &std::path::Path, topic: &str, partitions: i32) -> usize {
    (0..partitions)
        .map(|p| {
            std::fs::read_dir(data_dir.join(format!("{topic}-{p}")))
                .unwrap()
                .filter(|entry| {
                    let name = entry.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".log")
                })
                .count()
        })
        .sum()
}
