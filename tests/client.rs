//! The Spate client (src/client/) against a real `spate serve` on loopback.
//!
//! Each test runs its client inside its own glommio executor (small locked memory, unpinned) and
//! the broker as a separate process (tests/common). They prove the client's contract: versions
//! negotiated, metadata and leader routing, every byte of produced records read back in order
//! for each codec and acks level, and recovery from a recreated topic and a restarted broker.

mod common;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use common::{Broker, BrokerConfig};
use spate::client::{
    ClientError, Cluster, CompressionCodec, Connection, Consumer, ConsumerConfig, DeliveryCallback,
    DeliveryReport, Producer, ProducerConfig, RecordView, StartOffset,
};
use spate::protocol::ApiKey;

/// Runs `make()`'s future on a fresh glommio executor and returns its output.
fn run_client<T, F, Fut>(make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(64)
        .spawn(move || async move { make().await })
        .expect("spawn the client executor")
        .join()
        .expect("client executor panicked")
}

fn broker() -> Broker {
    Broker::start_with(BrokerConfig::default())
}

#[test]
fn connection_negotiates_versions_and_cluster_routes_to_leaders() {
    // Proves ApiVersions negotiation picks min(codec max, broker max) for every advertised API,
    // reports an API the broker lacks as unsupported, and that after create_topic every
    // partition has a leader among the listed nodes whose connection answers requests.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let nodes = broker.listeners().len();
    run_client(move || async move {
        let connection = Connection::connect(&bootstrap).await.unwrap();
        assert_eq!(
            connection.version(ApiKey::Produce),
            Some(ApiKey::Produce.versions().max)
        );
        assert_eq!(
            connection.version(ApiKey::Fetch),
            Some(ApiKey::Fetch.versions().max)
        );
        assert_eq!(connection.version(ApiKey::SaslAuthenticate), None);
        let request = spate::protocol::Request::SaslAuthenticate(Default::default());
        assert!(matches!(
            connection.call(request).await,
            Err(ClientError::UnsupportedApi(ApiKey::SaslAuthenticate))
        ));

        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        assert_eq!(cluster.node_ids().len(), nodes);
        cluster.create_topic("routed", 6, -1, &[]).await.unwrap();
        assert_eq!(cluster.partition_count("routed"), Some(6));
        for partition in 0..6 {
            let leader = cluster.leader("routed", partition).unwrap();
            let connection = cluster.connection(leader).await.unwrap();
            assert!(!connection.is_closed());
        }
        let again = cluster
            .create_topic("routed", 6, -1, &[])
            .await
            .unwrap_err();
        assert_eq!(
            again.kafka_code(),
            Some(spate::protocol::ErrorCode::TopicAlreadyExists)
        );
        cluster.delete_topic("routed").await.unwrap();
        cluster.refresh_metadata(&["routed"]).await.unwrap();
        assert_eq!(cluster.partition_count("routed"), None);
        assert_eq!(cluster.leader("routed", 0), None);
        let _keep: Rc<Connection> = connection;
    });
    broker.stop();
}

#[test]
fn pipelined_calls_on_one_connection_all_complete() {
    // Proves many concurrent calls on one connection each get their own response (correlation
    // ids match) and the connection stays usable afterwards.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    let answered = run_client({
        move || async move {
            let connection = Connection::connect(&bootstrap).await.unwrap();
            let calls: Vec<_> = (0..50)
                .map(|_| {
                    let connection = connection.clone();
                    glommio::spawn_local(async move {
                        let request = spate::protocol::Request::Metadata(Default::default());
                        connection.call(request).await
                    })
                })
                .collect();
            for call in calls {
                assert!(matches!(
                    call.await,
                    Ok(spate::protocol::Response::Metadata(_))
                ));
            }
            connection
                .call(spate::protocol::Request::ApiVersions(Default::default()))
                .await
                .unwrap();
            !connection.is_closed()
        }
    });
    assert!(answered);
    broker.stop();
}

/// One delivery report, owned.
#[derive(Debug, Clone)]
struct Delivered {
    partition: i32,
    base_offset: i64,
    tags: Vec<u64>,
    error: Option<String>,
}

type Reports = Rc<std::cell::RefCell<Vec<Delivered>>>;

/// A delivery callback that keeps every report, and the list it fills.
fn collector() -> (Reports, DeliveryCallback) {
    let reports: Reports = Rc::default();
    let sink = reports.clone();
    let callback = Box::new(move |report: &DeliveryReport<'_>| {
        sink.borrow_mut().push(Delivered {
            partition: report.partition,
            base_offset: report.base_offset,
            tags: report.tags.to_vec(),
            error: report.error.map(ToString::to_string),
        });
    });
    (reports, callback)
}

/// Checks that every tag in 0..count was reported exactly once without error, and (when the
/// broker returns offsets) that each partition's batches are contiguous from offset 0 with tags
/// increasing, i.e. in send order.
fn assert_all_delivered(reports: &[Delivered], count: u64, offsets: bool) {
    let mut seen = vec![false; count as usize];
    let mut by_partition: std::collections::BTreeMap<i32, Vec<&Delivered>> = Default::default();
    for report in reports {
        assert_eq!(
            report.error, None,
            "batch of partition {}",
            report.partition
        );
        for &tag in &report.tags {
            assert!(!seen[tag as usize], "tag {tag} reported twice");
            seen[tag as usize] = true;
        }
        by_partition
            .entry(report.partition)
            .or_default()
            .push(report);
    }
    assert!(seen.iter().all(|&seen| seen), "every record reported");
    if !offsets {
        return;
    }
    for (partition, mut batches) in by_partition {
        batches.sort_by_key(|batch| batch.base_offset);
        let mut offset_next = 0;
        let mut tag_last = None;
        for batch in batches {
            assert_eq!(batch.base_offset, offset_next, "partition {partition}");
            offset_next += batch.tags.len() as i64;
            for &tag in &batch.tags {
                assert!(tag_last < Some(tag), "partition {partition}: order");
                tag_last = Some(tag);
            }
        }
    }
}

/// Produces `count` records round-robin over `partitions` partitions of `topic`, tag = index,
/// and flushes. Keys, values and headers come from `record_parts`.
async fn produce_all(producer: &Producer, topic: &str, partitions: i32, count: u64) {
    for index in 0..count {
        let (key, value, header) = record_parts(index);
        let headers: [(&[u8], Option<&[u8]>); 2] = [(b"index", Some(&header)), (b"empty", None)];
        let partition = (index % partitions as u64) as i32;
        producer
            .send(topic, partition, Some(&key), &value, &headers, index)
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
}

/// The key, value and `index` header of record `index`: values vary in size (0..300 bytes) and
/// content so a misplaced byte shows.
fn record_parts(index: u64) -> (Vec<u8>, Vec<u8>, [u8; 8]) {
    let key = format!("key-{index}").into_bytes();
    let value: Vec<u8> = (0..(index * 7 % 300))
        .map(|i| (index.wrapping_mul(31).wrapping_add(i) % 251) as u8)
        .collect();
    (key, value, index.to_be_bytes())
}

#[test]
fn producer_acks_levels_deliver_every_record_in_order() {
    // Proves for acks 0, 1 and all (and all with idempotence) that every record is reported
    // once, and with acks 1/all that each partition's offsets are contiguous from 0 in send
    // order.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        for (index, (acks, idempotent)) in [(0, false), (1, false), (-1, false), (-1, true)]
            .into_iter()
            .enumerate()
        {
            let topic = format!("acks-{index}");
            cluster.create_topic(&topic, 4, -1, &[]).await.unwrap();
            let (reports, callback) = collector();
            let config = ProducerConfig {
                acks,
                idempotent,
                linger: Duration::from_millis(2),
                batch_bytes: 32 << 10,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(cluster.clone(), config, callback)
                .await
                .unwrap();
            assert_eq!(producer.identity().is_some(), idempotent);
            produce_all(&producer, &topic, 4, 10_000).await;
            assert_all_delivered(&reports.borrow(), 10_000, acks != 0);
        }
    });
    broker.stop();
}

#[test]
fn producer_closes_batches_at_batch_bytes() {
    // Proves a partition batch closes before it would pass batch_bytes (so 1 KiB records with
    // 8 KiB batches give at most 8 records a batch) and that the long linger does not hold
    // full batches back.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        cluster.create_topic("sized", 1, -1, &[]).await.unwrap();
        let (reports, callback) = collector();
        let config = ProducerConfig {
            linger: Duration::from_secs(60),
            batch_bytes: 8 << 10,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(cluster, config, callback).await.unwrap();
        let value = vec![7u8; 1000];
        for tag in 0..100 {
            producer
                .send("sized", 0, None, &value, &[], tag)
                .await
                .unwrap();
        }
        // 100 records of ~1 KiB in 8 KiB batches: all but the last batch closed by size, and
        // sent without waiting for the minute-long linger.
        let started = std::time::Instant::now();
        while reports.borrow().len() < 12 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "full batches sent"
            );
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        producer.flush().await.unwrap();
        let reports = reports.borrow();
        assert!(reports.iter().all(|report| report.tags.len() <= 8));
        assert!(
            reports
                .iter()
                .filter(|report| report.tags.len() == 8)
                .count()
                == 12
        );
        assert_all_delivered(&reports, 100, true);
    });
    broker.stop();
}

/// Reads every partition of `topic` from the start until `count` records came back in total
/// (bounded by a deadline), returning each partition's records with their offsets.
async fn consume_all(
    cluster: &Rc<Cluster>,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<Vec<(i64, RecordView, i16)>> {
    let consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
    for partition in 0..partitions {
        consumer
            .assign(topic, partition, StartOffset::Earliest)
            .await
            .unwrap();
    }
    let mut out: Vec<Vec<(i64, RecordView, i16)>> = vec![Vec::new(); partitions as usize];
    let mut total = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while total < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{total} of {count} consumed"
        );
        for fetched in consumer.poll().await.unwrap() {
            assert_eq!(&*fetched.topic, topic);
            let header = spate::protocol::record_batch::validate(&fetched.batch).unwrap();
            assert_eq!(header.base_offset.get(), fetched.base_offset);
            let codec = header.attributes.get() & 0b111;
            for record in fetched.records().unwrap() {
                let offset = fetched.base_offset + i64::from(record.offset_delta);
                out[fetched.partition as usize].push((offset, record, codec));
                total += 1;
            }
            assert_eq!(
                consumer.position(topic, fetched.partition),
                Some(fetched.last_offset + 1).max(consumer.position(topic, fetched.partition))
            );
        }
    }
    out
}

/// Checks that the consumed records are exactly what `produce_all` sent: per partition,
/// offsets 0.. contiguous, indexes in send order, and every key, value and header byte.
fn assert_records_match(consumed: &[Vec<(i64, RecordView, i16)>], count: u64, codec_want: i16) {
    let partitions = consumed.len() as u64;
    let mut total = 0;
    for (partition, records) in consumed.iter().enumerate() {
        for (position, (offset, record, codec)) in records.iter().enumerate() {
            assert_eq!(
                *offset, position as i64,
                "partition {partition}: offsets contiguous"
            );
            assert_eq!(*codec, codec_want, "batch codec");
            let index = position as u64 * partitions + partition as u64;
            let (key, value, header) = record_parts(index);
            assert_eq!(record.key.as_deref(), Some(&key[..]), "key of {index}");
            assert_eq!(
                record.value.as_deref(),
                Some(&value[..]),
                "value of {index}"
            );
            assert_eq!(record.headers.len(), 2);
            assert_eq!(&record.headers[0].0[..], b"index");
            assert_eq!(record.headers[0].1.as_deref(), Some(&header[..]));
            assert_eq!(&record.headers[1].0[..], b"empty");
            assert_eq!(record.headers[1].1, None);
            total += 1;
        }
    }
    assert_eq!(total, count);
}

#[test]
fn round_trip_every_byte_in_order_for_each_codec() {
    // Proves 10k records with keys and headers over 4 partitions come back from the consumer
    // byte for byte, in send order, at contiguous offsets, for no compression, lz4 and zstd
    // (and that the stored batches really carry that codec).
    let broker = broker();
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        for codec in [
            CompressionCodec::None,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
        ] {
            let topic = format!("round-trip-{}", codec.name());
            cluster.create_topic(&topic, 4, -1, &[]).await.unwrap();
            let (reports, callback) = collector();
            let config = ProducerConfig {
                compression: codec,
                batch_bytes: 64 << 10,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(cluster.clone(), config, callback)
                .await
                .unwrap();
            produce_all(&producer, &topic, 4, 10_000).await;
            assert_all_delivered(&reports.borrow(), 10_000, true);
            let consumed = consume_all(&cluster, &topic, 4, 10_000).await;
            assert_records_match(&consumed, 10_000, codec.attribute());
        }
    });
    broker.stop();
}

#[test]
fn consumer_positions_skip_what_was_read() {
    // Proves assign At(offset) in the middle of a batch yields only records from that offset,
    // Latest starts at the end, and a poll with nothing new returns empty after max_wait.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        cluster.create_topic("positions", 1, -1, &[]).await.unwrap();
        let (_reports, callback) = collector();
        let producer = Producer::new(cluster.clone(), ProducerConfig::default(), callback)
            .await
            .unwrap();
        produce_all(&producer, "positions", 1, 100).await;
        let config = ConsumerConfig {
            max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        };
        let consumer = Consumer::new(cluster.clone(), config);
        consumer
            .assign("positions", 0, StartOffset::At(37))
            .await
            .unwrap();
        let mut offsets = Vec::new();
        while offsets.len() < 63 {
            for fetched in consumer.poll().await.unwrap() {
                for record in fetched.records().unwrap() {
                    offsets.push(fetched.base_offset + i64::from(record.offset_delta));
                }
            }
        }
        assert_eq!(offsets, (37..100).collect::<Vec<i64>>());
        assert_eq!(consumer.position("positions", 0), Some(100));
        assert!(consumer.poll().await.unwrap().is_empty());
        consumer
            .assign("positions", 0, StartOffset::Latest)
            .await
            .unwrap();
        assert_eq!(consumer.position("positions", 0), Some(100));
        consumer
            .assign("positions", 0, StartOffset::Earliest)
            .await
            .unwrap();
        assert_eq!(consumer.position("positions", 0), Some(0));
    });
    broker.stop();
}

#[test]
fn producer_recovers_when_the_topic_is_recreated() {
    // Proves a producer sending while its topic is deleted and recreated with a different
    // partition count refreshes metadata, retries, and delivers every record without error,
    // and that the records after the change land in the new topic. Auto-creation is off: a
    // produce racing the deletion would otherwise re-create the topic before the test does.
    let broker = Broker::start_with(BrokerConfig {
        args: vec!["--auto-create-topics".into(), "false".into()],
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        cluster.create_topic("recreated", 4, -1, &[]).await.unwrap();
        let (reports, callback) = collector();
        let config = ProducerConfig {
            linger: Duration::from_millis(1),
            batch_bytes: 4 << 10,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(cluster.clone(), config, callback)
            .await
            .unwrap();
        let admin = Cluster::connect(&bootstrap).await.unwrap();
        let count = 20_000u64;
        for index in 0..count {
            if index == count / 2 {
                admin.delete_topic("recreated").await.unwrap();
                admin.create_topic("recreated", 6, -1, &[]).await.unwrap();
            }
            let value = index.to_be_bytes();
            let partition = (index % 4) as i32;
            producer
                .send("recreated", partition, None, &value, &[], index)
                .await
                .unwrap();
            if index.is_multiple_of(500) {
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
        }
        producer.flush().await.unwrap();
        assert_all_delivered(&reports.borrow(), count, false);
        assert_eq!(admin.partition_count("recreated"), Some(6));
        let consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
        consumer
            .assign("recreated", 0, StartOffset::Earliest)
            .await
            .unwrap();
        let mut last = None;
        while last.is_none() {
            for fetched in consumer.poll().await.unwrap() {
                for record in fetched.records().unwrap() {
                    let value: [u8; 8] = record.value.as_deref().unwrap().try_into().unwrap();
                    last = Some(u64::from_be_bytes(value));
                }
            }
        }
        assert!(
            last.unwrap() >= count / 2,
            "new topic holds records sent after the change"
        );
    });
    broker.stop();
}

#[test]
fn producer_and_consumer_reconnect_after_a_broker_restart() {
    // Proves that when the broker restarts (same ports) while an idempotent acks=all producer
    // is sending, the producer reconnects and every record is delivered exactly once, and a
    // consumer started before the restart reads all of them afterwards.
    let mut broker = Broker::start_with(BrokerConfig {
        ports_fixed: true,
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    let phase = Arc::new(AtomicU8::new(0));
    let client = {
        let phase = phase.clone();
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(1 << 20)
            .ring_depth(64)
            .spawn(move || async move { restart_client(&bootstrap, &phase).await })
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while phase.load(Ordering::SeqCst) != PHASE_PRODUCING {
        assert!(
            std::time::Instant::now() < deadline,
            "client started producing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.restart();
    phase.store(PHASE_RESTARTED, Ordering::SeqCst);
    client.join().unwrap();
    broker.stop();
}

const PHASE_PRODUCING: u8 = 1;
const PHASE_RESTARTED: u8 = 2;

async fn restart_client(bootstrap: &str, phase: &AtomicU8) {
    let cluster = Cluster::connect(bootstrap).await.unwrap();
    cluster.create_topic("restarted", 4, -1, &[]).await.unwrap();
    let consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
    for partition in 0..4 {
        consumer
            .assign("restarted", partition, StartOffset::Earliest)
            .await
            .unwrap();
    }
    assert!(consumer.poll().await.unwrap().is_empty());
    let (reports, callback) = collector();
    let config = ProducerConfig {
        acks: -1,
        idempotent: true,
        linger: Duration::from_millis(1),
        batch_bytes: 4 << 10,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(cluster.clone(), config, callback)
        .await
        .unwrap();
    let mut index = 0u64;
    // Keep sending until the restart is over, and then a little longer.
    let mut after_restart = 0;
    while after_restart < 2_000 {
        if index == 2_000 {
            phase.store(PHASE_PRODUCING, Ordering::SeqCst);
        }
        if phase.load(Ordering::SeqCst) == PHASE_RESTARTED {
            after_restart += 1;
        }
        let partition = (index % 4) as i32;
        producer
            .send(
                "restarted",
                partition,
                None,
                &index.to_be_bytes(),
                &[],
                index,
            )
            .await
            .unwrap();
        index += 1;
        if index.is_multiple_of(100) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
    producer.flush().await.unwrap();
    assert_all_delivered(&reports.borrow(), index, true);
    let mut seen = vec![false; index as usize];
    let mut total = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while total < index {
        assert!(
            std::time::Instant::now() < deadline,
            "{total} of {index} consumed"
        );
        for fetched in consumer.poll().await.unwrap() {
            for record in fetched.records().unwrap() {
                let value: [u8; 8] = record.value.as_deref().unwrap().try_into().unwrap();
                let tag = u64::from_be_bytes(value) as usize;
                assert!(!seen[tag], "record {tag} consumed twice");
                seen[tag] = true;
                total += 1;
            }
        }
    }
}

#[test]
fn send_waits_for_buffer_space_without_stalling_on_linger() {
    // Proves buffer_bytes_max bounds what is queued (send waits) and that a full buffer sends
    // open batches at once rather than waiting out a minute-long linger.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    run_client(move || async move {
        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        cluster.create_topic("bounded", 2, -1, &[]).await.unwrap();
        let (reports, callback) = collector();
        let config = ProducerConfig {
            linger: Duration::from_secs(60),
            batch_bytes: 1 << 20,
            buffer_bytes_max: 4 << 10,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(cluster, config, callback).await.unwrap();
        let started = std::time::Instant::now();
        let value = vec![1u8; 1000];
        for tag in 0..200 {
            producer
                .send("bounded", (tag % 2) as i32, None, &value, &[], tag)
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        let reports = reports.borrow();
        // At most 4 KiB queued at once: no batch can hold more than 4 records of ~1 KiB.
        assert!(reports.iter().all(|report| report.tags.len() <= 4));
        assert_all_delivered(&reports, 200, true);
    });
    broker.stop();
}
