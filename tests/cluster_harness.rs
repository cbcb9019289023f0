//! Self-tests of the cluster harness (tests/cluster_common) against standalone brokers: starting,
//! the listeners file, Metadata, SIGKILL and restart with the data kept, a replayed power loss,
//! SIGSTOP/SIGCONT, a start
//! that fails, cleanup on drop, and the link proxy alone against an echo server.

mod cluster_common;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cluster_common::{
    BrokerProcess, Cluster, ClusterSpec, KafkaConnection, LinkProxy, StartOutcome, fetch_all,
    host_of, process_state, test_dir,
};
use common::wire::{Wire, batch, produce};
use spate::protocol::Response;

// Proves two standalone brokers start on their own hosts (127.0.1.1, 127.0.1.2), write one
// listeners line per shard there, and answer Metadata listing exactly their shards, with shard 0
// as controller; `bootstrap` names shard 0 of each.
#[test]
fn standalone_brokers_start_on_their_hosts_and_answer_metadata() {
    let cluster = Cluster::start(ClusterSpec {
        brokers: 2,
        voters: 0,
        cores_per_broker: 2,
        extra_args: Vec::new(),
        sync_journal: false,
    });
    for i in 1..=2 {
        let listeners = cluster.broker(i).listeners().expect("listeners");
        assert_eq!(
            listeners.iter().map(|(node, _)| *node).collect::<Vec<_>>(),
            vec![0, 1]
        );
        for (_, address) in &listeners {
            assert!(
                address.starts_with(&format!("{}:", host_of(i))),
                "{address} on {}",
                host_of(i)
            );
        }
        let metadata = cluster.metadata(i).expect("metadata");
        assert_eq!(metadata.controller_id, 0);
        assert_eq!(
            metadata.nodes.values().cloned().collect::<Vec<_>>(),
            cluster.broker_addresses(i),
            "Metadata lists the shards at their listening addresses"
        );
    }
    assert_eq!(
        cluster.bootstrap(),
        format!(
            "{},{}",
            cluster.broker_addresses(1)[0],
            cluster.broker_addresses(2)[0]
        )
    );
}

// Proves `kill` (SIGKILL) and `restart` bring a broker back on the same data directory with its
// acknowledged records (produced with tests/common/wire.rs and with the harness's own
// connection), and that `wait_ready` sees it ready again.
#[test]
fn sigkill_and_restart_keep_the_data() {
    let mut cluster = Cluster::single(1);
    let topic = "kept";
    let mut wire = Wire::connect(&cluster.broker_addresses(1)[0]);
    assert_eq!(wire.create_topic(topic, 1, &[]), 0, "CreateTopics");
    let Response::Produce(response) = wire.call(8, produce(topic, 0, batch(3, 10), -1)) else {
        panic!("not a produce response");
    };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let mut connection =
        KafkaConnection::connect(&cluster.broker_addresses(1)[0], Duration::from_secs(5))
            .expect("connect");
    let values = vec![b"first".to_vec(), b"second".to_vec()];
    assert_eq!(
        connection.produce(topic, 0, &values, -1).expect("produce"),
        (0, 3)
    );
    drop((wire, connection));
    let pid = cluster.broker(1).pid();
    cluster.kill(1);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
    assert!(cluster.live().is_empty());
    cluster.restart(1);
    cluster.wait_ready(Duration::from_secs(20));
    let records = fetch_all(
        &cluster.broker_addresses(1)[0],
        topic,
        0,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|error| cluster.fail(&error));
    let got: Vec<(i64, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.offset, r.value.expect("a value")))
        .collect();
    let mut want: Vec<(i64, Vec<u8>)> = (0..3).map(|o| (o, vec![b'v'; 10])).collect();
    want.push((3, b"first".to_vec()));
    want.push((4, b"second".to_vec()));
    assert_eq!(
        got, want,
        "every acknowledged record after SIGKILL and restart"
    );
}

// Proves the power loss `kill_losing_unsynced` replays from the sync journal drops exactly what
// the broker had not fdatasync'ed: after 20 acks=all records (each answered once synced) and 20
// acks=1 records (answered at the write, synced by nothing yet), the SIGKILL drops data, and the
// restarted broker holds the acks=all records and none of the others.
#[test]
fn a_replayed_power_loss_drops_what_was_not_synced() {
    let mut cluster = Cluster::start(ClusterSpec {
        brokers: 1,
        voters: 0,
        cores_per_broker: 1,
        extra_args: Vec::new(),
        sync_journal: true,
    });
    let topic = "unsynced";
    let address = cluster.broker_addresses(1)[0].clone();
    let mut connection =
        KafkaConnection::connect(&address, Duration::from_secs(5)).expect("connect");
    assert_eq!(
        connection
            .create_topic(topic, 1, 10_000)
            .map(|(code, _)| code),
        Ok(0)
    );
    for (acks, first) in [(-1, 0), (1, 20)] {
        for i in first..first + 20 {
            let value = format!("record {i} {}", "x".repeat(500)).into_bytes();
            assert_eq!(
                connection.produce(topic, 0, &[value], acks),
                Ok((0, i)),
                "acks={acks}"
            );
        }
    }
    drop(connection);
    let dropped = cluster.kill_losing_unsynced(1);
    assert!(
        dropped > 20 * 500,
        "the acks=1 records' bytes dropped: {dropped}"
    );
    cluster.restart(1);
    cluster.wait_ready(Duration::from_secs(20));
    let address = cluster.broker_addresses(1)[0].clone();
    let records = fetch_all(&address, topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|error| cluster.fail(&error));
    let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
    assert_eq!(
        offsets,
        (0..20).collect::<Vec<i64>>(),
        "the synced records only"
    );
}

// Proves `stop` (SIGSTOP) freezes the broker (a Metadata request gets no answer) and `resume`
// (SIGCONT) brings the same process back answering.
#[test]
fn sigstop_freezes_and_sigcont_resumes() {
    let mut cluster = Cluster::single(1);
    let address = cluster.broker_addresses(1)[0].clone();
    let pid = cluster.broker(1).pid();
    cluster.stop(1);
    assert_eq!(
        process_state(Path::new(&format!("/proc/{pid}/stat"))),
        Some('T'),
        "stopped"
    );
    let frozen = KafkaConnection::connect(&address, Duration::from_millis(500))
        .and_then(|mut c| c.call(12, spate::protocol::Request::Metadata(Default::default())));
    assert!(frozen.is_err(), "a stopped broker answered: {frozen:?}");
    cluster.resume(1);
    cluster.wait_ready(Duration::from_secs(10));
    assert_eq!(cluster.broker(1).pid(), pid, "the same process");
}

// Proves `restart_with` reports a start that fails (here an unknown flag) with its non-zero exit
// status and stderr, and that a later `restart` uses the original arguments again.
#[test]
fn a_failed_start_is_reported_with_its_status_and_stderr() {
    let mut cluster = Cluster::single(1);
    cluster.kill(1);
    let outcome = cluster.restart_with(1, |args| args.push("--no-such-flag".into()));
    match outcome {
        StartOutcome::Exited { status, stderr } => {
            assert!(!status.success(), "exit status {status}");
            assert!(stderr.contains("--no-such-flag"), "stderr: {stderr}");
        }
        StartOutcome::Ready => panic!("a broker with an unknown flag started"),
    }
    cluster.restart(1);
    cluster.wait_ready(Duration::from_secs(20));
}

// Proves a start that stalls (here: frozen by SIGSTOP before it listens) is given up after the
// start timeout, its thread stacks written to stderr.log, and the broker killed and started once
// more, successfully.
#[test]
fn a_stalled_start_is_killed_and_started_once_more() {
    let dir = test_dir("stall");
    let args: Vec<String> = [
        "serve",
        "--data-dir",
        &dir.join("broker-1/data").display().to_string(),
        "--host",
        "127.0.1.1",
        "--port",
        "0",
        "--cores",
        "1",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let mut broker = BrokerProcess::new(1, dir.join("broker-1"), args.clone(), 1);
    broker.set_start_timeout(Duration::from_secs(1));
    // The stop must land before the broker listens; a start faster than that is tried again.
    for _ in 0..5 {
        broker.spawn_with(&args);
        broker.stop();
        if broker.listeners().is_err() {
            break;
        }
        broker.kill_if_running();
    }
    assert!(
        broker.listeners().is_err(),
        "froze a start before it listened"
    );
    let starts_before = broker.start_count();
    broker.finish_start().expect("started on the second try");
    assert_eq!(broker.start_count(), starts_before + 1, "started once more");
    assert!(broker.listeners().is_ok());
    let stderr = std::fs::read_to_string(broker.stderr_path()).unwrap();
    assert!(
        stderr.contains("=== harness: start timed out; threads:"),
        "thread stacks in stderr.log"
    );
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

// Proves dropping a cluster kills even a SIGSTOPped broker, reaps it and removes its directory.
#[test]
fn drop_kills_stopped_brokers_and_removes_the_directory() {
    let mut cluster = Cluster::single(1);
    let pid = cluster.broker(1).pid();
    let dir = cluster.broker(1).data_dir().to_path_buf();
    cluster.stop(1);
    drop(cluster);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "broker reaped"
    );
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// A std echo server on 127.0.1.9 that stops when dropped.
struct EchoServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.1.9:0").expect("bind the echo server");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = stop.clone();
        let thread = thread::spawn(move || {
            let mut echoes = Vec::new();
            while !stop_seen.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        let stop_echo = stop_seen.clone();
                        echoes.push(thread::spawn(move || {
                            let mut buffer = [0u8; 4096];
                            while !stop_echo.load(Ordering::SeqCst) {
                                match stream.read(&mut buffer) {
                                    Ok(0) => return,
                                    Ok(n) => {
                                        if stream.write_all(&buffer[..n]).is_err() {
                                            return;
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            ErrorKind::WouldBlock | ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            for echo in echoes {
                let _ = echo.join();
            }
        });
        EchoServer {
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects through `proxy`, sends `message` and returns what comes back (up to its length) or
/// the error; bounded by 2 s.
fn echo_through(stream: &mut TcpStream, message: &[u8]) -> Result<Vec<u8>, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(message).map_err(|e| e.to_string())?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).map_err(|e| e.to_string())?;
    Ok(back)
}

/// True if `stream` reaches end of file or an error within 2 s (the proxy closed it).
fn closed_soon(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

// Proves the link proxy forwards bytes both ways (64 KiB and small messages), closes open
// connections and refuses new ones (accepted, then closed at once) while cut, forwards again after
// heal, and that dropping it ends all its threads and closes its port.
#[test]
fn the_link_proxy_forwards_cuts_and_heals() {
    let echo = EchoServer::start();
    let proxy = LinkProxy::start("127.0.1.8", echo.address);
    assert!(proxy.address().to_string().starts_with("127.0.1.8:"));
    let threads_alive = proxy.threads_alive();

    let mut first = TcpStream::connect(proxy.address()).expect("connect through the proxy");
    assert_eq!(echo_through(&mut first, b"hello").unwrap(), b"hello");
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_through(&mut first, &big).unwrap(), big);
    let mut second = TcpStream::connect(proxy.address()).expect("second connection");
    assert_eq!(echo_through(&mut second, b"two").unwrap(), b"two");
    assert_eq!(proxy.connections_open(), 2);
    // An accept thread and two pumps per connection.
    assert_eq!(threads_alive.load(Ordering::SeqCst), 5);

    proxy.set_cut(true);
    assert!(
        closed_soon(&mut first),
        "an open connection is closed on cut"
    );
    assert!(
        closed_soon(&mut second),
        "every open connection is closed on cut"
    );
    assert_eq!(proxy.connections_open(), 0);
    let mut refused = TcpStream::connect(proxy.address()).expect("the proxy still accepts");
    assert!(
        echo_through(&mut refused, b"lost").is_err(),
        "nothing forwarded while cut"
    );
    assert!(
        closed_soon(&mut refused),
        "a new connection is closed at once"
    );

    proxy.set_cut(false);
    let mut healed = TcpStream::connect(proxy.address()).expect("connect after heal");
    assert_eq!(echo_through(&mut healed, b"again").unwrap(), b"again");

    let address = proxy.address();
    let dropped = Instant::now();
    drop(proxy);
    assert!(dropped.elapsed() < Duration::from_secs(2), "drop is quick");
    assert_eq!(
        threads_alive.load(Ordering::SeqCst),
        0,
        "no proxy thread outlives drop"
    );
    assert!(
        TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_err(),
        "the proxy's port is closed after drop"
    );
    assert!(closed_soon(&mut healed), "open connections closed on drop");
}
