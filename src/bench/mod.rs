//! `spate bench`: the bundled load generator, a Kafka client of its own on glommio,
//! thread-per-core, so it can saturate any Kafka-compatible broker and compare them on the same
//! work.
//!
//! - `args`: the command line (clap). `plan`: the flags checked together and resolved.
//! - `embedded`: the broker run in this process for `--embedded`.
//! - `topic`: creates the topic (or finds it) before the load.
//! - `shards`: one pinned executor per generator core, each with its own cluster connections,
//!   producers and consumer; `producer` and `consumer` are their loops.
//! - `payload`: pre-generated values with a 16-byte stamp. `rate`: open-loop send schedule.
//! - `latency`: hdrhistogram wrapper. `sample`: what shards measure and ship to the main thread.
//! - `report`: progress line, summary table, `--json`.
//!
//! `run` blocks the calling thread (the main thread) until the load is over; it prints nothing:
//! it hands progress lines to a callback and returns the summary, and the CLI prints them.

pub mod args;
pub mod consumer;
pub mod embedded;
pub mod latency;
pub mod payload;
pub mod plan;
pub mod producer;
pub mod rate;
pub mod report;
pub mod sample;
pub mod shards;
pub mod topic;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::client::ClientError;
use crate::shard::launcher::LaunchError;

pub use args::{BenchArgs, BenchMode, BenchModeKind, LoadArgs};
pub use plan::RunPlan;
pub use report::{ProgressLine, Summary};

use embedded::EmbeddedBroker;
use report::Totals;
use sample::SAMPLES_QUEUED_PER_SHARD_MAX;
use shards::{RunShared, ShardFailure};

/// How long the shards may take to connect and assign their partitions before the run is
/// abandoned.
const SHARDS_READY_WAIT: Duration = Duration::from_secs(30);

/// How often the main thread checks on the shards between samples.
const MAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often a progress line is produced.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

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

/// Runs the load `args` describe; `on_progress` gets a line every second.
pub fn run(
    mode: BenchModeKind,
    args: LoadArgs,
    on_progress: &mut dyn FnMut(&ProgressLine),
) -> Result<Summary, BenchError> {
    let mut plan = RunPlan::new(mode, args)?;
    let broker = match plan.broker_cores {
        Some(cores) => {
            let broker = EmbeddedBroker::start(cores)?;
            plan.bootstrap = broker.bootstrap();
            Some(broker)
        }
        None => None,
    };
    let result = run_load(&mut plan, on_progress);
    if let Some(broker) = broker {
        let stopped = broker.stop();
        // A failed load is the more useful error; a failed clean-up only shows when all else worked.
        if result.is_ok() {
            stopped?;
        }
    }
    result
}

/// Prepares the topic, runs the shards and folds their samples into the summary.
fn run_load(
    plan: &mut RunPlan,
    on_progress: &mut dyn FnMut(&ProgressLine),
) -> Result<Summary, BenchError> {
    plan.partitions = topic::prepare_topic(plan)?;
    let epoch = Instant::now();
    let shared = Arc::new(RunShared::default());
    let shard_count = plan.generator_cpus.len();
    let (sender, receiver) = mpsc::sync_channel(SAMPLES_QUEUED_PER_SHARD_MAX * shard_count);
    let handles = shards::spawn(plan, epoch, &shared, &sender)?;
    drop(sender);
    let mut totals = Totals::new();
    let mut finished = 0;
    let mut start_ns = None;
    let ready_deadline = Instant::now() + SHARDS_READY_WAIT;
    let mut next_progress = Instant::now() + PROGRESS_INTERVAL;
    while finished < shard_count {
        match receiver.recv_timeout(MAIN_POLL_INTERVAL) {
            Ok(sample) => {
                finished += usize::from(sample.last);
                totals.add(&sample);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        match start_ns {
            None if shared.ready_shards.load(Ordering::Acquire) == shard_count => {
                // Every consumer is assigned: release the producers together.
                let now = epoch.elapsed().as_nanos() as u64;
                shared.start_ns.store(now.max(1), Ordering::Release);
                start_ns = Some(now.max(1));
                totals.mark_start();
                next_progress = Instant::now() + PROGRESS_INTERVAL;
            }
            None if finished > 0 || Instant::now() >= ready_deadline => {
                shared.abort.store(true, Ordering::Release);
            }
            Some(_) if Instant::now() >= next_progress => {
                on_progress(&totals.progress());
                next_progress += PROGRESS_INTERVAL;
            }
            _ => {}
        }
    }
    // A shard that failed explains the run's failure better than the shards it aborted.
    let mut failure = None;
    let mut aborted = None;
    for (shard, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(ShardFailure::Failed(reason))) => {
                failure.get_or_insert(BenchError::Shard { shard, reason });
            }
            Ok(Err(ShardFailure::Aborted)) => {
                aborted.get_or_insert(BenchError::Shard {
                    shard,
                    reason: "stopped: another shard failed or set-up took too long".into(),
                });
            }
            Err(error) => {
                failure.get_or_insert(BenchError::Executor(error.to_string()));
            }
        }
    }
    if let Some(error) = failure.or(aborted) {
        return Err(error);
    }
    let Some(start_ns) = start_ns else {
        return Err(BenchError::Config(format!(
            "the generator shards were not ready within {SHARDS_READY_WAIT:?}"
        )));
    };
    Ok(Summary::new(plan, &totals, start_ns))
}
