//! Crash safety with real clients: three librdkafka producers (idempotent acks=all, plain
//! acks=all and acks=1, the last two without retries) send continuously while the broker is
//! SIGKILLed and restarted at random moments. Every record the broker acknowledged must be
//! readable afterwards at the offset it was acknowledged with, exactly once, in the order each
//! producer sent it, and every partition's offsets must run from 0 to the high watermark with no
//! gap.
//!
//! The schedule is random; the seed is printed and `SPATE_TEST_SEED` replays it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Broker, BrokerConfig, Delivery, Rng, consume, consumer, create_topic, producer, send,
    watermarks,
};
use rdkafka::Offset;
use rdkafka::producer::{BaseRecord, Producer};

const KILLS: usize = 20;
const PARTITIONS: i32 = 4;
/// Records each producer hands librdkafka per millisecond, at most: enough to keep requests in
/// flight at every kill without making the final read-back slow.
const RECORDS_PER_MS: usize = 6;
/// Ids of producer `p`'s records start at `p * PRODUCER_ID_STRIDE` (a multiple of PARTITIONS, so
/// `id % PARTITIONS` is still the record's partition).
const PRODUCER_ID_STRIDE: usize = 1_000_000_000;

/// The producers: name, librdkafka settings, and whether a record may be stored twice (only the
/// idempotent producer retries; the others report a failure instead, so they cannot duplicate).
const PRODUCERS: [(&str, &[(&str, &str)]); 3] = [
    (
        "idempotent acks=all",
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "120000"),
        ],
    ),
    (
        "acks=all",
        &[
            ("acks", "all"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "30000"),
        ],
    ),
    (
        "acks=1",
        &[
            ("acks", "1"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "30000"),
        ],
    ),
];
/// librdkafka's in-memory queue bound for this test; while the broker is down the producer waits.
const RECORDS_QUEUED_MAX: i32 = 50_000;
/// After each restart, the producer must get new acknowledgements within this time.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

fn payload(id: usize) -> Vec<u8> {
    format!("crash-record-{id:010}").into_bytes()
}

fn id_of(payload: &[u8]) -> usize {
    let text = std::str::from_utf8(payload).expect("payload is UTF-8");
    text.strip_prefix("crash-record-")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("foreign payload {text:?}"))
}

/// What the producer thread shares with the test.
struct Shared {
    stop: Arc<AtomicBool>,
    acked: AtomicUsize,
    deliveries: Mutex<Vec<Delivery>>,
    fatal: Mutex<Option<String>>,
}

/// Sends records `crash-record-<id>` (ids from `first_id`) to partition `id % PARTITIONS` with
/// `settings` until told to stop, then flushes; moves delivery reports into `shared` as they come.
fn produce_until_stopped(
    bootstrap: String,
    settings: &[(&str, &str)],
    first_id: usize,
    shared: Arc<Shared>,
) {
    let mut all_settings = vec![("linger.ms", "2")];
    all_settings.extend_from_slice(settings);
    let producer = producer(&bootstrap, &all_settings);
    let collect = |producer: &common::TestProducer| {
        let deliveries = producer.context().deliveries_take();
        let acked = deliveries.iter().filter(|d| d.error.is_none()).count();
        shared.acked.fetch_add(acked, Ordering::Relaxed);
        shared.deliveries.lock().unwrap().extend(deliveries);
        if let Some(fatal) = producer.context().fatal() {
            *shared.fatal.lock().unwrap() = Some(fatal);
        }
    };
    let mut id = first_id;
    while !shared.stop.load(Ordering::Relaxed) && shared.fatal.lock().unwrap().is_none() {
        if producer.in_flight_count() < RECORDS_QUEUED_MAX {
            for _ in 0..RECORDS_PER_MS {
                let value = payload(id);
                let partition = (id % PARTITIONS as usize) as i32;
                send(
                    &producer,
                    BaseRecord::with_opaque_to("crash", id)
                        .partition(partition)
                        .payload(&value[..]),
                );
                id += 1;
            }
        }
        collect(&producer);
        thread::sleep(Duration::from_millis(1));
    }
    if let Err(error) = producer.flush(Duration::from_secs(150)) {
        eprintln!("final flush: {error}");
    }
    // The delivery callback runs on librdkafka's polling thread; give the last ones a moment.
    thread::sleep(Duration::from_millis(200));
    collect(&producer);
    eprintln!("producer: sent {} records", id - first_id);
}

/// Waits until the producer has more than `acked_before` acknowledgements.
fn wait_for_progress(shared: &Shared, acked_before: usize, after: &str) -> usize {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        if let Some(fatal) = shared.fatal.lock().unwrap().clone() {
            panic!("producer hit a fatal error {after}: {fatal}");
        }
        let acked = shared.acked.load(Ordering::Relaxed);
        if acked > acked_before {
            return acked;
        }
        assert!(
            Instant::now() < deadline,
            "no record acknowledged within {PROGRESS_TIMEOUT:?} {after}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

// Proves acknowledged records survive SIGKILL: after 20 kills at random moments while three
// producers (idempotent acks=all, acks=all, acks=1) send, every acknowledged record is at its
// acknowledged offset exactly once, each producer's in send order, and each partition's offsets
// are contiguous from 0.
#[test]
fn acknowledged_records_survive_kill9_restarts() {
    let mut rng = Rng::from_env_or_clock("acknowledged_records_survive_kill9_restarts");
    // Fixed ports: the producer keeps its bootstrap address and connections across restarts.
    let mut broker = Broker::start_with(BrokerConfig {
        ports_fixed: true,
        ..BrokerConfig::default()
    });
    create_topic(&broker.bootstrap(), "crash", PARTITIONS, &[]);
    let shared = Arc::new(Shared {
        stop: Arc::new(AtomicBool::new(false)),
        acked: AtomicUsize::new(0),
        deliveries: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
    });
    // Stops the producer thread also when an assertion below fails.
    let _stop_on_drop = common::StopOnDrop(Arc::clone(&shared.stop));
    let producer_threads: Vec<_> = PRODUCERS
        .iter()
        .enumerate()
        .map(|(index, (_, settings))| {
            let bootstrap = broker.bootstrap();
            let shared = Arc::clone(&shared);
            let first_id = index * PRODUCER_ID_STRIDE;
            thread::spawn(move || produce_until_stopped(bootstrap, settings, first_id, shared))
        })
        .collect();

    let mut acked = wait_for_progress(&shared, 0, "before the first kill");
    for kill in 1..=KILLS {
        let wait = Duration::from_millis(rng.range(100, 700));
        thread::sleep(wait);
        let acked_at_kill = shared.acked.load(Ordering::Relaxed);
        broker.kill9();
        broker.start_again();
        eprintln!("kill {kill}: {wait:?} after progress, {acked_at_kill} acknowledged so far");
        acked = wait_for_progress(
            &shared,
            acked.max(acked_at_kill),
            &format!("after restart {kill}"),
        );
    }
    thread::sleep(Duration::from_millis(300));
    shared.stop.store(true, Ordering::Relaxed);
    for thread in producer_threads {
        thread.join().expect("producer thread");
    }
    if let Some(fatal) = shared.fatal.lock().unwrap().clone() {
        panic!("producer hit a fatal error: {fatal}");
    }

    let deliveries = std::mem::take(&mut *shared.deliveries.lock().unwrap());
    let failed = deliveries.iter().filter(|d| d.error.is_some()).count();
    let acknowledged: Vec<&Delivery> = deliveries.iter().filter(|d| d.error.is_none()).collect();
    eprintln!(
        "{} acknowledged, {failed} failed deliveries",
        acknowledged.len()
    );
    if let Some(first) = deliveries.iter().find(|d| d.error.is_some()) {
        eprintln!("first failed delivery: {first:?}");
    }

    let consumer = consumer(&broker.bootstrap(), &[]);
    let mut starts = Vec::new();
    let mut counts = Vec::new();
    for partition in 0..PARTITIONS {
        let (low, high) = watermarks(&consumer, "crash", partition);
        assert_eq!(low, 0, "partition {partition}: log start offset");
        starts.push((partition, Offset::Beginning));
        counts.push(high as usize);
    }
    let records = consume(
        &consumer,
        "crash",
        &starts,
        &counts,
        Duration::from_secs(120),
        Duration::from_millis(300),
    );
    let mut stored: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut copies: HashMap<usize, usize> = HashMap::new();
    for (partition, records) in &records {
        assert_eq!(
            records.len(),
            counts[*partition as usize],
            "partition {partition}: records up to the high watermark"
        );
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset, index as i64,
                "partition {partition}: offsets contiguous from 0"
            );
            let id = id_of(record.value.as_deref().expect("payload"));
            assert_eq!(
                id % PARTITIONS as usize,
                *partition as usize,
                "record {id} in its partition"
            );
            stored.insert((*partition, record.offset), id);
            *copies.entry(id).or_default() += 1;
        }
    }
    for delivery in &acknowledged {
        let at = (delivery.partition, delivery.offset);
        match stored.get(&at) {
            Some(id) => assert_eq!(
                *id, delivery.id,
                "acknowledged record {} at {at:?}",
                delivery.id
            ),
            None => panic!("acknowledged record {} at {at:?} is missing", delivery.id),
        }
    }
    // By (producer, partition): each producer's acknowledged records keep their send order.
    let mut acknowledged_by_partition: BTreeMap<(usize, i32), Vec<(i64, usize)>> = BTreeMap::new();
    for delivery in &acknowledged {
        acknowledged_by_partition
            .entry((delivery.id / PRODUCER_ID_STRIDE, delivery.partition))
            .or_default()
            .push((delivery.offset, delivery.id));
    }
    for (index, (name, _)) in PRODUCERS.iter().enumerate() {
        let count = acknowledged
            .iter()
            .filter(|d| d.id / PRODUCER_ID_STRIDE == index)
            .count();
        eprintln!("{name}: {count} acknowledged");
        assert!(count > 0, "{name}: nothing acknowledged");
    }
    for ((producer, partition), mut pairs) in acknowledged_by_partition {
        pairs.sort();
        assert!(
            pairs.windows(2).all(|w| w[0].1 < w[1].1),
            "producer {producer}, partition {partition}: acknowledged records in send order"
        );
    }
    // Producers without retries never send a record twice: each acknowledged one is stored once.
    for delivery in &acknowledged {
        if delivery.id / PRODUCER_ID_STRIDE > 0 {
            assert_eq!(
                copies[&delivery.id], 1,
                "record {} stored once",
                delivery.id
            );
        }
    }
    let duplicated = copies.values().filter(|n| **n > 1).count();
    if duplicated > 0 {
        eprintln!("note: {duplicated} records are stored more than once (idempotent retries)");
    }
    eprintln!(
        "checked {} acknowledged records over {KILLS} kills",
        acknowledged.len()
    );
    drop(consumer);
    broker.stop();
}
