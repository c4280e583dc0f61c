//! The product's kernel for CPUs with AVX2 and FMA but not AVX-512 (16 vector registers of
//! 8 floats).
//!
//! ```text
//! y_r[j..j+32] = c[j..j+32] + Σ_p Σ_{k in list p} x_rk · b[k, j..j+32]     for each row r of p
//! ```
//!
//! The sums of a block of 32 columns stay in registers through all the unit's lists: for
//! three rows that is 12 registers, with 3 for the broadcast values `x_rk` and one for the
//! vector of `B`'s row they share. `B` is stored in panels of the same 32 columns
//! ([`PANEL`]), so that a pass over the lists reads two whole cache lines per row of `B`,
//! rows of a panel one after another. Written with intrinsics: the portable code compiled
//! for AVX2 spilled sums to the stack at every position.

use std::arch::x86_64::*;

use super::Rows;
use super::entries::Entries;

/// Columns per pass, and per panel of [`AlignedRows`](super::AlignedRows) when this kernel
/// is the one in use.
pub(super) const PANEL: usize = 32;

/// Vectors of 8 floats per row in a pass.
const V: usize = PANEL / 8;

/// Whether this CPU runs the kernel (AVX2 and FMA).
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `y_r = c + Σ_k x_rk · b_k` for the `R` rows of a unit (`y`: their output rows, one after
/// another) over its sorted entries.
///
/// # Safety
/// The CPU must have AVX2 and FMA. Every position in `e`'s lists must be below the length
/// of each row of `x`, which must be `B`'s row count; `y` holds `R` rows of `b.n` values;
/// `B` is stored in panels of [`PANEL`] columns.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn product<const R: usize>(
    e: &Entries,
    x: [&[f32]; R],
    b: Rows<'_>,
    y: &mut [f32],
) {
    debug_assert_eq!(b.panel % PANEL, 0);
    for j in (0..b.n).step_by(PANEL) {
        // SAFETY: the caller's contract; columns j..j + 32 are one panel.
        unsafe { block::<R>(e, x, b, j, y) };
    }
}

/// Columns `j..j + 32` of the unit's outputs (those below `n`): the sums start at the bias,
/// each list adds its positions, and the sums are stored.
///
/// # Safety
/// As [`product`], and `j` is the first column of a panel.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block<const R: usize>(e: &Entries, x: [&[f32]; R], b: Rows<'_>, j: usize, y: &mut [f32]) {
    let len = PANEL.min(b.n - j);
    let mut start = [0.0f32; PANEL];
    if !b.c.is_empty() {
        start[..len].copy_from_slice(&b.c[j..j + len]); // the sums start at the bias
    }
    // SAFETY: `start` holds 8·V floats.
    let first: [__m256; V] =
        std::array::from_fn(|v| unsafe { _mm256_loadu_ps(start.as_ptr().add(8 * v)) });
    let mut acc = [first; R];
    macro_rules! patterns {
        ($($p:literal)*) => {$(
            if $p < 1 << R {
                // SAFETY: the caller's contract.
                unsafe { pattern::<R, $p>(e.list($p), x, b, j, &mut acc) };
            }
        )*};
    }
    patterns!(1 2 3 4 5 6 7);
    for (y_r, acc) in y.chunks_exact_mut(b.n).zip(&acc) {
        let mut sums = [0.0f32; PANEL];
        for (v, &a) in acc.iter().enumerate() {
            // SAFETY: `sums` holds 8·V floats.
            unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(8 * v), a) };
        }
        y_r[j..j + len].copy_from_slice(&sums[..len]);
    }
}

/// The positions `at` of pattern `P`: `acc_r += x_rk · b[k, j..j + 32]` for each row `r` in
/// `P`, each vector of `B`'s row loaded once for all of them.
///
/// # Safety
/// As [`block`].
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pattern<const R: usize, const P: usize>(
    at: &[u32],
    x: [&[f32]; R],
    b: Rows<'_>,
    j: usize,
    acc: &mut [[__m256; V]; R],
) {
    // SAFETY: the panel of columns j.. lies inside `b.b`, PANEL floats for each row of B.
    let panel = unsafe { b.b.as_ptr().add(b.start(j)) };
    let mut sums = *acc; // kept in registers through the loop
    for &k in at {
        let k = k as usize;
        // SAFETY: k is below each row's length (the caller's contract).
        let xs: [__m256; R] = std::array::from_fn(|r| match P >> r & 1 {
            1 => unsafe { _mm256_broadcast_ss(&*x[r].as_ptr().add(k)) },
            _ => _mm256_setzero_ps(),
        });
        // SAFETY: k is below B's row count, and row k of the panel holds PANEL floats.
        let row = unsafe { panel.add(k * b.panel) };
        for v in 0..V {
            let w = unsafe { _mm256_load_ps(row.add(8 * v)) }; // (aligned: rows start on lines)
            for r in 0..R {
                if P >> r & 1 == 1 {
                    sums[r][v] = _mm256_fmadd_ps(xs[r], w, sums[r][v]); // y += x_rk · b_kj
                }
            }
        }
    }
    *acc = sums;
}
