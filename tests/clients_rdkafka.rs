//! librdkafka (through the rdkafka crate) against a real `spate serve`: produce and consume with
//! every compression codec, every acks level, the idempotent producer, the three ways a consumer
//! picks its start offset, long-poll wake-up latency, 5 MB records and a broker restart.
//!
//! Each test starts its own broker (two shards, so partitions and requests are spread over two
//! Kafka nodes) in its own temporary directory and stops it with SIGTERM at the end, which also
//! checks the clean shutdown.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Broker, Record, TestProducer, assert_stored_batches, consume, consumer, create_topic,
    flush_all_delivered, now_ms, producer, segment_batches, send,
};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

/// Records per codec test, as issue 3 asks: 100k over 8 partitions.
const CODEC_RECORDS_TOTAL: usize = 100_000;
const CODEC_PARTITIONS: i32 = 8;
/// Generous bound for consuming 100k records; a healthy run takes a few seconds.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a consumer keeps polling after it has everything, to catch extra records.
const CONSUME_LINGER: Duration = Duration::from_millis(300);

fn codec_key(partition: i32, index: usize) -> Vec<u8> {
    format!("key-{partition}-{index}").into_bytes()
}

/// A value that compresses well (librdkafka sends a batch uncompressed when compressing does not
/// make it smaller), yet differs in every record.
fn codec_value(codec: &str, partition: i32, index: usize) -> Vec<u8> {
    let line = format!("{codec} partition {partition} record {index}; ");
    let mut value = line.repeat(6).into_bytes();
    value.extend_from_slice(&(index as u64).to_le_bytes());
    value
}

fn codec_headers(codec: &str, index: usize) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "index",
            value: Some(&(index as u64).to_be_bytes()),
        })
        .insert(Header {
            key: "codec",
            value: Some(codec),
        })
        .insert(Header {
            key: "null-valued",
            value: None::<&[u8]>,
        })
}

fn codec_headers_want(codec: &str, index: usize) -> Vec<(String, Option<Vec<u8>>)> {
    vec![
        (
            "index".to_string(),
            Some((index as u64).to_be_bytes().to_vec()),
        ),
        ("codec".to_string(), Some(codec.as_bytes().to_vec())),
        ("null-valued".to_string(), None),
    ]
}

/// Produces 100k keyed records with headers over 8 partitions with `codec`, reads them back and
/// checks every byte and the order in each partition; then checks the stored batches really carry
/// `codec_id`, since librdkafka silently stops compressing when it thinks the broker cannot
/// decompress (it reads that from the advertised API versions, see src/protocol/api_versions.rs).
fn roundtrip_codec(codec: &str, codec_id: i16) {
    let broker = Broker::start(&[]);
    let topic = format!("codec-{codec}");
    create_topic(&broker.bootstrap(), &topic, CODEC_PARTITIONS, &[]);

    let producer = producer(
        &broker.bootstrap(),
        &[("compression.type", codec), ("linger.ms", "5")],
    );
    let per_partition = CODEC_RECORDS_TOTAL / CODEC_PARTITIONS as usize;
    let started = Instant::now();
    for index in 0..per_partition {
        for partition in 0..CODEC_PARTITIONS {
            let key = codec_key(partition, index);
            let value = codec_value(codec, partition, index);
            let id = index * CODEC_PARTITIONS as usize + partition as usize;
            let record = BaseRecord::with_opaque_to(&topic, id)
                .partition(partition)
                .key(&key[..])
                .payload(&value[..])
                .headers(codec_headers(codec, index));
            send(&producer, record);
        }
    }
    let deliveries = flush_all_delivered(&producer, CODEC_RECORDS_TOTAL);
    eprintln!(
        "{codec}: produced {CODEC_RECORDS_TOTAL} records in {:?}",
        started.elapsed()
    );
    for delivery in &deliveries {
        let index = delivery.id / CODEC_PARTITIONS as usize;
        assert_eq!(
            delivery.partition,
            (delivery.id % CODEC_PARTITIONS as usize) as i32
        );
        assert_eq!(
            delivery.offset, index as i64,
            "acknowledged offset of record {}",
            delivery.id
        );
    }

    let started = Instant::now();
    let consumer = consumer(&broker.bootstrap(), &[]);
    let starts: Vec<(i32, Offset)> = (0..CODEC_PARTITIONS)
        .map(|p| (p, Offset::Beginning))
        .collect();
    let counts = vec![per_partition; CODEC_PARTITIONS as usize];
    let records = consume(
        &consumer,
        &topic,
        &starts,
        &counts,
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    eprintln!(
        "{codec}: consumed {CODEC_RECORDS_TOTAL} records in {:?}",
        started.elapsed()
    );
    let time_before_produce = now_ms() - 5 * 60 * 1000;
    for (partition, records) in &records {
        assert_eq!(
            records.len(),
            per_partition,
            "partition {partition}: record count"
        );
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset, index as i64,
                "partition {partition}: offsets in order"
            );
            assert_eq!(
                record.key.as_deref(),
                Some(&codec_key(*partition, index)[..]),
                "key at {index}"
            );
            assert_eq!(
                record.value.as_deref(),
                Some(&codec_value(codec, *partition, index)[..]),
                "value at {index}"
            );
            assert_eq!(
                record.headers,
                codec_headers_want(codec, index),
                "headers at {index}"
            );
            assert!(
                record.timestamp.is_some_and(|t| t > time_before_produce),
                "timestamp at {index}"
            );
        }
    }
    for partition in 0..CODEC_PARTITIONS {
        assert_stored_batches(
            broker.data_dir(),
            &topic,
            partition,
            per_partition,
            codec_id,
        );
    }
    drop(consumer);
    drop(producer);
    broker.stop();
}

// Proves 100k uncompressed records with keys and headers round-trip byte for byte and in order.
#[test]
fn codec_none_100k_records_roundtrip() {
    roundtrip_codec("none", 0);
}

// Proves 100k gzip-compressed records round-trip and are stored as gzip batches.
#[test]
fn codec_gzip_100k_records_roundtrip() {
    roundtrip_codec("gzip", 1);
}

// Proves 100k snappy-compressed records round-trip and are stored as snappy batches.
#[test]
fn codec_snappy_100k_records_roundtrip() {
    roundtrip_codec("snappy", 2);
}

// Proves 100k lz4-compressed records round-trip and are stored as lz4 batches.
#[test]
fn codec_lz4_100k_records_roundtrip() {
    roundtrip_codec("lz4", 3);
}

// Proves 100k zstd-compressed records round-trip and are stored as zstd batches (zstd needs
// Produce v7+, so this also proves the broker advertises it).
#[test]
fn codec_zstd_100k_records_roundtrip() {
    roundtrip_codec("zstd", 4);
}

fn simple_value(tag: &str, index: usize) -> Vec<u8> {
    format!("{tag}-{index:06}").into_bytes()
}

/// Produces `per_partition` records `tag-<index>` to each of `partitions`, in index order, and
/// returns the delivery reports (all successful).
fn produce_simple(
    producer: &TestProducer,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) -> Vec<common::Delivery> {
    for index in 0..per_partition {
        for partition in 0..partitions {
            let value = simple_value(tag, index);
            let id = index * partitions as usize + partition as usize;
            send(
                producer,
                BaseRecord::with_opaque_to(topic, id)
                    .partition(partition)
                    .payload(&value[..]),
            );
        }
    }
    flush_all_delivered(producer, per_partition * partitions as usize)
}

/// Checks that `records` of every partition are exactly `tag-0 .. tag-(n-1)` at offsets
/// `offset_first ..`.
fn assert_simple_records(
    records: &BTreeMap<i32, Vec<Record>>,
    tag: &str,
    per_partition: usize,
    offset_first: i64,
) {
    for (partition, records) in records {
        assert_eq!(
            records.len(),
            per_partition,
            "partition {partition}: record count (no duplicates)"
        );
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset,
                offset_first + index as i64,
                "partition {partition}: offset"
            );
            assert_eq!(
                record.value.as_deref(),
                Some(&simple_value(tag, index)[..]),
                "partition {partition}"
            );
        }
    }
}

// Proves every acks level works end to end: acks=0 (the broker sends no response, and the
// connection stays usable), acks=1 and acks=all (acknowledged offsets match what is read back).
#[test]
fn acks_0_1_all_deliver_every_record() {
    let broker = Broker::start(&[]);
    let partitions = 4;
    let per_partition = 5_000;
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        create_topic(&broker.bootstrap(), &topic, partitions, &[]);
        let producer = producer(&broker.bootstrap(), &[("acks", acks)]);
        let deliveries = produce_simple(&producer, &topic, partitions, per_partition, &topic);
        if acks != "0" {
            for delivery in &deliveries {
                let index = delivery.id / partitions as usize;
                assert_eq!(
                    delivery.offset, index as i64,
                    "acks={acks}: acknowledged offset"
                );
            }
        }
        let consumer = consumer(&broker.bootstrap(), &[]);
        let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
        let records = consume(
            &consumer,
            &topic,
            &starts,
            &[per_partition; 4],
            CONSUME_TIMEOUT,
            CONSUME_LINGER,
        );
        assert_simple_records(&records, &topic, per_partition, 0);
    }
    broker.stop();
}

// Proves the idempotent producer works (InitProducerId, sequence numbers, 5 requests in flight):
// every record lands exactly once, in order, and the stored batches carry its producer id.
#[test]
fn idempotent_producer_appends_each_record_once_in_order() {
    let broker = Broker::start(&[]);
    let topic = "idempotent";
    let partitions = 8;
    let per_partition = 2_500;
    create_topic(&broker.bootstrap(), topic, partitions, &[]);
    // Small batches and no linger keep many produce requests in flight per connection.
    let producer = producer(
        &broker.bootstrap(),
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "0"),
            ("batch.num.messages", "50"),
        ],
    );
    let deliveries = produce_simple(&producer, topic, partitions, per_partition, topic);
    for delivery in &deliveries {
        assert_eq!(
            delivery.offset,
            (delivery.id / partitions as usize) as i64,
            "acknowledged offset"
        );
    }
    assert_eq!(
        producer.context().fatal(),
        None,
        "no fatal idempotence error"
    );
    let consumer = consumer(&broker.bootstrap(), &[]);
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let records = consume(
        &consumer,
        topic,
        &starts,
        &vec![per_partition; partitions as usize],
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    assert_simple_records(&records, topic, per_partition, 0);
    for partition in 0..partitions {
        let batches = assert_stored_batches(broker.data_dir(), topic, partition, per_partition, 0);
        assert!(
            batches.iter().all(|b| b.producer_id >= 0),
            "partition {partition}: batches carry a producer id"
        );
    }
    broker.stop();
}

// Proves a consumer can start at the earliest offset, at the latest offset (seeing only records
// produced after it was positioned) and at a timestamp (ListOffsets by time via offsets_for_times).
#[test]
fn consumer_starts_at_earliest_latest_and_timestamp() {
    let broker = Broker::start(&[]);
    let topic = "positions";
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    let producer = producer(&broker.bootstrap(), &[]);
    let old_count = 100usize;
    let new_count = 50usize;
    // Explicit CreateTime timestamps: old records a minute ago, 1 ms apart; new ones from
    // `new_time_first`, so both timestamp lookups have exact answers.
    let old_time_first = now_ms() - 60_000;
    let new_time_first = now_ms() + 1_000;
    let produce = |tag: &str, count: usize, time_first: i64| {
        for index in 0..count {
            let value = simple_value(tag, index);
            let record = BaseRecord::with_opaque_to(topic, index)
                .partition(0)
                .payload(&value[..])
                .timestamp(time_first + index as i64);
            send(&producer, record);
        }
        flush_all_delivered(&producer, count)
    };
    produce("old", old_count, old_time_first);

    // Latest: position the consumer at the end, give it time to resolve that offset (ListOffsets
    // with -1) and start fetching, then produce.
    let latest = consumer(&broker.bootstrap(), &[]);
    common::assign(&latest, topic, &[(0, Offset::End)]);
    let positioned_by = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < positioned_by {
        if let Some(result) = latest.poll(Duration::from_millis(50)) {
            panic!(
                "consumer at the end got a record before any was produced: {:?}",
                result.map(|m| Record::from_message(&m))
            );
        }
    }
    let deliveries = produce("new", new_count, new_time_first);
    for delivery in &deliveries {
        assert_eq!(
            delivery.offset,
            (old_count + delivery.id) as i64,
            "acknowledged offset of new record"
        );
    }
    let want = BTreeMap::from([(0, new_count)]);
    let records = common::poll_until(&latest, topic, &want, CONSUME_TIMEOUT, CONSUME_LINGER);
    assert_simple_records(&records, "new", new_count, old_count as i64);

    // Earliest: everything.
    let earliest = consumer(&broker.bootstrap(), &[]);
    let records = consume(
        &earliest,
        topic,
        &[(0, Offset::Beginning)],
        &[old_count + new_count],
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    let values: Vec<Vec<u8>> = records[&0]
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    let values_want: Vec<Vec<u8>> = (0..old_count)
        .map(|i| simple_value("old", i))
        .chain((0..new_count).map(|i| simple_value("new", i)))
        .collect();
    assert_eq!(values, values_want, "earliest: all records in order");
    for (index, record) in records[&0].iter().enumerate() {
        assert_eq!(record.offset, index as i64);
        let time_want = if index < old_count {
            old_time_first + index as i64
        } else {
            new_time_first + (index - old_count) as i64
        };
        assert_eq!(
            record.timestamp,
            Some(time_want),
            "CreateTime kept at offset {index}"
        );
    }

    // By timestamp: the first offset whose timestamp is >= the one asked for.
    let by_time = consumer(&broker.bootstrap(), &[]);
    let lookups = [
        (old_time_first - 10_000, Offset::Offset(0)),
        (old_time_first + 50, Offset::Offset(50)),
        (new_time_first, Offset::Offset(old_count as i64)),
        (new_time_first + 10, Offset::Offset(old_count as i64 + 10)),
        (new_time_first + 3_600_000, Offset::End),
    ];
    for (time, offset_want) in lookups {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(topic, 0, Offset::Offset(time))
            .unwrap();
        let answer = by_time
            .offsets_for_times(query, Duration::from_secs(10))
            .expect("offsets_for_times");
        let element = answer
            .find_partition(topic, 0)
            .expect("partition 0 in the answer");
        assert_eq!(element.error(), Ok(()), "offsets_for_times({time})");
        assert_eq!(element.offset(), offset_want, "offsets_for_times({time})");
    }
    let records = consume(
        &by_time,
        topic,
        &[(0, Offset::Offset(old_count as i64))],
        &[new_count],
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    assert_simple_records(&records, "new", new_count, old_count as i64);
    drop((latest, earliest, by_time, producer));
    broker.stop();
}

// Proves Fetch long-polling wakes up when data arrives: a consumer parked on an empty partition
// (fetch.wait.max.ms=500) gets each record within 50 ms of its produce being acknowledged.
#[test]
fn long_poll_wakes_within_50ms_of_produce() {
    const ROUNDS: usize = 5;
    const DELAY_MAX: Duration = Duration::from_millis(50);
    let broker = Broker::start(&[]);
    let topic = "long-poll";
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    let bootstrap = broker.bootstrap();
    let (received_tx, received_rx) = mpsc::channel::<(Vec<u8>, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = common::StopOnDrop(Arc::clone(&stop));
    let consumer_thread = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let consumer = consumer(
                &bootstrap,
                &[("fetch.wait.max.ms", "500"), ("fetch.min.bytes", "1")],
            );
            common::assign(&consumer, topic, &[(0, Offset::Beginning)]);
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(10)) {
                    Some(Ok(message)) => {
                        let at = Instant::now();
                        let value = rdkafka::Message::payload(&message)
                            .unwrap_or_default()
                            .to_vec();
                        if received_tx.send((value, at)).is_err() {
                            return;
                        }
                    }
                    Some(Err(error)) => eprintln!("long-poll consumer: {error}"),
                    None => {}
                }
            }
        })
    };
    let producer = producer(&broker.bootstrap(), &[("acks", "1"), ("linger.ms", "0")]);
    let mut delays = Vec::new();
    let mut round_trips = Vec::new();
    // Round 0 warms up connections and metadata; it is not measured.
    for round in 0..=ROUNDS {
        // Longer than fetch.wait.max.ms, so the consumer's fetch is parked in the broker.
        thread::sleep(Duration::from_millis(700));
        let value = format!("long-poll round {round}").into_bytes();
        let sent_at = Instant::now();
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, round)
                .partition(0)
                .payload(&value[..]),
        );
        let (received, received_at) = received_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                panic!("round {round}: the consumer got nothing within 10 s");
            });
        assert_eq!(received, value, "round {round}");
        let delivery = wait_delivery(&producer, Duration::from_secs(10));
        assert!(
            delivery.error.is_none(),
            "round {round}: {:?}",
            delivery.error
        );
        // The consumer may see the record before the producer sees its acknowledgement (the
        // high watermark moves when the write completes, as the acks=1 answer does): 0 then.
        let delay = received_at.saturating_duration_since(delivery.at);
        if round > 0 {
            delays.push(delay);
            round_trips.push(received_at.duration_since(sent_at));
        }
    }
    stop.store(true, Ordering::Relaxed);
    consumer_thread.join().expect("consumer thread");
    eprintln!("long poll: delay from acknowledgement to receipt per round: {delays:?}");
    eprintln!("long poll: from send to receipt per round: {round_trips:?}");
    for (round, delay) in delays.iter().enumerate() {
        assert!(
            *delay < DELAY_MAX,
            "round {}: record reached the consumer {delay:?} after its ack",
            round + 1
        );
    }
    drop(producer);
    broker.stop();
}

/// Waits for the next delivery report.
fn wait_delivery(producer: &TestProducer, timeout: Duration) -> common::Delivery {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(delivery) = producer.context().deliveries_take().pop() {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery report within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

fn large_value(index: usize, len: usize) -> Vec<u8> {
    let mut rng = common::Rng::new(0x9e37_79b9_7f4a_7c15 ^ index as u64);
    let mut value = Vec::with_capacity(len + 8);
    while value.len() < len {
        value.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    value.truncate(len);
    value
}

// Proves 5 MB records work when the topic's max.message.bytes is raised to 6,000,000 at creation,
// and that the topic limit is enforced: a 7 MB record is rejected with MESSAGE_TOO_LARGE.
#[test]
fn records_of_5mb_with_raised_max_message_bytes() {
    const RECORD_BYTES: usize = 5_000_000;
    const RECORD_COUNT: usize = 4;
    let broker = Broker::start(&["--max-request-bytes", "20000000"]);
    let topic = "large";
    create_topic(
        &broker.bootstrap(),
        topic,
        1,
        &[("max.message.bytes", "6000000")],
    );
    let producer = producer(
        &broker.bootstrap(),
        &[
            ("message.max.bytes", "10000000"),
            ("compression.type", "none"),
            ("linger.ms", "0"),
        ],
    );
    for index in 0..RECORD_COUNT {
        let value = large_value(index, RECORD_BYTES);
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, index)
                .partition(0)
                .payload(&value[..]),
        );
    }
    let deliveries = flush_all_delivered(&producer, RECORD_COUNT);
    for delivery in &deliveries {
        assert_eq!(delivery.offset, delivery.id as i64, "acknowledged offset");
    }

    let too_large = vec![7u8; 7_000_000];
    send(
        &producer,
        BaseRecord::with_opaque_to(topic, 99)
            .partition(0)
            .payload(&too_large[..]),
    );
    producer.flush(Duration::from_secs(30)).expect("flush");
    let delivery = wait_delivery(&producer, Duration::from_secs(10));
    match &delivery.error {
        Some(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {}
        other => panic!("a 7 MB record on a 6 MB topic: want MESSAGE_TOO_LARGE, got {other:?}"),
    }

    let consumer = consumer(
        &broker.bootstrap(),
        &[
            ("fetch.max.bytes", "16000000"),
            ("max.partition.fetch.bytes", "8000000"),
            ("receive.message.max.bytes", "16001024"),
        ],
    );
    let records = consume(
        &consumer,
        topic,
        &[(0, Offset::Beginning)],
        &[RECORD_COUNT],
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    assert_eq!(
        records[&0].len(),
        RECORD_COUNT,
        "the rejected record was not stored"
    );
    for (index, record) in records[&0].iter().enumerate() {
        assert_eq!(record.offset, index as i64);
        let value = record.value.as_deref().unwrap_or_default();
        assert_eq!(value.len(), RECORD_BYTES, "record {index}: length");
        assert!(
            value == &large_value(index, RECORD_BYTES)[..],
            "record {index}: bytes differ"
        );
    }
    drop((consumer, producer));
    broker.stop();
}

// Proves records survive a clean restart: half are produced, the broker is stopped with SIGTERM
// (exit 0) and started on the same data directory, the other half are produced, and all of them
// read back in order with contiguous offsets.
#[test]
fn restart_between_halves_keeps_every_record() {
    let mut broker = Broker::start(&[]);
    let topic = "restart";
    let partitions = 4;
    let per_half = 5_000;
    create_topic(&broker.bootstrap(), topic, partitions, &[]);
    {
        let producer = producer(&broker.bootstrap(), &[]);
        produce_simple(&producer, topic, partitions, per_half, "first");
    }
    broker.restart();
    // The new process binds new ports; the topic must still be there with its leaders.
    common::wait_for_leaders(&broker.bootstrap(), topic, partitions);
    let producer = producer(&broker.bootstrap(), &[]);
    let deliveries = produce_simple(&producer, topic, partitions, per_half, "second");
    for delivery in &deliveries {
        let index = delivery.id / partitions as usize;
        assert_eq!(
            delivery.offset,
            (per_half + index) as i64,
            "second half continues the offsets"
        );
    }
    let consumer = consumer(&broker.bootstrap(), &[]);
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let records = consume(
        &consumer,
        topic,
        &starts,
        &vec![2 * per_half; partitions as usize],
        CONSUME_TIMEOUT,
        CONSUME_LINGER,
    );
    for (partition, records) in &records {
        assert_eq!(records.len(), 2 * per_half, "partition {partition}");
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset, index as i64,
                "partition {partition}: contiguous offsets"
            );
            let value_want = if index < per_half {
                simple_value("first", index)
            } else {
                simple_value("second", index - per_half)
            };
            assert_eq!(
                record.value.as_deref(),
                Some(&value_want[..]),
                "partition {partition} offset {index}"
            );
        }
    }
    for partition in 0..partitions {
        let batches = segment_batches(broker.data_dir(), topic, partition);
        assert!(!batches.is_empty(), "partition {partition}: stored batches");
    }
    drop((consumer, producer));
    broker.stop();
}

// Proves each shard is its own Kafka node in Metadata, at the address it listens on, and that a
// topic's partitions are led by more than one node (spread across shards).
#[test]
fn metadata_lists_one_node_per_shard_and_spreads_partitions() {
    let broker = Broker::start(&[]);
    let topic = "spread";
    create_topic(&broker.bootstrap(), topic, 8, &[]);
    let consumer = consumer(&broker.bootstrap(), &[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut nodes: Vec<(i32, String)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    nodes.sort();
    let nodes_want: Vec<(i32, String)> = broker
        .listeners()
        .iter()
        .map(|l| (l.node_id, l.address.clone()))
        .collect();
    assert_eq!(nodes, nodes_want, "Metadata brokers = listeners file");
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    let mut leaders: Vec<i32> = topic_metadata
        .partitions()
        .iter()
        .map(|p| p.leader())
        .collect();
    assert!(
        leaders
            .iter()
            .all(|l| (0..broker.cores() as i32).contains(l)),
        "leaders are shards: {leaders:?}"
    );
    leaders.sort();
    leaders.dedup();
    if broker.cores() > 1 {
        assert!(
            leaders.len() > 1,
            "8 partitions led by more than one shard, got {leaders:?}"
        );
    }
    drop(consumer);
    broker.stop();
}
