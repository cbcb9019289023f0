//! The controller quorum's member on shard 0 of a voter: the openraft node over the controller
//! log, and, while it leads, the service brokers talk to (registrations, heartbeats with
//! metadata fetches, topic changes) plus the fencing of brokers whose heartbeats stopped.
//!
//! Every decision is taken by the leader one at a time (a semaphore), against its state
//! machine after a linearizable read (so a new leader first applies everything its
//! predecessor committed), and is committed through Raft before it is answered.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use openraft::raft::ReadPolicy;
use openraft::{BasicNode, Config, Raft};
use openraft_rt::WatchReceiver as _;

use crate::config::{BrokerConfig, QuorumVoter};
use crate::io::deadline::within;
use crate::meta::controller::{AdminRequest, TopicError};
use crate::meta::{BrokerInfo, ClusterState, MetadataChange};
use crate::raft::log_store::RaftLogStore;
use crate::raft::network::{RaftNetwork, RaftSideService, serve_raft_with};

use super::ControllerRaft;
use super::controller_rpc::{ControllerRequest, ControllerResponse};
use super::state_machine::{CatchUp, ControllerStore};

/// The controller's Raft directory, under the metadata directory.
pub const RAFT_DIR_NAME: &str = "raft";

/// Largest write of the controller log before an fdatasync.
const RAFT_WRITE_BYTES_MAX: u64 = 1024 * 1024;

/// Raft timing: heartbeats well inside the election timeout (Kafka's KRaft uses 1 s), which
/// is long enough that a busy 2-core machine does not depose healthy leaders. openraft's
/// leader lease is the election timeout's maximum, so a dead leader is replaced within about
/// twice that.
const RAFT_HEARTBEAT_MS: u64 = 100;
const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 500;
const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 1000;

/// The controller's openraft node.
pub type ControllerNode = Raft<ControllerRaft, ControllerStore>;

/// The controller on one voter.
pub struct ControllerService {
    raft: ControllerNode,
    store: ControllerStore,
    id: u32,
    config: Rc<BrokerConfig>,
    /// One decision at a time.
    lock: Semaphore,
    /// When each broker last fetched, as this leader saw it.
    heartbeats: RefCell<HashMap<u32, Instant>>,
    /// The term this node leads in and since when it knows: a new term starts every broker's
    /// session afresh.
    leading_term: Cell<Option<(u64, Instant)>>,
}

/// Starts the controller node of voter `id` on this shard: opens its log and state machine in
/// `DATA_DIR/__meta/raft`, forms the quorum with the other voters on a first start, and serves
/// Raft and the controller service on `listener`.
pub async fn start_controller(
    config: Rc<BrokerConfig>,
    id: u32,
    listener: StdTcpListener,
) -> Result<Rc<ControllerService>, String> {
    let dir: PathBuf = config
        .data_dir
        .join(crate::meta::metadata_log::META_DIR_NAME)
        .join(RAFT_DIR_NAME);
    // Absolute: glommio 0.9 fails to open a relative directory for its sync (EBADF), which
    // would poison the log store at its first vote.
    let (dir, snapshot) = {
        let dir = dir.clone();
        glommio::executor()
            .spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                let dir = std::fs::canonicalize(&dir)?;
                let snapshot = ControllerStore::read_snapshot(&dir)?;
                Ok::<_, io::Error>((dir, snapshot))
            })
            .await
    }
    .map_err(|error| format!("controller directory {}: {error}", dir.display()))?;
    let store = ControllerStore::new(&dir, snapshot)
        .map_err(|error| format!("controller snapshot: {error}"))?;
    let log_store = RaftLogStore::<ControllerRaft>::open(&dir, RAFT_WRITE_BYTES_MAX)
        .await
        .map_err(|error| format!("controller log: {error}"))?;
    let raft_config = Config {
        cluster_name: "spate-controller".into(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        ..Config::default()
    }
    .validate()
    .map_err(|error| format!("controller Raft config: {error}"))?;
    let voters = &config.controller_quorum_voters;
    let addresses: BTreeMap<u64, String> = voters
        .iter()
        .map(|voter| (u64::from(voter.id), voter.address()))
        .collect();
    let raft = Raft::new(
        u64::from(id),
        Arc::new(raft_config),
        RaftNetwork::<ControllerRaft>::with_addresses(u64::from(id), addresses)
            .dialling_from(config.source_address()),
        log_store,
        store.clone(),
    )
    .await
    .map_err(|error| format!("controller Raft: {error}"))?;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|error| format!("controller Raft: {error}"))?;
    if !initialized {
        // Every voter initializes with the same membership (no addresses: each broker dials
        // the voters at its own list's addresses), so the first entries agree.
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|voter: &QuorumVoter| (u64::from(voter.id), BasicNode::default()))
            .collect();
        if let Err(error) = raft.initialize(members).await {
            tracing::debug!(%error, "controller quorum already initialized");
        }
    }
    let service = Rc::new(ControllerService {
        raft: raft.clone(),
        store,
        id,
        config,
        lock: Semaphore::new(1),
        heartbeats: RefCell::new(HashMap::new()),
        leading_term: Cell::new(None),
    });
    #[allow(unsafe_code)]
    // SAFETY: the descriptor comes from a listening socket this thread now owns alone
    // (`into_raw_fd` gave up the std listener), so the glommio listener is its only owner.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let side: Rc<dyn RaftSideService> = service.clone();
    glommio::spawn_local(serve_raft_with(listener, raft, Some(side))).detach();
    glommio::spawn_local(fence_silent_brokers(Rc::clone(&service))).detach();
    tracing::info!(voter = id, "controller started");
    Ok(service)
}

impl ControllerService {
    /// Stops the Raft node (its tasks end; the log stays as written).
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "controller Raft did not shut down cleanly");
        }
    }

    async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        if let Err(forward) = self.raft.as_leader() {
            return ControllerResponse::NotLeader {
                leader: forward.leader_id.map(|id| id as u32),
            };
        }
        match request {
            ControllerRequest::Register(broker) => self.register(broker).await,
            ControllerRequest::Fetch {
                broker,
                epoch,
                applied,
                wait_ms,
            } => self.fetch(broker, epoch, applied, wait_ms).await,
            ControllerRequest::Admin(request) => self.admin(request).await,
        }
    }

    fn not_leader(&self) -> ControllerResponse {
        ControllerResponse::NotLeader {
            leader: self
                .raft
                .metrics()
                .borrow_watched()
                .current_leader
                .map(|id| id as u32),
        }
    }

    async fn linearize(&self) -> Result<(), TopicError> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(|error| TopicError::ControllerUnavailable(error.to_string()))
    }

    async fn commit(&self, change: MetadataChange) -> Result<(), TopicError> {
        self.raft
            .client_write(change)
            .await
            .map(|_| ())
            .map_err(|error| TopicError::ControllerUnavailable(error.to_string()))
    }

    async fn register(&self, broker: BrokerInfo) -> ControllerResponse {
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return self.not_leader();
        };
        let registered = async {
            self.linearize().await?;
            if self.store.with_state(|state| state.cluster_id().is_none()) {
                let cluster_id = new_cluster_id();
                self.commit(MetadataChange::ClusterCreated { cluster_id })
                    .await?;
            }
            let epoch = self
                .store
                .with_state(|state| state.broker(broker.id).map_or(0, |known| known.epoch))
                + 1;
            let id = broker.id;
            self.commit(MetadataChange::BrokerRegistered(BrokerInfo {
                epoch,
                fenced: false,
                ..broker
            }))
            .await?;
            self.heartbeats.borrow_mut().insert(id, Instant::now());
            tracing::info!(broker = id, epoch, "broker registered");
            let cluster_id = self
                .store
                .with_state(|state| state.cluster_id().map(str::to_owned))
                .unwrap_or_default();
            Ok::<_, TopicError>(ControllerResponse::Registered { cluster_id, epoch })
        };
        registered.await.unwrap_or_else(|_| self.not_leader())
    }

    fn is_current(&self, broker: u32, epoch: u64) -> bool {
        self.store.with_state(|state| {
            state
                .broker(broker)
                .is_some_and(|known| known.epoch == epoch && !known.fenced)
        })
    }

    async fn fetch(
        &self,
        broker: u32,
        epoch: u64,
        applied: u64,
        wait_ms: u64,
    ) -> ControllerResponse {
        // A new leader may not have applied the broker's registration yet: catch up first.
        if !self.is_current(broker, epoch)
            && (self.linearize().await.is_err() || !self.is_current(broker, epoch))
        {
            return ControllerResponse::Reregister;
        }
        self.heartbeats.borrow_mut().insert(broker, Instant::now());
        if self.store.applied_index() <= applied {
            let mut applied_watch = self.store.watch_applied();
            let wait =
                Duration::from_millis(wait_ms.min(self.config.broker_session_timeout_ms / 2));
            let _ = within(wait, applied_watch.changed()).await;
        }
        let leader = self.id;
        let now_applied = self.store.applied_index();
        match self.store.catch_up(applied) {
            CatchUp::Changes(changes) => ControllerResponse::Changes {
                leader,
                applied: now_applied,
                changes,
            },
            CatchUp::State(state) => ControllerResponse::State {
                leader,
                applied: now_applied,
                state,
            },
        }
    }

    async fn admin(&self, request: AdminRequest) -> ControllerResponse {
        let count = request.len();
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return self.not_leader();
        };
        if let Err(error) = self.linearize().await {
            tracing::debug!(%error, "controller lost the lead before a topic change");
            return self.not_leader();
        }
        let config = &self.config;
        if let AdminRequest::ReportIsr(_) = &request {
            return self.report_isr(&request).await;
        }
        let mut results = Vec::with_capacity(count);
        for index in 0..count {
            let planned = self.store.with_state(|state| {
                let view = self.placement_view(state);
                request.plan(
                    index,
                    view.as_ref().unwrap_or(state),
                    &config.topic_defaults,
                    config.default_partitions,
                )
            });
            results.push(match planned {
                Ok(_) if request.validate_only() => Ok(()),
                Ok(change) => self.commit(change).await,
                Err(error) => Err(error),
            });
        }
        ControllerResponse::Admin {
            results,
            applied: self.store.applied_index(),
        }
    }
}

impl ControllerService {
    /// Leaders' in-sync replica reports: each names its own partition, so all are planned
    /// against the same state and committed at once, sharing the controller log's appends and
    /// fdatasyncs (a broker's death changes a thousand partitions' ISRs; one commit after the
    /// other cost every broker a millisecond of CPU and more per report).
    async fn report_isr(&self, request: &AdminRequest) -> ControllerResponse {
        let writes: Vec<_> = (0..request.len())
            .map(|index| {
                let planned = self.store.with_state(|state| {
                    request.plan(
                        index,
                        state,
                        &self.config.topic_defaults,
                        self.config.default_partitions,
                    )
                });
                let raft = self.raft.clone();
                glommio::spawn_local(async move {
                    raft.client_write(planned?)
                        .await
                        .map(|_| ())
                        .map_err(|error| TopicError::ControllerUnavailable(error.to_string()))
                })
            })
            .collect();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(write.await);
        }
        ControllerResponse::Admin {
            results,
            applied: self.store.applied_index(),
        }
    }

    /// The metadata to place new partitions against, when it differs from `state`: brokers
    /// this leader has not heard from within two heartbeat intervals count as fenced. A broker
    /// that died is fenced only once its session times out, and a new leader first gives every
    /// broker a whole session; new partitions should not land on it meanwhile. `None` when
    /// every unfenced broker was heard, or when none was (just after an election).
    fn placement_view(&self, state: &ClusterState) -> Option<ClusterState> {
        let recent = Duration::from_millis(2 * self.config.broker_heartbeat_interval_ms);
        let heartbeats = self.heartbeats.borrow();
        let heard = |id: u32| heartbeats.get(&id).is_some_and(|at| at.elapsed() <= recent);
        let (silent, live): (Vec<&BrokerInfo>, Vec<&BrokerInfo>) = state
            .brokers()
            .filter(|broker| !broker.fenced)
            .partition(|broker| !heard(broker.id));
        if silent.is_empty() || live.is_empty() {
            return None;
        }
        let mut view = state.clone();
        for broker in silent {
            view.apply(&MetadataChange::BrokerFenced {
                broker: broker.id,
                epoch: broker.epoch,
            });
        }
        Some(view)
    }
}

impl RaftSideService for ControllerService {
    fn answer(&self, body: Vec<u8>) -> Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + '_>> {
        Box::pin(async move {
            let request: ControllerRequest = serde_json::from_slice(&body)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            let response = self.handle(request).await;
            serde_json::to_vec(&response).map_err(io::Error::other)
        })
    }
}

/// A fresh cluster id: 128 random bits in hex.
fn new_cluster_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// While this node leads: fences each broker whose fetches stopped for
/// `broker.session.timeout.ms`. A new term gives every broker a full session first, since the
/// previous leader's view of the heartbeats is gone.
async fn fence_silent_brokers(service: Rc<ControllerService>) {
    let timeout = Duration::from_millis(service.config.broker_session_timeout_ms);
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        glommio::timer::sleep(tick).await;
        if service.raft.as_leader().is_err() {
            service.leading_term.set(None);
            continue;
        }
        let term = service.raft.metrics().borrow_watched().current_term;
        let now = Instant::now();
        let since = match service.leading_term.get() {
            Some((leading, since)) if leading == term => since,
            _ => {
                service.leading_term.set(Some((term, now)));
                service.heartbeats.borrow_mut().clear();
                now
            }
        };
        let silent: Vec<(u32, u64)> = {
            let heartbeats = service.heartbeats.borrow();
            service.store.with_state(|state| {
                state
                    .brokers()
                    .filter(|broker| !broker.fenced)
                    .filter(|broker| {
                        let last = heartbeats.get(&broker.id).copied().unwrap_or(since);
                        now.duration_since(last) > timeout
                    })
                    .map(|broker| (broker.id, broker.epoch))
                    .collect()
            })
        };
        for (broker, epoch) in silent {
            let Ok(_permit) = service.lock.acquire_permit(1).await else {
                return;
            };
            if !service.is_current(broker, epoch) {
                continue;
            }
            tracing::warn!(
                broker,
                epoch,
                timeout_ms = timeout.as_millis() as u64,
                "broker stopped heartbeating; fencing it"
            );
            if let Err(error) = service
                .commit(MetadataChange::BrokerFenced { broker, epoch })
                .await
            {
                tracing::warn!(broker, %error, "fencing a broker failed");
            }
        }
    }
}
