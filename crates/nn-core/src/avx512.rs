//! What the AVX-512 kernels share: whether the CPU has the instructions, lane masks, and
//! loads and stores of a short row (at most 16 floats) that touch only the row.

// The masked loads and stores take raw pointers; each use states why it stays inside its
// slice.
#![allow(unsafe_code)]

use std::arch::x86_64::{__m512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};

/// Whether this CPU runs the AVX-512 kernels (x86-64-v4: AVX-512 F, BW, CD, DQ, VL).
pub(crate) fn available() -> bool {
    pulp::x86::V4::try_new().is_some()
}

/// The lane mask of the first `n` lanes (all 16 from `n = 16` on).
pub(crate) fn mask(n: usize) -> u16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// The floats of `row` (at most 16) as one register; lanes past its end read as 0.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn load(row: &[f32]) -> __m512 {
    // SAFETY: the mask selects only the floats `row` holds (at most 16); masked-out lanes
    // are not read.
    unsafe { _mm512_maskz_loadu_ps(mask(row.len()), row.as_ptr()) }
}

/// Stores the first `row.len()` (at most 16) lanes of `v` into `row`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn store(row: &mut [f32], v: __m512) {
    // SAFETY: the mask selects only the floats `row` holds (at most 16); masked-out lanes
    // are not written.
    unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr(), mask(row.len()), v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_short_rows() {
        assert_eq!([0, 1, 10, 16, 40].map(mask), [0, 1, 0x3ff, 0xffff, 0xffff]);
        assert_eq!(available(), std::arch::is_x86_feature_detected!("avx512f"));
        if available() {
            let mut out = [9.0f32; 12];
            // SAFETY: the CPU has AVX-512 (checked above).
            unsafe {
                store(
                    &mut out[1..11],
                    load(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
                )
            };
            assert_eq!(
                out,
                [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 9.0]
            );
        }
    }
}
