//! Disk space with real clients: what partitions cost on disk before their data does, and what
//! a full disk does to a producer that retries.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Broker, BrokerConfig, assign, consumer, create_topic, flush_all_delivered, poll_until,
    producer, send, watermarks,
};
use rdkafka::Offset;
use rdkafka::producer::BaseRecord;

/// Bytes of disk really allocated to the files under `path` (st_blocks, as du counts).
fn allocated_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read a data directory") {
        let entry = entry.expect("a directory entry");
        let metadata = entry.metadata().expect("stat a data file");
        total += if metadata.is_dir() {
            allocated_bytes(&entry.path())
        } else {
            metadata.blocks() * 512
        };
    }
    total
}

#[test]
fn a_thousand_partitions_written_a_little_take_little_disk() {
    // Proves an idle or barely written partition costs kilobytes, not a preallocated 32 MiB:
    // 1,000 partitions each written one small record take under 1 GB of allocated blocks (du),
    // where preallocating 32 MiB per segment took 32 GB.
    const PARTITIONS: i32 = 1000;
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    let topic = "many";
    create_topic(&bootstrap, topic, PARTITIONS, &[]);
    let producer = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "5")]);
    let value = [b'x'; 100];
    for partition in 0..PARTITIONS {
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, partition as usize)
                .partition(partition)
                .payload(&value[..]),
        );
    }
    flush_all_delivered(&producer, PARTITIONS as usize);
    let allocated = allocated_bytes(broker.data_dir());
    eprintln!(
        "{PARTITIONS} partitions written 100 bytes each: {} MiB allocated",
        allocated >> 20
    );
    assert!(allocated < 1_000_000_000, "{allocated} bytes allocated");
    let consumer = consumer(&bootstrap, &[]);
    assert_eq!(watermarks(&consumer, topic, PARTITIONS - 1), (0, 1));
    drop(consumer);
    drop(producer);
    // Killed, not stopped: a clean stop closes the 1,000 logs one after the other, each with its
    // fdatasyncs (about 40 s on this machine), which is not what this test is about.
    drop(broker);
}

#[test]
fn a_full_disk_never_duplicates_a_retrying_producers_records() {
    // Proves a batch answered with an error is never written later: on a real full disk (a
    // tmpfs data directory), a non-idempotent producer that retries (enable.idempotence=false,
    // retries on) gets KAFKA_STORAGE_ERROR and sends its batches again until space returns, and
    // then every record is in the log exactly once, at contiguous offsets. Before the fix the
    // refused batches stayed pending and were written when space returned, beside their retries.
    const BEFORE: usize = 200;
    const DURING: usize = 1000;
    let broker = match Broker::start_on_tmpfs(BrokerConfig::default(), 64 << 20) {
        Ok(broker) => broker,
        Err(reason) => {
            eprintln!("skipping the full-disk test: no tmpfs data directory ({reason})");
            return;
        }
    };
    let bootstrap = broker.bootstrap();
    let topic = "full";
    // Small segments: the log rolls, and every new file must find space.
    create_topic(&bootstrap, topic, 1, &[("segment.bytes", "65536")]);
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("retries", "1000000"),
            ("retry.backoff.ms", "100"),
            ("message.timeout.ms", "60000"),
            ("linger.ms", "5"),
        ],
    );
    let record = |id: usize| format!("record-{id:06}-{}", "p".repeat(200));
    for id in 0..BEFORE {
        let payload = record(id);
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, id)
                .partition(0)
                .payload(payload.as_bytes()),
        );
    }
    flush_all_delivered(&producer, BEFORE);

    // Fill the disk to the last byte.
    let filler_path = broker.data_dir().join("filler");
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(&filler_path).expect("create the filler");
        let chunk = vec![1u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let block = [1u8; 512];
        while filler.write_all(&block).is_ok() {}
    }
    for id in BEFORE..BEFORE + DURING {
        let payload = record(id);
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, id)
                .partition(0)
                .payload(payload.as_bytes()),
        );
        if id % 100 == 0 {
            thread::sleep(Duration::from_millis(100));
        }
    }
    // Let the producer be refused and retry a while before space comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker.log_tail(2000).contains("write failed") {
        assert!(Instant::now() < deadline, "the disk never filled up");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(&filler_path).expect("remove the filler");
    flush_all_delivered(&producer, DURING);

    let consumer = consumer(&bootstrap, &[]);
    let (low, high) = watermarks(&consumer, topic, 0);
    assert_eq!(low, 0);
    assign(&consumer, topic, &[(0, Offset::Beginning)]);
    let want = BTreeMap::from([(0, high as usize)]);
    let records = poll_until(
        &consumer,
        topic,
        &want,
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    let offsets: Vec<i64> = records[&0].iter().map(|record| record.offset).collect();
    assert_eq!(offsets, (0..high).collect::<Vec<_>>(), "contiguous offsets");
    let mut seen = BTreeMap::new();
    for record in &records[&0] {
        let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
        *seen.entry(value).or_insert(0) += 1;
    }
    let duplicated: Vec<(&String, &i32)> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} records written more than once, first: {:?}",
        duplicated.len(),
        duplicated
            .first()
            .map(|(value, count)| (&value[..13], count))
    );
    assert_eq!(seen.len(), BEFORE + DURING, "every record once");
    assert_eq!(high as usize, BEFORE + DURING);
    drop(consumer);
    drop(producer);
    broker.stop();
}
