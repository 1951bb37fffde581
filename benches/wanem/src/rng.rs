//! A seeded pseudo-random generator and probabilities drawn from it.
//!
//! The emulator's decisions (loss, jitter, reordering) must repeat exactly for a given `--seed`, so that a
//! surprising benchmark result can be replayed; hence a small deterministic generator instead of an OS source.

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: fast, tiny state, and good enough statistics
/// for loss and jitter draws (this is not cryptography).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`; `stream` separates the directions, so that each direction's draws do not depend
    /// on how the two directions' packets interleave.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut s = [0u64; 4];
        for word in &mut s {
            *word = splitmix64(&mut x);
        }
        // xoshiro's state must not be all zero; SplitMix64 never yields four zeros in a row, but say so.
        debug_assert!(s.iter().any(|&w| w != 0));
        Rng { s }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..=max` (multiply-shift: the bias is below 2^-64 * max, far below anything a
    /// jitter of nanoseconds could show).
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        ((self.next_u64() as u128 * (max as u128 + 1)) >> 64) as u64
    }
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A probability in [0, 1], kept as a 53-bit threshold so that a draw is one integer compare (no float on the
/// per-packet path) and both 0 and 1 are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probability {
    threshold: u64,
}

/// 2^53: the resolution of an f64 in [0, 1), so the conversion from the command line loses nothing.
const SCALE: u64 = 1 << 53;

impl Probability {
    /// Never happens.
    pub const NEVER: Probability = Probability { threshold: 0 };

    /// `p` must be in [0, 1] (the argument parser refuses anything else).
    pub fn new(p: f64) -> Option<Probability> {
        if !(0.0..=1.0).contains(&p) {
            return None;
        }
        Some(Probability { threshold: (p * SCALE as f64).round() as u64 })
    }

    /// The probability as a number in [0, 1].
    pub fn value(self) -> f64 {
        self.threshold as f64 / SCALE as f64
    }

    /// True when this can never happen: the caller then skips the draw, which keeps the random sequence of the
    /// other decisions independent of options left at zero.
    pub fn is_never(self) -> bool {
        self.threshold == 0
    }

    /// One Bernoulli draw.
    pub fn sample(self, rng: &mut Rng) -> bool {
        (rng.next_u64() >> 11) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_extremes_are_exact() {
        let mut rng = Rng::new(7, 0);
        let always = Probability::new(1.0).unwrap();
        let never = Probability::new(0.0).unwrap();
        for _ in 0..10_000 {
            assert!(always.sample(&mut rng));
            assert!(!never.sample(&mut rng));
        }
        assert!(Probability::new(1.5).is_none());
        assert!(Probability::new(-0.1).is_none());
        assert!(Probability::new(f64::NAN).is_none());
    }

    #[test]
    fn sampled_frequency_matches() {
        let mut rng = Rng::new(1, 0);
        let p = Probability::new(0.01).unwrap();
        let n = 1_000_000;
        let hits = (0..n).filter(|_| p.sample(&mut rng)).count() as f64;
        // Binomial standard deviation ~ 99.5 hits; allow 5 sigma.
        assert!((hits - 10_000.0).abs() < 500.0, "{hits}");
    }

    #[test]
    fn up_to_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(3, 1);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let v = rng.up_to(4);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 1_500), "{seen:?}");
        assert_eq!(rng.up_to(0), 0);
    }

    #[test]
    fn streams_and_seeds_differ_and_repeat() {
        let draw = |seed, stream| {
            let mut r = Rng::new(seed, stream);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
    }
}
