//! Repeatable pseudo-random data: record values and key lists, each drawn from a
//! `fastrand` generator with a fixed seed, so every run and every engine sees the same bytes.

use fastrand::Rng;

/// Bytes of every record value.
pub const VALUE_LEN: usize = 100;

const SEED: u64 = 0x5EED_D0D0_2026_0001;

/// The value stored under `key`: the same bytes in every engine, incompressible.
pub fn value(key: u64) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    Rng::with_seed(SEED ^ key.wrapping_mul(0xD1B5_4A32_D192_ED03)).fill(&mut out);
    out
}

/// `count` keys drawn uniformly from `1..=records`, the same list on every run.
pub fn random_keys(records: u64, count: u64) -> Vec<u64> {
    let mut rng = Rng::with_seed(SEED.rotate_left(17));
    (0..count).map(|_| rng.u64(1..=records)).collect()
}

/// A cheap digest of a loaded value, so that loads cannot be optimised away and a wrong
/// length is caught.
pub fn digest(bytes: &[u8]) -> u64 {
    assert_eq!(bytes.len(), VALUE_LEN, "a loaded value has the wrong length");
    u64::from(bytes[0]) + u64::from(bytes[VALUE_LEN - 1])
}

/// `count` distinct keys of `1..=records` (all of them if fewer) in a seeded random
/// order, the same list on every run.
pub fn distinct_keys(records: u64, count: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (1..=records).collect();
    Rng::with_seed(SEED.rotate_left(29)).shuffle(&mut keys);
    keys.truncate(count.min(records) as usize);
    keys
}
