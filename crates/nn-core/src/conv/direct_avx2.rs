//! The direct convolution's forward kernel for CPUs with AVX2 and FMA but not AVX-512: the
//! same sums as [`direct`](super::direct), in 16 registers of 8 floats.
//!
//! ```text
//! Y[o, oy, ·]            = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · Xp[c, oy + ky, kx + ·]
//! ```
//!
//! An output row (`ow ≤ 32`) is `V = ⌈ow/8⌉` registers. The forward pass keeps the rows of
//! `G` output channels in `G·V` registers and each tap's shifted input row in `V` more,
//! loaded once for the `G` channels: `G = 3` for rows of up to 24 (W3's first layer), 2
//! for up to 32 (W6's). The weight gradient stays with im2col and GEMM on these CPUs (see
//! [`grad_applies`](super::direct::grad_applies)).

use std::arch::x86_64::*;

use super::Geometry;
use super::direct::ROW;

/// Whether this CPU runs these kernels.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Row `oy` of every output channel of one group (`gs` channels from `o0`, weights `wg`
/// packed as [`pack_weights`](super::direct::pack_weights) packs them), `G` channels at a
/// time.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `xp`, `wg` and `y` hold the sizes
/// [`forward_sample`](super::direct::forward_sample) checks; `ow ≤ 32`.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn forward_row(
    g: &Geometry,
    xp: &[f32],
    (wg, gs): (&[f32], usize),
    bias: Option<&[f32]>,
    y: &mut [f32],
    (o0, oy): (usize, usize),
) {
    let channels = gs.min(g.c_out - o0);
    let mut q = 0;
    while q < channels {
        // SAFETY (each call): the caller's contract; channels q.. of the group exist.
        unsafe {
            if g.ow <= 24 {
                forward_channels::<3, 3>(g, xp, (wg, gs), bias, y, (o0, q, oy));
                q += 3;
            } else {
                forward_channels::<2, 4>(g, xp, (wg, gs), bias, y, (o0, q, oy));
                q += 2;
            }
        }
    }
}

/// Row `oy` of the group's channels `q .. q + G` (those below `c_out`), `V` registers each.
///
/// # Safety
/// As [`forward_row`], and `8·V ≥ ow`.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn forward_channels<const G: usize, const V: usize>(
    g: &Geometry,
    xp: &[f32],
    (wg, gs): (&[f32], usize),
    bias: Option<&[f32]>,
    y: &mut [f32],
    (o0, q, oy): (usize, usize, usize),
) {
    let hp = g.h + 2 * g.p.0;
    let live = G.min(g.c_out - o0 - q); // channels of this step that exist
    let mut acc = [[_mm256_setzero_ps(); V]; G];
    if let Some(b) = bias {
        for (o, acc) in acc.iter_mut().enumerate().take(live) {
            *acc = [_mm256_set1_ps(b[o0 + q + o]); V]; // + b[o]
        }
    }
    let mut t = 0;
    for c in 0..g.c {
        for ky in 0..g.k.0 {
            let row = &xp[(c * hp + oy + ky) * ROW..][..ROW];
            for kx in 0..g.k.1 {
                let seg = &row[kx..kx + 8 * V]; // kx + 32 ≤ ROW
                // SAFETY: `seg` holds 8·V floats.
                let s: [__m256; V] =
                    std::array::from_fn(|v| unsafe { _mm256_loadu_ps(seg.as_ptr().add(8 * v)) });
                for (o, acc) in acc.iter_mut().enumerate() {
                    // (a step past the last channel multiplies by zero)
                    let w = if o < live { wg[t * gs + q + o] } else { 0.0 };
                    let w = _mm256_set1_ps(w);
                    for (a, &s) in acc.iter_mut().zip(&s) {
                        *a = _mm256_fmadd_ps(w, s, *a); // y += W[o, c, ky, kx] · Xp[…]
                    }
                }
                t += 1;
            }
        }
    }
    for (o, acc) in acc.iter().enumerate().take(live) {
        let mut out = [0.0f32; 32];
        for (v, &a) in acc.iter().enumerate() {
            // SAFETY: `out` holds 32 ≥ 8·V floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * v), a) };
        }
        y[(o0 + q + o) * g.plane() + oy * g.ow..][..g.ow].copy_from_slice(&out[..g.ow]);
    }
}
