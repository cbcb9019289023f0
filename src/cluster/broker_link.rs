//! A cluster broker's link to the controller quorum, on its shard 0: registers the broker,
//! heartbeats, fetches the committed metadata changes and applies them on every shard, and
//! forwards clients' topic changes to the controller leader.
//!
//! A fetch is the heartbeat: the leader holds it until a change is committed or up to
//! `broker.heartbeat.interval.ms`, so changes reach every broker within one round trip of
//! their commit and an idle cluster exchanges one small request per broker per interval.
//! Changes are written to the broker's local copy (src/cluster/local_state.rs) before they are
//! applied, so a crash between the two replays them at the next start.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{QuorumVoter, TopicDefaults};
use crate::io::deadline::within;
use crate::meta::controller::{AdminRequest, TopicError, topic_config};
use crate::meta::identity::{self, IdentityError};
use crate::meta::{BrokerInfo, ClusterState, MetadataChange};
use crate::raft::{WatchReceiver, WatchSender, watch_channel};
use crate::shard::Shard;
use crate::shard::control::apply_everywhere;

use super::controller_rpc::{ControllerClient, ControllerRequest, ControllerResponse};
use super::local_state::{self, LocalState};

/// How long a registration or admin call waits for the controller's answer.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// The share of the broker session timeout a fetch may wait beyond the interval the leader holds
/// it: a leader that stopped answering (frozen, or cut off) is given up within a third of the
/// session, and the broker still has two thirds of the full session a new leader grants to find
/// that leader. With `CALL_LIMIT` instead (5.5 s against a 3 s session), a frozen leader's
/// successor fenced every broker, healthy ones included, before their links found it.
const FETCH_SESSION_SHARE_DIVISOR: u32 = 3;

/// How long a forwarded topic change may take, leader changes included.
const ADMIN_LIMIT: Duration = Duration::from_secs(15);

/// Pause before trying the next voter after a failure, so a quorum without a leader is not
/// hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How often a call in flight checks whether the link learned of another leader meanwhile.
const LEADER_MOVE_POLL: Duration = Duration::from_millis(50);

/// Shard 0's link to the controller.
pub struct BrokerLink {
    voters: Vec<QuorumVoter>,
    /// The local address connections to the voters leave from.
    source: Option<IpAddr>,
    /// The broker as it registers.
    info: BrokerInfo,
    defaults: TopicDefaults,
    heartbeat_interval: Duration,
    /// How long one fetch may take before the link gives up on that voter.
    fetch_limit: Duration,
    /// The voter believed to lead, by index in `voters`.
    leader: Cell<Option<usize>>,
    /// The voter to try next when no leader is known.
    next_voter: Cell<usize>,
    /// Set when the leader stopped answering, until one answers again.
    leader_lost: Cell<bool>,
    /// The metadata as applied here, and its controller log index.
    state: RefCell<ClusterState>,
    applied: WatchSender<u64>,
    _applied_receiver: WatchReceiver<u64>,
    /// The admin connection, taken out while in use.
    admin_client: Cell<Option<(usize, ControllerClient)>>,
}

impl BrokerLink {
    /// The link of broker `info.id`, starting from what it applied before (`local`).
    pub fn new(
        voters: Vec<QuorumVoter>,
        info: BrokerInfo,
        defaults: TopicDefaults,
        heartbeat_interval: Duration,
        session_timeout: Duration,
        local: LocalState,
        source: Option<IpAddr>,
    ) -> Self {
        let (applied, applied_receiver) = watch_channel(local.applied);
        Self {
            voters,
            source,
            info,
            defaults,
            heartbeat_interval,
            fetch_limit: heartbeat_interval
                + CALL_LIMIT.min(session_timeout / FETCH_SESSION_SHARE_DIVISOR),
            leader: Cell::new(None),
            next_voter: Cell::new(0),
            leader_lost: Cell::new(false),
            state: RefCell::new(local.state),
            applied,
            _applied_receiver: applied_receiver,
            admin_client: Cell::new(None),
        }
    }

    fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Sends `request` to the leader (or the next voter when none is known); `None` after a
    /// failure or a redirect, having noted the leader to try next.
    async fn call(
        &self,
        client: &mut Option<(usize, ControllerClient)>,
        request: &ControllerRequest,
        limit: Duration,
    ) -> Option<ControllerResponse> {
        let target = self.leader.get().unwrap_or_else(|| {
            let next = self.next_voter.get() % self.voters.len();
            self.next_voter.set(next + 1);
            next
        });
        if client.as_ref().is_none_or(|(index, _)| *index != target) {
            *client = Some((
                target,
                ControllerClient::new(self.voters[target].address(), self.source),
            ));
        }
        let (_, connection) = client.as_mut().expect("set above");
        // A call to a frozen leader would wait out its whole limit (an admin call's is 15 s)
        // although the fetch loop finds the new leader within seconds: once it has, the call
        // goes there. Dropping the request here is as safe as its timing out.
        let answered = futures_lite::future::or(
            async { Some(connection.call(request, limit).await) },
            async {
                self.leader_moved_from(target).await;
                None
            },
        )
        .await;
        let Some(answered) = answered else {
            tracing::debug!(
                voter = self.voters[target].id,
                "controller leader moved during a call; sending it to the new one"
            );
            *client = None;
            return None;
        };
        match answered {
            Ok(ControllerResponse::NotLeader { leader }) => {
                let known = leader.and_then(|id| self.voters.iter().position(|v| v.id == id));
                self.leader.set(known.filter(|index| *index != target));
                glommio::timer::sleep(RETRY_PAUSE).await;
                None
            }
            Ok(response) => {
                self.leader.set(Some(target));
                Some(response)
            }
            Err(error) => {
                tracing::debug!(voter = self.voters[target].id, %error, "controller unreachable");
                if self.leader.get() == Some(target) {
                    self.leader_lost.set(true);
                }
                self.leader.set(None);
                // Try the other voters first: the one that failed may be frozen, and a second
                // wait on it could outlast this broker's session at a new leader.
                self.next_voter.set(target + 1);
                *client = None;
                glommio::timer::sleep(RETRY_PAUSE).await;
                None
            }
        }
    }

    /// Resolves once the link knows of a leader other than voter `target`.
    async fn leader_moved_from(&self, target: usize) {
        loop {
            glommio::timer::sleep(LEADER_MOVE_POLL).await;
            if self.leader.get().is_some_and(|leader| leader != target) {
                return;
            }
        }
    }

    /// Forwards a topic change to the controller leader; answers once this broker applied it,
    /// so the client's next request here sees it. One result per item.
    pub async fn admin(&self, request: AdminRequest) -> Vec<Result<(), TopicError>> {
        let count = request.len();
        let deadline = Instant::now() + ADMIN_LIMIT;
        let request = ControllerRequest::Admin(request);
        let mut client = self.admin_client.take();
        let answer = loop {
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            let limit = (deadline - now).min(ADMIN_LIMIT);
            if let Some(ControllerResponse::Admin { results, applied }) =
                self.call(&mut client, &request, limit).await
                && results.len() == count
            {
                break Some((results, applied));
            }
        };
        self.admin_client.set(client);
        let Some((results, applied)) = answer else {
            return (0..count)
                .map(|_| {
                    Err(TopicError::ControllerUnavailable(
                        "no controller leader answered in time".into(),
                    ))
                })
                .collect();
        };
        let mut applied_watch = self.applied.subscribe();
        while self.applied() < applied {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || within(left, applied_watch.changed()).await.is_none() {
                break;
            }
        }
        results
    }

    /// A topic change with the configuration this broker derives from its own defaults and
    /// the topic's overrides (as a single broker does at start).
    fn localized(&self, change: MetadataChange) -> MetadataChange {
        match change {
            MetadataChange::TopicCreated(mut topic) => {
                if let Ok(config) = topic_config(&self.defaults, &topic.overrides) {
                    topic.config = config;
                }
                MetadataChange::TopicCreated(topic)
            }
            MetadataChange::ConfigChanged {
                name,
                config,
                overrides,
            } => MetadataChange::ConfigChanged {
                config: topic_config(&self.defaults, &overrides).unwrap_or(config),
                name,
                overrides,
            },
            other => other,
        }
    }

    /// Applies changes fetched from the controller: durable here first, then on every shard.
    /// `fresh` is false for changes derived from a whole state, whose partition directories
    /// may hold this broker's data from before.
    async fn apply(
        &self,
        shard: &Rc<Shard>,
        changes: Vec<MetadataChange>,
        applied: u64,
        fresh: bool,
    ) {
        let applied = applied.max(self.applied());
        if changes.is_empty() {
            // Entries without changes (a new leader's blank entry) advance the index only;
            // the file keeps the last index with a change, which replays the same at start.
            if applied > self.applied() {
                let _ = self.applied.send(applied);
            }
            return;
        }
        let changes: Vec<MetadataChange> = changes
            .into_iter()
            .map(|change| self.localized(change))
            .collect();
        let mut next = self.state.borrow().clone();
        for change in &changes {
            next.apply(change);
        }
        let local = LocalState {
            applied,
            state: next.clone(),
        };
        if let Err(error) = local_state::store(&shard.config.data_dir, &local).await {
            tracing::error!(%error, "cannot record the cluster metadata; will fetch it again");
            glommio::timer::sleep(RETRY_PAUSE).await;
            return;
        }
        for change in &changes {
            if let Err(error) = apply_everywhere(shard, change, fresh).await {
                tracing::error!(%error, ?change, "applying a metadata change failed");
            }
        }
        *self.state.borrow_mut() = next;
        let _ = self.applied.send(applied);
    }

    fn note_leader(&self, shard: &Rc<Shard>, leader: u32) {
        self.leader_lost.set(false);
        if shard.controller_leader.get() != Some(leader) {
            tracing::info!(leader, "controller leader");
            crate::shard::control::announce_controller_leader(shard, Some(leader));
        }
    }

    /// Forgets the leader once it stopped answering, so Metadata stops naming it.
    fn note_leader_lost(&self, shard: &Rc<Shard>) {
        if self.leader_lost.get() && shard.controller_leader.get().is_some() {
            tracing::info!("controller leader lost");
            crate::shard::control::announce_controller_leader(shard, None);
        }
    }
}

/// Runs the link until the shard stops: register, then fetch and apply, registering again
/// whenever the controller asks.
pub async fn run(shard: Rc<Shard>, link: Rc<BrokerLink>) {
    let mut client = None;
    loop {
        let epoch = register(&shard, &link, &mut client).await;
        loop {
            let request = ControllerRequest::Fetch {
                broker: link.info.id,
                epoch,
                applied: link.applied(),
                wait_ms: link.heartbeat_interval.as_millis() as u64,
            };
            match link.call(&mut client, &request, link.fetch_limit).await {
                Some(ControllerResponse::Changes {
                    leader,
                    applied,
                    changes,
                }) => {
                    link.note_leader(&shard, leader);
                    let changes = changes.into_iter().map(|(_, change)| change).collect();
                    link.apply(&shard, changes, applied, true).await;
                }
                Some(ControllerResponse::State {
                    leader,
                    applied,
                    state,
                }) => {
                    link.note_leader(&shard, leader);
                    let changes = differences(&link.state.borrow(), &state);
                    tracing::info!(
                        applied,
                        changes = changes.len(),
                        "caught up from the whole controller state"
                    );
                    link.apply(&shard, changes, applied, false).await;
                }
                Some(ControllerResponse::Reregister) => break,
                Some(other) => tracing::warn!(?other, "unexpected controller answer to a fetch"),
                None => link.note_leader_lost(&shard),
            }
        }
    }
}

async fn register(
    shard: &Rc<Shard>,
    link: &BrokerLink,
    client: &mut Option<(usize, ControllerClient)>,
) -> u64 {
    let request = ControllerRequest::Register(link.info.clone());
    loop {
        if let Some(ControllerResponse::Registered { cluster_id, epoch }) =
            link.call(client, &request, CALL_LIMIT).await
        {
            if let Err(error) =
                adopt_cluster_id(&shard.config.data_dir, link.info.id, &cluster_id).await
            {
                tracing::error!(%error, "refusing to join the controller quorum's cluster; stopping");
                std::process::exit(2);
            }
            tracing::info!(broker = link.info.id, epoch, %cluster_id, "registered with the controller");
            return epoch;
        }
    }
}

/// Checks the quorum's cluster id against the data dir's (`meta.properties`) and records it
/// there the first time: a data dir of another cluster must not take part in this one.
async fn adopt_cluster_id(
    data_dir: &std::path::Path,
    node_id: u32,
    cluster_id: &str,
) -> Result<(), IdentityError> {
    let data_dir = data_dir.to_owned();
    let cluster_id = cluster_id.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            let identity = identity::check_or_format(&data_dir, node_id, true)?;
            if identity::check_cluster_id(&identity, &cluster_id)? {
                identity::store_cluster_id(&data_dir, &identity, &cluster_id)?;
            }
            Ok(())
        })
        .await
}

/// The changes that turn `from` into `to` (for a broker catching up from a whole state).
pub fn differences(from: &ClusterState, to: &ClusterState) -> Vec<MetadataChange> {
    let mut changes = Vec::new();
    if let Some(cluster_id) = to.cluster_id()
        && from.cluster_id() != Some(cluster_id)
    {
        changes.push(MetadataChange::ClusterCreated {
            cluster_id: cluster_id.to_owned(),
        });
    }
    for broker in to.brokers() {
        if from.broker(broker.id) != Some(broker) {
            let registered = BrokerInfo {
                fenced: false,
                ..broker.clone()
            };
            changes.push(MetadataChange::BrokerRegistered(registered));
            if broker.fenced {
                changes.push(MetadataChange::BrokerFenced {
                    broker: broker.id,
                    epoch: broker.epoch,
                });
            }
        }
    }
    for topic in from.topics() {
        let same = to
            .topic(&topic.name)
            .is_some_and(|now| now.topic_id == topic.topic_id);
        if !same {
            changes.push(MetadataChange::TopicDeleted {
                name: topic.name.clone(),
            });
        }
    }
    for topic in to.topics() {
        match from.topic(&topic.name) {
            Some(before) if before.topic_id == topic.topic_id => {
                let known = before.partitions.len();
                if topic.partitions.len() > known {
                    changes.push(MetadataChange::PartitionsAdded {
                        name: topic.name.clone(),
                        added: topic.partitions[known..].to_vec(),
                        added_replicas: topic.replicas.get(known..).unwrap_or_default().to_vec(),
                    });
                }
                for (partition, leader) in topic.partitions.iter().enumerate() {
                    let term = topic.leader_term(partition);
                    if term > before.leader_term(partition) {
                        changes.push(MetadataChange::LeaderElected {
                            name: topic.name.clone(),
                            topic_id: topic.topic_id,
                            partition: partition as u32,
                            leader: *leader,
                            term,
                        });
                    }
                    let isr = topic.reported_isr(partition);
                    let changed = term > before.leader_term(partition)
                        || isr != before.reported_isr(partition);
                    if changed && !isr.is_empty() {
                        changes.push(MetadataChange::IsrChanged {
                            name: topic.name.clone(),
                            topic_id: topic.topic_id,
                            partition: partition as u32,
                            term,
                            isr: isr.to_vec(),
                        });
                    }
                }
                if topic.overrides != before.overrides {
                    changes.push(MetadataChange::ConfigChanged {
                        name: topic.name.clone(),
                        config: topic.config.clone(),
                        overrides: topic.overrides.clone(),
                    });
                }
            }
            _ => changes.push(MetadataChange::TopicCreated(topic.clone())),
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::TopicConfig;
    use crate::meta::{Node, TopicMeta};

    fn topic(name: &str, id: u8, partitions: usize) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            topic_id: [id; 16],
            partitions: (0..partitions).map(|p| Node::new(1, p as u16)).collect(),
            replicas: Vec::new(),
            leader_terms: Vec::new(),
            isr: Vec::new(),
            config: TopicConfig::from_defaults(&TopicDefaults::default()),
            overrides: BTreeMap::new(),
        }
    }

    fn broker(id: u32, epoch: u64, fenced: bool) -> BrokerInfo {
        BrokerInfo {
            id,
            rack: None,
            host: "127.0.0.1".into(),
            ports: vec![9092],
            epoch,
            fenced,
        }
    }

    #[test]
    fn differences_turn_one_state_into_the_other() {
        // Proves a broker catching up from a whole state ends with exactly that state: topics
        // created, deleted, re-created under a new id, grown and re-configured, brokers
        // registered and fenced.
        let mut from = ClusterState::default();
        for change in [
            MetadataChange::BrokerRegistered(broker(1, 1, false)),
            MetadataChange::TopicCreated(topic("kept", 1, 2)),
            MetadataChange::TopicCreated(topic("gone", 2, 1)),
            MetadataChange::TopicCreated(topic("reborn", 3, 1)),
        ] {
            from.apply(&change);
        }
        let mut to = from.clone();
        let mut grown = topic("kept", 1, 3);
        grown.overrides.insert("retention.ms".into(), "1000".into());
        for change in [
            MetadataChange::ClusterCreated {
                cluster_id: "c".into(),
            },
            MetadataChange::BrokerRegistered(broker(2, 1, false)),
            MetadataChange::BrokerRegistered(broker(1, 2, false)),
            MetadataChange::BrokerFenced {
                broker: 1,
                epoch: 2,
            },
            MetadataChange::PartitionsAdded {
                name: "kept".into(),
                added: vec![Node::new(1, 2)],
                added_replicas: Vec::new(),
            },
            MetadataChange::ConfigChanged {
                name: "kept".into(),
                config: grown.config.clone(),
                overrides: grown.overrides.clone(),
            },
            MetadataChange::TopicDeleted {
                name: "gone".into(),
            },
            MetadataChange::TopicDeleted {
                name: "reborn".into(),
            },
            MetadataChange::TopicCreated(topic("reborn", 4, 2)),
            MetadataChange::TopicCreated(topic("new", 5, 1)),
        ] {
            to.apply(&change);
        }
        let mut caught_up = from.clone();
        for change in differences(&from, &to) {
            caught_up.apply(&change);
        }
        assert_eq!(caught_up.cluster_id(), to.cluster_id());
        assert_eq!(
            caught_up.brokers().collect::<Vec<_>>(),
            to.brokers().collect::<Vec<_>>()
        );
        assert_eq!(
            caught_up.topics().collect::<Vec<_>>(),
            to.topics().collect::<Vec<_>>()
        );
        assert!(differences(&to, &to).is_empty());
    }
}
