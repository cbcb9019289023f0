//! Real clients against a partition holding Spate's Raft control batches (issue 13's choice of
//! control batches over an offset translator): librdkafka and kcat consumers read every data
//! record around them, at the offsets the log gave them, and never see the control records.
//!
//! The control batches are written into a stopped broker's partition the way a replica writes
//! them (`PartitionLog::append_replica`), then the broker serves the partition again.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{
    Broker, BrokerConfig, consume, consumer, create_topic, flush_all_delivered, producer,
    run_with_timeout, send, watermarks,
};
use glommio::{LocalExecutorBuilder, Placement};
use rdkafka::Offset;
use rdkafka::producer::BaseRecord;
use spate::config::{TopicConfig, TopicDefaults};
use spate::log::{PartitionLog, ShardCache};
use spate::protocol::control_batch::{self, CONTROL_TYPE_RAFT_BLANK, CONTROL_TYPE_RAFT_MEMBERSHIP};
use spate::protocol::record_batch;
use spate::protocol::records::{BatchBuilder, Record};

const TOPIC: &str = "raft-entries";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A data batch of `values`.
fn data_batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(common::now_ms());
    for value in values {
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

/// `batch` with the base offset and leader epoch a leader would have given it.
fn placed(batch: Bytes, base_offset: i64, epoch: i32) -> Bytes {
    let mut bytes = BytesMut::from(&batch[..]);
    record_batch::assign(&mut bytes, base_offset, epoch).unwrap();
    bytes.freeze()
}

/// Appends, as a replica of epoch 1 would, to the closed partition in `dir`: a blank entry, a
/// data batch (b0, b1), a membership entry and a data batch (c0). Returns the log end.
fn append_raft_entries(data_dir: PathBuf, partition_dir: PathBuf) -> i64 {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(64)
        .spawn(move || async move {
            spate::io::probe::write_probe_file(&data_dir).unwrap();
            spate::io::probe::probe_iopoll(&data_dir).await.unwrap();
            let config = TopicConfig::from_defaults(&TopicDefaults::default());
            let log = PartitionLog::open(partition_dir, config, Rc::new(ShardCache::new(0)))
                .await
                .unwrap();
            log.begin_epoch(1).await.unwrap();
            let now = common::now_ms();
            let batches = [
                control_batch::build(CONTROL_TYPE_RAFT_BLANK, None, now),
                data_batch(&["b0", "b1"]),
                control_batch::build(
                    CONTROL_TYPE_RAFT_MEMBERSHIP,
                    Some(b"{\"voters\":[1,2,3]}"),
                    now,
                ),
                data_batch(&["c0"]),
            ];
            let mut last = None;
            for batch in batches {
                let batch = placed(batch, log.log_end_offset(), 1);
                last = Some(log.append_replica(batch, now).unwrap());
            }
            log.wait_durable(&last.unwrap()).await.unwrap();
            let end = log.log_end_offset();
            log.close().await.unwrap();
            end
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn consumers_skip_raft_control_batches_and_keep_the_offsets() {
    // Proves what the replicated log's layout relies on: with a blank and a membership entry
    // stored as control batches between data batches, an rdkafka consumer and kcat read exactly
    // the data records at their stored offsets (5 and 8 are skipped), the high watermark counts
    // the control offsets, and producing afterwards continues at the log end.
    let mut broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ports_fixed: true,
        args: Vec::new(),
    });
    create_topic(&broker.bootstrap(), TOPIC, 1, &[]);
    let producer_a = producer(&broker.bootstrap(), &[("acks", "all")]);
    let values: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    for (id, value) in values.iter().enumerate() {
        let record = BaseRecord::with_opaque_to(TOPIC, id)
            .partition(0)
            .key(&b""[..])
            .payload(value.as_bytes());
        send(&producer_a, record);
    }
    flush_all_delivered(&producer_a, values.len());
    drop(producer_a);
    broker.kill9();
    let end = append_raft_entries(
        broker.data_dir().to_path_buf(),
        broker.data_dir().join(format!("{TOPIC}-0")),
    );
    assert_eq!(end, 10);
    broker.start_again();

    let expected: Vec<(i64, String)> = [
        (0, "a0"),
        (1, "a1"),
        (2, "a2"),
        (3, "a3"),
        (4, "a4"),
        (6, "b0"),
        (7, "b1"),
        (9, "c0"),
    ]
    .iter()
    .map(|(offset, value)| (*offset, value.to_string()))
    .collect();
    let reader = consumer(&broker.bootstrap(), &[]);
    let records = consume(
        &reader,
        TOPIC,
        &[(0, Offset::Beginning)],
        &[expected.len()],
        TIMEOUT,
        Duration::from_millis(500),
    );
    let got: Vec<(i64, String)> = records[&0]
        .iter()
        .map(|record| {
            (
                record.offset,
                String::from_utf8(record.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(watermarks(&reader, TOPIC, 0), (0, 10));

    let mut kcat = Command::new("kcat");
    kcat.args([
        "-b",
        &broker.bootstrap(),
        "-C",
        "-t",
        TOPIC,
        "-p",
        "0",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%o %s\\n",
    ]);
    let output = run_with_timeout(&mut kcat, b"", TIMEOUT);
    assert!(
        output.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = expected
        .iter()
        .map(|(offset, value)| format!("{offset} {value}"))
        .collect();
    assert_eq!(lines, want);

    let producer_d = producer(&broker.bootstrap(), &[("acks", "all")]);
    let record = BaseRecord::with_opaque_to(TOPIC, 0)
        .partition(0)
        .key(&b""[..])
        .payload(&b"d0"[..]);
    send(&producer_d, record);
    let delivered = flush_all_delivered(&producer_d, 1);
    assert_eq!(delivered[0].offset, 10);
    broker.stop();
}
