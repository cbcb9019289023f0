//! The faults of a checker round, each injected and healed by `inject` on a three-broker
//! `Cluster`, which is ready again (every broker live and listing all three) when it returns.
//!
//! The partition whose leader `Kill`, `PowerLoss`, `Pause` and `Cut` aim at is one of the round's topic's or
//! the round group's partition of `__consumer_offsets` (its coordinator).
//!
//! - `Kill`: SIGKILL of the leader of a random partition of the round's topic, down for a random
//!   0.3 to 4.5 s (past the 3 s session timeout or not), then restarted on its data dir.
//! - `PowerLoss`: as `Kill`, and before the restart the broker's segment files lose what a power
//!   loss may take, everything past their last fdatasync (`Cluster::kill_losing_unsynced`, from
//!   the broker's sync journal): a replica must have acknowledged nothing it had not synced.
//! - `Pause`: SIGSTOP of the leader of a random partition of the round's topic until another
//!   broker reports it fenced (its session timed out, long after its partitions elected new
//!   leaders), then SIGCONT: the stale leader must acknowledge nothing it cannot commit.
//! - `Cut`: the leader of a random partition of the round's topic cut off from both other
//!   brokers (its controller links and every packet of replication and forwarded traffic, the
//!   harness's `isolate`) until another broker reports it fenced, then healed. Clients still
//!   reach it: the stale leader must acknowledge nothing it cannot commit.
//! - `KillDuringCreate`: a CreateTopics sent to one broker while a broker (the controller leader
//!   half the time) is SIGKILLed a few milliseconds later, then restarted. Checked here: retrying
//!   the creation succeeds, a topic whose first CreateTopics succeeded is not created a second
//!   time (TOPIC_ALREADY_EXISTS), and every broker lists it with every partition led.
//!
//! Every wait is bounded and fails the test with the brokers' log tails.

use std::thread;
use std::time::{Duration, Instant};

use spate::protocol::messages::create_topics::{CreatableTopic, CreateTopicsRequest};
use spate::protocol::{Request, Response};

use crate::cluster_common::{Cluster, KafkaConnection, REQUEST_TIMEOUT, broker_of};
use crate::common::Rng;

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Bound on the cluster becoming ready again after a fault heals.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a broker being reported fenced after a pause or cut: the 3 s session timeout plus a
/// controller election if the broker led the quorum.
const FENCED_TIMEOUT: Duration = Duration::from_secs(20);
/// Partitions of each topic created by `KillDuringCreate`.
const CREATED_PARTITIONS: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Kill,
    PowerLoss,
    Pause,
    Cut,
    KillDuringCreate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::Pause,
        FaultKind::Cut,
        FaultKind::KillDuringCreate,
    ];
}

/// What one injected fault did.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub broker: usize,
    pub note: String,
    /// From injection to the cluster ready again.
    pub took: Duration,
}

/// Injects `kind` at a broker chosen by `rng` (for the others than `KillDuringCreate`, the leader of a
/// random partition of `topic`, or of `group`'s partition of the offsets topic: its
/// coordinator), heals it, and waits until the cluster is ready. `round_fault`
/// numbers topics created by `KillDuringCreate`; `replication_factor` is theirs.
pub fn inject(
    cluster: &mut Cluster,
    kind: FaultKind,
    rng: &mut Rng,
    round_fault: usize,
    replication_factor: i16,
    topic: &str,
    group: &str,
) -> FaultRecord {
    let leader = cluster.controller_leader();
    let started = Instant::now();
    let broker = match kind {
        FaultKind::Kill | FaultKind::PowerLoss | FaultKind::Pause | FaultKind::Cut => {
            partition_leader(cluster, topic, group, rng)
        }
        FaultKind::KillDuringCreate => rng.range(1, 4) as usize,
    };
    let what = match kind {
        FaultKind::Kill => kill(cluster, broker, rng),
        FaultKind::PowerLoss => power_loss(cluster, broker, rng),
        FaultKind::Pause => pause(cluster, broker),
        FaultKind::Cut => cut(cluster, broker),
        FaultKind::KillDuringCreate => {
            let topic = format!("created-{round_fault}");
            kill_during_create(cluster, broker, rng, &topic, replication_factor)
        }
    };
    cluster.wait_ready(READY_TIMEOUT);
    FaultRecord {
        kind,
        broker,
        note: format!("controller leader {leader}; {what}"),
        took: started.elapsed(),
    }
}

/// The broker leading a random one of `topic`'s partitions and `group`'s offsets partition (a
/// random broker if Metadata names none).
fn partition_leader(cluster: &Cluster, topic: &str, group: &str, rng: &mut Rng) -> usize {
    let metadata = cluster.metadata(cluster.live()[0]).ok();
    let mut leaders = metadata
        .as_ref()
        .map(|metadata| metadata.leaders(topic))
        .unwrap_or_default();
    let offsets = metadata
        .as_ref()
        .map(|metadata| metadata.leaders("__consumer_offsets"))
        .unwrap_or_default();
    if !offsets.is_empty() {
        let partition = spate::protocol::record_batch::crc32c(group.as_bytes()) as usize;
        leaders.push(offsets[partition % offsets.len()]);
    }
    leaders.retain(|&leader| leader >= 0);
    if leaders.is_empty() {
        return rng.range(1, 4) as usize;
    }
    let partition = rng.range(0, leaders.len() as u64) as usize;
    match broker_of(leaders[partition]) {
        broker @ 1..=3 => broker,
        _ => rng.range(1, 4) as usize,
    }
}

fn others(broker: usize) -> Vec<usize> {
    (1..=3).filter(|&b| b != broker).collect()
}

/// Waits until broker `observer` no longer lists any node of `broker`.
fn wait_fenced(cluster: &Cluster, observer: usize, broker: usize) {
    cluster.metadata_wait(
        observer,
        FENCED_TIMEOUT,
        &format!("broker {broker} fenced"),
        |m| m.nodes.keys().all(|&node| broker_of(node) != broker),
    );
}

fn kill(cluster: &mut Cluster, broker: usize, rng: &mut Rng) -> String {
    let down = Duration::from_millis(rng.range(300, 4_500));
    cluster.kill(broker);
    thread::sleep(down);
    cluster.restart(broker);
    format!("down {down:?}")
}

fn power_loss(cluster: &mut Cluster, broker: usize, rng: &mut Rng) -> String {
    let down = Duration::from_millis(rng.range(300, 4_500));
    let dropped = cluster.kill_losing_unsynced(broker);
    thread::sleep(down);
    cluster.restart(broker);
    format!("{dropped} unsynced bytes dropped, down {down:?}")
}

fn pause(cluster: &mut Cluster, broker: usize) -> String {
    let stopped = Instant::now();
    cluster.stop(broker);
    wait_fenced(cluster, others(broker)[0], broker);
    let fenced_after = stopped.elapsed();
    cluster.resume(broker);
    format!("fenced {fenced_after:?} after SIGSTOP")
}

fn cut(cluster: &mut Cluster, broker: usize) -> String {
    let cut = Instant::now();
    cluster.isolate(broker);
    wait_fenced(cluster, others(broker)[0], broker);
    let fenced_after = cut.elapsed();
    cluster.rejoin(broker);
    format!("fenced {fenced_after:?} after the cut")
}

/// CreateTopics of `topic` at broker `at` with `replication_factor`: (error code, message).
pub fn create_topic_at(
    address: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    timeout: Duration,
) -> Result<(i16, Option<String>), String> {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor,
            assignments: vec![],
            configs: vec![],
        }],
        timeout_ms: i32::try_from(timeout.as_millis()).expect("a timeout that fits i32"),
        validate_only: false,
    });
    let mut connection = KafkaConnection::connect(address, timeout + REQUEST_TIMEOUT)?;
    let Response::CreateTopics(response) = connection.call(7, request)? else {
        return Err("not a CreateTopics response".into());
    };
    let answer = response
        .topics
        .first()
        .ok_or("CreateTopics answered no topic")?;
    Ok((answer.error_code, answer.error_message.clone()))
}

fn kill_during_create(
    cluster: &mut Cluster,
    at: usize,
    rng: &mut Rng,
    topic: &str,
    replication_factor: i16,
) -> String {
    let victim = match rng.range(0, 2) {
        0 => cluster.controller_leader(),
        _ => rng.range(1, 4) as usize,
    };
    let address = cluster.broker_addresses(at)[0].clone();
    let name = topic.to_string();
    let request = thread::spawn(move || {
        let timeout = Duration::from_secs(5);
        create_topic_at(
            &address,
            &name,
            CREATED_PARTITIONS,
            replication_factor,
            timeout,
        )
    });
    // A CreateTopics takes about 5 ms here: kill within it most of the time.
    thread::sleep(Duration::from_millis(rng.range(0, 8)));
    cluster.kill(victim);
    thread::sleep(Duration::from_millis(rng.range(200, 2_000)));
    cluster.restart(victim);
    let first = request.join().expect("the CreateTopics thread");
    cluster.wait_ready(READY_TIMEOUT);
    let retried = create_until_done(cluster, topic, replication_factor);
    if matches!(first, Ok((0, _))) && retried == 0 {
        cluster.fail(&format!(
            "CreateTopics {topic} at broker {at} succeeded before broker {victim}'s SIGKILL, \
             yet creating it again succeeded too: the first creation was lost"
        ));
    }
    for i in 1..=3 {
        cluster.metadata_wait(
            i,
            READY_TIMEOUT,
            &format!("{topic} with {CREATED_PARTITIONS} led partitions"),
            |m| m.topic_ready(topic, CREATED_PARTITIONS as usize),
        );
    }
    format!(
        "CreateTopics at broker {at}, broker {victim} killed: first answer {first:?}, retry {retried}"
    )
}

/// Retries CreateTopics at each broker in turn until it answers 0 or TOPIC_ALREADY_EXISTS
/// (bounded); that answer.
fn create_until_done(cluster: &Cluster, topic: &str, replication_factor: i16) -> i16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempts = Vec::new();
    for round in 0.. {
        let at = 1 + round % 3;
        let answer = cluster.broker(at).listeners().and_then(|listeners| {
            create_topic_at(
                &listeners[0].1,
                topic,
                CREATED_PARTITIONS,
                replication_factor,
                Duration::from_secs(5),
            )
        });
        match answer {
            Ok((code @ (0 | TOPIC_ALREADY_EXISTS), _)) => return code,
            other => attempts.push(format!("broker {at}: {other:?}")),
        }
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    cluster.fail(&format!(
        "CreateTopics {topic} not done after 30 s of retries: {attempts:?}"
    ))
}
