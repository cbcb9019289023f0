//! Generator shards: one glommio executor pinned to each generator core, each with its own
//! `Cluster` (its own connections), its producers, and one consumer for its share of partitions.
//!
//! A shard connects, assigns its consumer (so no record of the run is produced before every
//! consumer listens), reports ready, and waits for the main thread to release the load; all
//! shards then share one start time. What the shards share is coordination only, in `RunShared`
//! atomics: the start time, the abort flag, and the run-wide produced and consumed counts the
//! consumers need to know when they have drained. Measurements travel as `ShardSample`s.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::client::Cluster;
use crate::io::cpus::thread_cpu_time;

use super::BenchError;
use super::plan::RunPlan;
use super::sample::{SAMPLE_INTERVAL, SampleSender, ShardSample};
use super::{consumer, producer};

/// io_uring depth of a generator executor. Its memory is locked, and `ulimit -l` is small on
/// the machines we run on (8 MiB), so it stays well below glommio's default.
pub const RING_DEPTH: usize = 64;

/// Registered I/O memory of a generator executor: sockets do not use it, so it is kept small
/// (the locked-memory limit is shared with an embedded broker).
const IO_MEMORY_BYTES: usize = 1 << 20;

/// How often a waiting shard checks whether the load has been released.
const START_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A shard's measurements, shared by its producers, consumer and sampler (one thread).
pub type Stats = Rc<RefCell<ShardSample>>;

/// Coordination between the main thread and the shards.
#[derive(Debug, Default)]
pub struct RunShared {
    /// Shards whose clients are connected and consumers assigned.
    pub ready_shards: AtomicUsize,
    /// When the load starts, ns since the epoch; 0 until the main thread releases it.
    pub start_ns: AtomicU64,
    /// Set when the run is abandoned (a shard failed to set up, or setup took too long).
    pub abort: AtomicBool,
    /// Records acknowledged by all producers.
    pub produced_total: AtomicU64,
    /// Shards whose producers have all finished (flushed).
    pub producers_done_shards: AtomicUsize,
    /// Records of this run consumed by all consumers.
    pub consumed_total: AtomicU64,
}

/// What a shard knows about the run.
pub struct ShardContext {
    /// This shard's index.
    pub index: usize,
    /// Generator shards in the run.
    pub shard_count: usize,
    /// The run.
    pub plan: RunPlan,
    /// Time zero of every timestamp in the run (one `Instant` for all shards).
    pub epoch: Instant,
    /// Coordination with the other shards.
    pub shared: Arc<RunShared>,
}

impl ShardContext {
    /// ns since the run's epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether every shard's producers are done.
    pub fn producers_done(&self) -> bool {
        self.shared.producers_done_shards.load(Ordering::Acquire) == self.shard_count
    }

    /// The partitions this shard's consumer reads: every `shard_count`-th one.
    fn consumer_partitions(&self) -> Vec<i32> {
        (0..self.plan.partitions as i32)
            .filter(|p| *p as usize % self.shard_count == self.index)
            .collect()
    }

    /// The producers this shard runs: every `shard_count`-th one.
    fn producer_indexes(&self) -> Vec<u32> {
        if !self.plan.mode.produces() {
            return Vec::new();
        }
        (0..self.plan.producers)
            .filter(|p| *p as usize % self.shard_count == self.index)
            .collect()
    }
}

/// Why a shard stopped early.
#[derive(Debug)]
pub enum ShardFailure {
    /// Another shard failed, or set-up took too long.
    Aborted,
    /// This shard could not set up its clients.
    Failed(String),
}

/// Starts one executor per generator CPU.
pub fn spawn(
    plan: &RunPlan,
    epoch: Instant,
    shared: &Arc<RunShared>,
    samples: &SyncSender<ShardSample>,
) -> Result<Vec<ExecutorJoinHandle<Result<(), ShardFailure>>>, BenchError> {
    let shard_count = plan.generator_cpus.len();
    let mut handles = Vec::with_capacity(shard_count);
    for (index, cpu) in plan.generator_cpus.iter().enumerate() {
        let context = ShardContext {
            index,
            shard_count,
            plan: plan.clone(),
            epoch,
            shared: Arc::clone(shared),
        };
        let sender = SampleSender::new(samples.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
            .name(&format!("bench-{index}"))
            .io_memory(IO_MEMORY_BYTES)
            .ring_depth(RING_DEPTH)
            .spawn(move || shard_main(context, sender))
            .map_err(|error| {
                // Shards already started wait for a start that will not come.
                shared.abort.store(true, Ordering::Release);
                BenchError::Executor(error.to_string())
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// A shard from start to its last sample; the last sample is sent whatever happened.
async fn shard_main(context: ShardContext, sender: SampleSender) -> Result<(), ShardFailure> {
    let (cpu_start, wall_start) = (thread_cpu_time(), Instant::now());
    let context = Rc::new(context);
    let stats: Stats = Rc::default();
    let stop_sampling = Rc::new(Cell::new(false));
    let sampler = glommio::spawn_local(sample_loop(
        Rc::clone(&stats),
        Rc::clone(&stop_sampling),
        sender,
    ));
    let producers_counted = Cell::new(false);
    let outcome = shard_load(&context, &stats, &producers_counted).await;
    if !producers_counted.get() {
        // A failed shard must not leave the others' consumers waiting for its producers.
        context
            .shared
            .producers_done_shards
            .fetch_add(1, Ordering::AcqRel);
    }
    if let Err(ShardFailure::Failed(reason)) = &outcome {
        let mut stats = stats.borrow_mut();
        stats.note_error(&format!("generator shard {}: {reason}", context.index));
    }
    stop_sampling.set(true);
    let sender = sampler.await;
    let mut last = std::mem::take(&mut *stats.borrow_mut());
    last.cpu_ns = (thread_cpu_time() - cpu_start).as_nanos() as u64;
    last.wall_ns = wall_start.elapsed().as_nanos() as u64;
    sender.finish(last);
    outcome
}

/// Connects, assigns, waits for the start, runs the producers, then lets the consumer drain.
async fn shard_load(
    context: &Rc<ShardContext>,
    stats: &Stats,
    producers_counted: &Cell<bool>,
) -> Result<(), ShardFailure> {
    let plan = &context.plan;
    let failed = |what: &str| {
        let what = what.to_owned();
        move |error: crate::client::ClientError| ShardFailure::Failed(format!("{what}: {error}"))
    };
    let cluster = Cluster::connect(&plan.bootstrap)
        .await
        .map_err(failed(&format!("connecting to {}", plan.bootstrap)))?;
    cluster
        .refresh_metadata(&[plan.args.topic.as_str()])
        .await
        .map_err(failed("reading metadata"))?;
    // Connect to every leader before the clock starts, so the first records' latency is the
    // broker's, not a TCP handshake's.
    let leaders: std::collections::BTreeSet<i32> = (0..plan.partitions as i32)
        .filter_map(|partition| cluster.leader(&plan.args.topic, partition))
        .collect();
    for leader in leaders {
        cluster
            .connection(leader)
            .await
            .map_err(failed(&format!("connecting to node {leader}")))?;
    }
    let partitions = context.consumer_partitions();
    let consumer = if plan.mode.consumes() && !partitions.is_empty() {
        let task = consumer::start(context, &cluster, stats, &partitions)
            .await
            .map_err(failed("assigning the consumer"))?;
        Some(task)
    } else {
        None
    };
    context.shared.ready_shards.fetch_add(1, Ordering::AcqRel);
    let start_ns = wait_for_start(context).await?;
    let producers: Vec<_> = context
        .producer_indexes()
        .into_iter()
        .map(|index| {
            glommio::spawn_local(producer::run(
                Rc::clone(context),
                Rc::clone(&cluster),
                Rc::clone(stats),
                index,
                start_ns,
            ))
        })
        .collect();
    let produces = !producers.is_empty();
    for producer in producers {
        producer.await;
    }
    if produces {
        stats.borrow_mut().produce_end_ns = Some(context.now_ns());
    }
    context
        .shared
        .producers_done_shards
        .fetch_add(1, Ordering::AcqRel);
    producers_counted.set(true);
    if let Some(consumer) = consumer {
        consumer.await;
    }
    Ok(())
}

/// Waits until the main thread releases the load; returns its start time.
async fn wait_for_start(context: &ShardContext) -> Result<u64, ShardFailure> {
    loop {
        if context.shared.abort.load(Ordering::Acquire) {
            return Err(ShardFailure::Aborted);
        }
        let start_ns = context.shared.start_ns.load(Ordering::Acquire);
        if start_ns != 0 {
            return Ok(start_ns);
        }
        glommio::timer::sleep(START_POLL_INTERVAL).await;
    }
}

/// Ships what accumulated every `SAMPLE_INTERVAL` until told to stop; returns the sender for
/// the last sample.
async fn sample_loop(stats: Stats, stop: Rc<Cell<bool>>, mut sender: SampleSender) -> SampleSender {
    while !stop.get() {
        glommio::timer::sleep(SAMPLE_INTERVAL).await;
        let sample = std::mem::take(&mut *stats.borrow_mut());
        sender.offer(sample);
    }
    sender
}
