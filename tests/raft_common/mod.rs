//! What the Raft tests share: a type config, a minimal in-memory state machine (the
//! controller's real one is not designed yet) and per-test directories on ext4.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use spate::raft::GlommioRuntime;

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
