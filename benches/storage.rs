//! Micro-benchmarks of the storage hot paths: the appender's copy into aligned buffers, the
//! sparse index lookups, and the per-shard cache read.
//!
//! Run with `cargo bench --bench storage`; figures are recorded in `perf/RESULTS.md`.
//!
//! The appender's copy-and-pad step is not a separate function (it is inline in the async
//! `Appender::append`), so it is measured two ways through the public API:
//! - `append_copy`: `DirectFile::alloc_buffer` (zeroed, block-rounded) plus copying the batch
//!   into it, the same steps `append` takes before its write, run inside a glommio executor but
//!   with no I/O. `memcpy` (into a warm Vec) is measured in the same run for comparison.
//! - `appender_append`: whole `Appender::append` calls (allocate, copy, pad, one O_DIRECT write,
//!   awaited) of 1 KiB and 64 KiB batches to a file under `target/bench-data/`, removed at exit.
//!   No fdatasync: that is the durability cost, measured elsewhere (`perf/recovery_retention.sh`, `spate bench --acks all`).
//!
//! One glommio `LocalExecutor` is made on the bench thread and reused; each timed `append` is
//! one `LocalExecutor::run` call, so that row includes the (small) cost of entering the executor.

use std::cell::OnceCell;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use spate::io::DirectFile;
use spate::io::probe::{probe_iopoll, write_probe_file};
use spate::log::appender::{Appender, PREALLOCATE_STEP_BYTES_MIN};
use spate::log::cache::{CachedBatch, ShardCache};
use spate::log::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use spate::log::stored_batch::StoredBatch;

/// Batch sizes for the copy step: a small batch, a large producer batch, Kafka's default
/// `max.request.size`.
const COPY_SIZES: [usize; 3] = [1 << 10, 64 << 10, 1 << 20];
/// Batch sizes for whole appends (the brief's 1 KiB and 64 KiB).
const APPEND_SIZES: [usize; 2] = [1 << 10, 64 << 10];
/// Index sizes. 1M entries is beyond a real segment (1 GiB at 4 KiB per entry is 262k entries);
/// it shows how lookups scale once the index leaves the caches.
const INDEX_ENTRIES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Lookups per timed iteration, over keys spread pseudo-randomly across the index.
const LOOKUPS_PER_ITER: usize = 1024;
/// File-position stride between offset-index entries. `INDEX_INTERVAL_BYTES` (4096) would
/// overflow the u32 file position at 1M entries, so the stride is slightly smaller.
const INDEX_STRIDE_BYTES: u32 = 4000;
/// Records per indexed interval and milliseconds per interval in the time index.
const INDEX_STRIDE_RECORDS: u32 = 4;

thread_local! {
    static EXECUTOR: OnceCell<LocalExecutor> = const { OnceCell::new() };
}

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("storage-{}", std::process::id()))
}

/// Registered I/O memory of the bench executor: the broker's default `--io-memory-bytes`.
const IO_MEMORY_BYTES: usize = 2 << 20;

/// Runs `f` with this thread's glommio executor (made on first use, with the iopoll probe done;
/// `ulimit -l` is 8 MiB here, so locked memory stays at the broker's default).
fn with_executor<T>(f: impl FnOnce(&LocalExecutor) -> T) -> T {
    EXECUTOR.with(|cell| {
        let executor = cell.get_or_init(|| {
            let dir = bench_dir();
            std::fs::create_dir_all(&dir).unwrap();
            write_probe_file(&dir).unwrap();
            let executor = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(IO_MEMORY_BYTES)
                .ring_depth(64)
                .make()
                .unwrap();
            executor.run(async { probe_iopoll(&dir).await.unwrap() });
            executor
        });
        f(executor)
    })
}

fn main() {
    divan::main();
    let _ = std::fs::remove_dir_all(bench_dir());
}

mod memcpy {
    use super::*;

    /// Baseline: copy into a preallocated, warm Vec.
    #[divan::bench(args = COPY_SIZES)]
    fn copy(bencher: Bencher, len_bytes: usize) {
        let source = vec![7u8; len_bytes];
        let mut destination = vec![0u8; len_bytes];
        bencher
            .counter(BytesCount::new(len_bytes))
            .bench_local(|| destination.copy_from_slice(black_box(&source)));
    }
}

mod appender {
    use super::*;

    /// `alloc_buffer` (zeroed, rounded up to 4 KiB) + copy of one batch, as in `append`.
    #[divan::bench(args = COPY_SIZES)]
    fn append_copy(bencher: Bencher, len_bytes: usize) {
        let batch = Bytes::from(vec![7u8; len_bytes]);
        let path = bench_dir().join(format!("copy-{len_bytes}"));
        with_executor(|executor| {
            executor.run(async {
                let file = DirectFile::open_or_create(&path).await.unwrap();
                bencher.counter(BytesCount::new(len_bytes)).bench_local(|| {
                    let mut buffer = file.alloc_buffer(batch.len());
                    buffer.as_bytes_mut()[..batch.len()].copy_from_slice(black_box(&batch));
                    black_box(buffer)
                });
                file.remove().await.unwrap();
                file.close().await.unwrap();
            })
        });
    }

    /// Whole `Appender::append` calls (copy, pad, one O_DIRECT write awaited), one batch each.
    /// Bounded to 100 x 10 appends, so the file stays under 100 MiB.
    #[divan::bench(args = APPEND_SIZES, sample_count = 100, sample_size = 10)]
    fn appender_append(bencher: Bencher, len_bytes: usize) {
        let chunks = [Bytes::from(vec![7u8; len_bytes])];
        let path = bench_dir().join(format!("append-{len_bytes}.log"));
        with_executor(|executor| {
            let mut appender = executor.run(async {
                let file = Rc::new(DirectFile::open_or_create(&path).await.unwrap());
                Appender::open(file, 0, 1 << 30, PREALLOCATE_STEP_BYTES_MIN)
                    .await
                    .unwrap()
            });
            bencher.counter(BytesCount::new(len_bytes)).bench_local(|| {
                executor.run(appender.append(black_box(&chunks))).unwrap();
            });
            executor.run(async {
                let file = appender.file().clone();
                drop(appender);
                file.remove().await.unwrap();
                Rc::try_unwrap(file).unwrap().close().await.unwrap();
            });
        });
    }
}

/// `LOOKUPS_PER_ITER` keys spread over `0..max` (a fixed LCG, so every run looks up the same keys).
fn lookup_keys(max: u64) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..LOOKUPS_PER_ITER)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % max
        })
        .collect()
}

mod index {
    use super::*;

    /// `OffsetIndex::lookup` of 1024 random offsets in an index of `entries` entries.
    #[divan::bench(args = INDEX_ENTRIES)]
    fn offset_lookup(bencher: Bencher, entries: usize) {
        let mut index = OffsetIndex::default();
        for i in 0..entries as u32 {
            index.push(OffsetEntry {
                relative_offset: i * INDEX_STRIDE_RECORDS,
                file_position: i * INDEX_STRIDE_BYTES,
            });
        }
        assert_eq!(index.len(), entries);
        let keys: Vec<u32> = lookup_keys(entries as u64 * u64::from(INDEX_STRIDE_RECORDS))
            .into_iter()
            .map(|key| key as u32)
            .collect();
        bencher
            .counter(ItemsCount::new(LOOKUPS_PER_ITER))
            .bench_local(|| {
                for &key in black_box(&keys) {
                    black_box(index.lookup(key));
                }
            });
    }

    /// `TimeIndex::lookup_time` of 1024 random timestamps in an index of `entries` entries.
    #[divan::bench(args = INDEX_ENTRIES)]
    fn time_lookup(bencher: Bencher, entries: usize) {
        const BASE_MS: i64 = 1_700_000_000_000;
        let mut index = TimeIndex::default();
        for i in 0..entries as u32 {
            index.push(TimeEntry {
                timestamp_ms: BASE_MS + i64::from(i * INDEX_STRIDE_RECORDS),
                relative_offset: i * INDEX_STRIDE_RECORDS,
            });
        }
        let keys: Vec<i64> = lookup_keys(entries as u64 * u64::from(INDEX_STRIDE_RECORDS))
            .into_iter()
            .map(|key| BASE_MS + key as i64)
            .collect();
        bencher
            .counter(ItemsCount::new(LOOKUPS_PER_ITER))
            .bench_local(|| {
                for &key in black_box(&keys) {
                    black_box(index.lookup_time(key));
                }
            });
    }
}

mod cache {
    use super::*;

    /// Batches cached for the one partition read (16 KiB each: 64 MiB in all).
    const CACHED_BATCHES: i64 = 4096;
    const BATCH_BYTES: usize = 16 << 10;
    const RECORDS_PER_BATCH: i64 = 16;

    fn filled_cache() -> (ShardCache, spate::log::cache::CacheKey) {
        let cache = ShardCache::new(CACHED_BATCHES as usize * BATCH_BYTES);
        let key = cache.register();
        let bytes = Bytes::from(vec![7u8; BATCH_BYTES]);
        for i in 0..CACHED_BATCHES {
            cache.insert(
                key,
                CachedBatch {
                    base_offset: i * RECORDS_PER_BATCH,
                    last_offset: (i + 1) * RECORDS_PER_BATCH - 1,
                    // As a produced batch is cached: a patched head, then the client's bytes.
                    batch: StoredBatch {
                        head: bytes.slice(..61),
                        body: bytes.slice(61..),
                    },
                },
            );
        }
        (cache, key)
    }

    /// `ShardCache::read` of a tailing consumer: the last batch, max_bytes 1 MiB.
    #[divan::bench]
    fn read_tail_one_batch(bencher: Bencher) {
        let (cache, key) = filled_cache();
        let end = CACHED_BATCHES * RECORDS_PER_BATCH;
        bencher
            .counter(BytesCount::new(BATCH_BYTES))
            .bench_local(|| {
                let batches = cache.read(key, black_box(end - 1), end, 1 << 20).unwrap();
                assert_eq!(batches.len(), 1);
                batches
            });
    }

    /// `ShardCache::read` from the middle of the cached run, max_bytes 1 MiB (64 batches).
    #[divan::bench]
    fn read_middle_1mib(bencher: Bencher) {
        let (cache, key) = filled_cache();
        let end = CACHED_BATCHES * RECORDS_PER_BATCH;
        bencher
            .counter(BytesCount::new(1usize << 20))
            .bench_local(|| {
                let batches = cache.read(key, black_box(end / 2), end, 1 << 20).unwrap();
                assert_eq!(batches.len(), 64);
                batches
            });
    }
}
