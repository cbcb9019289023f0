//! Pre-generated record values, so generating load costs a 16-byte stamp per record, not a fill.
//!
//! Every value starts with a 16-byte stamp: the intended send time (ns since the run's epoch,
//! u64 little-endian) and the run id (u64 little-endian); consumers in `e2e` read it back to
//! measure end-to-end latency and to skip records of other runs. The rest of the value is a mix
//! of random bytes and repeated text, in the proportion `compressibility`, so compressed runs
//! see realistic ratios. A pool holds several different values so consecutive records differ.
//! Callers must not keep a value borrowed across the next `stamp` of the same slot.

/// Bytes at the start of every value that carry the stamp.
pub const STAMP_BYTES: usize = 16;

/// Distinct values per pool: enough that a batch is not one value repeated.
const POOL_SLOTS_MAX: usize = 64;

/// Memory one pool may take; big records get fewer slots.
const POOL_BYTES_MAX: usize = 64 << 20;

/// The stamp of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Intended send time, ns since the run's epoch.
    pub send_time_ns: u64,
    /// The run that produced the record.
    pub run_id: u64,
}

impl Stamp {
    /// Reads the stamp at the start of `value`, or `None` if the value is too short.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        let send_time_ns = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
        let run_id = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
        Some(Stamp {
            send_time_ns,
            run_id,
        })
    }
}

/// A pool of pre-generated values of one size.
pub struct PayloadPool {
    slots: Vec<Vec<u8>>,
    next_slot: usize,
}

impl PayloadPool {
    /// Generates the values; `seed` makes pools of different producers differ.
    pub fn new(record_size: usize, compressibility: f64, seed: u64) -> Self {
        assert!(record_size >= STAMP_BYTES);
        let slot_count = (POOL_BYTES_MAX / record_size).clamp(1, POOL_SLOTS_MAX);
        let mut random = XorShift(seed | 1);
        let slots = (0..slot_count)
            .map(|_| fill(record_size, compressibility, &mut random))
            .collect();
        Self {
            slots,
            next_slot: 0,
        }
    }

    /// The next value, with `stamp` written into its first 16 bytes.
    pub fn stamp(&mut self, stamp: Stamp) -> &[u8] {
        let index = self.next_slot;
        self.next_slot = (index + 1) % self.slots.len();
        let slot = &mut self.slots[index];
        slot[0..8].copy_from_slice(&stamp.send_time_ns.to_le_bytes());
        slot[8..16].copy_from_slice(&stamp.run_id.to_le_bytes());
        slot
    }
}

/// One value: the compressible share is text repeated, the rest random, interleaved in 64-byte
/// runs so a compressor sees both throughout the value.
fn fill(record_size: usize, compressibility: f64, random: &mut XorShift) -> Vec<u8> {
    const TEXT: &[u8] = b"spate bench payload: the quick brown fox jumps over the lazy dog. ";
    const RUN_BYTES: usize = 64;
    let mut value = vec![0u8; record_size];
    let mut compressible_debt = 0.0f64;
    for run in value.chunks_mut(RUN_BYTES) {
        compressible_debt += compressibility;
        if compressible_debt >= 1.0 {
            compressible_debt -= 1.0;
            for (i, byte) in run.iter_mut().enumerate() {
                *byte = TEXT[i % TEXT.len()];
            }
        } else {
            for chunk in run.chunks_mut(8) {
                let bytes = random.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
        }
    }
    value
}

/// xorshift64*: a fast generator for payload bytes and run ids (not for anything secret).
pub struct XorShift(pub u64);

impl XorShift {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a stamped value carries the stamp back and keeps its size.
    #[test]
    fn stamp_round_trips() {
        let mut pool = PayloadPool::new(100, 0.5, 7);
        let stamp = Stamp {
            send_time_ns: 123_456_789,
            run_id: 42,
        };
        let value = pool.stamp(stamp);
        assert_eq!(value.len(), 100);
        assert_eq!(Stamp::read(value), Some(stamp));
        assert_eq!(Stamp::read(&value[..15]), None);
    }

    // Proves compressibility sets the share of repeated text: 0 gives no text run, 1 only text.
    #[test]
    fn compressibility_sets_the_text_share() {
        let text_runs = |c: f64| {
            let value = fill(64 * 100, c, &mut XorShift(3));
            value
                .chunks(64)
                .filter(|run| run.starts_with(b"spate bench"))
                .count()
        };
        assert_eq!(text_runs(0.0), 0);
        assert_eq!(text_runs(1.0), 100);
        assert!((45..=55).contains(&text_runs(0.5)));
    }
}
