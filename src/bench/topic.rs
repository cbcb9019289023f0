//! Before the load: make sure the topic exists and learn its partition count.
//!
//! Runs on a short-lived executor pinned to the first generator core, before the generator
//! shards start, so every shard sees the same partition count. An existing topic keeps its own
//! partition count (the plan records the one found) unless `--recreate-topic` deletes it first;
//! `consume` never creates a topic.

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::client::{ClientError, Cluster};
use crate::protocol::ErrorCode;

use super::BenchError;
use super::plan::RunPlan;

/// How long to wait for Metadata to list a topic another client just created.
const TOPIC_VISIBLE_WAIT: Duration = Duration::from_secs(10);

/// Locked I/O memory of the set-up executor: it only sends a few small requests.
const SETUP_IO_MEMORY_BYTES: usize = 256 << 10;

/// io_uring depth of the set-up executor (its memory is locked too; a few sockets need little).
const SETUP_RING_DEPTH: usize = 32;

/// Creates the topic if the mode produces and it is missing; returns its partition count.
pub fn prepare_topic(plan: &RunPlan) -> Result<u32, BenchError> {
    let cpu = plan.generator_cpus[0];
    let bootstrap = plan.bootstrap.clone();
    let topic = plan.args.topic.clone();
    let create = plan.mode.produces();
    let partitions = plan.partitions;
    let configs = plan.args.topic_configs.clone();
    let replication_factor = plan.args.replication_factor;
    let recreate = plan.args.recreate_topic;
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("bench-setup")
        .io_memory(SETUP_IO_MEMORY_BYTES)
        .ring_depth(SETUP_RING_DEPTH)
        .spawn(move || async move {
            let wanted = WantedTopic {
                name: &topic,
                partitions,
                replication_factor,
                configs: &configs,
                create,
                recreate,
            };
            find_or_create(&bootstrap, &wanted).await
        })
        .map_err(|error| BenchError::Executor(error.to_string()))?;
    handle
        .join()
        .map_err(|error| BenchError::Executor(error.to_string()))?
}

/// The topic the run wants.
struct WantedTopic<'a> {
    name: &'a str,
    partitions: u32,
    /// Its replication factor if created (-1: the broker's default).
    replication_factor: i16,
    configs: &'a [(String, String)],
    /// Create it if missing (modes that produce).
    create: bool,
    /// Delete it first if it exists.
    recreate: bool,
}

async fn find_or_create(bootstrap: &str, wanted: &WantedTopic<'_>) -> Result<u32, BenchError> {
    let topic = wanted.name;
    let client = |what: &str| {
        let what = what.to_owned();
        move |source: ClientError| BenchError::Client { what, source }
    };
    let cluster = Cluster::connect(bootstrap)
        .await
        .map_err(client(&format!("connecting to {bootstrap}")))?;
    cluster
        .refresh_metadata(&[topic])
        .await
        .map_err(client("reading metadata"))?;
    if wanted.recreate && cluster.partition_count(topic).is_some() {
        cluster
            .delete_topic(topic)
            .await
            .map_err(client(&format!("deleting topic {topic}")))?;
        wait_until_gone(&cluster, topic).await?;
    }
    if cluster.partition_count(topic).is_none() {
        if !wanted.create {
            return Err(BenchError::Config(format!(
                "topic {topic:?} does not exist on {bootstrap}: produce to it first"
            )));
        }
        let partitions = i32::try_from(wanted.partitions)
            .map_err(|_| BenchError::Config("--partitions is too large".into()))?;
        let configs: Vec<(&str, &str)> = wanted
            .configs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let created = cluster
            .create_topic(topic, partitions, wanted.replication_factor, &configs)
            .await;
        match created {
            Ok(()) => {}
            // Another client created it between our Metadata and CreateTopics: use theirs.
            Err(error) if error.kafka_code() == Some(ErrorCode::TopicAlreadyExists) => {}
            Err(error) => return Err(client(&format!("creating topic {topic}"))(error)),
        }
    }
    let deadline = Instant::now() + TOPIC_VISIBLE_WAIT;
    loop {
        cluster
            .refresh_metadata(&[topic])
            .await
            .map_err(client("reading metadata"))?;
        if cluster.partition_count(topic) == Some(0) {
            return Err(BenchError::Config(format!(
                "topic {topic:?} has no partitions"
            )));
        }
        if let Some(count) = cluster.partition_count(topic) {
            let all_led = (0..count as i32).all(|p| cluster.leader(topic, p).is_some());
            if all_led {
                return u32::try_from(count)
                    .map_err(|_| BenchError::Config("too many partitions".into()));
            }
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Config(format!(
                "topic {topic:?} has no leader for every partition after {TOPIC_VISIBLE_WAIT:?}"
            )));
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until Metadata no longer lists `topic` after its deletion.
async fn wait_until_gone(cluster: &Cluster, topic: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + TOPIC_VISIBLE_WAIT;
    loop {
        cluster
            .refresh_metadata(&[topic])
            .await
            .map_err(|source| BenchError::Client {
                what: "reading metadata".into(),
                source,
            })?;
        if cluster.partition_count(topic).is_none() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Config(format!(
                "topic {topic:?} is still listed {TOPIC_VISIBLE_WAIT:?} after its deletion"
            )));
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}
