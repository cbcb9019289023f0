//! Random valid messages for the codec's property and differential tests.
//!
//! Every declared struct implements [`Sample`] (derived by `kafka_struct!`): it fills exactly the
//! fields its version carries, with values that stress the encodings (empty and long strings, null
//! where allowed, byte fields large enough to be spliced, extreme integers), and leaves the others
//! at their defaults, so `decode(encode(m)) == m` must hold for every sample.

use bytes::Bytes;

use super::field::{Ctx, RecordSet, Uuid};
use super::wire::SPLICE_BYTES_MIN;

/// A small deterministic generator (SplitMix64): a test failure names its seed and replays.
#[derive(Debug, Clone)]
pub struct SampleRng(u64);

impl SampleRng {
    /// A generator for one seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// A type that can produce a random valid value for a given version.
pub trait Sample {
    /// A random value valid in `ctx`.
    fn sample(rng: &mut SampleRng, ctx: Ctx) -> Self;
}

macro_rules! sample_int {
    ($($ty:ty),*) => {$(
        impl Sample for $ty {
            fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
                match rng.below(5) {
                    0 => 0,
                    1 => <$ty>::MAX,
                    2 => <$ty>::MIN,
                    3 => (0 as $ty).wrapping_sub(1),
                    _ => rng.next_u64() as $ty,
                }
            }
        }
    )*};
}

sample_int!(i8, i16, i32, i64, u16, u32);

impl Sample for bool {
    fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
        rng.one_in(2)
    }
}

impl Sample for f64 {
    fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
        // Finite values only: NaN != NaN would fail equality without a codec fault.
        (rng.next_u64() % 1_000_000) as f64 / 7.0
    }
}

impl Sample for Uuid {
    fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        out[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        Uuid(out)
    }
}

impl Sample for String {
    fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
        match rng.below(4) {
            0 => String::new(),
            1 => "tópico-ü".to_owned(),
            _ => {
                let len = rng.below(24) as usize;
                (0..len)
                    .map(|_| char::from(b'a' + rng.below(26) as u8))
                    .collect()
            }
        }
    }
}

impl Sample for Bytes {
    fn sample(rng: &mut SampleRng, _ctx: Ctx) -> Self {
        let len = match rng.below(4) {
            0 => 0,
            1 => SPLICE_BYTES_MIN + rng.below(4096) as usize,
            _ => rng.below(64) as usize,
        };
        let seed = rng.next_u64() as u8;
        Bytes::from(
            (0..len)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>(),
        )
    }
}

impl<T: Sample> Sample for Vec<T> {
    fn sample(rng: &mut SampleRng, ctx: Ctx) -> Self {
        let element_ctx = ctx.field(false);
        let len = rng.below(4) as usize;
        (0..len).map(|_| T::sample(rng, element_ctx)).collect()
    }
}

impl<T: Sample> Sample for Option<T> {
    fn sample(rng: &mut SampleRng, ctx: Ctx) -> Self {
        if ctx.nullable && rng.one_in(4) {
            return None;
        }
        Some(T::sample(rng, ctx))
    }
}

impl Sample for RecordSet {
    fn sample(rng: &mut SampleRng, ctx: Ctx) -> Self {
        let chunks = rng.below(3) as usize;
        RecordSet((0..chunks).map(|_| Bytes::sample(rng, ctx)).collect())
    }
}
