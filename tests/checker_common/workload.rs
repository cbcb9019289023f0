//! The clients of a checker round: three librdkafka producers (idempotent acks=all, plain acks=all
//! and acks=1, the last two without retries) writing unique values round-robin over every
//! partition, and two consumers (one in a consumer group, one with all partitions assigned)
//! reading throughout. Each runs on its own thread and records into the round's `Recorder`.
//!
//! Bounds: a producer sends at most `records_per_second` records a second, waits at most
//! `FLUSH_TIMEOUT` for its last acknowledgements when stopped, and gives up a send whose local
//! queue stays full when told to stop. Callers must stop every client (`Clients::stop`) before
//! the final read, so nothing is written after it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::history::{AckResult, Event, ProducerKind, Recorder};
use crate::common::client_config;

/// How long a stopped producer waits for its outstanding acknowledgements: past the idempotent
/// producer's message timeout, so every record it holds is answered one way or the other.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(75);
/// The idempotent producer's `message.timeout.ms`: it retries a record this long, which outlasts
/// any single fault of a round (a broker is back within about 15 s).
const IDEMPOTENT_MESSAGE_TIMEOUT_MS: &str = "60000";
/// Client-side warnings kept per client, printed when the round fails.
const CLIENT_LOG_LINES_MAX: usize = 200;
/// How long each instance of the group consumer reads after its first assignment before it
/// leaves and a new one joins.
const GROUP_CONSUMER_LIFETIME: Duration = Duration::from_secs(8);
/// How long one consumer poll waits, so a stop is seen within it.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// The librdkafka settings of each producer.
fn producer_settings(kind: ProducerKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ProducerKind::Idempotent => &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", IDEMPOTENT_MESSAGE_TIMEOUT_MS),
        ],
        ProducerKind::AcksAll => &[
            ("acks", "all"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "30000"),
        ],
        ProducerKind::AcksOne => &[
            ("acks", "1"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "30000"),
        ],
    }
}

/// librdkafka warnings and errors of one client, newest last, bounded.
#[derive(Default)]
pub struct ClientWarnings(Mutex<Vec<String>>);

impl ClientWarnings {
    /// Adds `line`, stamped with the UTC time of day as the brokers' logs show it.
    fn push(&self, line: String) {
        let ms = crate::common::now_ms();
        let line = format!(
            "{:02}:{:02}:{:02}.{:03} {line}",
            ms / 3_600_000 % 24,
            ms / 60_000 % 60,
            ms / 1_000 % 60,
            ms % 1_000
        );
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == CLIENT_LOG_LINES_MAX {
            lines.remove(0);
        }
        lines.push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The context of every client: keeps warnings; a producer's records its acknowledgements; a
/// consumer's counts its assignment sessions.
pub struct RecordingContext {
    name: String,
    producer: Option<ProducerKind>,
    recorder: Recorder,
    warnings: Arc<ClientWarnings>,
    /// The current assignment session; a group consumer starts a new one at each assignment.
    /// Shared by the successive instances of one consumer, so sessions never repeat.
    session: Arc<AtomicU64>,
}

impl ClientContext for RecordingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if level as i32 <= RDKafkaLogLevel::Warning as i32 {
            self.warnings
                .push(format!("{} {level:?} {fac} {log_message}", self.name));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warnings
            .push(format!("{} error: {error}: {reason}", self.name));
    }
}

impl ConsumerContext for RecordingContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Reads after an assignment start from the committed offset: a new session.
        if let Rebalance::Assign(_) = rebalance {
            let session = self.session.fetch_add(1, Ordering::Relaxed) + 1;
            self.recorder.record(Event::Assigned {
                consumer: self.name.clone(),
                session,
            });
        }
        let what = match rebalance {
            Rebalance::Assign(list) => format!("assigned {} partitions", list.count()),
            Rebalance::Revoke(list) => format!("revoked {} partitions", list.count()),
            Rebalance::Error(error) => format!("error {error}"),
        };
        self.warnings
            .push(format!("{} rebalance: {what}", self.name));
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if result.is_err() {
            return;
        }
        for element in offsets.elements() {
            if let (Offset::Offset(offset), Ok(())) = (element.offset(), element.error()) {
                self.recorder.record(Event::Committed {
                    consumer: self.name.clone(),
                    partition: element.partition(),
                    offset,
                });
            }
        }
    }
}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, _: ()) {
        let producer = self.producer.expect("a producer's context");
        let (message, result) = match delivery_result {
            Ok(message) => (
                message,
                AckResult::Ok {
                    offset: message.offset(),
                },
            ),
            Err((error, message)) => (
                message,
                AckResult::Error {
                    code: match error {
                        KafkaError::MessageProduction(code) => format!("{code:?}"),
                        other => other.to_string(),
                    },
                },
            ),
        };
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        self.recorder
            .record_ack(producer, value, message.partition(), result);
    }
}

/// What the clients write and read.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub topic: String,
    pub partitions: i32,
    /// Per producer.
    pub records_per_second: u64,
    /// Names the consumer group, so rounds never share one.
    pub group: String,
}

/// The running clients of a round.
pub struct Clients {
    stop_producers: Arc<AtomicBool>,
    stop_consumers: Arc<AtomicBool>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    pub warnings: Arc<ClientWarnings>,
    /// The bootstrap list each new group consumer instance starts from: a restarted broker
    /// listens on new ports, so the round updates it after every fault.
    bootstrap: Arc<Mutex<String>>,
}

impl Clients {
    /// Starts the consumers, then the producers.
    pub fn start(bootstrap: &str, spec: &WorkloadSpec, recorder: &Recorder) -> Clients {
        let warnings = Arc::new(ClientWarnings::default());
        let shared_bootstrap = Arc::new(Mutex::new(bootstrap.to_string()));
        let stop_producers = Arc::new(AtomicBool::new(false));
        let stop_consumers = Arc::new(AtomicBool::new(false));
        let context = |name: &str, producer| RecordingContext {
            name: name.to_string(),
            producer,
            recorder: recorder.clone(),
            warnings: warnings.clone(),
            session: Arc::new(AtomicU64::new(0)),
        };
        let consumers = vec![
            start_group_consumer(
                &shared_bootstrap,
                spec,
                context("group", None),
                &stop_consumers,
            ),
            start_assigned_consumer(bootstrap, spec, context("assigned", None), &stop_consumers),
        ];
        let producers = ProducerKind::ALL
            .into_iter()
            .map(|kind| {
                let context = context(kind.name(), Some(kind));
                start_producer(bootstrap, spec, kind, context, recorder, &stop_producers)
            })
            .collect();
        Clients {
            stop_producers,
            stop_consumers,
            producers,
            consumers,
            warnings,
            bootstrap: shared_bootstrap,
        }
    }

    /// Sets the bootstrap list of group consumer instances created from now on.
    pub fn set_bootstrap(&self, bootstrap: String) {
        *self.bootstrap.lock().unwrap_or_else(|p| p.into_inner()) = bootstrap;
    }

    /// Stops the producers (each waits, bounded, for its acknowledgements), lets the consumers
    /// read for `linger` more, then stops them. Errors name a client thread that panicked.
    pub fn stop(self, linger: Duration) -> Result<(), String> {
        self.stop_producers.store(true, Ordering::Relaxed);
        let mut failed = Vec::new();
        for handle in self.producers {
            if handle.join().is_err() {
                failed.push("a producer thread panicked");
            }
        }
        thread::sleep(linger);
        self.stop_consumers.store(true, Ordering::Relaxed);
        for handle in self.consumers {
            if handle.join().is_err() {
                failed.push("a consumer thread panicked");
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(format!("{failed:?}")),
        }
    }
}

fn start_producer(
    bootstrap: &str,
    spec: &WorkloadSpec,
    kind: ProducerKind,
    context: RecordingContext,
    recorder: &Recorder,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut config = client_config(bootstrap);
    config
        .set("linger.ms", "5")
        .set("request.timeout.ms", "15000")
        .set("queue.buffering.max.messages", "100000");
    for (key, value) in producer_settings(kind) {
        config.set(*key, *value);
    }
    let producer: ThreadedProducer<RecordingContext> = config
        .create_with_context(context)
        .expect("create a producer");
    let (spec, recorder, stop) = (spec.clone(), recorder.clone(), stop.clone());
    thread::spawn(move || {
        produce_until_stopped(&producer, kind, &spec, &recorder, &stop);
        // Every outstanding record is answered by the flush or, past it, by the purge at drop.
        let _ = producer.flush(FLUSH_TIMEOUT);
    })
}

/// Sends `kind`'s records, paced to `records_per_second`, until `stop` is set.
fn produce_until_stopped(
    producer: &ThreadedProducer<RecordingContext>,
    kind: ProducerKind,
    spec: &WorkloadSpec,
    recorder: &Recorder,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let mut sequence: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = started.elapsed().as_millis() as u64 * spec.records_per_second / 1000;
        if sequence >= due {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let value = kind.value(sequence);
        let partition = (sequence % spec.partitions as u64) as i32;
        let mut record = BaseRecord::to(&spec.topic)
            .partition(partition)
            .key(kind.name())
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if stop.load(Ordering::Relaxed) {
                        return; // Never enqueued, so never sent.
                    }
                    record = back;
                    thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => panic!("{}: enqueue {value}: {error}", kind.name()),
            }
        }
        recorder.record(Event::Send {
            producer: kind,
            value,
            partition,
        });
        sequence += 1;
    }
}

fn consumer_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100");
    config
}

fn start_group_consumer(
    bootstrap: &Arc<Mutex<String>>,
    spec: &WorkloadSpec,
    context: RecordingContext,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let config = |spec: &WorkloadSpec, bootstrap: &str| {
        let mut config = consumer_config(bootstrap);
        config
            .set("group.id", &spec.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("session.timeout.ms", "6000");
        config
    };
    let (topic, stop, bootstrap) = (spec.topic.clone(), stop.clone(), bootstrap.clone());
    let group = spec.clone();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            // Each instance joins the group, reads from the committed offsets, commits as it
            // goes and leaves: a restarted consumer, which may re-read what its predecessor read
            // after the last commit, in a new session.
            let instance = RecordingContext {
                name: context.name.clone(),
                producer: None,
                recorder: context.recorder.clone(),
                warnings: context.warnings.clone(),
                session: context.session.clone(),
            };
            let current = bootstrap.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let consumer: BaseConsumer<RecordingContext> = config(&group, &current)
                .create_with_context(instance)
                .expect("create the group consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            context
                .warnings
                .push(format!("group: a new instance joins, bootstrap {current}"));
            // Leave once this instance has been assigned for its lifetime, so each instance
            // reads for a while even when joins are slow (a fault at the group coordinator).
            let joined_session = context.session.load(Ordering::Relaxed);
            let assigned_at: Cell<Option<Instant>> = Cell::new(None);
            read_until(&consumer, || {
                if assigned_at.get().is_none()
                    && context.session.load(Ordering::Relaxed) > joined_session
                {
                    assigned_at.set(Some(Instant::now()));
                }
                stop.load(Ordering::Relaxed)
                    || assigned_at
                        .get()
                        .is_some_and(|at| at.elapsed() > GROUP_CONSUMER_LIFETIME)
            });
        }
    })
}

fn start_assigned_consumer(
    bootstrap: &str,
    spec: &WorkloadSpec,
    context: RecordingContext,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut config = consumer_config(bootstrap);
    config
        .set("group.id", format!("{}-unused", spec.group))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer<RecordingContext> = config
        .create_with_context(context)
        .expect("create the assigned consumer");
    // One assignment for the whole round: one session.
    consumer.context().session.store(1, Ordering::Relaxed);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..spec.partitions {
        assignment
            .add_partition_offset(&spec.topic, partition, Offset::Beginning)
            .expect("add a partition");
    }
    consumer.assign(&assignment).expect("assign");
    let stop = stop.clone();
    thread::spawn(move || read_until(&consumer, || stop.load(Ordering::Relaxed)))
}

/// Polls `consumer` and records each record read, until `done`.
fn read_until(consumer: &BaseConsumer<RecordingContext>, done: impl Fn() -> bool) {
    let context = consumer.context();
    while !done() {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => context.recorder.record(Event::Read {
                consumer: context.name.clone(),
                session: context.session.load(Ordering::Relaxed),
                partition: message.partition(),
                offset: message.offset(),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            }),
            Some(Err(error)) => context
                .warnings
                .push(format!("{} poll: {error}", context.name)),
        }
    }
}
