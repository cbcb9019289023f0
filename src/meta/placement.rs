//! Partition placement: each new partition's replicas go to distinct brokers, spread evenly,
//! each on its broker's least-loaded shard.
//!
//! Least-loaded rather than hashed, because with few partitions a hash leaves cores idle. The
//! choice is recorded in the metadata, so a partition never moves when a broker restarts with
//! the same core count. [`place_replicas`] is pure and deterministic, so the controller's
//! choice can be replayed and tested; a single broker is a cluster of one for it.

/// One shard of one broker that may receive partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementNode {
    /// The broker id.
    pub broker: u32,
    /// The shard within that broker.
    pub shard: u16,
    /// The broker's rack (broker.rack); none counts as a rack of its own.
    pub rack: Option<String>,
    /// Partition replicas this shard holds now.
    pub partitions: usize,
}

/// Why replicas cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer live brokers than the replication factor (replicas go on distinct brokers).
    #[error("replication factor {needed} needs {needed} brokers, but {available} are available")]
    NotEnoughBrokers {
        /// The replication factor.
        needed: usize,
        /// Brokers that may receive partitions.
        available: usize,
    },
    /// A partition needs at least one replica.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// A broker's rack for the distinct-racks rule: a broker without one is alone in its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rack<'a> {
    Named(&'a str),
    Own(u32),
}

/// One broker's loads while placing: before this call, now, and within the topic being placed.
struct BrokerLoad<'a> {
    id: u32,
    rack: Rack<'a>,
    /// (shard, replicas held), sorted by shard.
    shards: Vec<(u16, usize)>,
    load_before: usize,
    load: usize,
    topic_leaders: usize,
    topic_replicas: usize,
}

impl BrokerLoad<'_> {
    /// Puts one replica on the least-loaded shard (ties to the lowest) and returns it.
    fn take_shard(&mut self) -> (u32, u16) {
        let slot = (0..self.shards.len())
            .min_by_key(|&i| self.shards[i].1)
            .expect("a broker has at least one shard");
        self.shards[slot].1 += 1;
        self.load += 1;
        self.topic_replicas += 1;
        (self.id, self.shards[slot].0)
    }
}

/// Replicas for `partitions` new partitions of one topic, as (broker, shard), the preferred
/// leader first. Replicas of a partition go on distinct brokers, and on distinct racks when there
/// are at least `replication_factor` racks. Leaders spread evenly over brokers (each round gives
/// every broker one, in rotation from broker index `start`, emptier brokers first), followers go
/// to the brokers holding fewest of this topic's replicas, then the least loaded; within a
/// broker, the least-loaded shard.
pub fn place_replicas(
    nodes: &[PlacementNode],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Result<Vec<Vec<(u32, u16)>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let mut brokers = broker_loads(nodes);
    let count = brokers.len();
    if replication_factor > count {
        return Err(PlacementError::NotEnoughBrokers {
            needed: replication_factor,
            available: count,
        });
    }
    let mut racks: Vec<Rack> = brokers.iter().map(|b| b.rack).collect();
    racks.sort();
    racks.dedup();
    let rack_aware = racks.len() >= replication_factor;
    let first = start % count;
    let placed = (0..partitions).map(|_| {
        let leader = (0..count)
            .min_by_key(|&i| {
                let b = &brokers[i];
                (b.topic_leaders, b.load_before, (i + count - first) % count)
            })
            .expect("at least one broker");
        brokers[leader].topic_leaders += 1;
        let mut chosen = vec![leader];
        while chosen.len() < replication_factor {
            let follower = (0..count)
                .filter(|i| !chosen.contains(i))
                .filter(|&i| {
                    !rack_aware || chosen.iter().all(|&c| brokers[c].rack != brokers[i].rack)
                })
                .min_by_key(|&i| {
                    let b = &brokers[i];
                    (b.topic_replicas, b.load, (i + count - leader) % count)
                })
                .expect("enough brokers, and racks when rack-aware, were checked above");
            chosen.push(follower);
        }
        chosen.iter().map(|&i| brokers[i].take_shard()).collect()
    });
    Ok(placed.collect())
}

/// The nodes grouped by broker, sorted by broker id; a broker's rack is its first node's.
fn broker_loads(nodes: &[PlacementNode]) -> Vec<BrokerLoad<'_>> {
    let mut brokers: Vec<BrokerLoad> = Vec::new();
    for node in nodes {
        let index = match brokers.iter().position(|b| b.id == node.broker) {
            Some(index) => index,
            None => {
                brokers.push(BrokerLoad {
                    id: node.broker,
                    rack: node
                        .rack
                        .as_deref()
                        .map_or(Rack::Own(node.broker), Rack::Named),
                    shards: Vec::new(),
                    load_before: 0,
                    load: 0,
                    topic_leaders: 0,
                    topic_replicas: 0,
                });
                brokers.len() - 1
            }
        };
        let broker = &mut brokers[index];
        broker.shards.push((node.shard, node.partitions));
        broker.load_before += node.partitions;
        broker.load += node.partitions;
    }
    brokers.sort_by_key(|b| b.id);
    for broker in &mut brokers {
        broker.shards.sort_by_key(|&(shard, _)| shard);
    }
    brokers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(brokers: &[(u32, Option<&str>, &[usize])]) -> Vec<PlacementNode> {
        let mut nodes = Vec::new();
        for &(broker, rack, shards) in brokers {
            for (shard, &partitions) in shards.iter().enumerate() {
                nodes.push(PlacementNode {
                    broker,
                    shard: shard as u16,
                    rack: rack.map(str::to_owned),
                    partitions,
                });
            }
        }
        nodes
    }

    fn count(placed: &[Vec<(u32, u16)>], node: (u32, u16)) -> usize {
        placed.iter().flatten().filter(|&&r| r == node).count()
    }

    #[test]
    fn one_replica_spreads_over_brokers_and_their_shards() {
        // Proves 6 partitions on 3 brokers x 2 shards land one per shard, leaders rotating from
        // `start`.
        let cluster = nodes(&[(1, None, &[0, 0]), (2, None, &[0, 0]), (3, None, &[0, 0])]);
        let placed = place_replicas(&cluster, 6, 1, 1).unwrap();
        for node in &cluster {
            assert_eq!(count(&placed, (node.broker, node.shard)), 1, "{placed:?}");
        }
        let leaders: Vec<u32> = placed.iter().map(|r| r[0].0).collect();
        assert_eq!(leaders, vec![2, 3, 1, 2, 3, 1]);
        assert_eq!(placed, place_replicas(&cluster, 6, 1, 1).unwrap());
    }

    #[test]
    fn replicas_go_on_distinct_brokers_and_leaders_rotate() {
        // Proves RF=3 on 3 brokers puts each partition on all three, leaders in rotation, and
        // each broker's replicas split over its shards.
        let cluster = nodes(&[(0, None, &[0, 0]), (1, None, &[0, 0]), (2, None, &[0, 0])]);
        let placed = place_replicas(&cluster, 6, 3, 0).unwrap();
        for replicas in &placed {
            let mut brokers: Vec<u32> = replicas.iter().map(|r| r.0).collect();
            brokers.sort();
            assert_eq!(brokers, vec![0, 1, 2], "{placed:?}");
        }
        let leaders: Vec<u32> = placed.iter().map(|r| r[0].0).collect();
        assert_eq!(leaders, vec![0, 1, 2, 0, 1, 2]);
        for node in &cluster {
            assert_eq!(count(&placed, (node.broker, node.shard)), 3, "{placed:?}");
        }
    }

    #[test]
    fn followers_spread_evenly_with_fewer_replicas_than_brokers() {
        // Proves RF=2 over 3 brokers gives every broker the same share of the topic's replicas.
        let cluster = nodes(&[(0, None, &[0]), (1, None, &[0]), (2, None, &[0])]);
        let placed = place_replicas(&cluster, 3, 2, 0).unwrap();
        assert_eq!(
            placed,
            vec![
                vec![(0, 0), (1, 0)],
                vec![(1, 0), (2, 0)],
                vec![(2, 0), (0, 0)]
            ]
        );
    }

    #[test]
    fn replicas_go_on_distinct_racks_when_there_are_enough() {
        // Proves RF=2 over racks a,a,b,b puts one replica in each rack, brokers without a rack
        // count as racks of their own, and too few racks still places on distinct brokers.
        let cluster = nodes(&[
            (0, Some("a"), &[0]),
            (1, Some("a"), &[0]),
            (2, Some("b"), &[0]),
            (3, Some("b"), &[0]),
        ]);
        let rack = |broker: u32| if broker < 2 { "a" } else { "b" };
        for replicas in place_replicas(&cluster, 8, 2, 0).unwrap() {
            assert_ne!(rack(replicas[0].0), rack(replicas[1].0), "{replicas:?}");
        }
        let mixed = nodes(&[(0, Some("a"), &[0]), (1, Some("a"), &[0]), (2, None, &[0])]);
        for replicas in place_replicas(&mixed, 6, 2, 0).unwrap() {
            assert!(replicas.iter().any(|r| r.0 == 2), "{replicas:?}");
        }
        let placed = place_replicas(&mixed, 3, 3, 0).unwrap();
        assert!(placed.iter().all(|r| r.len() == 3));
    }

    #[test]
    fn an_empty_broker_fills_first() {
        // Proves leaders go to the emptier broker first in each round, followers to the
        // less-loaded broker among those holding as few of the topic's replicas, and within a
        // broker the least-loaded shard is chosen.
        let cluster = nodes(&[(0, None, &[5, 5]), (1, None, &[2, 2]), (2, None, &[0, 3])]);
        assert_eq!(
            place_replicas(&cluster, 1, 1, 0).unwrap(),
            vec![vec![(2, 0)]]
        );
        let placed = place_replicas(&cluster, 3, 1, 0).unwrap();
        let leaders: Vec<u32> = placed.iter().map(|r| r[0].0).collect();
        assert_eq!(leaders, vec![2, 1, 0]);
        assert_eq!(
            place_replicas(&cluster, 1, 2, 0).unwrap(),
            vec![vec![(2, 0), (1, 0)]]
        );
        let placed = place_replicas(&cluster, 4, 1, 0).unwrap();
        assert_eq!(placed[3], vec![(2, 0)], "{placed:?}");
        assert_eq!(count(&placed, (2, 0)), 2, "{placed:?}");
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        // Proves RF above the broker count (shards of one broker do not count) and RF=0 fail.
        let cluster = nodes(&[(0, None, &[0, 0, 0]), (1, None, &[0])]);
        assert_eq!(
            place_replicas(&cluster, 1, 3, 0),
            Err(PlacementError::NotEnoughBrokers {
                needed: 3,
                available: 2
            })
        );
        assert_eq!(
            place_replicas(&[], 1, 1, 0),
            Err(PlacementError::NotEnoughBrokers {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(
            place_replicas(&cluster, 1, 0, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }
}
