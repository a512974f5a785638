//! Repeatable pseudo-random data: a SplitMix64 generator, record values and key lists.

/// Bytes of every record value.
pub const VALUE_LEN: usize = 100;

const SEED: u64 = 0x5EED_D0D0_2026_0001;

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough for keys and filler.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (multiply-shift; the bias is negligible for n << 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The value stored under `key`: the same bytes in every engine, incompressible.
pub fn value(key: u64) -> [u8; VALUE_LEN] {
    let mut rng = SplitMix64::new(SEED ^ key.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut out = [0u8; VALUE_LEN];
    for chunk in out.chunks_mut(8) {
        let bytes = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    out
}

/// `count` keys drawn uniformly from `1..=records`, the same list on every run.
pub fn random_keys(records: u64, count: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(SEED.rotate_left(17));
    (0..count).map(|_| 1 + rng.below(records)).collect()
}

/// A cheap digest of a loaded value, so that loads cannot be optimised away and a wrong
/// length is caught.
pub fn digest(bytes: &[u8]) -> u64 {
    assert_eq!(bytes.len(), VALUE_LEN, "a loaded value has the wrong length");
    u64::from(bytes[0]) + u64::from(bytes[VALUE_LEN - 1])
}
