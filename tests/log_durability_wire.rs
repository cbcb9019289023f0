//! The partition log's promises at the wire level, with raw frames against a real `spate serve`:
//! idempotent producers stay deduplicated across a SIGKILL under load after many segment rolls,
//! a batch that rots on disk while the broker runs takes only its partition offline, idle
//! producers expire after `--producer-id-expiration-ms`, and InitProducerId never lets one client
//! bump another producer's epoch.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::init_producer_id::InitProducerIdRequest;
use spate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::{Request, Response};

use common::wire::{Wire, produce};
use common::{Broker, BrokerConfig, StopOnDrop, now_ms};

const KAFKA_STORAGE_ERROR: i16 = 56;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_REQUEST: i16 = 42;

/// A batch of one `value`; idempotent when `producer` is (id, epoch, base sequence).
fn batch(value: &[u8], producer: Option<(i64, i16, i32)>, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp_ms);
    if let Some((producer_id, producer_epoch, base_sequence)) = producer {
        builder.idempotent(producer_id, producer_epoch, base_sequence);
    }
    builder.push(&Record {
        timestamp_delta: 0,
        key: None,
        value: Some(value),
        headers: &[],
    });
    builder.finish()
}

/// Produce v9 of one batch: (error code, base offset).
fn produce_call(wire: &mut Wire, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let Response::Produce(response) = wire.call(9, produce(topic, partition, records, -1)) else {
        panic!("not a produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// Fetch v11 of one partition from `offset`: its error code.
fn fetch_error(wire: &mut Wire, topic: &str, partition: i32, offset: i64) -> i16 {
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 16,
                ..FetchPartition::default()
            }],
        }],
        ..FetchRequest::default()
    });
    let Response::Fetch(response) = wire.call(11, request) else {
        panic!("not a fetch response");
    };
    response.responses[0].partitions[0].error_code
}

/// ListOffsets latest of one partition: its log end offset.
fn log_end(wire: &mut Wire, topic: &str, partition: i32) -> i64 {
    wire.list_offset(topic, partition, -1)
}

/// InitProducerId v4 naming `producer_id` and `producer_epoch`: (error code, id, epoch).
fn init_producer_id(wire: &mut Wire, producer_id: i64, producer_epoch: i16) -> (i16, i64, i16) {
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id,
        producer_epoch,
    });
    let Response::InitProducerId(response) = wire.call(4, request) else {
        panic!("not an InitProducerId response");
    };
    (
        response.error_code,
        response.producer_id,
        response.producer_epoch,
    )
}

/// The broker on one shard, so every partition is reachable through the bootstrap address.
fn one_shard_broker(args: &[&str]) -> Broker {
    Broker::start_with(BrokerConfig {
        cores: 1,
        args: args.iter().map(|arg| arg.to_string()).collect(),
        ..BrokerConfig::default()
    })
}

#[test]
fn idempotent_retries_stay_duplicates_after_sigkill_under_load_across_rolls() {
    // Proves idempotence survives an unclean stop: in two partitions with 16 KiB segments, an
    // idempotent producer's 40 batches are followed by enough other data to roll several more
    // segments, and the broker is SIGKILLed while a second connection keeps producing. After the
    // restart, re-sent acknowledged batches are answered as duplicates with their original
    // offsets and nothing is appended; the next sequence is accepted at the log end.
    let mut broker = one_shard_broker(&[]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(
        wire.create_topic("idem", 3, &[("segment.bytes", "16384")]),
        0
    );
    let (error, producer_id, epoch) = init_producer_id(&mut wire, -1, -1);
    assert_eq!(error, 0);
    let value = vec![5u8; 600];
    let filler = vec![6u8; 4000];
    let mut acknowledged = Vec::new();
    for partition in 0..2 {
        let mut offsets = Vec::new();
        for sequence in 0..40 {
            let records = batch(&value, Some((producer_id, epoch, sequence)), now_ms());
            let (error, base_offset) = produce_call(&mut wire, "idem", partition, records);
            assert_eq!(error, 0);
            offsets.push(base_offset);
        }
        for _ in 0..20 {
            let (error, _) = produce_call(&mut wire, "idem", partition, batch(&filler, None, 0));
            assert_eq!(error, 0);
        }
        acknowledged.push(offsets);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let load = {
        let address = broker.bootstrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut wire = Wire::connect(&address);
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let request = produce("idem", 2, batch(&[7u8; 2000], None, 0), 1);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wire.call(9, request)))
                    .is_err()
                {
                    break; // The broker was killed mid-request.
                }
                sent += 1;
            }
            sent
        })
    };
    thread::sleep(Duration::from_millis(300));
    broker.kill9();
    stop.store(true, Ordering::Relaxed);
    assert!(load.join().unwrap() > 0, "load was running at the kill");
    broker.start_again();

    let mut wire = Wire::connect(&broker.bootstrap());
    for (partition, offsets) in acknowledged.iter().enumerate() {
        let partition = partition as i32;
        let end = log_end(&mut wire, "idem", partition);
        for sequence in [35, 39] {
            let records = batch(&value, Some((producer_id, epoch, sequence)), now_ms());
            let answer = produce_call(&mut wire, "idem", partition, records);
            assert_eq!(
                answer,
                (0, offsets[sequence as usize]),
                "partition {partition} sequence {sequence}"
            );
        }
        assert_eq!(
            log_end(&mut wire, "idem", partition),
            end,
            "nothing appended"
        );
        let records = batch(&value, Some((producer_id, epoch, 40)), now_ms());
        assert_eq!(
            produce_call(&mut wire, "idem", partition, records),
            (0, end)
        );
    }
    broker.stop();
}

#[test]
fn a_batch_rotting_on_disk_while_served_takes_only_its_partition_offline() {
    // Proves corruption found while serving: a byte flipped in a closed segment on disk while
    // the broker runs (a small cache, so the fetch reads the disk) makes that fetch answer
    // KAFKA_STORAGE_ERROR, logs an ERROR naming the file and the batch's offset, and takes the
    // partition offline (Metadata, Produce and Fetch say so) while the other partition serves;
    // the refusals that follow are logged as one rate-limited WARN, not one line per request.
    let broker = one_shard_broker(&["--cache-bytes-per-shard", "65536"]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(
        wire.create_topic("rot", 2, &[("segment.bytes", "16384")]),
        0
    );
    let value = vec![3u8; 1000];
    for _ in 0..200 {
        assert_eq!(
            produce_call(&mut wire, "rot", 0, batch(&value, None, 0)).0,
            0
        );
    }
    assert_eq!(
        produce_call(&mut wire, "rot", 1, batch(b"fine", None, 0)),
        (0, 0)
    );
    let log_path = broker
        .data_dir()
        .join("rot-0")
        .join("00000000000000000000.log");
    let bytes = std::fs::read(&log_path).unwrap();
    let batch_bytes = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
    let damaged_offset = 3;
    let position = damaged_offset * batch_bytes + batch_bytes / 2;
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&log_path)
            .unwrap();
        file.write_at(&[bytes[position] ^ 0x40], position as u64)
            .unwrap();
        file.sync_all().unwrap();
    }
    assert_eq!(
        fetch_error(&mut wire, "rot", 0, damaged_offset as i64),
        KAFKA_STORAGE_ERROR
    );
    for _ in 0..50 {
        assert_eq!(fetch_error(&mut wire, "rot", 0, 0), KAFKA_STORAGE_ERROR);
    }
    let (error, _) = produce_call(&mut wire, "rot", 0, batch(b"lost?", None, 0));
    assert_eq!(error, KAFKA_STORAGE_ERROR);
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("rot".into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(metadata) = wire.call(12, request) else {
        panic!("not a metadata response");
    };
    assert_eq!(
        metadata.topics[0].partitions[0].error_code,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(metadata.topics[0].partitions[1].error_code, 0);
    assert_eq!(
        produce_call(&mut wire, "rot", 1, batch(b"ok", None, 0)),
        (0, 1)
    );
    assert_eq!(fetch_error(&mut wire, "rot", 1, 0), 0);

    let log = broker.log_tail(400);
    let error_line = log
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("failed its check"))
        .unwrap_or_else(|| panic!("no ERROR line:\n{log}"));
    assert!(
        error_line.contains("rot-0/00000000000000000000.log")
            && error_line.contains(&format!("offset {damaged_offset} ")),
        "{error_line}"
    );
    let warnings = log
        .lines()
        .filter(|line| line.contains("refusing requests for an offline partition"))
        .count();
    assert_eq!(warnings, 1, "52 refusals, one rate-limited WARN:\n{log}");
    broker.stop();
}

#[test]
fn idle_producers_expire_after_producer_id_expiration_ms() {
    // Proves --producer-id-expiration-ms: while a producer's last batch is younger than it, a
    // sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER; once older (checked at every retention
    // check), its state is forgotten and the same batch is accepted.
    let broker = one_shard_broker(&[
        "--producer-id-expiration-ms",
        "2000",
        "--log-retention-check-interval-ms",
        "100",
    ]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("expiry", 1, &[]), 0);
    let (error, producer_id, epoch) = init_producer_id(&mut wire, -1, -1);
    assert_eq!(error, 0);
    let sent_ms = now_ms();
    let first = batch(b"a", Some((producer_id, epoch, 0)), sent_ms);
    assert_eq!(produce_call(&mut wire, "expiry", 0, first), (0, 0));
    let gap = || batch(b"b", Some((producer_id, epoch, 7)), now_ms());
    let (error, _) = produce_call(&mut wire, "expiry", 0, gap());
    assert_eq!(error, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = produce_call(&mut wire, "expiry", 0, gap());
        if answer.0 == 0 {
            assert_eq!(answer.1, 1);
            break;
        }
        assert_eq!(answer.0, OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(Instant::now() < deadline, "the producer never expired");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(now_ms() - sent_ms >= 2000, "expired too early");
    broker.stop();
}

#[test]
fn init_producer_id_never_bumps_a_named_producers_epoch() {
    // Proves InitProducerId (v3+, KIP-360) for a producer without a transactional id answers as
    // Kafka's coordinator does: a fresh producer id at epoch 0 whatever id and epoch the request
    // names, so no client can fence another producer by naming its id; naming only one of the two
    // is INVALID_REQUEST. The first producer keeps producing at its epoch.
    let broker = one_shard_broker(&[]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("fence", 1, &[]), 0);
    let (error, victim, epoch) = init_producer_id(&mut wire, -1, -1);
    assert_eq!((error, epoch), (0, 0));
    let records = batch(b"one", Some((victim, 0, 0)), now_ms());
    assert_eq!(produce_call(&mut wire, "fence", 0, records), (0, 0));

    let mut attacker = Wire::connect(&broker.bootstrap());
    for named_epoch in [0, 5] {
        let (error, producer_id, epoch) = init_producer_id(&mut attacker, victim, named_epoch);
        assert_eq!(error, 0);
        assert_ne!(producer_id, victim, "a named id is never handed out again");
        assert_eq!(epoch, 0);
    }
    assert_eq!(
        init_producer_id(&mut attacker, victim, -1).0,
        INVALID_REQUEST
    );
    assert_eq!(init_producer_id(&mut attacker, -1, 0).0, INVALID_REQUEST);

    let records = batch(b"two", Some((victim, 0, 1)), now_ms());
    assert_eq!(produce_call(&mut wire, "fence", 0, records), (0, 1));
    broker.stop();
}
