//! Heartbeats and elections of a shard's replicas, coalesced per peer shard (docs/architecture.md
//! §8).
//!
//! Partition groups run with openraft's own heartbeats and election timers off: a heartbeat per
//! group ten times a second cost a quarter of a core for 100 idle partitions. Instead, every
//! [`HEARTBEAT_INTERVAL`] this task sends each peer shard one message naming every group this
//! shard leads that has a replica there, and checks the groups it follows. A follower whose
//! group was not named for [`LEADER_QUIET`] campaigns, with a pre-vote so that a leader that is
//! alive (the other followers still hear it) is left in place. Its campaign waits
//! [`CAMPAIGN_STAGGER`] more per replica ahead of it in the partition's replica order (the old
//! leader not counted), so the next preferred replica usually wins at its first try rather than
//! splitting the vote with another.
//!
//! Every `--leader-imbalance-check-interval-seconds` it also hands the leadership of each group
//! it leads in place of the preferred replica (the first of the partition's replicas) back to
//! that replica, once it holds the whole log and its shard answers heartbeats: Kafka's automatic
//! preferred leader election, so leaders spread as placement meant once a failed broker returns.

use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft_rt::WatchReceiver as _;
use rand::RngExt as _;

use crate::raft::partition_network::{Heartbeat, LEADER_QUIET};

use super::Shard;
use super::replicas::Replica;

/// How often a shard tells its peer shards which groups it leads.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// How long a heartbeat waits for its answer before the next interval may send another.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// The wait added per replica ahead of this one in the replica order before it campaigns.
const CAMPAIGN_STAGGER: Duration = Duration::from_millis(200);
/// How long the replicas of a new group wait between campaigns (their peers may not have opened
/// the group yet), before the stagger.
const FIRST_CAMPAIGN_WAIT: Duration = Duration::from_millis(100);
/// How long a leader waits for the preferred replica to take over before it stops naming the
/// group in its heartbeats (so the followers elect one).
const HAND_BACK_WAIT: Duration = Duration::from_secs(1);
/// A preferred replica gets its leadership back only if its shard answered a heartbeat this
/// recently.
const PREFERRED_ANSWERED_WITHIN: Duration = Duration::from_millis(500);
/// Most of the random delay added to each replica's campaigns.
const CAMPAIGN_JITTER_MAX: Duration = Duration::from_millis(100);

/// A replica's random campaign delay, fixed when it opens.
pub fn campaign_jitter() -> Duration {
    let millis = rand::rng().random_range(0..CAMPAIGN_JITTER_MAX.as_millis() as u64);
    Duration::from_millis(millis)
}

/// Runs until the shard is gone: heartbeats out, campaigns where a leader went quiet.
pub async fn run(shard: Weak<Shard>) {
    let mut rebalanced_at = Instant::now();
    // Replicas opened at start-up heard nothing while the shard was not yet serving: their quiet
    // time starts now, or a restarted broker would campaign against leaders that are alive.
    if let Some(shard) = shard.upgrade() {
        let now = Instant::now();
        for replica in shard.all_replicas() {
            replica.campaigned_at.set(now);
        }
    }
    loop {
        glommio::timer::sleep(HEARTBEAT_INTERVAL).await;
        let Some(shard) = shard.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut heartbeats: HashMap<String, Heartbeat> = HashMap::new();
        for replica in shard.all_replicas() {
            let (state, term, leader) = {
                let metrics = replica.raft().metrics();
                let metrics = metrics.borrow_watched();
                (metrics.state, metrics.current_term, metrics.current_leader)
            };
            if state != ServerState::Leader {
                replica.handing_back.set(None);
            }
            match state {
                // A leader whose hand-over did not complete stops naming the group, so the
                // followers elect (the preferred replica first): openraft takes no more writes
                // from a leader once a transfer began, whether or not it completes.
                ServerState::Leader
                    if replica
                        .handing_back
                        .get()
                        .is_some_and(|at| at.elapsed() >= HAND_BACK_WAIT) => {}
                ServerState::Leader => {
                    for (_, addr) in replica.peer_addresses() {
                        heartbeats
                            .entry(addr)
                            .or_default()
                            .led
                            .push((replica.key, term));
                    }
                }
                ServerState::Follower | ServerState::Candidate => {
                    if campaign_due(&shard, &replica, term, leader, now) {
                        replica.campaigned_at.set(now);
                        let raft = replica.raft().clone();
                        glommio::spawn_local(async move {
                            let _ = raft.trigger().elect(true).await;
                        })
                        .detach();
                    }
                }
                ServerState::Learner | ServerState::Shutdown => {}
            }
        }
        let interval = Duration::from_secs(shard.config.leader_imbalance_check_interval_seconds);
        if shard.config.auto_leader_rebalance_enable && rebalanced_at.elapsed() >= interval {
            rebalanced_at = now;
            for replica in shard.all_replicas() {
                hand_back_leadership(&shard, &replica);
            }
        }
        for (addr, heartbeat) in heartbeats {
            let links = Rc::clone(&shard.peer_links);
            glommio::spawn_local(async move {
                links.heartbeat(&addr, &heartbeat, HEARTBEAT_TIMEOUT).await;
            })
            .detach();
        }
    }
}

/// Transfers the leadership of `replica`'s group to the partition's preferred replica when this
/// replica leads in its place and the preferred one holds the whole log and answers.
fn hand_back_leadership(shard: &Shard, replica: &Replica) {
    let Some(&preferred) = replica.members().first() else {
        return;
    };
    if preferred == replica.member() || !replica.is_leader() || replica.handing_back.get().is_some()
    {
        return;
    }
    let caught_up = replica.follower_holds_whole_log(preferred);
    let answering = replica.peer_addresses().iter().any(|(member, addr)| {
        *member == preferred
            && shard
                .peer_links
                .answered_within(addr, PREFERRED_ANSWERED_WITHIN)
    });
    if !(caught_up && answering) {
        return;
    }
    tracing::info!(topic = %replica.topic, partition = replica.partition, to = preferred, "handing leadership back to the preferred replica");
    replica.handing_back.set(Some(Instant::now()));
    let raft = replica.raft().clone();
    glommio::spawn_local(async move {
        let _ = raft.trigger().transfer_leader(preferred).await;
    })
    .detach();
}

/// Whether `replica` (not leading, in `term`, following `leader` if known) should campaign now:
/// its group's leader was not heard of, nor did it campaign itself, for as long as its place
/// in the replica order asks.
fn campaign_due(
    shard: &Shard,
    replica: &Replica,
    term: u64,
    leader: Option<u64>,
    now: Instant,
) -> bool {
    let mut quiet_since = replica.campaigned_at.get();
    if let Some(heard) = shard.partition_groups.heard(&replica.key) {
        quiet_since = quiet_since.max(heard.at);
    }
    let ahead = replica
        .members()
        .iter()
        .filter(|member| Some(**member) != leader)
        .position(|member| *member == replica.member())
        .unwrap_or(0) as u32;
    // A group that never had a leader (term 0) has no leader to wait for.
    let base = if term == 0 {
        FIRST_CAMPAIGN_WAIT
    } else {
        LEADER_QUIET
    };
    now.saturating_duration_since(quiet_since) >= base + CAMPAIGN_STAGGER * ahead + replica.jitter
}
