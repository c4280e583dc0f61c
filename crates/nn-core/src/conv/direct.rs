//! Direct convolution for layers with few input channels (a network's first layer), where
//! im2col's columns are as large as the input times `kh·kw` and the products too thin
//! (`K = c·kh·kw = 25`) for GEMM to run at speed.
//!
//! ```text
//! Y[o, oy, ox] = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · Xp[c, oy + ky, ox + kx]
//! ```
//!
//! `Xp` is the sample with its zero padding, built once per sample in a small buffer whose
//! rows are `ROW` floats apart, so that 32 consecutive values from any tap's column stay
//! inside the row. An output row of 32 positions (`ow ≤ 32`) is two AVX-512 registers; the
//! forward pass keeps one such row per output channel (a group of [`GROUP`] channels) in
//! registers and adds each tap's shifted input row into all of them: one load of the input
//! per `GROUP` fused multiply-adds. The weight gradient has its own kernel, on the padded
//! input laid out flat (`flat_grad`).
//!
//! Used only with stride 1, `ow ≤ 32`, `kw ≤ 7`, few input channels and a CPU with
//! AVX-512 (the 32-wide rows need its 32 registers) or, for the forward pass alone, AVX2
//! (its own kernel, `direct_avx2`); [`applies`] and [`grad_applies`] decide.

/// Output positions per row handled at once (two AVX-512 registers).
const LANES: usize = 32;

/// Floats from one padded input row to the next: room for `LANES` values from any of up to
/// 16 taps' columns.
pub(super) const ROW: usize = LANES + 16;

/// Output channels whose rows of sums are held in registers together (2 registers each).
pub const GROUP: usize = 12;

/// The group size for `c_out` output channels: 8 when there are at most 8 (W3's first layer:
/// groups of 12 spent a third of the multiply-adds on the 4 missing channels' zero weights;
/// forward 141–143 → see `docs/PERFORMANCE.md`), else [`GROUP`].
pub fn group_size(c_out: usize) -> usize {
    if c_out <= 8 { 8 } else { GROUP }
}

/// Whether the direct kernels handle this geometry on this CPU.
pub fn applies(g: &super::Geometry) -> bool {
    // a padded row, w + 2·pw = ow + kw − 1 ≤ 38 floats, fits in ROW
    let shape_fits = g.s == (1, 1)
        && g.ow <= LANES
        && g.k.1 <= 7
        && (1..=3).contains(&g.c)
        && g.h * g.w > 0
        && g.plane() > 0;
    shape_fits && simd_ok()
}

/// Whether the direct weight gradient (`flat_grad`) takes this geometry on this CPU: with
/// AVX-512 only. An AVX2 version of an earlier kernel (one register of sums per `kx`, 16
/// registers in all) took longer than im2col and GEMM: W3's first layer on one thread,
/// backward 815–1,023 against 795–905 µs per batch, where the AVX2 forward kernel halves the
/// forward pass (424–461 against 838–931 µs).
pub fn grad_applies(g: &super::Geometry) -> bool {
    applies(g) && avx512_ok()
}

#[cfg(target_arch = "x86_64")]
fn avx512_ok() -> bool {
    crate::avx512::available()
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_ok() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn simd_ok() -> bool {
    crate::avx512::available() || super::direct_avx2::available()
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_ok() -> bool {
    false
}

/// Sample `x` (`[c, h, w]`) with its zero padding into `xp` (`[c, h + 2·ph, ROW]`).
pub(super) fn pad(g: &super::Geometry, x: &[f32], xp: &mut Vec<f32>) {
    super::pad_sample(g, x, ROW, xp);
}

/// The weight `[c_out, c·kh·kw]` regrouped for the forward kernel: for each group of
/// [`group_size`] output channels, for each tap `(c, ky, kx)`, the group's weights (zeros
/// past `c_out`).
pub(super) fn pack_weights(
    g: &super::Geometry,
    wmat: ndarray::ArrayView2<'_, f32>,
    out: &mut Vec<f32>,
) {
    let gs = group_size(g.c_out);
    let (taps, groups) = (g.kdim(), g.c_out.div_ceil(gs));
    out.clear();
    out.resize(groups * taps * gs, 0.0);
    for ((o, t), &w) in wmat.indexed_iter() {
        out[((o / gs) * taps + t) * gs + o % gs] = w;
    }
}

/// `Y = W ⊛ Xp (+ b)` for one sample: `xp` from [`pad`], `wp` from [`pack_weights`], `y`
/// the sample's `[c_out, oh, ow]`.
pub(super) fn forward_sample(
    g: &super::Geometry,
    xp: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(
        simd_ok() && g.ow <= LANES && g.k.1 + LANES <= ROW,
        "`applies` holds"
    );
    assert_eq!(xp.len(), g.c * (g.h + 2 * g.p.0) * ROW);
    assert_eq!(y.len(), g.c_out * g.plane());
    let (taps, gs) = (g.kdim(), group_size(g.c_out));
    #[cfg(target_arch = "x86_64")]
    if !crate::avx512::available() {
        for (grp, wg) in wp.chunks_exact(taps * gs).enumerate() {
            for oy in 0..g.oh {
                // SAFETY: the CPU has AVX2 and FMA (`simd_ok` without AVX-512); the sizes
                // were checked above.
                #[allow(unsafe_code)]
                unsafe {
                    super::direct_avx2::forward_row(g, xp, (wg, gs), bias, y, (grp * gs, oy))
                };
            }
        }
        return;
    }
    for (grp, wg) in wp.chunks_exact(taps * gs).enumerate() {
        let o0 = grp * gs;
        for oy in 0..g.oh {
            // SAFETY: the CPU has AVX-512F (`simd_ok`, and CPUs without it returned above);
            // the sizes were checked above.
            #[allow(unsafe_code)]
            unsafe {
                if gs == 8 {
                    forward_row::<8>(g, xp, wg, bias, y, o0, oy)
                } else {
                    forward_row::<GROUP>(g, xp, wg, bias, y, o0, oy)
                }
            };
        }
    }
}

/// Row `oy` of output channels `o0 .. o0 + G` (those below `c_out`): the `G` rows of 32
/// sums in `2·G` registers, each tap's shifted input row loaded once for all of them.
///
/// # Safety
/// The CPU must have AVX-512F; `xp`, `wg` and `y` must hold the sizes [`forward_sample`]
/// checks.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn forward_row<const G: usize>(
    g: &super::Geometry,
    xp: &[f32],
    wg: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    o0: usize,
    oy: usize,
) {
    use std::arch::x86_64::*;
    let hp = g.h + 2 * g.p.0;
    let mut acc = [[_mm512_setzero_ps(); 2]; G];
    if let Some(b) = bias {
        for (o, acc) in acc.iter_mut().enumerate().take(g.c_out - o0) {
            *acc = [_mm512_set1_ps(b[o0 + o]); 2]; // + b[o]
        }
    }
    let mut t = 0;
    for c in 0..g.c {
        for ky in 0..g.k.0 {
            let row = &xp[(c * hp + oy + ky) * ROW..][..ROW];
            for kx in 0..g.k.1 {
                let [s0, s1] = shifted(row, kx);
                let w: &[f32; G] = wg[t * G..][..G].try_into().expect("packed");
                for (acc, &w) in acc.iter_mut().zip(w) {
                    let w = _mm512_set1_ps(w);
                    acc[0] = _mm512_fmadd_ps(w, s0, acc[0]); // y += W[o, c, ky, kx] · Xp[…]
                    acc[1] = _mm512_fmadd_ps(w, s1, acc[1]);
                }
                t += 1;
            }
        }
    }
    // lanes 0..ow of the two registers: the real output columns
    let [m0, m1] = row_masks(g.ow);
    for (o, acc) in acc.iter().enumerate().take(g.c_out - o0) {
        let out = &mut y[(o0 + o) * g.plane() + oy * g.ow..][..g.ow];
        // SAFETY: the masks select lanes 0..ow, all inside `out`.
        unsafe {
            _mm512_mask_storeu_ps(out.as_mut_ptr(), m0, acc[0]);
            if m1 != 0 {
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(16), m1, acc[1]);
            }
        }
    }
}

/// The 32 values of a padded input row from column `kx` on, as two registers.
#[allow(unsafe_code)]
#[inline]
#[target_feature(enable = "avx512f")]
fn shifted(row: &[f32], kx: usize) -> [std::arch::x86_64::__m512; 2] {
    use std::arch::x86_64::_mm512_loadu_ps;
    let seg = &row[kx..kx + LANES];
    // SAFETY: `seg` holds 32 floats: two unaligned 16-float loads
    unsafe {
        [
            _mm512_loadu_ps(seg.as_ptr()),
            _mm512_loadu_ps(seg[16..].as_ptr()),
        ]
    }
}

/// The lanes `0..ow` of an output row's two registers, as two masks.
fn row_masks(ow: usize) -> [u16; 2] {
    [0, 16].map(|from| crate::avx512::mask(ow.saturating_sub(from)))
}

#[cfg(test)]
mod tests {
    use super::super::{Geometry, Scratch, backward, forward};
    use super::*;
    use ndarray::ArrayView2;

    fn geometry(
        c: usize,
        c_out: usize,
        (h, w): (usize, usize),
        k: (usize, usize),
        p: (usize, usize),
    ) -> Geometry {
        let (oh, ow) = (h + 2 * p.0 + 1 - k.0, w + 2 * p.1 + 1 - k.1);
        Geometry {
            n: 3,
            c,
            h,
            w,
            c_out,
            oh,
            ow,
            k,
            s: (1, 1),
            p,
        }
    }

    /// `X[i, c, y, x]` with the padding as zeros (outside the sample).
    fn at(g: &Geometry, x: &[f32], (i, c): (usize, usize), y: isize, xx: isize) -> f64 {
        let inside = (0..g.h as isize).contains(&y) && (0..g.w as isize).contains(&xx);
        if !inside {
            return 0.0;
        }
        x[((i * g.c + c) * g.h + y as usize) * g.w + xx as usize] as f64
    }

    /// `Y` and `∂E/∂W` by their definitions, in f64.
    fn by_definition(
        g: &Geometry,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (kh, kw) = g.k;
        let mut y = vec![0.0f32; g.n * g.c_out * g.plane()];
        let mut dw = vec![0.0f64; g.c_out * g.kdim()];
        for i in 0..g.n {
            for o in 0..g.c_out {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let out = ((i * g.c_out + o) * g.oh + oy) * g.ow + ox;
                        let mut sum = b[o] as f64;
                        for c in 0..g.c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let yy = (oy + ky) as isize - g.p.0 as isize;
                                    let xx = (ox + kx) as isize - g.p.1 as isize;
                                    let v = at(g, x, (i, c), yy, xx);
                                    let t = (c * kh + ky) * kw + kx;
                                    sum += w[o * g.kdim() + t] as f64 * v;
                                    dw[o * g.kdim() + t] += dy[out] as f64 * v;
                                }
                            }
                        }
                        y[out] = sum as f32;
                    }
                }
            }
        }
        (y, dw.into_iter().map(|v| v as f32).collect())
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (j, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{what}[{j}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn forward_and_weight_gradient_match_the_definition() {
        if !simd_ok() {
            eprintln!("no AVX-512 or AVX2 on this CPU: the direct kernels are not used here");
            return;
        }
        for g in cases() {
            assert!(applies(&g), "{g:?}");
            let x = values(g.n * g.c * g.h * g.w, 7, 0.1);
            let w = values(g.c_out * g.kdim(), 5, 0.05);
            let b = values(g.c_out, 3, 0.2);
            let dy = values(g.n * g.c_out * g.plane(), 11, 0.03);
            let (want_y, want_dw) = by_definition(&g, &x, &w, &b, &dy);
            let wmat = ArrayView2::from_shape((g.c_out, g.kdim()), &w[..]).unwrap();
            let mut scratch = Scratch::default();
            let mut y = vec![f32::NAN; want_y.len()];
            forward(&g, &x, wmat, Some(&b), &mut y, &mut scratch).unwrap();
            close(&y, &want_y, "y");
            // the weight gradient, alone and with ∂E/∂X asked for: the same values
            let (mut dw, mut db) = (vec![0.0f32; w.len()], vec![0.0f32; b.len()]);
            backward(
                &g,
                &x,
                wmat,
                &dy,
                &mut dw,
                Some(&mut db),
                None,
                &mut scratch,
            )
            .unwrap();
            close(&dw, &want_dw, "dw");
            let mut dw2 = vec![0.0f32; w.len()];
            let mut dx = vec![0.0f32; x.len()];
            backward(
                &g,
                &x,
                wmat,
                &dy,
                &mut dw2,
                None,
                Some(&mut dx),
                &mut scratch,
            )
            .unwrap();
            assert_eq!(dw, dw2);
            let want_db: Vec<f32> = (0..g.c_out)
                .map(|o| {
                    (0..g.n)
                        .flat_map(|i| &dy[(i * g.c_out + o) * g.plane()..][..g.plane()])
                        .sum()
                })
                .collect();
            close(&db, &want_db, "db");
        }
    }

    /// Geometries through every branch of the kernels.
    fn cases() -> [Geometry; 8] {
        [
            geometry(1, 12, (28, 28), (5, 5), (2, 2)), // W6's first layer
            geometry(1, 8, (28, 28), (5, 5), (0, 0)),  // W3's
            geometry(3, 13, (9, 7), (3, 3), (1, 1)),   // a second group of one channel
            geometry(2, 25, (6, 32), (3, 1), (1, 0)),  // ow = 32, odd channel count
            geometry(1, 1, (5, 3), (7, 7), (3, 3)),    // kw = 7, ow < 16
            geometry(3, 2, (4, 17), (3, 5), (0, 2)),   // ow = 17: both registers part-used
            geometry(1, 7, (8, 27), (3, 4), (0, 0)),   // ow = 24, 7 channels (3 + 3 + 1)
            geometry(2, 5, (6, 27), (2, 3), (0, 1)),   // ow = 27 (4 AVX2 registers), 2 + 2 + 1
        ]
    }

    /// Values for tests: `((j·m) mod 23 − 11)·s`.
    fn values(n: usize, m: usize, s: f32) -> Vec<f32> {
        (0..n)
            .map(|j| ((j * m) % 23) as f32 * s - 11.0 * s)
            .collect()
    }

    #[test]
    fn the_avx2_forward_kernel_matches_the_definition_even_where_avx512_runs() {
        if !super::super::direct_avx2::available() {
            eprintln!("no AVX2 on this CPU");
            return;
        }
        for g in cases() {
            let g = Geometry { n: 1, ..g };
            let x = values(g.c * g.h * g.w, 7, 0.1);
            let w = values(g.c_out * g.kdim(), 5, 0.05);
            let b = values(g.c_out, 3, 0.2);
            let dy = values(g.c_out * g.plane(), 11, 0.03);
            let (want_y, _) = by_definition(&g, &x, &w, &b, &dy);
            let wmat = ArrayView2::from_shape((g.c_out, g.kdim()), &w[..]).unwrap();
            let (mut xp, mut wp) = (Vec::new(), Vec::new());
            pad(&g, &x, &mut xp);
            pack_weights(&g, wmat, &mut wp);
            let gs = group_size(g.c_out);
            let mut y = vec![f32::NAN; want_y.len()];
            for (grp, wg) in wp.chunks_exact(g.kdim() * gs).enumerate() {
                for oy in 0..g.oh {
                    // SAFETY: the CPU has AVX2 and FMA; the sizes are the kernels'.
                    #[allow(unsafe_code)]
                    unsafe {
                        super::super::direct_avx2::forward_row(
                            &g,
                            &xp,
                            (wg, gs),
                            Some(&b),
                            &mut y,
                            (grp * gs, oy),
                        )
                    };
                }
            }
            close(&y, &want_y, "y");
        }
    }

    #[test]
    fn applies_only_where_the_kernels_fit() {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        assert_eq!(
            simd_ok(),
            std::arch::is_x86_feature_detected!("avx512f") || avx2
        );
        let g = geometry(1, 12, (28, 28), (5, 5), (2, 2));
        assert_eq!(applies(&g), simd_ok());
        let mut strided = g;
        strided.s = (2, 2);
        assert!(!applies(&strided));
        // groups of 8 output channels up to 8 (no multiply-adds on missing channels), else 12
        assert_eq!([1, 8, 9, 12, 25].map(group_size), [8, 8, 12, 12, 12]);
        assert!(!applies(&geometry(1, 4, (10, 37), (3, 3), (0, 0)))); // ow = 35 > 32
        assert!(!applies(&geometry(4, 4, (10, 10), (3, 3), (0, 0)))); // 4 input channels
        assert!(!applies(&geometry(1, 4, (10, 10), (3, 9), (0, 0)))); // kw = 9
        assert!(!applies(&geometry(1, 4, (2, 10), (3, 3), (0, 0)))); // no output row
    }
}
