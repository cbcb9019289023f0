//! kcat (the Debian package, librdkafka underneath) against a real `spate serve`: listing metadata,
//! producing keyed lines from stdin, consuming them back.
//!
//! kcat is installed by `.ci/test`. Without kcat these tests print why and pass, unless `CI` is
//! set: in CI a missing kcat is a failure.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Broker, create_topic, run_with_timeout, segment_batches};

/// Bound on one kcat run; each run here takes well under a second.
const KCAT_TIMEOUT: Duration = Duration::from_secs(30);

/// True if kcat can run. Panics if it cannot and `CI` is set.
fn kcat_available(test: &str) -> bool {
    match Command::new("kcat").arg("-V").output() {
        Ok(output) if output.status.success() => true,
        result => {
            let reason = match result {
                Ok(output) => format!("`kcat -V` exited with {}", output.status),
                Err(error) => format!("cannot run kcat: {error}"),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {reason} (CI is set: kcat is required; .ci/test installs it)"
            );
            eprintln!("{test}: SKIPPED: {reason}");
            false
        }
    }
}

fn kcat(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new("kcat");
    command.args(args);
    let output = run_with_timeout(&mut command, stdin, KCAT_TIMEOUT);
    assert!(
        output.status.success(),
        "kcat {args:?} exited with {}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn lines_keyed(tag: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("{tag}-key-{i}:{tag} value {i} {}\n", "x".repeat(i % 50)))
        .collect()
}

// Proves `kcat -L` sees every shard as a broker at its listening address and a created topic
// with its partitions.
#[test]
fn kcat_lists_brokers_and_topics() {
    if !kcat_available("kcat_lists_brokers_and_topics") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.bootstrap(), "kcat-listed", 4, &[]);
    let output = kcat(&["-b", &broker.bootstrap(), "-L", "-m", "10"], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(" {} brokers:", broker.cores())),
        "broker count in:\n{stdout}"
    );
    for listener in broker.listeners() {
        let line = format!("broker {} at {}", listener.node_id, listener.address);
        assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("topic \"kcat-listed\" with 4 partitions:"),
        "topic in:\n{stdout}"
    );
    for partition in 0..4 {
        assert!(
            stdout.contains(&format!("partition {partition}, leader ")),
            "partition {partition} in:\n{stdout}"
        );
    }
    broker.stop();
}

// Proves keyed lines produced with `kcat -P -K:` come back identically, in order, from
// `kcat -C -e -o beginning -K:`.
#[test]
fn kcat_produces_and_consumes_keyed_lines() {
    if !kcat_available("kcat_produces_and_consumes_keyed_lines") {
        return;
    }
    let broker = Broker::start(&[]);
    let topic = "kcat-lines";
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    let lines = lines_keyed("plain", 2_000);
    kcat(
        &["-P", "-b", &broker.bootstrap(), "-t", topic, "-K:"],
        lines.as_bytes(),
    );
    let output = kcat(
        &[
            "-C",
            "-b",
            &broker.bootstrap(),
            "-t",
            topic,
            "-e",
            "-o",
            "beginning",
            "-K:",
            "-q",
        ],
        b"",
    );
    let consumed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(consumed.lines().count(), 2_000, "line count");
    assert!(
        consumed == lines,
        "lines read back differ from lines produced"
    );
    broker.stop();
}

// Proves kcat's snappy-compressed produce over several partitions reads back completely, that
// each line comes back from the partition and offset kcat reports, and that the broker stored
// snappy batches.
#[test]
fn kcat_snappy_over_partitions_round_trips() {
    if !kcat_available("kcat_snappy_over_partitions_round_trips") {
        return;
    }
    let broker = Broker::start(&[]);
    let topic = "kcat-snappy";
    let partitions = 3;
    create_topic(&broker.bootstrap(), topic, partitions, &[]);
    let lines = lines_keyed("snappy", 3_000);
    kcat(
        &[
            "-P",
            "-b",
            &broker.bootstrap(),
            "-t",
            topic,
            "-K:",
            "-z",
            "snappy",
        ],
        lines.as_bytes(),
    );
    let output = kcat(
        &[
            "-C",
            "-b",
            &broker.bootstrap(),
            "-t",
            topic,
            "-e",
            "-o",
            "beginning",
            "-q",
            "-f",
            "%p %o %k:%s\n",
        ],
        b"",
    );
    let consumed = String::from_utf8_lossy(&output.stdout);
    let mut per_partition: Vec<Vec<(i64, String)>> = vec![Vec::new(); partitions as usize];
    for line in consumed.lines() {
        let mut fields = line.splitn(3, ' ');
        let partition: usize = fields.next().unwrap().parse().expect("partition");
        let offset: i64 = fields.next().unwrap().parse().expect("offset");
        per_partition[partition].push((offset, fields.next().unwrap().to_string()));
    }
    let mut lines_got: Vec<String> = Vec::new();
    for (partition, records) in per_partition.iter().enumerate() {
        for (index, (offset, _)) in records.iter().enumerate() {
            assert_eq!(
                *offset, index as i64,
                "partition {partition}: offsets contiguous from 0"
            );
        }
        lines_got.extend(records.iter().map(|(_, line)| line.clone()));
        if !records.is_empty() {
            let batches = segment_batches(broker.data_dir(), topic, partition as i32);
            assert!(
                batches.iter().all(|b| b.codec() == 2),
                "partition {partition}: snappy batches: {batches:?}"
            );
        }
    }
    // kcat's default partitioner hashes keys, so compare the lines as sets; within a partition,
    // the producer's order must hold.
    let mut lines_want: Vec<String> = lines.lines().map(str::to_string).collect();
    let position_of: HashMap<&str, usize> = lines_want
        .iter()
        .enumerate()
        .map(|(position, line)| (line.as_str(), position))
        .collect();
    for records in &per_partition {
        let positions: Vec<usize> = records
            .iter()
            .map(|(_, line)| *position_of.get(line.as_str()).expect("line produced"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "per-partition order kept"
        );
    }
    lines_got.sort();
    lines_want.sort();
    assert_eq!(lines_got, lines_want, "every line back exactly once");
    broker.stop();
}
