//! The Spate client (src/client/) against a real `spate serve` on loopback.
//!
//! Each test runs its client inside its own glommio executor (small locked memory, unpinned) and
//! the broker as a separate process (tests/common). They prove the client's contract: versions
//! negotiated, metadata and leader routing, every byte of produced records read back in order
//! for each codec and acks level, and recovery from a recreated topic and a restarted broker.

mod common;

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use common::{Broker, BrokerConfig};
use spate::client::{
    ClientError, Cluster, Connection, DeliveryCallback, DeliveryReport, Producer, ProducerConfig,
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
        assert_eq!(connection.version(ApiKey::JoinGroup), None);
        let request = spate::protocol::Request::JoinGroup(Default::default());
        assert!(matches!(
            connection.call(request).await,
            Err(ClientError::UnsupportedApi(ApiKey::JoinGroup))
        ));

        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        assert_eq!(cluster.node_ids().len(), nodes);
        cluster.create_topic("routed", 6, &[]).await.unwrap();
        assert_eq!(cluster.partition_count("routed"), Some(6));
        for partition in 0..6 {
            let leader = cluster.leader("routed", partition).unwrap();
            let connection = cluster.connection(leader).await.unwrap();
            assert!(!connection.is_closed());
        }
        let again = cluster.create_topic("routed", 6, &[]).await.unwrap_err();
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
            cluster.create_topic(&topic, 4, &[]).await.unwrap();
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
        cluster.create_topic("sized", 1, &[]).await.unwrap();
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
