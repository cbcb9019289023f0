//! Produce throughput of a real `spate serve --cores 1`, loaded by librdkafka (issue 3,
//! "Performance").
//!
//! Run with `cargo bench --bench produce_rdkafka` (after `cargo build --release`, which builds the
//! broker binary), or through `perf/produce_baseline.sh`, which also measures the disk ceiling with
//! fio in the same run and prints the table recorded in `perf/RESULTS.md`.
//!
//! What one invocation does: start the broker pinned to CPU 0 (`--cores 1`; the broker pins its
//! one shard to the first online CPU, and this bench pins the whole broker process there too, so
//! its helper threads share that core), pin this process and librdkafka's threads to CPU 1, then
//! for each (partitions, acks) pair create a fresh topic with CreateTopics and produce 1 KiB
//! records into it for a fixed count or duration, whichever ends first. Records go to partitions
//! round-robin (explicit partition numbers, so librdkafka's sticky partitioner does not turn
//! 16 partitions into one at a time). A run ends when every delivery report is in; its clock
//! starts before the first send and stops when `flush` returns, so queued-but-unacknowledged
//! records never count.
//!
//! Output: progress on stderr, and one JSON line per run on stdout beginning with
//! `{"bench":"produce_rdkafka"`, for the script. MB/s is 10^6 bytes of record *values* per second
//! (1,024 bytes per record); the RecordBatch framing on the wire and on disk adds about 10 bytes
//! per record and 61 per batch, not counted. Each line also carries the CPU the broker and this
//! process used during the run (from /proc, in percent of one core), and the bytes the broker
//! wrote to the block layer (`/proc/<pid>/io` write_bytes), so a figure can be read against what
//! limited it, plus what librdkafka's statistics say about the run: broker round-trip time,
//! time records waited in the client queue, and the batch sizes actually sent.
//!
//! Flags (after `--`): `--records N` (default 2,000,000 = 2.048 GB), `--seconds S` (default 20),
//! `--acks 1,all`, `--partitions 16,1`, `--record-bytes 1024`, `--broker-cpu 0`, `--client-cpu 1`,
//! `--topic-config NAME=VALUE` (repeatable, for the topics it creates). `--bootstrap HOST:PORT`
//! loads an already running broker instead of starting one (any Kafka-compatible broker; this is
//! how `perf/bench_matrix.sh` runs librdkafka beside `spate bench` on the same broker), with
//! `--broker-pid PID` for its CPU and disk figures (null without). Each run deletes and
//! re-creates its topic, `bench-p<partitions>-acks<acks>` or the one `--topic NAME` gives (the
//! matrix passes its cell's topic, so a broker holds one cell's data at a time).
//! Environment: `SPATE_BIN` (default `<crate>/target/release/spate`), `SPATE_BENCH_DIR` (default
//! `<crate>/target/produce_bench`; must be on the disk under test, not tmpfs), and
//! `SPATE_BENCH_PERF_DIR`: when set, each run is also recorded with `perf record -g -p <broker>`
//! into that directory.
//!
//! Do not run two of these at once on one machine: both would pin to the same cores.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

/// How long the broker may take to publish DATA_DIR/listeners after it starts.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the broker may take to exit after SIGTERM before it is killed (and reported).
const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new topic may take to show a leader for every partition in Metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the last records may take to be acknowledged once sending stops. A run that needs
/// longer reports the undelivered count instead of hanging the bench.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Sends between two `poll(0)` calls, which run the delivery callbacks.
const SENDS_PER_POLL: u64 = 1024;
/// Interval of the progress lines on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Interval of librdkafka's statistics callbacks (`statistics.interval.ms`), which give the
/// broker round-trip time and the batch sizes the client actually sent.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// What one invocation measures, from the command line.
#[derive(Debug, Clone)]
struct Options {
    records_max: u64,
    duration_max: Duration,
    acks_levels: Vec<String>,
    partition_counts: Vec<i32>,
    record_bytes: usize,
    broker_cpu: usize,
    client_cpu: usize,
    /// Load this running broker instead of starting one (`--bootstrap HOST:PORT`).
    bootstrap: Option<String>,
    /// The running broker's pid, for its CPU and disk figures (`--broker-pid`, with --bootstrap).
    broker_pid: Option<u32>,
    /// Topic configs for the topics this bench creates (`--topic-config NAME=VALUE`, repeatable).
    topic_configs: Vec<(String, String)>,
    /// The topic every run deletes, re-creates and loads (`--topic NAME`).
    topic: Option<String>,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            records_max: 2_000_000,
            duration_max: Duration::from_secs(20),
            acks_levels: vec!["1".to_owned(), "all".to_owned()],
            partition_counts: vec![16, 1],
            record_bytes: 1024,
            broker_cpu: 0,
            client_cpu: 1,
            bootstrap: None,
            broker_pid: None,
            topic_configs: Vec::new(),
            topic: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            // `cargo bench` appends `--bench`; there is nothing else to take from it.
            if flag == "--bench" {
                continue;
            }
            let value = args
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--records" => options.records_max = parse_number(&flag, &value),
                "--seconds" => {
                    options.duration_max = Duration::from_secs(parse_number(&flag, &value))
                }
                "--acks" => options.acks_levels = value.split(',').map(str::to_owned).collect(),
                "--partitions" => {
                    options.partition_counts =
                        value.split(',').map(|v| parse_number(&flag, v)).collect()
                }
                "--record-bytes" => options.record_bytes = parse_number(&flag, &value),
                "--broker-cpu" => options.broker_cpu = parse_number(&flag, &value),
                "--client-cpu" => options.client_cpu = parse_number(&flag, &value),
                "--bootstrap" => options.bootstrap = Some(value),
                "--topic" => options.topic = Some(value),
                "--broker-pid" => options.broker_pid = Some(parse_number(&flag, &value)),
                "--topic-config" => {
                    let Some((name, setting)) = value.split_once('=') else {
                        usage(&format!("--topic-config {value}: expected NAME=VALUE"));
                    };
                    options
                        .topic_configs
                        .push((name.to_owned(), setting.to_owned()));
                }
                _ => usage(&format!("unknown flag {flag}")),
            }
        }
        for acks in &options.acks_levels {
            if !matches!(acks.as_str(), "0" | "1" | "all" | "-1") {
                usage(&format!("--acks {acks}: expected 0, 1, all or -1"));
            }
        }
        options
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("{flag} {value}: not a number")))
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "produce_rdkafka: {problem}\nusage: cargo bench --bench produce_rdkafka -- [--records N] \
         [--seconds S] [--acks 1,all] [--partitions 16,1] [--record-bytes B] [--broker-cpu C] \
         [--client-cpu C] [--bootstrap HOST:PORT [--broker-pid PID]] [--topic-config NAME=VALUE] [--topic NAME]"
    );
    std::process::exit(2);
}

/// Pins the calling thread, and every thread it creates afterwards, to one CPU.
fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
fn process_cpu_time(pid: &str) -> Duration {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks: u64 = fields
        .get(11..13)
        .map(|both| both.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second)
}

/// Bytes a process has sent to the block layer so far (`write_bytes` in /proc/<pid>/io).
fn process_write_bytes(pid: u32) -> u64 {
    let Ok(io) = fs::read_to_string(format!("/proc/{pid}/io")) else {
        return 0;
    };
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A `spate serve` child process. Dropping it kills the broker, so a panicking bench does not
/// leave it running; the normal end is `stop`, which checks the clean SIGTERM exit.
struct Broker {
    child: Option<Child>,
    bootstrap: String,
    log_path: PathBuf,
}

impl Broker {
    fn start(binary: &Path, run_dir: &Path, cpu: usize) -> Broker {
        let data_dir = run_dir.join("data");
        fs::create_dir_all(&data_dir).expect("creating the broker data dir");
        let log_path = run_dir.join("broker.log");
        let log = fs::File::create(&log_path).expect("creating the broker log");
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--port", "0", "--cores", "1", "--host", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // sched_setaffinity syscall, which is async-signal-safe.
        unsafe {
            command.pre_exec(move || pin_current_thread(cpu));
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let mut broker = Broker {
            child: Some(child),
            bootstrap: String::new(),
            log_path,
        };
        broker.bootstrap = broker.wait_for_listeners(&data_dir.join("listeners"));
        broker
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// Waits for DATA_DIR/listeners and returns node 0's address (its first line).
    fn wait_for_listeners(&mut self, path: &Path) -> String {
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(path)
                && let Some(line) = text.lines().next()
                && let Some(("0", address)) = line.split_once(' ')
            {
                return address.trim().to_owned();
            }
            let child = self.child.as_mut().expect("broker running");
            if let Ok(Some(status)) = child.try_wait() {
                self.fail(&format!("broker exited during start-up: {status}"));
            }
            if Instant::now() > deadline {
                self.fail("broker did not write DATA_DIR/listeners in time");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let Ok(file) = fs::File::open(&self.log_path) else {
            return String::new();
        };
        let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn fail(&self, problem: &str) -> ! {
        panic!(
            "{problem}\n--- last lines of {} ---\n{}",
            self.log_path.display(),
            self.log_tail()
        );
    }

    /// SIGTERM, then wait. Returns the exit status, or None if the broker had to be killed.
    fn stop(mut self) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("broker running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sums of librdkafka's rolling windows over every statistics interval of one run. Each window
/// covers one interval, so sums and counts add up across intervals; maxima are taken as is.
#[derive(Debug, Default, Clone)]
struct ClientStatistics {
    /// Broker round-trip time (request written to response read), microseconds.
    rtt_us_sum: i64,
    rtt_count: i64,
    rtt_us_p99_max: i64,
    /// Time records waited in the client's queue before being put in a request, microseconds.
    queue_latency_us_sum: i64,
    queue_latency_count: i64,
    /// Produce batches (one per partition per request) and their bytes and records.
    batch_bytes_sum: i64,
    batch_count: i64,
    batch_records_sum: i64,
    /// Most requests seen waiting for a response on the broker connection at a sample.
    awaiting_response_max: i64,
    /// Requests sent to the broker (node 0), cumulative.
    requests: u64,
}

impl ClientStatistics {
    fn add(&mut self, statistics: &Statistics) {
        for broker in statistics.brokers.values().filter(|b| b.nodeid >= 0) {
            if let Some(rtt) = &broker.rtt {
                self.rtt_us_sum += rtt.sum;
                self.rtt_count += rtt.cnt;
                self.rtt_us_p99_max = self.rtt_us_p99_max.max(rtt.p99);
            }
            if let Some(latency) = &broker.int_latency {
                self.queue_latency_us_sum += latency.sum;
                self.queue_latency_count += latency.cnt;
            }
            self.awaiting_response_max = self.awaiting_response_max.max(broker.waitresp_cnt);
            self.requests = broker.tx;
        }
        for topic in statistics.topics.values() {
            self.batch_bytes_sum += topic.batchsize.sum;
            self.batch_count += topic.batchsize.cnt;
            self.batch_records_sum += topic.batchcnt.sum;
        }
    }

    fn mean(sum: i64, count: i64) -> f64 {
        if count == 0 {
            0.0
        } else {
            sum as f64 / count as f64
        }
    }
}

/// Counts delivery reports; librdkafka calls `delivery` (and `stats`) from `poll` and `flush`,
/// on this thread.
#[derive(Default)]
struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    statistics: Mutex<ClientStatistics>,
}

impl ClientContext for DeliveryCounter {
    fn stats(&self, statistics: Statistics) {
        self.statistics
            .lock()
            .expect("not poisoned")
            .add(&statistics);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("not poisoned");
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// librdkafka settings for bulk throughput: big batches, a short linger, a deep queue, no
/// compression (so the broker's cost per byte is measured, not zstd's).
fn producer_config(bootstrap: &str, acks: &str, record_bytes: usize) -> ClientConfig {
    // A record larger than a default request must still fit one (1 MiB records).
    let message_max_bytes = (2 * 1024 * 1024).max(record_bytes + 64 * 1024);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("batch.num.messages", "1000000")
        .set("message.max.bytes", message_max_bytes.to_string())
        .set("queue.buffering.max.kbytes", "262144")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.codec", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    config
}

/// Creates `topic` afresh: deleted first if it exists (a running broker may hold it from an
/// earlier run), so every run starts empty and a series of runs does not fill the disk.
fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(String, String)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("creating the admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = futures_executor::block_on(admin.delete_topics(&[topic], &options))
        .expect("DeleteTopics request");
    for result in deleted {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => panic!("DeleteTopics {name}: {code}"),
        }
    }
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
        .expect("CreateTopics request");
    for result in results {
        if let Err((name, code)) = result {
            panic!("CreateTopics {name}: {code}");
        }
    }
}

/// Waits until Metadata shows every partition of `topic` with a leader.
fn wait_for_topic(producer: &BaseProducer<DeliveryCounter>, topic: &str, partitions: i32) {
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    loop {
        if let Ok(metadata) = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(found) = metadata.topics().iter().find(|t| t.name() == topic)
            && found.error().is_none()
            && found.partitions().len() == partitions as usize
            && found
                .partitions()
                .iter()
                .all(|p| p.leader() >= 0 && p.error().is_none())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} has no leaders after CreateTopics"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// What one (partitions, acks) run measured.
struct RunResult {
    partitions: i32,
    acks: String,
    records_sent: u64,
    records_delivered: u64,
    records_failed: u64,
    first_error: Option<String>,
    send_seconds: f64,
    seconds: f64,
    broker_cpu: Option<Duration>,
    client_cpu: Duration,
    broker_write_bytes: Option<u64>,
    client: ClientStatistics,
}

impl RunResult {
    fn json(&self, record_bytes: usize) -> String {
        let bytes = self.records_delivered as f64 * record_bytes as f64;
        let mut line = String::new();
        let _ = write!(
            line,
            "{{\"bench\":\"produce_rdkafka\",\"partitions\":{},\"acks\":\"{}\",\"record_bytes\":{},\
             \"records_sent\":{},\"records_delivered\":{},\"records_failed\":{},\"seconds\":{:.3},\
             \"send_seconds\":{:.3},\"records_per_s\":{:.0},\"mb_per_s\":{:.1},\
             \"broker_cpu_pct\":{},\"client_cpu_pct\":{:.0},\"broker_write_bytes\":{},\
             \"rtt_ms_avg\":{:.2},\"rtt_ms_p99_max\":{:.2},\"queue_ms_avg\":{:.1},\
             \"batch_bytes_avg\":{:.0},\"batch_records_avg\":{:.0},\"requests\":{},\
             \"awaiting_response_max\":{},\"first_error\":{}}}",
            self.partitions,
            self.acks,
            record_bytes,
            self.records_sent,
            self.records_delivered,
            self.records_failed,
            self.seconds,
            self.send_seconds,
            self.records_delivered as f64 / self.seconds,
            bytes / self.seconds / 1e6,
            json_number(
                self.broker_cpu
                    .map(|cpu| (100.0 * cpu.as_secs_f64() / self.seconds).round())
            ),
            100.0 * self.client_cpu.as_secs_f64() / self.seconds,
            json_number(self.broker_write_bytes.map(|bytes| bytes as f64)),
            ClientStatistics::mean(self.client.rtt_us_sum, self.client.rtt_count) / 1e3,
            self.client.rtt_us_p99_max as f64 / 1e3,
            ClientStatistics::mean(
                self.client.queue_latency_us_sum,
                self.client.queue_latency_count
            ) / 1e3,
            ClientStatistics::mean(self.client.batch_bytes_sum, self.client.batch_count),
            ClientStatistics::mean(self.client.batch_records_sum, self.client.batch_count),
            self.client.requests,
            self.client.awaiting_response_max,
            json_string(self.first_error.as_deref()),
        );
        line
    }
}

fn json_number(value: Option<f64>) -> String {
    value.map_or_else(|| "null".to_owned(), |value| format!("{value:.0}"))
}

fn json_string(text: Option<&str>) -> String {
    let Some(text) = text else {
        return "null".to_owned();
    };
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push(' '),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Starts `perf record` on the broker for one run, if SPATE_BENCH_PERF_DIR asks for it.
fn start_perf(broker_pid: u32, name: &str) -> Option<Child> {
    let dir = std::env::var_os("SPATE_BENCH_PERF_DIR")?;
    let output = Path::new(&dir).join(format!("{name}.perf.data"));
    Command::new("perf")
        .args([
            "record",
            "-g",
            "-F",
            "999",
            "-p",
            &broker_pid.to_string(),
            "-o",
        ])
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| eprintln!("perf record not started: {error}"))
        .ok()
}

fn stop_perf(perf: Option<Child>) {
    if let Some(mut perf) = perf {
        let pid = libc::pid_t::try_from(perf.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; perf is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let _ = perf.wait();
    }
}

/// The broker a run loads: its bootstrap address, and its pid when known (for CPU and disk).
struct Target {
    bootstrap: String,
    pid: Option<u32>,
}

fn produce_run(target: &Target, options: &Options, partitions: i32, acks: &str) -> RunResult {
    let topic = options.topic.clone().unwrap_or_else(|| {
        format!(
            "bench-p{partitions}-acks{}",
            if acks == "-1" { "all" } else { acks }
        )
    });
    create_topic(
        &target.bootstrap,
        &topic,
        partitions,
        &options.topic_configs,
    );
    let producer: BaseProducer<DeliveryCounter> =
        producer_config(&target.bootstrap, acks, options.record_bytes)
            .create_with_context(DeliveryCounter::default())
            .expect("creating the producer");
    wait_for_topic(&producer, &topic, partitions);
    let payload = vec![0x5au8; options.record_bytes];
    let perf = target.pid.and_then(|pid| start_perf(pid, &topic));

    let broker_cpu_start = target.pid.map(|pid| process_cpu_time(&pid.to_string()));
    let client_cpu_start = process_cpu_time("self");
    let broker_write_bytes_start = target.pid.map(process_write_bytes);
    let start = Instant::now();
    let mut next_progress = start + PROGRESS_INTERVAL;
    let mut sent: u64 = 0;
    let progress = |sent: u64| {
        eprintln!(
            "  {topic}: {:.1} s, {sent} sent, {} delivered",
            start.elapsed().as_secs_f64(),
            producer.context().delivered.load(Ordering::Relaxed)
        );
    };
    while sent < options.records_max && start.elapsed() < options.duration_max {
        let partition = (sent % partitions as u64) as i32;
        let record = BaseRecord::<(), [u8], ()>::to(&topic)
            .partition(partition)
            .payload(&payload);
        let queue_full = match producer.send(record) {
            Ok(()) => {
                sent += 1;
                false
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => true,
            Err((error, _)) => panic!("send failed: {error}"),
        };
        if queue_full {
            // The local queue is full: the broker is the slower side. Serve callbacks and
            // give librdkafka's threads the core for a moment.
            producer.poll(Duration::from_millis(1));
        } else if sent.is_multiple_of(SENDS_PER_POLL) {
            producer.poll(Duration::ZERO);
        } else {
            continue;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_INTERVAL;
            progress(sent);
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    // Flush in steps so a slow drain shows up in the progress lines.
    let flush_deadline = Instant::now() + FLUSH_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < flush_deadline {
        let _ = producer.flush(PROGRESS_INTERVAL);
        if producer.in_flight_count() > 0 {
            progress(sent);
        }
    }
    if producer.in_flight_count() > 0 {
        eprintln!(
            "  {topic}: flush timed out with {} records in flight",
            producer.in_flight_count()
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let broker_cpu = target
        .pid
        .zip(broker_cpu_start)
        .map(|(pid, start)| process_cpu_time(&pid.to_string()).saturating_sub(start));
    let client_cpu = process_cpu_time("self").saturating_sub(client_cpu_start);
    let broker_write_bytes = target
        .pid
        .zip(broker_write_bytes_start)
        .map(|(pid, start)| process_write_bytes(pid).saturating_sub(start));
    stop_perf(perf);

    let context = producer.context();
    RunResult {
        partitions,
        acks: acks.to_owned(),
        records_sent: sent,
        records_delivered: context.delivered.load(Ordering::Relaxed),
        records_failed: context.failed.load(Ordering::Relaxed),
        first_error: context.first_error.lock().expect("not poisoned").clone(),
        send_seconds,
        seconds,
        broker_cpu,
        client_cpu,
        broker_write_bytes,
        client: context.statistics.lock().expect("not poisoned").clone(),
    }
}

fn main() {
    let options = Options::parse();
    if let Some(bootstrap) = options.bootstrap.clone() {
        let target = Target {
            bootstrap,
            pid: options.broker_pid,
        };
        pin_current_thread(options.client_cpu).expect("pinning the bench to its CPU");
        eprintln!(
            "produce_rdkafka: loading the running broker at {} (pid {:?}), client on CPU {}",
            target.bootstrap, target.pid, options.client_cpu
        );
        let failed_runs = run_all(&target, &options);
        if failed_runs > 0 {
            eprintln!("produce_rdkafka: {failed_runs} run(s) had undelivered or failed records");
            std::process::exit(1);
        }
        return;
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("SPATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target/release/spate"));
    let bench_dir = std::env::var_os("SPATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target/produce_bench"));
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --release` first, or set SPATE_BIN",
        binary.display()
    );
    let run_dir = bench_dir.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run_dir);

    // The broker first (its pre_exec pins it to broker_cpu), then this process: librdkafka's
    // threads are created later and inherit client_cpu.
    let broker = Broker::start(&binary, &run_dir, options.broker_cpu);
    pin_current_thread(options.client_cpu).expect("pinning the bench to its CPU");
    let (_, librdkafka_version) = rdkafka::util::get_rdkafka_version();
    eprintln!(
        "produce_rdkafka: broker {} (pid {}, CPU {}) at {}, client on CPU {}, librdkafka {}, \
         {} B records, up to {} records or {} s per run",
        binary.display(),
        broker.pid(),
        options.broker_cpu,
        broker.bootstrap,
        options.client_cpu,
        librdkafka_version,
        options.record_bytes,
        options.records_max,
        options.duration_max.as_secs(),
    );
    let target = Target {
        bootstrap: broker.bootstrap.clone(),
        pid: Some(broker.pid()),
    };
    let failed_runs = run_all(&target, &options);

    let status = broker.stop();
    let clean_exit = status.is_some_and(|status| status.success());
    if clean_exit {
        eprintln!("produce_rdkafka: broker exited cleanly after SIGTERM");
    } else {
        eprintln!("produce_rdkafka: broker did not exit cleanly after SIGTERM ({status:?})");
    }
    if failed_runs > 0 {
        eprintln!("produce_rdkafka: {failed_runs} run(s) had undelivered or failed records");
    }
    // The data is gigabytes; the log is small and worth a look after a slow or odd run.
    let _ = fs::copy(
        run_dir.join("broker.log"),
        bench_dir.join("broker-last.log"),
    );
    if clean_exit && failed_runs == 0 {
        let _ = fs::remove_dir_all(&run_dir);
    } else {
        eprintln!(
            "produce_rdkafka: broker log and data kept in {}",
            run_dir.display()
        );
        std::process::exit(1);
    }
}

/// Runs every (partitions, acks) pair against `target`, printing each run's JSON line on
/// stdout; returns how many runs had undelivered or failed records.
fn run_all(target: &Target, options: &Options) -> usize {
    let mut failed_runs = 0;
    for &partitions in &options.partition_counts {
        for acks in &options.acks_levels {
            let result = produce_run(target, options, partitions, acks);
            let line = result.json(options.record_bytes);
            let broker_cpu = result.broker_cpu.map_or_else(
                || "unknown".to_owned(),
                |cpu| format!("{:.0}%", 100.0 * cpu.as_secs_f64() / result.seconds),
            );
            eprintln!(
                "  p{partitions} acks={acks}: {:.1} MB/s, {:.0} records/s (MB = 10^6 B of values), \
                 {} delivered, {} failed, broker CPU {broker_cpu}",
                result.records_delivered as f64 * options.record_bytes as f64
                    / result.seconds
                    / 1e6,
                result.records_delivered as f64 / result.seconds,
                result.records_delivered,
                result.records_failed,
            );
            if result.records_failed > 0 || result.records_delivered < result.records_sent {
                failed_runs += 1;
            }
            println!("{line}");
        }
    }
    failed_runs
}
