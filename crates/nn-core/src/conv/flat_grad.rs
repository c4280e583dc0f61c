//! The direct kernels' weight gradient, on the padded input laid out flat.
//!
//! Padded to rows of `wq = w + 2·pw` floats, plane after plane, the input that the tap
//! `(ky, kx)` of output position `(oy, ox)` reads (stride 1) is
//!
//! ```text
//! Xq[c, (oy + ky)·wq + ox + kx] = Xq[c, p + ky·wq + kx]        p = oy·wq + ox
//! ```
//!
//! one offset per tap for every position. With `dY` widened to rows of the same `wq` floats
//! (zeros at `ox ≥ ow`), each weight's gradient is one dot product over the flat positions:
//!
//! ```text
//! ∂E/∂W[o, c, ky, kx] += Σ_p dYw[o, p] · Xq[c, p + ky·wq + kx]      p = 0 … oh·wq − 1
//! ```
//!
//! The positions past a row's end (`ox ≥ ow`) add `0 · Xq[…]`, nothing for a finite input.
//! (A non-finite input makes the forward output, and so the loss, non-finite before any
//! gradient is taken: with stride 1 and no more padding than the kernel, every input
//! value is under some output.)
//!
//! Sixteen positions are one AVX-512 register, whatever the row width (W3's first layer:
//! rows of 24 outputs in 28, against 24 of 32 lanes for rows taken one at a time). For one
//! `(c, ky)`, the sums of `O` output channels × `kw` taps stay in registers while the
//! positions pass; each register of positions loads the `O` channels' `dYw` and the `kw`
//! shifted inputs once: `O + kw` loads for `O·kw` multiply-adds (4 + 5 for 20 on a 5×5
//! kernel). Measured in `docs/PERFORMANCE.md` (eleventh round).

use super::Geometry;

/// Positions per register.
const LANES: usize = 16;

/// Output channels whose sums stay in registers together: `O·kw` sums, `O` registers of
/// `dYw` and one of input within the 32 registers (25 for a 5×5 kernel), three from
/// `kw = 7` on.
fn block_channels(kw: usize) -> usize {
    if kw <= 6 { 4 } else { 3 }
}

/// The flat layout of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Flat {
    /// Floats per padded row: `w + 2·pw`.
    wq: usize,
    /// Registers of positions per output channel: `⌈oh·wq / 16⌉`.
    regs: usize,
    /// Floats per padded input plane, with room for the last register's furthest tap.
    plane: usize,
}

impl Flat {
    pub(super) fn new(g: &Geometry) -> Self {
        let wq = g.w + 2 * g.p.1;
        let regs = (g.oh * wq).div_ceil(LANES);
        // the last register's last tap reads up to regs·16 − 1 + (kh − 1)·wq + kw − 1
        let reach = regs * LANES + (g.k.0 - 1) * wq + g.k.1 - 1;
        let plane = reach.max((g.h + 2 * g.p.0) * wq);
        Flat { wq, regs, plane }
    }

    /// Floats of `dYw` per output channel.
    fn row(&self) -> usize {
        self.regs * LANES
    }
}

/// Sample `x` (`[c, h, w]`) padded into `xq` (`[c, plane]`, rows of `wq` floats).
///
/// # Panics
/// Without AVX-512 (see [`weight_grad_sample`]), or if `x` is not `c·h·w` floats.
pub(super) fn pad(g: &Geometry, f: &Flat, x: &[f32], xq: &mut Vec<f32>) {
    assert!(crate::avx512::available() && x.len() == g.c * g.h * g.w);
    xq.resize(g.c * f.plane, 0.0); // every value is written below
    // SAFETY: the CPU has AVX-512F (asserted above).
    #[allow(unsafe_code)]
    unsafe {
        pad_rows(g, f, x, xq)
    };
}

/// [`pad`] with the CPU's AVX-512 (so that [`copy_row`] is inlined).
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
fn pad_rows(g: &Geometry, f: &Flat, x: &[f32], xq: &mut [f32]) {
    let (top, bottom) = (g.p.0 * f.wq, (g.p.0 + g.h) * f.wq);
    for (src, dst) in x.chunks_exact(g.h * g.w).zip(xq.chunks_exact_mut(f.plane)) {
        dst[..top].fill(0.0);
        dst[bottom..].fill(0.0);
        for (row, out) in src
            .chunks_exact(g.w)
            .zip(dst[top..bottom].chunks_exact_mut(f.wq))
        {
            out[..g.p.1].fill(0.0);
            copy_row(row, &mut out[g.p.1..]); // Xq[c, y + ph, x + pw] = X[c, y, x]
        }
    }
}

/// The sample's `dY` (`[c_out, oh, ow]`) widened into `dyw` (`[c_out, regs·16]`, rows of
/// `wq` floats, zeros past each row's `ow` values and after the last row), and each
/// channel's sum added into `db`: `∂E/∂b[o] += Σ dY[o, ·, ·]`.
///
/// # Panics
/// Without AVX-512, or if `dy` is not `c_out·oh·ow` floats or `db` not `c_out`.
pub(super) fn widen(g: &Geometry, f: &Flat, dy: &[f32], dyw: &mut Vec<f32>, db: &mut [f32]) {
    assert!(crate::avx512::available() && dy.len() == g.c_out * g.plane());
    assert_eq!(db.len(), g.c_out);
    dyw.resize(g.c_out * f.row(), 0.0); // every value is written below
    // SAFETY: the CPU has AVX-512F (asserted above).
    #[allow(unsafe_code)]
    unsafe {
        widen_rows(g, f, dy, dyw, db)
    };
}

/// [`widen`] with the CPU's AVX-512.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
fn widen_rows(g: &Geometry, f: &Flat, dy: &[f32], dyw: &mut [f32], db: &mut [f32]) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_reduce_add_ps, _mm512_setzero_ps};
    let used = g.oh * f.wq;
    let channels = dy
        .chunks_exact(g.plane())
        .zip(dyw.chunks_exact_mut(f.row()));
    for ((src, dst), db) in channels.zip(db) {
        dst[used..].fill(0.0);
        let mut sum = _mm512_setzero_ps();
        for (row, out) in src
            .chunks_exact(g.ow)
            .zip(dst[..used].chunks_exact_mut(f.wq))
        {
            sum = _mm512_add_ps(sum, copy_row(row, out)); // dYw[o, oy·wq + ox] = dY[o, oy, ox]
        }
        *db += _mm512_reduce_add_ps(sum); // ∂E/∂b[o] += Σ dY[o, ·, ·]
    }
}

/// `out = [row, 0, …, 0]` (`row` no longer than `out`), sixteen floats at a time with lane
/// masks (no call for a short copy); returns the sixteen lanes' sums of `row`.
#[inline]
#[target_feature(enable = "avx512f")]
fn copy_row(row: &[f32], out: &mut [f32]) -> std::arch::x86_64::__m512 {
    use crate::avx512::{load, store};
    use std::arch::x86_64::{_mm512_add_ps, _mm512_setzero_ps};
    let mut sum = _mm512_setzero_ps();
    for (at, out) in (0..).step_by(LANES).zip(out.chunks_mut(LANES)) {
        let v = load(&row[at.min(row.len())..(at + LANES).min(row.len())]);
        store(out, v);
        sum = _mm512_add_ps(sum, v);
    }
    sum
}

/// Adds one sample's `∂E/∂W` into `sums` (`[c_out, c·kh·kw, 16]`, sixteen partial sums per
/// weight, added up by [`fold_sums`]); `f` is `Flat::new(g)`, `xq` from [`pad`], `dyw`
/// from [`widen`].
///
/// # Panics
/// Unless [`super::direct::grad_applies`] holds (AVX-512, `kw ≤ 7`, stride 1) and the
/// slices have the sizes above (`block` checks every read against its slice, so a wrong
/// `f` gives wrong sums, never a read outside).
pub(super) fn weight_grad_sample(
    g: &Geometry,
    f: &Flat,
    xq: &[f32],
    dyw: &[f32],
    sums: &mut [f32],
) {
    assert!(super::direct::grad_applies(g), "the kernel fits {g:?}");
    assert_eq!(xq.len(), g.c * f.plane);
    assert_eq!(dyw.len(), g.c_out * f.row());
    assert_eq!(sums.len(), g.c_out * g.kdim() * LANES);
    match g.k.1 {
        1 => taps::<1>(g, f, xq, dyw, sums),
        2 => taps::<2>(g, f, xq, dyw, sums),
        3 => taps::<3>(g, f, xq, dyw, sums),
        4 => taps::<4>(g, f, xq, dyw, sums),
        5 => taps::<5>(g, f, xq, dyw, sums),
        6 => taps::<6>(g, f, xq, dyw, sums),
        7 => taps::<7>(g, f, xq, dyw, sums),
        kw => unreachable!("grad_applies admits kw ≤ 7, got {kw}"),
    }
}

/// Every `(c, ky)` and block of output channels of [`weight_grad_sample`], for `kw = KW`.
fn taps<const KW: usize>(g: &Geometry, f: &Flat, xq: &[f32], dyw: &[f32], sums: &mut [f32]) {
    let most = block_channels(KW);
    for c in 0..g.c {
        for ky in 0..g.k.0 {
            // tap (ky, kx) of position p reads x[p + kx]
            let x = &xq[c * f.plane + ky * f.wq..(c + 1) * f.plane];
            let mut o = 0;
            while o < g.c_out {
                let count = (g.c_out - o).min(most);
                let dy = &dyw[o * f.row()..(o + count) * f.row()];
                // sums[o, (c, ky, kx), ·] for kx = 0 … KW − 1
                let at = (o * g.kdim() + (c * g.k.0 + ky) * KW) * LANES;
                let stride = g.kdim() * LANES;
                let s = &mut sums[at..];
                // SAFETY (each call): the CPU has AVX-512F (`grad_applies`, asserted by the
                // caller); `block` checks its slices' sizes itself.
                #[allow(unsafe_code)]
                unsafe {
                    match count {
                        4 => block::<4, KW>(x, dy, f.regs, s, stride),
                        3 => block::<3, KW>(x, dy, f.regs, s, stride),
                        2 => block::<2, KW>(x, dy, f.regs, s, stride),
                        _ => block::<1, KW>(x, dy, f.regs, s, stride),
                    }
                }
                o += count;
            }
        }
    }
}

/// `sums[q·stride + kx·16 ..][..16] += Σ_v dy[q·regs·16 + 16v ..][..16] ⊙ x[16v + kx ..][..16]`
/// for `q < O`, `kx < KW`: `O·KW` registers of sums over the `regs` registers of positions.
///
/// # Safety
/// The CPU must have AVX-512F.
///
/// # Panics
/// If `x` is shorter than `regs·16 + KW − 1`, `dy` than `O·regs·16`, or `sums` than
/// `(O − 1)·stride + KW·16`.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn block<const O: usize, const KW: usize>(
    x: &[f32],
    dy: &[f32],
    regs: usize,
    sums: &mut [f32],
    stride: usize,
) {
    use std::arch::x86_64::*;
    let row = regs * LANES;
    assert!(x.len() + 1 >= row + KW && dy.len() >= O * row);
    assert!(sums.len() >= (O - 1) * stride + KW * LANES);
    let (xp, dp) = (x.as_ptr(), dy.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); KW]; O];
    for v in 0..regs {
        // SAFETY: q·row + 16v + 16 ≤ O·row ≤ dy.len(), and 16v + kx + 16 ≤ row + KW − 1 ≤
        // x.len(), by the asserts above.
        let d: [__m512; O] =
            std::array::from_fn(|q| unsafe { _mm512_loadu_ps(dp.add(q * row + v * LANES)) });
        for kx in 0..KW {
            // SAFETY: see above.
            let xv = unsafe { _mm512_loadu_ps(xp.add(v * LANES + kx)) };
            for q in 0..O {
                acc[q][kx] = _mm512_fmadd_ps(d[q], xv, acc[q][kx]); // Σ dYw[o, p]·Xq[c, p + off]
            }
        }
    }
    for (q, acc) in acc.iter().enumerate() {
        for (kx, &a) in acc.iter().enumerate() {
            let s = &mut sums[q * stride + kx * LANES..][..LANES];
            // SAFETY: `s` holds 16 floats.
            unsafe {
                _mm512_storeu_ps(
                    s.as_mut_ptr(),
                    _mm512_add_ps(_mm512_loadu_ps(s.as_ptr()), a),
                )
            };
        }
    }
}

/// Adds the partial sums of [`weight_grad_sample`] into `dwt` (`[c·kh·kw, c_out]`, the
/// transposed layout of the threaded backward pass): `∂E/∂W[o, t] = Σ` of its 16 lanes.
pub(super) fn fold_sums(g: &Geometry, sums: &[f32], dwt: &mut [f32]) {
    for (ot, s) in sums.chunks_exact(LANES).enumerate() {
        let (o, t) = (ot / g.kdim(), ot % g.kdim());
        dwt[t * g.c_out + o] += s.iter().sum::<f32>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stride-1 geometry of one sample.
    fn geometry(
        c: usize,
        c_out: usize,
        hw: (usize, usize),
        k: (usize, usize),
        p: (usize, usize),
    ) -> Geometry {
        let (oh, ow) = (hw.0 + 2 * p.0 + 1 - k.0, hw.1 + 2 * p.1 + 1 - k.1);
        Geometry {
            n: 1,
            c,
            h: hw.0,
            w: hw.1,
            c_out,
            oh,
            ow,
            k,
            s: (1, 1),
            p,
        }
    }

    #[test]
    fn a_block_fills_the_registers_without_spilling() {
        // O·kw sums + O registers of dYw + 1 of input ≤ 32, with O as large as that allows
        // up to 4 (kw = 5: 20 + 4 + 1 = 25; kw = 7: 21 + 3 + 1 = 25, where 4 would need 33)
        let fits = |o: usize, kw: usize| {
            let registers = o * kw + o + 1;
            registers <= 32
        };
        for kw in 1..=7 {
            let o = block_channels(kw);
            assert!(fits(o, kw), "kw = {kw}");
            assert!(
                o == 4 || !fits(o + 1, kw),
                "kw = {kw}: {o} channels, room for more"
            );
        }
        assert_eq!(
            (1..=7).map(block_channels).collect::<Vec<_>>(),
            [4, 4, 4, 4, 4, 4, 3]
        );
    }

    #[test]
    fn the_flat_layout_by_hand() {
        // 2×3 input, 2×2 kernel, padding 1: rows of 5 floats, 3×4 outputs (12 positions of a
        // 3×5 grid, one register); the last register's last tap reads up to Xq[15 + 5 + 1]
        let g = geometry(1, 1, (2, 3), (2, 2), (1, 1));
        assert_eq!((g.oh, g.ow), (3, 4));
        let f = Flat::new(&g);
        assert_eq!(
            f,
            Flat {
                wq: 5,
                regs: 1,
                plane: 22
            }
        );
        if !crate::avx512::available() {
            eprintln!("no AVX-512 on this CPU: `pad` and `widen` are not used here, not run");
            return;
        }
        // stale contents (a longer earlier sample) are overwritten
        let mut xq = vec![f32::NAN; 30];
        pad(&g, &f, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut xq);
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 2.0, 3.0, 0.0,
            0.0, 4.0, 5.0, 6.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0,
        ];
        assert_eq!(xq, want);
        let mut dyw = vec![f32::NAN; 3];
        let mut db = [0.5f32];
        widen(
            &g,
            &f,
            &(1..=12).map(|v| v as f32).collect::<Vec<_>>(),
            &mut dyw,
            &mut db,
        );
        assert_eq!(db, [0.5 + 78.0]); // 1 + 2 + … + 12
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 3.0, 4.0, 0.0,
            5.0, 6.0, 7.0, 8.0, 0.0,
            9.0, 10.0, 11.0, 12.0, 0.0,
            0.0,
        ];
        assert_eq!(dyw, want);
    }

    #[test]
    fn a_small_gradient_by_hand() {
        if !super::super::direct::grad_applies(&geometry(1, 1, (2, 3), (2, 2), (1, 1))) {
            eprintln!("no AVX-512 on this CPU: the kernel is not used here");
            return;
        }
        // the geometry above with dY = 1 everywhere: ∂E/∂W[ky, kx] sums Xq[ky..ky+3,
        // kx..kx+4], which holds all six input values for every tap: 21. dY[0, 0] = 2 adds
        // Xq[ky, kx] once more (0, 0, 0, 1 for the four taps); dY[2, 3] = 3 (the last
        // position, flat 13) adds Xq[2 + ky, 3 + kx] twice more (6, 0, 0, 0): 12, 0, 0, 0.
        let g = geometry(1, 1, (2, 3), (2, 2), (1, 1));
        let f = Flat::new(&g);
        let (mut xq, mut dyw) = (Vec::new(), Vec::new());
        pad(&g, &f, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut xq);
        let mut dy = [1.0f32; 12];
        (dy[0], dy[11]) = (2.0, 3.0);
        widen(&g, &f, &dy, &mut dyw, &mut [0.0]);
        let mut sums = vec![0.0f32; 4 * LANES];
        weight_grad_sample(&g, &f, &xq, &dyw, &mut sums);
        let dw: Vec<f32> = sums.chunks_exact(LANES).map(|s| s.iter().sum()).collect();
        assert_eq!(dw, [21.0 + 12.0, 21.0, 21.0, 21.0 + 1.0]);
    }
}
