//! `spate bench`: the bundled load generator, a Kafka client of its own on glommio,
//! thread-per-core, so it can saturate any Kafka-compatible broker and compare them on the same
//! work.
//!
//! - `args`: the command line (clap). `plan`: the flags checked together and resolved.
//! - `embedded`: the broker run in this process for `--embedded`.
//! - `topic`: creates the topic (or finds it) before the load.
//! - `payload`: pre-generated values with a 16-byte stamp. `rate`: open-loop send schedule.
//! - `latency`: hdrhistogram wrapper. `sample`: what shards measure and ship to the main thread.
//! - `report`: progress line, summary table, `--json`.
//!
//! The generator shards and the `run` entry point build on these parts.

pub mod args;
pub mod embedded;
pub mod latency;
pub mod payload;
pub mod plan;
pub mod rate;
pub mod report;
pub mod sample;
pub mod topic;

use crate::client::ClientError;
use crate::shard::launcher::LaunchError;

pub use args::{BenchArgs, BenchMode, BenchModeKind, LoadArgs};
pub use plan::RunPlan;
pub use report::{ProgressLine, Summary};

/// Why a run could not be carried out. Errors of individual records are not here: they are
/// counted in the summary.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Flags that cannot work together, or a topic that cannot be used.
    #[error("{0}")]
    Config(String),
    /// The embedded broker did not start.
    #[error("embedded broker: {0}")]
    Broker(#[from] LaunchError),
    /// A client call needed to set up the run failed.
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// The client's error.
        source: ClientError,
    },
    /// A generator executor could not be started or failed.
    #[error("generator executor: {0}")]
    Executor(String),
    /// A generator shard could not set up its clients.
    #[error("generator shard {shard}: {reason}")]
    Shard {
        /// The shard index.
        shard: usize,
        /// Why.
        reason: String,
    },
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
