//! One checker round: a fresh three-broker cluster, a topic with partitions on every broker, the
//! workload's clients running through a list of faults, a final full read of every partition
//! once every fault healed, and the checker's report on the history.
//!
//! The round fails the test (with the brokers' log tails) when the cluster misbehaves outside the
//! history: a wait past its bound, a producer making no progress after a fault healed, a lost
//! CreateTopics. Anomalies in the history are returned in the report for the caller to judge.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use super::check::{Report, check};
use super::faults::{FaultKind, FaultRecord, create_topic_at, inject};
use super::history::{Event, History, ProducerKind, Recorder};
use super::workload::{Clients, WorkloadSpec};
use crate::cluster_common::{Cluster, ClusterSpec, broker_of, fetch_all};
use crate::common::Rng;

/// After a fault heals, every producer must have new acknowledgements within this time: a broker
/// back from SIGKILL has new ports, which librdkafka learns from its next Metadata (every 1 s).
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each partition's final read.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one attempt of a partition's final read keeps at the leader it started at.
const FINAL_READ_ATTEMPT: Duration = Duration::from_secs(5);
/// Traffic without faults before the first fault and after each one.
const QUIET: Duration = Duration::from_secs(1);

/// What a round runs.
#[derive(Clone, Debug)]
pub struct RoundSpec {
    pub name: String,
    pub faults: Vec<FaultKind>,
    pub partitions: i32,
    /// Of the round's topic. Today 1 (CreateTopics refuses more); 3 once issue 13 lands.
    pub replication_factor: i16,
    /// Per producer.
    pub records_per_second: u64,
    pub seed: u64,
}

/// What a round produced.
pub struct RoundResult {
    pub history: History,
    pub report: Report,
    pub faults: Vec<FaultRecord>,
    pub elapsed: Duration,
    /// The brokers' log tails and the clients' warnings, taken before the cluster stopped.
    pub logs: String,
}

/// Runs `spec` on a new cluster, which is stopped when the round returns.
pub fn run_round(spec: &RoundSpec) -> RoundResult {
    let started = Instant::now();
    let mut rng = Rng::new(spec.seed);
    let mut cluster = Cluster::start(ClusterSpec {
        sync_journal: true,
        ..ClusterSpec::three()
    });
    let topic = format!("checker-{}", spec.name);
    create_spread_topic(&cluster, &topic, spec);
    let recorder = Recorder::new();
    let workload = WorkloadSpec {
        topic: topic.clone(),
        partitions: spec.partitions,
        records_per_second: spec.records_per_second,
        group: format!("checker-group-{}-{}", spec.name, spec.seed),
    };
    let clients = Clients::start(&cluster.bootstrap(), &workload, &recorder);
    wait_progress(&cluster, &recorder, "before the first fault");
    thread::sleep(QUIET);
    let mut faults = Vec::new();
    for (n, &kind) in spec.faults.iter().enumerate() {
        let record = inject(
            &mut cluster,
            kind,
            &mut rng,
            n,
            spec.replication_factor,
            &topic,
            &workload.group,
        );
        eprintln!(
            "{}: fault {n} {kind:?} at broker {}: {} (ready after {:?})",
            spec.name, record.broker, record.note, record.took
        );
        faults.push(record);
        clients.set_bootstrap(cluster.bootstrap());
        wait_progress(&cluster, &recorder, &format!("after fault {n} ({kind:?})"));
        thread::sleep(QUIET);
    }
    let warnings = clients.warnings.clone();
    if let Err(error) = clients.stop(Duration::from_secs(1)) {
        cluster.fail(&error);
    }
    final_read(&cluster, &topic, spec.partitions, &recorder);
    let history = recorder.snapshot();
    let report = check(&history);
    let logs = format!(
        "{}---- client warnings (last {}) ----\n{}\n",
        cluster.logs(),
        warnings.lines().len(),
        warnings.lines().join("\n")
    );
    RoundResult {
        history,
        report,
        faults,
        elapsed: started.elapsed(),
        logs,
    }
}

/// Creates the round's topic and waits until every broker lists it led, with partitions on all
/// three brokers (so a fault at any broker hits some).
fn create_spread_topic(cluster: &Cluster, topic: &str, spec: &RoundSpec) {
    let address = cluster.broker_addresses(1)[0].clone();
    let answer = create_topic_at(
        &address,
        topic,
        spec.partitions,
        spec.replication_factor,
        Duration::from_secs(10),
    );
    if !matches!(answer, Ok((0, _))) {
        cluster.fail(&format!("CreateTopics {topic}: {answer:?}"));
    }
    let mut metadata = None;
    for i in 1..=3 {
        metadata = Some(cluster.metadata_wait(
            i,
            Duration::from_secs(10),
            &format!("{topic} with every partition led"),
            |m| m.topic_ready(topic, spec.partitions as usize),
        ));
    }
    let leaders = metadata.expect("three brokers").leaders(topic);
    let brokers: BTreeSet<usize> = leaders.iter().map(|&node| broker_of(node)).collect();
    if brokers != BTreeSet::from([1, 2, 3]) {
        cluster.fail(&format!("{topic} not on every broker: leaders {leaders:?}"));
    }
}

/// Waits until every producer has more acknowledgements than now.
fn wait_progress(cluster: &Cluster, recorder: &Recorder, when: &str) {
    let before: Vec<u64> = ProducerKind::ALL
        .iter()
        .map(|&kind| recorder.acked_ok(kind))
        .collect();
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let stuck: Vec<&str> = ProducerKind::ALL
            .iter()
            .zip(&before)
            .filter(|&(&kind, &count)| recorder.acked_ok(kind) <= count)
            .map(|(kind, _)| kind.name())
            .collect();
        if stuck.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            cluster.fail(&format!(
                "{when}: no acknowledgement for {stuck:?} within {PROGRESS_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Reads every partition from offset 0 to its high watermark at its leader and records it. A
/// leader may change meanwhile (a broker that came back may win an election): a read that does
/// not complete at the leader Metadata named starts again at the one it names then.
fn final_read(cluster: &Cluster, topic: &str, partitions: i32, recorder: &Recorder) {
    for partition in 0..partitions {
        let deadline = Instant::now() + FINAL_READ_TIMEOUT;
        let records = loop {
            let metadata = cluster.metadata_wait(
                1,
                Duration::from_secs(30),
                &format!("{topic} with every partition led, for the final read"),
                |m| m.topic_ready(topic, partitions as usize),
            );
            let leader = metadata.leaders(topic)[partition as usize];
            let attempt =
                FINAL_READ_ATTEMPT.min(deadline.saturating_duration_since(Instant::now()));
            match fetch_all(metadata.address(leader), topic, partition, attempt) {
                Ok(records) => break records,
                Err(error) if Instant::now() >= deadline => cluster.fail(&error),
                Err(_) => continue,
            }
        };
        for record in records {
            recorder.record(Event::FinalRead {
                partition,
                offset: record.offset,
                value: String::from_utf8_lossy(&record.value.unwrap_or_default()).into_owned(),
            });
        }
    }
}
