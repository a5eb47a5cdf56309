//! A small seeded PRNG (SplitMix64) and the run's seed.
//!
//! Every random choice of a run (the nemesis schedule, the workloads' key
//! choices, the node each client talks to) comes from a [`Rng`] derived from
//! the run's seed, so `FAULTS_SEED` replays the same choices. The order in
//! which threads interleave is up to the OS scheduler and is not replayed.

use std::time::Duration;

/// SplitMix64: tiny, fast, and good enough for test choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent generator for stream `stream` of `seed` (one per
    /// client thread, one for the schedule...), so that one consumer drawing
    /// more numbers never shifts the choices of another.
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut mixer = Rng(seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds (inclusive).
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        assert!(lo_ms <= hi_ms);
        Duration::from_millis(lo_ms + self.next_u64() % (hi_ms - lo_ms + 1))
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The seed of this run: `FAULTS_SEED` (decimal or `0x` hex) when set,
/// else a fresh random one.
pub fn seed_from_env() -> u64 {
    match std::env::var("FAULTS_SEED") {
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("FAULTS_SEED={text:?} is not a decimal or 0x-hex u64")),
        Err(_) => crate::server::random_u64(),
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::stream(7, 1).next_u64(), Rng::stream(7, 2).next_u64());
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed("16"), Some(16));
    }
}
