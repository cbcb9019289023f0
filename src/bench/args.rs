//! The `spate bench` command line (clap): which load, against which broker, how much and how fast.
//!
//! Parsing only checks the shape of each flag; `BenchPlan::from_args` (in `plan.rs`) checks how
//! flags combine. Bad input becomes a clap or `BenchError::Config` message, never a panic.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::parse_duration;

/// `spate bench [produce|consume|e2e] ...`: the bundled load generator.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// The load to run. Without one: `e2e --embedded` with the default flags.
    #[command(subcommand)]
    pub mode: Option<BenchMode>,
}

impl BenchArgs {
    /// The mode and its flags, with `e2e --embedded` filled in when no subcommand was given.
    pub fn mode_or_default(&self) -> (BenchModeKind, LoadArgs) {
        match &self.mode {
            Some(BenchMode::Produce(load)) => (BenchModeKind::Produce, load.clone()),
            Some(BenchMode::Consume(load)) => (BenchModeKind::Consume, load.clone()),
            Some(BenchMode::E2e(load)) => (BenchModeKind::E2e, load.clone()),
            None => (BenchModeKind::E2e, LoadArgs::embedded_default()),
        }
    }
}

/// The loads `spate bench` can run.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchMode {
    /// Produce records and measure acknowledgement latency.
    Produce(LoadArgs),
    /// Consume the records already in the topic, from the earliest offset.
    Consume(LoadArgs),
    /// Produce and consume at once; latency is from the intended send time to consumption.
    E2e(LoadArgs),
}

/// `BenchMode` without its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchModeKind {
    /// Produce only.
    Produce,
    /// Consume only.
    Consume,
    /// Produce and consume.
    E2e,
}

impl BenchModeKind {
    /// Whether this mode runs producers.
    pub fn produces(self) -> bool {
        matches!(self, BenchModeKind::Produce | BenchModeKind::E2e)
    }

    /// Whether this mode runs consumers.
    pub fn consumes(self) -> bool {
        matches!(self, BenchModeKind::Consume | BenchModeKind::E2e)
    }
}

/// Flags shared by every mode.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct LoadArgs {
    /// Broker to load, `HOST:PORT`. Without it the broker runs in this process (`--embedded`).
    #[arg(long)]
    pub bootstrap: Option<String>,

    /// Start a Spate broker in this process, in a temporary directory, on the cores the generator
    /// does not use; it is stopped and its directory removed at the end.
    #[arg(long, conflicts_with = "bootstrap")]
    pub embedded: bool,

    /// Topic to produce to or consume from; created if missing.
    #[arg(long, default_value = "spate-bench")]
    pub topic: String,

    /// Partitions of the topic when it is created (an existing topic keeps its own count).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub partitions: u32,

    /// Replication factor of the topic when it is created (-1: the broker's default).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true, value_parser = clap::value_parser!(i16).range(-1..=32))]
    pub replication_factor: i16,

    /// Topic configuration for a topic the bench creates, `NAME=VALUE` with Kafka's names,
    /// repeatable (e.g. `--topic-config max.message.bytes=4194304` for 1 MiB records).
    #[arg(long = "topic-config", value_parser = parse_topic_config)]
    pub topic_configs: Vec<(String, String)>,

    /// Delete the topic first if it exists, so the run starts from an empty topic with exactly
    /// --partitions and --topic-config (and a series of runs does not fill the disk).
    #[arg(long)]
    pub recreate_topic: bool,

    /// Bytes in each record's value (at least 16: the first 16 carry the send time and run id).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=(64 << 20)))]
    pub record_size: u32,

    /// Records to produce (or consume) in total; the run ends when they are all acknowledged
    /// (consume stops after the fetch that reaches the count, so it may read a few more).
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,

    /// How long to produce (or consume), e.g. `30s`. Default 10s when --records is not given.
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "duration_ms")]
    pub duration: Option<Duration>,

    /// Offered load in records per second over all producers (`50000/s` or `50000`), or `max`.
    /// With a rate, latency is measured from each record's intended send time.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,

    /// Producer clients, spread over the generator cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub producers: Option<u32>,

    /// Acknowledgement level: 0, 1 or all (-1).
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    pub acks: i16,

    /// Bytes a producer puts in one RecordBatch before sending it (batch.size).
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1..=(256 << 20)))]
    pub batch_bytes: u32,

    /// Bytes a producer may hold queued but unacknowledged (buffer.memory); `send` waits at the
    /// limit. At `--rate max` this sets the latency: a full buffer takes this long to drain.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub buffer_bytes: u32,

    /// Produce requests a producer keeps in flight per broker connection
    /// (max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub in_flight: u32,

    /// How long a producer waits for a batch to fill (linger.ms).
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,

    /// Compression codec of the produced batches.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Fraction of each payload that compresses (repeated text); the rest is random bytes.
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction)]
    pub compressibility: f64,

    /// Generator cores (one pinned shard each, the last of the CPUs this process may use). Default: half of them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cores: Option<u32>,

    /// Write every figure and the whole configuration to this JSON file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

impl LoadArgs {
    /// What `spate bench` runs without a subcommand.
    pub fn embedded_default() -> Self {
        Self {
            bootstrap: None,
            embedded: true,
            topic: "spate-bench".into(),
            partitions: 16,
            replication_factor: -1,
            topic_configs: Vec::new(),
            recreate_topic: false,
            record_size: 1024,
            records: None,
            duration: None,
            rate: Rate::Max,
            producers: None,
            acks: 1,
            batch_bytes: 256 * 1024,
            buffer_bytes: 16 << 20,
            in_flight: 5,
            linger_ms: 1,
            compression: Compression::None,
            compressibility: 0.5,
            cores: None,
            json: None,
        }
    }
}

/// The offered load.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rate {
    /// As fast as the producers can go (closed loop through the producer's buffer).
    Max,
    /// Records per second over all producers (open loop).
    PerSecond(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    let number = text.strip_suffix("/s").unwrap_or(text);
    let rate: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected records per second (e.g. 50000/s) or max"))?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("{text:?}: the rate must be positive"));
    }
    Ok(Rate::PerSecond(rate))
}

fn parse_topic_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "{text:?}: expected NAME=VALUE, e.g. max.message.bytes=4194304"
        )),
    }
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("{text:?}: expected 0, 1 or all")),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?}: expected a number from 0 to 1"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{text:?}: expected a number from 0 to 1"));
    }
    Ok(value)
}

/// Compression codecs a producer can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed batches.
    None,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

mod duration_ms {
    //! Durations in the JSON report as milliseconds.
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&(duration.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the rate syntax accepts `N/s`, `N` and `max`, and refuses zero and words.
    #[test]
    fn rate_parses() {
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert_eq!(parse_rate("5000/s"), Ok(Rate::PerSecond(5000.0)));
        assert_eq!(parse_rate("12.5"), Ok(Rate::PerSecond(12.5)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }

    // Proves acks accepts Kafka's three levels and nothing else.
    #[test]
    fn acks_parse() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }
}
