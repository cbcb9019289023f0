//! Consumer groups with librdkafka's high-level consumer (the rdkafka crate) and kcat -G as group
//! members, against a real `spate serve`: partitions shared without overlap through leaves,
//! crashes and joins, no record lost, groups independent of each other, commits that survive a
//! SIGKILL of the broker, and offsets dropped with their topic.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::{
    Broker, BrokerConfig, TestConsumer, TestContext, client_config, create_topic,
    flush_all_delivered, producer, send,
};

/// Partitions of the shared topic.
const PARTITIONS: i32 = 12;
/// How long a rebalance may take on a loaded machine before the test fails.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Broker flags: a short initial rebalance delay and session timeouts down to 1 s, so a killed
/// member is noticed quickly.
fn group_broker(ports_fixed: bool) -> Broker {
    Broker::start_with(BrokerConfig {
        ports_fixed,
        args: [
            "--group-initial-rebalance-delay-ms",
            "300",
            "--group-min-session-timeout-ms",
            "1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ..BrokerConfig::default()
    })
}

/// A subscribing group member with auto-commit every 200 ms.
fn group_consumer(bootstrap: &str, group: &str, settings: &[(&str, &str)]) -> TestConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("client.id", format!("member-of-{group}"))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create_with_context(TestContext::new(group))
        .expect("create group consumer")
}

/// A consumed record: (partition, offset, value).
type Seen = (i32, i64, String);

/// An rdkafka member polling on its own thread until stopped; then it commits and leaves.
struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str, seen: Arc<Mutex<Vec<Seen>>>) -> Member {
        let consumer = group_consumer(bootstrap, group, &[]);
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    let record = (message.partition(), message.offset(), value.into_owned());
                    seen.lock().unwrap().push(record);
                }
            }
            // What was consumed is committed before leaving, so the next owner resumes there.
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            consumer.unsubscribe();
        });
        Member {
            stop,
            thread: Some(thread),
        }
    }

    fn leave(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("member thread");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A kcat -G member in its own process, so it can be SIGKILLed like a crashed consumer.
struct KcatMember {
    child: Child,
    reader: Option<thread::JoinHandle<()>>,
}

impl KcatMember {
    fn start(bootstrap: &str, group: &str, topic: &str, seen: Arc<Mutex<Vec<Seen>>>) -> KcatMember {
        let mut child = Command::new("kcat")
            .args(["-b", bootstrap, "-G", group, topic, "-u", "-q"])
            .args(["-f", "%p %o %s\\n"])
            .args([
                "-X",
                "client.id=kcat-victim",
                "-X",
                "session.timeout.ms=2000",
            ])
            .args([
                "-X",
                "heartbeat.interval.ms=300",
                "-X",
                "auto.commit.interval.ms=200",
            ])
            .args(["-X", "auto.offset.reset=earliest"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kcat");
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut fields = line.splitn(3, ' ');
                let (Some(p), Some(o), Some(v)) = (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                    seen.lock().unwrap().push((p, o, v.to_owned()));
                }
            }
        });
        KcatMember {
            child,
            reader: Some(reader),
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL kcat");
        self.child.wait().expect("reap kcat");
        self.reader.take().unwrap().join().expect("kcat reader");
    }
}

impl Drop for KcatMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The partitions of `topic` in a consumer-protocol Assignment: `i16 version`, then topics
/// (`i16`-length name, `i32` count of `i32` partitions).
fn assigned_partitions(assignment: &[u8], topic: &str) -> Vec<i32> {
    let i16_at = |at: usize| i16::from_be_bytes(assignment[at..at + 2].try_into().unwrap());
    let i32_at = |at: usize| i32::from_be_bytes(assignment[at..at + 4].try_into().unwrap());
    let mut partitions = Vec::new();
    if assignment.len() < 6 {
        return partitions;
    }
    let mut at = 2;
    let topics = i32_at(at);
    at += 4;
    for _ in 0..topics {
        let len = i16_at(at) as usize;
        let name = &assignment[at + 2..at + 2 + len];
        at += 2 + len;
        let count = i32_at(at);
        at += 4;
        for _ in 0..count {
            if name == topic.as_bytes() {
                partitions.push(i32_at(at));
            }
            at += 4;
        }
    }
    partitions
}

/// Waits until the group is Stable with `members` members that own every partition of `topic`
/// exactly once (asserted: a Stable group never shows overlap); returns partition -> client id.
fn wait_for_owners(
    observer: &TestConsumer,
    group: &str,
    topic: &str,
    members: usize,
) -> BTreeMap<i32, String> {
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(list) = observer.fetch_group_list(Some(group), Duration::from_secs(5))
            && let Some(info) = list.groups().iter().find(|g| g.name() == group)
        {
            let mut owners = BTreeMap::new();
            let mut overlap = false;
            for member in info.members() {
                let assignment = member.assignment().unwrap_or_default();
                for partition in assigned_partitions(assignment, topic) {
                    overlap |= owners
                        .insert(partition, member.client_id().to_owned())
                        .is_some();
                }
            }
            if info.state() == "Stable" {
                assert!(!overlap, "a partition has two owners: {owners:?}");
            }
            if info.state() == "Stable"
                && info.members().len() == members
                && owners.len() == PARTITIONS as usize
            {
                return owners;
            }
            last = format!(
                "{} with {} members: {owners:?}",
                info.state(),
                info.members().len()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("group {group} never had {members} members owning all partitions; last: {last}");
}

#[test]
fn members_share_partitions_through_leave_crash_and_join_without_loss() {
    // Proves 3 members (2 rdkafka, 1 kcat) of one group split 12 partitions without overlap; after
    // one leaves, one is SIGKILLed (its session times out) and one joins, every partition again
    // has exactly one owner; with commits no record is lost, and records are consumed twice only
    // on partitions the killed member owned (its uncommitted tail), the window Kafka allows.
    let broker = group_broker(false);
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("shared", "sharers");
    create_topic(&bootstrap, topic, PARTITIONS, &[]);
    let observer = group_consumer(&bootstrap, "observer", &[]);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();

    let producing = Arc::new(AtomicBool::new(true));
    let producer_thread = {
        let (bootstrap, producing) = (bootstrap.clone(), Arc::clone(&producing));
        thread::spawn(move || {
            let producer = producer(&bootstrap, &[("linger.ms", "5")]);
            let mut sent = 0usize;
            while producing.load(Ordering::SeqCst) {
                let value = sent.to_string();
                let partition = (sent % PARTITIONS as usize) as i32;
                let record = BaseRecord::with_opaque_to(topic, sent)
                    .payload(value.as_bytes())
                    .partition(partition);
                send(&producer, record);
                sent += 1;
                thread::sleep(Duration::from_millis(2));
            }
            flush_all_delivered(&producer, sent);
            sent
        })
    };

    let first = Member::start(&bootstrap, group, topic, Arc::clone(&seen));
    let second = Member::start(&bootstrap, group, topic, Arc::clone(&seen));
    let victim = KcatMember::start(&bootstrap, group, topic, Arc::clone(&seen));
    wait_for_owners(&observer, group, topic, 3);
    thread::sleep(Duration::from_millis(500));
    first.leave();
    let owners = wait_for_owners(&observer, group, topic, 2);
    let victim_partitions: BTreeSet<i32> = owners
        .iter()
        .filter(|(_, client)| client.as_str() == "kcat-victim")
        .map(|(partition, _)| *partition)
        .collect();
    assert!(
        !victim_partitions.is_empty(),
        "kcat owns partitions: {owners:?}"
    );
    thread::sleep(Duration::from_millis(500));
    victim.kill9();
    wait_for_owners(&observer, group, topic, 1);
    let third = Member::start(&bootstrap, group, topic, Arc::clone(&seen));
    wait_for_owners(&observer, group, topic, 2);
    thread::sleep(Duration::from_millis(500));
    producing.store(false, Ordering::SeqCst);
    let sent = producer_thread.join().expect("producer thread");

    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    let distinct = || -> BTreeSet<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    while distinct().len() < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    second.leave();
    third.leave();
    let seen = seen.lock().unwrap().clone();
    let mut counts: HashMap<&str, (usize, i32)> = HashMap::new();
    for (partition, _, value) in &seen {
        counts.entry(value.as_str()).or_insert((0, *partition)).0 += 1;
    }
    let lost: Vec<usize> = (0..sent)
        .filter(|i| !counts.contains_key(i.to_string().as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {sent} records lost, first {:?}",
        lost.len(),
        lost.first()
    );
    let twice: Vec<(&str, i32)> = counts
        .iter()
        .filter(|(_, (count, _))| *count > 1)
        .map(|(value, (_, partition))| (*value, *partition))
        .collect();
    assert!(
        twice.iter().all(|(_, p)| victim_partitions.contains(p)),
        "records consumed twice outside the killed member's partitions {victim_partitions:?}: {:?}",
        twice
            .iter()
            .filter(|(_, p)| !victim_partitions.contains(p))
            .take(10)
            .collect::<Vec<_>>()
    );
    broker.stop();
}

#[test]
fn two_groups_each_receive_every_record() {
    // Proves groups are independent: two groups subscribed to the same topic each get all of it.
    let broker = group_broker(false);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "fanout", 4, &[]);
    let producer = producer(&bootstrap, &[]);
    for i in 0..400usize {
        let value = i.to_string();
        send(
            &producer,
            BaseRecord::with_opaque_to("fanout", i).payload(value.as_bytes()),
        );
    }
    flush_all_delivered(&producer, 400);
    let readers: Vec<_> = ["fanout-a", "fanout-b"]
        .into_iter()
        .map(|group| {
            let bootstrap = bootstrap.clone();
            thread::spawn(move || {
                let consumer = group_consumer(&bootstrap, group, &[]);
                consumer.subscribe(&["fanout"]).unwrap();
                let mut values = BTreeSet::new();
                let deadline = Instant::now() + REBALANCE_TIMEOUT;
                while values.len() < 400 && Instant::now() < deadline {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                        values.insert(
                            String::from_utf8_lossy(message.payload().unwrap()).into_owned(),
                        );
                    }
                }
                values.len()
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), 400);
    }
    broker.stop();
}

fn committed(consumer: &TestConsumer, topic: &str, partitions: i32) -> Vec<Offset> {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    // Right after a restart the coordinator may still be loading its offsets
    // (COORDINATOR_LOAD_IN_PROGRESS): ask again until it answers.
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(list) => return list.elements().iter().map(|e| e.offset()).collect(),
            Err(error) if Instant::now() < deadline => {
                eprintln!("committed offsets: {error}; retrying");
                thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("committed offsets: {error}"),
        }
    }
}

/// First offset consumed per partition, until `count` records arrived.
fn first_offsets(consumer: &TestConsumer, count: usize) -> BTreeMap<i32, i64> {
    let mut firsts = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    while got < count {
        assert!(
            Instant::now() < deadline,
            "only {got} of {count} records: {firsts:?}"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            firsts
                .entry(message.partition())
                .or_insert(message.offset());
            got += 1;
        }
    }
    firsts
}

#[test]
fn commits_survive_a_broker_sigkill_and_die_with_their_topic() {
    // Proves an acknowledged commit survives SIGKILL of the broker (a member rejoining resumes at
    // the committed offsets), and that deleting and recreating the topic drops the group's
    // offsets, so the recreated topic is read from auto.offset.reset, as in Kafka.
    let mut broker = group_broker(true);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "durable", 3, &[]);
    let producer = producer(&bootstrap, &[]);
    for i in 0..90usize {
        let record = BaseRecord::with_opaque_to("durable", i)
            .payload(&b"x"[..])
            .partition((i % 3) as i32);
        send(&producer, record);
    }
    flush_all_delivered(&producer, 90);
    drop(producer);
    let manual = [("enable.auto.commit", "false")];
    let consumer = group_consumer(&bootstrap, "keeper", &manual);
    consumer.subscribe(&["durable"]).unwrap();
    first_offsets(&consumer, 90);
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in [(0, 10), (1, 20), (2, 30)] {
        offsets
            .add_partition_offset("durable", partition, Offset::Offset(offset))
            .unwrap();
    }
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    drop(consumer);

    broker.kill9();
    broker.start_again();
    let consumer = group_consumer(&bootstrap, "keeper", &manual);
    let want = vec![Offset::Offset(10), Offset::Offset(20), Offset::Offset(30)];
    assert_eq!(committed(&consumer, "durable", 3), want);
    consumer.subscribe(&["durable"]).unwrap();
    let firsts = first_offsets(&consumer, 30);
    assert_eq!(firsts, BTreeMap::from([(0, 10), (1, 20)]));
    drop(consumer);

    let admin: AdminClient<TestContext> = client_config(&bootstrap)
        .create_with_context(TestContext::new("admin"))
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = futures_executor::block_on(admin.delete_topics(&["durable"], &options)).unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    create_topic(&bootstrap, "durable", 3, &[]);
    let consumer = group_consumer(&bootstrap, "keeper", &manual);
    assert_eq!(committed(&consumer, "durable", 3), vec![Offset::Invalid; 3]);
    broker.stop();
}
