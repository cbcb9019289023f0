//! Broker and topic configuration: every bound the broker enforces, with its reason.
//!
//! Broker settings come from `spate serve` flags (or `SPATE_*` environment variables). Topic
//! settings keep Kafka's names (`retention.ms`, `segment.bytes`, `max.message.bytes`, ...) so admin
//! tools and clients see what they expect; the broker-wide defaults for them are flags too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::record_batch::Compression;

/// Bytes in one O_DIRECT block: every disk write and read is aligned to this.
pub const BLOCK_BYTES: u64 = 4096;

/// Broker configuration, as parsed from `spate serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerConfig {
    /// Directory holding the partition logs and the metadata log.
    #[arg(long, env = "SPATE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Port of shard 0 (the bootstrap address); shard i listens on port + i. 0 lets every shard
    /// take a free port; the ports are logged and written to DATA_DIR/listeners.
    #[arg(long, default_value_t = 9092, env = "SPATE_PORT")]
    pub port: u16,

    /// Shards (one pinned glommio executor each). Default: every online core.
    #[arg(long, env = "SPATE_CORES")]
    pub cores: Option<usize>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "SPATE_HOST")]
    pub host: String,

    /// Host name clients are told to connect to (Metadata). Default: --host.
    #[arg(long, env = "SPATE_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,

    /// Create unknown topics on Metadata and Produce requests, as Kafka's
    /// auto.create.topics.enable does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SPATE_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: bool,

    /// Partitions of an auto-created topic, or of CreateTopics with -1 (num.partitions).
    #[arg(long, default_value_t = 1, env = "SPATE_DEFAULT_PARTITIONS")]
    pub default_partitions: i32,

    /// Largest request frame accepted (socket.request.max.bytes). A bigger frame closes the
    /// connection before its body is read, so a client cannot make a shard allocate it.
    #[arg(long, default_value_t = 100 * 1024 * 1024, env = "SPATE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: usize,

    /// Requests read ahead of their responses on one connection. At the limit the shard stops
    /// reading that socket until the oldest response is sent (clients pipeline up to 5).
    #[arg(
        long,
        default_value_t = 16,
        env = "SPATE_INFLIGHT_REQUESTS_PER_CONNECTION_MAX"
    )]
    pub inflight_requests_per_connection_max: usize,

    /// Bytes of requests read but not yet answered, per shard (queued.max.request.bytes). A
    /// connection reserves a frame's size before reading its body and holds it until the response
    /// is written; fetch responses are charged too. When the budget is spent the shard stops
    /// reading request bodies (those sockets wait in the kernel) until responses go out; a frame
    /// larger than the budget waits until the whole budget is free and then takes it.
    #[arg(
        long,
        default_value_t = 256 * 1024 * 1024,
        env = "SPATE_QUEUED_MAX_REQUEST_BYTES"
    )]
    pub queued_max_request_bytes: usize,

    /// Largest fetch response, in record bytes, whatever the client asks (fetch.max.bytes). A
    /// fetch reads no more than this (except one whole batch, KIP-74, so a consumer progresses).
    #[arg(long, default_value_t = 55 * 1024 * 1024, env = "SPATE_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: usize,

    /// A connection that makes no progress for this long is closed (connections.max.idle.ms).
    /// Progress is a whole request received or a response written; time the broker itself spends
    /// (a parked fetch, a produce awaiting its write, waiting for request budget) does not count.
    /// So it also closes a client that stops reading its responses, and one that trickles a frame
    /// without finishing it.
    #[arg(long, default_value_t = 600_000, env = "SPATE_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: u64,

    /// Connections one shard serves at once; further connections wait in the accept queue.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "SPATE_CONNECTIONS_PER_SHARD_MAX"
    )]
    pub connections_per_shard_max: usize,

    /// Memory for recently appended batches per shard, so tailing consumers are served from
    /// memory. At the limit the oldest batches are dropped from the cache (they stay on disk).
    #[arg(long, default_value_t = 256 * 1024 * 1024, env = "SPATE_CACHE_BYTES_PER_SHARD")]
    pub cache_bytes_per_shard: usize,

    /// glommio registered I/O memory per shard. `ulimit -l` (locked memory) must cover
    /// shards x this, or glommio falls back to unregistered buffers (slower, still correct).
    #[arg(long, default_value_t = 2 * 1024 * 1024, env = "SPATE_IO_MEMORY_BYTES")]
    pub io_memory_bytes: usize,

    /// io_uring depth per ring. Its memory is locked too, so it is kept small.
    #[arg(long, default_value_t = 128, env = "SPATE_RING_DEPTH")]
    pub ring_depth: usize,

    /// How long a task may run before yielding to the other task queues.
    #[arg(long, default_value = "2ms", value_parser = parse_duration, env = "SPATE_PREEMPT")]
    pub preempt: Duration,

    /// How often each shard checks its partitions for segments retention deletes
    /// (log.retention.check.interval.ms).
    #[arg(
        long,
        default_value_t = 300_000,
        env = "SPATE_LOG_RETENTION_CHECK_INTERVAL_MS"
    )]
    pub log_retention_check_interval_ms: u64,

    /// Append to this file, for every segment, where its data ends at each open and each
    /// fdatasync: a test harness replays a power loss from it (src/io/sync_journal.rs). Costs a
    /// blocking-pool write per fdatasync; for fault tests only.
    #[arg(long, env = "SPATE_SYNC_JOURNAL", hide = true)]
    pub sync_journal: Option<PathBuf>,

    /// Cut a partition log at corruption found at start-up (losing the valid data after it)
    /// instead of keeping the partition offline. For an operator who accepts that loss.
    #[arg(
        long,
        default_value_t = false,
        env = "SPATE_UNSAFE_TRUNCATE_CORRUPT_LOGS"
    )]
    pub unsafe_truncate_corrupt_logs: bool,

    /// Cut the metadata log (DATA_DIR/__meta/metadata.log) at a damaged record that valid ones
    /// follow, instead of refusing to start. Every topic change from the damage on is lost; no
    /// partition directory is removed in that start, since none is proven deleted. Apart from
    /// --unsafe-truncate-corrupt-logs because it loses whole topics, not one partition's tail.
    #[arg(
        long,
        default_value_t = false,
        env = "SPATE_UNSAFE_TRUNCATE_CORRUPT_METADATA"
    )]
    pub unsafe_truncate_corrupt_metadata: bool,

    /// Cut a group offset store (DATA_DIR/__groups/shard-N/offsets.log) at a damaged record that
    /// valid ones follow, instead of refusing to start. The committed offsets from the damage on
    /// are lost (consumers restart from an older commit or auto.offset.reset).
    #[arg(
        long,
        default_value_t = false,
        env = "SPATE_UNSAFE_TRUNCATE_CORRUPT_OFFSETS"
    )]
    pub unsafe_truncate_corrupt_offsets: bool,

    /// How long a partition keeps an idempotent producer's state after that producer's last
    /// batch, measured by the batch's max timestamp (producer.id.expiration.ms). Each partition
    /// forgets older producers at every retention check, so the state does not grow without
    /// bound; a forgotten producer's next batch is accepted at any sequence, so a retry arriving
    /// later than this may be stored twice.
    #[arg(
        long = "producer-id-expiration-ms",
        default_value_t = 86_400_000,
        value_parser = clap::value_parser!(i64).range(1..),
        env = "SPATE_PRODUCER_ID_EXPIRATION_MS"
    )]
    pub producer_id_expiration_ms: i64,

    /// How long the first rebalance of an empty group waits for more members
    /// (group.initial.rebalance.delay.ms), so consumers starting together share one rebalance.
    /// Each member joining during the wait extends it by this much, up to the rebalance timeout.
    #[arg(
        long = "group-initial-rebalance-delay-ms",
        default_value_t = 3000,
        env = "SPATE_GROUP_INITIAL_REBALANCE_DELAY_MS"
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// Smallest session timeout a member may ask for (group.min.session.timeout.ms); below it
    /// JoinGroup gets INVALID_SESSION_TIMEOUT, so a member cannot make the coordinator sweep often.
    #[arg(
        long = "group-min-session-timeout-ms",
        default_value_t = 6000,
        env = "SPATE_GROUP_MIN_SESSION_TIMEOUT_MS"
    )]
    pub group_min_session_timeout_ms: i32,

    /// Largest session timeout a member may ask for (group.max.session.timeout.ms); above it
    /// JoinGroup gets INVALID_SESSION_TIMEOUT, so a dead member cannot hold partitions for long.
    #[arg(
        long = "group-max-session-timeout-ms",
        default_value_t = 1_800_000,
        env = "SPATE_GROUP_MAX_SESSION_TIMEOUT_MS"
    )]
    pub group_max_session_timeout_ms: i32,

    /// Largest records region a compressed produced batch may decompress to. Every compressed
    /// batch is decompressed (as a stream) to validate its records; one that decompresses to
    /// more is refused with MESSAGE_TOO_LARGE, so a small hostile batch cannot make a shard
    /// spend long decompressing it, or hold that much memory when the topic re-compresses it.
    #[arg(
        long,
        default_value_t = 256 * 1024 * 1024,
        env = "SPATE_DECOMPRESSED_BATCH_BYTES_MAX"
    )]
    pub decompressed_batch_bytes_max: usize,

    /// Walk the records of compressed produced batches too, decompressing them as a stream, as
    /// Kafka's LogValidator does. Off, a compressed batch is checked only up to its header and
    /// CRC, so a client can store records no consumer can read; uncompressed batches are always
    /// walked. The cost per codec is in perf/RESULTS.md.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        env = "SPATE_VALIDATE_COMPRESSED_RECORDS"
    )]
    pub validate_compressed_records: bool,

    /// This broker's id in a cluster (node.id), 0..=1023. Its shards are Kafka nodes
    /// `node_id << 10 | shard`. Needs --controller-quorum-voters; without both the broker is a
    /// cluster of one with id 0. The data dir remembers it (DATA_DIR/meta.properties): a start
    /// with another id is refused.
    #[arg(long, env = "SPATE_NODE_ID")]
    pub node_id: Option<u32>,

    /// The controller quorum (controller.quorum.voters): `id@host:port` entries separated by
    /// commas, e.g. `1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093`. Empty: single-node mode.
    /// Any count of voters works; 3 or 5 survive the loss of 1 or 2 of them.
    #[arg(
        long,
        env = "SPATE_CONTROLLER_QUORUM_VOTERS",
        value_parser = parse_quorum_voters,
        default_value = ""
    )]
    // The full path makes clap parse the whole list as one value, not one value per flag.
    pub controller_quorum_voters: ::std::vec::Vec<QuorumVoter>,

    /// This broker's rack (broker.rack): replicas of one partition go to distinct racks when
    /// there are enough of them.
    #[arg(long, env = "SPATE_RACK")]
    pub rack: Option<String>,

    /// Bytes per second each shard reads for replicas far behind their leader (restarted,
    /// reset or new ones catching up), so their catch-up never starves produce and fetch on
    /// that shard (Redpanda's raft_learner_recovery_rate). 0: no limit.
    #[arg(
        long,
        default_value_t = 100 * 1024 * 1024,
        env = "SPATE_REPLICA_RECOVERY_BYTES_PER_SECOND"
    )]
    pub replica_recovery_bytes_per_second: u64,

    /// A follower of a replicated partition that has not answered its leader for this long
    /// (replica.lag.time.max.ms) no longer counts as in sync: with fewer in-sync replicas than
    /// the topic's min.insync.replicas, acks=all produce gets NOT_ENOUGH_REPLICAS.
    #[arg(long, default_value_t = 30_000, env = "SPATE_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: u64,

    /// Move each replicated partition's leadership back to its preferred replica (the first of
    /// its replicas) once that replica holds the whole log and answers
    /// (auto.leader.rebalance.enable), e.g. after its broker returned from a failure.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        env = "SPATE_AUTO_LEADER_REBALANCE_ENABLE"
    )]
    pub auto_leader_rebalance_enable: bool,

    /// How often each shard looks for partitions it leads whose preferred replica could lead
    /// again (leader.imbalance.check.interval.seconds).
    #[arg(
        long,
        default_value_t = 300,
        env = "SPATE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS"
    )]
    pub leader_imbalance_check_interval_seconds: u64,

    /// A broker whose heartbeats stop reaching the controller for this long is fenced
    /// (broker.session.timeout.ms): its partitions show no leader until it heartbeats again.
    #[arg(long, default_value_t = 9000, env = "SPATE_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: u64,

    /// How often a broker heartbeats to the controller (broker.heartbeat.interval.ms). Must be
    /// below --broker-session-timeout-ms, or a live broker would be fenced.
    #[arg(
        long,
        default_value_t = 2000,
        env = "SPATE_BROKER_HEARTBEAT_INTERVAL_MS"
    )]
    pub broker_heartbeat_interval_ms: u64,

    /// Partitions of the internal `__consumer_offsets` topic, which holds a cluster's committed
    /// group offsets (offsets.topic.num.partitions; Redpanda's 16 rather than Kafka's 50: each
    /// is a Raft group on every replica broker). Fixed once the topic exists.
    #[arg(
        long,
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1000),
        env = "SPATE_OFFSETS_TOPIC_NUM_PARTITIONS"
    )]
    pub offsets_topic_num_partitions: u32,

    /// Replication factor of `__consumer_offsets` (offsets.topic.replication.factor). The topic
    /// is created at the first FindCoordinator; until that many brokers are alive groups get
    /// COORDINATOR_NOT_AVAILABLE, as in Kafka. 1 keeps each group's offsets in its coordinator
    /// shard's local offset store instead, as a single broker does (they are then lost with
    /// that broker's disk, and its groups wait while it is down).
    #[arg(
        long,
        default_value_t = 3,
        value_parser = clap::value_parser!(i16).range(1..),
        env = "SPATE_OFFSETS_TOPIC_REPLICATION_FACTOR"
    )]
    pub offsets_topic_replication_factor: i16,

    /// Broker-wide defaults for topic configurations.
    #[command(flatten)]
    pub topic_defaults: TopicDefaults,
}

impl BrokerConfig {
    /// The host advertised to clients.
    pub fn advertised_host(&self) -> &str {
        self.advertised_host.as_deref().unwrap_or(&self.host)
    }

    /// The address connections to other brokers leave from: `--host` when it is one IP address
    /// (not a wildcard), so broker-to-broker traffic can be told from client traffic by source.
    pub fn source_address(&self) -> Option<std::net::IpAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|address| !address.is_unspecified())
    }

    /// Whether group offsets live in the replicated `__consumer_offsets` topic (a cluster with
    /// offsets.topic.replication.factor above 1) rather than in each shard's local store.
    pub fn replicated_offsets(&self) -> bool {
        self.cluster_mode() && self.offsets_topic_replication_factor > 1
    }

    /// Whether this broker is part of a cluster (a controller quorum was given).
    pub fn cluster_mode(&self) -> bool {
        !self.controller_quorum_voters.is_empty()
    }

    /// Checks the cluster flags against each other; the message names the flag to fix.
    pub fn validate_cluster(&self) -> Result<(), String> {
        match (self.node_id, self.cluster_mode()) {
            (None, true) => {
                return Err(
                    "--controller-quorum-voters needs --node-id (this broker's id, \
                            0..=1023)"
                        .to_owned(),
                );
            }
            (Some(_), false) => {
                return Err(
                    "--node-id needs --controller-quorum-voters (the controller \
                            quorum, e.g. 1@host:9093,2@host:9093,3@host:9093); without both \
                            the broker runs as a single node"
                        .to_owned(),
                );
            }
            _ => {}
        }
        if let Some(id) = self.node_id
            && id > NODE_ID_MAX
        {
            return Err(format!(
                "--node-id {id} is too large: broker ids are 0..={NODE_ID_MAX}, since a \
                 shard's Kafka node id is broker id << 10 | shard"
            ));
        }
        if self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms {
            return Err(format!(
                "--broker-heartbeat-interval-ms {} must be below --broker-session-timeout-ms \
                 {}, or a live broker would be fenced between two heartbeats",
                self.broker_heartbeat_interval_ms, self.broker_session_timeout_ms
            ));
        }
        Ok(())
    }
}

/// The largest broker id: node ids keep the shard in their low 10 bits, and producer ids carry
/// the broker id in 10 bits.
pub const NODE_ID_MAX: u32 = 1023;

/// One controller quorum voter (`id@host:port` in --controller-quorum-voters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's node id.
    pub id: u32,
    /// Host name, IPv4 address, or IPv6 address without its brackets.
    pub host: String,
    /// The voter's controller port.
    pub port: u16,
}

impl QuorumVoter {
    /// `host:port`, with an IPv6 host in brackets, for connecting.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses --controller-quorum-voters; an empty list means single-node mode.
fn parse_quorum_voters(text: &str) -> Result<Vec<QuorumVoter>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let voter = parse_quorum_voter(entry)?;
        if voters.iter().any(|v| v.id == voter.id) {
            return Err(format!("voter id {} appears twice in {text:?}", voter.id));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_quorum_voter(entry: &str) -> Result<QuorumVoter, String> {
    let expected = "expected id@host:port, e.g. 1@10.0.0.1:9093";
    if entry.is_empty() {
        return Err(format!("empty voter entry (a stray comma?); {expected}"));
    }
    let (id, address) = entry
        .split_once('@')
        .ok_or_else(|| format!("voter {entry:?} has no '@'; {expected}"))?;
    let id: u32 = id
        .parse()
        .map_err(|_| format!("voter {entry:?}: id {id:?} is not a number 0..={NODE_ID_MAX}"))?;
    if id > NODE_ID_MAX {
        return Err(format!("voter {entry:?}: id {id} is above {NODE_ID_MAX}"));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("voter {entry:?} has no ':port'; {expected}"))?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .filter(|h| h.contains(':'))
            .ok_or_else(|| format!("voter {entry:?}: malformed [IPv6] host"))?,
        None if host.contains(':') => {
            return Err(format!(
                "voter {entry:?}: an IPv6 host goes in brackets, e.g. 1@[::1]:9093"
            ));
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("voter {entry:?} has an empty host; {expected}"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("voter {entry:?}: port {port:?} is not a number 1..=65535"))?;
    Ok(QuorumVoter {
        id,
        host: host.to_owned(),
        port,
    })
}

/// Broker-wide defaults for the per-topic configurations, with Kafka's broker names.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicDefaults {
    /// Default segment.bytes: a segment rolls when it reaches this size (log.segment.bytes).
    #[arg(long = "log-segment-bytes", default_value_t = 1024 * 1024 * 1024)]
    pub segment_bytes: u64,

    /// Default segment.ms: a segment rolls once its first batch is this old (log.roll.ms).
    #[arg(long = "log-segment-ms", default_value_t = 7 * 24 * 3600 * 1000)]
    pub segment_ms: i64,

    /// Default max.message.bytes: the largest record batch accepted (message.max.bytes).
    #[arg(long = "message-max-bytes", default_value_t = 1_048_588)]
    pub max_message_bytes: u64,

    /// Default retention.ms (log.retention.ms); -1 keeps data forever.
    #[arg(long = "log-retention-ms", default_value_t = 7 * 24 * 3600 * 1000, allow_hyphen_values = true)]
    pub retention_ms: i64,

    /// Default retention.bytes (log.retention.bytes); -1 means no size limit.
    #[arg(long = "log-retention-bytes", default_value_t = -1, allow_hyphen_values = true)]
    pub retention_bytes: i64,

    /// Default message.timestamp.type: CreateTime or LogAppendTime.
    #[arg(long = "log-message-timestamp-type", default_value = "CreateTime", value_parser = parse_timestamp_type)]
    pub message_timestamp_type: TimestampType,

    /// Default compression.type: the codec batches are stored with (uncompressed, gzip, snappy,
    /// lz4, zstd), or producer to keep each batch as its producer compressed it.
    #[arg(long = "compression-type", default_value = "producer", value_parser = parse_compression_type)]
    pub compression_type: CompressionType,

    /// Default min.insync.replicas: the in-sync replicas (the leader included) an acks=all
    /// produce to a replicated partition needs, or it gets NOT_ENOUGH_REPLICAS.
    #[arg(long = "min-insync-replicas", default_value_t = 1)]
    pub min_insync_replicas: i64,
}

impl Default for TopicDefaults {
    /// Kafka's own broker defaults, the same values the flags default to.
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            message_timestamp_type: TimestampType::CreateTime,
            compression_type: CompressionType::Producer,
            min_insync_replicas: 1,
        }
    }
}

/// A topic's `compression.type`: keep the producer's codec, or store every batch with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CompressionType {
    /// Batches are stored as their producer compressed them.
    Producer,
    /// Batches with another codec are re-compressed with this one before they are stored.
    Codec(Compression),
}

impl CompressionType {
    /// Kafka's spelling.
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Codec(codec) => codec.name(),
        }
    }
}

fn parse_compression_type(text: &str) -> Result<CompressionType, String> {
    Ok(match text {
        "producer" => CompressionType::Producer,
        "uncompressed" => CompressionType::Codec(Compression::None),
        "gzip" => CompressionType::Codec(Compression::Gzip),
        "snappy" => CompressionType::Codec(Compression::Snappy),
        "lz4" => CompressionType::Codec(Compression::Lz4),
        "zstd" => CompressionType::Codec(Compression::Zstd),
        _ => {
            return Err(format!(
                "expected uncompressed, gzip, snappy, lz4, zstd or producer, got {text:?}"
            ));
        }
    })
}

/// Which timestamp a topic keeps: the producer's or the broker's append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimestampType {
    /// The producer's record timestamps.
    CreateTime,
    /// The broker's clock at append, written into each batch.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's spelling.
    pub fn name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

fn parse_timestamp_type(text: &str) -> Result<TimestampType, String> {
    match text {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err(format!(
            "expected CreateTime or LogAppendTime, got {text:?}"
        )),
    }
}

/// Parses durations such as `2ms`, `5s`, `30s`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit (ms, s, m)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    }
}

/// One topic's configuration, with Kafka's names on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    /// `segment.bytes`: roll the active segment at this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted (MESSAGE_TOO_LARGE above).
    pub max_message_bytes: u64,
    /// `retention.ms`: delete closed segments older than this; -1 keeps them.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest closed segments beyond this size; -1 keeps them.
    pub retention_bytes: i64,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `compression.type`: the codec batches are stored with, or the producer's.
    pub compression_type: CompressionType,
    /// `min.insync.replicas`: in-sync replicas an acks=all produce to a replicated partition
    /// needs (states written before it existed read as 1, Kafka's default).
    #[serde(default = "min_insync_replicas_default")]
    pub min_insync_replicas: i64,
}

fn min_insync_replicas_default() -> i64 {
    1
}

/// A topic config value that cannot be used, with the reason for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("invalid value {value:?} for {name}: {reason}")]
pub struct InvalidTopicConfig {
    /// The config name.
    pub name: String,
    /// The value given.
    pub value: String,
    /// Why it was refused.
    pub reason: std::borrow::Cow<'static, str>,
}

impl TopicConfig {
    /// The configuration a topic gets from the broker defaults.
    pub fn from_defaults(defaults: &TopicDefaults) -> Self {
        Self {
            segment_bytes: defaults.segment_bytes,
            segment_ms: defaults.segment_ms,
            max_message_bytes: defaults.max_message_bytes,
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            message_timestamp_type: defaults.message_timestamp_type,
            compression_type: defaults.compression_type,
            min_insync_replicas: defaults.min_insync_replicas,
        }
    }

    /// Applies one `name = value` setting given with Kafka's name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), InvalidTopicConfig> {
        let invalid = |reason: &'static str| InvalidTopicConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        };
        let number = || value.parse::<i64>().map_err(|_| invalid("not an integer"));
        match name {
            "segment.bytes" => {
                let bytes = number()?;
                if bytes < 14 {
                    return Err(invalid("must be at least 14"));
                }
                self.segment_bytes = bytes as u64;
            }
            "segment.ms" => {
                let ms = number()?;
                if ms < 1 {
                    return Err(invalid("must be at least 1"));
                }
                self.segment_ms = ms;
            }
            "max.message.bytes" => {
                let bytes = number()?;
                if bytes < 0 {
                    return Err(invalid("must not be negative"));
                }
                self.max_message_bytes = bytes as u64;
            }
            "retention.ms" => {
                let ms = number()?;
                if ms < -1 {
                    return Err(invalid("must be -1 or more"));
                }
                self.retention_ms = ms;
            }
            "retention.bytes" => self.retention_bytes = number()?,
            "message.timestamp.type" => {
                self.message_timestamp_type = parse_timestamp_type(value)
                    .map_err(|_| invalid("CreateTime or LogAppendTime"))?
            }
            "compression.type" => {
                self.compression_type = parse_compression_type(value)
                    .map_err(|_| invalid("uncompressed, gzip, snappy, lz4, zstd or producer"))?
            }
            "min.insync.replicas" => {
                let replicas = number()?;
                if replicas < 1 {
                    return Err(invalid("must be at least 1"));
                }
                self.min_insync_replicas = replicas;
            }
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => return Err(invalid("only cleanup.policy=delete is supported yet")),
            _ => return Err(invalid("unknown or unsupported topic config")),
        }
        Ok(())
    }

    /// The configuration as Kafka-named string pairs (for DescribeConfigs and the metadata log).
    pub fn to_entries(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            (
                "message.timestamp.type",
                self.message_timestamp_type.name().to_owned(),
            ),
            ("cleanup.policy", "delete".to_owned()),
            ("compression.type", self.compression_type.name().to_owned()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs_use_kafka_names_and_reject_bad_values() {
        // Proves settings round-trip by Kafka name and bad values are errors with a reason.
        let defaults = TopicDefaults::default();
        let mut config = TopicConfig::from_defaults(&defaults);
        config.set("max.message.bytes", "6000000").unwrap();
        config
            .set("message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(config.to_entries()["max.message.bytes"], "6000000");
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert!(config.set("segment.bytes", "abc").is_err());
        config.set("segment.ms", "60000").unwrap();
        assert_eq!(config.to_entries()["segment.ms"], "60000");
        assert!(config.set("segment.ms", "0").is_err());
        assert!(config.set("cleanup.policy", "compact").is_err());
        assert!(config.set("no.such.config", "1").is_err());
        config.set("compression.type", "zstd").unwrap();
        assert_eq!(
            config.compression_type,
            CompressionType::Codec(Compression::Zstd)
        );
        assert_eq!(config.to_entries()["compression.type"], "zstd");
        for bad in ["none", "ZSTD", "brotli", ""] {
            assert!(config.set("compression.type", bad).is_err(), "{bad:?}");
        }
        assert_eq!(config.compression_type.name(), "zstd");
    }

    #[test]
    fn topic_defaults_match_the_flag_defaults() {
        // Proves `TopicDefaults::default()` and the flags' defaults cannot drift apart.
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            defaults: TopicDefaults,
        }
        let parsed = Flags::parse_from(["spate"]).defaults;
        let default = TopicDefaults::default();
        assert_eq!(parsed.segment_bytes, default.segment_bytes);
        assert_eq!(parsed.segment_ms, default.segment_ms);
        assert_eq!(parsed.max_message_bytes, default.max_message_bytes);
        assert_eq!(parsed.retention_ms, default.retention_ms);
        assert_eq!(parsed.retention_bytes, default.retention_bytes);
        assert_eq!(
            parsed.message_timestamp_type,
            default.message_timestamp_type
        );
        assert_eq!(parsed.compression_type, default.compression_type);
    }

    fn broker_flags(args: &[&str]) -> Result<BrokerConfig, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            broker: BrokerConfig,
        }
        let argv = ["spate", "--data-dir", "/d"].iter().chain(args);
        Flags::try_parse_from(argv)
            .map(|flags| flags.broker)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn quorum_voters_parse_kafka_format() {
        // Proves `id@host:port` lists parse (names, IPv4, bracketed IPv6) and keep their order.
        let voters = parse_quorum_voters("1@broker-a:9093, 2@10.0.0.2:9094,3@[::1]:9095").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(
            voters[0],
            QuorumVoter {
                id: 1,
                host: "broker-a".to_owned(),
                port: 9093
            }
        );
        assert_eq!(voters[1].address(), "10.0.0.2:9094");
        assert_eq!(voters[2].host, "::1");
        assert_eq!(voters[2].address(), "[::1]:9095");
        assert_eq!(parse_quorum_voters("0@h:1").unwrap()[0].id, 0);
        assert_eq!(parse_quorum_voters("").unwrap(), Vec::new());
    }

    #[test]
    fn quorum_voters_reject_malformed_entries_readably() {
        // Proves each kind of malformed entry is refused with a message naming the problem.
        let cases = [
            ("x@h:1", "is not a number"),
            ("-1@h:1", "is not a number"),
            ("1024@h:1", "above 1023"),
            ("h:9093", "no '@'"),
            ("1@h", "no ':port'"),
            ("1@h:0", "not a number 1..=65535"),
            ("1@h:70000", "not a number 1..=65535"),
            ("1@h:port", "not a number 1..=65535"),
            ("1@:9093", "empty host"),
            ("1@::1:9093", "brackets"),
            ("1@[::1:9093", "malformed"),
            ("1@h:1,,2@h:2", "empty voter entry"),
            ("1@h:1,", "empty voter entry"),
            ("1@a:1,2@b:2,1@c:3", "voter id 1 appears twice"),
        ];
        for (text, message) in cases {
            let error = parse_quorum_voters(text).unwrap_err();
            assert!(error.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn cluster_flags_parse_and_default_to_single_node() {
        // Proves the flags reach BrokerConfig, defaults are Kafka's, and no flags is single-node.
        let single = broker_flags(&[]).unwrap();
        assert!(!single.cluster_mode());
        assert_eq!(single.node_id, None);
        assert_eq!(single.rack, None);
        assert_eq!(single.broker_session_timeout_ms, 9000);
        assert_eq!(single.broker_heartbeat_interval_ms, 2000);
        assert_eq!(single.validate_cluster(), Ok(()));
        let cluster = broker_flags(&[
            "--node-id",
            "2",
            "--controller-quorum-voters",
            "1@a:9093,2@b:9093,3@c:9093",
            "--rack",
            "eu-1a",
        ])
        .unwrap();
        assert!(cluster.cluster_mode());
        assert_eq!(cluster.node_id, Some(2));
        assert_eq!(cluster.controller_quorum_voters.len(), 3);
        assert_eq!(cluster.controller_quorum_voters[2].address(), "c:9093");
        assert_eq!(cluster.rack.as_deref(), Some("eu-1a"));
        assert_eq!(cluster.validate_cluster(), Ok(()));
        let error = broker_flags(&["--controller-quorum-voters", "1@a"]).unwrap_err();
        assert!(error.contains("no ':port'"), "{error}");
    }

    #[test]
    fn cluster_validation_names_the_flag_to_fix() {
        // Proves each inconsistent combination is refused, and broker id 0 is allowed.
        let voters = ["--controller-quorum-voters", "0@a:9093"];
        let check = |args: &[&str]| broker_flags(args).unwrap().validate_cluster();
        assert_eq!(check(&[&["--node-id", "0"], &voters[..]].concat()), Ok(()));
        let error = check(&voters).unwrap_err();
        assert!(error.contains("needs --node-id"), "{error}");
        let error = check(&["--node-id", "1"]).unwrap_err();
        assert!(
            error.contains("--node-id needs --controller-quorum-voters"),
            "{error}"
        );
        let error = check(&[&["--node-id", "1024"], &voters[..]].concat()).unwrap_err();
        assert!(error.contains("0..=1023"), "{error}");
        assert_eq!(
            check(&[&["--node-id", "1023"], &voters[..]].concat()),
            Ok(())
        );
        let slow = ["--broker-heartbeat-interval-ms", "9000"];
        let error = check(&[&["--node-id", "0"], &voters[..], &slow[..]].concat()).unwrap_err();
        assert!(error.contains("must be below"), "{error}");
    }

    #[test]
    fn durations_parse_with_units() {
        // Proves the duration flags accept ms/s/m and reject the rest.
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
