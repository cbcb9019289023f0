//! What the Raft tests share: a type config, a minimal in-memory state machine (the
//! controller's real one is not designed yet), per-test directories on ext4, and Raft nodes on
//! their own threads and executors driven by commands from the test thread.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use spate::raft::GlommioRuntime;
use spate::raft::runtime::{RUNTIME_IO_MEMORY_BYTES, RUNTIME_PREEMPT, RUNTIME_RING_DEPTH};

openraft::declare_raft_types!(
    pub TestConfig:
        D = String,
        R = String,
        AsyncRuntime = GlommioRuntime,
);

/// A directory for one test under `target/test-data/` (ext4 here, so O_DIRECT works; tmpfs
/// would not), holding glommio's iopoll probe file, removed when dropped.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-data")
            .join(format!("{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        spate::io::probe::write_probe_file(&path).unwrap();
        Self { path }
    }

    pub fn sub_dir(&self) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self
            .path
            .join(format!("store-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What the minimal state machine remembers.
#[derive(Default, Clone)]
struct SmState {
    last_applied: Option<LogIdOf<TestConfig>>,
    membership: StoredMembershipOf<TestConfig>,
    data: Vec<String>,
}

#[derive(Default)]
struct SmShared {
    state: SmState,
    snapshot: Option<(SnapshotMetaOf<TestConfig>, Vec<u8>)>,
}

/// An in-memory state machine for the Raft tests; clones share its state.
#[derive(Default, Clone)]
pub struct TestStateMachine {
    shared: Rc<RefCell<SmShared>>,
}

impl TestStateMachine {
    /// The normal entries applied so far, in order.
    pub fn applied_data(&self) -> Vec<String> {
        self.shared.borrow().state.data.clone()
    }
}

fn encode_state(state: &SmState) -> Vec<u8> {
    serde_json::to_vec(&(&state.last_applied, &state.membership, &state.data)).unwrap()
}

impl RaftSnapshotBuilder<TestConfig> for TestStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TestConfig, Vec<u8>>, io::Error> {
        let mut shared = self.shared.borrow_mut();
        let meta = SnapshotMetaOf::<TestConfig> {
            last_log_id: shared.state.last_applied,
            last_membership: shared.state.membership.clone(),
        };
        let data = encode_state(&shared.state);
        shared.snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<TestConfig, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TestConfig> for TestStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = TestStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TestConfig>>, StoredMembershipOf<TestConfig>), io::Error> {
        let shared = self.shared.borrow();
        Ok((shared.state.last_applied, shared.state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_lite::Stream<Item = Result<EntryResponder<TestConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let response = {
                let mut shared = self.shared.borrow_mut();
                shared.state.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => String::new(),
                    EntryPayload::Normal(data) => {
                        shared.state.data.push(data.clone());
                        data
                    }
                    EntryPayload::Membership(membership) => {
                        shared.state.membership = StoredMembership::new(Some(log_id), membership);
                        String::new()
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        TestStateMachine {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TestConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let (last_applied, membership, data) =
            serde_json::from_slice(&snapshot).map_err(io::Error::other)?;
        let mut shared = self.shared.borrow_mut();
        shared.state = SmState {
            last_applied,
            membership,
            data,
        };
        shared.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TestConfig, Vec<u8>>>, io::Error> {
        Ok(self
            .shared
            .borrow()
            .snapshot
            .clone()
            .map(|(meta, data)| SnapshotOf::<TestConfig, Vec<u8>> {
                meta,
                snapshot: data,
            }))
    }
}

/// A Raft node of a test: its own thread and executor (sized as a shard's Raft runtime), driven
/// by commands `C` the test thread sends.
pub struct RaftNode<C> {
    pub id: u64,
    /// The address its Raft server listens on.
    pub addr: String,
    commands: Sender<C>,
    thread: JoinHandle<()>,
    /// How long `ask` waits for an answer.
    limit: Duration,
}

impl<C: Send + 'static> RaftNode<C> {
    /// Writes the iopoll probe file in `dir`, then runs `run(commands, address)` on a fresh
    /// executor; `run` sends the address it listens on, which this waits for (up to `limit`).
    pub fn start<F, Fut>(id: u64, dir: &Path, limit: Duration, run: F) -> Self
    where
        F: FnOnce(Receiver<C>, Sender<String>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        spate::io::probe::write_probe_file(dir).unwrap();
        let (commands, inbox) = channel();
        let (addr_tx, addr_rx) = channel();
        let thread = spawn_executor(move || run(inbox, addr_tx));
        let addr = addr_rx.recv_timeout(limit).unwrap();
        Self {
            id,
            addr,
            commands,
            thread,
            limit,
        }
    }

    /// Sends a command and waits for its answer.
    pub fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> C) -> T {
        self.ask_within(command, self.limit)
    }

    /// Sends a command and waits up to `limit` for its answer.
    pub fn ask_within<T>(&self, command: impl FnOnce(Sender<T>) -> C, limit: Duration) -> T {
        let (reply, answer) = channel();
        self.commands.send(command(reply)).unwrap();
        answer.recv_timeout(limit).unwrap()
    }

    /// The port of its address.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Ends the node's command loop and with it the executor (Raft, listener, connections, and
    /// files left as a crash leaves them); joins the thread.
    pub fn stop(self) {
        drop(self.commands);
        self.thread.join().unwrap();
    }
}

/// Runs `body` on a fresh executor on its own thread, sized as a shard's Raft runtime.
pub fn spawn_executor<F, Fut>(body: F) -> JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    std::thread::spawn(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(RUNTIME_IO_MEMORY_BYTES)
            .ring_depth(RUNTIME_RING_DEPTH)
            .preempt_timer(RUNTIME_PREEMPT)
            .make()
            .unwrap()
            .run(body());
    })
}

/// The node's next command, polled on the std channel without blocking the executor; `None`
/// once the test dropped the node.
pub async fn next_command<C>(inbox: &Receiver<C>) -> Option<C> {
    loop {
        match inbox.try_recv() {
            Ok(command) => return Some(command),
            Err(TryRecvError::Empty) => glommio::timer::sleep(Duration::from_millis(5)).await,
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}

/// Waits up to `limit` until every node in `nodes` names the same leader, one of `nodes`
/// (`leader` is the command asking a node for the leader it knows); returns it.
pub fn agreed_leader<C: Send + 'static>(
    nodes: &[&RaftNode<C>],
    leader: fn(Sender<Option<u64>>) -> C,
    limit: Duration,
) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|node| node.ask(leader)).collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|seen| *seen == Some(*leader))
            && nodes.iter().any(|node| node.id == *leader)
        {
            return *leader;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {limit:?}: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
