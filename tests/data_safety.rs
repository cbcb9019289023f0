//! Start-up never loses or poisons data: the data-dir lock refuses a second broker, a damaged
//! metadata log or offset store followed by valid records refuses to start (naming the file and
//! position) unless an `--unsafe-truncate-corrupt-*` flag asks to cut it, a torn tail (what a
//! crash leaves) starts, and a partition directory is removed only when the metadata log
//! records its topic's deletion. Real `spate serve` processes on real files.

mod common;

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::messages::delete_topics::DeleteTopicsRequest;
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::list_groups::ListGroupsRequest;
use spate::protocol::messages::metadata::MetadataRequest;
use spate::protocol::messages::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    OffsetCommitResponse,
};
use spate::protocol::messages::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::{Request, Response};

use common::wire::Wire;
use common::{BROKER_START_TIMEOUT, Broker, BrokerConfig};

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

/// A one-shard broker (so every group and partition lives in shard 0's files).
fn one_shard() -> Broker {
    Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    })
}

/// How a manually started `spate serve` ended up.
enum Serve {
    /// It exited before serving.
    Exited(ExitStatus, String),
    /// It serves; the child and its bootstrap address.
    Serving(Child, String),
}

/// Runs `spate serve` on `data_dir` with one shard and `args`, its output in `log`, until it
/// exits or serves (bounded).
fn serve(data_dir: &Path, log: &Path, args: &[&str]) -> Serve {
    let listeners = data_dir.join("listeners");
    let _ = fs::remove_file(&listeners);
    let output = File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--port", "0", "--cores", "1", "--host", "127.0.0.1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + BROKER_START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Serve::Exited(status, fs::read_to_string(log).unwrap());
        }
        if let Ok(text) = fs::read_to_string(&listeners)
            && let Some(address) = text.lines().next().and_then(|l| l.split(' ').nth(1))
        {
            return Serve::Serving(child, address.trim().to_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "spate serve neither served nor exited:\n{}",
                fs::read_to_string(log).unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The broker's refusal: it must exit non-zero before serving; returns its output.
fn refused(data_dir: &Path, log: &Path, args: &[&str]) -> String {
    match serve(data_dir, log, args) {
        Serve::Exited(status, output) => {
            assert!(!status.success(), "exited {status}:\n{output}");
            output
        }
        Serve::Serving(mut child, _) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker started:\n{}", fs::read_to_string(log).unwrap());
        }
    }
}

/// SIGTERMs a manually started broker and expects a clean exit.
fn stop(mut child: Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: `pid` is our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "exited {status} after SIGTERM");
}

fn log_path(broker: &Broker, name: &str) -> PathBuf {
    broker.data_dir().parent().unwrap().join(name)
}

fn batch(value: &[u8]) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    builder.push(&Record {
        timestamp_delta: 0,
        key: None,
        value: Some(value),
        headers: &[],
    });
    builder.finish()
}

/// Produces one record with acks=all: (error code, base offset).
fn produce(wire: &mut Wire, topic: &str, value: &[u8]) -> (i16, i64) {
    let request = Request::Produce(ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch(value)),
            }],
        }],
    });
    let Response::Produce(response) = wire.call(8, request) else {
        panic!("not a produce response");
    };
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// Fetches partition 0 from offset 0: (error code, high watermark, record bytes).
fn fetch(wire: &mut Wire, topic: &str) -> (i16, i64, usize) {
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 100,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                ..FetchPartition::default()
            }],
        }],
        ..FetchRequest::default()
    });
    let Response::Fetch(response) = wire.call(11, request) else {
        panic!("not a fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    let bytes = partition.records.as_ref().map_or(0, |r| r.len());
    (partition.error_code, partition.high_watermark, bytes)
}

/// The topic names Metadata lists.
fn topic_names(wire: &mut Wire) -> Vec<String> {
    let request = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(metadata) = wire.call(12, request) else {
        panic!("not a metadata response");
    };
    let mut names: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|t| t.name.clone())
        .collect();
    names.sort();
    names
}

/// Waits until the shard's group coordinator has loaded its offset store.
fn wait_for_groups(wire: &mut Wire) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let Response::ListGroups(listed) =
            wire.call(4, Request::ListGroups(ListGroupsRequest::default()))
        else {
            panic!("not a ListGroups response");
        };
        if listed.error_code == 0 {
            return;
        }
        assert_eq!(listed.error_code, COORDINATOR_LOAD_IN_PROGRESS);
        assert!(Instant::now() < deadline, "offset store never loaded");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Commits `offset` for partition 0 of `topic` outside group management; the error code.
fn commit(wire: &mut Wire, group: &str, topic: &str, offset: i64, metadata_bytes: usize) -> i16 {
    let request = Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_metadata: Some("m".repeat(metadata_bytes)),
                ..OffsetCommitRequestPartition::default()
            }],
        }],
        ..OffsetCommitRequest::default()
    });
    let Response::OffsetCommit(OffsetCommitResponse { topics, .. }) = wire.call(8, request) else {
        panic!("not an OffsetCommit response");
    };
    topics[0].partitions[0].error_code
}

/// The committed offset of partition 0 of `topic` for `group` (-1 if none).
fn committed(wire: &mut Wire, group: &str, topic: &str) -> i64 {
    let request = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.into(),
            partition_indexes: vec![0],
        }]),
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(response) = wire.call(5, request) else {
        panic!("not an OffsetFetch response");
    };
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

/// Where each record of a `u32 length, u32 crc, payload` log starts, and where they end.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut position = 0;
    while position + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[position..position + 4].try_into().unwrap()) as usize;
        if len == 0 || position + 8 + len > bytes.len() {
            break;
        }
        starts.push(position);
        position += 8 + len;
    }
    starts.push(position);
    starts
}

fn metadata_log(broker: &Broker) -> PathBuf {
    broker.data_dir().join("__meta").join("metadata.log")
}

fn offsets_log(broker: &Broker) -> PathBuf {
    broker
        .data_dir()
        .join("__groups")
        .join("shard-0")
        .join("offsets.log")
}

/// Creates topics with one partition and one record each.
fn topics_with_data(broker: &Broker, names: &[&str]) {
    let mut wire = Wire::connect(&broker.bootstrap());
    for name in names {
        assert_eq!(wire.create_topic(name, 1, &[]), 0);
        assert_eq!(produce(&mut wire, name, name.as_bytes()), (0, 0));
    }
}

fn assert_dirs_exist(broker: &Broker, names: &[&str]) {
    for name in names {
        let dir = broker.data_dir().join(name);
        assert!(dir.is_dir(), "{} was removed", dir.display());
    }
}

#[test]
fn a_second_broker_on_a_held_data_dir_is_refused_and_the_first_keeps_serving() {
    // Proves the data-dir lock: a second `spate serve` on a data dir a running broker holds
    // exits non-zero with one line naming the holder's pid (the running broker's), and the
    // first broker keeps serving produce and fetch with its data intact.
    let broker = one_shard();
    topics_with_data(&broker, &["held"]);
    let holder_pid = fs::read_to_string(broker.data_dir().join("lock"))
        .unwrap()
        .trim()
        .to_owned();
    let cmdline = fs::read(format!("/proc/{holder_pid}/cmdline")).unwrap();
    let data_dir = broker.data_dir().to_str().unwrap().as_bytes().to_vec();
    assert!(
        cmdline.windows(data_dir.len()).any(|w| w == data_dir),
        "the lock's pid {holder_pid} is not the running broker"
    );
    let output = refused(broker.data_dir(), &log_path(&broker, "second.log"), &[]);
    let line = output
        .lines()
        .find(|line| line.starts_with("spate serve:"))
        .unwrap_or_else(|| panic!("no error line:\n{output}"));
    assert!(line.contains(&format!("pid {holder_pid}")), "{line}");
    assert!(line.contains("in use by another broker"), "{line}");
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(produce(&mut wire, "held", b"after"), (0, 1));
    let (error, high_watermark, bytes) = fetch(&mut wire, "held");
    assert_eq!((error, high_watermark), (0, 2));
    assert!(bytes > 0);
    broker.stop();
}

#[test]
fn a_flipped_byte_in_the_metadata_log_refuses_to_start_and_removes_nothing() {
    // Proves a damaged middle record of the metadata log (valid records after it) makes start
    // refuse with the file and the record's position, removing no topic directory; with
    // --unsafe-truncate-corrupt-metadata the broker starts on the intact prefix and still
    // removes no directory (their deletion is not recorded), keeping and logging them.
    let mut broker = one_shard();
    topics_with_data(&broker, &["alpha", "beta", "gamma"]);
    broker.kill9();
    let path = metadata_log(&broker);
    let mut bytes = fs::read(&path).unwrap();
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 4, "three records");
    let damaged = starts[1];
    bytes[damaged + 8 + 5] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let all = ["alpha-0", "beta-0", "gamma-0"];

    let output = refused(broker.data_dir(), &log_path(&broker, "refused.log"), &[]);
    assert!(output.contains(&path.display().to_string()), "{output}");
    assert!(
        output.contains(&format!("file position {damaged}")),
        "{output}"
    );
    assert!(
        output.contains("--unsafe-truncate-corrupt-metadata"),
        "{output}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a refused start changed the log"
    );
    assert_dirs_exist(&broker, &all);

    let log = log_path(&broker, "unsafe.log");
    let Serve::Serving(child, bootstrap) = serve(
        broker.data_dir(),
        &log,
        &["--unsafe-truncate-corrupt-metadata"],
    ) else {
        panic!("did not start:\n{}", fs::read_to_string(&log).unwrap());
    };
    let mut wire = Wire::connect(&bootstrap);
    assert_eq!(topic_names(&mut wire), vec!["alpha"]);
    assert_eq!(fetch(&mut wire, "alpha").1, 1);
    stop(child);
    assert_dirs_exist(&broker, &all);
    let output = fs::read_to_string(&log).unwrap();
    assert!(output.contains("keeping a partition directory"), "{output}");
    assert!(output.contains("beta-0"), "{output}");
}

#[test]
fn a_torn_metadata_log_tail_starts_and_keeps_every_topic_directory() {
    // Proves a metadata log cut inside its last record (a crash mid-write) starts, serves the
    // intact topics, and keeps the directory of the topic whose record was torn.
    let mut broker = one_shard();
    topics_with_data(&broker, &["first", "second"]);
    broker.kill9();
    let path = metadata_log(&broker);
    let len = fs::metadata(&path).unwrap().len();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    broker.start_again();
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(topic_names(&mut wire), vec!["first"]);
    assert_eq!(fetch(&mut wire, "first").1, 1);
    assert_dirs_exist(&broker, &["first-0", "second-0"]);
    broker.stop();
}

#[test]
fn a_flipped_byte_in_an_offset_store_refuses_to_start_and_drops_no_commit() {
    // Proves a damaged first record of a group offset store, with more than one write's reach
    // of valid records after it, makes start refuse with the file and position and leaves the
    // store untouched; --unsafe-truncate-corrupt-offsets starts it.
    let mut broker = one_shard();
    topics_with_data(&broker, &["t"]);
    let mut wire = Wire::connect(&broker.bootstrap());
    wait_for_groups(&mut wire);
    // 300 commits of ~4 KiB: 1.2 MB of records, beyond the 1 MiB reach of a torn write.
    for group in 0..300 {
        assert_eq!(commit(&mut wire, &format!("g{group}"), "t", group, 4000), 0);
    }
    broker.kill9();
    let path = offsets_log(&broker);
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let output = refused(broker.data_dir(), &log_path(&broker, "refused.log"), &[]);
    assert!(output.contains(&path.display().to_string()), "{output}");
    assert!(output.contains("file position 0"), "{output}");
    assert!(
        output.contains("--unsafe-truncate-corrupt-offsets"),
        "{output}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a refused start changed the store"
    );
    assert_dirs_exist(&broker, &["t-0"]);

    let log = log_path(&broker, "unsafe.log");
    let Serve::Serving(child, bootstrap) = serve(
        broker.data_dir(),
        &log,
        &["--unsafe-truncate-corrupt-offsets"],
    ) else {
        panic!("did not start:\n{}", fs::read_to_string(&log).unwrap());
    };
    let mut wire = Wire::connect(&bootstrap);
    wait_for_groups(&mut wire);
    assert_eq!(
        committed(&mut wire, "g0", "t"),
        -1,
        "the cut store kept the damaged commit"
    );
    stop(child);
}

#[test]
fn a_torn_offset_store_tail_starts_with_every_acknowledged_commit() {
    // Proves a half-written record after the last commit (a crash mid-write) starts and every
    // acknowledged commit is still there.
    let mut broker = one_shard();
    topics_with_data(&broker, &["t"]);
    let mut wire = Wire::connect(&broker.bootstrap());
    wait_for_groups(&mut wire);
    for (group, offset) in [("a", 5), ("b", 7), ("a", 9)] {
        assert_eq!(commit(&mut wire, group, "t", offset, 10), 0);
    }
    broker.kill9();
    let path = offsets_log(&broker);
    let mut bytes = fs::read(&path).unwrap();
    let end = *record_starts(&bytes).last().unwrap();
    bytes[end..end + 4].copy_from_slice(&200u32.to_le_bytes());
    bytes[end + 4..end + 60].fill(0x5a);
    fs::write(&path, &bytes).unwrap();
    broker.start_again();
    let mut wire = Wire::connect(&broker.bootstrap());
    wait_for_groups(&mut wire);
    assert_eq!(committed(&mut wire, "a", "t"), 9);
    assert_eq!(committed(&mut wire, "b", "t"), 7);
    broker.stop();
}

#[test]
fn only_directories_of_recorded_deletions_are_removed_at_start() {
    // Proves DeleteTopics removes the topic's directory, a leftover directory of that deleted
    // topic (an interrupted deletion) is removed at the next start, and a `<topic>-<n>`
    // directory no record explains is kept, with its files, and logged; creating that topic
    // later moves the kept directory aside rather than wiping it.
    let mut broker = one_shard();
    topics_with_data(&broker, &["gone", "stays"]);
    let mut wire = Wire::connect(&broker.bootstrap());
    let Response::DeleteTopics(response) = wire.call(
        4,
        Request::DeleteTopics(DeleteTopicsRequest {
            topic_names: vec!["gone".into()],
            timeout_ms: 10_000,
            ..DeleteTopicsRequest::default()
        }),
    ) else {
        panic!("not a DeleteTopics response");
    };
    assert_eq!(response.responses[0].error_code, 0);
    assert!(!broker.data_dir().join("gone-0").exists());
    broker.kill9();
    for leftover in ["gone-0", "gone-3", "stranger-0"] {
        let dir = broker.data_dir().join(leftover);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("00000000000000000000.log"), b"data").unwrap();
    }
    broker.start_again();
    assert!(!broker.data_dir().join("gone-0").exists());
    assert!(!broker.data_dir().join("gone-3").exists());
    let kept = broker
        .data_dir()
        .join("stranger-0/00000000000000000000.log");
    assert_eq!(fs::read(&kept).unwrap(), b"data");
    assert_dirs_exist(&broker, &["stays-0"]);
    let log = fs::read_to_string(log_path(&broker, "broker.log")).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains("keeping a partition directory")
                && line.contains("stranger-0")),
        "not logged"
    );
    // Creating a topic over the kept directory moves the directory aside instead of wiping it.
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("stranger", 1, &[]), 0);
    assert_eq!(produce(&mut wire, "stranger", b"new"), (0, 0));
    let moved = broker
        .data_dir()
        .join("stranger-0.kept/00000000000000000000.log");
    assert_eq!(fs::read(&moved).unwrap(), b"data");
    broker.stop();
}
