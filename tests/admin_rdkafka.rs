//! The admin APIs through librdkafka's AdminClient (rdkafka crate), as admin tools use them:
//! topic configs set at creation and described with their sources, broker configs described,
//! partitions added and used, records deleted. (rdkafka 0.39 has no IncrementalAlterConfigs;
//! tests/admin_wire.rs covers it with raw frames.)

mod common;

use std::time::Duration;

use common::{
    Broker, BrokerConfig, TestContext, client_config, consume, consumer, create_topic,
    flush_all_delivered, producer, send, wait_for_leaders, watermarks,
};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResource, ConfigSource, NewPartitions, ResourceSpecifier,
};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

fn admin(bootstrap: &str) -> AdminClient<TestContext> {
    client_config(bootstrap)
        .create_with_context(TestContext::new("admin"))
        .expect("create admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)))
}

fn describe(admin: &AdminClient<TestContext>, resource: ResourceSpecifier<'_>) -> ConfigResource {
    let results = futures_executor::block_on(admin.describe_configs([&resource], &options()))
        .expect("DescribeConfigs request");
    assert_eq!(results.len(), 1);
    results
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|code| panic!("DescribeConfigs {resource:?}: {code:?}"))
}

/// Produces `count` records to one partition and waits for every delivery.
fn produce(bootstrap: &str, topic: &str, partition: i32, count: usize) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    for i in 0..count {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .partition(partition)
                .payload(value.as_bytes()),
        );
    }
    let deliveries = flush_all_delivered(&producer, count);
    assert!(deliveries.iter().all(|d| d.partition == partition));
}

#[test]
fn admin_client_describes_topic_and_broker_configs() {
    // Proves configs given at creation are described as DynamicTopic with their values, the
    // rest as defaults (is_default), and the broker's defaults are read-only Kafka broker names.
    let broker = Broker::start_with(BrokerConfig {
        args: vec!["--log-segment-bytes".into(), "8388608".into()],
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "configured",
        2,
        &[
            ("retention.ms", "86400000"),
            ("max.message.bytes", "2000000"),
        ],
    );
    let admin = admin(&bootstrap);
    let topic = describe(&admin, ResourceSpecifier::Topic("configured"));
    let retention = topic.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert!(!retention.is_default && !retention.is_read_only);
    let max_message = topic.get("max.message.bytes").expect("max.message.bytes");
    assert_eq!(max_message.value.as_deref(), Some("2000000"));
    assert_eq!(max_message.source, ConfigSource::DynamicTopic);
    let segment = topic.get("segment.bytes").expect("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("8388608"));
    assert_eq!(segment.source, ConfigSource::StaticBroker);
    let timestamps = topic.get("message.timestamp.type").expect("timestamp type");
    assert_eq!(timestamps.value.as_deref(), Some("CreateTime"));
    assert_eq!(timestamps.source, ConfigSource::Default);
    assert!(timestamps.is_default);

    let node = describe(&admin, ResourceSpecifier::Broker(0));
    let segment = node.get("log.segment.bytes").expect("log.segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("8388608"));
    assert!(segment.is_read_only);
    assert!(node.get("log.retention.ms").is_some());

    // rdkafka 0.39 drops the per-resource error (tests/admin_wire.rs checks its code): an
    // unknown topic comes back with no entries.
    let missing = describe(&admin, ResourceSpecifier::Topic("nonexistent"));
    assert!(missing.entries.is_empty(), "{missing:?}");
    broker.stop();
}

#[test]
fn admin_client_adds_partitions_that_producers_and_consumers_use() {
    // Proves create_partitions grows a topic, Metadata shows the new partitions with leaders,
    // and a record produced to the new last partition is consumed from it; shrinking is refused.
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "growing", 1, &[]);
    let admin = admin(&bootstrap);
    let grow = NewPartitions::new("growing", 3);
    let results = futures_executor::block_on(admin.create_partitions([&grow], &options()))
        .expect("CreatePartitions request");
    assert_eq!(results, vec![Ok("growing".to_owned())]);
    wait_for_leaders(&bootstrap, "growing", 3);
    produce(&bootstrap, "growing", 2, 5);
    let consumer = consumer(&bootstrap, &[]);
    let records = consume(
        &consumer,
        "growing",
        &[(2, Offset::Beginning)],
        &[5],
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    let offsets: Vec<i64> = records[&2].iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_eq!(records[&2][0].value.as_deref(), Some(&b"value-0"[..]));

    let shrink = NewPartitions::new("growing", 2);
    let results = futures_executor::block_on(admin.create_partitions([&shrink], &options()))
        .expect("CreatePartitions request");
    assert!(results[0].is_err(), "{results:?}");
    broker.stop();
}

#[test]
fn admin_client_deletes_records_and_consumers_start_after_them() {
    // Proves delete_records answers the new low watermark, and a consumer starting from the
    // earliest offset begins at it.
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "trimmed", 2, &[]);
    produce(&bootstrap, "trimmed", 1, 10);
    let admin = admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("trimmed", 1, Offset::Offset(4))
        .unwrap();
    let deleted = futures_executor::block_on(admin.delete_records(&offsets, &options()))
        .expect("DeleteRecords request");
    let element = deleted.find_partition("trimmed", 1).expect("partition 1");
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(4));
    let consumer = consumer(&bootstrap, &[]);
    assert_eq!(watermarks(&consumer, "trimmed", 1), (4, 10));
    let records = consume(
        &consumer,
        "trimmed",
        &[(1, Offset::Beginning)],
        &[6],
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    let offsets: Vec<i64> = records[&1].iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![4, 5, 6, 7, 8, 9]);
    broker.stop();
}
