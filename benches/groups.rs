//! Consumer-group figures of a real `spate serve --cores 1` (issue 6): how long a group of 10
//! librdkafka consumers joining at once takes to rebalance, and how many OffsetCommits per second
//! one shard makes durable.
//!
//! Run with `cargo bench --bench groups` after `cargo build --release` (which builds the broker).
//! Flags (after `--`): `--initial-delay-ms N` (the broker's group.initial.rebalance.delay.ms,
//! default 0 so the figure is the protocol's cost, not the configured wait), `--rounds N`
//! (default 3), `--committers N` (default 16), `--commit-seconds S` (default 5).
//! Environment: `SPATE_BIN` (default `<crate>/target/release/spate`), `SPATE_BENCH_DIR` (default
//! `<crate>/target/groups_bench`; must be on a real disk, not tmpfs).
//!
//! Rebalance time: 10 consumers are created, then released together to subscribe to a topic of
//! 20 partitions that each hold records; the clock starts at the release (just before the first
//! FindCoordinator and JoinGroup) and stops when the last consumer receives its first record,
//! i.e. when every member is fetching. Commit throughput: `--committers` threads, each a consumer
//! of its own group outside group management (generation -1, as librdkafka's simple consumers
//! commit), commit one partition synchronously in a loop; commits/s is the sum over all threads.
//! Every commit is fdatasync'ed before it is answered, so concurrent commits share fdatasyncs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long the broker may take to publish its listeners file.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Members of the rebalancing group (the figure).
const MEMBERS: usize = 10;
/// Partitions of the rebalance topic: two per member.
const PARTITIONS: i32 = 20;
/// How long one rebalance round may take before the bench gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

struct Options {
    initial_delay_ms: u64,
    rounds: usize,
    committers: usize,
    commit_seconds: u64,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            initial_delay_ms: 0,
            rounds: 3,
            committers: 16,
            commit_seconds: 5,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
            match (args[i].as_str(), value()) {
                ("--initial-delay-ms", Some(v)) => options.initial_delay_ms = v,
                ("--rounds", Some(v)) => options.rounds = v as usize,
                ("--committers", Some(v)) => options.committers = v as usize,
                ("--commit-seconds", Some(v)) => options.commit_seconds = v,
                // cargo bench passes `--bench`; ignore what is not ours.
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        options
    }
}

/// The broker child process; dropping it kills it.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(binary: &Path, dir: &Path, initial_delay_ms: u64) -> (Broker, String) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("bench dir");
        let data_dir = dir.join("data");
        let log = std::fs::File::create(dir.join("broker.log")).expect("broker log");
        let child = Command::new(binary)
            .args(["serve", "--cores", "1", "--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--group-initial-rebalance-delay-ms",
                &initial_delay_ms.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start spate");
        // Owned at once, so a failed start still kills and reaps the child (Drop).
        let broker = Broker { child };
        let listeners = data_dir.join("listeners");
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&listeners)
                && let Some(address) = text.lines().next().and_then(|l| l.split(' ').nth(1))
            {
                return (broker, address.to_owned());
            }
            assert!(Instant::now() < deadline, "broker did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3");
    config
}

fn prepare_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    let new_topic = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    futures_executor::block_on(admin.create_topics([&new_topic], &options)).unwrap();
    let producer: BaseProducer = config(bootstrap).create().unwrap();
    for i in 0..PARTITIONS * 50 {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&b"record"[..])
            .partition(i % PARTITIONS);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// One rebalance of `MEMBERS` consumers joining at once: seconds until all fetch.
fn rebalance_round(bootstrap: &str, topic: &str, round: usize) -> f64 {
    let group = format!("rebalance-{round}");
    let barrier = Arc::new(Barrier::new(MEMBERS + 1));
    let members: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let consumer: BaseConsumer = config(bootstrap)
                .set("group.id", &group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "50")
                .create()
                .unwrap();
            let (barrier, topic) = (Arc::clone(&barrier), topic.to_owned());
            thread::spawn(move || {
                barrier.wait();
                consumer.subscribe(&[&topic]).unwrap();
                let deadline = Instant::now() + ROUND_TIMEOUT;
                while Instant::now() < deadline {
                    if let Some(Ok(_)) = consumer.poll(Duration::from_millis(10)) {
                        let fetching = Instant::now();
                        // Keep the member in the group until every member fetched.
                        thread::sleep(Duration::from_secs(2));
                        return fetching;
                    }
                }
                panic!("a member never fetched");
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let last = members
        .into_iter()
        .map(|member| member.join().expect("member"))
        .max()
        .unwrap();
    (last - start).as_secs_f64()
}

/// Total OffsetCommits per second from `committers` threads committing synchronously.
fn commit_rate(bootstrap: &str, topic: &str, committers: usize, seconds: u64) -> f64 {
    let barrier = Arc::new(Barrier::new(committers));
    let threads: Vec<_> = (0..committers)
        .map(|i| {
            let consumer: BaseConsumer = config(bootstrap)
                .set("group.id", format!("committer-{i}"))
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let (barrier, topic) = (Arc::clone(&barrier), topic.to_owned());
            thread::spawn(move || {
                barrier.wait();
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut commits = 0u64;
                while Instant::now() < end {
                    let mut offsets = TopicPartitionList::new();
                    let offset = Offset::Offset(commits as i64);
                    offsets
                        .add_partition_offset(&topic, (i as i32) % PARTITIONS, offset)
                        .unwrap();
                    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
                    commits += 1;
                }
                commits
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / seconds as f64
}

fn main() {
    let options = Options::parse();
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("SPATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target/release/spate"));
    let dir = std::env::var_os("SPATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target/groups_bench"));
    let (broker, bootstrap) = Broker::start(&binary, &dir, options.initial_delay_ms);
    let topic = "group-bench";
    prepare_topic(&bootstrap, topic);
    let mut times = Vec::new();
    for round in 0..options.rounds {
        let seconds = rebalance_round(&bootstrap, topic, round);
        eprintln!("round {round}: {MEMBERS} members fetching after {seconds:.3} s");
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    let single = commit_rate(&bootstrap, topic, 1, options.commit_seconds);
    let many = commit_rate(
        &bootstrap,
        topic,
        options.committers,
        options.commit_seconds,
    );
    println!(
        "{{\"bench\":\"groups\",\"members\":{MEMBERS},\"initial_delay_ms\":{},\"rebalance_s\":{:?},\
         \"rebalance_median_s\":{:.3},\"commits_per_s_1\":{single:.0},\"committers\":{},\
         \"commits_per_s\":{many:.0}}}",
        options.initial_delay_ms,
        times,
        times[times.len() / 2],
        options.committers,
    );
    drop(broker);
}
