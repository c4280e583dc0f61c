//! The split of the `split` module, 32 values per instruction with AVX-512 (F, BW and
//! BF16, which every CPU with AMX-BF16 has).
//!
//! `VCVTNE2PS2BF16` rounds 32 f32 to bfloat16, ties to even, as `split::split` does; it
//! reads subnormal inputs as zero, which only moves values below [`split::EXACT_ABOVE`]
//! (by less than 2⁻¹²⁶ each).

// Loads and stores through pointers into slices whose lengths the types fix.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::split::{LIMIT, Line};

/// Whether this CPU has the instructions of this module.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// A vector as a line.
#[inline(always)]
fn store(v: __m512i) -> Line {
    let mut l = Line::default();
    // SAFETY: a line is 64 bytes, aligned to 64.
    unsafe { _mm512_store_si512(l.0.as_mut_ptr().cast(), v) };
    l
}

/// The f32 values of the 16 bfloat16 in one half of `v` (`HIGH`: the upper 16).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn widen<const HIGH: i32>(v: __m512i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
        _mm512_extracti64x4_epi64::<HIGH>(v),
    )))
}

/// `[v_h, v_m, v_l]` of 32 values (lines in the order of `v`), and each lane's largest
/// magnitude kept in `largest` (as bits: NaN's exceed every number's).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub fn split32(v: &[f32; 32], largest: &mut __m512i) -> [Line; 3] {
    // SAFETY: `v` holds 32 values, read as two vectors of 16.
    let (lo, hi) = unsafe {
        (
            _mm512_loadu_ps(v.as_ptr()),
            _mm512_loadu_ps(v.as_ptr().add(16)),
        )
    };
    let abs = _mm512_set1_epi32(0x7FFF_FFFF);
    *largest = _mm512_max_epu32(*largest, _mm512_and_si512(_mm512_castps_si512(lo), abs));
    *largest = _mm512_max_epu32(*largest, _mm512_and_si512(_mm512_castps_si512(hi), abs));
    let mut parts = [Line::default(); 3];
    let (mut lo, mut hi) = (lo, hi);
    for part in &mut parts {
        // SAFETY: 32 bfloat16 are 64 bytes either way.
        let p: __m512i = unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo)) }; // to bf16
        *part = store(p);
        // what is left: exact in f32
        (lo, hi) = (
            _mm512_sub_ps(lo, widen::<0>(p)),
            _mm512_sub_ps(hi, widen::<1>(p)),
        );
    }
    parts
}

/// Whether every magnitude kept in `largest` can be split.
#[inline]
#[target_feature(enable = "avx512f")]
pub fn all_split(largest: __m512i) -> bool {
    _mm512_cmpgt_epu32_mask(largest, _mm512_set1_epi32(LIMIT.to_bits() as i32)) == 0
}

/// [`split::split_row`](super::split::split_row) with these instructions.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub fn split_row(x: &[f32], lines: &mut [Line]) -> bool {
    assert_eq!(
        lines.len(),
        3 * x.len().div_ceil(32),
        "three lines per block of 32"
    );
    let mut largest = _mm512_setzero_si512();
    let mut blocks = x.chunks_exact(32);
    let mut parts = lines.chunks_exact_mut(3);
    for (v, p) in (&mut blocks).zip(&mut parts) {
        p.copy_from_slice(&split32(v.try_into().expect("32 values"), &mut largest));
    }
    if let Some(p) = parts.next() {
        let rest = blocks.remainder();
        let mut v = [0.0f32; 32]; // the last block, zeros past the end of the row
        v[..rest.len()].copy_from_slice(rest);
        p.copy_from_slice(&split32(&v, &mut largest));
    }
    all_split(largest)
}

/// [`split_row`] for a thread holding the tiles, whose CPU has every instruction here
/// ([`super::tiles::available`] checks).
pub fn split_row_on(_: &super::tiles::Tiles, x: &[f32], lines: &mut [Line]) -> bool {
    // SAFETY: the tiles exist only where this module's instructions do.
    unsafe { split_row(x, lines) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amx::split;

    #[test]
    fn split_rows_as_the_portable_definition_does() {
        if !available() {
            println!("skipped: this CPU lacks AVX-512 BF16; the portable split is tested alone");
            return;
        }
        let mut rng = crate::seeded(9);
        for k in [1usize, 31, 32, 33, 784] {
            // magnitudes from 2⁻¹⁰⁰ to 2¹⁰⁰, both signs, and exact zeros
            let x: Vec<f32> = (0..k)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    _ => {
                        let e = crate::rng::uniform(&mut rng, -100.0, 100.0);
                        let s = crate::rng::uniform(&mut rng, -1.0, 1.0);
                        s * e.exp2()
                    }
                })
                .collect();
            let lines = 3 * k.div_ceil(32);
            let (mut mine, mut portable) =
                (vec![Line([7; 32]); lines], vec![Line::default(); lines]);
            // SAFETY: `available` said the CPU has the instructions
            assert!(unsafe { split_row(&x, &mut mine) });
            assert!(split::split_row(&x, &mut portable));
            assert_eq!(mine, portable, "k = {k}");
            for bad in [f32::NAN, f32::INFINITY, -2.0e38] {
                let mut x = x.clone();
                x[k / 2] = bad;
                // SAFETY: as above
                assert!(!unsafe { split_row(&x, &mut mine) }, "{bad}");
            }
        }
    }
}
