//! The cluster's control plane, measured on three `spate serve` processes on loopback (the
//! harness of tests/cluster.rs): controller commit latency as a client sees it (CreateTopics
//! of one partition, sent to the leader and to another broker, which forwards), the time to
//! create 1,000 partitions, metadata propagation to every shard of every broker, the time from
//! a SIGKILL of the controller leader to the next committed change, and the idle CPU of the
//! three brokers. Prints a markdown table for perf/RESULTS.md.
//!
//! `cargo bench --bench cluster_control` (about a minute). `SPATE_BENCH_CORES` sets the
//! shards per broker (default 1).

#[path = "../tests/cluster_common/mod.rs"]
mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::kafka::KafkaConnection;
use cluster_common::{Cluster, ClusterSpec};
use spate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use spate::protocol::{Request, Response};

/// Topics created one at a time for the latency figures, per target.
const SEQUENTIAL_TOPICS: usize = 200;
/// Topics whose propagation is timed.
const PROPAGATION_TOPICS: usize = 50;
/// SIGKILLs of the controller leader.
const FAILOVERS: usize = 3;
/// How long the idle CPU is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    let cores: usize = std::env::var("SPATE_BENCH_CORES")
        .ok()
        .and_then(|cores| cores.parse().ok())
        .unwrap_or(1);
    let mut cluster = Cluster::start(ClusterSpec {
        brokers: 3,
        voters: 3,
        cores_per_broker: cores,
        extra_args: Vec::new(),
        sync_journal: false,
    });
    let leader = cluster.controller_leader();
    let follower = cluster.live().into_iter().find(|&b| b != leader).unwrap();
    println!("| figure | value |");
    println!("|---|---|");

    for (target, name) in [
        (leader, "the leader"),
        (follower, "another broker (forwarded)"),
    ] {
        let mut connection = connect(&cluster, target, 0);
        let mut latencies: Vec<Duration> = (0..SEQUENTIAL_TOPICS)
            .map(|n| {
                let started = Instant::now();
                create(&mut connection, &format!("seq-{target}-{n}"), 1);
                started.elapsed()
            })
            .collect();
        latencies.sort();
        println!(
            "| CreateTopics (1 partition) to {name}: p50 / p99 / max | {} / {} / {} ms |",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap())
        );
    }

    let mut connection = connect(&cluster, follower, 0);
    let started = Instant::now();
    create(&mut connection, "thousand", 1000);
    let answered = started.elapsed();
    for broker in cluster.live() {
        cluster.metadata_wait(broker, REQUEST_TIMEOUT, "1000 partitions led", |metadata| {
            metadata.topic_ready("thousand", 1000)
        });
    }
    println!(
        "| 1,000-partition CreateTopics: answered / led in every broker's Metadata | {} / {} ms |",
        ms(answered),
        ms(started.elapsed())
    );

    let mut shards: Vec<KafkaConnection> = cluster
        .live()
        .into_iter()
        .flat_map(|broker| (0..cores).map(move |shard| (broker, shard)))
        .map(|(broker, shard)| connect(&cluster, broker, shard))
        .collect();
    let mut propagation: Vec<Duration> = (0..PROPAGATION_TOPICS)
        .map(|n| {
            let topic = format!("prop-{n}");
            let started = Instant::now();
            create(&mut connection, &topic, 1);
            for shard in &mut shards {
                while !knows(shard, &topic) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            started.elapsed()
        })
        .collect();
    propagation.sort();
    println!(
        "| CreateTopics sent until all {} shards of the 3 brokers list the topic: p50 / p99 | {} / {} ms |",
        shards.len(),
        ms(percentile(&propagation, 0.50)),
        ms(percentile(&propagation, 0.99))
    );
    drop(shards);

    let mut failovers = Vec::new();
    for round in 0..FAILOVERS {
        let leader = agreed_leader(&cluster);
        let other = cluster.live().into_iter().find(|&b| b != leader).unwrap();
        let mut connection = connect(&cluster, other, 0);
        cluster.kill(leader);
        let killed = Instant::now();
        loop {
            let topic = format!("failover-{round}");
            match connection.create_topic(&topic, 1, 1000) {
                Ok((0, _)) | Ok((36, _)) => break,
                Ok(_) => {}
                Err(_) => connection = connect(&cluster, other, 0),
            }
            assert!(
                killed.elapsed() < REQUEST_TIMEOUT,
                "no new leader committed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        failovers.push(killed.elapsed());
        cluster.restart(leader);
        cluster.wait_ready(REQUEST_TIMEOUT);
    }
    println!(
        "| SIGKILL of the controller leader until a CreateTopics commits, {FAILOVERS} rounds | {} ms |",
        failovers
            .iter()
            .map(|elapsed| ms(*elapsed))
            .collect::<Vec<_>>()
            .join(", ")
    );

    std::thread::sleep(Duration::from_secs(2));
    let brokers = cluster.live();
    let before: Vec<u64> = brokers
        .iter()
        .map(|&b| cpu_ticks(cluster.broker(b).pid()))
        .collect();
    std::thread::sleep(IDLE_SAMPLE);
    let after: Vec<u64> = brokers
        .iter()
        .map(|&b| cpu_ticks(cluster.broker(b).pid()))
        .collect();
    let ticks_per_second = 100.0;
    let percent: Vec<String> = before
        .iter()
        .zip(&after)
        .map(|(before, after)| {
            let busy = (after - before) as f64 / ticks_per_second;
            format!("{:.1}%", 100.0 * busy / IDLE_SAMPLE.as_secs_f64())
        })
        .collect();
    println!(
        "| idle CPU of each broker (of one core) over {} s, {} topics | {} |",
        IDLE_SAMPLE.as_secs(),
        2 * SEQUENTIAL_TOPICS + PROPAGATION_TOPICS + FAILOVERS + 1,
        percent.join(", ")
    );
}

/// The controller leader once every live broker names the same one (a broker that just
/// restarted may still name the leader it knew before).
fn agreed_leader(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        let named: Vec<Option<i32>> = cluster
            .live()
            .into_iter()
            .map(|broker| cluster.metadata(broker).ok().map(|m| m.controller_id))
            .collect();
        if let Some(Some(first)) = named.first()
            && named.iter().all(|id| *id == Some(*first))
        {
            return cluster_common::broker_of(*first);
        }
        assert!(
            Instant::now() < deadline,
            "brokers disagree on the controller: {named:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(cluster: &Cluster, broker: usize, shard: usize) -> KafkaConnection {
    let address = cluster.broker_addresses(broker)[shard].clone();
    KafkaConnection::connect(&address, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("connect {address}: {error}"))
}

fn create(connection: &mut KafkaConnection, topic: &str, partitions: i32) {
    let (code, message) = connection
        .create_topic(topic, partitions, REQUEST_TIMEOUT.as_millis() as i32)
        .unwrap_or_else(|error| panic!("CreateTopics {topic}: {error}"));
    assert_eq!(code, 0, "CreateTopics {topic}: {message:?}");
}

/// Whether this shard's Metadata lists `topic`.
fn knows(connection: &mut KafkaConnection, topic: &str) -> bool {
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.to_owned()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    match connection.call(12, request) {
        Ok(Response::Metadata(response)) => response
            .topics
            .first()
            .is_some_and(|listed| listed.error_code == 0),
        _ => false,
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the broker's stat");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize]
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}
