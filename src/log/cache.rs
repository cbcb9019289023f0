//! `ShardCache`: the bounded per-shard cache of recently appended batches.
//!
//! Every partition of a shard keeps its newest batches here, in offset order, as `StoredBatch`es
//! (slices of the request frames they arrived in), so a tailing consumer's fetch is answered with
//! those slices (zero-copy) instead of a disk read.
//! Guarantees: total cached bytes never exceed the budget after an insert returns (the oldest
//! batches of the whole shard are evicted first); each partition's cached batches are contiguous
//! (no gaps), so "offset ≥ first cached base offset" means the batch holding it is cached.
//! Callers must: insert a partition's batches in offset order, `clear` it when its log is
//! truncated, and never serve cached batches beyond the high watermark (the cache holds batches
//! from sequencing on, before they are written).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::stored_batch::StoredBatch;

/// Identifies one partition's share of a `ShardCache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u64);

/// One cached batch.
#[derive(Debug, Clone)]
pub struct CachedBatch {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The batch as stored on disk.
    pub batch: StoredBatch,
}

/// The recent batches of every partition of one shard, within a byte budget.
#[derive(Debug)]
pub struct ShardCache {
    budget_bytes: usize,
    used_bytes: Cell<usize>,
    next_key: Cell<u64>,
    partitions: RefCell<HashMap<CacheKey, VecDeque<CachedBatch>>>,
    /// Insertion order across partitions, for evicting the shard's oldest batch first. An entry
    /// whose partition no longer holds that batch (cleared, removed) is skipped.
    order: RefCell<VecDeque<(CacheKey, i64)>>,
}

impl ShardCache {
    /// A cache holding at most `budget_bytes` of batches (`cache_bytes_per_shard`). Share it
    /// between the shard's partitions with `Rc`.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            used_bytes: Cell::new(0),
            next_key: Cell::new(0),
            partitions: RefCell::new(HashMap::new()),
            order: RefCell::new(VecDeque::new()),
        }
    }

    /// Bytes cached now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    /// Registers a partition; its batches are cached under the returned key.
    pub fn register(&self) -> CacheKey {
        let key = CacheKey(self.next_key.get());
        self.next_key.set(key.0 + 1);
        self.partitions.borrow_mut().insert(key, VecDeque::new());
        key
    }

    /// Forgets a partition and its batches.
    pub fn unregister(&self, key: CacheKey) {
        self.clear(key);
        self.partitions.borrow_mut().remove(&key);
        // Partitions come and go rarely; drop their stale order entries so `order` stays bounded
        // by the batches actually cached.
        self.order
            .borrow_mut()
            .retain(|(entry_key, _)| *entry_key != key);
    }

    /// Drops a partition's cached batches (after its log was truncated).
    pub fn clear(&self, key: CacheKey) {
        let mut partitions = self.partitions.borrow_mut();
        if let Some(batches) = partitions.get_mut(&key) {
            let freed: usize = batches.iter().map(|cached| cached.batch.len()).sum();
            self.used_bytes.set(self.used_bytes.get() - freed);
            batches.clear();
        }
    }

    /// Caches a partition's newest batch, evicting the shard's oldest batches beyond the budget.
    /// A batch bigger than the whole budget is not cached.
    pub fn insert(&self, key: CacheKey, batch: CachedBatch) {
        let len_bytes = batch.batch.len();
        if len_bytes > self.budget_bytes {
            // The partition's cached run must stay contiguous: this batch breaks it.
            self.clear(key);
            return;
        }
        while self.used_bytes.get() + len_bytes > self.budget_bytes {
            self.evict_oldest();
        }
        let mut partitions = self.partitions.borrow_mut();
        let Some(batches) = partitions.get_mut(&key) else {
            return;
        };
        if let Some(last) = batches.back() {
            debug_assert!(batch.base_offset == last.last_offset + 1);
        }
        self.order.borrow_mut().push_back((key, batch.base_offset));
        self.used_bytes.set(self.used_bytes.get() + len_bytes);
        batches.push_back(batch);
    }

    fn evict_oldest(&self) {
        let Some((key, base_offset)) = self.order.borrow_mut().pop_front() else {
            return;
        };
        let mut partitions = self.partitions.borrow_mut();
        let Some(batches) = partitions.get_mut(&key) else {
            return;
        };
        if batches
            .front()
            .is_some_and(|batch| batch.base_offset == base_offset)
        {
            let evicted = batches.pop_front().expect("front checked");
            self.used_bytes
                .set(self.used_bytes.get() - evicted.batch.len());
        }
    }

    /// The cached batches of a partition starting with the one holding `offset`, ending before
    /// `end_offset` (the high watermark), up to `max_bytes` but at least one batch, as chunks whose
    /// concatenation is those batches. `None` when the batch holding `offset` is not cached.
    pub fn read(
        &self,
        key: CacheKey,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Option<Vec<Bytes>> {
        let partitions = self.partitions.borrow();
        let batches = partitions.get(&key)?;
        let first = batches.front()?;
        if offset < first.base_offset {
            return None;
        }
        let start = batches.partition_point(|batch| batch.last_offset < offset);
        let mut out = Vec::new();
        let mut total_bytes = 0;
        for cached in batches.range(start..) {
            if cached.last_offset >= end_offset {
                break;
            }
            if !out.is_empty() && total_bytes + cached.batch.len() > max_bytes {
                break;
            }
            total_bytes += cached.batch.len();
            cached.batch.push_chunks(&mut out);
        }
        if out.is_empty() && start == batches.len() {
            // Beyond the cached run (offset ≥ the cached end): the caller decides.
            return None;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: i64, records: i64, len_bytes: usize) -> CachedBatch {
        CachedBatch {
            base_offset,
            last_offset: base_offset + records - 1,
            batch: StoredBatch {
                head: Bytes::from(vec![base_offset as u8; len_bytes]),
                body: Bytes::new(),
            },
        }
    }

    #[test]
    fn reads_whole_batches_within_budget_and_evicts_oldest_first() {
        // Proves reads start at the batch holding the offset, stop at max_bytes (but return at
        // least one batch) and at the high watermark, and that the shard's oldest batches are
        // evicted first across partitions.
        let cache = ShardCache::new(300);
        let a = cache.register();
        let b = cache.register();
        cache.insert(a, batch(0, 10, 100));
        cache.insert(b, batch(0, 1, 100));
        cache.insert(a, batch(10, 10, 100));
        let got = cache.read(a, 15, 20, 1).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0][0], 10);
        assert_eq!(cache.read(a, 0, 20, 150).unwrap().len(), 1);
        assert_eq!(cache.read(a, 0, 20, 200).unwrap().len(), 2);
        assert_eq!(cache.read(a, 0, 19, 1000).unwrap().len(), 1);
        cache.insert(a, batch(20, 5, 100)); // Evicts a's first batch, the oldest.
        assert_eq!(cache.used_bytes(), 300);
        assert!(cache.read(a, 5, 25, 1000).is_none());
        assert_eq!(cache.read(a, 10, 25, 1000).unwrap().len(), 2);
        cache.insert(a, batch(25, 5, 100)); // Evicts b's batch.
        assert!(cache.read(b, 0, 1, 1000).is_none());
        cache.unregister(a);
        assert_eq!(cache.used_bytes(), 0);
    }
}
