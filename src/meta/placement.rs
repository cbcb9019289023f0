//! Partition placement: each new partition goes to the shard owning the fewest partitions.
//!
//! Least-loaded rather than hashed, because with few partitions a hash leaves cores idle. The
//! choice is recorded in the metadata log, so a partition never moves when the broker restarts
//! with the same core count.

use super::ShardId;

/// Owners for `count` new partitions, given how many partitions each shard owns now. Ties go to
/// the lowest shard, starting the scan at `start` so partition 0 of successive topics spreads.
pub fn place_partitions(current_per_shard: &[usize], count: usize, start: usize) -> Vec<ShardId> {
    assert!(!current_per_shard.is_empty(), "at least one shard");
    let shard_count = current_per_shard.len();
    let mut load = current_per_shard.to_vec();
    (0..count)
        .map(|_| {
            let chosen = (0..shard_count)
                .map(|i| (start + i) % shard_count)
                .min_by_key(|&shard| load[shard])
                .expect("shard_count > 0");
            load[chosen] += 1;
            ShardId(chosen as u16)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_fills_the_least_loaded_shards() {
        // Proves partitions spread evenly and fill the emptier shards first.
        let owners = place_partitions(&[0, 0], 8, 0);
        assert_eq!(owners.iter().filter(|s| s.0 == 0).count(), 4);
        let owners = place_partitions(&[3, 0, 1], 3, 0);
        assert_eq!(owners, vec![ShardId(1), ShardId(1), ShardId(2)]);
        let owners = place_partitions(&[0, 0], 1, 1);
        assert_eq!(owners, vec![ShardId(1)]);
    }
}
