//! Max pooling over 2×2 windows with stride 2, the pooling of most convolutional networks:
//! each output is the largest of its window, and the flat input index of that value is
//! kept for the backward pass (`∂E/∂X` goes to the window's maximum).
//!
//! ```text
//! Y[oy, ox] = max(X[2oy, 2ox], X[2oy, 2ox + 1], X[2oy + 1, 2ox], X[2oy + 1, 2ox + 1])
//! ```
//!
//! The window is scanned in that order and a value replaces the best so far only when it is
//! strictly larger: the first of equal values wins a tie, and NaN never wins (a window of
//! NaN and −∞ only gives −∞ at its first position).
//!
//! With AVX-512, 16 outputs of a row at once: the two input rows are loaded 32 floats at a
//! time, split into even and odd columns, and compared lane by lane in the scan order
//! (W3's first pooling layer: see `docs/PERFORMANCE.md`); with AVX2 alone, 8 at once the
//! same way (`pool/avx2.rs`). The portable loop is the same scan, one output at a time.

/// One plane of max pooling: `x` is `[h, w]` with `h ≥ 2·oh` and `w ≥ 2·ow`, starting at
/// flat index `base` of the batch; the maxima go to `y` (`[oh, ow]`) and their flat input
/// indices to `at`.
///
/// # Panics
/// If a slice is shorter than those sizes say.
pub fn max_2x2(x: &[f32], w: usize, base: usize, y: &mut [f32], at: &mut [u32], ow: usize) {
    #[cfg(target_arch = "x86_64")]
    if simd::try_max_2x2(x, w, base, y, at, ow) || avx2::try_max_2x2(x, w, base, y, at, ow) {
        return;
    }
    max_2x2_portable(x, w, base, y, at, ow);
}

/// [`max_2x2`] one output at a time.
fn max_2x2_portable(x: &[f32], w: usize, base: usize, y: &mut [f32], at: &mut [u32], ow: usize) {
    for (oy, (yr, ar)) in y
        .chunks_exact_mut(ow)
        .zip(at.chunks_exact_mut(ow))
        .enumerate()
    {
        let r0 = &x[2 * oy * w..2 * oy * w + 2 * ow];
        let r1 = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        let top = (base + 2 * oy * w) as u32;
        let w32 = w as u32;
        for (ox, (yv, av)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
            let q = 2 * ox;
            let (mut best, mut idx) = (f32::NEG_INFINITY, top + q as u32);
            for (v, i) in [
                (r0[q], top + q as u32),
                (r0[q + 1], top + q as u32 + 1),
                (r1[q], top + w32 + q as u32),
                (r1[q + 1], top + w32 + q as u32 + 1),
            ] {
                if v > best {
                    (best, idx) = (v, i); // strictly larger: the first of equals stays
                }
            }
            *yv = best;
            *av = idx;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod simd {
    // The masked loads and stores take raw pointers; each use states why it stays inside
    // its slice.
    #![allow(unsafe_code)]

    use std::arch::x86_64::{
        __m512, __m512i, _CMP_GT_OQ, _mm512_add_epi32, _mm512_cmp_ps_mask, _mm512_mask_blend_ps,
        _mm512_mask_mov_epi32, _mm512_mask_storeu_epi32, _mm512_permutex2var_ps, _mm512_set1_epi32,
        _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_si512,
    };

    use crate::avx512::{available, load, mask, store};

    /// [`max_2x2`](super::max_2x2) when this CPU has AVX-512 (returns whether it ran).
    pub(super) fn try_max_2x2(
        x: &[f32],
        w: usize,
        base: usize,
        y: &mut [f32],
        at: &mut [u32],
        ow: usize,
    ) -> bool {
        if !available() {
            return false;
        }
        // SAFETY: the CPU has AVX-512 (checked above).
        unsafe { max_2x2(x, w, base, y, at, ow) };
        true
    }

    /// Even and odd floats of `row` (at most 32) as two registers; lanes past its end are 0.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn split(row: &[f32]) -> (__m512, __m512) {
        let (lo, hi) = row.split_at(row.len().min(16));
        let (lo, hi) = (load(lo), load(hi));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (
            _mm512_permutex2var_ps(lo, even, hi),
            _mm512_permutex2var_ps(lo, odd, hi),
        )
    }

    #[target_feature(enable = "avx512f")]
    fn max_2x2(x: &[f32], w: usize, base: usize, y: &mut [f32], at: &mut [u32], ow: usize) {
        let lane = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        // offsets of the window's four positions from its top left, in scan order
        let (right, below) = (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32));
        let below_right = _mm512_set1_epi32(w as i32 + 1);
        for (oy, (yr, ar)) in y
            .chunks_exact_mut(ow)
            .zip(at.chunks_exact_mut(ow))
            .enumerate()
        {
            let top = base + 2 * oy * w;
            for ox in (0..ow).step_by(16) {
                let n = (ow - ox).min(16);
                let q = 2 * oy * w + 2 * ox;
                let (a, b) = split(&x[q..q + 2 * n]);
                let (c, d) = split(&x[q + w..q + w + 2 * n]);
                // the scan: best ← v where v > best, in the order a, b, c, d
                let first = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_set1_ps(f32::NEG_INFINITY));
                let mut best = _mm512_mask_blend_ps(first, _mm512_set1_ps(f32::NEG_INFINITY), a);
                let mut off: __m512i = _mm512_setzero_si512(); // a's offset, 0
                for (v, o) in [(b, right), (c, below), (d, below_right)] {
                    let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    best = _mm512_mask_blend_ps(m, best, v);
                    off = _mm512_mask_mov_epi32(off, m, o);
                }
                // flat index: top + 2·ox + offset
                let start = _mm512_add_epi32(_mm512_set1_epi32((top + 2 * ox) as i32), lane);
                let idx = _mm512_add_epi32(start, off);
                store(&mut yr[ox..ox + n], best);
                // SAFETY: the mask selects the `n` indices `ar[ox..]` holds.
                unsafe {
                    _mm512_mask_storeu_epi32(ar[ox..ox + n].as_mut_ptr().cast(), mask(n), idx)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // x (4×5, the last column outside every window), base 100:
        //  1  5  2  2  9
        //  3  0  2  2  9
        // -1 -2  7  8  9
        // -3 -4  8  6  9
        let x = [
            1.0f32, 5.0, 2.0, 2.0, 9.0, 3.0, 0.0, 2.0, 2.0, 9.0, -1.0, -2.0, 7.0, 8.0, 9.0, -3.0,
            -4.0, 8.0, 6.0, 9.0,
        ];
        let (mut y, mut at) = ([0.0f32; 4], [0u32; 4]);
        max_2x2(&x, 5, 100, &mut y, &mut at, 2);
        // windows: {1, 5, 3, 0} → 5 at (0, 1); {2, 2, 2, 2} → the first, (0, 2);
        // {−1, −2, −3, −4} → (2, 0); {7, 8, 8, 6} → the first 8, (2, 3)
        assert_eq!(y, [5.0, 2.0, -1.0, 8.0]);
        assert_eq!(at, [101, 102, 110, 113]);
    }

    /// The AVX-512 and AVX2 kernels (where the CPU has them) and the portable loop against
    /// the scan written out: widths with 1, 4, 12, 16, 17 and 20 outputs per row and an
    /// odd one, ties,
    /// NaN and −∞ (a window of only those gives −∞ at its first position).
    #[test]
    fn both_paths_follow_the_scan() {
        let specials = [f32::NAN, f32::NEG_INFINITY, 0.0, 1.0];
        for (h, w) in [(2usize, 2usize), (4, 32), (6, 35), (2, 40), (3, 9), (4, 24)] {
            let (oh, ow) = (h / 2, w / 2);
            let x: Vec<f32> = (0..h * w)
                .map(|i| match i * 7 % 11 {
                    0..=3 => specials[i * 7 % 11],
                    v => v as f32 / 3.0 - (i % 3) as f32,
                })
                .collect();
            let mut want = (vec![0.0f32; oh * ow], vec![0u32; oh * ow]);
            for (o, (oy, ox)) in (0..oh)
                .flat_map(|a| (0..ow).map(move |b| (a, b)))
                .enumerate()
            {
                let (mut best, mut idx) = (f32::NEG_INFINITY, 2 * oy * w + 2 * ox);
                for i in [0, 1, w, w + 1].map(|d| 2 * oy * w + 2 * ox + d) {
                    if x[i] > best {
                        (best, idx) = (x[i], i);
                    }
                }
                want.0[o] = best;
                want.1[o] = (7 + idx) as u32;
            }
            let mut got = (vec![f32::NAN; oh * ow], vec![0u32; oh * ow]);
            max_2x2(&x, w, 7, &mut got.0, &mut got.1, ow);
            assert_eq!(got.1, want.1, "{h}×{w}");
            assert_eq!(got.0, want.0, "{h}×{w}"); // no NaN survives the scan
            let mut portable = (vec![f32::NAN; oh * ow], vec![0u32; oh * ow]);
            max_2x2_portable(&x, w, 7, &mut portable.0, &mut portable.1, ow);
            assert_eq!(portable, want, "{h}×{w}");
            #[cfg(target_arch = "x86_64")]
            {
                let mut avx2 = (vec![f32::NAN; oh * ow], vec![0u32; oh * ow]);
                let ran = avx2::try_max_2x2(&x, w, 7, &mut avx2.0, &mut avx2.1, ow);
                assert_eq!(ran, ow >= 8 && avx2::available(), "{h}×{w}");
                if ran {
                    assert_eq!(avx2, want, "{h}×{w}, AVX2");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_kernel_runs_where_the_cpu_has_avx512() {
        let (mut y, mut at) = ([0.0f32], [0u32]);
        let ran = simd::try_max_2x2(&[1.0; 4], 2, 0, &mut y, &mut at, 1);
        assert_eq!(ran, std::arch::is_x86_feature_detected!("avx512f"));
        // the window's maximum when the kernel ran; the outputs untouched when it did not
        let want = if ran { ([1.0], [0]) } else { ([0.0], [0]) };
        assert_eq!((y, at), want);
    }
}
