//! Seeded randomness.
//!
//! Library code never reaches for a thread-local or OS generator: every random draw comes
//! from an [`Rng`] created by [`seeded`] and passed in. The generator is named (ChaCha8,
//! whose output stream `rand_chacha` keeps stable across releases) and the conversions
//! from raw bits to numbers are written here, so a `rand` upgrade cannot change the
//! weights a seed produces.
//!
//! ```text
//! uniform [0, 1):   u = (bits₃₂ >> 8) · 2⁻²⁴                 (24 random mantissa bits)
//! normal (0, 1):    z = √(−2 ln u₁) · cos(2π u₂)               (Box–Muller, u₁ ∈ (0, 1])
//! shuffle:          Fisher–Yates, i from n−1 down to 1, j uniform in [0, i]
//! ```

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The generator used everywhere in the toolkit.
pub type Rng = ChaCha8Rng;

/// A generator seeded from a `u64`.
///
/// # Example
///
/// ```
/// use nn_core::{rng::{below, uniform01}, seeded};
///
/// let (mut a, mut b) = (seeded(42), seeded(42));
/// let draws: Vec<f32> = (0..5).map(|_| uniform01(&mut a)).collect();
/// assert_eq!(draws, (0..5).map(|_| uniform01(&mut b)).collect::<Vec<_>>()); // same seed
/// assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
/// assert!(below(&mut a, 10) < 10);
/// assert_ne!(uniform01(&mut seeded(43)), draws[0]); // another seed, another stream
/// ```
pub fn seeded(seed: u64) -> Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A uniform draw from `[0, 1)` with 24 random bits (every representable step of an `f32`
/// mantissa in that range).
pub fn uniform01(rng: &mut Rng) -> f32 {
    unit_of(rng.next_u32())
}

/// The draw [`uniform01`] makes from the 32-bit word `w`: its top 24 bits as a fraction.
#[inline]
pub fn unit_of(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0) // (bits >> 8) · 2⁻²⁴
}

/// The generator's next `out.len()` 32-bit words, in order: the words that as many
/// [`uniform01`] calls would use, so draws taken in blocks (then turned into numbers by
/// [`unit_of`] in a loop the compiler can vectorise) equal draws taken one by one.
pub fn fill_words(rng: &mut Rng, out: &mut [u32]) {
    for w in out {
        *w = rng.next_u32();
    }
}

/// A uniform draw from `[lo, hi)`.
pub fn uniform(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * uniform01(rng)
}

/// A standard normal draw by the Box–Muller transform (computed in `f64`).
pub fn standard_normal(rng: &mut Rng) -> f32 {
    // u₁ ∈ (0, 1] so that ln u₁ is finite; 53-bit uniforms.
    let u1 = ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / 9_007_199_254_740_992.0);
    let u2 = (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 // √(−2 ln u₁)·cos(2πu₂)
}

/// A uniform integer in `[0, n)`, without modulo bias (Lemire's widening multiply with
/// rejection). `n` must be positive.
pub fn below(rng: &mut Rng, n: usize) -> usize {
    assert!(n > 0, "below(0) has no value to return");
    let n = n as u64;
    let threshold = n.wrapping_neg() % n; // (2⁶⁴ − n) mod n
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// Shuffles `items` in place (Fisher–Yates).
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1); // j uniform in [0, i]
        items.swap(i, j);
    }
}

/// Writes a random permutation of `0..n` into `out`, reusing its allocation.
pub fn permutation_into(n: usize, rng: &mut Rng, out: &mut Vec<usize>) {
    out.clear();
    out.extend(0..n);
    shuffle(out, rng);
}

/// The complete state of an [`Rng`], for checkpoints: restoring it continues the stream
/// exactly where it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte key the generator was seeded with.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// Position in the stream, in 32-bit words.
    pub word_pos: u128,
}

impl RngState {
    /// Captures the state of `rng`.
    pub fn capture(rng: &Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator that continues where the captured one stood.
    pub fn restore(&self) -> Rng {
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unit_of` keeps the top 24 bits: 0 → 0, 2⁸ → 2⁻²⁴, 2³² − 1 → 1 − 2⁻²⁴, 2³¹ → ½; and
    /// words filled in a block are the words drawn one at a time.
    #[test]
    fn words_and_their_unit_draws() {
        assert_eq!(unit_of(0), 0.0);
        assert_eq!(unit_of(0xFF), 0.0);
        assert_eq!(unit_of(0x100), 1.0 / 16_777_216.0);
        assert_eq!(unit_of(1 << 31), 0.5);
        assert_eq!(unit_of(u32::MAX), 1.0 - 1.0 / 16_777_216.0);
        let mut words = [0u32; 5];
        fill_words(&mut seeded(3), &mut words);
        let mut r = seeded(3);
        for w in words {
            assert_eq!(w, r.next_u32());
        }
        let mut r = seeded(3);
        assert_eq!(uniform01(&mut r), unit_of(words[0]));
    }

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (seeded(7), seeded(7));
        for _ in 0..100 {
            assert_eq!(uniform01(&mut a).to_bits(), uniform01(&mut b).to_bits());
        }
        assert_ne!(uniform01(&mut seeded(7)), uniform01(&mut seeded(8)));
    }

    #[test]
    fn uniform_stays_in_range_and_has_the_right_mean() {
        let mut r = seeded(1);
        let n = 100_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let u = uniform(&mut r, -2.0, 3.0);
            assert!((-2.0..3.0).contains(&u));
            sum += u as f64;
        }
        // mean of U(-2, 3) is 0.5; std of the mean is 5/√12/√n ≈ 0.0046
        assert!((sum / n as f64 - 0.5).abs() < 0.03);
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = seeded(2);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| standard_normal(&mut r) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // std of the mean ≈ 0.0032, of the variance ≈ √(2/n) ≈ 0.0045
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut r = seeded(3);
        let mut p = Vec::new();
        permutation_into(1000, &mut r, &mut p);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, sorted, "a shuffle of 1000 items left them in order");
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = seeded(4);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[below(&mut r, 3)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = seeded(5);
        for _ in 0..37 {
            a.next_u32();
        }
        let mut b = RngState::capture(&a).restore();
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
