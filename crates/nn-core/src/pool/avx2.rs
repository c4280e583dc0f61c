//! [`max_2x2`](super::max_2x2) for CPUs with AVX2 but not AVX-512: 8 outputs of a row at
//! once. Each input row's 16 floats are two registers; one shuffle and one permute split
//! them into even and odd columns, and the window is scanned lane by lane in the order of
//! the module docs (`best ← v where v > best`), carrying each lane's offset in the window.
//! A row's last outputs, fewer than 8, go through a padded copy of their inputs.

// The loads and stores take raw pointers; each use states why it stays inside its slice.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256, __m256i, _CMP_GT_OQ, _mm256_add_epi32, _mm256_blendv_ps, _mm256_castpd_ps,
    _mm256_castps_pd, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpgt_epi32,
    _mm256_loadu_ps, _mm256_maskload_ps, _mm256_permute4x64_pd, _mm256_set1_epi32, _mm256_set1_ps,
    _mm256_setr_epi32, _mm256_setzero_si256, _mm256_shuffle_ps, _mm256_storeu_ps,
    _mm256_storeu_si256,
};

/// Whether this CPU runs this kernel.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// [`max_2x2`](super::max_2x2) when this CPU has AVX2 and rows have at least 8 outputs
/// (returns whether it ran). Rows of fewer are only masked blocks, slower than the portable
/// loop: W3's second pooling layer (rows of 4), forward of a batch on one thread 43–45 →
/// 54–58 µs; its first (rows of 12) 123–133 → 109–110 µs.
pub(super) fn try_max_2x2(
    x: &[f32],
    w: usize,
    base: usize,
    y: &mut [f32],
    at: &mut [u32],
    ow: usize,
) -> bool {
    if ow < 8 || !available() {
        return false;
    }
    // SAFETY: the CPU has AVX2 (checked above).
    unsafe { max_2x2(x, w, base, y, at, ow) };
    true
}

/// The even and odd floats of `row[..16]` as two registers.
#[inline]
#[target_feature(enable = "avx2")]
fn split(row: &[f32; 16]) -> (__m256, __m256) {
    // SAFETY: both loads read 8 of the array's 16 floats.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_ps(row.as_ptr()),
            _mm256_loadu_ps(row.as_ptr().add(8)),
        )
    };
    // per 128-bit half: [lo₀ lo₂ hi₀ hi₂ | lo₄ lo₆ hi₄ hi₆]; the permute puts the halves'
    // middle pairs in order
    let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
    let odd = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    (order(even), order(odd))
}

/// The maxima of 8 windows whose rows are `top` and `bottom` (16 floats each), and their
/// offsets in the window (0, 1, `w`, `w + 1`).
#[inline]
#[target_feature(enable = "avx2")]
fn windows(top: &[f32; 16], bottom: &[f32; 16], w: i32) -> (__m256, __m256i) {
    let (a, b) = split(top);
    let (c, d) = split(bottom);
    let right = _mm256_set1_epi32(1);
    let (below, below_right) = (_mm256_set1_epi32(w), _mm256_set1_epi32(w + 1));
    // the scan from −∞: a wins unless it is NaN or −∞ itself (then offset 0 stays)
    let mut best = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut off = _mm256_setzero_si256();
    best = _mm256_blendv_ps(best, a, _mm256_cmp_ps::<_CMP_GT_OQ>(a, best));
    for (v, o) in [(b, right), (c, below), (d, below_right)] {
        let m = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best); // strictly larger: the first of equals stays
        best = _mm256_blendv_ps(best, v, m);
        let o = _mm256_blendv_ps(_mm256_castsi256_ps(off), _mm256_castsi256_ps(o), m);
        off = _mm256_castps_si256(o);
    }
    (best, off)
}

/// The maxima of the 8 windows from flat index `q` of `x` and their flat indices (from
/// `base`), as arrays.
#[inline]
#[target_feature(enable = "avx2")]
fn block(top: &[f32; 16], bottom: &[f32; 16], w: usize, base_q: usize) -> ([f32; 8], [u32; 8]) {
    let (best, off) = windows(top, bottom, w as i32);
    // flat index: base + q + 2·lane + offset
    let lane = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let idx = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_set1_epi32(base_q as i32), lane),
        off,
    );
    let (mut vals, mut idxs) = ([0.0f32; 8], [0u32; 8]);
    // SAFETY: both stores write 8 values into arrays of 8.
    unsafe {
        _mm256_storeu_ps(vals.as_mut_ptr(), best);
        _mm256_storeu_si256(idxs.as_mut_ptr().cast(), idx);
    }
    (vals, idxs)
}

/// [`block`] for fewer than 8 windows: `top` and `bottom` hold their `2·n < 16` floats.
#[inline]
#[target_feature(enable = "avx2")]
fn block_masked(top: &[f32], bottom: &[f32], w: usize, base_q: usize) -> ([f32; 8], [u32; 8]) {
    let len = top.len().min(bottom.len()).min(16);
    let load = |row: &[f32]| {
        let mut padded = [0.0f32; 16];
        for (lane, half) in [0usize, 8].into_iter().enumerate() {
            let n = len.saturating_sub(half).min(8) as i32;
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            // SAFETY: the mask selects the lanes half … half + n − 1 < len of `row`; the
            // others are not read. The store writes 8 floats into the array of 16.
            unsafe {
                let v = _mm256_maskload_ps(row.as_ptr().wrapping_add(half), mask);
                _mm256_storeu_ps(padded.as_mut_ptr().add(8 * lane), v);
            }
        }
        padded
    };
    block(&load(top), &load(bottom), w, base_q)
}

#[target_feature(enable = "avx2")]
fn max_2x2(x: &[f32], w: usize, base: usize, y: &mut [f32], at: &mut [u32], ow: usize) {
    for (oy, (yr, ar)) in y
        .chunks_exact_mut(ow)
        .zip(at.chunks_exact_mut(ow))
        .enumerate()
    {
        for ox in (0..ow).step_by(8) {
            let (n, q) = ((ow - ox).min(8), 2 * oy * w + 2 * ox); // q: the first window's top left
            if n == 8 {
                let top = x[q..q + 16].try_into().expect("16 floats");
                let bottom = x[q + w..q + w + 16].try_into().expect("16 floats");
                let (vals, idxs) = block(top, bottom, w, base + q);
                *<&mut [f32; 8]>::try_from(&mut yr[ox..ox + 8]).expect("8") = vals;
                *<&mut [u32; 8]>::try_from(&mut ar[ox..ox + 8]).expect("8") = idxs;
                continue;
            }
            // the row's last windows, fewer than 8: masked loads of their 2·n floats (the
            // lanes past n are computed and dropped)
            let (vals, idxs) =
                block_masked(&x[q..q + 2 * n], &x[q + w..q + w + 2 * n], w, base + q);
            yr[ox..ox + n].copy_from_slice(&vals[..n]);
            ar[ox..ox + n].copy_from_slice(&idxs[..n]);
        }
    }
}
