//! An f32 as the sum of three bfloat16 values, and the packed layouts the tiles read.
//!
//! ```text
//! v_h = bf16(v)              (round to nearest, ties to even: the top 8 significant bits)
//! v_m = bf16(v − v_h)        (v − v_h is exact in f32: v_h is within one bf16 step of v)
//! v_l = v − v_h − v_m        (at most 8 significant bits are left: exact in bf16)
//! v   = v_h + v_m + v_l      exactly, for EXACT_ABOVE ≤ |v| ≤ LIMIT
//! ```
//!
//! A bfloat16 is the upper half of an f32, so `v_h`'s bits are `v`'s top 16 bits after
//! rounding, and widening back to f32 is a shift.

/// Magnitudes from which on the split is exact and every part a normal bfloat16 (or zero):
/// 2⁻¹⁰³, where the lowest bit of an f32 is 2⁻¹²⁶. Below it the parts lose what lies under
/// 2⁻¹²⁶ (and the tiles read subnormal bfloat16 parts as zero): an error under 2⁻¹²⁴ per
/// value.
pub const EXACT_ABOVE: f32 = f32::from_bits(24 << 23); // exponent −103 + 127 = 24

/// Magnitudes up to which the split is exact and no part rounds to infinity: above it, and
/// for NaN, a value cannot be split (the product falls back to f32 arithmetic).
pub const LIMIT: f32 = 1.0e38;

/// Bits of `v` rounded to bfloat16, ties to even (`v` finite, `|v| ≤ LIMIT`).
fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)); // + half a step, ties to even
    (rounded >> 16) as u16
}

/// The f32 a bfloat16 stands for.
pub fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `[v_h, v_m, v_l]`, whose sum is exactly `v` (see the module docs), or `None` when `v` is
/// NaN or larger than [`LIMIT`] in magnitude.
pub fn split(v: f32) -> Option<[u16; 3]> {
    if v.is_nan() || v.abs() > LIMIT {
        return None;
    }
    Some(split_unchecked(v))
}

/// [`split`] for a value known to be within [`LIMIT`]; branch-free, so a loop over a slice
/// vectorises.
#[inline(always)]
fn split_unchecked(v: f32) -> [u16; 3] {
    let h = to_bf16(v);
    let r = v - widen(h); // exact
    let m = to_bf16(r);
    let l = to_bf16(r - widen(m)); // exact, and exactly a bf16
    [h, m, l]
}

/// One 64-byte line of 32 bfloat16 values: what a tile row holds, aligned as the tile loads
/// like it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct Line(pub [u16; 32]);

/// Splits `x` (one row, `k` values) into `lines`, laid out block by block of 32 depths:
/// `[block][part h, m, l][32]`; depths past `k` are zero. Returns `false` (with `lines` in
/// an unspecified state) when some value cannot be split. The portable definition; the
/// tiles' threads use the AVX-512 one of the `simd` module, tested against it.
pub fn split_row(x: &[f32], lines: &mut [Line]) -> bool {
    assert_eq!(
        lines.len(),
        3 * x.len().div_ceil(32),
        "three lines per block of 32"
    );
    // the largest magnitude's bits, lane by lane (NaN's exceed every number's)
    let mut largest = [0u32; 32];
    let mut blocks = x.chunks_exact(32);
    let mut parts = lines.chunks_exact_mut(3);
    for (v, p) in (&mut blocks).zip(&mut parts) {
        split_block(v.try_into().expect("32 values"), p, &mut largest);
    }
    let rest = blocks.remainder();
    if let Some(p) = parts.next() {
        let mut v = [0.0f32; 32]; // the last block, zeros past the end of the row
        v[..rest.len()].copy_from_slice(rest);
        split_block(&v, p, &mut largest);
    }
    largest.iter().all(|&b| b <= LIMIT.to_bits())
}

/// Splits 32 values into the three lines `parts`, keeping each lane's largest magnitude.
#[inline(always)]
fn split_block(v: &[f32; 32], parts: &mut [Line], largest: &mut [u32; 32]) {
    let [h, m, l] = parts else { unreachable!() };
    for i in 0..32 {
        largest[i] = largest[i].max(v[i].to_bits() & 0x7FFF_FFFF); // |v|
        [h.0[i], m.0[i], l.0[i]] = split_unchecked(v[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(p: [u16; 3]) -> f32 {
        widen(p[0]) + widen(p[1]) + widen(p[2])
    }

    #[test]
    fn parts_by_hand() {
        // a bfloat16 has 8 significant bits: 1 + 2⁻⁷ is the next one after 1.
        // 1 + 2⁻⁷ + 2⁻¹⁴ + 2⁻²³: the top part 1 + 2⁻⁷ (the rest is under half a step, 2⁻⁸);
        // 2⁻¹⁴ + 2⁻²³ rounds to 2⁻¹⁴ (the step there is 2⁻²¹); 2⁻²³ is left
        let v = 1.0 + 2f32.powi(-7) + 2f32.powi(-14) + 2f32.powi(-23);
        let [h, m, l] = split(v).unwrap();
        assert_eq!(widen(h), 1.0 + 2f32.powi(-7));
        assert_eq!(widen(m), 2f32.powi(-14));
        assert_eq!(widen(l), 2f32.powi(-23));
        // 1/3 = 0.0101…₂: rounding may go up, leaving a negative remainder
        let third = 1.0f32 / 3.0;
        assert_eq!(sum(split(third).unwrap()), third);
        assert_eq!(split(0.0).unwrap(), [0, 0, 0]);
        assert_eq!(split(-2.0).unwrap(), [0xC000, 0, 0]);
    }

    #[test]
    fn exact_above_is_two_to_the_minus_103() {
        assert_eq!(EXACT_ABOVE, 2f32.powi(-103));
        let v = EXACT_ABOVE * (1.0 + 2f32.powi(-23)); // lowest bit 2⁻¹²⁶
        assert_eq!(sum(split(v).unwrap()), v);
    }

    #[test]
    fn ties_round_to_even() {
        // 1 + 2⁻⁸ is exactly half-way between bf16 1 and 1 + 2⁻⁷: even is 1
        let [h, m, _] = split(1.0 + 2f32.powi(-8)).unwrap();
        assert_eq!((widen(h), widen(m)), (1.0, 2f32.powi(-8)));
        // 1 + 3·2⁻⁸ is half-way between 1 + 2⁻⁷ and 1 + 2⁻⁶: even is 1 + 2⁻⁶
        let [h, m, _] = split(1.0 + 3.0 * 2f32.powi(-8)).unwrap();
        assert_eq!(
            (widen(h), widen(m)),
            (1.0 + 2f32.powi(-6), -(2f32.powi(-8)))
        );
    }

    #[test]
    fn values_that_cannot_be_split() {
        for v in [f32::NAN, f32::INFINITY, -f32::INFINITY, f32::MAX, -2.0e38] {
            assert_eq!(split(v), None, "{v}");
        }
        assert_eq!(sum(split(LIMIT).unwrap()), LIMIT);
        assert_eq!(sum(split(-LIMIT).unwrap()), -LIMIT);
    }

    #[test]
    fn rows_split_block_by_block_and_zero_past_the_end() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 / 7.0).collect();
        let mut lines = vec![Line([9; 32]); 6];
        assert!(split_row(&x, &mut lines));
        for (k, &v) in x.iter().enumerate() {
            let (b, i) = (k / 32, k % 32);
            let p = [
                lines[3 * b].0[i],
                lines[3 * b + 1].0[i],
                lines[3 * b + 2].0[i],
            ];
            assert_eq!(Some(p), split(v), "depth {k}");
        }
        for i in 8..32 {
            assert_eq!((lines[3].0[i], lines[4].0[i], lines[5].0[i]), (0, 0, 0));
        }
        let mut bad = x.clone();
        bad[33] = f32::NAN;
        assert!(!split_row(&bad, &mut lines));
        bad[33] = f32::INFINITY;
        assert!(!split_row(&bad, &mut lines));
    }

    proptest::proptest! {
        #[test]
        fn the_three_parts_sum_to_the_value(bits in proptest::prelude::any::<u32>()) {
            let v = f32::from_bits(bits);
            match split(v) {
                // exact down to 2⁻¹⁰³, where the lowest bit of `v` is still a normal bfloat16
                Some(p) if v.abs() >= EXACT_ABOVE => proptest::prop_assert_eq!(sum(p), v),
                Some(p) => proptest::prop_assert!((sum(p) - v).abs() <= 2f32.powi(-126)),
                None => proptest::prop_assert!(v.is_nan() || v.abs() > LIMIT),
            }
        }
    }
}
