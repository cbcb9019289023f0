//! Bounded memory and fair shards, against a real `spate serve` and hostile raw-TCP clients: the
//! request budget (queued.max.request.bytes) caps what trickled frames can make the broker hold,
//! connections.max.idle.ms closes a client that never reads its fetch responses, min_bytes=0
//! fetches never park, and many parked fetches leave the shard responsive. Memory is the real
//! broker's VmRSS from /proc; the figures are printed (run with --nocapture) for perf/RESULTS.md.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::frame::encode_request_frame;
use spate::protocol::messages::api_versions::ApiVersionsRequest;
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::{ApiKey, Request, RequestHeader, Response};

use common::wire::{Wire, batch};
use common::{Broker, BrokerConfig};

const FETCH_VERSION: i16 = 11;
const PRODUCE_VERSION: i16 = 9;
const MIB: u64 = 1024 * 1024;

fn produce(topic: &str, partitions: &[(i32, Bytes)]) -> Request {
    Request::Produce(ProduceRequest {
        transactional_id: None,
        acks: 1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: partitions
                .iter()
                .map(|(index, records)| PartitionProduceData {
                    index: *index,
                    records: Some(records.clone()),
                })
                .collect(),
        }],
    })
}

fn fetch(
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: partitions
                .iter()
                .map(|(partition, offset)| FetchPartition {
                    partition: *partition,
                    fetch_offset: *offset,
                    partition_max_bytes: 1 << 20,
                    ..FetchPartition::default()
                })
                .collect(),
        }],
        ..FetchRequest::default()
    })
}

fn produce_errors(response: Response) -> Vec<i16> {
    let Response::Produce(response) = response else {
        panic!("not a produce response: {response:?}");
    };
    response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| partition.error_code)
        .collect()
}

/// (error code, record bytes) of each partition of a fetch response.
fn fetch_results(response: Response) -> Vec<(i16, usize)> {
    let Response::Fetch(response) = response else {
        panic!("not a fetch response: {response:?}");
    };
    response.responses[0]
        .partitions
        .iter()
        .map(|partition| {
            (
                partition.error_code,
                partition
                    .records
                    .as_ref()
                    .map_or(0, |records| records.len()),
            )
        })
        .collect()
}

/// Sends `request` as one write (Wire writes a frame in pieces, which Nagle and delayed ACKs
/// turn into a 40 ms round trip) and reads its response; correlation ids from 1000 up.
fn call_whole(wire: &mut Wire, version: i16, request: Request) -> Response {
    static NEXT_ID: AtomicI32 = AtomicI32::new(1000);
    let correlation_id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    let api = request.api_key();
    let header = RequestHeader {
        api_key: api.code(),
        api_version: version,
        correlation_id,
        client_id: Some("normal".into()),
    };
    let frame: Vec<u8> = encode_request_frame(&header, &request)
        .unwrap()
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    wire.write_raw(&frame);
    wire.receive(api, version, correlation_id)
}

/// One produce of a small batch and one fetch of it; the normal client's unit of work.
fn round_trip(wire: &mut Wire, topic: &str, offset: i64) {
    let request = produce(topic, &[(0, batch(4, 256))]);
    assert_eq!(
        produce_errors(call_whole(wire, PRODUCE_VERSION, request)),
        vec![0]
    );
    let request = fetch(topic, &[(0, offset)], 500, 1, 1 << 20);
    let results = fetch_results(call_whole(wire, FETCH_VERSION, request));
    assert_eq!(results[0].0, 0);
    assert!(results[0].1 > 0, "the fetch returns the batch just written");
}

/// Runs `count` round trips; round trips per second.
fn round_trips_per_second(wire: &mut Wire, topic: &str, offset: &mut i64, count: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..count {
        round_trip(wire, topic, *offset);
        *offset += 4;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Samples the broker's RSS every 20 ms on a thread until the returned flag is set; the peak.
fn sample_rss_peak(broker: &Broker) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pid = broker.pid();
    let path = format!("/proc/{pid}/status");
    let stop_sampler = Arc::clone(&stop);
    let sampler = thread::spawn(move || {
        let mut peak = 0;
        while !stop_sampler.load(Ordering::SeqCst) {
            if let Ok(status) = std::fs::read_to_string(&path) {
                let kib = status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse::<u64>().ok())
                    .unwrap_or(0);
                peak = peak.max(kib * 1024);
            }
            thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    (stop, sampler)
}

fn start_one_shard(args: &[&str]) -> Broker {
    Broker::start_with(BrokerConfig {
        cores: 1,
        args: args.iter().map(|arg| arg.to_string()).collect(),
        ..BrokerConfig::default()
    })
}

#[test]
fn min_bytes_zero_fetch_answers_at_once() {
    // Proves a fetch with min_bytes=0 is answered at once, with whatever is there (nothing, at
    // the high watermark), even when max_wait_ms asks for 20 s; and with data, it carries it.
    let broker = start_one_shard(&[]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("zero", 1, &[]), 0);
    let started = Instant::now();
    let results =
        fetch_results(wire.call(FETCH_VERSION, fetch("zero", &[(0, 0)], 20_000, 0, 1 << 20)));
    let empty_elapsed = started.elapsed();
    assert_eq!(results, vec![(0, 0)]);
    assert!(
        empty_elapsed < Duration::from_secs(5),
        "an empty min_bytes=0 fetch took {empty_elapsed:?}"
    );
    let errors = produce_errors(wire.call(PRODUCE_VERSION, produce("zero", &[(0, batch(3, 10))])));
    assert_eq!(errors, vec![0]);
    let started = Instant::now();
    let results =
        fetch_results(wire.call(FETCH_VERSION, fetch("zero", &[(0, 3)], 20_000, 0, 1 << 20)));
    assert_eq!(results, vec![(0, 0)]);
    let results =
        fetch_results(wire.call(FETCH_VERSION, fetch("zero", &[(0, 0)], 20_000, 0, 1 << 20)));
    assert_eq!(results[0].0, 0);
    assert!(results[0].1 > 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    eprintln!("min_bytes=0 fetch on an empty partition answered in {empty_elapsed:?}");
    broker.stop();
}

#[test]
fn a_request_larger_than_the_budget_is_served() {
    // Proves a produce frame bigger than the whole request budget is still read and answered
    // (it takes the whole budget), and a fetch whose response exceeds the budget still returns
    // at least one batch, so a small budget slows big requests but never deadlocks them.
    let broker = start_one_shard(&["--queued-max-request-bytes", "1048576"]);
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("big", 3, &[]), 0);
    let partitions: Vec<(i32, Bytes)> = (0..3).map(|p| (p, batch(9, 100_000))).collect();
    let errors = produce_errors(wire.call(PRODUCE_VERSION, produce("big", &partitions)));
    assert_eq!(errors, vec![0, 0, 0]);
    let results = fetch_results(wire.call(
        FETCH_VERSION,
        fetch("big", &[(0, 0), (1, 0), (2, 0)], 500, 1, 50 << 20),
    ));
    assert!(results.iter().all(|(error, _)| *error == 0));
    let total: usize = results.iter().map(|(_, bytes)| bytes).sum();
    assert!(total >= 900_000, "at least one batch: {results:?}");
    broker.stop();
}

/// A hostile connection: announces a `frame_bytes` frame, sends `burst_bytes` of its body as fast
/// as the broker takes them, then one byte per tick.
struct Trickler {
    stream: TcpStream,
    unsent: Vec<u8>,
}

impl Trickler {
    fn connect(address: &str, frame_bytes: u32, burst_bytes: usize) -> Trickler {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nonblocking(true).unwrap();
        let mut unsent = frame_bytes.to_be_bytes().to_vec();
        unsent.resize(4 + burst_bytes, 0x55);
        Trickler { stream, unsent }
    }

    /// Writes what the socket takes now; a byte of trickle once the burst is out.
    fn pump(&mut self, trickle: bool) {
        if self.unsent.is_empty() {
            if !trickle {
                return;
            }
            self.unsent.push(0x55);
        }
        match self.stream.write(&self.unsent) {
            Ok(written) => {
                self.unsent.drain(..written);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => panic!("a trickler's connection failed: {error}"),
        }
    }
}

#[test]
fn trickled_huge_frames_stay_within_the_budget_and_others_keep_working() {
    // Proves 200 connections that each announce a 100 MiB frame and send 2 MiB of it (then a
    // byte every 100 ms) make the broker hold at most its 128 MiB request budget (without it
    // they would hold 400 MiB), while a normal client on the same shard keeps producing and
    // fetching.
    const CONNECTIONS: usize = 200;
    const BURST_BYTES: usize = 2 << 20;
    let budget_bytes = 128 * MIB;
    let budget = budget_bytes.to_string();
    let broker = start_one_shard(&[
        "--queued-max-request-bytes",
        &budget,
        "--connections-max-idle-ms",
        "120000",
    ]);
    let address = broker.bootstrap();
    let mut wire = Wire::connect(&address);
    assert_eq!(wire.create_topic("normal", 1, &[]), 0);
    let mut offset = 0;
    round_trips_per_second(&mut wire, "normal", &mut offset, 50);
    let rate_alone = round_trips_per_second(&mut wire, "normal", &mut offset, 500);
    let rss_baseline = broker.rss_bytes();
    let (stop_sampler, sampler) = sample_rss_peak(&broker);
    let stop = Arc::new(AtomicBool::new(false));
    let burst_sent = Arc::new(AtomicU64::new(0));
    let driver = {
        let stop = Arc::clone(&stop);
        let burst_sent = Arc::clone(&burst_sent);
        let address = address.clone();
        thread::spawn(move || {
            let mut tricklers: Vec<Trickler> = (0..CONNECTIONS)
                .map(|_| Trickler::connect(&address, 100 << 20, BURST_BYTES))
                .collect();
            let mut last_trickle = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let trickle = last_trickle.elapsed() >= Duration::from_millis(100);
                if trickle {
                    last_trickle = Instant::now();
                }
                for trickler in &mut tricklers {
                    trickler.pump(trickle);
                }
                let done = tricklers.iter().filter(|t| t.unsent.is_empty()).count();
                burst_sent.store(done as u64, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
            }
            tricklers
        })
    };
    // Let the tricklers push what the broker (and the kernel) will take.
    thread::sleep(Duration::from_secs(2));
    let rate_hostile = round_trips_per_second(&mut wire, "normal", &mut offset, 500);
    thread::sleep(Duration::from_secs(1));
    let rss_during = broker.rss_bytes();
    stop.store(true, Ordering::SeqCst);
    let tricklers = driver.join().expect("the trickler driver");
    stop_sampler.store(true, Ordering::SeqCst);
    let rss_peak = sampler.join().unwrap();
    eprintln!(
        "{CONNECTIONS} tricklers x 100 MiB frames ({} finished their 2 MiB burst), budget {} MiB: \
         RSS baseline {} MiB, during {} MiB, peak {} MiB; normal client {rate_alone:.0} round \
         trips/s alone, {rate_hostile:.0}/s beside them",
        burst_sent.load(Ordering::SeqCst),
        budget_bytes / MIB,
        rss_baseline / MIB,
        rss_during / MIB,
        rss_peak / MIB,
    );
    assert!(
        rss_peak < rss_baseline + budget_bytes,
        "peak RSS {} MiB is over baseline {} MiB + budget {} MiB",
        rss_peak / MIB,
        rss_baseline / MIB,
        budget_bytes / MIB
    );
    drop(tricklers);
    // Closed tricklers give their budget back: requests still flow.
    round_trips_per_second(&mut wire, "normal", &mut offset, 20);
    broker.stop();
}

#[test]
fn a_client_that_never_reads_is_closed_after_the_idle_timeout() {
    // Proves a client that pipelines fetches of 8 MiB of data and never reads the responses is
    // closed after connections.max.idle.ms, the broker's RSS stays bounded meanwhile, and a
    // normal client on the same shard keeps its round trips going.
    let broker = start_one_shard(&["--connections-max-idle-ms", "1500"]);
    let address = broker.bootstrap();
    let mut wire = Wire::connect(&address);
    assert_eq!(wire.create_topic("tail", 1, &[]), 0);
    assert_eq!(wire.create_topic("normal", 1, &[]), 0);
    for _ in 0..16 {
        let errors =
            produce_errors(wire.call(PRODUCE_VERSION, produce("tail", &[(0, batch(8, 60_000))])));
        assert_eq!(errors, vec![0]);
    }
    let mut offset = 0;
    let rate_alone = round_trips_per_second(&mut wire, "normal", &mut offset, 500);
    let rss_baseline = broker.rss_bytes();
    let (stop_sampler, sampler) = sample_rss_peak(&broker);
    let mut deaf = TcpStream::connect(&address).expect("connect");
    let mut frames = Vec::new();
    for correlation_id in 0..100 {
        let header = RequestHeader {
            api_key: ApiKey::Fetch.code(),
            api_version: FETCH_VERSION,
            correlation_id,
            client_id: Some("deaf".into()),
        };
        let request = fetch("tail", &[(0, 0)], 500, 1, 8 << 20);
        for chunk in encode_request_frame(&header, &request).unwrap() {
            frames.extend_from_slice(&chunk);
        }
    }
    deaf.write_all(&frames).expect("send the fetches");
    let sent_at = Instant::now();
    let rate_beside = round_trips_per_second(&mut wire, "normal", &mut offset, 500);
    // Wait past the idle timeout, then read what is buffered: the stream must end.
    thread::sleep(Duration::from_millis(2500).saturating_sub(sent_at.elapsed()));
    deaf.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffered = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    let closed = loop {
        match deaf.read(&mut chunk) {
            Ok(0) => break true,
            Ok(read) => buffered += read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    let closed_after = sent_at.elapsed();
    stop_sampler.store(true, Ordering::SeqCst);
    let rss_peak = sampler.join().unwrap();
    eprintln!(
        "a non-reading fetcher: closed {closed} after {closed_after:?} ({} MiB were buffered); RSS \
         baseline {} MiB, peak {} MiB; normal client {rate_alone:.0} round trips/s alone, \
         {rate_beside:.0}/s beside it",
        buffered as u64 / MIB,
        rss_baseline / MIB,
        rss_peak / MIB
    );
    assert!(closed, "the broker kept a client that reads nothing");
    // One response of up to 8 MiB is in the broker at a time, not 100 of them.
    assert!(
        rss_peak < rss_baseline + 64 * MIB,
        "peak RSS {} MiB, baseline {} MiB",
        rss_peak / MIB,
        rss_baseline / MIB
    );
    // The normal client idled through the wait too, so it was closed as well: a new one works.
    let mut wire = Wire::connect(&address);
    round_trips_per_second(&mut wire, "normal", &mut offset, 20);
    broker.stop();
}

#[test]
fn many_parked_fetches_leave_the_shard_responsive() {
    // Proves 1,000 fetches parked on 50 partitions each (min_bytes 512 KiB, so the small writes
    // wake all of them without satisfying them) do not stall the shard: 100 produces, each moving
    // a high watermark that 1,000 fetches wait on, and ApiVersions calls complete well within the
    // fetches' max_wait_ms, so a final 600 KB write answers every fetch with it. When each wake
    // cost O(fetches x partitions) (every woken fetch re-listened to and re-read all 50
    // partitions, and each re-listen scanned the partition's 1,000 wakers), the small produces
    // could outlast max_wait_ms and the fetches time out without the big batch.
    const FETCHES: usize = 1000;
    const PARTITIONS: i32 = 50;
    const MAX_WAIT_MS: i32 = 10_000;
    const MIN_BYTES: i32 = 512 * 1024;
    let broker = start_one_shard(&[]);
    let address = broker.bootstrap();
    let mut wire = Wire::connect(&address);
    assert_eq!(wire.create_topic("parked", PARTITIONS, &[]), 0);
    let starts: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut parked: Vec<(Wire, i32)> = (0..FETCHES)
        .map(|_| {
            let mut fetcher = Wire::connect(&address);
            let request = fetch("parked", &starts, MAX_WAIT_MS, MIN_BYTES, 50 << 20);
            let id = fetcher.send(FETCH_VERSION, request);
            (fetcher, id)
        })
        .collect();
    let parked_at = Instant::now();
    let mut produce_max = Duration::ZERO;
    let mut api_versions_max = Duration::ZERO;
    for i in 0..100 {
        let started = Instant::now();
        let request = produce("parked", &[(i % PARTITIONS, batch(1, 100))]);
        assert_eq!(
            produce_errors(call_whole(&mut wire, PRODUCE_VERSION, request)),
            vec![0]
        );
        produce_max = produce_max.max(started.elapsed());
        if i % 10 == 0 {
            let started = Instant::now();
            let request = Request::ApiVersions(ApiVersionsRequest::default());
            let Response::ApiVersions(versions) = call_whole(&mut wire, 3, request) else {
                panic!("not an ApiVersions response");
            };
            assert_eq!(versions.error_code, 0);
            api_versions_max = api_versions_max.max(started.elapsed());
        }
    }
    let produced_in = parked_at.elapsed();
    let request = produce("parked", &[(PARTITIONS - 1, batch(6, 100_000))]);
    assert_eq!(
        produce_errors(call_whole(&mut wire, PRODUCE_VERSION, request)),
        vec![0]
    );
    let mut answered_with_big_batch = 0;
    for (fetcher, id) in &mut parked {
        let results = fetch_results(fetcher.receive(ApiKey::Fetch, FETCH_VERSION, *id));
        assert_eq!(results.len(), PARTITIONS as usize);
        assert!(results.iter().all(|(error, _)| *error == 0));
        let total: usize = results.iter().map(|(_, bytes)| bytes).sum();
        answered_with_big_batch += usize::from(total >= MIN_BYTES as usize);
    }
    let answered_in = parked_at.elapsed();
    eprintln!(
        "{FETCHES} fetches parked on {PARTITIONS} partitions each: 100 produces in \
         {produced_in:?} (slowest {produce_max:?}), slowest ApiVersions {api_versions_max:?}; \
         {answered_with_big_batch} answered with the final batch {answered_in:?} after parking \
         (max_wait_ms {MAX_WAIT_MS})"
    );
    assert_eq!(answered_with_big_batch, FETCHES);
    broker.stop();
}
